//! EG4 LifePower: every case of `tests/vectors/eg4_lifepower.json` (binary `7E` frames and
//! LifePower4 ASCII frames), the frame contract, and the structural checks that stand in for the
//! unknown checksum.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::bms::eg4_lifepower::codec::{self as eg4, ascii};
use bms_bridge::protocol::{json::to_json, Decoded, FrameError, Scan};
use serde_json::{json, Value};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("eg4_lifepower.json")
}

fn decode(bytes: &[u8]) -> Result<Decoded, FrameError> {
    eg4::decode(bytes, None)
}

fn derived(bytes: &[u8], key: &str) -> Option<Value> {
    match key {
        "start" => bytes.first().map(|b| json!(b)),
        "end" => bytes.last().map(|b| json!(b)),
        "length" => bytes.get(3).map(|b| json!(b)),
        _ => None,
    }
}

/// Every valid case matches every expected value.
#[test]
fn every_valid_case_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| !c.corrupt) {
        assert_eq!(eg4::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        let decoded = decode(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        vectors::check_expected(case, &to_json(&decoded), &[], |k, _| derived(&case.bytes, k));
        checked += 1;
    }
    assert_eq!(checked, 7);
}

/// The request builders reproduce the vendor tool's requests, binary and ASCII.
#[test]
fn requests_equal_the_builders() {
    let all = cases();
    assert_eq!(eg4::request(1, eg4::CMD_STATUS).to_vec(), vectors::case(&all, "req_read_status").bytes);
    assert_eq!(
        eg4::request(1, eg4::CMD_FIRMWARE).to_vec(),
        vectors::case(&all, "req_firmware_version").bytes
    );
    assert_eq!(ascii::request(1, ascii::CID2_ANALOG), vectors::case(&all, "lp4_req_analog_0x42_addr1").bytes);
    assert_eq!(ascii::request(1, ascii::CID2_ALARM), vectors::case(&all, "lp4_req_alarm_0x44_addr1").bytes);
    // The observed check bytes (dbus-serialbattery's table): a pattern, not an algorithm.
    let table: Vec<u8> = (1..=15).map(eg4::request_check).collect();
    assert_eq!(
        table,
        [0xFE, 0xFC, 0xFE, 0xF8, 0xFE, 0xFC, 0xFE, 0xF0, 0xFE, 0xFC, 0xFE, 0xF8, 0xFE, 0xFC, 0xFE]
    );
}

/// Corrupt cases: rejected precisely, except the changed group data, which the unknown checksum
/// would have to catch: it is structurally valid and decodes (documented limitation).
#[test]
fn corrupt_cases() {
    use FrameError::*;
    let all = cases();
    let expect = |name: &str, error: FrameError, scan: Scan| {
        let case = vectors::case(&all, name);
        assert!(case.corrupt);
        assert_eq!(decode(&case.bytes), Err(error), "{name}");
        assert_eq!(eg4::scan(&case.bytes), scan, "{name}");
    };
    expect("corrupt_truncated", TooShort { need: 94, got: 60 }, Scan::Incomplete);
    expect("corrupt_wrong_terminator", BadEnd { expected: 0x0D, found: 0x0A }, Scan::Garbage { skip: 1 });
    expect(
        "lp4_corrupt_ascii_digit",
        BadChecksum { expected: 0xD15F, computed: 0xD161 },
        Scan::Garbage { skip: 1 },
    );
    let changed = vectors::case(&all, "corrupt_group_data_changed");
    assert_eq!(changed.expected["structure_valid"], json!(true));
    assert!(decode(&changed.bytes).is_ok(), "no checksum to catch it");
    assert_eq!(all.iter().filter(|c| c.corrupt).count(), 4);
}

/// Contract: truncation, byte flips, chunked feeding, trailing bytes, on every vector.
#[test]
fn contract_on_every_vector() {
    let all = cases();
    for case in &all {
        contract::truncation(&case.bytes, &eg4::scan, &decode);
        contract::byte_flips(&case.bytes, &eg4::scan, &decode);
        let frames = contract::chunked_equals_whole(&case.bytes, &eg4::scan);
        let valid = !case.corrupt || case.name == "corrupt_group_data_changed";
        assert_eq!(frames.len(), usize::from(valid), "{}", case.name);
        if valid {
            contract::trailing_bytes_stay(&case.bytes, &[0x7E, 0x01], &eg4::scan);
        }
    }
    let valid: Vec<&[u8]> = all.iter().filter(|c| !c.corrupt).map(|c| c.bytes.as_slice()).collect();
    assert_eq!(contract::chunked_equals_whole(&valid.concat(), &eg4::scan), valid);
}

fn status_groups() -> Vec<(u8, Vec<u16>)> {
    let all = cases();
    let bytes = &vectors::case(&all, "resp_status_readme_16s").bytes;
    eg4::groups(&bytes[4..bytes.len() - 2]).unwrap()
}

/// Structure stands in for the checksum: groups must tile the data, values must be plausible,
/// the address must be 1-15 and the expected one.
#[test]
fn structure_and_plausibility_are_checked() {
    let groups = status_groups();
    assert_eq!(groups.len(), 10);
    let good = eg4::encode_status(1, &groups);
    assert!(eg4::decode(&good, Some(1)).is_ok());
    assert_eq!(eg4::decode(&good, Some(2)), Err(FrameError::UnexpectedAddress { expected: 2, found: 1 }));
    let mut far = good.clone();
    far[1] = 0x20;
    assert_eq!(decode(&far), Err(FrameError::InvalidField { field: "address" }));
    let mut bad = groups.clone();
    bad[2].1 = vec![10_001]; // SoC 100.01 %
    assert_eq!(decode(&eg4::encode_status(1, &bad)), Err(FrameError::InvalidField { field: "soc" }));
    let mut bad = groups.clone();
    bad[0].1[3] = 5001; // a cell at 5 V
    assert_eq!(decode(&eg4::encode_status(1, &bad)), Err(FrameError::InvalidField { field: "cells" }));
    let mut bad = groups;
    bad[5].0 = 1; // group id repeated
    assert_eq!(decode(&eg4::encode_status(1, &bad)), Err(FrameError::InvalidField { field: "group_id" }));
    // A group count that runs past the data: the groups do not tile it.
    let mut untiled = good;
    untiled[5] = 0x11;
    assert_eq!(decode(&untiled), Err(FrameError::InvalidField { field: "groups" }));
}

/// Cell voltages lose their two alarm-flag bits; current and temperatures use their offsets.
#[test]
fn status_scaling() {
    let mut groups = status_groups();
    groups[0].1[0] = 0xC000 | 3300;
    groups[1].1 = vec![30_000 - 1234]; // charging 12.34 A
                                       // The last two words carry flag bits in the high byte (0x8042 and 0x2042 in the README
                                       // capture): the value is the low byte, with the same -50 °C offset.
    groups[4].1 = vec![45, 50, 70, 60, 0x8000 | 80, 0x2000 | 20];
    let b = decode(&eg4::encode_status(3, &groups)).unwrap().battery;
    assert_eq!(b.cell_voltages_v.as_ref().map(|c| c[0]), Some(3.3));
    assert_eq!(b.current_a, Some(12.34));
    // All six reach the model: T1..T4 and the 6th in the list, the 5th as the MOSFET sensor.
    assert_eq!(b.temperatures_c, Some(vec![-5.0, 0.0, 20.0, 10.0, -30.0]));
    assert_eq!(b.temperature_mos_c, Some(30.0));
}

/// ASCII frames: the length checksum nibble and the info length are checked.
#[test]
fn ascii_length_field() {
    assert_eq!(ascii::length_field(202), 0xA0CA);
    assert_eq!(ascii::length_field(0), 0);
    let frame = ascii::encode(0x20, 1, 0x4A, 0, "100110");
    assert!(decode(&frame).is_ok());
    let mut bad = frame.clone();
    bad[9..13].copy_from_slice(b"0006"); // right length, wrong LCHKSUM nibble
    let body = &bad[1..bad.len() - 5];
    let sum = format!("{:04X}", ascii::checksum(body));
    let n = bad.len();
    bad[n - 5..n - 1].copy_from_slice(sum.as_bytes());
    assert_eq!(decode(&bad), Err(FrameError::InvalidField { field: "lchksum" }));
}
