//! `bms-bridge decode` for the JK RS485, Daly and EG4 LifePower protocols, as a user runs it.

use std::process::Command;

fn decode(protocol: &str, hex: &str) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(["decode", "--protocol", protocol, hex])
        .output()
        .unwrap();
    let json = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn daly_reply_and_a_multi_sentence_capture() {
    let (code, json) = decode("daly", "A5 01 90 08 02 14 00 00 75 45 03 78 89");
    assert_eq!(code, 0);
    // raw 30021: the default convention, (30000 - raw) / 10 (docs/protocols/daly.md "Current sign").
    assert_eq!((json["voltage_v"].as_f64(), json["current_a"].as_f64()), (Some(53.2), Some(-2.1)));
    let two = "A5 01 95 08 01 0C FD 0C FE 0C FE 40 A1 A5 01 95 08 02 0C FE 0C FE 0C FE 40 A3";
    let (code, json) = decode("daly", two);
    assert_eq!(code, 0);
    assert_eq!(json["cells_v"], serde_json::json!([3.325, 3.326, 3.326, 3.326, 3.326, 3.326]));
    assert_eq!(json["extra"]["frame_count"], 2);
    let (code, json) = decode("daly", "A5 01 90 08 02 14 00 00 75 45 03 78 88");
    assert_eq!(code, 1);
    assert!(json["error"].as_str().unwrap().contains("checksum"), "{json}");
}

#[test]
fn eg4_firmware_and_jk_request() {
    let fw = "7E 01 33 16 51 54 2D 59 53 30 30 2D 31 36 53 56 31 30 30 41 2D 56 33 2E 34 30 B8 0D";
    let (code, json) = decode("eg4_lifepower", fw);
    assert_eq!(code, 0);
    assert_eq!(json["extra"]["firmware_version"], "QT-YS00-16SV100A-V3.40");
    let (code, json) = decode("jk_rs485", "4E 57 00 13 00 00 00 00 06 03 00 00 00 00 00 00 68 00 00 01 29");
    assert_eq!(code, 0);
    assert_eq!(json["extra"]["command"], 6);
}
