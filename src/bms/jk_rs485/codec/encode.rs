//! JK read-all reply encoder for the simulator: wire-unit fields to a complete, checked frame.

use super::{field, frame, CMD_READ_ALL, CURRENT_SIGN_BIT_VERSION};

/// The read-all fields a simulator sends, in wire units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Cell voltages, mV, cell 1 first.
    pub cells_mv: Vec<u16>,
    /// MOSFET, T1, T2 temperatures as [`encode_temperature`] gives them.
    pub temperatures_raw: [u16; 3],
    /// Pack voltage, 10 mV.
    pub voltage_10mv: u16,
    /// Current as [`encode_current`] gives it (protocol version 0x01).
    pub current_raw: u16,
    /// State of charge, %.
    pub soc_percent: u8,
    /// Cycle count.
    pub cycles: u16,
    /// Warning word (id 0x8B).
    pub warnings: u16,
    /// Status word (id 0x8C): bit 0 charge MOS, bit 1 discharge MOS, bit 2 balancer.
    pub status: u16,
    /// Capacity setting, Ah.
    pub capacity_ah: u32,
    /// Software version, 15 characters (id 0xB7).
    pub software_version: String,
    /// Factory id, 24 characters (id 0xBA).
    pub factory_id: String,
}

/// A temperature in °C as JK sends it: 0..=100 as is, below 0 as `100 - t` (-1 °C = 101).
pub fn encode_temperature(celsius: f64) -> u16 {
    let t = celsius.round().clamp(-100.0, 100.0);
    if t < 0.0 {
        (100.0 - t) as u16
    } else {
        t as u16
    }
}

/// A current in A in the protocol version 0x01 form: bit 15 = charging, 10 mA units.
pub fn encode_current(amps: f64) -> u16 {
    let magnitude = (amps.abs() * 100.0).round().min(f64::from(0x7FFF)) as u16;
    if amps > 0.0 {
        magnitude | 0x8000
    } else {
        magnitude
    }
}

impl Status {
    /// The complete reply frame (frame source 0 = BMS, transport 1 = reply).
    pub fn encode(&self) -> Vec<u8> {
        let cells = field::at_most(&self.cells_mv, 85);
        let mut d = vec![0x79, (cells.len() * 3) as u8];
        for (i, mv) in cells.iter().enumerate() {
            d.push(i as u8 + 1);
            d.extend_from_slice(&mv.to_be_bytes());
        }
        let words = [
            (0x80, self.temperatures_raw[0]),
            (0x81, self.temperatures_raw[1]),
            (0x82, self.temperatures_raw[2]),
            (0x83, self.voltage_10mv),
            (0x84, self.current_raw),
        ];
        for (id, value) in words {
            d.push(id);
            d.extend_from_slice(&value.to_be_bytes());
        }
        d.extend_from_slice(&[0x85, self.soc_percent, 0x86, 2, 0x87]);
        d.extend_from_slice(&self.cycles.to_be_bytes());
        for (id, value) in [(0x8A, cells.len() as u16), (0x8B, self.warnings), (0x8C, self.status)] {
            d.push(id);
            d.extend_from_slice(&value.to_be_bytes());
        }
        d.extend_from_slice(&[0x9D, 1, 0xAA]);
        d.extend_from_slice(&self.capacity_ah.to_be_bytes());
        d.push(0xB7);
        d.extend_from_slice(&field::padded(&self.software_version, 15));
        d.push(0xBA);
        d.extend_from_slice(&field::padded(&self.factory_id, 24));
        d.extend_from_slice(&[0xC0, CURRENT_SIGN_BIT_VERSION]);
        frame(CMD_READ_ALL, 0x00, 0x01, &d)
    }
}
