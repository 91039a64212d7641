//! EG4 LifePower (TianPower / Narada boards) on RS485, 9600 8N1, addresses 1-15.
//!
//! Binary frames: `7E | address | command | length | data[length] | check | 0D` (slim-bean/powermon
//! README, study 2.11, vectors `eg4_lifepower.json`). The `check` byte's algorithm is **unknown**
//! (not a CRC-8, sum, XOR or negated sum: vectors README), so it is neither verified nor invented.
//! Integrity rests on structure instead: start, length, terminator, and for the status reply
//! groups `[id][count][count x u16be]` that must tile the data exactly and hold plausible values.
//! Requests use the check bytes observed from the vendor tool ([`request_check`]).
//!
//! The same bus also carries LifePower4 v2 Pylontech-style ASCII frames (`~...\r`, real
//! checksum): [`ascii`]. [`scan`] tells them apart by the byte after `7E`: an ASCII hex digit
//! there is never a binary address (1-15).

use crate::protocol::field;
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::{json, Value};

pub mod ascii;

/// Serial speed (study 2.11).
pub const BAUD: u32 = 9600;
/// Frame start.
pub const START: u8 = 0x7E;
/// Frame end.
pub const END: u8 = 0x0D;
/// Start, address, command, length, check, end.
pub const OVERHEAD: usize = 6;
/// General status: cells, current, SoC, capacity, temperatures, alarms, cycles, voltage, SoH.
pub const CMD_STATUS: u8 = 0x01;
/// Firmware version text (vendor tool log, dbus-serialbattery issue #1116).
pub const CMD_FIRMWARE: u8 = 0x33;
/// Hardware version text.
pub const CMD_HARDWARE: u8 = 0x42;
/// Current zero point, 10 mA units: A = (30000 - raw) / 100 (powermon README).
pub const CURRENT_ZERO: i64 = 30_000;
/// Temperatures: low byte minus 50 = °C (powermon README).
pub const TEMP_OFFSET: i64 = 50;
/// Cell voltages carry alarm flags in their top two bits.
pub const CELL_MASK: u16 = 0x3FFF;
/// Highest bus address.
pub const MAX_ADDRESS: u8 = 15;

/// The check byte of a request, as observed from the vendor tool for commands 0x01 and 0x33
/// (dbus-serialbattery's table, vectors `req_read_status`, `req_firmware_version`): 0 for
/// address 0, else `-(2 x lowest set bit of the address)`. Observation, not an algorithm.
pub fn request_check(address: u8) -> u8 {
    if address == 0 {
        0
    } else {
        0u8.wrapping_sub(2u8.wrapping_mul(1 << address.trailing_zeros()))
    }
}

/// A read request, e.g. `7E 01 01 00 FE 0D`.
pub fn request(address: u8, command: u8) -> [u8; OVERHEAD] {
    [START, address, command, 0, request_check(address), END]
}

/// A binary frame with `data` and check byte `check` (the simulator sends 0: nobody verifies it).
pub fn encode_frame(address: u8, command: u8, data: &[u8], check: u8) -> Vec<u8> {
    let data = field::at_most(data, usize::from(u8::MAX));
    let mut out = vec![START, address, command, data.len() as u8];
    out.extend_from_slice(data);
    out.extend_from_slice(&[check, END]);
    out
}

/// A status reply from groups of words: `(id, words)`.
pub fn encode_status(address: u8, groups: &[(u8, Vec<u16>)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (id, words) in groups {
        data.push(*id);
        data.push(words.len() as u8);
        words.iter().for_each(|w| data.extend_from_slice(&w.to_be_bytes()));
    }
    encode_frame(address, CMD_STATUS, &data, 0)
}

fn is_ascii_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// Finds a binary or ASCII frame at the start of `buf`.
pub fn scan(buf: &[u8]) -> Scan {
    match buf.first() {
        None => return Scan::Incomplete,
        Some(&START) => {}
        Some(_) => {
            let skip = buf.iter().position(|&b| b == START).unwrap_or(buf.len());
            return Scan::Garbage { skip };
        }
    }
    match buf.get(1) {
        None => Scan::Incomplete,
        Some(&b) if is_ascii_hex(b) => ascii::scan(buf),
        Some(_) => {
            let Some(&len) = buf.get(3) else {
                return Scan::Incomplete;
            };
            let total = usize::from(len) + OVERHEAD;
            match buf.get(..total) {
                None => Scan::Incomplete,
                Some(frame) if frame.last() == Some(&END) => Scan::Frame { len: total },
                Some(_) => Scan::Garbage { skip: 1 },
            }
        }
    }
}

/// Checks a binary frame; returns (address, command, data, check byte).
fn check(frame: &[u8]) -> Result<(u8, u8, &[u8], u8), FrameError> {
    let got = frame.len();
    let declared = field::declared_len(frame, START, 3, OVERHEAD)?;
    let need = declared + OVERHEAD;
    if got < need {
        return Err(FrameError::TooShort { need, got });
    }
    if got > need {
        return Err(FrameError::LengthMismatch { declared, actual: got - OVERHEAD });
    }
    let (&[_, address, command, _], data, &[check, end]) =
        field::frame_parts::<4, 2>(frame).ok_or(FrameError::TooShort { need, got })?;
    if end != END {
        return Err(FrameError::BadEnd { expected: END, found: end });
    }
    if address > MAX_ADDRESS {
        return Err(FrameError::InvalidField { field: "address" });
    }
    Ok((address, command, data, check))
}

/// Decodes a binary or ASCII frame; `address`: the address a reply must come from.
pub fn decode(frame: &[u8], address: Option<u8>) -> Result<Decoded, FrameError> {
    if frame.get(1).copied().is_some_and(is_ascii_hex) {
        return ascii::decode(frame);
    }
    let (from, command, data, check_byte) = check(frame)?;
    if let Some(expected) = address.filter(|a| *a != from) {
        return Err(FrameError::UnexpectedAddress { expected, found: from });
    }
    let mut d = match command {
        _ if data.is_empty() => Decoded::default(),
        CMD_STATUS => status(data)?,
        CMD_FIRMWARE | CMD_HARDWARE => version_text(command, data)?,
        _ => {
            let mut d = Decoded::default();
            d.extra.insert("data_hex", json!(hex(data)));
            d
        }
    };
    d.extra.insert("address", json!(from));
    d.extra.insert("command", json!(command));
    d.extra.insert("data_length", json!(data.len()));
    d.extra.insert("checksum_byte", json!(check_byte));
    Ok(d)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

/// The groups of a status reply: `(id, words)`. They must tile the data exactly.
pub fn groups(data: &[u8]) -> Result<Vec<(u8, Vec<u16>)>, FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let (Some(&id), Some(&count)) = (data.get(at), data.get(at + 1)) else {
            return Err(FrameError::InvalidField { field: "groups" });
        };
        let words = field::u16_array(data, at + 2, count.into())
            .ok_or(FrameError::InvalidField { field: "groups" })?;
        if id == 0 || out.iter().any(|(seen, _)| *seen == id) {
            return Err(FrameError::InvalidField { field: "group_id" });
        }
        out.push((id, words));
        at += 2 + 2 * usize::from(count);
    }
    Ok(out)
}

fn status(data: &[u8]) -> Result<Decoded, FrameError> {
    let groups = groups(data)?;
    let group = |id: u8| groups.iter().find(|(g, _)| *g == id).map(|(_, w)| w.as_slice());
    let first = |id: u8| group(id).and_then(|w| w.first()).map(|w| i64::from(*w));
    let invalid = |field| FrameError::InvalidField { field };
    let mut d = Decoded::default();
    let b = &mut d.battery;
    let cells = group(1).ok_or(invalid("cells"))?;
    if cells.is_empty() || cells.len() > 32 || cells.iter().any(|c| c & CELL_MASK > 5000) {
        return Err(invalid("cells"));
    }
    b.cell_voltages_v = Some(cells.iter().map(|c| field::scale((c & CELL_MASK).into(), 0, 1000)).collect());
    b.cell_count = u16::try_from(cells.len()).ok();
    b.current_a = first(2).map(|raw| field::scale(CURRENT_ZERO - raw, 0, 100));
    let soc = first(3).ok_or(invalid("soc"))?;
    if soc > 10_000 {
        return Err(invalid("soc"));
    }
    b.soc_percent = Some(field::scale(soc, 0, 100));
    b.full_capacity_ah = first(4).map(|raw| field::scale(raw, 0, 100));
    let temps: Vec<f64> =
        group(5).unwrap_or(&[]).iter().map(|w| field::scale(i64::from(w & 0xFF), TEMP_OFFSET, 1)).collect();
    if temps.iter().any(|t| !(-50.0..=150.0).contains(t)) {
        return Err(invalid("temperatures"));
    }
    // Six words: T1..T4 (cells), then two with flag bits in the high byte: the 5th is taken as
    // the MOSFET sensor, the 6th (environment) joins the list, so all six reach the model.
    let mut listed: Vec<f64> = temps.iter().take(4).copied().collect();
    listed.extend(temps.get(5).copied());
    b.temperatures_c = Some(listed).filter(|t| !t.is_empty());
    b.temperature_mos_c = temps.get(4).copied();
    let alarms = group(6).unwrap_or(&[]);
    if let Some(&word) = alarms.get(1) {
        apply_alarms(word, b);
    }
    b.cycles = first(7).and_then(|c| u32::try_from(c).ok());
    let voltage = first(8).ok_or(invalid("voltage"))?;
    b.voltage_v = Some(field::scale(voltage, 0, 100));
    if let Some(soh) = first(9) {
        if soh > 10_000 {
            return Err(invalid("soh"));
        }
        b.soh_percent = Some(field::scale(soh, 0, 100));
    }
    let listed: Vec<Value> = groups
        .iter()
        .map(|(id, words)| {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            json!({ "group": id, "words": words.len(), "hex": hex(&bytes) })
        })
        .collect();
    let e = &mut d.extra;
    e.insert("groups", json!(listed));
    e.insert("temperature_raw_words", json!(group(5).unwrap_or(&[])));
    e.insert("temperatures_c_low_byte_minus_50", json!(temps));
    e.insert("alarm_words", json!(alarms));
    e.insert("current_raw", json!(first(2)));
    Ok(d)
}

/// Alarm word 1 of group 6 (dbus-serialbattery `eg4_lifepower.py`; no capture with a bit set).
fn apply_alarms(word: u16, b: &mut crate::battery::Battery) {
    use crate::battery::{AlarmLevel, Alarms};
    let level = |bit: u16| if word & (1 << bit) != 0 { AlarmLevel::Alarm } else { AlarmLevel::Ok };
    Alarms::raise(&mut b.alarms.high_charge_current, level(3));
    Alarms::raise(&mut b.alarms.high_voltage, level(4));
    Alarms::raise(&mut b.alarms.low_voltage, level(5));
    Alarms::raise(&mut b.alarms.high_charge_temperature, level(6));
    Alarms::raise(&mut b.alarms.low_charge_temperature, level(7));
}

fn version_text(command: u8, data: &[u8]) -> Result<Decoded, FrameError> {
    if !data.iter().all(|b| b.is_ascii_graphic() || *b == b' ' || *b == 0) {
        return Err(FrameError::InvalidField { field: "version_text" });
    }
    let mut d = Decoded::default();
    let text = Some(field::text(data)).filter(|t| !t.is_empty());
    if command == CMD_FIRMWARE {
        d.battery.firmware_version = text;
    } else {
        d.battery.hardware_version = text;
    }
    Ok(d)
}
