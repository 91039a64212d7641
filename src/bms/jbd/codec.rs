//! JBD / LLT / Overkill "Smart BMS" over UART or RS485 (9600 8N1, no addressing).
//!
//! Request: `DD op reg len data.. chk_hi chk_lo 77` (op `A5` read, `5A` write).
//! Response: `DD reg status len payload.. chk_hi chk_lo 77`, checksum = `checksum::jbd` over
//! status, len and payload (incumbent study 2.2, vectors `jbd.json`). Notes and sources:
//! `docs/protocols/jbd.md`.
//!
//! [`decode`] checks a frame in this order: length (`TooShort` / `LengthMismatch`), start byte, end
//! byte, checksum, then status. Integrity comes first: the checksum covers the status byte, so a
//! status read from a frame with a bad checksum cannot be trusted (vector `corrupt_status_error`
//! is therefore a `BadChecksum`).

use crate::battery::AlarmLevel;
use crate::protocol::checksum;
use crate::protocol::field::{self, AlarmSlot, Field, Flag, Width};
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::json;

mod encode;
pub use encode::{encode_cells, encode_hardware, BasicInfo};

/// Serial speed (study 2.2).
pub const BAUD: u32 = 9600;
/// Frame start byte.
pub const START: u8 = 0xDD;
/// Frame end byte.
pub const END: u8 = 0x77;
/// Request op: read.
pub const OP_READ: u8 = 0xA5;
/// Request op: write.
pub const OP_WRITE: u8 = 0x5A;
/// Basic info: voltage, current, capacities, protection, FETs, NTCs.
pub const REG_BASIC_INFO: u8 = 0x03;
/// Cell voltages in mV.
pub const REG_CELLS: u8 = 0x04;
/// Hardware / product name (ASCII).
pub const REG_HARDWARE: u8 = 0x05;
/// Protection event counters (esphome-jbd-bms `ERRCOUNT_FRAME`).
pub const REG_ERROR_COUNTERS: u8 = 0xAA;
/// MOSFET control: data `00 bb`, bit0 = charge off, bit1 = discharge off (vectors `req_mos_*`).
pub const REG_MOS_CONTROL: u8 = 0xE1;
/// Bytes around the payload: start, reg, status, len, checksum (2), end.
pub const OVERHEAD: usize = 7;

/// Minimum basic-info payload: fixed fields up to and including the NTC count.
const BASIC_MIN: usize = 23;

/// Fixed-unit fields of register 0x03 (offsets in the payload, study 2.2).
const BASIC_INFO: &[Field] = &[
    Field::new("voltage", 0, Width::U16, 100, |b, v| b.voltage_v = Some(v)),
    Field::new("rsoc", 19, Width::U8, 1, |b, v| b.soc_percent = Some(v)),
];

/// Current and capacities: 10 mA / 10 mAh, or 100 mA / 100 mAh when the extension flag is set.
const BASIC_SCALED: &[Field] = &[
    Field::new("current", 2, Width::I16, 100, |b, v| b.current_a = Some(v)),
    Field::new("remaining_capacity", 4, Width::U16, 100, |b, v| b.remaining_capacity_ah = Some(v)),
    Field::new("nominal_capacity", 6, Width::U16, 100, |b, v| b.nominal_capacity_ah = Some(v)),
];

/// NTCs: 0.1 K with 0 °C = 2731 (esphome, bmstools, jbdtool).
pub const NTC_ZERO_0P1K: i64 = 2731;

const fn alarm(bit: u8, slot: AlarmSlot) -> Flag {
    Flag::new(bit, slot, AlarmLevel::Alarm)
}

/// Protection bits (payload offset 16). Every bit is a tripped protection, so level 2.
const PROTECTION: &[Flag] = &[
    alarm(0, |a| &mut a.high_cell_voltage),
    alarm(1, |a| &mut a.low_cell_voltage),
    alarm(2, |a| &mut a.high_voltage),
    alarm(3, |a| &mut a.low_voltage),
    alarm(4, |a| &mut a.high_charge_temperature),
    alarm(5, |a| &mut a.low_charge_temperature),
    alarm(6, |a| &mut a.high_temperature),
    alarm(7, |a| &mut a.low_temperature),
    alarm(8, |a| &mut a.high_charge_current),
    alarm(9, |a| &mut a.high_discharge_current),
    alarm(10, |a| &mut a.high_discharge_current), // short circuit
    alarm(11, |a| &mut a.internal_failure),       // front-end (AFE) error
    alarm(12, |a| &mut a.internal_failure),       // software MOS lock
];

/// Register 0xAA counters, in payload order (esphome-jbd-bms `jbd_bms_test.cpp`).
const ERROR_COUNTERS: [&str; 11] = [
    "short_circuit_count",
    "charge_overcurrent_count",
    "discharge_overcurrent_count",
    "cell_overvoltage_count",
    "cell_undervoltage_count",
    "charge_overtemperature_count",
    "charge_undertemperature_count",
    "discharge_overtemperature_count",
    "discharge_undertemperature_count",
    "battery_overvoltage_count",
    "battery_undervoltage_count",
];

fn frame(op_or_reg: u8, reg_or_status: u8, data: &[u8]) -> Vec<u8> {
    let data = field::at_most(data, usize::from(u8::MAX));
    let checked = [&[reg_or_status, data.len() as u8][..], data].concat();
    [&[START, op_or_reg][..], &checked, &checksum::jbd(&checked).to_be_bytes(), &[END]].concat()
}

/// Read request for `register`, e.g. `DD A5 03 00 FF FD 77`.
pub fn request_read(register: u8) -> [u8; 7] {
    let [hi, lo] = checksum::jbd(&[register, 0]).to_be_bytes();
    [START, OP_READ, register, 0, hi, lo, END]
}

/// Write request (op 0x5A). Data beyond 255 bytes is cut (the length field is one byte).
pub fn request_write(register: u8, data: &[u8]) -> Vec<u8> {
    frame(OP_WRITE, register, data)
}

/// MOSFET control on register 0xE1 (no factory mode needed).
pub fn request_mos_control(charge_off: bool, discharge_off: bool) -> Vec<u8> {
    request_write(REG_MOS_CONTROL, &[0, u8::from(charge_off) | u8::from(discharge_off) << 1])
}

/// A complete response frame; what a BMS sends (used by the simulator). Payload cut at 255 bytes.
pub fn encode_response(register: u8, status: u8, payload: &[u8]) -> Vec<u8> {
    frame(register, status, payload)
}

/// Finds a frame at the start of `buf`; see [`Scan`]. Requests scan as frames too (their checksum
/// sits at the same place), which lets a transport skip a local echo.
pub fn scan(buf: &[u8]) -> Scan {
    match buf.first() {
        None => return Scan::Incomplete,
        Some(&START) => {}
        Some(_) => {
            let skip = buf.iter().position(|&b| b == START).unwrap_or(buf.len());
            return Scan::Garbage { skip };
        }
    }
    let Some(&len) = buf.get(3) else {
        return Scan::Incomplete;
    };
    let total = usize::from(len) + OVERHEAD;
    match buf.get(..total) {
        None => Scan::Incomplete,
        Some(frame) if check_trailer(frame).is_ok() => Scan::Frame { len: total },
        Some(_) => Scan::Garbage { skip: 1 },
    }
}

/// End byte and checksum of a frame whose length is already right.
fn check_trailer(frame: &[u8]) -> Result<(), FrameError> {
    let (_, checked, &[chk_hi, chk_lo, end]) =
        field::frame_parts::<2, 3>(frame).ok_or(FrameError::TooShort { need: OVERHEAD, got: frame.len() })?;
    if end != END {
        return Err(FrameError::BadEnd { expected: END, found: end });
    }
    let carried = u16::from_be_bytes([chk_hi, chk_lo]);
    let computed = checksum::jbd(checked);
    if carried != computed {
        return Err(FrameError::BadChecksum { expected: carried.into(), computed: computed.into() });
    }
    Ok(())
}

/// Checks a whole frame and returns (register, payload). Order: see the module docs.
fn check(frame: &[u8]) -> Result<(u8, &[u8]), FrameError> {
    let got = frame.len();
    let declared = field::declared_len(frame, START, 3, OVERHEAD)?;
    let need = declared + OVERHEAD;
    // A short frame that still ends in 0x77 has a wrong length byte; one that doesn't was cut off.
    if got > need || (got < need && frame.last() == Some(&END) && got >= OVERHEAD) {
        return Err(FrameError::LengthMismatch { declared, actual: got.saturating_sub(OVERHEAD) });
    }
    if got < need {
        return Err(FrameError::TooShort { need, got });
    }
    check_trailer(frame)?;
    let (&[_, register, status, _], payload, _) =
        field::frame_parts::<4, 3>(frame).ok_or(FrameError::TooShort { need, got })?;
    if status != 0 {
        return Err(FrameError::Status { status });
    }
    Ok((register, payload))
}

fn expect_register(frame: &[u8], expected: u8) -> Result<&[u8], FrameError> {
    let (register, payload) = check(frame)?;
    if register != expected {
        return Err(FrameError::UnexpectedCommand { expected, found: register });
    }
    Ok(payload)
}

/// Decodes any response, dispatching on the register byte. Write acknowledgements and registers
/// without a decoder give `extra` with `register`, `status`, `data_length` (and `data_hex`).
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let (register, payload) = check(frame)?;
    let mut decoded = match register {
        REG_BASIC_INFO => basic_info(payload)?,
        REG_CELLS => cells(payload)?,
        REG_HARDWARE => hardware(payload),
        REG_ERROR_COUNTERS => error_counters(payload)?,
        _ => {
            let mut decoded = Decoded::default();
            if !payload.is_empty() {
                let hex: Vec<String> = payload.iter().map(|b| format!("{b:02X}")).collect();
                decoded.extra.insert("data_hex", json!(hex.join(" ")));
            }
            decoded
        }
    };
    decoded.extra.insert("register", json!(register));
    decoded.extra.insert("status", json!(0));
    decoded.extra.insert("data_length", json!(payload.len()));
    Ok(decoded)
}

/// Decodes a register 0x03 (basic info) response.
pub fn decode_basic_info(frame: &[u8]) -> Result<Decoded, FrameError> {
    basic_info(expect_register(frame, REG_BASIC_INFO)?)
}

/// Decodes a register 0x04 (cell voltages) response.
pub fn decode_cells(frame: &[u8]) -> Result<Decoded, FrameError> {
    cells(expect_register(frame, REG_CELLS)?)
}

/// Decodes a register 0x05 (hardware name) response into `Battery::model`.
pub fn decode_hardware(frame: &[u8]) -> Result<Decoded, FrameError> {
    Ok(hardware(expect_register(frame, REG_HARDWARE)?))
}

fn basic_info(p: &[u8]) -> Result<Decoded, FrameError> {
    let fixed: &[u8; BASIC_MIN] =
        p.first_chunk().ok_or(FrameError::InvalidField { field: "basic_info_length" })?;
    let ntc_count = usize::from(fixed[22]);
    let ntc_raw =
        field::u16_array(p, BASIC_MIN, ntc_count).ok_or(FrameError::InvalidField { field: "ntc_count" })?;
    let cell_count = fixed[21];
    if cell_count > 32 {
        return Err(FrameError::InvalidField { field: "cell_count" });
    }
    // Extended frames: bit 7 of the byte after the NTCs switches to 100 mA / 100 mAh units.
    let after_ntc = BASIC_MIN + 2 * ntc_count;
    let unit_ma: u32 = if p.get(after_ntc).is_some_and(|b| b & 0x80 != 0) { 100 } else { 10 };
    let mut d = Decoded::default();
    let b = &mut d.battery;
    field::apply(BASIC_INFO, p, b)?;
    for f in BASIC_SCALED {
        field::apply(&[f.divisor(1000 / unit_ma)], p, b)?;
    }
    let word = |offset| field::u16_at(p, offset).unwrap_or(0);
    b.cycles = Some(u32::from(word(8)));
    let date = word(10);
    b.production_date = production_date(date);
    let balance = u32::from(word(12)) | u32::from(word(14)) << 16;
    b.balancing_cells = Some(field::bit_flags(balance.into(), usize::from(cell_count)));
    let protection = word(16);
    field::apply_flags(protection.into(), PROTECTION, &mut b.alarms);
    let version = fixed[18];
    b.firmware_version = Some(format!("{}.{}", version >> 4, version & 0x0F));
    let fets = fixed[20];
    b.charge_fet = Some(fets & 0x01 != 0);
    b.discharge_fet = Some(fets & 0x02 != 0);
    b.cell_count = Some(cell_count.into());
    b.temperatures_c = Some(ntc_raw.iter().map(|&r| field::scale(r.into(), NTC_ZERO_0P1K, 10)).collect());
    let extra = &mut d.extra;
    extra.insert("production_date_raw", json!(date));
    extra.insert("balance_bitmask", json!(balance));
    extra.insert("protection_bitmask", json!(protection));
    extra.insert("software_version_raw", json!(version));
    extra.insert("fet_bitmask", json!(fets));
    extra.insert("ntc_count", json!(ntc_count));
    extra.insert("temperatures_raw_0p1K", json!(ntc_raw));
    extra.insert("current_unit_ma", json!(unit_ma));
    Ok(d)
}

/// `(yyyy-2000)<<9 | mm<<5 | dd` as ISO `YYYY-MM-DD`; `None` for an impossible month or day.
pub fn production_date(raw: u16) -> Option<String> {
    let (year, month, day) = (2000 + (raw >> 9), (raw >> 5) & 0x0F, raw & 0x1F);
    ((1..=12).contains(&month) && day >= 1).then(|| format!("{year:04}-{month:02}-{day:02}"))
}

/// Packs a production date the way the BMS stores it (years 2000..=2127).
pub fn pack_production_date(year: u16, month: u8, day: u8) -> u16 {
    (year.saturating_sub(2000).min(127) << 9) | u16::from(month & 0x0F) << 5 | u16::from(day & 0x1F)
}

fn cells(p: &[u8]) -> Result<Decoded, FrameError> {
    if p.len() % 2 != 0 {
        return Err(FrameError::InvalidField { field: "cells" });
    }
    let count = p.len() / 2;
    let mut d = Decoded::default();
    d.battery.cell_voltages_v = field::scaled_u16_array(p, 0, count, 0, 1000);
    d.battery.cell_count = u16::try_from(count).ok();
    Ok(d)
}

fn hardware(p: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    d.battery.model = Some(field::text(p)).filter(|name| !name.is_empty());
    d
}

fn error_counters(p: &[u8]) -> Result<Decoded, FrameError> {
    let mut d = Decoded::default();
    for (i, name) in ERROR_COUNTERS.iter().enumerate() {
        let count = field::u16_at(p, 2 * i).ok_or(FrameError::InvalidField { field: name })?;
        d.extra.insert(name, json!(count));
    }
    Ok(d)
}
