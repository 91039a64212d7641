//! EG4-LL / LL-S v2: Modbus RTU FC03, 9600 8N1, DIP-switch addresses (incumbent study 2.12,
//! EG4-LL Modbus protocol as read by wombatt; vectors `eg4_ll.json`). Notes: `docs/protocols/eg4_ll.md`.
//!
//! Three blocks: status (0x0000 x 39) every poll, hardware (0x0069 x 23: model, firmware, serial)
//! and configuration (0x002D x 91: thresholds) once per connection. Alarms and MOSFET state come
//! from the BMS's own warning/protection/error words, never from thresholds.

use crate::battery::AlarmLevel;
use crate::bms::renogy::codec::fixed;
use crate::protocol::field::{self, AlarmSlot, Field, Flag, Width};
use crate::protocol::modbus;
use crate::protocol::{Decoded, FrameError};
use serde_json::json;

pub use crate::bms::renogy::codec::Block;

/// Line speed.
pub const BAUD: u32 = 9600;
/// Status, cells, temperatures, counters.
pub const STATUS: Block = Block { name: "status", start: 0x0000, count: 39 };
/// Model, firmware, serial.
pub const HARDWARE: Block = Block { name: "hardware", start: 0x0069, count: 23 };
/// Protection thresholds.
pub const CONFIG: Block = Block { name: "config", start: 0x002D, count: 91 };
/// Every block.
pub const BLOCKS: [Block; 3] = [STATUS, HARDWARE, CONFIG];
/// Cells the status block holds.
pub const CELLS: usize = 16;

const STATUS_FIELDS: &[Field] = &[
    Field::new("voltage", 0, Width::U16, 100, |b, v| b.voltage_v = Some(v)),
    Field::new("current", 2, Width::I16, 100, |b, v| b.current_a = Some(v)),
    Field::new("pcb_temp", 36, Width::I16, 1, |b, v| b.temperature_mos_c = Some(v)),
    Field::new("max_charging_current", 44, Width::U16, 1, |b, v| b.charge_current_limit_a = Some(v)),
    Field::new("soh", 46, Width::U16, 1, |b, v| b.soh_percent = Some(v)),
    Field::new("soc", 48, Width::U16, 1, |b, v| b.soc_percent = Some(v)),
    Field::new("cycles", 58, Width::U32, 1, |b, v| b.cycles = Some(v as u32)),
    Field::new("full_capacity", 62, Width::U32, 3_600_000, |b, v| b.full_capacity_ah = Some(v)),
    Field::new("designed_capacity", 74, Width::U16, 10, |b, v| b.nominal_capacity_ah = Some(v)),
];

const fn flag(bit: u8, slot: AlarmSlot, level: AlarmLevel) -> Flag {
    Flag::new(bit, slot, level)
}

/// Warning (level 1) and protection (level 2) words share one layout (bit 13 differs: float
/// stopped in the warning word, discharge short circuit in the protection word).
macro_rules! condition_table {
    ($level:expr) => {
        &[
            flag(0, |a| &mut a.high_voltage, $level),
            flag(1, |a| &mut a.high_cell_voltage, $level),
            flag(2, |a| &mut a.low_voltage, $level),
            flag(3, |a| &mut a.low_cell_voltage, $level),
            flag(4, |a| &mut a.high_charge_current, $level),
            flag(5, |a| &mut a.high_discharge_current, $level),
            flag(7, |a| &mut a.high_internal_temperature, $level),
            flag(8, |a| &mut a.high_charge_temperature, $level),
            flag(9, |a| &mut a.high_temperature, $level),
            flag(10, |a| &mut a.low_charge_temperature, $level),
            flag(11, |a| &mut a.low_temperature, $level),
            flag(12, |a| &mut a.low_soc, $level),
        ]
    };
}
const WARNINGS: &[Flag] = condition_table!(AlarmLevel::Warning);
const PROTECTIONS: &[Flag] = condition_table!(AlarmLevel::Alarm);
const SHORT_CIRCUIT: &[Flag] = &[flag(13, |a| &mut a.high_discharge_current, AlarmLevel::Alarm)];
/// Error word: voltage, temperature, current-flow errors; cell unbalance.
const ERRORS: &[Flag] = &[
    flag(0, |a| &mut a.internal_failure, AlarmLevel::Alarm),
    flag(1, |a| &mut a.internal_failure, AlarmLevel::Alarm),
    flag(2, |a| &mut a.internal_failure, AlarmLevel::Alarm),
    flag(4, |a| &mut a.cell_imbalance, AlarmLevel::Warning),
];
/// Protection bits after which the BMS has opened the charge MOSFET.
pub const CHARGE_BLOCKING: u16 = 1 << 0 | 1 << 1 | 1 << 4 | 1 << 7 | 1 << 8 | 1 << 10;
/// Protection bits after which the BMS has opened the discharge MOSFET.
pub const DISCHARGE_BLOCKING: u16 = 1 << 2 | 1 << 3 | 1 << 5 | 1 << 7 | 1 << 9 | 1 << 11 | 1 << 13;

/// Read request for `block`.
pub fn request(address: u8, block: Block) -> Vec<u8> {
    modbus::read_request(address, block.start, block.count)
}

/// Decodes a reply frame (block inferred from its byte count).
pub fn decode(frame: &[u8], expected_address: Option<u8>) -> Result<Decoded, FrameError> {
    let registers = modbus::parse_read_response(frame, expected_address)?;
    let block = BLOCKS
        .into_iter()
        .find(|b| usize::from(b.count) == registers.len())
        .ok_or(FrameError::InvalidField { field: "byte_count" })?;
    let mut decoded = decode_registers(block, &registers)?;
    decoded.extra.extend(modbus::header_extra(frame));
    Ok(decoded)
}

/// Decodes the registers of `block`.
pub fn decode_registers(block: Block, r: &[u16]) -> Result<Decoded, FrameError> {
    if r.len() < usize::from(block.count) {
        return Err(FrameError::TooShort { need: usize::from(block.count) * 2, got: r.len() * 2 });
    }
    let mut d = Decoded::default();
    d.extra.insert("block", json!(block.name));
    d.extra.insert("start_register", json!(block.start));
    match block.name {
        "status" => status(r, &mut d)?,
        "hardware" => {
            let r: &[u16; HARDWARE.count as usize] = fixed(r)?;
            let text = modbus::registers_text;
            let (model, firmware, serial) = (text(&r[..12]), text(&r[12..15]), text(&r[15..23]));
            d.battery.model = Some(model.clone()).filter(|s| !s.is_empty());
            d.battery.firmware_version = Some(firmware).filter(|s| !s.is_empty());
            d.battery.serial = Some(serial).filter(|s| !s.is_empty());
            d.extra.insert("model", json!(model));
        }
        _ => config(fixed(r)?, &mut d),
    }
    Ok(d)
}

fn status(r: &[u16], d: &mut Decoded) -> Result<(), FrameError> {
    let data: Vec<u8> = r.iter().flat_map(|w| w.to_be_bytes()).collect();
    field::apply(STATUS_FIELDS, &data, &mut d.battery)?;
    let r: &[u16; STATUS.count as usize] = fixed(r)?;
    let cell_count = usize::from(r[36]);
    let cells_mv = r[2..2 + CELLS]
        .get(..cell_count)
        .filter(|cells| !cells.is_empty())
        .ok_or(FrameError::InvalidField { field: "cell_count" })?;
    let (warning, protection, error) = (r[26], r[27], r[28]);
    let b = &mut d.battery;
    b.cell_count = Some(cell_count as u16);
    b.cell_voltages_v = Some(cells_mv.iter().map(|&mv| field::scale(mv.into(), 0, 1000)).collect());
    // Registers 33-35: six i8 sensor bytes; the 5th and 6th are always 0, so not published.
    let temps: Vec<f64> =
        r[33..36].iter().flat_map(|w| w.to_be_bytes()).map(|t| f64::from(t as i8)).collect();
    b.temperatures_c = Some(temps.iter().take(4).copied().collect());
    field::apply_flags(warning.into(), WARNINGS, &mut b.alarms);
    field::apply_flags(protection.into(), PROTECTIONS, &mut b.alarms);
    field::apply_flags(protection.into(), SHORT_CIRCUIT, &mut b.alarms);
    field::apply_flags(error.into(), ERRORS, &mut b.alarms);
    b.charge_fet = Some(protection & CHARGE_BLOCKING == 0);
    b.discharge_fet = Some(protection & DISCHARGE_BLOCKING == 0);
    let full_mas = u32::from(r[31]) << 16 | u32::from(r[32]);
    let e = &mut d.extra;
    e.insert("voltage_raw", json!(r[0]));
    e.insert("current_raw", json!(r[1] as i16));
    e.insert("cells_mv", json!(cells_mv));
    e.insert("pcb_temp_c", json!(r[18] as i16));
    e.insert("max_temp_c", json!(r[19] as i16));
    e.insert("avg_temp_c", json!(r[20] as i16));
    e.insert("capacity_remaining_percent_or_ah", json!(r[21]));
    e.insert("max_charging_current_a", json!(r[22]));
    e.insert("status", json!(r[25]));
    e.insert("warning", json!(warning));
    e.insert("protection", json!(protection));
    e.insert("error_code", json!(error));
    e.insert("full_capacity_mAs_raw", json!(full_mas));
    e.insert("full_capacity_mah", json!(full_mas / 3600));
    e.insert("temperatures_raw_c", json!(temps));
    e.insert("designed_capacity_ah", json!(field::scale(r[37].into(), 0, 10)));
    e.insert("cell_balance_status", json!(r[38]));
    Ok(())
}

/// Thresholds by register index in the config block (study 2.12 byte offsets - 3, halved).
fn config(r: &[u16; CONFIG.count as usize], d: &mut Decoded) {
    for (name, raw, divisor) in [
        ("balance_start_v", r[11], 1000),
        ("balance_delta_v", r[12], 1000),
        ("cell_uv_warning_v", r[16], 1000),
        ("cell_uv_protection_v", r[17], 1000),
        ("cell_ov_warning_v", r[22], 1000),
        ("cell_ov_protection_v", r[23], 1000),
        ("charge_overcurrent_a", r[35], 100),
        ("discharge_overcurrent_a", r[36], 100),
    ] {
        d.extra.insert(name, json!(field::scale(raw.into(), 0, divisor)));
    }
}

/// Registers 0x0000..0x0080 for the simulator.
pub const SIM_SPAN: u16 = 0x80;
