//! JK PB: every case of `tests/vectors/jk_pb.json`: triggers rebuilt, acknowledgements
//! parsed, frames decoded to the expected values, the capture stream accepted only with the
//! acknowledgement of the polled address, corrupt frames rejected precisely; frame contract.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::jk_pb::codec as jk_pb;
use bms_bridge::protocol::{json::to_json, modbus, FrameError, Scan};
use serde_json::{json, Value};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("jk_pb.json")
}

fn derived(json: &Value, key: &str) -> Option<Value> {
    let e = &json["extra"];
    match key {
        "balancing" | "heating" | "vendor_id" | "hw_version" | "sw_version" => e.get(key).cloned(),
        "check_vendor_bytes_6_21" => e.get("vendor_id").cloned(),
        "check_hw_bytes_22_29" => e.get("hw_version").cloned(),
        "check_sw_bytes_30_37" => e.get("sw_version").cloned(),
        "serial_number" => e.get("serial_number").cloned(),
        "balancer_enabled" => e.get("balancer_enabled").cloned(),
        _ => None,
    }
}

#[test]
fn triggers_and_acknowledgements() {
    for case in cases().iter().filter(|c| c.bytes.len() == 11 || (c.bytes.len() == 8 && !c.corrupt)) {
        let e = &case.expected;
        let (address, register) =
            (e["address"].as_u64().unwrap() as u8, e["register"].as_u64().unwrap() as u16);
        if case.direction == "request" {
            assert_eq!(jk_pb::request(address, register), case.bytes, "{}", case.name);
        } else {
            assert_eq!(modbus::parse_write_ack(&case.bytes), Ok((address, register, 1)), "{}", case.name);
        }
        let json = to_json(&jk_pb::decode_any(&case.bytes).unwrap());
        vectors::check_expected(case, &json, &["meaning"], |_, _| None);
    }
}

#[test]
fn every_frame_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.bytes.len() == jk_pb::FRAME_LEN && !c.corrupt) {
        assert_eq!(jk_pb::scan(&case.bytes), Scan::Frame { len: 300 }, "{}", case.name);
        let decoded = jk_pb::decode(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let json = to_json(&decoded);
        vectors::check_expected(case, &json, &[], |k, _| derived(&json, k));
        // The heater in the model (/Heating, /Io/AllowToHeat) says what the source states.
        let heater = &decoded.battery.heater;
        if let Some(on) = case.expected.get("heating").and_then(Value::as_bool) {
            assert_eq!(heater.heating, Some(on), "{}", case.name);
        }
        if let Some(on) = case.expected.get("heater_enabled").and_then(Value::as_bool) {
            assert_eq!(heater.enabled, Some(on), "{}", case.name);
        }
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn the_capture_stream_needs_the_acknowledgement_of_the_polled_address() {
    let all = cases();
    let stream = &vectors::case(&all, "stream_frame_pad_ack").bytes;
    assert_eq!(jk_pb::scan_reply(stream), Scan::Frame { len: stream.len() });
    let d = jk_pb::decode_reply(stream, 3, jk_pb::REG_STATUS).unwrap();
    assert_eq!(d.extra["address"], json!(3));
    assert_eq!(d.battery.voltage_v, Some(52.695));
    // Cross-talk: the same reply when address 1 was polled, or another trigger, is rejected.
    assert_eq!(
        jk_pb::decode_reply(stream, 1, jk_pb::REG_STATUS).unwrap_err(),
        FrameError::UnexpectedAddress { expected: 1, found: 3 }
    );
    assert_eq!(
        jk_pb::decode_reply(stream, 3, jk_pb::REG_SETTINGS).unwrap_err(),
        FrameError::UnexpectedRegister { expected: 0x161E, found: 0x1620 }
    );
    assert_eq!(
        jk_pb::decode_reply(&stream[..300], 3, jk_pb::REG_STATUS).unwrap_err(),
        FrameError::MissingAck
    );
    let mut bad_ack = stream.clone();
    bad_ack[308] ^= 0xFF;
    assert!(matches!(
        jk_pb::decode_reply(&bad_ack, 3, jk_pb::REG_STATUS),
        Err(FrameError::BadChecksum { .. })
    ));
    // A CH341 echo of our trigger before the reply is skipped.
    let mut echoed = jk_pb::request(3, jk_pb::REG_STATUS);
    echoed.extend_from_slice(stream);
    let (reply, _) = bms_bridge::protocol::find_frame(&echoed, jk_pb::scan_reply).unwrap();
    assert_eq!(reply, &stream[..]);
}

#[test]
fn corrupt_cases_are_rejected_precisely() {
    let all = cases();
    let err = |name: &str| jk_pb::decode_any(&vectors::case(&all, name).bytes).unwrap_err();
    assert!(matches!(err("corrupt_bad_checksum"), FrameError::BadChecksum { .. }));
    assert!(matches!(err("corrupt_payload_flip"), FrameError::BadChecksum { .. }));
    assert_eq!(err("corrupt_truncated_299"), FrameError::TooShort { need: 300, got: 299 });
    assert_eq!(err("corrupt_ack_bad_crc"), FrameError::BadChecksum { expected: 0x5605, computed: 0xA905 });
}

#[test]
fn alarm_bits_map_to_the_right_alarms() {
    let all = cases();
    let mut frame = vectors::case(&all, "rs485_cellinfo_type02_addr3").bytes.clone();
    frame[167] = 1 << 3 | 1 << 4 | 1 << 6; // bits 11 cell UVP, 12 battery UVP, 14 discharge SCP
    frame[299] = frame[..299].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let a = jk_pb::decode(&frame).unwrap().battery.alarms;
    assert_eq!(a.low_cell_voltage, Some(AlarmLevel::Alarm));
    assert_eq!(a.low_voltage, Some(AlarmLevel::Alarm));
    assert_eq!(a.low_soc, None);
    assert_eq!(a.high_discharge_current, Some(AlarmLevel::Alarm));
    assert_eq!(a.high_cell_voltage, Some(AlarmLevel::Ok));
}

#[test]
fn contract_holds_for_every_frame() {
    for case in cases().iter().filter(|c| c.bytes.len() == jk_pb::FRAME_LEN && !c.corrupt) {
        contract::truncation(&case.bytes, &jk_pb::scan, &jk_pb::decode);
        contract::byte_flips(&case.bytes, &jk_pb::scan, &jk_pb::decode);
        assert_eq!(contract::chunked_equals_whole(&case.bytes, &jk_pb::scan), vec![case.bytes.clone()]);
        contract::trailing_bytes_stay(&case.bytes, &[0x00, 0x03], &jk_pb::scan);
    }
}
