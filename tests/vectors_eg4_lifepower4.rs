//! EG4 LifePower4: every case of `tests/vectors/eg4_lifepower4.json` (a real analog reply and
//! the requests from a vendor-tool log, EG4's document examples), the layout checks that do not
//! depend on bms-bridge's reading of the labels, the poll's decoders, and the frame contract.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::bms::eg4_lifepower::codec as eg4_binary;
use bms_bridge::bms::eg4_lifepower4::codec as lp4;
use bms_bridge::protocol::{json::to_json, Decoded, FrameError, Scan};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("eg4_lifepower4.json")
}

fn bytes(name: &str) -> Vec<u8> {
    vectors::case(&cases(), name).bytes.clone()
}

fn decode(bytes: &[u8]) -> Result<Decoded, FrameError> {
    lp4::decode(bytes)
}

/// Every valid case matches every expected value (computed by hand from EG4's layout).
#[test]
fn every_valid_case_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| !c.corrupt) {
        assert_eq!(lp4::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        let decoded = decode(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        vectors::check_expected(case, &to_json(&decoded), &[], |_, _| None);
        // The LifePower decoder reads the same frames the same way (one bus, both protocols).
        let binary = eg4_binary::decode(&case.bytes, None).unwrap();
        assert_eq!(binary.battery, decoded.battery, "{}", case.name);
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// The real capture against itself: what the pack says twice must agree (pack voltage and the
/// cell sum, the BMS's min/max cell words and the cell list, remaining/full and the SoC word).
/// These hold whatever the labels: they are the evidence for the layout and for SoC-then-SoH.
#[test]
fn the_real_capture_is_consistent_with_itself() {
    let d = decode(&bytes("lp4_resp_analog_0x42_addr1_16s")).unwrap();
    let b = &d.battery;
    let cells = b.cell_voltages_v.clone().unwrap();
    let sum: f64 = cells.iter().sum();
    assert!((sum - b.voltage_v.unwrap()).abs() < 0.01, "cells {sum} V, pack {:?}", b.voltage_v);
    let mv = |key: &str| d.extra[key].as_f64().unwrap() / 1000.0;
    assert_eq!(b.max_cell().map(|(_, v)| v), Some(mv("bms_max_cell_mv")));
    assert_eq!(b.min_cell().map(|(_, v)| v), Some(mv("bms_min_cell_mv")));
    let ratio = 100.0 * b.remaining_capacity_ah.unwrap() / b.full_capacity_ah.unwrap();
    assert!(
        (ratio - b.soc_percent.unwrap()).abs() < 1.0,
        "remaining/full {ratio} % vs SoC {:?}",
        b.soc_percent
    );
    assert!((ratio - b.soh_percent.unwrap()).abs() > 50.0, "the other word is not the SoC");
}

/// The requests of the vendor tool, and the poll's decoders on the replies.
#[test]
fn requests_and_poll_decoders() {
    assert_eq!(lp4::request(1, lp4::CID2_ANALOG), bytes("lp4_req_analog_0x42_addr1"));
    assert_eq!(lp4::request(1, lp4::CID2_ALARM), bytes("lp4_req_alarm_0x44_addr1"));
    let real = bytes("lp4_resp_analog_0x42_addr1_16s");
    let b = lp4::decode_analog(&real, 1).unwrap();
    assert_eq!((b.soc_percent, b.cycles, b.current_a), (Some(15.0), Some(402), Some(2.16)));
    assert_eq!(lp4::decode_analog(&real, 2), Err(FrameError::UnexpectedAddress { expected: 2, found: 1 }));
    assert!(lp4::decode_alarm(&real, 1).is_err(), "an analog reply is not an alarm reply");
    let alarm = bytes("lp4_doc_resp_alarm_0x44_addr1");
    let a = lp4::decode_alarm(&alarm, 1).unwrap();
    assert_eq!((a.charge_fet, a.discharge_fet), (Some(true), Some(true)));
    assert!(lp4::decode_analog(&alarm, 1).is_err(), "an alarm reply is not an analog reply");
}

/// Corrupt: one digit changed is a checksum error.
#[test]
fn corrupt_digit_is_a_checksum_error() {
    let all = cases();
    let bad = vectors::case(&all, "lp4_corrupt_ascii_digit");
    assert!(matches!(decode(&bad.bytes), Err(FrameError::BadChecksum { expected: 0xD15F, .. })));
    assert_eq!(lp4::scan(&bad.bytes), Scan::Garbage { skip: 1 });
}

/// Contract: truncation, byte flips, chunked feeding, trailing bytes, on every vector.
#[test]
fn contract_on_every_vector() {
    let all = cases();
    for case in &all {
        contract::truncation(&case.bytes, &lp4::scan, &decode);
        contract::byte_flips(&case.bytes, &lp4::scan, &decode);
        let frames = contract::chunked_equals_whole(&case.bytes, &lp4::scan);
        assert_eq!(frames.len(), usize::from(!case.corrupt), "{}", case.name);
        if !case.corrupt {
            contract::trailing_bytes_stay(&case.bytes, b"~20", &lp4::scan);
        }
    }
}
