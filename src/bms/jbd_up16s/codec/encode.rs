//! UP16S encoder for the simulator: [`PackStatus`] to a complete PackStatus frame.

use super::{field, frame, CURRENT_ZERO, PACK_STATUS, TEMP_ZERO};

/// PackStatus in wire-near units, for the simulator. [`PackStatus::encode`] gives a full frame;
/// cell min/max/avg and temperature statistics are computed from the lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackStatus {
    /// Bus address of the pack.
    pub address: u8,
    /// Pack voltage, 10 mV.
    pub voltage_10mv: u16,
    /// Current, 10 mA, + = charging (sent as raw + 300000).
    pub current_10ma: i32,
    /// State of charge, 0.01 %.
    pub soc_centi_percent: u16,
    /// Remaining capacity, 10 mAh.
    pub remaining_10mah: u16,
    /// Full capacity, 10 mAh.
    pub full_10mah: u16,
    /// Rated capacity, 10 mAh.
    pub rated_10mah: u16,
    /// MOSFET temperature, 0.1 °C.
    pub mos_temp_0p1c: i16,
    /// Ambient temperature, 0.1 °C.
    pub ambient_temp_0p1c: i16,
    /// State of health, %.
    pub soh_percent: u16,
    /// Fault flags (level 2).
    pub fault_flags: u32,
    /// Alarm flags (level 1).
    pub alarm_flags: u32,
    /// Discharge MOSFET enabled (flag bit 0).
    pub discharge_fet: bool,
    /// Charge MOSFET enabled (flag bit 1).
    pub charge_fet: bool,
    /// Cycle count.
    pub cycles: u16,
    /// Charge voltage limit, 0.1 V.
    pub cvl_0p1v: u16,
    /// Charge current limit, 0.1 A.
    pub ccl_0p1a: u16,
    /// Discharge voltage limit, 0.1 V.
    pub dvl_0p1v: u16,
    /// Discharge current limit, 0.1 A.
    pub dcl_0p1a: u16,
    /// Cell voltages, mV.
    pub cells_mv: Vec<u16>,
    /// Cell temperatures, 0.1 °C.
    pub temps_0p1c: Vec<i16>,
    /// Balancing bits, bit0 = cell 1.
    pub balancing_bits: u16,
    /// Firmware word (0x0C04 = "12.4").
    pub firmware: u16,
    /// Pack serial (up to 30 ASCII bytes).
    pub serial: String,
}

fn temp_raw(t_0p1c: i16) -> u16 {
    (i32::from(t_0p1c) + TEMP_ZERO as i32).clamp(0, 0xFFFF) as u16
}

/// (1-based index of max, max, 1-based index of min, min, average) of a list.
fn stats(values: &[u16]) -> [u16; 5] {
    let max = values.iter().enumerate().max_by_key(|(_, v)| **v);
    let min = values.iter().enumerate().min_by_key(|(_, v)| **v);
    let sum: u32 = values.iter().map(|&v| u32::from(v)).sum();
    let avg = sum.checked_div(values.len() as u32).unwrap_or(0) as u16;
    let at = |pick: Option<(usize, &u16)>| pick.map_or((0, 0), |(i, v)| (i as u16 + 1, *v));
    let ((max_i, max_v), (min_i, min_v)) = (at(max), at(min));
    [max_i, max_v, min_i, min_v, avg]
}

impl PackStatus {
    /// The complete response frame (function 0x78, window 0x1000-0x10A0).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(160);
        let mut put = |words: &[u16]| words.iter().for_each(|w| p.extend_from_slice(&w.to_be_bytes()));
        let current = (i64::from(self.current_10ma) + CURRENT_ZERO).clamp(0, u32::MAX.into()) as u32;
        let mosfet = u16::from(self.discharge_fet) | u16::from(self.charge_fet) << 1;
        let temps: Vec<u16> = self.temps_0p1c.iter().map(|&t| temp_raw(t)).collect();
        put(&[self.voltage_10mv, 0, (current >> 16) as u16, current as u16]);
        put(&[self.soc_centi_percent, self.remaining_10mah, self.full_10mah, self.rated_10mah]);
        put(&[temp_raw(self.mos_temp_0p1c), temp_raw(self.ambient_temp_0p1c), 0, self.soh_percent]);
        put(&[(self.fault_flags >> 16) as u16, self.fault_flags as u16]);
        put(&[(self.alarm_flags >> 16) as u16, self.alarm_flags as u16]);
        put(&[mosfet, 0, self.cycles]);
        put(&stats(&self.cells_mv));
        put(&stats(&temps));
        put(&[self.cvl_0p1v, self.ccl_0p1a, self.dvl_0p1v, self.dcl_0p1a]);
        put(&[self.cells_mv.len() as u16]);
        put(&self.cells_mv);
        put(&[temps.len() as u16]);
        put(&temps);
        put(&[0, self.balancing_bits, self.firmware]);
        p.extend_from_slice(&field::padded(&self.serial, 30));
        frame(self.address, PACK_STATUS, &p)
    }
}
