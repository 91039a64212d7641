//! The CAN "Victron/Pylontech dialect" (CAN-bus BMS, 500 kbit/s, 11-bit ids 0x351..0x379).
//!
//! Every frame is a broadcast by the BMS; there are no requests. Values are little-endian.
//! Frames shorter than 8 bytes are normal (Pylontech sends 0x355 with DLC 4 and 0x356 with DLC 6):
//! a field is decoded only when all its bytes are present, never read past the DLC.
//! `docs/protocols/victron_can.md` lists every frame and scale.

pub mod encode;

use crate::battery::{AlarmLevel, Alarms, Battery};
use crate::protocol::{field, Decoded, FrameError};
use serde_json::json;

/// Charge/discharge limits: CVL, CCL, DCL, DVL.
pub const LIMITS: u32 = 0x351;
/// SoC, SoH, high-resolution SoC.
pub const SOC: u32 = 0x355;
/// Voltage, current, temperature.
pub const MEASUREMENTS: u32 = 0x356;
/// Pylontech protection/alarm bits and module count.
pub const PYLON_ALARMS: u32 = 0x359;
/// Alarms and warnings, two bits per item.
pub const ALARMS: u32 = 0x35A;
/// Request flags (charge/discharge enable, force charge, full charge).
pub const REQUESTS: u32 = 0x35C;
/// Manufacturer name (ASCII). Also the id of the host keep-alive frame.
pub const MANUFACTURER: u32 = 0x35E;
/// Chemistry, firmware version, available capacity.
pub const INFO: u32 = 0x35F;
/// Battery name, first and second half.
pub const NAME_1: u32 = 0x370;
/// Battery name, second half.
pub const NAME_2: u32 = 0x371;
/// Modules online / blocking charge / blocking discharge / offline.
pub const MODULES: u32 = 0x372;
/// Min/max cell voltage (mV) and min/max cell temperature (K).
pub const CELLS: u32 = 0x373;
/// Installed capacity (Ah).
pub const INSTALLED_CAPACITY: u32 = 0x379;
/// JBD extension: serial number, first 8 characters.
pub const SERIAL_1: u32 = 0x380;
/// JBD extension: serial number, next 8 characters.
pub const SERIAL_2: u32 = 0x381;
/// JBD extension: product id (ASCII).
pub const PRODUCT_ID: u32 = 0x382;
/// The serial a JBD UP pack sends until one is set (study 2.4): no identity at all.
pub const JBD_DUMMY_SERIAL: &str = "JBD87654321";

/// How a frame is read: the known deviations a BMS may need, set per battery in the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Volts per count of the 0x356 voltage: 0.01 in the dialect, 0.1 for Discover.
    pub voltage_scale_v: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self { voltage_scale_v: 0.01 }
    }
}

/// The items of 0x35A, one 2-bit slot each (bytes 0-3 alarms, bytes 4-7 warnings).
const ALARM_NAMES: [&str; 13] = [
    "alarm_general",
    "alarm_high_voltage",
    "alarm_low_voltage",
    "alarm_high_temperature",
    "alarm_low_temperature",
    "alarm_high_temp_charge",
    "alarm_low_temp_charge",
    "alarm_high_discharge_current",
    "alarm_high_charge_current",
    "alarm_contactor",
    "alarm_short_circuit",
    "alarm_bms_internal",
    "alarm_cell_imbalance",
];
const WARNING_NAMES: [&str; 13] = [
    "warning_general",
    "warning_high_voltage",
    "warning_low_voltage",
    "warning_high_temperature",
    "warning_low_temperature",
    "warning_high_temp_charge",
    "warning_low_temp_charge",
    "warning_high_discharge_current",
    "warning_high_charge_current",
    "warning_contactor",
    "warning_short_circuit",
    "warning_bms_internal",
    "warning_cell_imbalance",
];

/// Reads little-endian words; `None` past the DLC.
struct Words<'a>(&'a [u8]);

impl Words<'_> {
    fn u16(&self, index: usize) -> Option<u16> {
        field::le_u16_at(self.0, index.checked_mul(2)?)
    }

    fn i16(&self, index: usize) -> Option<i16> {
        self.u16(index).map(|w| w as i16)
    }

    fn all(&self) -> Vec<u16> {
        field::chunks(self.0).map(u16::from_le_bytes).collect()
    }
}

/// Printable ASCII of `bytes` (NUL padding and control bytes dropped, spaces kept).
pub fn ascii(bytes: &[u8]) -> String {
    bytes.iter().filter(|b| (0x20..0x7F).contains(*b)).map(|&b| char::from(b)).collect()
}

fn text(value: String) -> Option<String> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Decodes one frame of id `id` with `data` (the DLC bytes).
pub fn decode(id: u32, data: &[u8], options: &Options) -> Result<Decoded, FrameError> {
    if data.len() > 8 {
        return Err(FrameError::LengthMismatch { declared: 8, actual: data.len() });
    }
    let need = match id {
        LIMITS | SOC | MEASUREMENTS | MODULES | CELLS | INSTALLED_CAPACITY | INFO => 2,
        ALARMS | PYLON_ALARMS | REQUESTS => 1,
        _ => 0,
    };
    let too_short = FrameError::TooShort { need, got: data.len() };
    if data.len() < need {
        return Err(too_short);
    }
    let w = Words(data);
    let mut d = Decoded::default();
    let b = &mut d.battery;
    let tenth = |v: Option<i16>| v.map(|v| f64::from(v) / 10.0);
    match id {
        LIMITS => {
            b.charge_voltage_limit_v = w.u16(0).map(|v| f64::from(v) / 10.0);
            b.charge_current_limit_a = tenth(w.i16(1));
            b.discharge_current_limit_a = tenth(w.i16(2));
            b.discharge_voltage_limit_v = w.u16(3).map(|v| f64::from(v) / 10.0);
        }
        SOC => {
            let plain = w.u16(0).map(f64::from);
            // Bytes 4-5: SoC in 0.01 %. Some BMS (a JBD-based Fogstar Drift) send 0 there,
            // which means "not sent", not 0 %.
            let hires = w.u16(2);
            b.soc_percent = match hires {
                Some(h) if h > 0 && h <= 10_000 => Some(f64::from(h) / 100.0),
                _ => plain,
            };
            b.soh_percent = w.u16(1).map(f64::from);
            if let Some(h) = hires {
                d.extra.insert("soc_hires_raw", json!(h));
            }
        }
        MEASUREMENTS => {
            let raw = w.i16(0);
            // Divided by the counts per volt (100 or 10, exact), not multiplied by 0.01 (inexact).
            b.voltage_v = raw.map(|v| f64::from(v) / options.voltage_scale_v.recip().round());
            b.current_a = tenth(w.i16(1));
            let temperature = tenth(w.i16(2));
            b.temperatures_c = temperature.map(|t| vec![t]);
            if let Some(raw) = raw {
                d.extra.insert("voltage_raw", json!(raw));
            }
            if let Some(t) = temperature {
                d.extra.insert("temperature_c", json!(t));
            }
        }
        PYLON_ALARMS => decode_pylon_alarms(data, &mut d),
        ALARMS => decode_alarms(data, &mut d),
        REQUESTS => {
            let &[flags, ..] = data else { return Err(too_short) };
            b.charge_fet = Some(flags & 0x80 != 0);
            b.discharge_fet = Some(flags & 0x40 != 0);
            for (key, bit) in [
                ("charge_enable", 0x80u8),
                ("discharge_enable", 0x40),
                ("force_charge_1", 0x20),
                ("force_charge_2", 0x10),
                ("full_charge_request", 0x08),
            ] {
                d.extra.insert(key, json!(flags & bit != 0));
            }
        }
        MANUFACTURER => {
            b.model = text(ascii(data));
            d.extra.insert("ascii", json!(ascii(data)));
        }
        INFO => {
            let chemistry = data.first_chunk::<2>().ok_or(too_short)?;
            d.extra.insert("chemistry", json!(ascii(chemistry)));
            if let Some(fw) = w.u16(1) {
                let [minor_or_major, second] = fw.to_le_bytes();
                b.firmware_version = Some(format!("{minor_or_major}.{second}"));
                d.extra.insert("firmware_u16_hex", json!(format!("0x{fw:04X}")));
            }
            b.full_capacity_ah = w.u16(2).filter(|&c| c > 0).map(f64::from);
            if let Some(raw) = w.u16(3) {
                d.extra.insert("bytes6_7_raw", json!(raw));
            }
        }
        NAME_1 | NAME_2 | 0x374..=0x377 | SERIAL_1 | SERIAL_2 | PRODUCT_ID => {
            d.extra.insert("ascii", json!(ascii(data)));
        }
        MODULES => {
            b.modules_online = w.u16(0).map(u32::from);
            b.modules_offline = w.u16(3).map(u32::from);
            for (key, index) in [("blocking_charge", 1), ("blocking_discharge", 2)] {
                if let Some(v) = w.u16(index) {
                    d.extra.insert(key, json!(v));
                }
            }
            d.extra.insert("raw_u16_le", json!(w.all()));
        }
        CELLS => decode_cells(&w, &mut d),
        INSTALLED_CAPACITY => {
            b.nominal_capacity_ah = w.u16(0).filter(|&c| c > 0).map(f64::from);
        }
        _ => {
            // Not part of the dialect (Discover's 0x354, JBD's 0x37x extensions...): shown raw.
            d.extra.insert("not_in_dialect", json!(true));
            d.extra.insert("raw_u16_le", json!(w.all()));
        }
    }
    Ok(d)
}

fn decode_cells(w: &Words<'_>, d: &mut Decoded) {
    d.extra.insert("raw_u16_le", json!(w.all()));
    let b = &mut d.battery;
    // Discover sends a 4-byte 0x373 that is not this layout (1 mV / 0 mV): only plausible cell
    // voltages are taken.
    if let (Some(min), Some(max)) = (w.u16(0), w.u16(1)) {
        if (500..=5000).contains(&min) && (500..=5000).contains(&max) && min <= max {
            b.min_cell_voltage_v = Some(f64::from(min) / 1000.0);
            b.max_cell_voltage_v = Some(f64::from(max) / 1000.0);
        } else {
            d.extra.insert("cells_implausible", json!(true));
        }
    }
    if let (Some(lo), Some(hi)) = (w.u16(2), w.u16(3)) {
        let (lo, hi) = (f64::from(lo) - 273.15, f64::from(hi) - 273.15);
        if (-60.0..=150.0).contains(&lo) && (-60.0..=150.0).contains(&hi) && lo <= hi {
            b.temperatures_c =
                Some(vec![crate::protocol::json::round(lo, 2), crate::protocol::json::round(hi, 2)]);
        }
    }
}

/// One 0x35A item: alarm slot 01 = alarm, warning slot 01 = warning, 10 = OK, 00/11 = not sent.
fn level(alarm: u8, warning: u8) -> Option<AlarmLevel> {
    match (alarm, warning) {
        (0b01, _) => Some(AlarmLevel::Alarm),
        (_, 0b01) => Some(AlarmLevel::Warning),
        (0b10, _) | (_, 0b10) => Some(AlarmLevel::Ok),
        _ => None,
    }
}

fn decode_alarms(data: &[u8], d: &mut Decoded) {
    let slot = |byte: usize, item: usize| data.get(byte + item / 4).map(|b| (b >> ((item % 4) * 2)) & 0b11);
    let mut levels = [None; 13];
    let names = ALARM_NAMES.into_iter().zip(WARNING_NAMES);
    for (item, (out, (alarm_name, warning_name))) in levels.iter_mut().zip(names).enumerate() {
        let alarm = slot(0, item);
        let warning = slot(4, item);
        if let Some(a) = alarm {
            d.extra.insert(alarm_name, json!(format!("{a:02b}")));
        }
        if let Some(w) = warning {
            d.extra.insert(warning_name, json!(format!("{w:02b}")));
        }
        *out = level(alarm.unwrap_or(0), warning.unwrap_or(0));
    }
    let a = &mut d.battery.alarms;
    a.high_voltage = levels[1];
    a.low_voltage = levels[2];
    a.high_temperature = levels[3];
    a.low_temperature = levels[4];
    a.high_charge_temperature = levels[5];
    a.low_charge_temperature = levels[6];
    a.high_discharge_current = levels[7];
    a.high_charge_current = levels[8];
    a.internal_failure = levels[11];
    a.cell_imbalance = levels[12];
    if let Some(short) = levels[10] {
        Alarms::raise(&mut a.high_discharge_current, short);
    }
    // General (item 0) and contactor (item 9) have no slot of their own in Venus OS's battery
    // paths: both are a fault inside the battery (JBD sets them; study 2.4 ignored them).
    // Only a warning or an alarm: their "OK" says nothing of the internal-failure item itself.
    for item in [levels[0], levels[9]].into_iter().flatten().filter(|l| *l != AlarmLevel::Ok) {
        Alarms::raise(&mut a.internal_failure, item);
    }
}

/// Pylontech 0x359: bytes 0-1 protection (alarm), bytes 2-3 alarm (warning), byte 4 modules.
fn decode_pylon_alarms(data: &[u8], d: &mut Decoded) {
    let byte = |i: usize| data.get(i).copied();
    let level = |protect: Option<u8>, warn: Option<u8>, bit: u8| match (protect, warn) {
        (Some(p), _) if p & bit != 0 => Some(AlarmLevel::Alarm),
        (_, Some(w)) if w & bit != 0 => Some(AlarmLevel::Warning),
        (Some(_), _) => Some(AlarmLevel::Ok),
        _ => None,
    };
    let (p0, p1, w0, w1) = (byte(0), byte(1), byte(2), byte(3));
    let a = &mut d.battery.alarms;
    a.high_voltage = level(p0, w0, 0x02);
    a.low_voltage = level(p0, w0, 0x04);
    a.high_temperature = level(p0, w0, 0x08);
    a.low_temperature = level(p0, w0, 0x10);
    a.high_discharge_current = level(p0, w0, 0x80);
    a.high_charge_current = level(p1, w1, 0x01);
    a.internal_failure = level(p1, w1, 0x08);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ");
    d.extra.insert("protection_bytes_hex", json!(hex(data.get(..2).unwrap_or(data))));
    if let Some(alarm_bytes) = data.get(2..4) {
        d.extra.insert("alarm_bytes_hex", json!(hex(alarm_bytes)));
    }
    if let Some(modules) = byte(4) {
        d.extra.insert("module_count", json!(modules));
        d.battery.modules_online = Some(u32::from(modules));
    }
    if let Some(tail) = data.get(5..) {
        d.extra.insert("bytes5_6_ascii", json!(ascii(tail)));
    }
}

/// The serial from JBD's 0x380 + 0x381, unless it is JBD's factory placeholder.
pub fn serial(first: &[u8], second: &[u8]) -> Option<String> {
    text(ascii(first) + &ascii(second)).filter(|s| s != JBD_DUMMY_SERIAL)
}

/// The battery name from 0x370 + 0x371 (`"Discover" + " AES"`), if any text is present.
pub fn name(first: &[u8], second: &[u8]) -> Option<String> {
    text(ascii(first) + &ascii(second))
}

/// Series cell count from the pack voltage and the mean of the min/max cell voltage. The dialect
/// has no cell count; this is only trusted while the cells are close (spread at most 0.1 V) and
/// the quotient is within 0.25 of a whole number.
pub fn derive_cell_count(voltage_v: f64, min_cell_v: f64, max_cell_v: f64) -> Option<u16> {
    let average = (min_cell_v + max_cell_v) / 2.0;
    if !(average > 0.5 && max_cell_v - min_cell_v <= 0.1 && voltage_v > 0.0) {
        return None;
    }
    let ratio = voltage_v / average;
    let n = ratio.round();
    ((ratio - n).abs() <= 0.25 && (1.0..=48.0).contains(&n)).then_some(n as u16)
}

/// Every frame a full battery view takes, decoded in id order and merged; 0x370/0x371 become the
/// model name. `frames` holds (id, data) pairs, at most one per id.
pub fn assemble(frames: &[(u32, &[u8])], options: &Options) -> Battery {
    let mut sorted: Vec<&(u32, &[u8])> = frames.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let mut battery = Battery::default();
    for (id, data) in sorted {
        if let Ok(decoded) = decode(*id, data, options) {
            battery.merge(&decoded.battery);
        }
    }
    let part = |id: u32| frames.iter().find(|(i, _)| *i == id).map_or(&[][..], |(_, d)| *d);
    if let Some(full) = name(part(NAME_1), part(NAME_2)) {
        battery.model = Some(full);
    }
    battery.serial = serial(part(SERIAL_1), part(SERIAL_2));
    battery
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frames_decode_the_fields_present() {
        let d = decode(SOC, &[0x58, 0, 0x5E, 0], &Options::default()).unwrap();
        assert_eq!(d.battery.soc_percent, Some(88.0));
        assert_eq!(d.battery.soh_percent, Some(94.0));
        assert_eq!(decode(LIMITS, &[1], &Options::default()), Err(FrameError::TooShort { need: 2, got: 1 }));
        let nine = [0u8; 9];
        assert!(matches!(decode(LIMITS, &nine, &Options::default()), Err(FrameError::LengthMismatch { .. })));
    }

    #[test]
    fn hires_soc_wins_when_sent() {
        let d = decode(SOC, &[0x3E, 0, 0x64, 0, 0x2A, 0x18, 0, 0], &Options::default()).unwrap();
        assert_eq!(d.battery.soc_percent, Some(61.86));
    }

    #[test]
    fn jbd_serial_frames_give_the_serial_unless_it_is_the_placeholder() {
        let frames: [(u32, &[u8]); 2] = [(SERIAL_1, b"UP16S015"), (SERIAL_2, b"-2208061")];
        assert_eq!(assemble(&frames, &Options::default()).serial.as_deref(), Some("UP16S015-2208061"));
        let dummy: [(u32, &[u8]); 2] = [(SERIAL_1, b"JBD87654"), (SERIAL_2, b"321\0\0\0\0\0")];
        assert_eq!(assemble(&dummy, &Options::default()).serial, None);
        assert_eq!(assemble(&[], &Options::default()).serial, None);
    }

    #[test]
    fn jbd_capacity_zero_in_0x35f_leaves_the_capacity_to_0x379() {
        let frames: [(u32, &[u8]); 2] =
            [(INFO, &[0x4C, 0x49, 0x01, 0x03, 0, 0, 0, 0]), (INSTALLED_CAPACITY, &[0x18, 0x01])];
        let b = assemble(&frames, &Options::default());
        assert_eq!(b.full_capacity_ah, None);
        assert_eq!(b.nominal_capacity_ah, Some(280.0));
    }

    #[test]
    fn every_0x35a_item_reaches_an_alarm() {
        // One item at a time set to "alarm" (01): each raises some alarm of the model.
        for item in 0..13usize {
            let mut data = [0u8; 8];
            data[item / 4] = 0b01 << ((item % 4) * 2);
            let d = decode(ALARMS, &data, &Options::default()).unwrap();
            let raised = d.battery.alarms.entries().iter().any(|(_, _, l)| *l == Some(AlarmLevel::Alarm));
            assert!(raised, "0x35A item {item} maps to no alarm");
        }
    }

    #[test]
    fn cell_count_is_derived_only_when_clear() {
        assert_eq!(derive_cell_count(52.0, 3.24, 3.26), Some(16));
        assert_eq!(derive_cell_count(13.2, 3.29, 3.31), Some(4));
        assert_eq!(derive_cell_count(52.0, 3.0, 3.4), None);
        assert_eq!(derive_cell_count(53.6, 3.25, 3.25), None);
    }
}
