//! Daly "smart BMS" over Bluetooth LE (service FFF0, notifications FFF1, writes FFF2). Notes and
//! sources: `docs/protocols/daly_ble.md`.
//!
//! One request, a Modbus-RTU-style read of 62 registers from unit 0xD2: `D2 03 00 00 00 3E D7
//! B9`. The reply `D2 03 7C <124 bytes> crc16/modbus` (129 bytes, several notifications) holds,
//! big-endian, at data offset: 0 cell mV x32, 64 temperatures (raw - 40 °C) x8, 80 pack 0.1 V,
//! 82 current (raw - 30000) / 10 A, 84 SoC 0.1 %, 96 remaining 0.1 Ah, 98 cell count,
//! 100 sensor count, 102 cycles, 104 balancer, 106 charge FET, 108 discharge FET, 112 cell
//! delta mV, 116 an 8-byte problem code. Positive current = charging (aiobmsble's fixture: raw
//! 30030 while charging is +3.0 A; the UART 0x90 sentence is read the other way round, see
//! `bms::daly::codec`); temperatures by the UART rule (`temperature_c`).

use crate::battery::AlarmLevel;
use crate::bms::daly::codec::{current_a, temperature_c};
use crate::protocol::{field, modbus, Decoded, FrameError, Scan};
use serde_json::json;

/// The unit address of the BLE register block.
pub const UNIT: u8 = 0xD2;
/// Registers read (124 bytes).
pub const REGISTERS: u16 = 0x3E;
/// Reply length: header 3, data 124, CRC 2.
pub const REPLY_LEN: usize = 129;
/// Most cells / temperature sensors the block has room for.
pub const MAX_CELLS: usize = 32;
/// Temperature slots.
pub const MAX_TEMPS: usize = 8;

/// The status request, `D2 03 00 00 00 3E D7 B9`.
pub fn request() -> Vec<u8> {
    modbus::read_request(UNIT, 0, REGISTERS)
}

/// Finds a reply (a Modbus read response with a good CRC) at the start of `buf`.
pub fn scan(buf: &[u8]) -> Scan {
    modbus::scan_response(buf)
}

/// Decodes the 124-byte register block of a reply.
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let registers = modbus::parse_read_response(frame, Some(UNIT))?;
    if registers.len() != usize::from(REGISTERS) {
        return Err(FrameError::LengthMismatch {
            declared: usize::from(REGISTERS) * 2,
            actual: registers.len() * 2,
        });
    }
    let word = |offset: usize| i64::from(registers.get(offset / 2).copied().unwrap_or(0));
    let cells = usize::try_from(word(98)).unwrap_or(0);
    let sensors = usize::try_from(word(100)).unwrap_or(0);
    if cells == 0 || cells > MAX_CELLS {
        return Err(FrameError::InvalidField { field: "cell_count" });
    }
    let cell_voltages: Vec<f64> = (0..cells).map(|i| field::scale(word(2 * i), 0, 1000)).collect();
    let temperatures: Vec<f64> =
        (0..sensors.min(MAX_TEMPS)).map(|i| temperature_c(word(64 + 2 * i))).collect();
    let problem: u64 = (0..4).fold(0u64, |acc, i| (acc << 16) | word(116 + 2 * i) as u64);
    let mut d = Decoded::default();
    let b = &mut d.battery;
    b.voltage_v = Some(field::scale(word(80), 0, 10));
    b.current_a = Some(current_a(word(82)));
    b.soc_percent = Some(field::scale(word(84), 0, 10));
    b.remaining_capacity_ah = Some(field::scale(word(96), 0, 10));
    b.cell_count = u16::try_from(cells).ok();
    b.cell_voltages_v = Some(cell_voltages);
    b.temperatures_c = Some(temperatures);
    b.cycles = u32::try_from(word(102)).ok();
    b.charge_fet = Some(word(106) != 0);
    b.discharge_fet = Some(word(108) != 0);
    b.balancer_enabled = Some(word(104) != 0);
    // The problem code's bits are not documented in the sources (docs/protocols/daly_ble.md):
    // any bit set is reported as an internal-failure warning, never ignored.
    if problem != 0 {
        b.alarms.internal_failure = Some(AlarmLevel::Warning);
    }
    let e = &mut d.extra;
    e.insert("current_raw", json!(word(82)));
    e.insert("temp_sensor_count", json!(sensors));
    e.insert("delta_cell_v", json!(field::scale(word(112), 0, 1000)));
    e.insert("balancer", json!(word(104)));
    e.insert("problem_code", json!(format!("{problem:016X}")));
    Ok(d)
}

/// `decode` command: a reply (in one piece or its notifications in order, leading garbage
/// skipped) or the request.
pub fn decode_any(bytes: &[u8]) -> Result<Decoded, FrameError> {
    if let Some((frame, _)) = crate::protocol::find_frame(bytes, scan) {
        return decode(frame);
    }
    match modbus::parse_request(bytes) {
        Ok(r) => {
            let mut d = Decoded::default();
            d.extra.insert("address", json!(r.address));
            d.extra.insert("register", json!(r.start));
            d.extra.insert("quantity", json!(r.count));
            Ok(d)
        }
        Err(_) => decode(bytes),
    }
}

/// The reply block for a simulator: `cells_mv`, `temps_c`, and the scalar fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    /// Cell voltages (mV).
    pub cells_mv: Vec<u16>,
    /// Temperatures (°C).
    pub temps_c: Vec<f64>,
    /// Pack voltage (V).
    pub voltage_v: f64,
    /// Current (A, + charging).
    pub current_a: f64,
    /// SoC (%).
    pub soc_percent: f64,
    /// Remaining capacity (Ah).
    pub remaining_ah: f64,
    /// Cycles.
    pub cycles: u16,
    /// Charge FET on.
    pub charge_fet: bool,
    /// Discharge FET on.
    pub discharge_fet: bool,
}

impl Block {
    /// The whole reply frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut r = vec![0u16; usize::from(REGISTERS)];
        let mut put = |offset: usize, value: f64| {
            if let Some(slot) = r.get_mut(offset / 2) {
                *slot = value.round().clamp(0.0, 65535.0) as u16;
            }
        };
        for (i, mv) in self.cells_mv.iter().take(MAX_CELLS).enumerate() {
            put(2 * i, f64::from(*mv));
        }
        for (i, t) in self.temps_c.iter().take(MAX_TEMPS).enumerate() {
            put(64 + 2 * i, t + 40.0);
        }
        put(80, self.voltage_v * 10.0);
        put(82, 30_000.0 + self.current_a * 10.0);
        put(84, self.soc_percent * 10.0);
        put(96, self.remaining_ah * 10.0);
        put(98, self.cells_mv.len().min(MAX_CELLS) as f64);
        put(100, self.temps_c.len().min(MAX_TEMPS) as f64);
        put(102, f64::from(self.cycles));
        put(106, f64::from(u8::from(self.charge_fet)));
        put(108, f64::from(u8::from(self.discharge_fet)));
        let (lo, hi) = (self.cells_mv.iter().min().copied(), self.cells_mv.iter().max().copied());
        put(112, f64::from(hi.unwrap_or(0).saturating_sub(lo.unwrap_or(0))));
        modbus::read_response(UNIT, &r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_documented_one() {
        assert_eq!(request(), vec![0xD2, 0x03, 0x00, 0x00, 0x00, 0x3E, 0xD7, 0xB9]);
    }

    #[test]
    fn a_block_round_trips_discharge_negative() {
        let block = Block {
            cells_mv: vec![3301, 3302, 3299, 3300],
            temps_c: vec![21.0, -5.0],
            voltage_v: 13.2,
            current_a: -12.5,
            soc_percent: 55.5,
            remaining_ah: 150.2,
            cycles: 9,
            charge_fet: true,
            discharge_fet: false,
        };
        let frame = block.encode();
        assert_eq!(frame.len(), REPLY_LEN);
        let d = decode(&frame).unwrap();
        assert_eq!(d.battery.current_a, Some(-12.5), "discharging is negative");
        assert_eq!(d.battery.temperatures_c, Some(vec![21.0, -5.0]));
        assert_eq!(d.battery.cell_voltages_v, Some(vec![3.301, 3.302, 3.299, 3.3]));
        assert_eq!((d.battery.charge_fet, d.battery.discharge_fet), (Some(true), Some(false)));
        assert_eq!(d.battery.alarms.internal_failure, None);
    }

    #[test]
    fn bad_crc_and_other_units_are_refused() {
        let mut frame = Block { cells_mv: vec![3300; 4], ..Block::default() }.encode();
        frame[10] ^= 1;
        assert!(decode(&frame).is_err());
        let other = modbus::read_response(0x01, &[0u16; 62]);
        assert!(decode(&other).is_err());
    }
}
