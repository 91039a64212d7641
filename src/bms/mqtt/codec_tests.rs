//! The codec against the schema's own examples (docs/reference/sources/
//! dbus-serialbattery-docs-connect.md, copied verbatim into tests/mqtt/) and each bad input.

use super::*;

const MINIMAL: &str = include_str!("../../../tests/mqtt/minimal.json");
const FULL: &str = include_str!("../../../tests/mqtt/full.json");

fn reject(text: &str) -> MessageError {
    match decode(text.as_bytes()) {
        Ok(m) => panic!("accepted {text}: {m:?}"),
        Err(e) => e,
    }
}

/// The minimal example with one key replaced (or removed with `null`-less deletion).
fn minimal_with(key: &str, value: Option<Value>) -> String {
    let mut v: Value = serde_json::from_str(MINIMAL).unwrap();
    let map = v.as_object_mut().unwrap();
    match value {
        Some(value) => map.insert(key.to_owned(), value),
        None => map.remove(key),
    };
    v.to_string()
}

#[test]
fn minimal_example_decodes_with_every_optional_field_unknown() {
    let m = decode(MINIMAL.as_bytes()).unwrap();
    let b = &m.battery;
    assert_eq!(b.cell_count, Some(4));
    assert_eq!(b.nominal_capacity_ah, Some(100.0));
    assert_eq!(b.serial.as_deref(), Some("SN12345678"));
    assert_eq!((b.voltage_v, b.current_a, b.soc_percent), (Some(13.2), Some(5.2), Some(45.87)));
    assert_eq!(b.temperatures_c, Some(vec![25.5]));
    assert_eq!((b.charge_fet, b.discharge_fet), (Some(true), Some(true)));
    assert_eq!(b.cell_voltages_v, Some(vec![3.3, 3.31, 3.29, 3.3]));
    // Absent optional fields are unknown, not zero.
    assert_eq!(b.balancing_cells, None);
    assert_eq!((b.soh_percent, b.remaining_capacity_ah, b.temperature_mos_c), (None, None, None));
    assert_eq!((b.charge_current_limit_a, b.charge_voltage_limit_v, b.cycles), (None, None, None));
    assert_eq!(b.alarms, Alarms::default());
    assert!(m.extra.is_empty() && m.timestamp_s.is_none());
}

#[test]
fn full_example_decodes_every_field() {
    let m = decode(FULL.as_bytes()).unwrap();
    let b = &m.battery;
    assert_eq!(b.balancing_cells, Some(vec![false, true, false, false]));
    assert_eq!(b.balancing_cell_numbers(), Some(vec![2]));
    assert_eq!(b.temperatures_c, Some(vec![25.5, 25.6, 25.7, 25.8]));
    assert_eq!(b.temperature_mos_c, Some(30.0));
    assert_eq!(b.remaining_capacity_ah, Some(80.0));
    assert_eq!(b.soh_percent, Some(98.5));
    assert_eq!(b.balancer_enabled, Some(true));
    assert_eq!(b.charge_current_limit_a, Some(50.0));
    assert_eq!(b.discharge_current_limit_a, Some(60.0));
    assert_eq!(b.charge_voltage_limit_v, Some(14.6));
    assert_eq!(b.discharge_voltage_limit_v, Some(10.0));
    assert_eq!(b.hardware_version.as_deref(), Some("v1.2"));
    assert_eq!(b.production_date.as_deref(), Some("2025-12-25"));
    assert_eq!(b.cycles, Some(120));
    assert_eq!(b.alarms.fuse_blown, Some(AlarmLevel::Ok));
    assert_eq!(b.alarms.entries().iter().filter(|(_, _, l)| l.is_some()).count(), 15);
    // The schema example's heater (docs-connect "Generic MQTT battery data structure").
    let heater = crate::battery::Heater {
        heating: Some(false),
        enabled: Some(true),
        current_a: Some(2.05),
        power_w: Some(27.06),
        start_c: Some(2.0),
        stop_c: Some(5.0),
    };
    assert_eq!(b.heater, heater);
    assert_eq!(m.extra.get("heater_power"), Some(&Value::from(27.06)));
    assert_eq!(m.extra.get("heating"), Some(&Value::from(false)));
    assert_eq!(m.extra.get("history.charged_energy"), Some(&Value::from(360.0)));
    assert_eq!(m.extra.get("custom_field"), Some(&Value::from("Example custom value")));
}

#[test]
fn protection_levels_become_alarms() {
    let text = minimal_with("protection", Some(serde_json::json!({"high_cell_voltage": 2, "low_soc": 1})));
    let b = decode(text.as_bytes()).unwrap().battery;
    assert_eq!(b.alarms.high_cell_voltage, Some(AlarmLevel::Alarm));
    assert_eq!(b.alarms.low_soc, Some(AlarmLevel::Warning));
    assert_eq!(b.alarms.low_voltage, None);
    let bad = minimal_with("protection", Some(serde_json::json!({"fuse_blown": 3})));
    assert_eq!(reject(&bad).field, "protection.fuse_blown");
}

#[test]
fn every_mandatory_field_missing_is_named() {
    for key in [
        "cell_count",
        "capacity",
        "serial_number",
        "voltage",
        "current",
        "soc",
        "temperature_1",
        "charge_fet",
        "discharge_fet",
        "cells",
    ] {
        let e = reject(&minimal_with(key, None));
        assert_eq!((e.field.as_str(), e.reason.as_str()), (key, "mandatory field missing"));
    }
}

#[test]
fn wrong_types_are_named() {
    let e = reject(&minimal_with("voltage", Some(Value::from("13.2"))));
    assert_eq!((e.field.as_str(), e.reason.as_str()), ("voltage", "expected a number, got a string"));
    let e = reject(&minimal_with("charge_fet", Some(Value::from(1))));
    assert_eq!((e.field.as_str(), e.reason.as_str()), ("charge_fet", "expected true or false, got a number"));
    let e = reject(&minimal_with("cells", Some(serde_json::json!({"voltage": 3.3}))));
    assert_eq!(e.field, "cells");
    let e = reject(&minimal_with("cell_count", Some(Value::from(4.5))));
    assert_eq!(e.field, "cell_count");
}

#[test]
fn not_json_and_not_an_object_are_rejected() {
    assert!(reject("{\"voltage\": 13.2").reason.starts_with("not JSON"));
    assert_eq!(reject("[1,2]").reason, "expected a JSON object, got an array");
    // JSON has no NaN; a publisher writing one sends no JSON at all.
    assert!(reject(&MINIMAL.replace("13.2", "NaN")).reason.starts_with("not JSON"));
}

#[test]
fn cell_list_must_match_cell_count() {
    let e = reject(&minimal_with("cell_count", Some(Value::from(5))));
    assert_eq!((e.field.as_str(), e.reason.as_str()), ("cells", "4 cells listed but cell_count is 5"));
}

#[test]
fn implausible_values_are_rejected() {
    let e = reject(&minimal_with("soc", Some(Value::from(100.5))));
    assert_eq!((e.field.as_str(), e.reason.as_str()), ("soc", "100.5 % is outside 0 ..= 100 %"));
    assert_eq!(reject(&minimal_with("soc", Some(Value::from(-1)))).field, "soc");
    let low = MINIMAL.replacen("3.31", "0.49", 1);
    let e = reject(&low);
    assert_eq!((e.field.as_str(), e.reason.as_str()), ("cells[1].voltage", "0.49 V is outside 0.5 ..= 5 V"));
    assert_eq!(reject(&MINIMAL.replacen("3.29", "5.01", 1)).field, "cells[2].voltage");
    assert_eq!(reject(&minimal_with("cell_count", Some(Value::from(0)))).field, "cell_count");
    // 1e999 does not fit an f64: serde_json refuses it, so it never becomes infinity here.
    assert!(decode(MINIMAL.replace("13.2", "1e999").as_bytes()).is_err());
}

#[test]
fn timestamp_is_handed_on() {
    let m = decode(minimal_with("timestamp", Some(Value::from(1_766_774_400))).as_bytes()).unwrap();
    assert_eq!(m.timestamp_s, Some(1_766_774_400.0));
    assert_eq!(reject(&minimal_with("timestamp", Some(Value::from(-5)))).field, "timestamp");
}

#[test]
fn a_missing_lower_temperature_sensor_stops_the_list() {
    let text = minimal_with("temperature_3", Some(Value::from(30.0)));
    assert_eq!(decode(text.as_bytes()).unwrap().battery.temperatures_c, Some(vec![25.5]));
}
