//! JBD encoders for the simulator: wire-unit structs to complete, checked frames.

use super::{encode_response, field, BASIC_MIN, REG_BASIC_INFO, REG_CELLS, REG_HARDWARE};

/// Register 0x03 fields in wire units, for the simulator. [`BasicInfo::encode`] gives a frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasicInfo {
    /// Pack voltage, 10 mV.
    pub voltage_10mv: u16,
    /// Current, + = charging; 10 mA (100 mA when `high_current_units`).
    pub current: i16,
    /// Remaining capacity, 10 mAh (100 mAh when `high_current_units`).
    pub remaining_capacity: u16,
    /// Nominal capacity, 10 mAh (100 mAh when `high_current_units`).
    pub nominal_capacity: u16,
    /// Cycle count.
    pub cycles: u16,
    /// Production date as stored, see [`super::pack_production_date`].
    pub production_date: u16,
    /// Balancing, bit0 = cell 1 .. bit31 = cell 32.
    pub balance_bits: u32,
    /// Protection bits (bit0 cell OV .. bit12 MOS lock).
    pub protection_bits: u16,
    /// Software version, high nibble . low nibble (0x80 = "8.0").
    pub software_version: u8,
    /// State of charge, %.
    pub rsoc: u8,
    /// Charge MOSFET on.
    pub charge_fet: bool,
    /// Discharge MOSFET on.
    pub discharge_fet: bool,
    /// Series cells.
    pub cell_count: u8,
    /// NTC readings, 0.1 K (2731 = 0 °C).
    pub ntc_0p1k: Vec<u16>,
    /// Append the extension byte with bit 7 set: current and capacities in 100 mA / 100 mAh.
    pub high_current_units: bool,
}

impl BasicInfo {
    /// The complete, checked response frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(BASIC_MIN + 2 * self.ntc_0p1k.len() + 1);
        for word in [self.voltage_10mv, self.current as u16, self.remaining_capacity] {
            p.extend_from_slice(&word.to_be_bytes());
        }
        for word in [self.nominal_capacity, self.cycles, self.production_date] {
            p.extend_from_slice(&word.to_be_bytes());
        }
        p.extend_from_slice(&(self.balance_bits as u16).to_be_bytes());
        p.extend_from_slice(&((self.balance_bits >> 16) as u16).to_be_bytes());
        p.extend_from_slice(&self.protection_bits.to_be_bytes());
        let fets = u8::from(self.charge_fet) | u8::from(self.discharge_fet) << 1;
        let ntcs = field::at_most(&self.ntc_0p1k, 100);
        p.extend_from_slice(&[self.software_version, self.rsoc, fets, self.cell_count]);
        p.push(ntcs.len() as u8);
        ntcs.iter().for_each(|t| p.extend_from_slice(&t.to_be_bytes()));
        if self.high_current_units {
            p.push(0x80);
        }
        encode_response(REG_BASIC_INFO, 0, &p)
    }
}

/// A register 0x04 response; at most 127 cells fit the one-byte length.
pub fn encode_cells(cells_mv: &[u16]) -> Vec<u8> {
    let payload: Vec<u8> = cells_mv.iter().take(127).flat_map(|mv| mv.to_be_bytes()).collect();
    encode_response(REG_CELLS, 0, &payload)
}

/// A register 0x05 response carrying `name` (cut at 255 bytes).
pub fn encode_hardware(name: &str) -> Vec<u8> {
    encode_response(REG_HARDWARE, 0, name.as_bytes())
}
