//! Renogy: every case of `tests/vectors/renogy.json` (requests rebuilt, responses decoded to
//! the expected values, the exception reported as such, corrupt frames rejected precisely) and
//! the frame contract.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::bms::renogy::codec::{self as renogy, Block};
use bms_bridge::protocol::{json::to_json, modbus, Decoded, FrameError};
use serde_json::{json, Value};
use support::{contract, vectors};

fn decode_any(frame: &[u8]) -> Result<Decoded, FrameError> {
    renogy::decode(frame, None)
}

/// "TempSensor(17.0, <T.GENERIC: 0>)" -> 17.0
fn temp_text(v: &Value) -> Option<f64> {
    v.as_str()?.strip_prefix("TempSensor(")?.split(',').next()?.parse().ok()
}

fn derived(json: &Value, key: &str, _want: &Value) -> Option<Value> {
    match key {
        "full_capacity_ah_int" => json["full_capacity_ah"].as_f64().map(|v| json!(v as i64)),
        "problem_code_aiobmsble" => {
            let e = &json["extra"];
            let words =
                [&e["cell_voltage_alarm_bits"], &e["cell_temperature_alarm_bits"], &e["other_alarm_word"]];
            Some(json!(words.iter().map(|w| w.as_u64().unwrap_or(1)).sum::<u64>()))
        }
        "serial_number" => json["extra"].get("serial_number").cloned(),
        _ => None,
    }
}

#[test]
fn every_request_is_what_the_builder_sends() {
    for case in vectors::load("renogy.json").iter().filter(|c| c.direction == "request") {
        let e = &case.expected;
        let block = Block {
            name: "any",
            start: e["start_register"].as_u64().unwrap() as u16,
            count: e["register_count"].as_u64().unwrap() as u16,
        };
        assert_eq!(renogy::request(e["address"].as_u64().unwrap() as u8, block), case.bytes, "{}", case.name);
        let parsed = modbus::parse_request(&case.bytes).unwrap();
        assert_eq!(u64::from(parsed.function), e["function"].as_u64().unwrap(), "{}", case.name);
    }
}

#[test]
fn every_response_matches_expected() {
    let mut checked = 0;
    for case in vectors::load("renogy.json").iter().filter(|c| c.direction == "response" && !c.corrupt) {
        if case.name == "exception_illegal_data_address" {
            assert_eq!(
                renogy::decode(&case.bytes, Some(0x30)).unwrap_err(),
                FrameError::Exception { code: 2 }
            );
            assert_eq!(case.expected["function"], json!(case.bytes[1]));
            checked += 1;
            continue;
        }
        let decoded =
            renogy::decode(&case.bytes, Some(0x30)).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let json = to_json(&decoded);
        // Temperatures are written as aiobmsble's TempSensor(...) text: compared as numbers.
        vectors::check_expected(case, &json, &["temperatures_c"], |k, want| derived(&json, k, want));
        if let Some(want) = case.expected.get("temperatures_c") {
            let want: Vec<f64> = want.as_array().unwrap().iter().filter_map(temp_text).collect();
            assert!(vectors::same(&json!(want), &json["temperatures_c"]), "{}", case.name);
        }
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn corrupt_frames_are_rejected_precisely() {
    let all = vectors::load("renogy.json");
    let err = |name: &str| renogy::decode(&vectors::case(&all, name).bytes, Some(0x30)).unwrap_err();
    assert!(matches!(err("corrupt_bad_crc"), FrameError::BadChecksum { .. }));
    assert_eq!(err("corrupt_truncated"), FrameError::TooShort { need: 19, got: 12 });
    assert_eq!(err("wrong_address_valid_crc"), FrameError::UnexpectedAddress { expected: 0x30, found: 0x31 });
}

#[test]
fn contract_holds_for_every_response() {
    for case in vectors::load("renogy.json").iter().filter(|c| c.direction == "response" && !c.corrupt) {
        contract::truncation(&case.bytes, &modbus::scan_response, &decode_any);
        contract::byte_flips(&case.bytes, &modbus::scan_response, &decode_any);
        assert_eq!(
            contract::chunked_equals_whole(&case.bytes, &modbus::scan_response),
            vec![case.bytes.clone()]
        );
        contract::trailing_bytes_stay(&case.bytes, &[0x30, 0x03], &modbus::scan_response);
    }
}

#[test]
fn all_cells_and_negative_temperatures_decode() {
    let snapshot =
        renogy::Snapshot { cells_v: vec![3.3; 8], temperatures_c: vec![-5.5, 2.0], ..Default::default() };
    let regs = snapshot.registers();
    let d = renogy::decode_registers(renogy::CELLS, &regs[..34]).unwrap();
    assert_eq!(d.battery.cell_voltages_v.as_ref().map(Vec::len), Some(8));
    assert_eq!(d.battery.temperatures_c, Some(vec![-5.5, 2.0]));
}

/// A 16-byte reply to 5122 is the model string, not the status block (which has the same size):
/// with the register asked it is exact; without, text is recognised and never read as alarms.
#[test]
fn the_model_string_is_a_string() {
    let reply = bms_bridge::protocol::modbus::read_response(
        0x30,
        &b"RBT100LFP12-BT\0\0".chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>(),
    );
    let at = bms_bridge::bms::decode_register_named("renogy", 5122, &reply).unwrap();
    assert_eq!(at.battery.model.as_deref(), Some("RBT100LFP12-BT"));
    assert_eq!(at.battery.alarms, Default::default());
    let guessed = bms_bridge::bms::decode_named("renogy", &reply).unwrap();
    assert_eq!(guessed.battery.model.as_deref(), Some("RBT100LFP12-BT"));
    assert_eq!(guessed.battery.alarms, Default::default(), "alarms read out of ASCII");
    // The status block decoded at its register still gives its alarms and FETs.
    let status = bms_bridge::protocol::modbus::read_response(0x30, &[0, 0, 0, 0, 0, 0, 0x0006, 0]);
    let d = bms_bridge::bms::decode_register_named("renogy", 5100, &status).unwrap();
    assert_eq!(d.battery.charge_fet, Some(true));
    assert!(bms_bridge::bms::decode_register_named("renogy", 4999, &status).is_err());
    assert!(bms_bridge::bms::decode_register_named("jbd", 5100, &status)
        .unwrap_err()
        .to_string()
        .contains("--register is for Modbus"));
}
