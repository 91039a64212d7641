//! EG4-LL: every case of `tests/vectors/eg4_ll.json` and the frame contract.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::eg4_ll::codec::{self as eg4_ll, Block};
use bms_bridge::protocol::{json::to_json, modbus, Decoded, FrameError};
use serde_json::json;
use support::{contract, vectors};

fn decode_any(frame: &[u8]) -> Result<Decoded, FrameError> {
    eg4_ll::decode(frame, None)
}

#[test]
fn requests_are_what_the_builder_sends() {
    for case in vectors::load("eg4_ll.json").iter().filter(|c| c.direction == "request") {
        let e = &case.expected;
        let block = Block {
            name: "any",
            start: e["start_register"].as_u64().unwrap() as u16,
            count: e["register_count"].as_u64().unwrap() as u16,
        };
        assert_eq!(eg4_ll::request(e["address"].as_u64().unwrap() as u8, block), case.bytes, "{}", case.name);
    }
    assert_eq!(eg4_ll::request(2, eg4_ll::STATUS), vectors::hex("02 03 00 00 00 27 05 E3"));
    assert_eq!(eg4_ll::request(2, eg4_ll::HARDWARE), vectors::hex("02 03 00 69 00 17 D5 EB"));
}

#[test]
fn status_response_matches_expected() {
    let all = vectors::load("eg4_ll.json");
    let case = vectors::case(&all, "resp_status_cells_addr2_16s");
    let d = eg4_ll::decode(&case.bytes, Some(2)).unwrap();
    let json = to_json(&d);
    // temperatures_c lists all six sensor bytes; the model keeps the four real sensors.
    vectors::check_expected(case, &json, &["temperatures_c"], |_, _| None);
    assert!(vectors::same(&case.expected["temperatures_c"], &json["extra"]["temperatures_raw_c"]));
    assert_eq!(d.battery.temperatures_c, Some(vec![24.0; 4]));
    assert_eq!(d.battery.full_capacity_ah, Some(100.0));
    assert_eq!(d.battery.charge_fet, Some(true));
    assert_eq!(d.battery.discharge_fet, Some(true));
    assert_eq!(d.battery.alarms.high_cell_voltage, Some(AlarmLevel::Ok));
    assert_eq!(json["cells_v"].as_array().map(Vec::len), Some(16));
    assert_eq!(json["extra"]["status"], json!(1));
}

#[test]
fn corrupt_frames_are_rejected_precisely() {
    let all = vectors::load("eg4_ll.json");
    let err = |name: &str| eg4_ll::decode(&vectors::case(&all, name).bytes, Some(2)).unwrap_err();
    assert_eq!(err("corrupt_bad_crc"), FrameError::BadChecksum { expected: 0x153D, computed: 0xEA3D });
    assert_eq!(err("corrupt_truncated"), FrameError::TooShort { need: 83, got: 40 });
}

#[test]
fn protection_word_drives_fets_and_alarms() {
    let all = vectors::load("eg4_ll.json");
    let mut regs =
        modbus::parse_read_response(&vectors::case(&all, "resp_status_cells_addr2_16s").bytes, None).unwrap();
    regs[27] = 1 << 1; // cell over-voltage protection
    regs[26] = 1 << 3; // cell under-voltage warning
    let d = eg4_ll::decode_registers(eg4_ll::STATUS, &regs).unwrap();
    assert_eq!(d.battery.charge_fet, Some(false));
    assert_eq!(d.battery.discharge_fet, Some(true));
    assert_eq!(d.battery.alarms.high_cell_voltage, Some(AlarmLevel::Alarm));
    assert_eq!(d.battery.alarms.low_cell_voltage, Some(AlarmLevel::Warning));
}

#[test]
fn contract_holds() {
    let all = vectors::load("eg4_ll.json");
    let bytes = &vectors::case(&all, "resp_status_cells_addr2_16s").bytes;
    contract::truncation(bytes, &modbus::scan_response, &decode_any);
    contract::byte_flips(bytes, &modbus::scan_response, &decode_any);
    assert_eq!(contract::chunked_equals_whole(bytes, &modbus::scan_response), vec![bytes.clone()]);
    contract::trailing_bytes_stay(bytes, &[0x02], &modbus::scan_response);
}
