//! Daren / BASEN BMS (DR-JC03, DR48100JC-03-V2, "DR-1363") on RS485, 19200 8N1, addresses
//! 0-15 from the pack's DIP switches: YD/T 1363 ASCII frames (`protocol::yd1363`) with VER 0x22
//! and CID1 0x4A.
//!
//! Sources: cpttinkering/daren-485 README (commit 138e262: every command below with a real
//! request and reply from the author's pack, field tables from the BASEN document and a
//! decompiled vendor tool) and its dbus-serialbattery driver `daren_485.py` (the incumbent's
//! `Daren485`: alarm and MOSFET bits). Vectors: `tests/vectors/daren_485.json`.
//!
//! Commands (INFO of the request):
//! - 0x42 realtime data (the address): SoC, voltage, cells, temperatures, current, SoH,
//!   capacities, cycles, status words, MOSFETs, balancing.
//! - 0x47 system parameters (the address): limits, cell count, barcodes.
//! - 0x4F protocol version, 0x51 manufacturer info (none): hardware type, product and project
//!   codes, software version.
//! - 0x83 warning counters (address, operation 01).
//! - 0xB0 parameter modules (address, operation 01, module, FF, 00): module 3 manufacturing
//!   (pack serial), module 4 capacities.
//!
//! A reply does not say which command it answers (RTN replaces CID2; 0x83 and 0xB0 echo theirs):
//! [`decode`] picks the layout that consumes INFO exactly, the poll plan decodes the one asked.

use crate::battery::{AlarmLevel, Battery};
use crate::protocol::field::{self, apply_flags, Flag};
use crate::protocol::yd1363::{self, Cursor};
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::json;

/// Serial speed (README; the incumbent's default for `Daren485`).
pub const BAUD: u32 = 19200;
/// Protocol version of Daren's frames.
pub const VER: u8 = 0x22;
/// Device type code.
pub const CID1: u8 = 0x4A;
/// Realtime data.
pub const CID2_REALTIME: u8 = 0x42;
/// System parameters.
pub const CID2_SYSTEM_PARAMS: u8 = 0x47;
/// Protocol version.
pub const CID2_PROTOCOL_VERSION: u8 = 0x4F;
/// Manufacturer info.
pub const CID2_MANUFACTURER: u8 = 0x51;
/// Warning / protection counters.
pub const CID2_WARNING_COUNTS: u8 = 0x83;
/// Parameter modules.
pub const CID2_PARAMS: u8 = 0xB0;
/// 0xB0 module: manufacturing parameters (pack serial).
pub const MODULE_MFG: u8 = 3;
/// 0xB0 module: capacity parameters.
pub const MODULE_CAP: u8 = 4;
/// Highest DIP-switch address.
pub const MAX_ADDRESS: u8 = 15;

/// The scanner (YD/T 1363 frames).
pub fn scan(buf: &[u8]) -> Scan {
    yd1363::scan(buf)
}

fn frame(adr: u8, cid2: u8, info: &[u8]) -> Vec<u8> {
    yd1363::encode(VER, adr, CID1, cid2, &yd1363::hex_text(info))
}

/// Realtime data request, e.g. `~22014A42E00201FD28\r`.
pub fn request_realtime(adr: u8) -> Vec<u8> {
    frame(adr, CID2_REALTIME, &[adr])
}

/// System parameters request (`~22014A47E00201FD23\r`).
pub fn request_system_params(adr: u8) -> Vec<u8> {
    frame(adr, CID2_SYSTEM_PARAMS, &[adr])
}

/// Protocol version request (`~22014A4F0000FD8C\r`).
pub fn request_protocol_version(adr: u8) -> Vec<u8> {
    frame(adr, CID2_PROTOCOL_VERSION, &[])
}

/// Manufacturer info request (`~22014A510000FDA0\r`).
pub fn request_manufacturer(adr: u8) -> Vec<u8> {
    frame(adr, CID2_MANUFACTURER, &[])
}

/// Warning counters request (`~22014A83C0040101FCC2\r`).
pub fn request_warning_counts(adr: u8) -> Vec<u8> {
    frame(adr, CID2_WARNING_COUNTS, &[adr, 0x01])
}

/// 0xB0 module read request (`~22014AB0600A010104FF00FB6B\r` for module 4).
pub fn request_module(adr: u8, module: u8) -> Vec<u8> {
    frame(adr, CID2_PARAMS, &[adr, 0x01, module, 0xFF, 0x00])
}

/// A reply frame from `adr` carrying `info` (the simulator's encoder).
pub fn encode_reply(adr: u8, info: &[u8]) -> Vec<u8> {
    frame(adr, yd1363::RTN_OK, info)
}

/// A fixed-width ASCII field: up to the first NUL or 0xFF (unset flash), spaces trimmed.
fn ascii_field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0 || *b == 0xFF).unwrap_or(bytes.len());
    field::text(bytes.get(..end).unwrap_or_default())
}

/// `text` as exactly `len` bytes, padded with spaces (as the packs send their names).
fn spaced(text: &str, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = text.bytes().take(len).collect();
    bytes.resize(len, b' ');
    bytes
}

/// The 0x42 realtime reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Realtime {
    /// Bit 0 alarm change, bit 4 switch change.
    pub data_flag: u8,
    /// SoC, 0.01 %.
    pub soc_centi: u16,
    /// Pack voltage, 10 mV.
    pub voltage_10mv: u16,
    /// Cell voltages, mV.
    pub cells_mv: Vec<u16>,
    /// Ambient, pack average and MOSFET temperatures, 0.1 °C.
    pub environment_dc: i16,
    /// Pack average temperature, 0.1 °C.
    pub pack_dc: i16,
    /// MOSFET temperature, 0.1 °C.
    pub mosfet_dc: i16,
    /// Cell temperature sensors, 0.1 °C.
    pub cell_temps_dc: Vec<i16>,
    /// Current, 10 mA, + = charging (the incumbent's reading; the capture has 0 A).
    pub current_10ma: i16,
    /// Internal resistance (raw).
    pub resistance: u16,
    /// SoH, %.
    pub soh_percent: u16,
    /// "User defined" byte.
    pub user_defined: u8,
    /// Full charge capacity, 10 mAh.
    pub full_10mah: u16,
    /// Remaining capacity, 10 mAh.
    pub remaining_10mah: u16,
    /// Cycles.
    pub cycles: u16,
    /// Voltage status (bits: see [`VOLTAGE_STATUS`]).
    pub voltage_status: u16,
    /// Current status.
    pub current_status: u16,
    /// Temperature status.
    pub temperature_status: u16,
    /// Alarm status: internal faults (any bit: internal failure, as the incumbent).
    pub alarm_status: u16,
    /// Bit 0 charge MOSFET on, bit 1 discharge MOSFET on.
    pub fet_status: u16,
    /// The words after the FET status, when the pack sends them: per-cell over/under-voltage
    /// protection and alarm (cells 1-16), balancing cells 1-16 and 17-32, the same four for
    /// cells 17-32.
    pub cell_words: Option<[u16; 10]>,
    /// Machine status and IO status, with `cell_words`.
    pub machine_io: Option<(u8, u16)>,
}

use AlarmLevel::{Alarm, Warning};

/// Voltage status bits (dbus-serialbattery `daren_485.py`).
pub const VOLTAGE_STATUS: &[Flag] = &[
    Flag::new(0, |a| &mut a.high_cell_voltage, Alarm),
    Flag::new(1, |a| &mut a.low_cell_voltage, Alarm),
    Flag::new(2, |a| &mut a.high_voltage, Alarm),
    Flag::new(3, |a| &mut a.low_voltage, Alarm),
    Flag::new(4, |a| &mut a.high_cell_voltage, Warning),
    Flag::new(5, |a| &mut a.low_cell_voltage, Warning),
    Flag::new(6, |a| &mut a.high_voltage, Warning),
    Flag::new(7, |a| &mut a.low_voltage, Warning),
    Flag::new(8, |a| &mut a.cell_imbalance, Warning),
    Flag::new(14, |a| &mut a.cell_imbalance, Alarm),
];
/// Current status bits.
pub const CURRENT_STATUS: &[Flag] = &[
    Flag::new(2, |a| &mut a.high_charge_current, Alarm),
    Flag::new(3, |a| &mut a.high_discharge_current, Alarm),
    Flag::new(4, |a| &mut a.high_discharge_current, Alarm),
    Flag::new(5, |a| &mut a.high_discharge_current, Alarm),
    Flag::new(6, |a| &mut a.high_charge_current, Warning),
    Flag::new(7, |a| &mut a.high_discharge_current, Warning),
];
/// Temperature status bits (charge high/low, discharge high/low, environment and MOSFET high;
/// protections in bits 0-6, warnings 8 higher).
pub const TEMPERATURE_STATUS: &[Flag] = &[
    Flag::new(0, |a| &mut a.high_charge_temperature, Alarm),
    Flag::new(1, |a| &mut a.low_charge_temperature, Alarm),
    Flag::new(2, |a| &mut a.high_temperature, Alarm),
    Flag::new(3, |a| &mut a.low_temperature, Alarm),
    Flag::new(4, |a| &mut a.high_internal_temperature, Alarm),
    Flag::new(6, |a| &mut a.high_internal_temperature, Alarm),
    Flag::new(8, |a| &mut a.high_charge_temperature, Warning),
    Flag::new(9, |a| &mut a.low_charge_temperature, Warning),
    Flag::new(10, |a| &mut a.high_temperature, Warning),
    Flag::new(11, |a| &mut a.low_temperature, Warning),
    Flag::new(12, |a| &mut a.high_internal_temperature, Warning),
    Flag::new(14, |a| &mut a.high_internal_temperature, Warning),
];

fn plausible_temperature(deci_c: i16) -> bool {
    (-500..=1500).contains(&deci_c)
}

impl Realtime {
    /// Parses INFO up to the FET status, and the cell words when the rest is exactly them.
    pub fn parse(info: &[u8]) -> Result<Realtime, FrameError> {
        let mut c = Cursor::new(info);
        let data_flag = c.u8("data_flag")?;
        let soc_centi = c.u16("soc")?;
        let voltage_10mv = c.u16("voltage")?;
        let n = usize::from(c.u8("cell_count")?);
        if n == 0 || n > 32 {
            return Err(FrameError::InvalidField { field: "cell_count" });
        }
        let cells_mv = c.u16s(n, "cells")?;
        let (environment_dc, pack_dc, mosfet_dc) =
            (c.i16("temperatures")?, c.i16("temperatures")?, c.i16("temperatures")?);
        let k = usize::from(c.u8("temperature_count")?);
        if k > 16 {
            return Err(FrameError::InvalidField { field: "temperature_count" });
        }
        let cell_temps_dc = c.u16s(k, "temperatures")?.into_iter().map(|t| t as i16).collect();
        let mut r = Realtime {
            data_flag,
            soc_centi,
            voltage_10mv,
            cells_mv,
            environment_dc,
            pack_dc,
            mosfet_dc,
            cell_temps_dc,
            current_10ma: c.i16("current")?,
            resistance: c.u16("resistance")?,
            soh_percent: c.u16("soh")?,
            user_defined: c.u8("user_defined")?,
            full_10mah: c.u16("full_capacity")?,
            remaining_10mah: c.u16("remaining_capacity")?,
            cycles: c.u16("cycles")?,
            voltage_status: c.u16("voltage_status")?,
            current_status: c.u16("current_status")?,
            temperature_status: c.u16("temperature_status")?,
            alarm_status: c.u16("alarm_status")?,
            fet_status: c.u16("fet_status")?,
            cell_words: None,
            machine_io: None,
        };
        if c.remaining() > 0 {
            let mut words = [0u16; 10];
            for w in &mut words {
                *w = c.u16("cell_words")?;
            }
            r.cell_words = Some(words);
            r.machine_io = Some((c.u8("machine_status")?, c.u16("io_status")?));
        }
        c.end("realtime_length")?;
        if r.cells_mv.iter().any(|mv| *mv > 5000) {
            return Err(FrameError::InvalidField { field: "cells" });
        }
        let temps =
            [r.environment_dc, r.pack_dc, r.mosfet_dc].into_iter().chain(r.cell_temps_dc.iter().copied());
        if !temps.into_iter().all(plausible_temperature) {
            return Err(FrameError::InvalidField { field: "temperatures" });
        }
        if r.soc_centi > 10_000 {
            return Err(FrameError::InvalidField { field: "soc" });
        }
        if r.soh_percent > 100 {
            return Err(FrameError::InvalidField { field: "soh" });
        }
        Ok(r)
    }

    /// INFO as bytes (the simulator's encoder).
    pub fn encode(&self) -> Vec<u8> {
        let cells = field::at_most(&self.cells_mv, 32);
        let temps = field::at_most(&self.cell_temps_dc, 16);
        let mut out = vec![self.data_flag];
        let put = |out: &mut Vec<u8>, w: u16| out.extend(w.to_be_bytes());
        put(&mut out, self.soc_centi);
        put(&mut out, self.voltage_10mv);
        out.push(cells.len() as u8);
        cells.iter().for_each(|w| put(&mut out, *w));
        [self.environment_dc, self.pack_dc, self.mosfet_dc].iter().for_each(|t| put(&mut out, *t as u16));
        out.push(temps.len() as u8);
        temps.iter().for_each(|t| put(&mut out, *t as u16));
        put(&mut out, self.current_10ma as u16);
        put(&mut out, self.resistance);
        put(&mut out, self.soh_percent);
        out.push(self.user_defined);
        for w in [
            self.full_10mah,
            self.remaining_10mah,
            self.cycles,
            self.voltage_status,
            self.current_status,
            self.temperature_status,
            self.alarm_status,
            self.fet_status,
        ] {
            put(&mut out, w);
        }
        if let (Some(words), Some((machine, io))) = (self.cell_words, self.machine_io) {
            words.iter().for_each(|w| put(&mut out, *w));
            out.push(machine);
            put(&mut out, io);
        }
        out
    }

    /// What the reading says about the battery, and the rest under its own names.
    pub fn apply(&self, d: &mut Decoded) {
        let deci = |t: i16| f64::from(t) / 10.0;
        let b = &mut d.battery;
        b.soc_percent = Some(f64::from(self.soc_centi) / 100.0);
        b.voltage_v = Some(f64::from(self.voltage_10mv) / 100.0);
        b.cell_voltages_v = Some(self.cells_mv.iter().map(|mv| f64::from(*mv) / 1000.0).collect());
        b.cell_count = u16::try_from(self.cells_mv.len()).ok();
        b.temperatures_c =
            Some(self.cell_temps_dc.iter().map(|t| deci(*t)).collect::<Vec<_>>()).filter(|t| !t.is_empty());
        b.temperature_mos_c = Some(deci(self.mosfet_dc));
        b.current_a = Some(f64::from(self.current_10ma) / 100.0);
        b.soh_percent = Some(f64::from(self.soh_percent));
        b.full_capacity_ah = Some(f64::from(self.full_10mah) / 100.0);
        b.remaining_capacity_ah = Some(f64::from(self.remaining_10mah) / 100.0);
        b.cycles = Some(u32::from(self.cycles));
        b.charge_fet = Some(self.fet_status & 0x01 != 0);
        b.discharge_fet = Some(self.fet_status & 0x02 != 0);
        let alarms = &mut b.alarms;
        apply_flags(self.voltage_status.into(), VOLTAGE_STATUS, alarms);
        apply_flags(self.current_status.into(), CURRENT_STATUS, alarms);
        apply_flags(self.temperature_status.into(), TEMPERATURE_STATUS, alarms);
        alarms.internal_failure = Some(if self.alarm_status != 0 { Alarm } else { AlarmLevel::Ok });
        if let Some(words) = self.cell_words {
            let balancing = u64::from(words[4]) | u64::from(words[5]) << 16;
            b.balancing_cells = Some(field::bit_flags(balancing, self.cells_mv.len()));
        }
        let e = &mut d.extra;
        e.insert("data_flag", json!(self.data_flag));
        e.insert("environment_temperature_c", json!(deci(self.environment_dc)));
        e.insert("pack_temperature_c", json!(deci(self.pack_dc)));
        e.insert("internal_resistance_raw", json!(self.resistance));
        e.insert("user_defined", json!(self.user_defined));
        e.insert("voltage_status", json!(self.voltage_status));
        e.insert("current_status", json!(self.current_status));
        e.insert("temperature_status", json!(self.temperature_status));
        e.insert("alarm_status", json!(self.alarm_status));
        e.insert("fet_status", json!(self.fet_status));
        if let (Some(words), Some((machine, io))) = (self.cell_words, self.machine_io) {
            e.insert("cell_status_words", json!(words));
            e.insert("machine_status", json!(machine));
            e.insert("io_status", json!(io));
        }
    }
}

/// The 0x51 manufacturer reply: hardware type, product code, project code (10 characters
/// each), software version (3 bytes), boot version (2 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manufacturer {
    /// Hardware type.
    pub hardware_type: String,
    /// Product code.
    pub product_code: String,
    /// Project code.
    pub project_code: String,
    /// Software version bytes.
    pub software: [u8; 3],
    /// Boot version bytes.
    pub boot: [u8; 2],
}

impl Manufacturer {
    /// Parses INFO (exactly 35 bytes).
    pub fn parse(info: &[u8]) -> Result<Manufacturer, FrameError> {
        let mut c = Cursor::new(info);
        let mut text = |field| c.take(10, field).map(ascii_field);
        let (hardware_type, product_code, project_code) =
            (text("hardware_type")?, text("product_code")?, text("project_code")?);
        let software = field::array_at(c.take(3, "software_version")?, 0).unwrap_or_default();
        let boot = field::array_at(c.take(2, "boot_version")?, 0).unwrap_or_default();
        c.end("manufacturer_length")?;
        let printable = |s: &String| s.chars().all(|ch| ch.is_ascii_graphic() || ch == ' ');
        if ![&hardware_type, &product_code, &project_code].into_iter().all(printable) {
            return Err(FrameError::InvalidField { field: "manufacturer_text" });
        }
        Ok(Manufacturer { hardware_type, product_code, project_code, software, boot })
    }

    /// INFO as bytes (the simulator's encoder).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = spaced(&self.hardware_type, 10);
        out.extend(spaced(&self.product_code, 10));
        out.extend(spaced(&self.project_code, 10));
        out.extend(self.software);
        out.extend(self.boot);
        out
    }

    /// Model ("product project"), hardware and firmware versions.
    pub fn apply(&self, d: &mut Decoded) {
        let dotted = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(".");
        let b = &mut d.battery;
        let model = format!("{} {}", self.product_code, self.project_code);
        b.model = Some(model.trim().to_owned()).filter(|m| !m.is_empty());
        b.hardware_version = Some(self.hardware_type.clone()).filter(|h| !h.is_empty());
        b.firmware_version = Some(dotted(&self.software));
        let e = &mut d.extra;
        e.insert("hardware_type", json!(self.hardware_type));
        e.insert("product_code", json!(self.product_code));
        e.insert("project_code", json!(self.project_code));
        e.insert("software_version", json!(dotted(&self.software)));
        e.insert("boot_version", json!(dotted(&self.boot)));
    }
}

/// The 0x47 system parameters reply (exactly 65 bytes): a flag, twelve words (limits, cell
/// count, design capacity, ...) and two 20-character barcodes. The README's scales for the
/// limits disagree with its own numbers, so only the cell count and the barcodes are read as
/// values; the words are given raw.
pub fn system_params(info: &[u8], d: &mut Decoded) -> Result<(), FrameError> {
    let mut c = Cursor::new(info);
    let flag = c.u8("data_flag")?;
    let words = c.u16s(12, "system_params")?;
    let product = ascii_field(c.take(20, "product_barcode")?);
    let bms = ascii_field(c.take(20, "bms_barcode")?);
    c.end("system_params_length")?;
    let cells = words.get(7).copied().unwrap_or_default();
    if cells == 0 || cells > 32 {
        return Err(FrameError::InvalidField { field: "cell_count" });
    }
    d.battery.cell_count = Some(cells);
    let e = &mut d.extra;
    e.insert("data_flag", json!(flag));
    e.insert("system_param_words", json!(words));
    e.insert("charge_current_limit_raw", json!(words.get(8)));
    e.insert("product_barcode", json!(product));
    e.insert("bms_barcode", json!(bms));
    Ok(())
}

/// The echo that opens a 0xB0 reply: CID2, command group, operation, module, function id,
/// function length.
fn module_echo(c: &mut Cursor<'_>, module: u8) -> Result<(), FrameError> {
    let echo = c.take(6, "module_echo")?;
    match echo {
        [CID2_PARAMS, _, 0x01, m, 0xFF, _] if *m == module => Ok(()),
        _ => Err(FrameError::InvalidField { field: "module_echo" }),
    }
}

/// The 0xB0 module 3 reply: pack serial, product id, BMS id (30 characters each), birth date
/// (3 bytes), manufacturer (20 characters).
pub fn module_mfg(info: &[u8], d: &mut Decoded) -> Result<(), FrameError> {
    let mut c = Cursor::new(info);
    module_echo(&mut c, MODULE_MFG)?;
    let serial = ascii_field(c.take(30, "pack_serial")?);
    let product_id = ascii_field(c.take(30, "product_id")?);
    let bms_id = ascii_field(c.take(30, "bms_id")?);
    let born = c.take(3, "birth_date")?;
    let manufacturer = ascii_field(c.take(20, "manufacturer")?);
    c.end("mfg_length")?;
    d.battery.serial = Some(serial).filter(|s| !s.is_empty());
    let e = &mut d.extra;
    e.insert("product_id", json!(product_id));
    e.insert("bms_id", json!(bms_id));
    e.insert("birth_date_bytes", json!(born));
    e.insert("manufacturer", json!(manufacturer));
    Ok(())
}

/// The 0xB0 module 4 reply: remaining, full and design capacity (0.01 Ah), total charge and
/// discharge (u32), total charge and discharge energy (u16; the README reads them /100 kWh).
pub fn module_cap(info: &[u8], d: &mut Decoded) -> Result<(), FrameError> {
    let mut c = Cursor::new(info);
    module_echo(&mut c, MODULE_CAP)?;
    let ah = |raw: u16| f64::from(raw) / 100.0;
    let (remaining, full, design) = (c.u16("remaining")?, c.u16("full")?, c.u16("design")?);
    let (charged, discharged) = (c.u32("total_charge")?, c.u32("total_discharge")?);
    let (charged_kwh, discharged_kwh) = (c.u16("total_charge_kwh")?, c.u16("total_discharge_kwh")?);
    c.end("cap_length")?;
    let b = &mut d.battery;
    b.remaining_capacity_ah = Some(ah(remaining));
    b.full_capacity_ah = Some(ah(full));
    b.nominal_capacity_ah = Some(ah(design));
    let e = &mut d.extra;
    e.insert("total_charge_raw", json!(charged));
    e.insert("total_discharge_raw", json!(discharged));
    e.insert("total_charge_kwh", json!(f64::from(charged_kwh) / 100.0));
    e.insert("total_discharge_kwh", json!(f64::from(discharged_kwh) / 100.0));
    Ok(())
}

/// The 0x83 reply: echo (CID2, operation), then counters; the first eight are named (README).
fn warning_counts(info: &[u8], d: &mut Decoded) -> Result<(), FrameError> {
    const NAMES: [&str; 8] = [
        "overcharge_protections",
        "overdischarge_protections",
        "overcurrent_protections",
        "temperature_protections",
        "short_circuit_protections",
        "mos_high_temperature_protections",
        "environment_high_temperature_protections",
        "environment_low_temperature_protections",
    ];
    let mut c = Cursor::new(info);
    if c.take(2, "counts_echo")? != [CID2_WARNING_COUNTS, 0x01] || c.remaining() % 2 != 0 {
        return Err(FrameError::InvalidField { field: "counts_echo" });
    }
    let counts = c.u16s(c.remaining() / 2, "counts")?;
    for (name, count) in NAMES.iter().zip(&counts) {
        d.extra.insert(name, json!(count));
    }
    d.extra.insert("counts", json!(counts));
    Ok(())
}

/// Decodes any Daren frame: the header, and the reading whose layout fits INFO exactly (none:
/// the header only, e.g. a request; a refusal names its RTN).
pub fn decode(bytes: &[u8]) -> Result<Decoded, FrameError> {
    let frame = yd1363::parse(bytes)?;
    let mut d = yd1363::describe(bytes, &frame);
    if frame.cid2 != yd1363::RTN_OK {
        return Ok(d);
    }
    let info = frame.info()?;
    let mut try_layout = |layout: fn(&[u8], &mut Decoded) -> Result<(), FrameError>, name: &str| {
        let mut attempt = Decoded::default();
        let fits = layout(&info, &mut attempt).is_ok();
        if fits {
            d.battery.merge(&attempt.battery);
            d.extra.extend(attempt.extra);
            d.extra.insert("reading", json!(name));
        }
        fits
    };
    let _ = try_layout(|i, d| Realtime::parse(i).map(|r| r.apply(d)), "realtime (0x42)")
        || try_layout(|i, d| Manufacturer::parse(i).map(|m| m.apply(d)), "manufacturer (0x51)")
        || try_layout(system_params, "system parameters (0x47)")
        || try_layout(module_mfg, "manufacturing parameters (0xB0 module 3)")
        || try_layout(module_cap, "capacity parameters (0xB0 module 4)")
        || try_layout(warning_counts, "warning counters (0x83)")
        || try_layout(
            |i, d| match i {
                [version] => {
                    d.extra.insert("protocol_version", json!(version));
                    Ok(())
                }
                _ => Err(FrameError::InvalidField { field: "protocol_version" }),
            },
            "protocol version (0x4F)",
        );
    Ok(d)
}

/// The INFO of a reply from the pack at `address` (VER, CID1, ADR and RTN checked).
pub fn reply_info(bytes: &[u8], address: u8) -> Result<Vec<u8>, FrameError> {
    let frame = yd1363::parse(bytes)?;
    yd1363::check_reply(&frame, VER, CID1, Some(address))?;
    frame.info()
}

/// The battery values of one reply decoded by `layout` (the poll plan's steps).
pub fn decode_with(
    bytes: &[u8],
    address: u8,
    layout: fn(&[u8], &mut Decoded) -> Result<(), FrameError>,
) -> Result<Battery, FrameError> {
    let info = reply_info(bytes, address)?;
    let mut d = Decoded::default();
    layout(&info, &mut d)?;
    Ok(d.battery)
}

/// [`Realtime`] as a layout for [`decode_with`].
pub fn realtime(info: &[u8], d: &mut Decoded) -> Result<(), FrameError> {
    Realtime::parse(info).map(|r| r.apply(d))
}

/// [`Manufacturer`] as a layout for [`decode_with`].
pub fn manufacturer(info: &[u8], d: &mut Decoded) -> Result<(), FrameError> {
    Manufacturer::parse(info).map(|m| m.apply(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realtime_reading() -> Realtime {
        Realtime {
            soc_centi: 5000,
            voltage_10mv: 5280,
            cells_mv: vec![3300; 16],
            environment_dc: 220,
            pack_dc: 250,
            mosfet_dc: 300,
            cell_temps_dc: vec![250, -55, 250, 250],
            current_10ma: -1234,
            soh_percent: 100,
            full_10mah: 10000,
            remaining_10mah: 5000,
            cycles: 3,
            fet_status: 0x03,
            cell_words: Some([0, 0, 0, 0, 0b101, 0, 0, 0, 0, 0]),
            machine_io: Some((0, 0)),
            ..Realtime::default()
        }
    }

    #[test]
    fn realtime_round_trip_with_and_without_the_cell_words() {
        let r = realtime_reading();
        assert_eq!(Realtime::parse(&r.encode()), Ok(r.clone()));
        let short = Realtime { cell_words: None, machine_io: None, ..r };
        assert_eq!(Realtime::parse(&short.encode()), Ok(short.clone()));
        let mut half = short.encode();
        half.extend([0, 0, 0]);
        assert!(Realtime::parse(&half).is_err(), "a tail that is not the cell words");
    }

    #[test]
    fn realtime_values_and_bits() {
        let mut r = realtime_reading();
        r.voltage_status = 1 << 0 | 1 << 7; // cell OV protection, pack UV warning
        r.temperature_status = 1 << 9; // charge low temperature warning
        r.fet_status = 0x02; // charge MOSFET off
        let b = decode_with(&encode_reply(5, &r.encode()), 5, realtime).unwrap();
        assert_eq!(b.current_a, Some(-12.34));
        assert_eq!(b.temperatures_c, Some(vec![25.0, -5.5, 25.0, 25.0]));
        assert_eq!((b.charge_fet, b.discharge_fet), (Some(false), Some(true)));
        assert_eq!(b.alarms.high_cell_voltage, Some(Alarm));
        assert_eq!(b.alarms.low_voltage, Some(Warning));
        assert_eq!(b.alarms.low_charge_temperature, Some(Warning));
        assert_eq!(b.alarms.high_voltage, Some(AlarmLevel::Ok));
        assert_eq!(b.balancing_cell_numbers(), Some(vec![1, 3]));
        assert_eq!(
            decode_with(&encode_reply(5, &r.encode()), 6, realtime),
            Err(FrameError::UnexpectedAddress { expected: 6, found: 5 })
        );
    }

    #[test]
    fn implausible_realtime_is_refused() {
        let mut r = realtime_reading();
        r.soc_centi = 10_001;
        assert_eq!(Realtime::parse(&r.encode()), Err(FrameError::InvalidField { field: "soc" }));
        let mut r = realtime_reading();
        r.mosfet_dc = 1501;
        assert_eq!(Realtime::parse(&r.encode()), Err(FrameError::InvalidField { field: "temperatures" }));
        let mut r = realtime_reading();
        r.cells_mv[3] = 5001;
        assert_eq!(Realtime::parse(&r.encode()), Err(FrameError::InvalidField { field: "cells" }));
    }

    #[test]
    fn refusal_and_other_version() {
        let refused = yd1363::encode(VER, 1, CID1, 0x90, "");
        assert_eq!(reply_info(&refused, 1), Err(FrameError::Status { status: 0x90 }));
        let lifepower4 = yd1363::encode(0x20, 1, CID1, 0, &yd1363::hex_text(&realtime_reading().encode()));
        assert_eq!(reply_info(&lifepower4, 1), Err(FrameError::InvalidField { field: "ver" }));
    }

    proptest::proptest! {
        /// Any plausible realtime reading goes through the wire and back unchanged, from the
        /// address it was sent from, and the model gets its values at their scales.
        #[test]
        fn any_plausible_realtime_reading_round_trips(
            cells in proptest::collection::vec(0u16..=5000, 1..=32),
            temps in proptest::collection::vec(-500i16..=1500, 0..=16),
            soc in 0u16..=10_000, soh in 0u16..=100, current: i16, fet in 0u16..4, adr in 0u8..=15,
            status: [u16; 4], words: Option<[u16; 10]>,
        ) {
            let r = Realtime {
                soc_centi: soc, soh_percent: soh, cells_mv: cells, cell_temps_dc: temps, current_10ma: current,
                fet_status: fet, voltage_status: status[0], current_status: status[1],
                temperature_status: status[2], alarm_status: status[3],
                machine_io: words.map(|_| (0, 0)), cell_words: words,
                ..realtime_reading()
            };
            proptest::prop_assert_eq!(Realtime::parse(&r.encode()), Ok(r.clone()));
            let b = decode_with(&encode_reply(adr, &r.encode()), adr, realtime).unwrap();
            proptest::prop_assert_eq!(b.soc_percent, Some(f64::from(soc) / 100.0));
            proptest::prop_assert_eq!(b.current_a, Some(f64::from(current) / 100.0));
            proptest::prop_assert_eq!(b.charge_fet, Some(fet & 1 != 0));
            proptest::prop_assert_eq!(b.alarms.internal_failure, Some(if status[3] != 0 { Alarm } else { AlarmLevel::Ok }));
            // Cut anywhere, the INFO is not a realtime reading, except right before the
            // optional per-cell words (firmware that does not send them).
            let bytes = r.encode();
            let short = Realtime { cell_words: None, machine_io: None, ..r.clone() }.encode().len();
            for n in (0..bytes.len()).filter(|n| *n != short) {
                proptest::prop_assert!(Realtime::parse(&bytes[..n]).is_err(), "cut at {}", n);
            }
        }
    }
}
