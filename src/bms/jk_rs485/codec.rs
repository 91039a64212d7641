//! JK BMS, older RS485/TTL protocol (`4E 57 ...`, 115200 8N1, one BMS per port).
//!
//! Frame: `4E 57 | length u16 | terminal u32 | command | source | transport | data.. |
//! record u32 | 68 | checksum u32` (incumbent study 2.5, JK "TTL communications v2.5"). `length`
//! counts every byte after the start word, so a frame is `length + 2` bytes. The checksum field's
//! upper 16 bits are unused; the lower 16 bits are the sum of every byte before it, wrapped at 16
//! bits (vectors `jk_rs485.json`: the sum of a 285-byte frame can pass 0xFFFF).
//!
//! The reply to "read all" (command 0x06) is a sequence of id-tagged fields, walked here by id
//! (`field_len`), never by fixed offsets: firmware that omits a field still decodes. An id this
//! module does not know ends the walk (its length is unknown), keeping what came before; the
//! measurements all come first. [`decode`] checks length, start, end marker, then checksum.

use crate::battery::AlarmLevel;
use crate::protocol::checksum;
use crate::protocol::field::{self, AlarmSlot, Flag};
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::json;

mod encode;
pub use encode::{encode_current, encode_temperature, Status};

/// Serial speed (study 2.5).
pub const BAUD: u32 = 115_200;
/// Start word `NW`.
pub const START: [u8; 2] = [0x4E, 0x57];
/// End marker before the checksum.
pub const END: u8 = 0x68;
/// Command: activate a dormant BMS.
pub const CMD_ACTIVATE: u8 = 0x01;
/// Command: write parameters.
pub const CMD_WRITE: u8 = 0x02;
/// Command: read one identifier.
pub const CMD_READ: u8 = 0x03;
/// Command: read all data.
pub const CMD_READ_ALL: u8 = 0x06;
/// Frame source of a request from a PC.
pub const SOURCE_PC: u8 = 0x03;
/// Transport type of a request; replies carry 1, active reports 2.
pub const TRANSPORT_REQUEST: u8 = 0x00;
/// Bytes before the data: start 2, length 2, terminal 4, command, source, transport.
pub const HEADER: usize = 11;
/// Bytes after the data: record number 4, end marker, checksum 4.
pub const TRAILER: usize = 9;
/// Longest frame accepted (a 32-cell read-all reply is about 320 bytes).
pub const MAX_FRAME: usize = 1024;

/// Protocol version (id 0xC0) whose current has bit 15 = charging and 10 mA units.
pub const CURRENT_SIGN_BIT_VERSION: u8 = 0x01;

const fn alarm(bit: u8, slot: AlarmSlot) -> Flag {
    Flag::new(bit, slot, AlarmLevel::Alarm)
}

/// Warning word (id 0x8B), bit 0 first (esphome-jk-bms `ERRORS`: bit 0 is a warning, the
/// others protections).
const WARNINGS: &[Flag] = &[
    Flag::new(0, |a| &mut a.low_soc, AlarmLevel::Warning), // low capacity
    alarm(1, |a| &mut a.high_internal_temperature),        // power tube over-temperature
    alarm(2, |a| &mut a.high_voltage),                     // charging over-voltage
    alarm(3, |a| &mut a.low_voltage),                      // discharging under-voltage
    alarm(4, |a| &mut a.high_temperature),                 // battery over-temperature
    alarm(5, |a| &mut a.high_charge_current),              // charging over-current
    alarm(6, |a| &mut a.high_discharge_current),           // discharging over-current
    alarm(7, |a| &mut a.cell_imbalance),                   // cell voltage difference
    alarm(8, |a| &mut a.high_temperature),                 // battery box over-temperature
    alarm(9, |a| &mut a.low_temperature),                  // battery low temperature
    alarm(10, |a| &mut a.high_cell_voltage),               // cell over-voltage
    alarm(11, |a| &mut a.low_cell_voltage),                // cell under-voltage
    alarm(12, |a| &mut a.internal_failure),                // "309_A" protection
    alarm(13, |a| &mut a.internal_failure),                // "309_B" protection
];

/// Battery types of id 0xAF.
const BATTERY_TYPES: [&str; 3] = ["Lithium Iron Phosphate", "Ternary Lithium", "Lithium Titanate"];

/// A frame with `data` between header and trailer; the checksum is filled in.
pub fn frame(command: u8, source: u8, transport: u8, data: &[u8]) -> Vec<u8> {
    let data = field::at_most(data, MAX_FRAME - HEADER - TRAILER);
    let total = HEADER + data.len() + TRAILER;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&START);
    out.extend_from_slice(&((total - 2) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, command, source, transport]);
    out.extend_from_slice(data);
    out.extend_from_slice(&[0, 0, 0, 0, END]);
    let sum = checksum::sum16(&out);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

/// A request from the PC side: `command` with data `[id]` (0x00 = everything).
pub fn request(command: u8, id: u8) -> Vec<u8> {
    frame(command, SOURCE_PC, TRANSPORT_REQUEST, &[id])
}

/// "Read all data": `4E 57 00 13 00 00 00 00 06 03 00 00 00 00 00 00 68 00 00 01 29`.
pub fn request_read_all() -> Vec<u8> {
    request(CMD_READ_ALL, 0)
}

/// Finds a frame at the start of `buf`; requests scan as frames too.
pub fn scan(buf: &[u8]) -> Scan {
    match buf.first() {
        None => return Scan::Incomplete,
        Some(&b) if b == START[0] => {}
        Some(_) => {
            let skip = buf.iter().position(|&b| b == START[0]).unwrap_or(buf.len());
            return Scan::Garbage { skip };
        }
    }
    match buf.get(1) {
        None => return Scan::Incomplete,
        Some(&b) if b == START[1] => {}
        Some(_) => return Scan::Garbage { skip: 1 },
    }
    let Some(length) = field::u16_at(buf, 2) else {
        return Scan::Incomplete;
    };
    let total = usize::from(length) + 2;
    if !(HEADER + TRAILER..=MAX_FRAME).contains(&total) {
        return Scan::Garbage { skip: 1 };
    }
    match buf.get(..total) {
        None => Scan::Incomplete,
        Some(frame) if check_trailer(frame).is_ok() => Scan::Frame { len: total },
        Some(_) => Scan::Garbage { skip: 1 },
    }
}

/// End marker and checksum of a frame whose length is already right.
fn check_trailer(frame: &[u8]) -> Result<(), FrameError> {
    let too_short = FrameError::TooShort { need: HEADER + TRAILER, got: frame.len() };
    // The sum covers the end marker: everything before the 4-byte checksum field.
    let (summed, &[_, _, chk_hi, chk_lo]) = frame.split_last_chunk().ok_or(too_short)?;
    let (_, &[_, _, _, _, end]) = summed.split_last_chunk().ok_or(too_short)?;
    if end != END {
        return Err(FrameError::BadEnd { expected: END, found: end });
    }
    let carried = u16::from_be_bytes([chk_hi, chk_lo]);
    let computed = checksum::sum16(summed);
    if carried != computed {
        return Err(FrameError::BadChecksum { expected: carried.into(), computed: computed.into() });
    }
    Ok(())
}

/// A checked frame taken apart: header, data, trailer.
type Parts<'a> = (&'a [u8; HEADER], &'a [u8], &'a [u8; TRAILER]);

/// Checks a whole frame.
fn check(frame: &[u8]) -> Result<Parts<'_>, FrameError> {
    let got = frame.len();
    let min = HEADER + TRAILER;
    let Some(&[start_0, start_1, len_hi, len_lo]) = frame.first_chunk() else {
        return Err(FrameError::TooShort { need: min, got });
    };
    for (expected, found) in START.into_iter().zip([start_0, start_1]) {
        if found != expected {
            return Err(FrameError::BadStart { expected, found });
        }
    }
    let declared = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let need = declared + 2;
    if need < min {
        return Err(FrameError::LengthMismatch { declared, actual: got.saturating_sub(2) });
    }
    if got < need {
        return Err(FrameError::TooShort { need, got });
    }
    if got > need {
        return Err(FrameError::LengthMismatch { declared, actual: got - 2 });
    }
    check_trailer(frame)?;
    field::frame_parts(frame).ok_or(FrameError::TooShort { need, got })
}

/// Length of the value after field id `id`; `rest` starts at the value. `None`: unknown id.
/// Sources: JK "TTL communications v2.5" field table, esphome-jk-bms `jk_bms.cpp`.
fn field_len(id: u8, rest: &[u8]) -> Option<usize> {
    Some(match id {
        0x79 => 1 + usize::from(*rest.first()?), // byte count, then 3 bytes per cell
        0x85 | 0x86 | 0x9D | 0xA9 | 0xAB | 0xAC | 0xAE | 0xAF | 0xB1 | 0xB3 | 0xB8 | 0xBB..=0xBE | 0xC0 => 1,
        0x80..=0x84 | 0x87 | 0x8A..=0x8C | 0x8E..=0x9C | 0x9E..=0xA8 | 0xAD | 0xB0 | 0xBF => 2,
        0x89 | 0xAA | 0xB5 | 0xB6 | 0xB9 => 4,
        0xB4 => 8,
        0xB2 => 10,
        0xB7 => 15,
        0xBA => 24,
        _ => return None,
    })
}

/// One id-tagged field: id and value bytes.
pub type TaggedField<'a> = (u8, &'a [u8]);

/// The id-tagged fields of a read-all reply, in order, and the first unknown id (if any).
pub fn fields(data: &[u8]) -> Result<(Vec<TaggedField<'_>>, Option<u8>), FrameError> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&id, after_id)) = rest.split_first() {
        let Some(len) = field_len(id, after_id) else {
            return Ok((out, Some(id)));
        };
        let (value, next) =
            after_id.split_at_checked(len).ok_or(FrameError::InvalidField { field: "field_length" })?;
        out.push((id, value));
        rest = next;
    }
    Ok((out, None))
}

/// Current (id 0x84) in A, + = charging. Version 0x01: bit 15 set = charging, magnitude in 10 mA
/// (esphome-jk-bms `get_current_`, vector `faker14s_esphome`). Other versions: the v2.5 document's
/// offset form, 10000 = 0 A, 10 mA per step, above 10000 = charging.
pub fn current_a(raw: u16, protocol_version: u8) -> f64 {
    if protocol_version == CURRENT_SIGN_BIT_VERSION {
        let magnitude = f64::from(raw & 0x7FFF) / 100.0;
        if raw & 0x8000 != 0 || magnitude == 0.0 {
            magnitude
        } else {
            -magnitude
        }
    } else {
        field::scale(i64::from(raw), 10_000, 100)
    }
}

/// Temperature (ids 0x80-0x82): up to 100 in °C, above 100 negative (101 = -1 °C).
pub fn temperature_c(raw: u16) -> f64 {
    if raw > 100 {
        100.0 - f64::from(raw)
    } else {
        f64::from(raw)
    }
}

/// Decodes any frame: header fields always, the id-tagged fields of a reply.
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let (header, data, trailer) = check(frame)?;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ");
    let mut d = Decoded::default();
    let [.., command, source, transport] = *header;
    if transport != TRANSPORT_REQUEST && !data.is_empty() {
        d = read_all(data)?;
    } else if let Some(&id) = data.first() {
        d.extra.insert("data_id", json!(id));
    }
    let e = &mut d.extra;
    let [record @ .., end, _, _, chk_hi, chk_lo] = *trailer;
    e.insert("length_field", json!(frame.len() - 2));
    e.insert("terminal_number_hex", json!(hex(&header[4..8])));
    e.insert("command", json!(command));
    e.insert("frame_source", json!(source));
    e.insert("transport_type", json!(transport));
    e.insert("record_number_hex", json!(hex(&record)));
    e.insert("end_marker", json!(end));
    e.insert("checksum", json!(u16::from_be_bytes([chk_hi, chk_lo])));
    Ok(d)
}

fn text(value: &[u8]) -> String {
    field::text(value)
}

fn read_all(data: &[u8]) -> Result<Decoded, FrameError> {
    let (fields, unknown) = fields(data)?;
    let get = |id: u8| fields.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    let word = |id: u8| get(id).and_then(|v| field::u16_at(v, 0));
    let byte = |id: u8| get(id).and_then(|v| v.first().copied());
    let mut d = Decoded::default();
    let b = &mut d.battery;
    if let Some((_, cells)) = get(0x79).and_then(<[u8]>::split_first) {
        if cells.len() % 3 != 0 {
            return Err(FrameError::InvalidField { field: "cells" });
        }
        let mut list: Vec<(u8, u16)> =
            field::chunks(cells).map(|[number, hi, lo]| (number, u16::from_be_bytes([hi, lo]))).collect();
        list.sort_by_key(|(number, _)| *number);
        b.cell_voltages_v = Some(list.iter().map(|(_, mv)| f64::from(*mv) / 1000.0).collect());
    }
    let version = byte(0xC0).unwrap_or(0);
    b.temperature_mos_c = word(0x80).map(temperature_c);
    let temps: Vec<f64> = [0x81, 0x82].iter().filter_map(|id| word(*id)).map(temperature_c).collect();
    b.temperatures_c = Some(temps).filter(|t| !t.is_empty());
    b.voltage_v = word(0x83).map(|raw| field::scale(raw.into(), 0, 100));
    b.current_a = word(0x84).map(|raw| current_a(raw, version));
    b.soc_percent = byte(0x85).map(f64::from);
    b.cycles = word(0x87).map(u32::from);
    b.cell_count = word(0x8A);
    if let Some(warnings) = word(0x8B) {
        field::apply_flags(warnings.into(), WARNINGS, &mut b.alarms);
        d.extra.insert("errors_bitmask", json!(warnings));
    }
    if let Some(status) = word(0x8C) {
        b.charge_fet = Some(status & 0x01 != 0);
        b.discharge_fet = Some(status & 0x02 != 0);
        d.extra.insert("operation_mode_bitmask", json!(status));
    }
    b.balancer_enabled = byte(0x9D).map(|v| v != 0);
    let capacity = get(0xAA).and_then(|v| field::u32_at(v, 0));
    b.nominal_capacity_ah = capacity.map(f64::from);
    if let Some(raw) = get(0xB7) {
        let raw = text(raw);
        b.firmware_version = Some(raw.replace('_', " ").trim().to_owned());
        d.extra.insert("software_version_raw", json!(raw));
    }
    b.serial = get(0xBA).map(factory_id).filter(|id| !id.is_empty());
    let e = &mut d.extra;
    let mut put = |key: &'static str, value: Option<serde_json::Value>| {
        if let Some(value) = value {
            e.insert(key, value);
        }
    };
    put("protocol_version", byte(0xC0).map(|v| json!(v)));
    put("current_raw", word(0x84).map(|v| json!(v)));
    put("temperatures_raw", Some(json!([0x80, 0x81, 0x82].map(word))));
    put("capacity_ah", capacity.map(|v| json!(v)));
    put("temperature_sensor_count", byte(0x86).map(|v| json!(v)));
    put("max_discharge_current_a", word(0x97).map(|v| json!(f64::from(v))));
    put("max_charge_current_a", word(0x99).map(|v| json!(f64::from(v))));
    put("balancing_start_voltage_v", word(0x9B).map(|v| json!(f64::from(v) / 1000.0)));
    put("balancing_delta_voltage_v", word(0x9C).map(|v| json!(f64::from(v) / 1000.0)));
    put("balancing_switch", byte(0x9D).map(|v| json!(v != 0)));
    put("battery_type", byte(0xAF).map(|v| json!(BATTERY_TYPES.get(usize::from(v)).unwrap_or(&"unknown"))));
    put("low_soc_alarm_percent", byte(0xB1).map(|v| json!(v)));
    put("device_id", get(0xB4).map(|v| json!(text(v))));
    put("production_yymm", get(0xB5).map(|v| json!(text(v))));
    put("total_runtime_min", get(0xB6).and_then(|v| field::u32_at(v, 0)).map(|v| json!(v)));
    put("field_count", Some(json!(fields.len())));
    put("unknown_field_id", unknown.map(|id| json!(id)));
    Ok(d)
}

/// The factory id (0xBA) as a unique id: the "Input Userda" filler some firmware puts in front
/// is dropped, spaces become `_` (study 2.5).
fn factory_id(value: &[u8]) -> String {
    let raw = text(value);
    raw.strip_prefix("Input Userda").unwrap_or(&raw).trim().replace(' ', "_")
}
