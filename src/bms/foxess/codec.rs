//! FoxESS HV2600 packs (V1) on the RS485 link of the FoxESS V1 BMS, 115200 8N1
//! (FozzieUK/FoxESS-BMS-to-Battery-Protocol-RS485, vectors `foxess.json`). bms-bridge takes
//! the BMS's role and polls packs 1..N. Notes and the register gaps: `docs/protocols/foxess.md`.
//!
//! Frames are Modbus RTU FC03 (CRC-16/MODBUS, low byte first) followed by `0D 0A`, which the
//! CRC does not cover. Known: stats (0x0022 x 5) carry SoC and cycles; 0x0008..0x0019 are 18
//! cell voltages in mV. Everything else is kept raw under `extra`. The packs are in series:
//! [`stack`] merges them into ONE battery.

use crate::battery::{AlarmLevel, Battery};
use crate::protocol::modbus;
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::json;

pub use crate::bms::renogy::codec::Block;

/// Line speed.
pub const BAUD: u32 = 115_200;
/// Trailer after the CRC.
pub const TRAILER: [u8; 2] = [0x0D, 0x0A];
/// Pack status (meaning unknown).
pub const STATUS: Block = Block { name: "status", start: 0x0000, count: 8 };
/// Cells 1-9 (register order; the README labels this block "cells 10-18", see the docs).
pub const CELLS_LOW: Block = Block { name: "cells_low", start: 0x0008, count: 9 };
/// Cells 10-18.
pub const CELLS_HIGH: Block = Block { name: "cells_high", start: 0x0011, count: 9 };
/// Temperatures (scale unknown).
pub const TEMPS: Block = Block { name: "temperatures", start: 0x001A, count: 8 };
/// Pack id, SoC, cycles, firmware, type.
pub const STATS: Block = Block { name: "stats", start: 0x0022, count: 5 };
/// What the driver reads from every pack.
pub const BLOCKS: [Block; 5] = [STATUS, STATS, CELLS_HIGH, CELLS_LOW, TEMPS];
/// Cells per HV2600 pack.
pub const CELLS_PER_PACK: usize = 18;

/// Read request with its trailer, e.g. `01 03 00 00 00 08 44 0C 0D 0A`.
pub fn request(address: u8, block: Block) -> Vec<u8> {
    let mut out = modbus::read_request(address, block.start, block.count);
    out.extend_from_slice(&TRAILER);
    out
}

/// A frame of `len` CRC-checked bytes at the start of `buf` followed by its trailer.
fn with_trailer(buf: &[u8], len: usize) -> Scan {
    match buf.get(..len) {
        None => Scan::Incomplete,
        Some(frame) if modbus::check_crc(frame).is_err() => Scan::Garbage { skip: 1 },
        Some(_) => match buf.get(len..len + 2) {
            None => Scan::Incomplete,
            Some(t) if t == TRAILER => Scan::Frame { len: len + 2 },
            Some(_) => Scan::Garbage { skip: 1 },
        },
    }
}

/// Finds a terminated FC03 response at the start of `buf`; anything else on the bus
/// (requests, broadcasts, unterminated frames) is skipped.
pub fn scan_response(buf: &[u8]) -> Scan {
    match (buf.get(1), buf.get(2)) {
        (None, _) | (Some(&modbus::FC_READ_HOLDING), None) => Scan::Incomplete,
        (Some(&modbus::FC_READ_HOLDING), Some(&n)) => with_trailer(buf, 5 + usize::from(n)),
        _ => Scan::Garbage { skip: 1 },
    }
}

/// Finds an FC03 request at the start of `buf` (the simulator's side).
pub fn scan_request(buf: &[u8]) -> Scan {
    match buf.get(1) {
        None => Scan::Incomplete,
        Some(&modbus::FC_READ_HOLDING) => with_trailer(buf, 8),
        Some(_) => Scan::Garbage { skip: 1 },
    }
}

fn strip_trailer(frame: &[u8]) -> (&[u8], bool) {
    match frame.strip_suffix(&TRAILER) {
        Some(body) if body.len() >= 4 => (body, true),
        _ => (frame, false),
    }
}

/// Registers of a terminated response from `expected_address`.
pub fn parse_response(frame: &[u8], expected_address: Option<u8>) -> Result<Vec<u16>, FrameError> {
    let registers = modbus::parse_read_response(strip_trailer(frame).0, expected_address);
    match frame.last() {
        Some(&last) if !frame.ends_with(&TRAILER) && registers.is_ok() => {
            Err(FrameError::BadEnd { expected: TRAILER[1], found: last })
        }
        _ => registers,
    }
}

/// Decodes the registers of `block` of one pack.
pub fn decode_registers(block: Block, r: &[u16]) -> Result<Decoded, FrameError> {
    if r.len() != usize::from(block.count) {
        return Err(FrameError::LengthMismatch {
            declared: usize::from(block.count) * 2,
            actual: r.len() * 2,
        });
    }
    let mut d = Decoded::default();
    d.extra.insert("block", json!(block.name));
    d.extra.insert("registers_u16_be", json!(r));
    match (block, r) {
        (STATS, &[_, pack_id, soc_flags, cycles, fw_kind]) => {
            let [soc, flags] = soc_flags.to_be_bytes();
            let [fw, kind] = fw_kind.to_be_bytes();
            d.battery.soc_percent = Some(soc.into());
            d.battery.cycles = Some(cycles.into());
            d.battery.firmware_version = Some(format!("{}.{}", fw >> 4, fw & 0x0F));
            let e = &mut d.extra;
            e.insert("pack_id", json!(pack_id >> 8));
            e.insert("flags", json!(format!("0b{flags:08b}")));
            e.insert("fw_version", json!(format!("{}.{}", fw >> 4, fw & 0x0F)));
            e.insert("battery_type", json!(format!("0x{kind:02X}")));
        }
        (CELLS_LOW | CELLS_HIGH, _) => {
            // In `cells_v` like every decoder (the raw mV stay in `extra` for comparison).
            d.battery.cell_voltages_v = Some(r.iter().map(|&mv| f64::from(mv) / 1000.0).collect());
            d.extra.insert("cells_mv", json!(r));
        }
        _ => {}
    }
    Ok(d)
}

/// `decode` command: a request, a response (block told by its byte count; 16 bytes may be
/// status or temperatures, so only the raw registers are shown), or another CRC-valid frame
/// (the BMS's broadcast). A frame whose CRC does not cover it is rejected.
pub fn decode_any(bytes: &[u8]) -> Result<Decoded, FrameError> {
    let (body, terminated) = strip_trailer(bytes);
    modbus::check_crc(body)?;
    let (&[address, function], rest) =
        body.split_first_chunk().ok_or(FrameError::TooShort { need: 4, got: body.len() })?;
    let mut d = match (function, body.len()) {
        (modbus::FC_READ_HOLDING, 8) => {
            let req = modbus::parse_request(body)?;
            let mut d = Decoded::default();
            d.extra.insert("start_register", json!(req.start));
            d.extra.insert("register_count", json!(req.count));
            d
        }
        (modbus::FC_READ_HOLDING, _) => {
            let r = modbus::parse_read_response(body, None)?;
            let block = match r.len() {
                5 => STATS,
                9 => CELLS_LOW,
                _ => Block { name: "status_or_temperatures", start: 0, count: r.len() as u16 },
            };
            let mut d = decode_registers(block, &r)?;
            d.extra.extend(modbus::header_extra(body));
            d
        }
        _ => {
            let mut d = Decoded::default();
            let data = rest.split_last_chunk::<2>().map_or(rest, |(data, _crc)| data);
            let hex: Vec<String> = data.iter().map(|b| format!("{b:02X}")).collect();
            d.extra.insert("data_hex", json!(hex.join(" ")));
            d
        }
    };
    d.extra.insert("address", json!(address));
    d.extra.insert("function", json!(function));
    d.extra.insert("trailer_0d0a", json!(terminated));
    Ok(d)
}

/// One pack's reading: stats and the two cell blocks decoded.
pub fn pack(stats: &[u16], cells_low: &[u16], cells_high: &[u16]) -> Result<Battery, FrameError> {
    let mut b = decode_registers(STATS, stats)?.battery;
    let (low, high) = (decode_registers(CELLS_LOW, cells_low)?, decode_registers(CELLS_HIGH, cells_high)?);
    drop((low, high));
    let cells: Vec<f64> = cells_low.iter().chain(cells_high).map(|&mv| f64::from(mv) / 1000.0).collect();
    b.voltage_v = Some(cells_low.iter().chain(cells_high).map(|&mv| f64::from(mv)).sum::<f64>() / 1000.0);
    b.cell_count = Some(cells.len() as u16);
    b.cell_voltages_v = Some(cells);
    Ok(b)
}

/// The series stack from the packs in configured order (`None`: the pack did not answer).
/// Voltage and cell count only when every pack answered (a partial sum would be a wrong stack
/// voltage); cells are the answering packs' cells in order; SoC the mean, cycles the most.
pub fn stack(packs: &[Option<Battery>]) -> Battery {
    let seen: Vec<&Battery> = packs.iter().flatten().collect();
    let complete = seen.len() == packs.len();
    let cells: Vec<f64> = seen.iter().filter_map(|p| p.cell_voltages_v.clone()).flatten().collect();
    let socs: Vec<f64> = seen.iter().filter_map(|p| p.soc_percent).collect();
    let mut b = Battery {
        voltage_v: complete.then(|| seen.iter().filter_map(|p| p.voltage_v).sum()),
        cell_count: complete.then_some(cells.len() as u16),
        soc_percent: (!socs.is_empty()).then(|| socs.iter().sum::<f64>() / socs.len() as f64),
        cycles: seen.iter().filter_map(|p| p.cycles).max(),
        firmware_version: seen.first().and_then(|p| p.firmware_version.clone()),
        modules_online: Some(seen.len() as u32),
        modules_offline: Some((packs.len() - seen.len()) as u32),
        ..Battery::default()
    };
    b.cell_voltages_v = Some(cells);
    let missing = if complete { AlarmLevel::Ok } else { AlarmLevel::Alarm };
    b.alarms.internal_failure = Some(missing);
    b
}
