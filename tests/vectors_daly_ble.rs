//! Daly BLE: the cases of `tests/vectors/daly_ble.json` (aiobmsble's fixture with its stated
//! values) through the codec the daemon uses, whole and split into 20-byte notifications.

mod support {
    pub mod vectors;
}

use bms_bridge::bms::daly_ble::codec as daly_ble;
use bms_bridge::protocol::{find_frame, json::to_json};
use support::vectors;

#[test]
fn the_status_block_matches_the_stated_values() {
    let cases = vectors::load("daly_ble.json");
    let case = vectors::case(&cases, "status_4s_aiobmsble");
    let decoded = daly_ble::decode(&case.bytes).unwrap();
    let b = &decoded.battery;
    let e = &case.expected;
    assert_eq!(b.voltage_v, e["voltage_v"].as_f64());
    assert_eq!(b.current_a, e["current_a"].as_f64(), "charging is positive, as in the UART decoder");
    assert_eq!(b.soc_percent, e["soc_percent"].as_f64());
    assert_eq!(b.cycles.map(u64::from), e["cycles"].as_u64());
    assert_eq!(b.remaining_capacity_ah, e["remaining_capacity_ah"].as_f64());
    let cells: Vec<f64> =
        e["cell_voltages_v"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(b.cell_voltages_v.as_ref(), Some(&cells));
    let temps: Vec<f64> = e["temperatures_c"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(b.temperatures_c.as_ref(), Some(&temps));
    assert_eq!(b.charge_fet, e["charge_fet"].as_bool());
    assert_eq!(b.discharge_fet, e["discharge_fet"].as_bool());
    for key in ["delta_cell_v", "temp_sensor_count", "problem_code"] {
        let got = decoded.extra.get(key).cloned().unwrap_or_default();
        assert!(vectors::same(&e[key], &got), "{key}: {} vs {got}", e[key]);
    }
}

#[test]
fn notifications_in_order_are_one_reply_and_garbage_is_skipped() {
    let cases = vectors::load("daly_ble.json");
    let case = vectors::case(&cases, "status_4s_aiobmsble");
    let mut stream = vec![0x00, 0x13, 0x37];
    for part in case.bytes.chunks(20) {
        stream.extend_from_slice(part);
    }
    let (frame, _) = find_frame(&stream, daly_ble::scan).expect("the reply in the notifications");
    assert_eq!(frame, case.bytes.as_slice());
    let whole = daly_ble::decode_any(&stream).unwrap();
    assert_eq!(whole.battery.voltage_v, Some(14.0));
    assert!(to_json(&whole).to_string().contains("14"));
}

#[test]
fn the_request_and_a_bad_crc() {
    let cases = vectors::load("daly_ble.json");
    assert_eq!(daly_ble::request(), vectors::case(&cases, "req_status_block").bytes);
    assert!(daly_ble::decode(&vectors::case(&cases, "status_4s_bad_crc").bytes).is_err());
}
