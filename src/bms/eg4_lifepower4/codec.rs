//! EG4 LifePower4 (v2 firmware) on RS485, 9600 8N1, addresses 1-15: YD/T 1363 ASCII frames
//! (`protocol::yd1363`) with VER 0x20 and CID1 0x4A.
//!
//! Sources: EG4's "LifePower4 Communication Protocol" (the layouts, as transcribed in
//! gonzalop/wombatt `internal/batteries/lifepower4.go`, and its two example replies in
//! `internal/modbus/lfp4_test.go`), and a real analog reply captured from the vendor tool in
//! Louisvdw/dbus-serialbattery issue #1116 (vectors `eg4_lifepower4.json`). Two readings:
//!
//! - 0x42 analog values: cells, temperatures, current, voltage, capacities, cycles, SoC, SoH.
//!   The word wombatt calls "SOH" comes first and carries the **SoC**: in the real capture it is
//!   15 with 15.29 of 98.70 Ah left (15.5 %) and the next word 98; in EG4's example it is 0 with
//!   0 Ah left while the next word is 100, and that example's alarm reply raises "SOC low".
//! - 0x44 alarm information: per-cell and per-sensor states, event codes (protections and
//!   warnings), the MOSFET states and the balancing cells.
//!
//! The reply does not say which command it answers; [`decode`] tells the two apart by the
//! layout that consumes INFO exactly, the poll plan asks for one and decodes that one.

use crate::battery::{AlarmLevel, Alarms, Battery};
use crate::protocol::field::{self, apply_flags, Flag};
use crate::protocol::yd1363::{self, Cursor, Frame};
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::json;

/// Serial speed (the vendor tool's log shows both protocols on one 9600 bus, issue #1116).
pub const BAUD: u32 = 9600;
/// Protocol version of EG4's frames.
pub const VER: u8 = 0x20;
/// EG4's CID1 (Pylontech uses 0x46).
pub const CID1_EG4: u8 = 0x4A;
/// CID2: get analog values.
pub const CID2_ANALOG: u8 = 0x42;
/// CID2: get alarm information.
pub const CID2_ALARM: u8 = 0x44;
/// Temperatures are 0.1 K: °C = (raw - 2731) / 10.
pub const KELVIN_DECI: i64 = 2731;
/// Highest DIP-switch address.
pub const MAX_ADDRESS: u8 = 15;

/// A read request, e.g. `~20014A420000FDA2\r` for analog values of address 1.
pub fn request(adr: u8, cid2: u8) -> Vec<u8> {
    yd1363::encode(VER, adr, CID1_EG4, cid2, "")
}

/// The scanner (YD/T 1363 frames).
pub fn scan(buf: &[u8]) -> Scan {
    yd1363::scan(buf)
}

fn celsius(deci_kelvin: u16) -> f64 {
    field::scale(i64::from(deci_kelvin), KELVIN_DECI, 10)
}

/// °C as 0.1 K (the simulator's encoder).
pub fn deci_kelvin(celsius: f64) -> u16 {
    (celsius * 10.0 + KELVIN_DECI as f64).round().clamp(0.0, 65535.0) as u16
}

/// Plausible temperatures: -50..=150 °C.
fn plausible_temperature(deci_kelvin: u16) -> bool {
    (-50.0..=150.0).contains(&celsius(deci_kelvin))
}

/// The 0x42 analog reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analog {
    /// Data flag (bit 0: unread alarms).
    pub data_flag: u8,
    /// Pack group / address byte.
    pub pack_group: u8,
    /// Cell voltages, mV.
    pub cells_mv: Vec<u16>,
    /// Cell temperature sensors, 0.1 K (the count byte says how many).
    pub cell_temps_dk: Vec<u16>,
    /// Environment temperature, 0.1 K.
    pub environment_dk: u16,
    /// MOSFET temperature, 0.1 K.
    pub mosfet_dk: u16,
    /// Current, 10 mA, + = charging.
    pub current_10ma: i16,
    /// Pack voltage, 10 mV.
    pub voltage_10mv: u16,
    /// Remaining capacity, 10 mAh.
    pub remaining_10mah: u16,
    /// Full capacity, 10 mAh.
    pub full_10mah: u16,
    /// Cycles.
    pub cycles: u16,
    /// "User defined" byte (0x0F in every example).
    pub user_defined: u8,
    /// SoC, %.
    pub soc_percent: u16,
    /// SoH, %.
    pub soh_percent: u16,
    /// Highest cell, mV.
    pub max_cell_mv: u16,
    /// Lowest cell, mV.
    pub min_cell_mv: u16,
    /// Cell spread, mV.
    pub cell_diff_mv: u16,
    /// Hottest cell sensor, 0.1 K.
    pub max_temp_dk: u16,
    /// Coldest cell sensor, 0.1 K.
    pub min_temp_dk: u16,
    /// Cumulative charge (0.01 Ah), discharge (0.01 Ah), charge energy (Wh), discharge energy
    /// (Wh), charging time (h), discharging time (h).
    pub cumulative: [u32; 6],
    /// Cumulative charging and discharging counts.
    pub times: [u16; 2],
}

impl Analog {
    /// Parses INFO; the layout must consume it exactly and its values must be plausible.
    pub fn parse(info: &[u8]) -> Result<Analog, FrameError> {
        let mut c = Cursor::new(info);
        let (data_flag, pack_group) = (c.u8("data_flag")?, c.u8("pack_group")?);
        let n = usize::from(c.u8("cell_count")?);
        if n == 0 || n > 32 {
            return Err(FrameError::InvalidField { field: "cell_count" });
        }
        let cells_mv = c.u16s(n, "cells")?;
        if cells_mv.iter().any(|mv| !(1000..=5000).contains(mv)) {
            return Err(FrameError::InvalidField { field: "cells" });
        }
        let k = usize::from(c.u8("temperature_count")?);
        if k > 16 {
            return Err(FrameError::InvalidField { field: "temperature_count" });
        }
        let cell_temps_dk = c.u16s(k, "temperatures")?;
        let (environment_dk, mosfet_dk) = (c.u16("temperatures")?, c.u16("temperatures")?);
        let mut a = Analog {
            data_flag,
            pack_group,
            cells_mv,
            cell_temps_dk,
            environment_dk,
            mosfet_dk,
            current_10ma: c.i16("current")?,
            voltage_10mv: c.u16("voltage")?,
            remaining_10mah: c.u16("remaining_capacity")?,
            full_10mah: c.u16("full_capacity")?,
            cycles: c.u16("cycles")?,
            user_defined: c.u8("user_defined")?,
            soc_percent: c.u16("soc")?,
            soh_percent: c.u16("soh")?,
            max_cell_mv: c.u16("max_cell")?,
            min_cell_mv: c.u16("min_cell")?,
            cell_diff_mv: c.u16("cell_diff")?,
            max_temp_dk: c.u16("max_temperature")?,
            min_temp_dk: c.u16("min_temperature")?,
            ..Analog::default()
        };
        for slot in &mut a.cumulative {
            *slot = c.u32("cumulative")?;
        }
        for slot in &mut a.times {
            *slot = c.u16("cumulative_times")?;
        }
        c.end("analog_length")?;
        let temps = a.cell_temps_dk.iter().chain([&a.environment_dk, &a.mosfet_dk]);
        if !temps.copied().all(plausible_temperature) {
            return Err(FrameError::InvalidField { field: "temperatures" });
        }
        if a.soc_percent > 100 {
            return Err(FrameError::InvalidField { field: "soc" });
        }
        if a.soh_percent > 100 {
            return Err(FrameError::InvalidField { field: "soh" });
        }
        Ok(a)
    }

    /// INFO as bytes (the simulator's encoder).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.data_flag, self.pack_group, field::at_most(&self.cells_mv, 32).len() as u8];
        let words = |out: &mut Vec<u8>, words: &[u16]| words.iter().for_each(|w| out.extend(w.to_be_bytes()));
        words(&mut out, field::at_most(&self.cells_mv, 32));
        out.push(field::at_most(&self.cell_temps_dk, 16).len() as u8);
        words(&mut out, field::at_most(&self.cell_temps_dk, 16));
        words(
            &mut out,
            &[
                self.environment_dk,
                self.mosfet_dk,
                self.current_10ma as u16,
                self.voltage_10mv,
                self.remaining_10mah,
                self.full_10mah,
                self.cycles,
            ],
        );
        out.push(self.user_defined);
        words(
            &mut out,
            &[
                self.soc_percent,
                self.soh_percent,
                self.max_cell_mv,
                self.min_cell_mv,
                self.cell_diff_mv,
                self.max_temp_dk,
                self.min_temp_dk,
            ],
        );
        self.cumulative.iter().for_each(|v| out.extend(v.to_be_bytes()));
        words(&mut out, &self.times);
        out
    }

    /// What the reading says about the battery, and the rest under its own names.
    pub fn apply(&self, d: &mut Decoded) {
        let b = &mut d.battery;
        b.cell_voltages_v = Some(self.cells_mv.iter().map(|mv| f64::from(*mv) / 1000.0).collect());
        b.cell_count = u16::try_from(self.cells_mv.len()).ok();
        b.temperatures_c = Some(self.cell_temps_dk.iter().map(|t| celsius(*t)).collect::<Vec<_>>())
            .filter(|t| !t.is_empty());
        b.temperature_mos_c = Some(celsius(self.mosfet_dk));
        b.current_a = Some(f64::from(self.current_10ma) / 100.0);
        b.voltage_v = Some(f64::from(self.voltage_10mv) / 100.0);
        b.remaining_capacity_ah = Some(f64::from(self.remaining_10mah) / 100.0);
        b.full_capacity_ah = Some(f64::from(self.full_10mah) / 100.0);
        b.cycles = Some(u32::from(self.cycles));
        b.soc_percent = Some(f64::from(self.soc_percent));
        b.soh_percent = Some(f64::from(self.soh_percent));
        let e = &mut d.extra;
        e.insert("data_flag", json!(self.data_flag));
        e.insert("pack_group", json!(self.pack_group));
        e.insert("environment_temperature_c", json!(celsius(self.environment_dk)));
        e.insert("user_defined", json!(self.user_defined));
        e.insert("bms_max_cell_mv", json!(self.max_cell_mv));
        e.insert("bms_min_cell_mv", json!(self.min_cell_mv));
        e.insert("bms_cell_diff_mv", json!(self.cell_diff_mv));
        e.insert("bms_max_temperature_c", json!(celsius(self.max_temp_dk)));
        e.insert("bms_min_temperature_c", json!(celsius(self.min_temp_dk)));
        let [charge_cah, discharge_cah, charge_wh, discharge_wh, charge_h, discharge_h] = self.cumulative;
        e.insert("cumulative_charge_ah", json!(f64::from(charge_cah) / 100.0));
        e.insert("cumulative_discharge_ah", json!(f64::from(discharge_cah) / 100.0));
        e.insert("cumulative_charge_kwh", json!(f64::from(charge_wh) / 1000.0));
        e.insert("cumulative_discharge_kwh", json!(f64::from(discharge_wh) / 1000.0));
        e.insert("cumulative_charge_hours", json!(charge_h));
        e.insert("cumulative_discharge_hours", json!(discharge_h));
        e.insert("cumulative_charge_times", json!(self.times[0]));
        e.insert("cumulative_discharge_times", json!(self.times[1]));
    }
}

/// The 0x44 alarm reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlarmInfo {
    /// Data flag.
    pub data_flag: u8,
    /// Pack group / address byte.
    pub pack_group: u8,
    /// Per cell: 0 normal, 1 below the lower limit, 2 above the upper limit.
    pub cell_states: Vec<u8>,
    /// Per cell temperature sensor, then environment and MOSFET: same coding.
    pub temperature_states: Vec<u8>,
    /// Current state, same coding.
    pub current_state: u8,
    /// Pack voltage state, same coding.
    pub voltage_state: u8,
    /// "User defined" byte.
    pub user_defined: u8,
    /// Bit 4 cell difference alarm, 5 charge MOS fault, 6 discharge MOS fault.
    pub balance_event: u8,
    /// Bits 0-7: cell OV alarm, cell OV protection, cell UV alarm, cell UV protection, pack OV
    /// alarm, pack OV protection, pack UV alarm, pack UV protection.
    pub voltage_event: u8,
    /// Bits 0-13: charge high/low, discharge high/low, environment high/low (alarm, protection
    /// each), MOSFET high protection, fire.
    pub temperature_event: u16,
    /// Bits 0-7: charge OC alarm, charge OC protection, discharge OC alarm, discharge OC
    /// protection, level 2 OC protection, short circuit protection, level 2 OC lockout, short
    /// circuit lockout.
    pub current_event: u8,
    /// Bit 0: SoC low.
    pub remaining_capacity_alarm: u8,
    /// Bit 0 discharge MOS on, 1 charge MOS on, 2 charge current limiter, 3 heater.
    pub fet_status: u8,
    /// Bit 0 discharging, 1 charging, 3 standby.
    pub system_status: u8,
    /// Bit n: cell n + 1 balancing.
    pub balance_status: u32,
    /// Last byte (unnamed).
    pub reserved: u8,
}

use AlarmLevel::{Alarm, Warning};

const VOLTAGE_EVENT: &[Flag] = &[
    Flag::new(0, |a| &mut a.high_cell_voltage, Warning),
    Flag::new(1, |a| &mut a.high_cell_voltage, Alarm),
    Flag::new(2, |a| &mut a.low_cell_voltage, Warning),
    Flag::new(3, |a| &mut a.low_cell_voltage, Alarm),
    Flag::new(4, |a| &mut a.high_voltage, Warning),
    Flag::new(5, |a| &mut a.high_voltage, Alarm),
    Flag::new(6, |a| &mut a.low_voltage, Warning),
    Flag::new(7, |a| &mut a.low_voltage, Alarm),
];
const TEMPERATURE_EVENT: &[Flag] = &[
    Flag::new(0, |a| &mut a.high_charge_temperature, Warning),
    Flag::new(1, |a| &mut a.high_charge_temperature, Alarm),
    Flag::new(2, |a| &mut a.low_charge_temperature, Warning),
    Flag::new(3, |a| &mut a.low_charge_temperature, Alarm),
    Flag::new(4, |a| &mut a.high_temperature, Warning),
    Flag::new(5, |a| &mut a.high_temperature, Alarm),
    Flag::new(6, |a| &mut a.low_temperature, Warning),
    Flag::new(7, |a| &mut a.low_temperature, Alarm),
    Flag::new(8, |a| &mut a.high_temperature, Warning),
    Flag::new(9, |a| &mut a.high_temperature, Alarm),
    Flag::new(10, |a| &mut a.low_temperature, Warning),
    Flag::new(11, |a| &mut a.low_temperature, Alarm),
    Flag::new(12, |a| &mut a.high_internal_temperature, Alarm),
    Flag::new(13, |a| &mut a.high_temperature, Alarm),
];
const CURRENT_EVENT: &[Flag] = &[
    Flag::new(0, |a| &mut a.high_charge_current, Warning),
    Flag::new(1, |a| &mut a.high_charge_current, Alarm),
    Flag::new(2, |a| &mut a.high_discharge_current, Warning),
    Flag::new(3, |a| &mut a.high_discharge_current, Alarm),
    Flag::new(4, |a| &mut a.high_discharge_current, Alarm),
    Flag::new(5, |a| &mut a.high_discharge_current, Alarm),
    Flag::new(6, |a| &mut a.high_discharge_current, Alarm),
    Flag::new(7, |a| &mut a.high_discharge_current, Alarm),
];
const BALANCE_EVENT: &[Flag] = &[
    Flag::new(4, |a| &mut a.cell_imbalance, Warning),
    Flag::new(5, |a| &mut a.internal_failure, Alarm),
    Flag::new(6, |a| &mut a.internal_failure, Alarm),
];
const REMAINING_CAPACITY: &[Flag] = &[Flag::new(0, |a| &mut a.low_soc, Warning)];

impl AlarmInfo {
    /// Parses INFO; the layout must consume it exactly.
    pub fn parse(info: &[u8]) -> Result<AlarmInfo, FrameError> {
        let mut c = Cursor::new(info);
        let (data_flag, pack_group) = (c.u8("data_flag")?, c.u8("pack_group")?);
        let n = usize::from(c.u8("cell_count")?);
        if n == 0 || n > 32 {
            return Err(FrameError::InvalidField { field: "cell_count" });
        }
        let cell_states = c.take(n, "cell_states")?.to_vec();
        let k = usize::from(c.u8("temperature_count")?);
        if k > 16 {
            return Err(FrameError::InvalidField { field: "temperature_count" });
        }
        let a = AlarmInfo {
            data_flag,
            pack_group,
            cell_states,
            temperature_states: c.take(k + 2, "temperature_states")?.to_vec(),
            current_state: c.u8("current_state")?,
            voltage_state: c.u8("voltage_state")?,
            user_defined: c.u8("user_defined")?,
            balance_event: c.u8("balance_event")?,
            voltage_event: c.u8("voltage_event")?,
            temperature_event: c.u16("temperature_event")?,
            current_event: c.u8("current_event")?,
            remaining_capacity_alarm: c.u8("remaining_capacity_alarm")?,
            fet_status: c.u8("fet_status")?,
            system_status: c.u8("system_status")?,
            balance_status: c.u32("balance_status")?,
            reserved: c.u8("reserved")?,
        };
        c.end("alarm_length")?;
        Ok(a)
    }

    /// INFO as bytes (the simulator's encoder).
    pub fn encode(&self) -> Vec<u8> {
        let cells = field::at_most(&self.cell_states, 32);
        let temps =
            self.temperature_states.get(..self.temperature_states.len().clamp(2, 18)).unwrap_or(&[0, 0]);
        let mut out = vec![self.data_flag, self.pack_group, cells.len() as u8];
        out.extend_from_slice(cells);
        out.push((temps.len().max(2) - 2) as u8);
        out.extend_from_slice(temps);
        out.extend_from_slice(&[
            self.current_state,
            self.voltage_state,
            self.user_defined,
            self.balance_event,
            self.voltage_event,
        ]);
        out.extend(self.temperature_event.to_be_bytes());
        out.extend_from_slice(&[
            self.current_event,
            self.remaining_capacity_alarm,
            self.fet_status,
            self.system_status,
        ]);
        out.extend(self.balance_status.to_be_bytes());
        out.push(self.reserved);
        out
    }

    /// Alarms, MOSFET states and balancing cells; the codes under their own names.
    pub fn apply(&self, d: &mut Decoded) {
        let b = &mut d.battery;
        let alarms = &mut b.alarms;
        apply_flags(self.voltage_event.into(), VOLTAGE_EVENT, alarms);
        apply_flags(self.temperature_event.into(), TEMPERATURE_EVENT, alarms);
        apply_flags(self.current_event.into(), CURRENT_EVENT, alarms);
        apply_flags(self.balance_event.into(), BALANCE_EVENT, alarms);
        apply_flags(self.remaining_capacity_alarm.into(), REMAINING_CAPACITY, alarms);
        // A cell or the pack outside its limit is a warning even when no event bit says so.
        let state = |s: u8, limit: u8| if s == limit { Warning } else { AlarmLevel::Ok };
        for s in &self.cell_states {
            Alarms::raise(&mut alarms.low_cell_voltage, state(*s, 1));
            Alarms::raise(&mut alarms.high_cell_voltage, state(*s, 2));
        }
        Alarms::raise(&mut alarms.low_voltage, state(self.voltage_state, 1));
        Alarms::raise(&mut alarms.high_voltage, state(self.voltage_state, 2));
        for s in &self.temperature_states {
            Alarms::raise(&mut alarms.low_temperature, state(*s, 1));
            Alarms::raise(&mut alarms.high_temperature, state(*s, 2));
        }
        b.discharge_fet = Some(self.fet_status & 0x01 != 0);
        b.charge_fet = Some(self.fet_status & 0x02 != 0);
        b.balancing_cells = Some(field::bit_flags(self.balance_status.into(), self.cell_states.len()));
        let e = &mut d.extra;
        e.insert("cell_states", json!(self.cell_states));
        e.insert("temperature_states", json!(self.temperature_states));
        e.insert("current_state", json!(self.current_state));
        e.insert("voltage_state", json!(self.voltage_state));
        e.insert("balance_event", json!(self.balance_event));
        e.insert("voltage_event", json!(self.voltage_event));
        e.insert("temperature_event", json!(self.temperature_event));
        e.insert("current_event", json!(self.current_event));
        e.insert("remaining_capacity_alarm", json!(self.remaining_capacity_alarm));
        e.insert("fet_status", json!(self.fet_status));
        e.insert("charge_current_limiter", json!(self.fet_status & 0x04 != 0));
        e.insert("heater_on", json!(self.fet_status & 0x08 != 0));
        e.insert("system_status", json!(self.system_status));
        e.insert("balance_status", json!(self.balance_status));
    }
}

/// An analog or alarm reply frame from `adr` (the simulator's encoder).
pub fn encode_reply(adr: u8, info: &[u8]) -> Vec<u8> {
    yd1363::encode(VER, adr, CID1_EG4, yd1363::RTN_OK, &yd1363::hex_text(info))
}

/// Decodes any frame: the header, and the analog or alarm reading whose layout fits INFO
/// exactly (none: the header only, e.g. a request or another command's reply).
pub fn decode(bytes: &[u8]) -> Result<Decoded, FrameError> {
    let frame = yd1363::parse(bytes)?;
    let mut d = yd1363::describe(bytes, &frame);
    if let Some(first) = frame.info_chars.first_chunk::<6>() {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        d.extra.insert("info_first_bytes", json!({ "flag": text(&first[0..2]), "adr": text(&first[2..4]) }));
    }
    if frame.cid2 == yd1363::RTN_OK && !frame.info_chars.is_empty() {
        let info = frame.info()?;
        if let Ok(analog) = Analog::parse(&info) {
            analog.apply(&mut d);
        } else if let Ok(alarm) = AlarmInfo::parse(&info) {
            alarm.apply(&mut d);
        }
    }
    Ok(d)
}

fn reply<'a>(bytes: &'a [u8], address: u8) -> Result<(Frame<'a>, Vec<u8>), FrameError> {
    let frame = yd1363::parse(bytes)?;
    yd1363::check_reply(&frame, VER, CID1_EG4, Some(address))?;
    let info = frame.info()?;
    Ok((frame, info))
}

/// The analog reply of the pack at `address` (the poll's first reading).
pub fn decode_analog(bytes: &[u8], address: u8) -> Result<Battery, FrameError> {
    let (_, info) = reply(bytes, address)?;
    let mut d = Decoded::default();
    Analog::parse(&info)?.apply(&mut d);
    Ok(d.battery)
}

/// The alarm reply of the pack at `address` (the poll's second reading).
pub fn decode_alarm(bytes: &[u8], address: u8) -> Result<Battery, FrameError> {
    let (_, info) = reply(bytes, address)?;
    let mut d = Decoded::default();
    AlarmInfo::parse(&info)?.apply(&mut d);
    Ok(d.battery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analog() -> Analog {
        Analog {
            data_flag: 0,
            pack_group: 1,
            cells_mv: vec![3300; 16],
            cell_temps_dk: vec![deci_kelvin(25.0); 4],
            environment_dk: deci_kelvin(20.0),
            mosfet_dk: deci_kelvin(30.0),
            current_10ma: -1234,
            voltage_10mv: 5280,
            remaining_10mah: 5000,
            full_10mah: 10000,
            cycles: 7,
            user_defined: 0x0F,
            soc_percent: 50,
            soh_percent: 100,
            ..Analog::default()
        }
    }

    #[test]
    fn analog_round_trip_and_scaling() {
        let a = analog();
        assert_eq!(Analog::parse(&a.encode()), Ok(a.clone()));
        let b = decode_analog(&encode_reply(3, &a.encode()), 3).unwrap();
        assert_eq!(b.current_a, Some(-12.34));
        assert_eq!(b.temperatures_c, Some(vec![25.0; 4]));
        assert_eq!(b.temperature_mos_c, Some(30.0));
        assert_eq!(b.remaining_capacity_ah, Some(50.0));
        assert_eq!(
            decode_analog(&encode_reply(3, &a.encode()), 4),
            Err(FrameError::UnexpectedAddress { expected: 4, found: 3 })
        );
    }

    #[test]
    fn analog_implausible_or_misshapen_is_refused() {
        let mut a = analog();
        a.soc_percent = 101;
        assert_eq!(Analog::parse(&a.encode()), Err(FrameError::InvalidField { field: "soc" }));
        let mut a = analog();
        a.mosfet_dk = deci_kelvin(151.0);
        assert_eq!(Analog::parse(&a.encode()), Err(FrameError::InvalidField { field: "temperatures" }));
        let mut long = analog().encode();
        long.push(0);
        assert_eq!(Analog::parse(&long), Err(FrameError::InvalidField { field: "analog_length" }));
    }

    #[test]
    fn alarm_bits() {
        let alarm = AlarmInfo {
            cell_states: vec![0; 16],
            temperature_states: vec![0; 6],
            voltage_event: 0x02,       // cell OV protection
            temperature_event: 0x1000, // MOSFET high temperature protection
            current_event: 0x01,       // charge OC warning
            fet_status: 0x01,          // discharge only
            balance_status: 0b101,
            ..AlarmInfo::default()
        };
        assert_eq!(AlarmInfo::parse(&alarm.encode()), Ok(alarm.clone()));
        let b = decode_alarm(&encode_reply(1, &alarm.encode()), 1).unwrap();
        assert_eq!(b.alarms.high_cell_voltage, Some(Alarm));
        assert_eq!(b.alarms.high_internal_temperature, Some(Alarm));
        assert_eq!(b.alarms.high_charge_current, Some(Warning));
        assert_eq!(b.alarms.low_voltage, Some(AlarmLevel::Ok));
        assert_eq!((b.charge_fet, b.discharge_fet), (Some(false), Some(true)));
        assert_eq!(b.balancing_cell_numbers(), Some(vec![1, 3]));
        // An analog reply is not an alarm reply.
        assert!(AlarmInfo::parse(&analog().encode()).is_err());
        assert!(Analog::parse(&alarm.encode()).is_err());
    }

    #[test]
    fn refusals_are_status_errors() {
        let frame = yd1363::encode(VER, 1, CID1_EG4, 0x04, "");
        assert_eq!(decode_analog(&frame, 1), Err(FrameError::Status { status: 4 }));
        let daren = yd1363::encode(0x22, 1, CID1_EG4, 0, &yd1363::hex_text(&analog().encode()));
        assert_eq!(decode_analog(&daren, 1), Err(FrameError::InvalidField { field: "ver" }));
    }

    proptest::proptest! {
        /// Any plausible analog reading goes through the wire and back unchanged; cut anywhere it
        /// is refused, and it is never taken for an alarm reply.
        #[test]
        fn any_plausible_analog_reading_round_trips(
            cells in proptest::collection::vec(1000u16..=5000, 1..=32),
            temps in proptest::collection::vec(deci_kelvin(-50.0)..=deci_kelvin(150.0), 0..=16),
            soc in 0u16..=100, soh in 0u16..=100, current: i16, adr in 1u8..=15, cumulative: [u32; 6],
        ) {
            let a = Analog { cells_mv: cells, cell_temps_dk: temps, soc_percent: soc, soh_percent: soh,
                current_10ma: current, cumulative, ..analog() };
            let bytes = a.encode();
            proptest::prop_assert_eq!(Analog::parse(&bytes), Ok(a.clone()));
            let b = decode_analog(&encode_reply(adr, &bytes), adr).unwrap();
            proptest::prop_assert_eq!(b.soc_percent, Some(f64::from(soc)));
            proptest::prop_assert_eq!(b.current_a, Some(f64::from(current) / 100.0));
            proptest::prop_assert!(AlarmInfo::parse(&bytes).is_err());
            for n in 0..bytes.len() {
                proptest::prop_assert!(Analog::parse(&bytes[..n]).is_err(), "cut at {}", n);
            }
        }

        /// Any alarm reply round-trips; the MOSFET bits reach the model.
        #[test]
        fn any_alarm_reply_round_trips(
            cells in 1usize..=32, k in 0usize..=16, fet: u8, voltage_event: u8, temperature_event: u16,
            current_event: u8, balance_status: u32,
        ) {
            let alarm = AlarmInfo { cell_states: vec![0; cells], temperature_states: vec![0; k + 2], fet_status: fet,
                voltage_event, temperature_event, current_event, balance_status, ..AlarmInfo::default() };
            proptest::prop_assert_eq!(AlarmInfo::parse(&alarm.encode()), Ok(alarm.clone()));
            let b = decode_alarm(&encode_reply(1, &alarm.encode()), 1).unwrap();
            proptest::prop_assert_eq!((b.discharge_fet, b.charge_fet), (Some(fet & 1 != 0), Some(fet & 2 != 0)));
            proptest::prop_assert_eq!(b.alarms.low_voltage.map(|l| l >= Warning), Some(voltage_event & 0xC0 != 0));
        }
    }
}
