//! JBD UP-series (UP16S) over RS485: addressable, several packs on one bus (master = 1).
//!
//! Frame, both directions: `addr func start(u16be) end(u16be) payload_len(u16be) payload CRC`,
//! CRC-16/MODBUS over everything before it, low byte first (incumbent study 2.3, vectors
//! `jbd_up16s.json`). Notes and sources: `docs/protocols/jbd_up16s.md`.
//!
//! [`decode`] checks length, CRC, then address, then function: a reply from another pack on the
//! bus with a good CRC is an `UnexpectedAddress`, never decoded as ours.

use crate::battery::AlarmLevel;
use crate::protocol::checksum;
use crate::protocol::field::{self, AlarmSlot, Field, Flag, Width};
use crate::protocol::modbus::check_crc;
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::json;

mod encode;
pub use encode::PackStatus;

/// Serial speed (study 2.3).
pub const BAUD: u32 = 9600;
/// Read function.
pub const FUNC_READ: u8 = 0x78;
/// Write function.
pub const FUNC_WRITE: u8 = 0x79;
/// Individual (non-aggregated) pack status function.
pub const FUNC_INDIVIDUAL: u8 = 0x45;
/// Address, function, start, end, payload length.
pub const HEADER_LEN: usize = 8;
/// Header plus CRC.
pub const OVERHEAD: usize = HEADER_LEN + 2;
/// Largest payload `scan` waits for (the biggest seen is 208 bytes); longer is garbage.
pub const MAX_PAYLOAD: usize = 1024;

/// A register window: function, start register, end register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Function code.
    pub func: u8,
    /// First register.
    pub start: u16,
    /// End register (start + length in bytes).
    pub end: u16,
}

/// Main telemetry (0x1000, 0xA0 bytes).
pub const PACK_STATUS: Block = Block { func: FUNC_READ, start: 0x1000, end: 0x10A0 };
/// BMS model + SN, pack SN, dates (0x1C00, 0xA0 bytes).
pub const PACK_PARAMS1: Block = Block { func: FUNC_READ, start: 0x1C00, end: 0x1CA0 };
/// Model ids, versions (0x2810, 0x2C bytes).
pub const PRODUCT_INFO: Block = Block { func: FUNC_READ, start: 0x2810, end: 0x283C };
/// Master's own CCL/DCL (function 0x45, 0x54 bytes).
pub const INDIVIDUAL_STATUS: Block = Block { func: FUNC_INDIVIDUAL, start: 0x0000, end: 0x0054 };
/// SoC write window (0x2006, 2 registers).
pub const SET_SOC: Block = Block { func: FUNC_WRITE, start: 0x2006, end: 0x2008 };
/// Prefix of the SoC write payload: `11 4A 42 44` ("\x11JBD").
pub const SET_SOC_PREFIX: [u8; 4] = [0x11, 0x4A, 0x42, 0x44];

/// Current zero point: A = (raw - 300000) / 100.
const CURRENT_ZERO: i64 = 300_000;
/// Temperature zero point: °C = (raw - 500) / 10.
const TEMP_ZERO: i64 = 500;

/// Fixed PackStatus fields (payload offsets, study 2.3).
const PACK_STATUS_FIELDS: &[Field] = &[
    Field::new("voltage", 0, Width::U16, 100, |b, v| b.voltage_v = Some(v)),
    Field::new("current", 4, Width::U32, 100, |b, v| b.current_a = Some(v)).zero(CURRENT_ZERO),
    Field::new("soc", 8, Width::U16, 100, |b, v| b.soc_percent = Some(v)),
    Field::new("remaining", 10, Width::U16, 100, |b, v| b.remaining_capacity_ah = Some(v)),
    Field::new("full", 12, Width::U16, 100, |b, v| b.full_capacity_ah = Some(v)),
    Field::new("rated", 14, Width::U16, 100, |b, v| b.nominal_capacity_ah = Some(v)),
    Field::new("mos_temp", 16, Width::U16, 10, |b, v| b.temperature_mos_c = Some(v)).zero(TEMP_ZERO),
    Field::new("soh", 22, Width::U16, 1, |b, v| b.soh_percent = Some(v)),
    Field::new("cvl", 58, Width::U16, 10, |b, v| b.charge_voltage_limit_v = Some(v)),
    Field::new("ccl", 60, Width::U16, 10, |b, v| b.charge_current_limit_a = Some(v)),
    Field::new("dvl", 62, Width::U16, 10, |b, v| b.discharge_voltage_limit_v = Some(v)),
    Field::new("dcl", 64, Width::U16, 10, |b, v| b.discharge_current_limit_a = Some(v)),
];

/// Bytes of PackStatus before the cell list.
const PACK_STATUS_FIXED: usize = 68;

const fn fault(bit: u8, slot: AlarmSlot) -> Flag {
    Flag::new(bit, slot, AlarmLevel::Alarm)
}
const fn warn(bit: u8, slot: AlarmSlot) -> Flag {
    Flag::new(bit, slot, AlarmLevel::Warning)
}

/// Fault flags (payload offset 24) -> level 2; full-charge protection is a warning (study 2.3).
const FAULTS: &[Flag] = &[
    fault(0, |a| &mut a.high_cell_voltage),
    fault(1, |a| &mut a.low_cell_voltage),
    fault(2, |a| &mut a.high_voltage),
    fault(3, |a| &mut a.low_voltage),
    fault(4, |a| &mut a.high_charge_current),
    fault(5, |a| &mut a.high_charge_current),
    fault(6, |a| &mut a.high_discharge_current),
    fault(7, |a| &mut a.high_discharge_current),
    fault(8, |a| &mut a.high_charge_temperature),
    fault(9, |a| &mut a.low_charge_temperature),
    fault(10, |a| &mut a.high_temperature),
    fault(11, |a| &mut a.low_temperature),
    fault(12, |a| &mut a.high_internal_temperature),
    fault(13, |a| &mut a.high_temperature), // ambient
    fault(14, |a| &mut a.low_temperature),  // ambient
    fault(15, |a| &mut a.cell_imbalance),   // voltage difference
    fault(16, |a| &mut a.cell_imbalance),   // temperature difference
    fault(17, |a| &mut a.low_soc),
    fault(18, |a| &mut a.high_discharge_current), // short circuit
    fault(19, |a| &mut a.internal_failure),       // cell offline
    fault(20, |a| &mut a.internal_failure),       // temperature sensor failure
    fault(21, |a| &mut a.internal_failure),       // charge MOS fault
    fault(22, |a| &mut a.internal_failure),       // discharge MOS fault
    fault(23, |a| &mut a.internal_failure),       // current-limit anomaly
    fault(24, |a| &mut a.internal_failure),       // aerosol
    warn(25, |a| &mut a.high_voltage),            // full-charge protection 1
    fault(26, |a| &mut a.internal_failure),       // AFE communication
    fault(27, |a| &mut a.high_discharge_current), // reverse connection
];

/// Alarm flags (payload offset 28) -> level 1.
const ALARMS: &[Flag] = &[
    warn(0, |a| &mut a.high_cell_voltage),
    warn(1, |a| &mut a.low_cell_voltage),
    warn(2, |a| &mut a.high_voltage),
    warn(3, |a| &mut a.low_voltage),
    warn(4, |a| &mut a.high_charge_current),
    warn(5, |a| &mut a.high_discharge_current),
    warn(6, |a| &mut a.high_charge_temperature),
    warn(7, |a| &mut a.low_charge_temperature),
    warn(8, |a| &mut a.high_temperature),
    warn(9, |a| &mut a.low_temperature),
    warn(10, |a| &mut a.high_internal_temperature),
    warn(11, |a| &mut a.high_temperature), // ambient
    warn(12, |a| &mut a.low_temperature),  // ambient
    warn(13, |a| &mut a.cell_imbalance),   // voltage difference
    warn(14, |a| &mut a.cell_imbalance),   // temperature difference
    warn(15, |a| &mut a.low_soc),
    warn(16, |a| &mut a.internal_failure), // EEPROM
    warn(17, |a| &mut a.internal_failure), // RTC
    warn(18, |a| &mut a.high_voltage),     // full-charge protection 2
];

/// Any frame: header, payload, CRC (low byte first).
pub fn frame(address: u8, block: Block, payload: &[u8]) -> Vec<u8> {
    let payload = field::at_most(payload, usize::from(u16::MAX));
    let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
    out.extend_from_slice(&[address, block.func]);
    out.extend_from_slice(&block.start.to_be_bytes());
    out.extend_from_slice(&block.end.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&checksum::crc16_modbus(&out).to_le_bytes());
    out
}

/// Read request for a register window (payload length 0).
pub fn request_read(address: u8, block: Block) -> Vec<u8> {
    frame(address, block, &[])
}

/// PackStatus request, e.g. `01 78 10 00 10 A0 00 00 7F B2`.
pub fn request_pack_status(address: u8) -> Vec<u8> {
    request_read(address, PACK_STATUS)
}

/// PackParams1 request (model + SN, dates).
pub fn request_pack_params1(address: u8) -> Vec<u8> {
    request_read(address, PACK_PARAMS1)
}

/// ProductInformation request.
pub fn request_product_info(address: u8) -> Vec<u8> {
    request_read(address, PRODUCT_INFO)
}

/// IndividualPackStatus request (function 0x45).
pub fn request_individual_status(address: u8) -> Vec<u8> {
    request_read(address, INDIVIDUAL_STATUS)
}

/// Sets the SoC; `soc_centi_percent` in 0.01 % (10000 = 100 %).
pub fn request_set_soc(address: u8, soc_centi_percent: u16) -> Vec<u8> {
    let mut payload = SET_SOC_PREFIX.to_vec();
    payload.extend_from_slice(&soc_centi_percent.to_be_bytes());
    frame(address, SET_SOC, &payload)
}

/// A write acknowledgement: the request header echoed with payload length 0 (vector
/// `fixture_set_soc_response`). What a BMS sends (used by the simulator).
pub fn encode_write_ack(address: u8, block: Block) -> Vec<u8> {
    frame(address, block, &[])
}

/// Finds a frame at the start of `buf`; see [`Scan`].
pub fn scan(buf: &[u8]) -> Scan {
    match buf.get(1) {
        None => return Scan::Incomplete,
        Some(func) if ![FUNC_READ, FUNC_WRITE, FUNC_INDIVIDUAL].contains(func) => {
            return Scan::Garbage { skip: 1 }
        }
        Some(_) => {}
    }
    let Some(payload_len) = field::u16_at(buf, 6) else {
        return Scan::Incomplete;
    };
    let payload_len = usize::from(payload_len);
    if payload_len > MAX_PAYLOAD {
        return Scan::Garbage { skip: 1 };
    }
    match buf.get(..payload_len + OVERHEAD) {
        None => Scan::Incomplete,
        Some(frame) if check_crc(frame).is_ok() => Scan::Frame { len: frame.len() },
        Some(_) => Scan::Garbage { skip: 1 },
    }
}

/// Decodes a response. `expected_address`: the pack polled; a reply from another is rejected.
/// Every result carries `extra` `address`, `function`, `start_register`, `end_register`,
/// `payload_len`.
pub fn decode(frame: &[u8], expected_address: Option<u8>) -> Result<Decoded, FrameError> {
    let got = frame.len();
    let declared = usize::from(field::u16_at(frame, 6).ok_or(FrameError::TooShort { need: OVERHEAD, got })?);
    let need = declared + OVERHEAD;
    if got < need {
        return Err(FrameError::TooShort { need, got });
    }
    if got > need {
        return Err(FrameError::LengthMismatch { declared, actual: got - OVERHEAD });
    }
    check_crc(frame)?;
    let (&[address, func, start_hi, start_lo, end_hi, end_lo, _, _], payload, _) =
        field::frame_parts::<HEADER_LEN, 2>(frame).ok_or(FrameError::TooShort { need, got })?;
    if let Some(expected) = expected_address.filter(|&a| a != address) {
        return Err(FrameError::UnexpectedAddress { expected, found: address });
    }
    let (start, end) = (u16::from_be_bytes([start_hi, start_lo]), u16::from_be_bytes([end_hi, end_lo]));
    let mut decoded = match (func, start) {
        (FUNC_READ, 0x1000) => pack_status(payload)?,
        (FUNC_READ, 0x1C00) => pack_params1(payload)?,
        (FUNC_INDIVIDUAL, _) => individual_status(payload)?,
        (FUNC_READ | FUNC_WRITE, _) => Decoded::default(),
        _ => return Err(FrameError::UnexpectedCommand { expected: FUNC_READ, found: func }),
    };
    let extra = &mut decoded.extra;
    extra.insert("address", json!(address));
    extra.insert("function", json!(func));
    extra.insert("start_register", json!(start));
    extra.insert("end_register", json!(end));
    extra.insert("payload_len", json!(declared));
    Ok(decoded)
}

fn pack_status(p: &[u8]) -> Result<Decoded, FrameError> {
    let mut d = Decoded::default();
    let b = &mut d.battery;
    field::apply(PACK_STATUS_FIELDS, p, b)?;
    let word = |offset| field::u16_at(p, offset).ok_or(FrameError::InvalidField { field: "pack_status" });
    let cells = usize::from(word(66)?);
    let cells_mv = field::u16_array(p, PACK_STATUS_FIXED, cells)
        .ok_or(FrameError::InvalidField { field: "cell_count" })?;
    let temps_at = PACK_STATUS_FIXED + 2 * cells;
    let temps = usize::from(word(temps_at)?);
    let temps_c = field::scaled_u16_array(p, temps_at + 2, temps, TEMP_ZERO, 10)
        .ok_or(FrameError::InvalidField { field: "temperature_count" })?;
    let fault_flags = field::u32_at(p, 24).unwrap_or(0);
    let alarm_flags = field::u32_at(p, 28).unwrap_or(0);
    field::apply_flags(fault_flags, FAULTS, &mut b.alarms);
    field::apply_flags(alarm_flags, ALARMS, &mut b.alarms);
    let mosfet = word(32)?;
    b.discharge_fet = Some(mosfet & 0x01 != 0);
    b.charge_fet = Some(mosfet & 0x02 != 0);
    b.cycles = Some(word(36)?.into());
    b.cell_count = u16::try_from(cells).ok();
    b.cell_voltages_v = Some(cells_mv.iter().map(|&mv| field::scale(mv.into(), 0, 1000)).collect());
    b.temperatures_c = Some(temps_c);
    // Tail: u16 unknown, u16 balancing bits, u16 firmware, 30 bytes pack serial (may be cut short).
    let tail = temps_at + 2 + 2 * temps;
    let balancing = field::u16_at(p, tail + 2);
    b.balancing_cells = balancing.map(|bits| field::bit_flags(bits.into(), cells));
    let firmware = field::u16_at(p, tail + 4);
    b.firmware_version = firmware.map(firmware_text);
    let serial = p.get(tail + 6..tail + 36).map(field::text).filter(|s| !s.is_empty());
    b.serial = serial;
    let e = &mut d.extra;
    let mv = |offset| word(offset).map(|v| field::scale(v.into(), 0, 1000));
    e.insert("ambient_temperature_c", json!(field::scale(word(18)?.into(), TEMP_ZERO, 10)));
    e.insert("operation_status", json!(word(20)?));
    e.insert("fault_flags", json!(fault_flags));
    e.insert("alarm_flags", json!(alarm_flags));
    e.insert("mosfet_flags", json!(mosfet));
    e.insert("connection_state", json!(word(34)?));
    e.insert("max_cell_index_1based", json!(word(38)?));
    e.insert("max_cell_v", json!(mv(40)?));
    e.insert("min_cell_index_1based", json!(word(42)?));
    e.insert("min_cell_v", json!(mv(44)?));
    e.insert("avg_cell_v", json!(mv(46)?));
    e.insert("temperature_count", json!(temps));
    if let Some(bits) = balancing {
        e.insert("balancing_bitmask", json!(bits));
    }
    if let Some(raw) = firmware {
        e.insert("firmware_version_raw", json!(raw));
    }
    Ok(d)
}

/// Firmware word: >= 0x100 is major.minor (one byte each), below that a plain number.
pub fn firmware_text(raw: u16) -> String {
    if raw >= 0x100 {
        format!("{}.{}", raw >> 8, raw & 0xFF)
    } else {
        raw.to_string()
    }
}

fn ymd(p: &[u8], offset: usize) -> Option<String> {
    let [y, m, d] = [0, 2, 4].map(|i| field::u16_at(p, offset + i).unwrap_or(0));
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| format!("{y:04}-{m:02}-{d:02}"))
}

fn pack_params1(p: &[u8]) -> Result<Decoded, FrameError> {
    let text = |range: std::ops::Range<usize>, name| {
        p.get(range).map(field::text).ok_or(FrameError::InvalidField { field: name })
    };
    let bms = text(16..46, "bms_model_and_sn")?;
    let pack_sn = text(52..82, "pack_serial_number")?;
    let (bms_date, pack_date) = (ymd(p, 46), ymd(p, 82));
    let mut d = Decoded::default();
    d.battery.model = Some(bms.clone()).filter(|s| !s.is_empty());
    d.battery.serial = Some(pack_sn.clone()).filter(|s| !s.is_empty());
    d.battery.production_date = pack_date.clone();
    d.extra.insert("bms_model_and_sn", json!(bms));
    d.extra.insert("pack_serial_number", json!(pack_sn));
    if let Some(date) = bms_date {
        d.extra.insert("bms_date", json!(date));
    }
    if let Some(date) = pack_date {
        d.extra.insert("pack_date", json!(date));
    }
    Ok(d)
}

fn individual_status(p: &[u8]) -> Result<Decoded, FrameError> {
    let limit = |offset, name| {
        field::u16_at(p, offset)
            .map(|raw| field::scale(raw.into(), 0, 10))
            .ok_or(FrameError::InvalidField { field: name })
    };
    let mut d = Decoded::default();
    d.extra.insert("individual_charge_current_limit_a", json!(limit(96, "individual_ccl")?));
    d.extra.insert("individual_discharge_current_limit_a", json!(limit(98, "individual_dcl")?));
    Ok(d)
}
