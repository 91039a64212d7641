//! Daren 485: every case of `tests/vectors/daren_485.json` (the requests and replies printed in
//! the cpttinkering/daren-485 README, values from its tables), the request builders against the
//! captured requests, the poll's decoders against the captured replies, and the frame contract.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::bms::daren_485::codec as daren;
use bms_bridge::protocol::{json::to_json, Decoded, FrameError, Scan};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("daren_485.json")
}

fn bytes(name: &str) -> Vec<u8> {
    vectors::case(&cases(), name).bytes.clone()
}

fn decode(bytes: &[u8]) -> Result<Decoded, FrameError> {
    daren::decode(bytes)
}

/// Every valid case decodes to every value its source states.
#[test]
fn every_valid_case_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| !c.corrupt) {
        assert_eq!(daren::scan(&case.bytes), Scan::Frame { len: case.bytes.len() }, "{}", case.name);
        let decoded = decode(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        vectors::check_expected(case, &to_json(&decoded), &[], |_, _| None);
        checked += 1;
    }
    assert_eq!(checked, 14);
}

/// The request builders reproduce the README's requests byte for byte (address 1).
#[test]
fn requests_equal_the_builders() {
    assert_eq!(daren::request_realtime(1), bytes("req_realtime_0x42_addr1"));
    assert_eq!(daren::request_system_params(1), bytes("req_system_params_0x47_addr1"));
    assert_eq!(daren::request_protocol_version(1), bytes("req_protocol_version_0x4f_addr1"));
    assert_eq!(daren::request_manufacturer(1), bytes("req_manufacturer_0x51_addr1"));
    assert_eq!(daren::request_warning_counts(1), bytes("req_warning_counts_0x83_addr1"));
    assert_eq!(daren::request_module(1, daren::MODULE_MFG), bytes("req_module_mfg_0xb0_3_addr1"));
    assert_eq!(daren::request_module(1, daren::MODULE_CAP), bytes("req_module_cap_0xb0_4_addr1"));
    // Another address: the address is in the header and in INFO (the command group).
    assert_eq!(daren::request_realtime(3), b"~22034A42E00203FD24\r".to_vec());
}

/// The poll's decoders on the captured replies: the layout asked for, from the address asked.
#[test]
fn poll_decoders_on_the_captures() {
    let realtime = bytes("resp_realtime_0x42_addr1_16s");
    let b = daren::decode_with(&realtime, 1, daren::realtime).unwrap();
    assert_eq!((b.soc_percent, b.voltage_v, b.cycles), (Some(67.0), Some(53.12), Some(204)));
    assert_eq!((b.charge_fet, b.discharge_fet), (Some(true), Some(true)));
    assert_eq!(b.cell_voltages_v.as_ref().map(Vec::len), Some(16));
    assert_eq!(b.balancing_cell_numbers(), Some(vec![]));
    assert_eq!(
        daren::decode_with(&realtime, 2, daren::realtime),
        Err(FrameError::UnexpectedAddress { expected: 2, found: 1 })
    );
    // A reply to another command is not read as realtime data.
    let manufacturer = bytes("resp_manufacturer_0x51_addr1");
    assert!(daren::decode_with(&manufacturer, 1, daren::realtime).is_err());
    let m = daren::decode_with(&manufacturer, 1, daren::manufacturer).unwrap();
    assert_eq!(m.model.as_deref(), Some("HUANY04 16S100A"));
    assert_eq!(m.firmware_version.as_deref(), Some("01.00.02"));
    let serial = daren::decode_with(&bytes("resp_module_mfg_0xb0_3_addr1"), 1, daren::module_mfg).unwrap();
    assert_eq!(serial.serial.as_deref(), Some("JD2M02150860 1"));
    let cap = bytes("resp_module_cap_0xb0_4_addr1");
    assert!(daren::decode_with(&cap, 1, daren::module_mfg).is_err(), "module 4 is not module 3");
    assert_eq!(daren::decode_with(&cap, 1, daren::module_cap).unwrap().nominal_capacity_ah, Some(100.0));
}

/// Corrupt cases are rejected precisely.
#[test]
fn corrupt_cases() {
    let all = cases();
    let digit = vectors::case(&all, "corrupt_realtime_digit_changed");
    assert!(matches!(decode(&digit.bytes), Err(FrameError::BadChecksum { expected: 0xD582, .. })));
    assert_eq!(daren::scan(&digit.bytes), Scan::Garbage { skip: 1 });
    let cut = vectors::case(&all, "corrupt_realtime_truncated");
    assert_eq!(daren::scan(&cut.bytes), Scan::Incomplete);
    assert!(decode(&cut.bytes).is_err());
    assert_eq!(all.iter().filter(|c| c.corrupt).count(), 2);
}

/// Contract: truncation, byte flips, chunked feeding, trailing bytes, on every vector.
#[test]
fn contract_on_every_vector() {
    let all = cases();
    for case in &all {
        contract::truncation(&case.bytes, &daren::scan, &decode);
        contract::byte_flips(&case.bytes, &daren::scan, &decode);
        let frames = contract::chunked_equals_whole(&case.bytes, &daren::scan);
        assert_eq!(frames.len(), usize::from(!case.corrupt), "{}", case.name);
        if !case.corrupt {
            contract::trailing_bytes_stay(&case.bytes, b"~22", &daren::scan);
        }
    }
    let valid: Vec<&[u8]> = all.iter().filter(|c| !c.corrupt).map(|c| c.bytes.as_slice()).collect();
    assert_eq!(contract::chunked_equals_whole(&valid.concat(), &daren::scan), valid);
}
