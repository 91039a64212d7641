//! JK RS485 (`4E 57`): every case of `tests/vectors/jk_rs485.json` through the codec, the
//! frame contract, id-tagged parsing that survives added and missing fields, both current
//! encodings, negative temperatures, every warning bit, and the simulator's encoder.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::jk_rs485::codec::{self as jk_rs485, encode_current, encode_temperature, Status};
use bms_bridge::protocol::{json::to_json, Decoded, FrameError, Scan};
use serde_json::{json, Value};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("jk_rs485.json")
}

/// Keys of `expected` that the decoded JSON carries under another name.
fn derived(decoded: &Decoded, key: &str) -> Option<Value> {
    let b = &decoded.battery;
    let temps = b.temperatures_c.as_ref();
    match key {
        "temperature_1_c" => temps?.first().map(|t| json!(t)),
        "temperature_2_c" => temps?.get(1).map(|t| json!(t)),
        "software_version" => b.firmware_version.as_ref().map(|v| json!(v)),
        "unique_id" => b.serial.as_ref().map(|v| json!(v)),
        _ => vectors::cell_stat(b, key),
    }
}

/// Every valid frame (requests and replies) scans whole and matches every expected value.
#[test]
fn every_valid_case_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| !c.corrupt) {
        assert_eq!(jk_rs485::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        let decoded = jk_rs485::decode(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        vectors::check_expected(case, &to_json(&decoded), &["meaning"], |k, _| derived(&decoded, k));
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// The request builder reproduces the captured "read all" and the generated "read" request.
#[test]
fn requests_equal_the_builder() {
    let all = cases();
    assert_eq!(jk_rs485::request_read_all(), vectors::case(&all, "req_read_all").bytes);
    assert_eq!(
        jk_rs485::request(jk_rs485::CMD_READ, 0),
        vectors::case(&all, "req_read_data_cmd03_generated").bytes
    );
}

/// Every corrupt case is rejected with the precise error.
#[test]
fn corrupt_cases_are_rejected_precisely() {
    use FrameError::*;
    let expected: &[(&str, FrameError, Scan)] = &[
        // The published text has `00` where `A0` belongs (byte 150): the length still fits, the
        // checksum catches it (0x4AB1 - 0x4A11 = 0xA0).
        (
            "bd6a17s6p_as_published_one_byte_short",
            BadChecksum { expected: 0x4AB1, computed: 0x4A11 },
            Scan::Garbage { skip: 1 },
        ),
        (
            "corrupt_bad_checksum",
            BadChecksum { expected: 0x54D0, computed: 0x54D1 },
            Scan::Garbage { skip: 1 },
        ),
        (
            "corrupt_payload_flip",
            BadChecksum { expected: 0x54D1, computed: 0x54F1 },
            Scan::Garbage { skip: 1 },
        ),
        ("corrupt_truncated", TooShort { need: 285, got: 200 }, Scan::Incomplete),
        ("corrupt_wrong_end_marker", BadEnd { expected: 0x68, found: 0x69 }, Scan::Garbage { skip: 1 }),
        ("corrupt_wrong_start", BadStart { expected: 0x57, found: 0x58 }, Scan::Garbage { skip: 1 }),
    ];
    let all = cases();
    let corrupt: Vec<_> = all.iter().filter(|c| c.corrupt).collect();
    assert_eq!(corrupt.len(), expected.len());
    for case in corrupt {
        let (_, error, scan) = expected.iter().find(|(n, ..)| *n == case.name).expect(&case.name);
        assert_eq!(jk_rs485::decode(&case.bytes), Err(*error), "{}", case.name);
        assert_eq!(jk_rs485::scan(&case.bytes), *scan, "{}", case.name);
    }
}

/// Contract: truncation, byte flips, chunked feeding, trailing bytes, on every vector.
#[test]
fn contract_on_every_vector() {
    let all = cases();
    for case in &all {
        contract::truncation(&case.bytes, &jk_rs485::scan, &jk_rs485::decode);
        contract::byte_flips(&case.bytes, &jk_rs485::scan, &jk_rs485::decode);
        let frames = contract::chunked_equals_whole(&case.bytes, &jk_rs485::scan);
        assert_eq!(frames.len(), usize::from(!case.corrupt), "{}", case.name);
        if !case.corrupt {
            contract::trailing_bytes_stay(&case.bytes, &[0x4E, 0x57, 0x01], &jk_rs485::scan);
        }
    }
    let valid: Vec<&[u8]> = all.iter().filter(|c| !c.corrupt).map(|c| c.bytes.as_slice()).collect();
    assert_eq!(contract::chunked_equals_whole(&valid.concat(), &jk_rs485::scan), valid);
}

/// Rebuilds a reply from `fields` (id + value bytes), header and trailer included.
fn reply(fields: &[u8]) -> Vec<u8> {
    jk_rs485::frame(jk_rs485::CMD_READ_ALL, 0, 1, fields)
}

fn faker_fields() -> Vec<u8> {
    let all = cases();
    let bytes = &vectors::case(&all, "faker14s_esphome").bytes;
    bytes[jk_rs485::HEADER..bytes.len() - jk_rs485::TRAILER].to_vec()
}

/// A field missing, or an unknown field at the end, does not shift the others.
#[test]
fn fields_are_found_by_id_not_offset() {
    let mut fields = faker_fields();
    let at = fields.windows(3).position(|w| w == [0x80, 0x00, 0x1D]).unwrap();
    fields.drain(at..at + 3); // no MOSFET temperature
    let d = jk_rs485::decode(&reply(&fields)).unwrap();
    assert_eq!(d.battery.temperature_mos_c, None);
    assert_eq!(d.battery.voltage_v, Some(53.59));
    assert_eq!(d.battery.current_a, Some(2.08));
    assert_eq!(d.battery.serial.as_deref(), Some("BT3072020120000200521001"));
    fields.extend_from_slice(&[0xEE, 1, 2, 3]); // a field from newer firmware
    let d = jk_rs485::decode(&reply(&fields)).unwrap();
    assert_eq!(d.battery.voltage_v, Some(53.59));
    assert_eq!(d.extra["unknown_field_id"], json!(0xEE));
    // A value cut short by the end of the data is an error, not a guess.
    let cut = reply(&[0x83, 0x14]);
    assert_eq!(jk_rs485::decode(&cut), Err(FrameError::InvalidField { field: "field_length" }));
}

/// Protocol version 0x01: bit 15 = charging; otherwise the 10000-offset form.
#[test]
fn both_current_encodings() {
    assert_eq!(jk_rs485::current_a(0x80D0, 1), 2.08);
    assert_eq!(jk_rs485::current_a(0x00D0, 1), -2.08);
    assert_eq!(jk_rs485::current_a(0x0000, 1), 0.0);
    assert!(jk_rs485::current_a(0x0000, 1).is_sign_positive());
    assert_eq!(jk_rs485::current_a(10_208, 0), 2.08);
    assert_eq!(jk_rs485::current_a(9_792, 0), -2.08);
    let mut fields = faker_fields();
    let at = fields.windows(2).position(|w| w == [0xC0, 0x01]).unwrap();
    fields[at + 1] = 0x00;
    let cur = fields.windows(3).position(|w| w == [0x84, 0x80, 0xD0]).unwrap();
    fields[cur + 1..cur + 3].copy_from_slice(&9_500u16.to_be_bytes());
    assert_eq!(jk_rs485::decode(&reply(&fields)).unwrap().battery.current_a, Some(-5.0));
    for amps in [-123.45, -0.01, 0.0, 0.5, 200.0] {
        assert_eq!(jk_rs485::current_a(encode_current(amps), 1), amps);
    }
}

/// Temperatures above 100 are negative: 101 = -1 °C.
#[test]
fn temperatures_above_100_are_negative() {
    assert_eq!(jk_rs485::temperature_c(29), 29.0);
    assert_eq!(jk_rs485::temperature_c(100), 100.0);
    assert_eq!(jk_rs485::temperature_c(101), -1.0);
    assert_eq!(jk_rs485::temperature_c(120), -20.0);
    for t in [-20.0, -1.0, 0.0, 45.0] {
        assert_eq!(jk_rs485::temperature_c(encode_temperature(t)), t);
    }
}

/// Every warning bit (0x8B) raises its alarm, and only that one.
#[test]
fn every_warning_bit() {
    let expect = [
        ("low_soc", AlarmLevel::Warning),
        ("high_internal_temperature", AlarmLevel::Alarm),
        ("high_voltage", AlarmLevel::Alarm),
        ("low_voltage", AlarmLevel::Alarm),
        ("high_temperature", AlarmLevel::Alarm),
        ("high_charge_current", AlarmLevel::Alarm),
        ("high_discharge_current", AlarmLevel::Alarm),
        ("cell_imbalance", AlarmLevel::Alarm),
        ("high_temperature", AlarmLevel::Alarm),
        ("low_temperature", AlarmLevel::Alarm),
        ("high_cell_voltage", AlarmLevel::Alarm),
        ("low_cell_voltage", AlarmLevel::Alarm),
        ("internal_failure", AlarmLevel::Alarm),
        ("internal_failure", AlarmLevel::Alarm),
    ];
    for (bit, (name, level)) in expect.iter().enumerate() {
        let status = Status { warnings: 1 << bit, ..sample() };
        let b = jk_rs485::decode(&status.encode()).unwrap().battery;
        for (alarm, _, got) in b.alarms.entries() {
            let want = if alarm == *name { Some(*level) } else { got.map(|_| AlarmLevel::Ok) };
            assert_eq!(got, want, "bit {bit}: {alarm}");
        }
    }
}

fn sample() -> Status {
    Status {
        cells_mv: vec![3301, 3299, 3305, 3298],
        temperatures_raw: [27, 105, 22],
        voltage_10mv: 1320,
        current_raw: encode_current(-12.5),
        soc_percent: 61,
        cycles: 42,
        warnings: 0,
        status: 0b101,
        capacity_ah: 280,
        software_version: "11.XW_S11.26___".into(),
        factory_id: "Input UserdaJK B2A8S20P".into(),
    }
}

/// The simulator's encoder round-trips through the decoder.
#[test]
fn status_round_trip() {
    let frame = sample().encode();
    assert_eq!(jk_rs485::scan(&frame), Scan::Frame { len: frame.len() });
    let b = jk_rs485::decode(&frame).unwrap().battery;
    assert_eq!(b.cell_voltages_v, Some(vec![3.301, 3.299, 3.305, 3.298]));
    assert_eq!(b.temperature_mos_c, Some(27.0));
    assert_eq!(b.temperatures_c, Some(vec![-5.0, 22.0]));
    assert_eq!((b.voltage_v, b.current_a, b.soc_percent), (Some(13.2), Some(-12.5), Some(61.0)));
    assert_eq!((b.charge_fet, b.discharge_fet), (Some(true), Some(false)));
    assert_eq!(b.nominal_capacity_ah, Some(280.0));
    assert_eq!(b.firmware_version.as_deref(), Some("11.XW S11.26"));
    assert_eq!(b.serial.as_deref(), Some("JK_B2A8S20P"));
    assert_eq!(b.cell_count, Some(4));
}
