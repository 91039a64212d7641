//! JBD UP16S: every case of `tests/vectors/jbd_up16s.json` through the codec, addresses on a
//! shared bus, the frame contract, and the PackStatus encoder round trip.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::jbd_up16s::codec::{self as up, Block, PackStatus};
use bms_bridge::protocol::{json::to_json, Decoded, FrameError, Scan};
use serde_json::{json, Value};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("jbd_up16s.json")
}

fn decode_any(frame: &[u8]) -> Result<Decoded, FrameError> {
    up::decode(frame, None)
}

fn level(text: &str) -> Option<i32> {
    match text.split_whitespace().next()? {
        "ALARM" => Some(2),
        "WARNING" => Some(1),
        "OK" => Some(0),
        _ => None,
    }
}

/// Keys of `expected` that the decoded JSON carries under another name.
fn derived(decoded: &Decoded, json: &Value, key: &str, want: &Value) -> Option<Value> {
    let b = &decoded.battery;
    match key {
        "rated_capacity_ah" => json.get("nominal_capacity_ah").cloned(),
        "mosfet_temperature_c" => json.get("temperature_mos_c").cloned(),
        "pack_serial_number" => json["extra"].get("serial_number").cloned(),
        "temperatures_c_first" => b.temperatures_c.as_ref()?.first().map(|t| json!(t)),
        "balancing_cells_1based" => json.get("balancing_cells").cloned(),
        // The fixture states alarms as text, "ALARM (fault bit0)": compare the level it names.
        _ => {
            let got = json.get("alarms")?.get(key)?.as_i64()?;
            let named = level(want.as_str()?)?;
            Some(if i64::from(named) == got { want.clone() } else { json!(got) })
        }
    }
}

/// Every non-corrupt response decodes (with its own address) and matches every expected value.
#[test]
fn every_response_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.direction == "response" && !c.corrupt) {
        assert_eq!(up::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        let address = case.bytes[0];
        let decoded = up::decode(&case.bytes, Some(address)).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let json = to_json(&decoded);
        vectors::check_expected(case, &json, &["meaning"], |k, want| derived(&decoded, &json, k, want));
        checked += 1;
    }
    assert_eq!(checked, 26);
}

/// The fault/alarm fixture: fault bit 0 -> high_cell_voltage 2, alarm bit 2 -> high_voltage 1.
#[test]
fn fault_and_alarm_flags_map_to_levels() {
    let all = cases();
    let d =
        up::decode(&vectors::case(&all, "fixture_pack_status_with_fault_and_alarm").bytes, Some(1)).unwrap();
    let a = &d.battery.alarms;
    assert_eq!(a.high_cell_voltage, Some(AlarmLevel::Alarm));
    assert_eq!(a.high_voltage, Some(AlarmLevel::Warning));
    assert_eq!(a.low_voltage, Some(AlarmLevel::Ok));
    assert_eq!(a.bms_cable, None);
    assert_eq!(d.battery.serial.as_deref(), Some("JBD87654321"));
    assert_eq!(d.battery.firmware_version.as_deref(), Some("12.1"));
}

/// Every request equals what the builders produce.
#[test]
fn every_request_equals_the_builder() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.direction == "request") {
        let e = &case.expected;
        let field = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{}: no {k}", case.name));
        let address = field("address") as u8;
        let block = Block {
            func: field("function") as u8,
            start: field("start_register") as u16,
            end: field("end_register") as u16,
        };
        let built = if block.func == up::FUNC_WRITE {
            up::request_set_soc(address, field("soc_raw") as u16)
        } else {
            up::request_read(address, block)
        };
        assert_eq!(built, case.bytes, "{}", case.name);
        assert_eq!(up::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        checked += 1;
    }
    assert_eq!(checked, 18);
    let all = cases();
    let bytes = |name| vectors::case(&all, name).bytes.clone();
    assert_eq!(up::request_pack_status(1), bytes("req_addr1_fn78_1000"));
    assert_eq!(up::request_pack_status(2), bytes("req_addr2_fn78_1000"));
    assert_eq!(up::request_pack_params1(1), bytes("req_addr1_fn78_1C00"));
    assert_eq!(up::request_pack_params1(2), bytes("req_addr2_fn78_1C00"));
    assert_eq!(up::request_individual_status(1), bytes("req_addr1_fn45_0000"));
    assert_eq!(up::request_individual_status(2), bytes("req_addr2_fn45_0000"));
    assert_eq!(up::request_set_soc(1, 10000), bytes("fixture_set_soc_100_request"));
    assert_eq!(up::request_set_soc(1, 9800), bytes("fixture_set_soc_98_request"));
    let info = up::request_product_info(3);
    assert_eq!(&info[..8], &[3, 0x78, 0x28, 0x10, 0x28, 0x3C, 0, 0]);
    assert_eq!(up::scan(&info), Scan::Frame { len: 10 });
}

/// Every corrupt case is rejected with the precise error.
#[test]
fn corrupt_cases_are_rejected_precisely() {
    let all = cases();
    let corrupt: Vec<_> = all.iter().filter(|c| c.corrupt).collect();
    assert_eq!(corrupt.len(), 4);
    for case in corrupt {
        let result = up::decode(&case.bytes, Some(1));
        match case.name.as_str() {
            "corrupt_truncated" => {
                assert_eq!(result, Err(FrameError::TooShort { need: 168, got: 100 }));
                assert_eq!(up::scan(&case.bytes), Scan::Incomplete);
            }
            "corrupt_bad_crc" | "corrupt_payload_flip" => {
                assert!(matches!(result, Err(FrameError::BadChecksum { .. })), "{}: {result:?}", case.name);
                assert_eq!(up::scan(&case.bytes), Scan::Garbage { skip: 1 });
            }
            "corrupt_crc_byte_order_swapped" => {
                assert_eq!(result, Err(FrameError::BadChecksum { expected: 0x6A2E, computed: 0x2E6A }));
                assert_eq!(up::scan(&case.bytes), Scan::Garbage { skip: 1 });
            }
            other => panic!("corrupt case {other} has no expectation here"),
        }
    }
}

/// Two packs on one bus: the reply of one is never taken for the other.
#[test]
fn addresses_on_one_bus_are_distinguished() {
    let all = cases();
    let one = &vectors::case(&all, "resp_addr1_fn78_1000_170644_820").bytes;
    let two = &vectors::case(&all, "resp_addr2_fn78_1000_170700_824").bytes;
    assert_eq!(up::decode(one, Some(2)), Err(FrameError::UnexpectedAddress { expected: 2, found: 1 }));
    assert_eq!(up::decode(two, Some(1)), Err(FrameError::UnexpectedAddress { expected: 1, found: 2 }));
    let mut buf = Vec::new();
    let frames = contract::feed(&mut buf, &[one.as_slice(), two].concat(), &up::scan);
    let soc: Vec<_> = frames.iter().map(|f| up::decode(f, Some(f[0])).unwrap().battery.soc_percent).collect();
    assert_eq!(soc, vec![Some(60.95), Some(73.0)]);
}

/// Unknown functions and short frames are precise errors.
#[test]
fn malformed_frames_are_precise_errors() {
    let mut frame = up::request_pack_status(1);
    frame[1] = 0x03;
    let n = frame.len();
    let crc = bms_bridge::protocol::checksum::crc16_modbus(&frame[..n - 2]).to_le_bytes();
    frame[n - 2..].copy_from_slice(&crc);
    assert_eq!(up::decode(&frame, None), Err(FrameError::UnexpectedCommand { expected: 0x78, found: 0x03 }));
    assert_eq!(up::scan(&frame), Scan::Garbage { skip: 1 });
    assert_eq!(up::decode(&[1, 0x78], None), Err(FrameError::TooShort { need: 10, got: 2 }));
    let long = [up::request_pack_status(1).as_slice(), &[0]].concat();
    assert_eq!(up::decode(&long, None), Err(FrameError::LengthMismatch { declared: 0, actual: 1 }));
    // A PackStatus window with a payload too short for its fields.
    let short = up::frame(1, up::PACK_STATUS, &[0; 20]);
    assert!(matches!(up::decode(&short, Some(1)), Err(FrameError::InvalidField { .. })));
    assert_eq!(up::firmware_text(0x0C04), "12.4");
    assert_eq!(up::firmware_text(4), "4");
}

fn sample_status() -> PackStatus {
    PackStatus {
        address: 3,
        voltage_10mv: 5321,
        current_10ma: -1234,
        soc_centi_percent: 7327,
        remaining_10mah: 7327,
        full_10mah: 10000,
        rated_10mah: 10000,
        mos_temp_0p1c: 214,
        ambient_temp_0p1c: -52,
        soh_percent: 99,
        fault_flags: 1 << 18,
        alarm_flags: 1 << 13,
        discharge_fet: true,
        charge_fet: false,
        cycles: 7,
        cvl_0p1v: 584,
        ccl_0p1a: 1000,
        dvl_0p1v: 448,
        dcl_0p1a: 2000,
        cells_mv: vec![3322, 3327, 3319, 3329],
        temps_0p1c: vec![214, 213, -5],
        balancing_bits: 0b1010,
        firmware: 0x0C04,
        serial: "JBD48100000".into(),
    }
}

/// PackStatus encodes into a frame that decodes to the same values.
#[test]
fn pack_status_round_trip() {
    let frame = sample_status().encode();
    assert_eq!(up::scan(&frame), Scan::Frame { len: frame.len() });
    let d = up::decode(&frame, Some(3)).unwrap();
    let b = &d.battery;
    assert_eq!(b.voltage_v, Some(53.21));
    assert_eq!(b.current_a, Some(-12.34));
    assert_eq!(b.soc_percent, Some(73.27));
    assert_eq!(b.remaining_capacity_ah, Some(73.27));
    assert_eq!((b.full_capacity_ah, b.nominal_capacity_ah), (Some(100.0), Some(100.0)));
    assert_eq!(b.temperature_mos_c, Some(21.4));
    assert_eq!(d.extra["ambient_temperature_c"], json!(-5.2));
    assert_eq!(b.soh_percent, Some(99.0));
    assert_eq!(b.alarms.high_discharge_current, Some(AlarmLevel::Alarm));
    assert_eq!(b.alarms.cell_imbalance, Some(AlarmLevel::Warning));
    assert_eq!(b.alarms.high_voltage, Some(AlarmLevel::Ok));
    assert_eq!((b.charge_fet, b.discharge_fet), (Some(false), Some(true)));
    assert_eq!(b.cycles, Some(7));
    assert_eq!(b.charge_voltage_limit_v, Some(58.4));
    assert_eq!(b.charge_current_limit_a, Some(100.0));
    assert_eq!(b.discharge_voltage_limit_v, Some(44.8));
    assert_eq!(b.discharge_current_limit_a, Some(200.0));
    assert_eq!(b.cell_voltages_v, Some(vec![3.322, 3.327, 3.319, 3.329]));
    assert_eq!(b.temperatures_c, Some(vec![21.4, 21.3, -0.5]));
    assert_eq!(b.balancing_cell_numbers(), Some(vec![2, 4]));
    assert_eq!(b.firmware_version.as_deref(), Some("12.4"));
    assert_eq!(b.serial.as_deref(), Some("JBD48100000"));
    assert_eq!(d.extra["max_cell_index_1based"], json!(4));
    assert_eq!(d.extra["min_cell_v"], json!(3.319));
}

/// Contract: truncation, byte flips, chunked feeding, trailing bytes, on every vector.
#[test]
fn contract_on_every_vector() {
    let all = cases();
    for case in &all {
        contract::truncation(&case.bytes, &up::scan, &decode_any);
        contract::byte_flips(&case.bytes, &up::scan, &decode_any);
        let frames = contract::chunked_equals_whole(&case.bytes, &up::scan);
        assert_eq!(frames.len(), usize::from(!case.corrupt), "{}", case.name);
        if !case.corrupt {
            contract::trailing_bytes_stay(&case.bytes, &[0x01, 0x78, 0x10], &up::scan);
            contract::trailing_bytes_stay(&case.bytes, &case.bytes, &up::scan);
        }
    }
    let valid: Vec<&[u8]> = all.iter().filter(|c| !c.corrupt).map(|c| c.bytes.as_slice()).collect();
    let stream = valid.concat();
    assert_eq!(contract::chunked_equals_whole(&stream, &up::scan), valid);
}
