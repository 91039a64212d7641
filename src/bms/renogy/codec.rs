//! Renogy smart batteries (RBT…LFP12S/-BT/-Pro): Modbus RTU FC03, 9600 8N1, address 0x30
//! (0xF7 on some packs), registers 5000+ (incumbent study 2.10, vectors `renogy.json`). Notes:
//! `docs/protocols/renogy.md`.
//!
//! The daemon reads four blocks. A reply does not carry its start register, so [`decode`] (the
//! `decode` command, the vectors) tells the blocks apart by their byte count; the driver uses
//! [`decode_registers`] with the block it asked for.

use crate::battery::AlarmLevel;
use crate::protocol::field::{self, Field, Width};
use crate::protocol::modbus;
use crate::protocol::{Decoded, FrameError};
use serde_json::json;

/// Line speed.
pub const BAUD: u32 = 9600;
/// Usual bus address.
pub const ADDRESS: u8 = 0x30;
/// Address of the RBT100LFP12SH-G1 and packs never given an address by a Renogy hub.
pub const ADDRESS_ALT: u8 = 0xF7;

/// A register block the driver reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Name in `extra.block`.
    pub name: &'static str,
    /// First register.
    pub start: u16,
    /// Register count.
    pub count: u16,
}

/// 5000-5033: cell count, cell voltages (0.1 V), temperature count, cell temperatures.
pub const CELLS: Block = Block { name: "cells", start: 5000, count: 34 };
/// 5042-5048: current, voltage, remaining and full capacity, cycles.
pub const SUMMARY: Block = Block { name: "summary", start: 5042, count: 7 };
/// 5100-5107: alarm and status words.
pub const STATUS: Block = Block { name: "status", start: 5100, count: 8 };
/// 5104-5131: serial (5110), model (5122), firmware (5130).
pub const INFO: Block = Block { name: "info", start: 5104, count: 28 };
/// Every block, in poll order.
pub const BLOCKS: [Block; 4] = [SUMMARY, CELLS, STATUS, INFO];
/// Text registers inside the info block: serial (5110, 8 registers), model (5122, 8), firmware
/// (5130, 2). A reply to a read of one of them alone is a string.
pub const TEXTS: [(&str, u16, u16); 3] = [("serial", 5110, 8), ("model", 5122, 8), ("sw_version", 5130, 2)];

/// Largest cell count the cell block can hold.
pub const MAX_CELLS: usize = 16;

/// 5042..: current i16 0.01 A (+ = charging; see the docs for the scale evidence), voltage
/// 0.1 V, remaining and full capacity u32 mAh, cycles.
const SUMMARY_FIELDS: &[Field] = &[
    Field::new("current", 0, Width::I16, 100, |b, v| b.current_a = Some(v)),
    Field::new("voltage", 2, Width::U16, 10, |b, v| b.voltage_v = Some(v)),
    Field::new("remaining", 4, Width::U32, 1000, |b, v| b.remaining_capacity_ah = Some(v)),
    Field::new("full", 8, Width::U32, 1000, |b, v| b.full_capacity_ah = Some(v)),
    Field::new("cycles", 12, Width::U16, 1, |b, v| b.cycles = Some(v as u32)),
];

/// Read request for `block`.
pub fn request(address: u8, block: Block) -> Vec<u8> {
    modbus::read_request(address, block.start, block.count)
}

/// The block whose reply has `byte_count` data bytes.
pub fn block_for_byte_count(byte_count: usize) -> Option<Block> {
    BLOCKS.into_iter().find(|b| usize::from(b.count) * 2 == byte_count)
}

/// Decodes a reply frame (block inferred from its byte count). Exception replies are
/// [`FrameError::Exception`].
pub fn decode(frame: &[u8], expected_address: Option<u8>) -> Result<Decoded, FrameError> {
    let registers = modbus::parse_read_response(frame, expected_address)?;
    let block =
        block_for_byte_count(registers.len() * 2).ok_or(FrameError::InvalidField { field: "byte_count" })?;
    // 16 bytes are the status block (5100) and also the model string (5122): text is never read
    // as alarm bits. `decode_at` with the register asked is exact.
    if block == STATUS && looks_like_text(&bytes(&registers)) {
        let mut d = decode_at(frame, expected_address, 5122)?;
        d.extra.insert(
            "register_guessed",
            json!("16 bytes of text: the model (5122); give the register to be sure"),
        );
        return Ok(d);
    }
    let mut decoded = decode_registers(block, &registers)?;
    decoded.extra.extend(modbus::header_extra(frame));
    Ok(decoded)
}

/// Decodes a reply as the answer to a read from `register`: a block the driver reads, or one of
/// the text registers ([`TEXTS`]) as a string. The size must match what that read returns.
pub fn decode_at(frame: &[u8], expected_address: Option<u8>, register: u16) -> Result<Decoded, FrameError> {
    let registers = modbus::parse_read_response(frame, expected_address)?;
    let mut decoded = if let Some(block) = BLOCKS.into_iter().find(|b| b.start == register) {
        decode_registers(block, &registers)?
    } else if let Some((name, start, count)) = TEXTS.into_iter().find(|(_, start, _)| *start == register) {
        let text = modbus::registers_text(registers.get(..usize::from(count)).unwrap_or(&registers));
        if registers.len() < usize::from(count) {
            return Err(FrameError::TooShort { need: usize::from(count) * 2, got: registers.len() * 2 });
        }
        let mut d = Decoded::default();
        d.extra.insert("block", json!(name));
        d.extra.insert("start_register", json!(start));
        d.extra.insert(name, json!(text));
        let b = &mut d.battery;
        let value = Some(text).filter(|t| !t.is_empty());
        match name {
            "serial" => b.serial = value,
            "model" => b.model = value,
            _ => b.firmware_version = value,
        }
        d
    } else {
        return Err(FrameError::InvalidField { field: "register" });
    };
    decoded.extra.extend(modbus::header_extra(frame));
    Ok(decoded)
}

/// Printable ASCII with at most NUL padding after it, and a few letters: a string register.
fn looks_like_text(data: &[u8]) -> bool {
    let text_len = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (text, padding) = data.split_at(text_len);
    text.len() >= 4
        && text.iter().all(|b| (0x20..0x7F).contains(b))
        && text.iter().filter(|b| b.is_ascii_alphabetic()).count() >= 3
        && padding.iter().all(|b| *b == 0)
}

fn bytes(registers: &[u16]) -> Vec<u8> {
    registers.iter().flat_map(|r| r.to_be_bytes()).collect()
}

/// The first `N` registers of a block, the layout its decoder reads.
pub(crate) fn fixed<const N: usize>(registers: &[u16]) -> Result<&[u16; N], FrameError> {
    registers.first_chunk().ok_or(FrameError::TooShort { need: N * 2, got: registers.len() * 2 })
}

/// Decodes the registers of `block`.
pub fn decode_registers(block: Block, registers: &[u16]) -> Result<Decoded, FrameError> {
    if registers.len() < usize::from(block.count) {
        return Err(FrameError::TooShort { need: usize::from(block.count) * 2, got: registers.len() * 2 });
    }
    let mut d = Decoded::default();
    d.extra.insert("block", json!(block.name));
    d.extra.insert("start_register", json!(block.start));
    match block.name {
        "cells" => cells(fixed(registers)?, &mut d)?,
        "summary" => {
            field::apply(SUMMARY_FIELDS, &bytes(registers), &mut d.battery)?;
            if let Some(&current) = registers.first() {
                d.extra.insert("current_raw", json!(current as i16));
            }
        }
        "status" => status(registers, &mut d)?,
        _ => info(fixed(registers)?, &mut d),
    }
    Ok(d)
}

fn cells(r: &[u16; CELLS.count as usize], d: &mut Decoded) -> Result<(), FrameError> {
    let count = usize::from(r[0]);
    if count > MAX_CELLS {
        return Err(FrameError::InvalidField { field: "cell_count" });
    }
    let temps = usize::from(r[17]);
    if temps > MAX_CELLS {
        return Err(FrameError::InvalidField { field: "temperature_count" });
    }
    let b = &mut d.battery;
    b.cell_count = Some(count as u16);
    // Both counts are at most MAX_CELLS, which the block has room for.
    b.cell_voltages_v = Some(r[1..].iter().take(count).map(|&v| field::scale(v.into(), 0, 10)).collect());
    b.temperatures_c =
        Some(r[18..].iter().take(temps).map(|&t| field::scale((t as i16).into(), 0, 10)).collect());
    d.extra.insert("temperature_count", json!(temps));
    Ok(())
}

/// Two bits per cell in a 32-bit word: 1 below the lower limit, 2 above the upper limit.
fn per_cell(word: u32, count: usize) -> (bool, bool) {
    (0..count.min(16)).fold((false, false), |(low, high), i| {
        let v = (word >> (2 * i)) & 0b11;
        (low || v == 1, high || v == 2)
    })
}

fn status(registers: &[u16], d: &mut Decoded) -> Result<(), FrameError> {
    let r: &[u16; STATUS.count as usize] = fixed(registers)?;
    let cell_volts = u32::from(r[0]) << 16 | u32::from(r[1]);
    let cell_temps = u32::from(r[2]) << 16 | u32::from(r[3]);
    let a = &mut d.battery.alarms;
    let level = |on: bool| if on { AlarmLevel::Warning } else { AlarmLevel::Ok };
    let (low_v, high_v) = per_cell(cell_volts, 16);
    let (low_t, high_t) = per_cell(cell_temps, 16);
    a.low_cell_voltage = Some(level(low_v));
    a.high_cell_voltage = Some(level(high_v));
    a.low_temperature = Some(level(low_t));
    a.high_temperature = Some(level(high_t));
    let status2 = r[6];
    d.battery.charge_fet = Some(status2 & 0x0002 != 0);
    d.battery.discharge_fet = Some(status2 & 0x0004 != 0);
    let e = &mut d.extra;
    // All registers given, not only the block's eight: the hex shows exactly what was read.
    let hex: Vec<String> = bytes(registers).iter().map(|b| format!("{b:02X}")).collect();
    e.insert("status_words_hex", json!(hex.join(" ")));
    e.insert("cell_voltage_alarm_bits", json!(cell_volts));
    e.insert("cell_temperature_alarm_bits", json!(cell_temps));
    e.insert("other_alarm_word", json!(r[4]));
    e.insert("status1", json!(r[5]));
    e.insert("status2", json!(status2));
    e.insert("status3", json!(r[7]));
    e.insert("charge_mosfet_bit", json!(status2 & 0x0002 != 0));
    e.insert("discharge_mosfet_bit", json!(status2 & 0x0004 != 0));
    e.insert("heater_bit", json!(r[7] & 0x0020 != 0));
    Ok(())
}

fn info(r: &[u16; INFO.count as usize], d: &mut Decoded) {
    let serial = modbus::registers_text(&r[6..14]);
    let model = modbus::registers_text(&r[18..26]);
    let firmware = modbus::registers_text(&r[26..28]);
    let b = &mut d.battery;
    b.serial = Some(serial.clone()).filter(|s| !s.is_empty());
    b.model = Some(model.clone()).filter(|s| !s.is_empty());
    b.firmware_version = Some(firmware.clone()).filter(|s| !s.is_empty());
    d.extra.insert("model", json!(model));
    d.extra.insert("sw_version", json!(firmware));
}

/// What the simulator serves: registers 5000..5140 (index 0 = register 5000).
pub const SIM_SPAN: u16 = 141;

/// Encodes a register map 5000..5140 for the simulator from plain values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Cell voltages (V).
    pub cells_v: Vec<f64>,
    /// Cell temperatures (°C).
    pub temperatures_c: Vec<f64>,
    /// Current (A, + = charging).
    pub current_a: f64,
    /// Pack voltage (V).
    pub voltage_v: f64,
    /// Remaining capacity (Ah).
    pub remaining_ah: f64,
    /// Full capacity (Ah).
    pub full_ah: f64,
    /// Cycles.
    pub cycles: u16,
    /// Charge MOSFET on.
    pub charge_fet: bool,
    /// Serial number (16 chars at most).
    pub serial: String,
    /// Model (16 chars at most).
    pub model: String,
}

impl Snapshot {
    /// Registers 5000..5000 + [`SIM_SPAN`].
    pub fn registers(&self) -> Vec<u16> {
        let mut r = [0u16; SIM_SPAN as usize];
        let to = |v: f64, scale: f64| (v * scale).round().clamp(-32768.0, 65535.0) as i32;
        let cells = self.cells_v.len().min(MAX_CELLS);
        r[0] = cells as u16;
        for (reg, v) in r[1..].iter_mut().zip(self.cells_v.iter().take(cells)) {
            *reg = to(*v, 10.0) as u16;
        }
        let temps = self.temperatures_c.len().min(MAX_CELLS);
        r[17] = temps as u16;
        for (reg, t) in r[18..].iter_mut().zip(self.temperatures_c.iter().take(temps)) {
            *reg = to(*t, 10.0) as i16 as u16;
        }
        r[42] = to(self.current_a, 100.0).clamp(-32768, 32767) as i16 as u16;
        r[43] = to(self.voltage_v, 10.0) as u16;
        let mah = |ah: f64| (ah * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32;
        let (rem, full) = (mah(self.remaining_ah), mah(self.full_ah));
        [r[44], r[45], r[46], r[47]] = [(rem >> 16) as u16, rem as u16, (full >> 16) as u16, full as u16];
        r[48] = self.cycles;
        r[106] = if self.charge_fet { 0x0006 } else { 0x0004 };
        modbus::put_text(&mut r[110..118], &self.serial);
        modbus::put_text(&mut r[122..130], &self.model);
        modbus::put_text(&mut r[130..132], "0100");
        r.to_vec()
    }
}

/// Renogy has no SoC register: SoC = remaining / full capacity.
pub fn derive_soc(battery: &mut crate::battery::Battery) {
    if let (Some(remaining), Some(full)) = (battery.remaining_capacity_ah, battery.full_capacity_ah) {
        if full > 0.0 {
            battery.soc_percent = Some((remaining / full * 1000.0).round() / 10.0);
        }
    }
}
