//! FoxESS: every case of `tests/vectors/foxess.json` (requests rebuilt with their trailer,
//! responses' registers, the README's stats reading, the broadcast, the unterminated frames
//! rejected, corrupt frames rejected precisely), the stack merge, and the frame contract.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::foxess::codec::{self as foxess, Block};
use bms_bridge::protocol::{json::to_json, modbus, FrameError, Scan};
use serde_json::json;
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("foxess.json")
}

#[test]
fn requests_are_what_the_builder_sends() {
    let mut checked = 0;
    for case in
        cases().iter().filter(|c| c.direction == "request" && c.expected.get("start_register").is_some())
    {
        let e = &case.expected;
        let block = Block {
            name: "any",
            start: e["start_register"].as_u64().unwrap() as u16,
            count: e["register_count"].as_u64().unwrap() as u16,
        };
        assert_eq!(foxess::request(e["address"].as_u64().unwrap() as u8, block), case.bytes, "{}", case.name);
        let json = to_json(&foxess::decode_any(&case.bytes).unwrap());
        vectors::check_expected(case, &json, &["meaning"], |_, _| None);
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn responses_carry_their_registers_and_the_stats_reading() {
    let all = cases();
    for name in ["resp_pack1_status_0x0000x8", "resp_pack1_stats_0x0022x5"] {
        let case = vectors::case(&all, name);
        assert_eq!(foxess::scan_response(&case.bytes), Scan::Frame { len: case.bytes.len() });
        let json = to_json(&foxess::decode_any(&case.bytes).unwrap());
        vectors::check_expected(case, &json, &["source_decode_unverified"], |_, _| None);
        assert_eq!(json["extra"]["trailer_0d0a"], json!(true));
        if let Some(readme) = case.expected["source_decode_unverified"].as_object() {
            for (key, want) in readme {
                let got = match key.as_str() {
                    "soc_percent" | "cycles" => json[key].clone(),
                    _ => json["extra"][key].clone(),
                };
                assert!(vectors::same(want, &got), "{name}: {key}: {want} vs {got}");
            }
        }
    }
}

#[test]
fn broadcast_is_decoded_and_unterminated_frames_are_rejected() {
    let all = cases();
    let broadcast = vectors::case(&all, "broadcast_addr0_fn8C");
    let json = to_json(&foxess::decode_any(&broadcast.bytes).unwrap());
    vectors::check_expected(broadcast, &json, &[], |_, _| None);
    for case in all.iter().filter(|c| c.name.starts_with("unterminated_")) {
        assert!(
            matches!(foxess::decode_any(&case.bytes), Err(FrameError::BadChecksum { .. })),
            "{}",
            case.name
        );
        assert_eq!(
            case.expected["crc_valid_over_bytes_1_to_end"],
            json!(modbus::check_crc(&case.bytes[1..]).is_ok())
        );
        assert_eq!(
            bms_bridge::protocol::find_frame(&case.bytes, foxess::scan_response),
            None,
            "{}",
            case.name
        );
    }
}

#[test]
fn corrupt_frames_are_rejected_precisely() {
    let all = cases();
    let err = |name: &str| foxess::decode_any(&vectors::case(&all, name).bytes).unwrap_err();
    assert_eq!(
        err("corrupt_crc_byte_order_swapped"),
        FrameError::BadChecksum { expected: 0x0405, computed: 0x0504 }
    );
    assert!(matches!(err("corrupt_payload_changed"), FrameError::BadChecksum { .. }));
    assert!(matches!(err("corrupt_truncated"), FrameError::BadChecksum { .. } | FrameError::TooShort { .. }));
    let truncated = &vectors::case(&all, "corrupt_truncated").bytes;
    assert_eq!(foxess::parse_response(truncated, Some(1)), Err(FrameError::TooShort { need: 15, got: 9 }));
}

/// The README's pack 8 cell reply (not in the vector file) and its pack 4 stats reply.
#[test]
fn readme_frames_decode() {
    let cells = vectors::hex("08 03 12 0C FC 0C FD 0C FD 0C FC 0C FC 0C FE 0C FE 0C FE 0C FE 23 56 0D 0A");
    let r = foxess::parse_response(&cells, Some(8)).unwrap();
    assert_eq!(r, vec![3324, 3325, 3325, 3324, 3324, 3326, 3326, 3326, 3326]);
    let stats = vectors::hex("04 03 0A 00 00 04 00 46 19 00 90 20 82 A3 A8 0D 0A");
    let d = foxess::decode_any(&stats).unwrap();
    assert_eq!((d.battery.soc_percent, d.battery.cycles), (Some(70.0), Some(144)));
}

#[test]
fn packs_in_series_form_one_battery() {
    let stats = |soc: u16| vec![0, 0x0100, soc << 8 | 0x33, 11, 0x2082];
    let pack = |soc| Some(foxess::pack(&stats(soc), &[3300; 9], &[3310; 9]).unwrap());
    let both = foxess::stack(&[pack(80), pack(60)]);
    assert_eq!(both.cell_voltages_v.as_ref().map(Vec::len), Some(36));
    assert!((both.voltage_v.unwrap() - 2.0 * (9.0 * 3.3 + 9.0 * 3.31)).abs() < 1e-9);
    assert_eq!((both.soc_percent, both.modules_online, both.modules_offline), (Some(70.0), Some(2), Some(0)));
    let one_missing = foxess::stack(&[pack(80), None]);
    assert_eq!((one_missing.voltage_v, one_missing.modules_offline), (None, Some(1)));
    assert_eq!(one_missing.alarms.internal_failure, Some(AlarmLevel::Alarm));
}

#[test]
fn contract_holds_for_the_responses() {
    let decode = |f: &[u8]| foxess::parse_response(f, None).map(|_| Default::default());
    for name in ["resp_pack1_status_0x0000x8", "resp_pack1_stats_0x0022x5"] {
        let all = cases();
        let bytes = &vectors::case(&all, name).bytes;
        contract::truncation(bytes, &foxess::scan_response, &decode);
        contract::byte_flips(bytes, &foxess::scan_response, &decode);
        assert_eq!(contract::chunked_equals_whole(bytes, &foxess::scan_response), vec![bytes.clone()]);
        contract::trailing_bytes_stay(bytes, &[0x01], &foxess::scan_response);
    }
}

/// A 9-register reply to 0x0008 (cells 1-9) gives its cells in `cells_v`, like every decoder.
#[test]
fn cell_block_replies_give_cells_v() {
    let mv = [3301u16, 3302, 3303, 3304, 3305, 3306, 3307, 3308, 3309];
    let reply = bms_bridge::protocol::modbus::read_response(1, &mv);
    let decoded = bms_bridge::bms::decode_named("foxess", &reply).unwrap();
    let json = bms_bridge::protocol::json::to_json(&decoded);
    let want: Vec<f64> = mv.iter().map(|v| f64::from(*v) / 1000.0).collect();
    assert_eq!(decoded.battery.cell_voltages_v, Some(want));
    assert!(json.get("cells_v").is_some(), "{json}");
}
