//! Daly (`A5 ...` sentences): every case of `tests/vectors/daly.json` through the codec, the
//! frame contract, multi-sentence assembly, the full 0x98 alarm map and the balance bit order.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::battery::AlarmLevel;
use bms_bridge::bms::daly::codec::{self as daly, sentence};
use bms_bridge::protocol::{json::to_json, Decoded, FrameError, Scan};
use serde_json::{json, Value};
use support::{contract, vectors};

fn cases() -> Vec<vectors::Case> {
    vectors::load("daly.json")
}

fn derived(decoded: &Decoded, key: &str) -> Option<Value> {
    let b = &decoded.battery;
    let cells = b.cell_voltages_v.as_ref();
    match key {
        // Both decoders read (raw - 30000) / 10: the opposite of the default convention here,
        // dbus-serialbattery's (30000 - raw) / 10, which `daly_polls.json` confirms with the
        // BMS's own 0x93 state. Same magnitude, other sign.
        "current_a_mppsolar" | "current_a_dalybms" => b.current_a.map(|a| json!(-a)),
        "cells_v_1_to_16" => cells.map(|c| json!(c[..16])),
        "cells_v_17_to_48" => cells.map(|c| json!(c[16..])),
        _ => None,
    }
}

/// Every valid case (requests, single and multi-sentence replies) matches every expected value.
#[test]
fn every_valid_case_matches_expected() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| !c.corrupt) {
        let decoded = daly::decode_all(&case.bytes).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        vectors::check_expected(case, &to_json(&decoded), &["state_text"], |k, _| derived(&decoded, k));
        assert_eq!(decoded.extra["frame_count"], json!(case.bytes.len() / 13), "{}", case.name);
        checked += 1;
    }
    assert_eq!(checked, 9);
    let all = cases();
    let mos = daly::decode(&vectors::case(&all, "resp_mos_0x93").bytes).unwrap();
    assert_eq!(mos.extra["state_text"], json!("stationary"));
}

/// The captured requests carry `00` filler; the builder's `AA` filler is what this project sends.
#[test]
fn requests() {
    let all = cases();
    for (name, host) in
        [("req_soc_0x90_host_addr_0x40", 0x40), ("req_soc_0x90_host_addr_0x80_mppsolar", 0x80)]
    {
        let case = vectors::case(&all, name);
        assert_eq!(sentence(host, daly::CMD_SOC, [0; 8]).to_vec(), case.bytes, "{name}");
        assert_eq!(daly::scan(&case.bytes), Scan::Frame { len: 13 });
        assert_eq!(daly::decode(&case.bytes).unwrap().battery, Default::default(), "a request has no values");
    }
    assert_eq!(
        daly::request(0x40, 0x90),
        [0xA5, 0x40, 0x90, 0x08, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xCD]
    );
    assert_eq!((daly::reply_id(0x40), daly::reply_id(0x41), daly::reply_id(0x80)), (1, 2, 1));
}

/// Every corrupt case is rejected with the precise error.
#[test]
fn corrupt_cases_are_rejected_precisely() {
    use FrameError::*;
    let all = cases();
    let expect = |name: &str, error: FrameError, scan: Scan| {
        let case = vectors::case(&all, name);
        assert!(case.corrupt);
        assert_eq!(daly::decode(&case.bytes), Err(error), "{name}");
        assert_eq!(daly::scan(&case.bytes), scan, "{name}");
    };
    expect("corrupt_bad_checksum", BadChecksum { expected: 0x88, computed: 0x89 }, Scan::Garbage { skip: 1 });
    expect("corrupt_truncated", TooShort { need: 13, got: 9 }, Scan::Incomplete);
    expect("corrupt_bad_length_byte", LengthMismatch { declared: 7, actual: 8 }, Scan::Garbage { skip: 1 });
    // A valid sentence, but not the reply to a 0x90 request: only the reply check catches it.
    let wrong = &vectors::case(&all, "wrong_command_valid_checksum").bytes;
    assert!(daly::decode(wrong).is_ok());
    assert_eq!(daly::check_reply(wrong, 0x40, 0x90), Err(UnexpectedCommand { expected: 0x90, found: 0x91 }));
    let soc = &vectors::case(&all, "resp_soc_0x90").bytes;
    assert!(daly::check_reply(soc, 0x40, 0x90).is_ok());
    assert_eq!(daly::check_reply(soc, 0x41, 0x90), Err(UnexpectedAddress { expected: 2, found: 1 }));
    assert_eq!(all.iter().filter(|c| c.corrupt).count(), 4);
}

/// Contract on every sentence of every vector; streams give every sentence back.
#[test]
fn contract_on_every_vector() {
    for case in &cases() {
        let frames = contract::chunked_equals_whole(&case.bytes, &daly::scan);
        let valid = !case.corrupt || case.name == "wrong_command_valid_checksum";
        assert_eq!(frames.len(), if valid { case.bytes.len() / 13 } else { 0 }, "{}", case.name);
        for sentence in case.bytes.chunks(13) {
            contract::truncation(sentence, &daly::scan, &daly::decode);
            contract::byte_flips(sentence, &daly::scan, &daly::decode);
        }
        if valid {
            contract::trailing_bytes_stay(&case.bytes[..13], &[0xA5, 0x01], &daly::scan);
        }
    }
}

/// Cells are placed by frame number; a missing sentence is an error, never a zero cell.
#[test]
fn cell_sentences_by_frame_number() {
    let all = cases();
    let stream = &vectors::case(&all, "resp_cell_voltages_0x95_16frames").bytes;
    let frames: Vec<&[u8]> = stream.chunks(13).collect();
    assert_eq!(daly::cells(&frames[..6], 16).unwrap().len(), 16, "the zero tail sentences are not needed");
    let mut reversed = frames.clone();
    reversed.reverse();
    let cells = daly::cells(&reversed, 16).unwrap();
    assert_eq!(cells[0], 3.325);
    assert_eq!(cells[15], 3.324);
    assert_eq!(daly::cells(&frames[1..], 16), Err(FrameError::InvalidField { field: "missing_sentence" }));
}

/// Byte 0 bit 0 of 0x97 is cell 1, byte 1 bit 0 is cell 9.
#[test]
fn balance_bits_start_at_cell_one() {
    let frame = sentence(1, daly::CMD_BALANCE, [0b0000_0101, 0b1000_0001, 0, 0, 0, 0, 0, 0]);
    let b = daly::decode(&frame).unwrap().battery;
    assert_eq!(b.balancing_cell_numbers(), Some(vec![1, 3, 9, 16]));
}

/// Every 0x98 bit reaches its own alarm: cell bits never raise pack alarms and the reverse.
#[test]
fn every_alarm_bit() {
    use AlarmLevel::{Alarm, Warning};
    let mut expect: Vec<(usize, Option<(&str, AlarmLevel)>)> = Vec::new();
    let limits = [
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
    ];
    for (i, name) in limits.iter().enumerate() {
        expect.push((2 * i, Some((name, Warning))));
        expect.push((2 * i + 1, Some((name, Alarm))));
    }
    expect.extend([(20, None), (21, None), (22, Some(("low_soc", Warning))), (23, Some(("low_soc", Alarm)))]);
    expect.extend([
        (24, Some(("cell_imbalance", Warning))),
        (25, Some(("cell_imbalance", Alarm))),
        (26, None),
    ]);
    expect.extend([
        (32, Some(("high_internal_temperature", Alarm))),
        (33, Some(("high_internal_temperature", Alarm))),
    ]);
    expect.extend((34..52).map(|bit| (bit, Some(("internal_failure", Alarm)))));
    expect.extend((27..32).chain(52..64).map(|bit| (bit, None)));
    for (bit, want) in expect {
        let mut data = [0u8; 8];
        data[bit / 8] |= 1 << (bit % 8);
        let b = daly::decode(&sentence(1, daly::CMD_FAILURES, data)).unwrap().battery;
        for (alarm, _, got) in b.alarms.entries() {
            let level = match want {
                Some((name, level)) if name == alarm => Some(level),
                _ => got.map(|_| AlarmLevel::Ok),
            };
            assert_eq!(got, level, "bit {bit}: {alarm}");
        }
    }
}

/// The simulator's sentences decode to its pack; the cell reply is 16 sentences like the real one.
#[test]
fn simulator_sentences_decode() {
    let pack = bms_bridge::sim::model::SimPack::new(16);
    let control = bms_bridge::sim::SimControl::default();
    let cells = bms_bridge::bms::daly::sim::respond(0x40, daly::CMD_CELL_VOLTAGES, &pack, &control).unwrap();
    assert_eq!(cells.len(), 16 * 13);
    let frames: Vec<&[u8]> = cells.chunks(13).collect();
    let want: Vec<f64> = pack.cell_voltages_mv().iter().map(|mv| f64::from(*mv) / 1000.0).collect();
    assert_eq!(daly::cells(&frames, 16).unwrap(), want);
    let code = bms_bridge::bms::daly::sim::respond(0x41, daly::CMD_BATTERY_CODE, &pack, &control).unwrap();
    assert_eq!(daly::battery_code(&code.chunks(13).collect::<Vec<_>>()).as_deref(), Some("DALY-SIM-41"));
    let soc = bms_bridge::bms::daly::sim::respond(0x40, daly::CMD_SOC, &pack, &control).unwrap();
    let b = daly::decode(&soc).unwrap().battery;
    assert_eq!(b.soc_percent, Some(60.0));
    assert_eq!(b.current_a, Some(0.0));
}

/// Five real polls (`daly_polls.json`): the BMS's own 0x93 state says discharging in each, and
/// the default convention gives a discharge current for each; the sign check, fed the five
/// readings, never reverses it.
#[test]
fn the_default_sign_agrees_with_the_bms_state_in_five_real_polls() {
    use bms_bridge::battery::CurrentFlow;
    let cases = vectors::load("daly_polls.json");
    let mut sign = bms_bridge::current_sign::CurrentSign::new(None);
    for poll in 1..=5 {
        let soc = vectors::case(&cases, &format!("poll{poll}_0x90"));
        let mos = vectors::case(&cases, &format!("poll{poll}_0x93"));
        let mut reading = bms_bridge::bms::daly::codec::decode(&soc.bytes).unwrap().battery;
        let state = bms_bridge::bms::daly::codec::decode(&mos.bytes).unwrap();
        assert_eq!(state.extra["state"], mos.expected["state"], "poll {poll}");
        assert_eq!(state.battery.current_flow, Some(CurrentFlow::Discharging), "poll {poll}");
        reading.merge(&state.battery);
        let raw = soc.expected["current_raw"].as_f64().unwrap();
        assert_eq!(reading.current_a, Some((30_000.0 - raw) / 10.0), "poll {poll}");
        assert!(reading.current_a.unwrap() < -1.0, "poll {poll}: discharging is negative");
        assert_eq!(sign.apply(&mut reading), None, "poll {poll}: no reversal");
        assert!(reading.current_a.unwrap() < 0.0);
    }
}
