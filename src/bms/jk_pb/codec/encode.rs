//! JK PB frame encoders for the simulator: plain values to complete 300-byte frames.

use super::{checksum, field, Frame, FRAME_LEN, HEADER};

fn frame(kind: u8, fill: impl FnOnce(&mut Frame)) -> Vec<u8> {
    let mut f = [0u8; FRAME_LEN];
    f[..4].copy_from_slice(&HEADER);
    f[4] = kind;
    fill(&mut f);
    f[FRAME_LEN - 1] = checksum::sum8(&f[..FRAME_LEN - 1]);
    f.to_vec()
}

/// Writes `bytes` at `at`; the offsets are the decoder's, all inside the frame.
fn put(f: &mut Frame, at: usize, bytes: &[u8]) {
    if let Some(place) = f.get_mut(at..at + bytes.len()) {
        place.copy_from_slice(bytes);
    }
}
fn put16(f: &mut Frame, at: usize, v: u16) {
    put(f, at, &v.to_le_bytes());
}
fn put32(f: &mut Frame, at: usize, v: u32) {
    put(f, at, &v.to_le_bytes());
}
fn put_text(f: &mut Frame, at: usize, len: usize, text: &str) {
    put(f, at, field::at_most(text.as_bytes(), len));
}

/// Status (type 2) in wire units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Cell voltages, mV (at most 32).
    pub cells_mv: Vec<u16>,
    /// Pack voltage, mV.
    pub voltage_mv: u32,
    /// Current, mA, + = charging.
    pub current_ma: i32,
    /// MOSFET temperature, 0.1 °C.
    pub mos_temp_0p1c: i16,
    /// T1..T4, 0.1 °C.
    pub temps_0p1c: [i16; 4],
    /// Alarm word.
    pub alarms: u32,
    /// SoC, %.
    pub soc: u8,
    /// Remaining capacity, mAh.
    pub remaining_mah: i32,
    /// Full capacity, mAh.
    pub full_mah: u32,
    /// Cycles.
    pub cycles: u32,
    /// Charge MOSFET on.
    pub charge_fet: bool,
    /// Discharge MOSFET on.
    pub discharge_fet: bool,
}

impl Status {
    /// The 300-byte frame.
    pub fn encode(&self) -> Vec<u8> {
        frame(2, |f| {
            let cells = field::at_most(&self.cells_mv, 32);
            for (i, mv) in cells.iter().enumerate() {
                put16(f, 6 + 2 * i, *mv);
            }
            let mask = if cells.len() >= 32 { u32::MAX } else { (1u32 << cells.len()) - 1 };
            put32(f, 70, mask);
            let max = cells.iter().enumerate().max_by_key(|(_, v)| **v).map_or(0, |(i, _)| i);
            let min = cells.iter().enumerate().min_by_key(|(_, v)| **v).map_or(0, |(i, _)| i);
            let sum: u32 = cells.iter().map(|&v| u32::from(v)).sum();
            put16(f, 74, sum.checked_div(cells.len() as u32).unwrap_or(0) as u16);
            put16(
                f,
                76,
                cells.get(max).copied().unwrap_or(0).saturating_sub(cells.get(min).copied().unwrap_or(0)),
            );
            f[78] = max as u8;
            f[79] = min as u8;
            put16(f, 144, self.mos_temp_0p1c as u16);
            put32(f, 150, self.voltage_mv);
            put32(f, 158, self.current_ma as u32);
            put16(f, 162, self.temps_0p1c[0] as u16);
            put16(f, 164, self.temps_0p1c[1] as u16);
            put16(f, 256, self.temps_0p1c[2] as u16);
            put16(f, 258, self.temps_0p1c[3] as u16);
            put32(f, 166, self.alarms);
            f[173] = self.soc;
            put32(f, 174, self.remaining_mah as u32);
            put32(f, 178, self.full_mah);
            put32(f, 182, self.cycles);
            f[190] = 100;
            f[198] = u8::from(self.charge_fet);
            f[199] = u8::from(self.discharge_fet);
            f[214] = 0x36;
        })
    }
}

/// Settings (type 1): the limits the daemon reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Cell count.
    pub cells: u32,
    /// Charge over-current protection, mA.
    pub charge_ocp_ma: u32,
    /// Discharge over-current protection, mA.
    pub discharge_ocp_ma: u32,
    /// Design capacity, mAh.
    pub capacity_mah: u32,
    /// Address (DIP switches).
    pub address: u8,
}

impl Settings {
    /// The 300-byte frame.
    pub fn encode(&self) -> Vec<u8> {
        frame(1, |f| {
            put32(f, 10, 2700);
            put32(f, 18, 3650);
            put32(f, 38, 3450);
            put32(f, 42, 3375);
            put32(f, 50, self.charge_ocp_ma);
            put32(f, 62, self.discharge_ocp_ma);
            put32(f, 114, self.cells);
            put32(f, 118, 1);
            put32(f, 122, 1);
            put32(f, 126, 1);
            put32(f, 130, self.capacity_mah);
            put32(f, 270, self.address.into());
        })
    }
}

/// About (type 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    /// Vendor / model id (16 bytes).
    pub vendor: String,
    /// Hardware version (8 bytes).
    pub hardware: String,
    /// Software version (8 bytes).
    pub software: String,
    /// Serial number (16 bytes).
    pub serial: String,
}

impl About {
    /// The 300-byte frame.
    pub fn encode(&self) -> Vec<u8> {
        frame(3, |f| {
            put_text(f, 6, 16, &self.vendor);
            put_text(f, 22, 8, &self.hardware);
            put_text(f, 30, 8, &self.software);
            put_text(f, 46, 16, &self.serial);
        })
    }
}
