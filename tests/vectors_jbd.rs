//! JBD classic: every case of `tests/vectors/jbd.json` through the codec, the frame contract,
//! and encoder round trips.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::jbd::codec::{self as jbd, BasicInfo};
use bms_bridge::protocol::{checksum, find_frame, json::to_json, Decoded, FrameError, Scan};
use serde_json::{json, Value};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("jbd.json")
}

/// Keys of `expected` that the decoded JSON does not carry directly.
fn derived(decoded: &Decoded, key: &str) -> Option<Value> {
    let b = &decoded.battery;
    match key {
        "software_version" => b.firmware_version.as_ref()?.parse::<f64>().ok().map(|v| json!(v)),
        _ => vectors::cell_stat(b, key),
    }
}

/// Every non-corrupt response decodes and matches every expected value.
#[test]
fn every_response_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.direction == "response" && !c.corrupt) {
        assert_eq!(jbd::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        let decoded = jbd::decode(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        vectors::check_expected(case, &to_json(&decoded), &[], |k, _| derived(&decoded, k));
        checked += 1;
    }
    assert_eq!(checked, 15);
}

/// Every request equals what the builders produce.
#[test]
fn every_request_equals_the_builder() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.direction == "request") {
        let register = case.expected["register"].as_u64().unwrap() as u8;
        let op = case.expected["op"].as_str().unwrap();
        let built = if op.starts_with("read") {
            jbd::request_read(register).to_vec()
        } else {
            jbd::request_write(register, &vectors::hex(case.expected["data_hex"].as_str().unwrap()))
        };
        assert_eq!(built, case.bytes, "{}", case.name);
        assert_eq!(jbd::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        checked += 1;
    }
    assert_eq!(checked, 8);
    let all = cases();
    assert_eq!(jbd::request_mos_control(true, false), vectors::case(&all, "req_mos_charge_off").bytes);
    assert_eq!(jbd::request_mos_control(false, true), vectors::case(&all, "req_mos_discharge_off").bytes);
    assert_eq!(jbd::request_mos_control(false, false), vectors::case(&all, "req_mos_both_on").bytes);
}

/// Every corrupt case is rejected with the precise error; none decodes into values.
#[test]
fn corrupt_cases_are_rejected_precisely() {
    use FrameError::*;
    let expected: &[(&str, FrameError, Scan)] = &[
        ("real_fragment_basic_first_read_truncated", TooShort { need: 36, got: 7 }, Scan::Incomplete),
        (
            "real_fragment_basic_second_read_no_header",
            BadStart { expected: 0xDD, found: 0x00 },
            Scan::Garbage { skip: 29 },
        ),
        (
            "real_leading_garbage_then_hwinfo",
            BadStart { expected: 0xDD, found: 0x0F },
            Scan::Garbage { skip: 2 },
        ),
        (
            "corrupt_bad_checksum",
            BadChecksum { expected: 0xFA8C, computed: 0xFA8D },
            Scan::Garbage { skip: 1 },
        ),
        (
            "corrupt_payload_bit_flip",
            BadChecksum { expected: 0xFA8D, computed: 0xFA7D },
            Scan::Garbage { skip: 1 },
        ),
        ("corrupt_truncated", TooShort { need: 36, got: 31 }, Scan::Incomplete),
        ("corrupt_wrong_end_byte", BadEnd { expected: 0x77, found: 0xDD }, Scan::Garbage { skip: 1 }),
        // Checksum before status: the status byte is covered by the (wrong) checksum.
        (
            "corrupt_status_error",
            BadChecksum { expected: 0xFA8D, computed: 0xFA0D },
            Scan::Garbage { skip: 1 },
        ),
        // Ends in 0x77 but the length byte says 10: a wrong length, not a cut-off frame. A stream
        // scanner cannot know that yet and waits for the 17 bytes the header announces.
        ("corrupt_length_mismatch", LengthMismatch { declared: 10, actual: 8 }, Scan::Incomplete),
    ];
    let all = cases();
    let corrupt: Vec<_> = all.iter().filter(|c| c.corrupt).collect();
    assert_eq!(corrupt.len(), expected.len(), "a corrupt case has no expectation here");
    for case in corrupt {
        let (_, error, scan) = expected.iter().find(|(n, ..)| *n == case.name).expect(&case.name);
        assert_eq!(jbd::decode(&case.bytes), Err(*error), "{}", case.name);
        assert_eq!(jbd::scan(&case.bytes), *scan, "{}", case.name);
        assert!(!case.expected["valid"].as_bool().unwrap_or(false));
    }
}

/// The leading-garbage read decodes after resync; the second read alone never yields a frame.
#[test]
fn resync_after_leading_garbage() {
    let all = cases();
    let case = vectors::case(&all, "real_leading_garbage_then_hwinfo");
    let (frame, next) = find_frame(&case.bytes, jbd::scan).expect("frame after garbage");
    assert_eq!(next, case.bytes.len());
    let decoded = jbd::decode(frame).unwrap();
    vectors::check_expected(case, &to_json(&decoded), &["valid_after_resync"], |_, _| None);
    let fragment = vectors::case(&all, "real_fragment_basic_second_read_no_header");
    assert!(find_frame(&fragment.bytes, jbd::scan).is_none());
    // The two real reads together: first fragment + second read = the whole basic-info frame.
    let first = vectors::case(&all, "real_fragment_basic_first_read_truncated");
    let mut buf = Vec::new();
    let mut frames = contract::feed(&mut buf, &first.bytes, &jbd::scan);
    frames.extend(contract::feed(&mut buf, &fragment.bytes, &jbd::scan));
    assert_eq!(frames, vec![vectors::case(&all, "sp04s034_basic_jbdtool").bytes.clone()]);
}

/// A status byte != 0 with a correct checksum is a `Status` error.
#[test]
fn status_error_with_valid_checksum() {
    let frame = jbd::encode_response(jbd::REG_BASIC_INFO, 0x80, &[]);
    assert_eq!(jbd::scan(&frame), Scan::Frame { len: 7 });
    assert_eq!(jbd::decode(&frame), Err(FrameError::Status { status: 0x80 }));
}

/// The specific decoders refuse another register.
#[test]
fn specific_decoders_check_the_register() {
    let all = cases();
    let cells = &vectors::case(&all, "sp04s034_cells_esphome").bytes;
    assert_eq!(
        jbd::decode_basic_info(cells),
        Err(FrameError::UnexpectedCommand { expected: 0x03, found: 0x04 })
    );
    assert_eq!(
        jbd::decode_cells(cells),
        jbd::decode(cells).map(|mut d| {
            d.extra.clear();
            d
        })
    );
    let hw = &vectors::case(&all, "sp04s034_hwinfo_esphome").bytes;
    assert_eq!(jbd::decode_hardware(hw).unwrap().battery.model.as_deref(), Some("JBD-SP04S034-L4S-200A-B-U"));
    let basic = &vectors::case(&all, "sp04s034_basic_esphome").bytes;
    assert!(jbd::decode_basic_info(basic).is_ok());
    assert!(matches!(jbd::decode_hardware(basic), Err(FrameError::UnexpectedCommand { .. })));
}

/// Model fields of the basic-info vector beyond the JSON: alarms, balancing, firmware.
#[test]
fn basic_info_model_fields() {
    let all = cases();
    let d = jbd::decode(&vectors::case(&all, "sp04s034_basic_esphome").bytes).unwrap();
    let b = &d.battery;
    assert_eq!(b.firmware_version.as_deref(), Some("8.0"));
    assert_eq!(b.balancing_cells, Some(vec![false; 4]));
    assert_eq!(b.temperature_mos_c, None, "NTC0 is not assumed to be the MOSFET");
    let reported: Vec<_> = b.alarms.entries().iter().filter(|e| e.2.is_some()).map(|e| e.0).collect();
    assert_eq!(reported.len(), 11, "13 protection bits map onto 11 alarms: {reported:?}");
    assert!(b.alarms.entries().iter().all(|e| e.2.is_none() || e.2 == Some(AlarmLevel::Ok)));
    assert_eq!(d.extra["current_unit_ma"], json!(10));
}

fn sample_basic_info() -> BasicInfo {
    BasicInfo {
        voltage_10mv: 5317,
        current: -604,
        remaining_capacity: 46871,
        nominal_capacity: 56000,
        cycles: 321,
        production_date: jbd::pack_production_date(2023, 11, 5),
        balance_bits: 0x0001_8001,
        protection_bits: 0,
        software_version: 0x23,
        rsoc: 84,
        charge_fet: true,
        discharge_fet: false,
        cell_count: 17,
        ntc_0p1k: vec![2731, 2956, 2600],
        high_current_units: false,
    }
}

/// BasicInfo encodes into a frame that decodes to the same values.
#[test]
fn basic_info_round_trip() {
    let frame = sample_basic_info().encode();
    assert_eq!(jbd::scan(&frame), Scan::Frame { len: frame.len() });
    let d = jbd::decode(&frame).unwrap();
    let b = &d.battery;
    assert_eq!(b.voltage_v, Some(53.17));
    assert_eq!(b.current_a, Some(-6.04));
    assert_eq!(b.remaining_capacity_ah, Some(468.71));
    assert_eq!(b.nominal_capacity_ah, Some(560.0));
    assert_eq!(b.cycles, Some(321));
    assert_eq!(b.production_date.as_deref(), Some("2023-11-05"));
    assert_eq!(b.balancing_cell_numbers(), Some(vec![1, 16, 17]));
    assert_eq!(b.firmware_version.as_deref(), Some("2.3"));
    assert_eq!(b.soc_percent, Some(84.0));
    assert_eq!((b.charge_fet, b.discharge_fet), (Some(true), Some(false)));
    assert_eq!(b.cell_count, Some(17));
    assert_eq!(b.temperatures_c, Some(vec![0.0, 22.5, -13.1]));
}

/// The encoder reproduces real frames byte for byte.
#[test]
fn encoders_reproduce_vector_frames() {
    let all = cases();
    let basic = BasicInfo {
        voltage_10mv: 1560,
        current: 0,
        remaining_capacity: 498,
        nominal_capacity: 500,
        cycles: 0,
        production_date: jbd::pack_production_date(2022, 3, 28),
        balance_bits: 0,
        protection_bits: 0,
        software_version: 0x80,
        rsoc: 100,
        charge_fet: true,
        discharge_fet: true,
        cell_count: 4,
        ntc_0p1k: vec![2955, 2954, 2948],
        high_current_units: false,
    };
    assert_eq!(basic.encode(), vectors::case(&all, "sp04s034_basic_esphome").bytes);
    assert_eq!(
        jbd::encode_cells(&[3909, 3901, 3895, 3901]),
        vectors::case(&all, "sp04s034_cells_esphome").bytes
    );
    assert_eq!(
        jbd::encode_hardware("JBD-SP04S034-L4S-200A-B-U"),
        vectors::case(&all, "sp04s034_hwinfo_esphome").bytes
    );
    assert_eq!(jbd::encode_response(0xE1, 0, &[]), vectors::case(&all, "resp_write_ack_0xE1").bytes);
}

/// Extended frames with bit 7 after the NTCs carry current and capacities in 100 mA / 100 mAh.
#[test]
fn extended_frame_switches_to_100ma_units() {
    let info = BasicInfo {
        current: -1234,
        remaining_capacity: 6280,
        nominal_capacity: 6280,
        high_current_units: true,
        ..sample_basic_info()
    };
    let d = jbd::decode(&info.encode()).unwrap();
    assert_eq!(d.battery.current_a, Some(-123.4));
    assert_eq!(d.battery.remaining_capacity_ah, Some(628.0));
    assert_eq!(d.battery.nominal_capacity_ah, Some(628.0));
    assert_eq!(d.extra["current_unit_ma"], json!(100));
    // The 34-byte vector has 0x00 after its NTC: 10 mA units.
    let all = cases();
    let d = jbd::decode(&vectors::case(&all, "dp04s007_basic_ble_extended34").bytes).unwrap();
    assert_eq!(d.extra["current_unit_ma"], json!(10));
}

/// Every protection bit reaches its alarm at level 2; bit 15 of the balance word is cell 16.
#[test]
fn protection_bits_and_unsigned_balance_bits() {
    let expect = [
        "high_cell_voltage",
        "low_cell_voltage",
        "high_voltage",
        "low_voltage",
        "high_charge_temperature",
        "low_charge_temperature",
        "high_temperature",
        "low_temperature",
        "high_charge_current",
        "high_discharge_current",
        "high_discharge_current",
        "internal_failure",
        "internal_failure",
    ];
    for (bit, name) in expect.iter().enumerate() {
        let info = BasicInfo { protection_bits: 1 << bit, balance_bits: 0x8000, ..sample_basic_info() };
        let b = jbd::decode(&info.encode()).unwrap().battery;
        for (alarm, _, level) in b.alarms.entries() {
            let want = if alarm == *name { Some(AlarmLevel::Alarm) } else { level.map(|_| AlarmLevel::Ok) };
            assert_eq!(level, want, "bit {bit}: {alarm}");
        }
        assert_eq!(b.balancing_cell_numbers(), Some(vec![16]));
    }
}

/// Bad payloads give InvalidField, not a panic or a half-filled battery.
#[test]
fn malformed_payloads_are_invalid_fields() {
    let short = jbd::encode_response(jbd::REG_BASIC_INFO, 0, &[0; 22]);
    assert_eq!(jbd::decode(&short), Err(FrameError::InvalidField { field: "basic_info_length" }));
    let mut p = vec![0u8; 23];
    p[22] = 3; // three NTCs announced, none present
    let frame = jbd::encode_response(jbd::REG_BASIC_INFO, 0, &p);
    assert_eq!(jbd::decode(&frame), Err(FrameError::InvalidField { field: "ntc_count" }));
    let odd = jbd::encode_response(jbd::REG_CELLS, 0, &[0x0F, 0x45, 0x0F]);
    assert_eq!(jbd::decode(&odd), Err(FrameError::InvalidField { field: "cells" }));
    assert_eq!(jbd::decode(&[]), Err(FrameError::TooShort { need: 7, got: 0 }));
    let long = [jbd::request_read(3).as_slice(), &[0x77]].concat();
    assert_eq!(jbd::decode(&long), Err(FrameError::LengthMismatch { declared: 0, actual: 1 }));
    assert_eq!(checksum::jbd(&[]), 0);
}

/// Contract: truncation, byte flips, chunked feeding, trailing bytes, on every vector.
#[test]
fn contract_on_every_vector() {
    let all = cases();
    for case in &all {
        contract::truncation(&case.bytes, &jbd::scan, &jbd::decode);
        contract::byte_flips(&case.bytes, &jbd::scan, &jbd::decode);
        let frames = contract::chunked_equals_whole(&case.bytes, &jbd::scan);
        let valid = !case.corrupt || case.name == "real_leading_garbage_then_hwinfo";
        assert_eq!(frames.len(), usize::from(valid), "{}", case.name);
        if !case.corrupt {
            contract::trailing_bytes_stay(&case.bytes, &[0xDD, 0x03, 0x00], &jbd::scan);
            contract::trailing_bytes_stay(&case.bytes, &case.bytes, &jbd::scan);
        }
    }
    // A stream of every valid vector back to back gives every frame, whole and chunked.
    let valid: Vec<&[u8]> = all.iter().filter(|c| !c.corrupt).map(|c| c.bytes.as_slice()).collect();
    let stream = valid.concat();
    let frames = contract::chunked_equals_whole(&stream, &jbd::scan);
    assert_eq!(frames, valid);
}

/// The comparison itself fails on a wrong value and on a key nothing decodes.
#[test]
fn comparison_catches_wrong_and_unmapped_keys() {
    let all = cases();
    let mut case = vectors::case(&all, "sp04s034_cells_esphome").clone();
    let decoded = jbd::decode(&case.bytes).unwrap();
    let json = to_json(&decoded);
    case.expected = json!({ "cells_v": [3.909, 3.901, 3.895, 3.900] });
    let wrong = std::panic::catch_unwind(|| vectors::check_expected(&case, &json, &[], |_, _| None));
    assert!(wrong.is_err(), "a wrong cell voltage passed");
    case.expected = json!({ "no_such_key": 1 });
    let unmapped = std::panic::catch_unwind(|| vectors::check_expected(&case, &json, &[], |_, _| None));
    assert!(unmapped.is_err(), "an unmapped key passed");
    case.expected = json!({ "cells_v": [3.909, 3.901, 3.895, 3.9010000001] });
    vectors::check_expected(&case, &json, &[], |_, _| None);
}
