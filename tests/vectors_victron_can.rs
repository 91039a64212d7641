//! Victron/Pylontech CAN dialect: every case of `tests/vectors/victron_can.json`.

mod support {
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::victron_can::codec::{self as victron_can, Options};
use bms_bridge::protocol::json::to_json;
use serde_json::{json, Value};
use support::vectors;

fn can_id(name: &str) -> u32 {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/victron_can.json"),
    )
    .unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    let case = cases.iter().find(|c| c["name"] == name).unwrap();
    u32::from_str_radix(case["can_id"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn decode(name: &str, options: &Options) -> (vectors::Case, Value, bms_bridge::battery::Battery) {
    let all = vectors::load("victron_can.json");
    let case = vectors::case(&all, name).clone();
    let d = victron_can::decode(can_id(name), &case.bytes, options).unwrap_or_else(|e| panic!("{name}: {e}"));
    (case, to_json(&d), d.battery)
}

/// Translations from the vectors' names to ours.
fn derived(json: &Value) -> impl Fn(&str, &Value) -> Option<Value> + '_ {
    move |key, _| match key {
        "voltage_v_0p01" => json.get("voltage_v").cloned(),
        "soc_hires_raw_bytes4_5" => json["extra"].get("soc_hires_raw").cloned(),
        "battery_model_u16" => None,
        "battery_model_ascii" => json["extra"].get("chemistry").cloned(),
        "online_capacity_ah" => json.get("full_capacity_ah").cloned(),
        "module_count" => json["extra"].get("module_count").cloned(),
        "temperature_c" => json["extra"].get("temperature_c").cloned(),
        _ => None,
    }
}

#[test]
fn every_standard_case_matches() {
    let plain = Options::default();
    let ignore = ["reporter_raw_reading", "reporter_reading", "dbus_serialbattery_decode", "note"];
    for case in vectors::load("victron_can.json") {
        if case.name.starts_with("discover_354") || case.name.starts_with("discover_356") {
            continue;
        }
        let (case, json, _) = decode(&case.name, &plain);
        let mut ignore = ignore.to_vec();
        // The dialect gives bytes 0-1 of 0x35F as two ASCII chars; the number is the same bytes.
        ignore.push("battery_model_u16");
        // DLC 6: the DVL is absent (null), checked below.
        ignore.push("discharge_voltage_limit_v");
        // 0x35A items are written "10 (OK)": the 2-bit slot as decoded, then a comment.
        let slots: Vec<&str> = case.expected.as_object().unwrap().keys().map(String::as_str).collect();
        for key in slots.iter().filter(|k| k.starts_with("alarm_") || k.starts_with("warning_")) {
            let want = case.expected[*key].as_str().unwrap();
            let got = json["extra"][*key].as_str().unwrap_or_else(|| panic!("{}: no {key}", case.name));
            assert!(want.starts_with(got), "{}: {key}: expected {want}, decoded {got}", case.name);
            ignore.push(key);
        }
        vectors::check_expected(&case, &json, &ignore, derived(&json));
    }
}

#[test]
fn short_dlc_frames_decode_what_is_there() {
    // The case is flagged `corrupt` in the vectors, but its `expected` and the issue both want
    // the fields that are present decoded and the missing DVL left out (not read past the DLC).
    let (_, json, battery) = decode("edge_short_dlc_351_6bytes", &Options::default());
    assert_eq!(battery.charge_voltage_limit_v, Some(53.2));
    assert_eq!(battery.discharge_current_limit_a, Some(480.0));
    assert_eq!(battery.discharge_voltage_limit_v, None);
    assert!(json.get("discharge_voltage_limit_v").is_none());
    let (_, _, old) = decode("pylontech_us5000_old_fw_356", &Options::default());
    assert_eq!(old.voltage_v, Some(49.86));
    assert_eq!(old.current_a, Some(-27.0));
    assert_eq!(old.temperatures_c, Some(vec![36.3]));
    let (_, _, soc) = decode("pylontech_us5000_old_fw_355", &Options::default());
    assert_eq!((soc.soc_percent, soc.soh_percent), (Some(88.0), Some(94.0)));
}

#[test]
fn hires_soc_zero_falls_back_to_the_plain_soc() {
    let (_, _, b) = decode("discover_355", &Options::default());
    assert_eq!(b.soc_percent, Some(62.0));
    let (_, _, b) = decode("pylontech_us5000_new_fw_355", &Options::default());
    assert_eq!(b.soc_percent, Some(84.0));
}

#[test]
fn discover_voltage_needs_the_configured_scale() {
    let (case, json, b) = decode("discover_356_voltage_scale_differs", &Options::default());
    assert_eq!(b.voltage_v, Some(5.22), "the dialect's 0.01 V, as the frame says");
    assert!(vectors::same(&case.expected["voltage_v_0p01"], &json["voltage_v"]));
    let (_, json, b) = decode("discover_356_voltage_scale_differs", &Options { voltage_scale_v: 0.1 });
    assert_eq!(b.voltage_v, Some(52.2));
    assert!(vectors::same(&case.expected["voltage_v_0p1_scale"], &json["voltage_v"]));
    assert_eq!(b.current_a, Some(-23.9));
    assert_eq!(json["extra"]["temperature_c"], json!(19.0));
}

#[test]
fn nonstandard_discover_frames_are_shown_raw_not_believed() {
    let (_, json, b) = decode("discover_354_nonstandard", &Options::default());
    assert_eq!(json["extra"]["raw_u16_le"], json!([300, 186, 0, 0]));
    assert_eq!(b, Default::default());
    let (_, json, b) = decode("discover_373_4bytes", &Options::default());
    assert_eq!(json["extra"]["raw_u16_le"], json!([1, 0]));
    assert_eq!((b.min_cell_voltage_v, b.max_cell_voltage_v), (None, None));
    let (_, json, _) = decode("discover_372_4bytes", &Options::default());
    assert_eq!(json["extra"]["raw_u16_le"], json!([0, 512]));
}

#[test]
fn alarms_map_to_victron_levels() {
    let (_, _, b) = decode("discover_35A_7bytes", &Options::default());
    assert_eq!(b.alarms.high_voltage, Some(AlarmLevel::Ok));
    assert_eq!(b.alarms.high_charge_current, Some(AlarmLevel::Ok));
    // 11 (undefined) in both slots: not reported.
    assert_eq!(b.alarms.internal_failure, None);
    let (_, _, b) = decode("pylontech_us5000_new_fw_35A", &Options::default());
    assert_eq!(b.alarms.high_voltage, None, "all-zero 0x35A reports nothing");
    let (_, _, b) = decode("pylontech_us5000_old_fw_359", &Options::default());
    assert_eq!(b.alarms.high_voltage, Some(AlarmLevel::Ok));
    assert_eq!(b.modules_online, Some(6));
    let warn =
        victron_can::decode(0x35A, &[0xAA, 0xAA, 0xAA, 0xAA, 0xA6, 0xAA, 0xAA, 0xAA], &Options::default());
    assert_eq!(warn.unwrap().battery.alarms.high_voltage, Some(AlarmLevel::Warning));
    let alarm =
        victron_can::decode(0x35A, &[0xA6, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA], &Options::default());
    assert_eq!(alarm.unwrap().battery.alarms.high_voltage, Some(AlarmLevel::Alarm));
}

#[test]
fn identity_frames() {
    let (_, _, b) = decode("pylontech_us5000_old_fw_35E", &Options::default());
    assert_eq!(b.model.as_deref(), Some("PYLON"));
    let all = vectors::load("victron_can.json");
    let first = &vectors::case(&all, "discover_370").bytes;
    let second = &vectors::case(&all, "discover_371").bytes;
    assert_eq!(victron_can::name(first, second).as_deref(), Some("Discover AES"));
    let (_, _, b) = decode("pylontech_us5000_new_fw_35F", &Options::default());
    assert_eq!(b.full_capacity_ah, Some(572.0));
    assert_eq!(b.firmware_version.as_deref(), Some("1.3"));
    let (_, _, b) = decode("pylontech_us5000_old_fw_35C", &Options::default());
    assert_eq!((b.charge_fet, b.discharge_fet), (Some(true), Some(true)));
}
