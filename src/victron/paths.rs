//! The one table from a battery snapshot to every published path (`victron-dbus.md` §3, §6.7).
//!
//! Paths are fixed when the service is created: Venus consumers expect paths never to appear or
//! disappear at run time (§3), so cell paths are made for `Identity::max_cells` cells. A pack that
//! later reports more cells has the extra ones left out; one that reports fewer gets invalid values
//! on the missing cells. Anything unknown is [`Value::Invalid`], never 0.

use super::value::{Unit, Value};
use crate::battery::{AlarmLevel, Alarms, Battery, ExtremeIds};
use crate::control::history::History;
use crate::control::ChargeLimits;
use std::collections::BTreeMap;

/// `/ProductId` published for every bms-bridge battery: 0xBB01 ("BMS Bridge", first id).
///
/// systemcalc's DVCC changes the limits of some batteries by ProductId (`dvcc.py` BEHAVIOURS: LG
/// 0xB004, Pylontech 0xB009, BYD 0xB00A/0xB015/0xB019, Pelio-L 0xB029, Lynx Smart BMS
/// 0xA3E3–0xA3E7) and forces DVCC on for a list of known batteries (`batterysettings.py`, all in
/// Victron's 0xB0xx battery range). An id outside those lists gets the default behaviour: our
/// CVL/CCL/DCL are applied exactly as published, and DVCC stays under the user's control. 0xBB01 is
/// outside Victron's 0xB0xx battery and 0xA3xx Lynx ranges, and it is not 0xBA77, which
/// dbus-serialbattery uses: tools that recognise serialbattery by that id must not mistake us for
/// it. (Victron publishes no registry of ids; that 0xBB01 stays unassigned is an assumption.)
pub const PRODUCT_ID: i32 = 0xBB01;

/// The per-cycle input of the table.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// The battery as last read.
    pub battery: &'a Battery,
    /// The limits control computed for it.
    pub limits: &'a ChargeLimits,
    /// BMS answering (`/Connected`).
    pub connected: bool,
    /// `/State`: 0 init, 9 running, 10 error, 14 standby.
    pub state: i32,
    /// `/ErrorCode`: 0 no error.
    pub error_code: i32,
    /// Lifetime counters for `/History/*` (invalid when `None`).
    pub history: Option<&'a History>,
}

/// What identifies one service; fixed for its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Last element of the bus name `com.victronenergy.battery.<suffix>`; see
    /// [`super::safe_suffix`].
    pub service_suffix: String,
    /// Stable per physical battery (serial, or port + address); keys the settings entries.
    pub unique_id: String,
    /// `/ProductName`.
    pub product_name: String,
    /// `/Mgmt/Connection`, e.g. "Serial ttyUSB0 address 2".
    pub connection: String,
    /// `/CustomName` used when the settings service has none stored.
    pub custom_name: String,
    /// `/FirmwareVersion` until the battery reports its own.
    pub firmware_version: String,
    /// `/HardwareVersion` until the battery reports its own.
    pub hardware_version: String,
    /// `/Serial` until the battery reports its own.
    pub serial: String,
    /// `/DeviceInstance` proposed to (or used without) `com.victronenergy.settings`.
    pub fallback_device_instance: i32,
    /// Number of `/Voltages/CellN` and `/Balances/CellN` paths (0: the first snapshot's count).
    pub max_cells: usize,
    /// `/Manufacturer`: the BMS maker (the protocol's).
    pub manufacturer: String,
    /// `/ConnectionInformation`: maker, protocol and where, e.g. "JBD (jbd) on /dev/ttyUSB0".
    pub connection_information: String,
}

/// Everything a table row may read.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Fixed identity.
    pub identity: &'a Identity,
    /// Instance from the settings service (or the fallback).
    pub device_instance: i32,
    /// Current `/CustomName`.
    pub custom_name: &'a str,
    /// This cycle's data.
    pub snapshot: &'a Snapshot<'a>,
}

impl Context<'_> {
    fn battery(&self) -> &Battery {
        self.snapshot.battery
    }
    fn limits(&self) -> &ChargeLimits {
        self.snapshot.limits
    }
}

/// One published value with its text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The value.
    pub value: Value,
    /// How `GetText` shows it.
    pub unit: Unit,
}

impl Item {
    /// `GetText` of this item.
    pub fn text(&self) -> String {
        self.value.display(self.unit)
    }
}

/// Absolute path → item, sorted.
pub type Items = BTreeMap<String, Item>;

/// The name path a client may write (see also `writable.rs`).
pub const CUSTOM_NAME: &str = "/CustomName";

/// Writing 1 clears the `/History/*` counters (the daemon's own; nothing is sent to the BMS).
/// Always present and writable (`writable.rs` checks the value); reads 0.
pub const HISTORY_CLEAR: &str = "/History/Clear";

struct Row {
    path: &'static str,
    unit: Unit,
    value: fn(&Context<'_>) -> Value,
}

const fn row(path: &'static str, unit: Unit, value: fn(&Context<'_>) -> Value) -> Row {
    Row { path, unit, value }
}

fn text_or_identity(battery: Option<&String>, identity: &str) -> Value {
    Value::text(battery.map(String::as_str).or(Some(identity)))
}

fn mean(values: Option<&Vec<f64>>) -> Option<f64> {
    let values = values.filter(|v| !v.is_empty())?;
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

fn allowed(fet: Option<bool>, limit_a: Option<f64>) -> Value {
    match (fet, limit_a) {
        (Some(false), _) => Value::I32(0),
        (_, Some(limit)) => Value::I32(i32::from(limit > 0.0)),
        (Some(true), None) => Value::I32(1),
        (None, None) => Value::Invalid,
    }
}

fn history(c: &Context<'_>, f: fn(&History) -> Option<f64>) -> Value {
    Value::f64(c.snapshot.history.and_then(f))
}

/// Module count a multi-pack BMS (or a bank) reports, else 1/0 from the connection. (A lost
/// battery's view carries no counts unless its publisher sets them.)
fn modules(count: Option<u32>, fallback: bool) -> Value {
    match count {
        Some(n) => Value::I32(i32::try_from(n).unwrap_or(i32::MAX)),
        None => Value::I32(i32::from(fallback)),
    }
}

fn fet_blocks(fet: Option<bool>) -> Value {
    fet.map_or(Value::Invalid, |on| Value::I32(i32::from(!on)))
}

/// A label the battery carries itself (a bank's `P2C5`), if any.
fn label(c: &Context<'_>, pick: fn(&ExtremeIds) -> &Option<String>) -> Option<Value> {
    let ids = c.battery().extreme_ids.as_ref()?;
    pick(ids).as_ref().map(|id| Value::Text(id.clone()))
}

/// Mid-point of the cell string, as a BMV measures it: the first half of the cells (plus half of
/// the middle cell when the count is odd), and the deviation |second − first| / total × 100 %.
fn midpoint(b: &Battery) -> Option<(f64, f64)> {
    let cells = b.cell_voltages_v.as_deref().filter(|c| c.len() >= 2)?;
    let half = cells.len() / 2;
    let middle = if cells.len() % 2 == 1 { cells.get(half).copied().unwrap_or(0.0) / 2.0 } else { 0.0 };
    let first: f64 = cells.iter().take(half).sum::<f64>() + middle;
    let total: f64 = cells.iter().sum();
    let second = total - first;
    (total > 0.0).then(|| (first, (second - first).abs() / total * 100.0))
}

/// Temperatures shown one by one (`/System/Temperature1..4`).
pub const NAMED_TEMPERATURES: usize = 4;

/// Each named temperature's path, its name's path and the name.
const TEMPERATURE_PATHS: [(&str, &str, &str); NAMED_TEMPERATURES] = [
    ("/System/Temperature1", "/System/Temperature1Name", "Temperature 1"),
    ("/System/Temperature2", "/System/Temperature2Name", "Temperature 2"),
    ("/System/Temperature3", "/System/Temperature3Name", "Temperature 3"),
    ("/System/Temperature4", "/System/Temperature4Name", "Temperature 4"),
];

/// Cells whose path names are made once (formatting ~40 of them per reading was a few per cent
/// of the daemon's CPU; more cells than this are formatted each time).
const NAMED_CELLS: usize = 64;

/// `/Voltages/CellN` and `/Balances/CellN` for N = 1..=[`NAMED_CELLS`].
fn cell_paths() -> &'static [(String, String)] {
    static PATHS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        (1..=NAMED_CELLS).map(|n| (format!("/Voltages/Cell{n}"), format!("/Balances/Cell{n}"))).collect()
    })
}

/// The low-SoC alarm a BMS does not report itself: warning below 20 %, alarm below 10 % (the
/// incumbent's SOC_LOW_WARNING / SOC_LOW_ALARM defaults).
fn low_soc(soc: Option<f64>) -> Option<AlarmLevel> {
    soc.map(|s| match s {
        s if s < 10.0 => AlarmLevel::Alarm,
        s if s < 20.0 => AlarmLevel::Warning,
        _ => AlarmLevel::Ok,
    })
}

fn cell_id(prefix: &str, number: Option<usize>) -> Value {
    number.map_or(Value::Invalid, |n| Value::Text(format!("{prefix}{n}")))
}

use Unit::{Amp, AmpHour, CellVolt, Celsius, Hex, Percent, Plain, Second, Volt, Watt};

/// Fixed paths. Cells and alarms are added by [`collect`].
const TABLE: &[Row] = &[
    row("/Mgmt/ProcessName", Plain, |_| Value::Text(env!("CARGO_PKG_NAME").to_owned())),
    row("/Mgmt/ProcessVersion", Plain, |_| Value::Text(env!("CARGO_PKG_VERSION").to_owned())),
    row("/Mgmt/Connection", Plain, |c| Value::Text(c.identity.connection.clone())),
    row("/DeviceInstance", Plain, |c| Value::I32(c.device_instance)),
    row("/ProductId", Hex, |_| Value::I32(PRODUCT_ID)),
    row("/ProductName", Plain, |c| Value::Text(c.identity.product_name.clone())),
    row("/FirmwareVersion", Plain, |c| {
        text_or_identity(c.battery().firmware_version.as_ref(), &c.identity.firmware_version)
    }),
    row("/HardwareVersion", Plain, |c| {
        text_or_identity(c.battery().hardware_version.as_ref(), &c.identity.hardware_version)
    }),
    row("/Manufacturer", Plain, |c| Value::Text(c.identity.manufacturer.clone())),
    row("/Family", Plain, |c| {
        text_or_identity(c.battery().hardware_version.as_ref(), &c.identity.hardware_version)
    }),
    // The name the battery gives itself (model), else the product name.
    row("/DeviceName", Plain, |c| text_or_identity(c.battery().model.as_ref(), &c.identity.product_name)),
    row("/ConnectionInformation", Plain, |c| Value::Text(c.identity.connection_information.clone())),
    row("/Connected", Plain, |c| Value::flag(Some(c.snapshot.connected))),
    row(CUSTOM_NAME, Plain, |c| Value::Text(c.custom_name.to_owned())),
    row("/Serial", Plain, |c| text_or_identity(c.battery().serial.as_ref(), &c.identity.serial)),
    row("/Dc/0/Voltage", Volt, |c| Value::f64(c.battery().voltage_v)),
    row("/Dc/0/Current", Amp, |c| Value::f64(c.battery().current_a)),
    row("/Dc/0/Power", Watt, |c| Value::f64(c.battery().power_w())),
    row("/Dc/0/MidVoltage", Volt, |c| Value::f64(midpoint(c.battery()).map(|m| m.0))),
    row("/Dc/0/MidVoltageDeviation", Percent, |c| Value::f64(midpoint(c.battery()).map(|m| m.1))),
    row("/Dc/0/Temperature", Celsius, |c| Value::f64(mean(c.battery().temperatures_c.as_ref()))),
    // The control decides which SoC is published (the BMS's, or coulomb-counted with the BMS's
    // kept under /SocBms).
    row("/Soc", Percent, |c| Value::f64(c.limits().soc_percent.or(c.battery().soc_percent))),
    row("/SocBms", Percent, |c| Value::f64(c.limits().soc_bms_percent)),
    row("/CurrentAvg", Amp, |c| Value::f64(c.limits().current_average_a)),
    row("/Soh", Percent, |c| Value::f64(c.battery().soh_percent)),
    row("/Capacity", AmpHour, |c| Value::f64(c.battery().remaining_capacity_ah)),
    // Installed = rated capacity (what a user types into a BMV); the learned full capacity only
    // when the BMS does not report a rated one.
    row("/InstalledCapacity", AmpHour, |c| {
        let b = c.battery();
        Value::f64(b.nominal_capacity_ah.or(b.full_capacity_ah))
    }),
    // Drawn since full, negative (§6.1): remaining − capacity-when-full, never above 0.
    row("/ConsumedAmphours", AmpHour, |c| {
        let b = c.battery();
        let full = b.full_capacity_ah.or(b.nominal_capacity_ah);
        Value::f64(full.zip(b.remaining_capacity_ah).map(|(f, r)| (r - f).min(0.0)))
    }),
    // From the average current while discharging; invalid otherwise (still "seen" by the GUI).
    row("/TimeToGo", Second, |c| Value::f64(c.limits().time_to_go_s)),
    row("/History/ChargeCycles", Plain, |c| history(c, |h| Some(h.charge_cycles))),
    row("/History/TotalAhDrawn", AmpHour, |c| history(c, |h| Some(-h.total_ah_drawn))),
    row("/History/DeepestDischarge", AmpHour, |c| history(c, |h| Some(-h.deepest_discharge_ah))),
    row("/History/LastDischarge", AmpHour, |c| history(c, |h| Some(-h.last_discharge_ah))),
    row("/History/FullDischarges", Plain, |c| Value::int(c.snapshot.history.map(|h| h.full_discharges))),
    row("/History/MinimumVoltage", Volt, |c| history(c, |h| h.min_voltage_v)),
    row("/History/MaximumVoltage", Volt, |c| history(c, |h| h.max_voltage_v)),
    row("/History/MinimumCellVoltage", CellVolt, |c| history(c, |h| h.min_cell_voltage_v)),
    row("/History/MaximumCellVoltage", CellVolt, |c| history(c, |h| h.max_cell_voltage_v)),
    row("/History/MinimumTemperature", Celsius, |c| history(c, |h| h.min_temperature_c)),
    row("/History/MaximumTemperature", Celsius, |c| history(c, |h| h.max_temperature_c)),
    row("/History/ChargedEnergy", Plain, |c| history(c, |h| Some(h.charged_energy_kwh))),
    row("/History/DischargedEnergy", Plain, |c| history(c, |h| Some(h.discharged_energy_kwh))),
    row("/History/AverageDischarge", AmpHour, |c| history(c, |h| h.average_discharge_ah().map(|ah| -ah))),
    row("/History/LowVoltageAlarms", Plain, |c| Value::int(c.snapshot.history.map(|h| h.low_voltage_alarms))),
    row("/History/HighVoltageAlarms", Plain, |c| {
        Value::int(c.snapshot.history.map(|h| h.high_voltage_alarms))
    }),
    // The counters are kept in the charge state file; writing 1 to `/History/Clear` resets
    // them (`writable::HISTORY_CLEAR`). A service without counters (none yet) cannot.
    row("/History/CanBeCleared", Plain, |c| Value::I32(i32::from(c.snapshot.history.is_some()))),
    row(HISTORY_CLEAR, Plain, |_| Value::I32(0)),
    row("/History/TimeSinceLastFullCharge", Second, |c| Value::f64(c.limits().since_full_charge_s)),
    row("/State", Plain, |c| Value::I32(c.snapshot.state)),
    row("/ErrorCode", Plain, |c| Value::I32(c.snapshot.error_code)),
    row("/Info/MaxChargeVoltage", Volt, |c| Value::f64(c.limits().charge_voltage_v)),
    row("/Info/MaxChargeCurrent", Amp, |c| Value::f64(c.limits().charge_current_a)),
    row("/Info/MaxDischargeCurrent", Amp, |c| Value::f64(c.limits().discharge_current_a)),
    row("/Info/BatteryLowVoltage", Volt, |c| Value::f64(c.limits().low_voltage_v)),
    // Informative: the CVL per series cell.
    row("/Info/MaxChargeCellVoltage", CellVolt, |c| {
        let cells = c.battery().cells_in_series().filter(|n| *n > 0).map(f64::from);
        Value::f64(c.limits().charge_voltage_v.zip(cells).map(|(v, n)| v / n))
    }),
    row("/Info/ChargeRequest", Plain, |_| Value::Invalid),
    row("/Info/ChargeMode", Plain, |c| Value::text(Some(&c.limits().charge_mode))),
    row("/Info/ChargeLimitation", Plain, |c| Value::text(Some(&c.limits().charge_limitation))),
    row("/Info/DischargeLimitation", Plain, |c| Value::text(Some(&c.limits().discharge_limitation))),
    // Allowed = the BMS's MOSFET is on and our limit is above 0 (incumbent §3.10).
    row("/Io/AllowToCharge", Plain, |c| allowed(c.battery().charge_fet, c.limits().charge_current_a)),
    row("/Io/AllowToDischarge", Plain, |c| {
        allowed(c.battery().discharge_fet, c.limits().discharge_current_a)
    }),
    // The BMS's balancer switch where it reports one; a BMS that reports per-cell balancing
    // flags balances by itself.
    row("/Io/AllowToBalance", Plain, |c| {
        let b = c.battery();
        Value::flag(b.balancer_enabled.or(b.balancing_cells.as_ref().map(|_| true)))
    }),
    // The pack heater where the BMS has one (JK PB, the MQTT schema); invalid elsewhere.
    row("/Io/AllowToHeat", Plain, |c| Value::flag(c.battery().heater.enabled)),
    row("/Heating", Plain, |c| Value::flag(c.battery().heater.heating)),
    row("/Info/HeatingCurrent", Amp, |c| Value::f64(c.battery().heater.current_a)),
    row("/Info/HeatingPower", Watt, |c| Value::f64(c.battery().heater.power_w)),
    row("/Info/HeatingTemperatureStart", Celsius, |c| Value::f64(c.battery().heater.start_c)),
    row("/Info/HeatingTemperatureStop", Celsius, |c| Value::f64(c.battery().heater.stop_c)),
    row("/System/MinCellVoltage", CellVolt, |c| Value::f64(c.battery().min_cell().map(|m| m.1))),
    row("/System/MaxCellVoltage", CellVolt, |c| Value::f64(c.battery().max_cell().map(|m| m.1))),
    row("/System/MinVoltageCellId", Plain, |c| {
        label(c, |ids| &ids.min_cell)
            .unwrap_or_else(|| cell_id("C", c.battery().min_cell().and_then(|m| m.0)))
    }),
    row("/System/MaxVoltageCellId", Plain, |c| {
        label(c, |ids| &ids.max_cell)
            .unwrap_or_else(|| cell_id("C", c.battery().max_cell().and_then(|m| m.0)))
    }),
    row("/System/MinCellTemperature", Celsius, |c| {
        Value::f64(c.battery().temperature_extremes().map(|(low, _)| low.1))
    }),
    row("/System/MaxCellTemperature", Celsius, |c| {
        Value::f64(c.battery().temperature_extremes().map(|(_, high)| high.1))
    }),
    row("/System/MinTemperatureCellId", Plain, |c| {
        label(c, |ids| &ids.min_temperature)
            .unwrap_or_else(|| cell_id("T", c.battery().temperature_extremes().map(|(low, _)| low.0)))
    }),
    row("/System/MaxTemperatureCellId", Plain, |c| {
        label(c, |ids| &ids.max_temperature)
            .unwrap_or_else(|| cell_id("T", c.battery().temperature_extremes().map(|(_, high)| high.0)))
    }),
    row("/System/MOSTemperature", Celsius, |c| Value::f64(c.battery().temperature_mos_c)),
    row("/System/NrOfCellsPerBattery", Plain, |c| Value::int(c.battery().cells_in_series())),
    // One pack per service: it is the module, online while the BMS answers.
    row("/System/NrOfModulesOnline", Plain, |c| modules(c.battery().modules_online, c.snapshot.connected)),
    row("/System/NrOfModulesOffline", Plain, |c| modules(c.battery().modules_offline, !c.snapshot.connected)),
    row("/System/NrOfModulesBlockingCharge", Plain, |c| {
        let b = c.battery();
        b.modules_blocking_charge.map_or_else(|| fet_blocks(b.charge_fet), |n| Value::int(Some(n)))
    }),
    row("/System/NrOfModulesBlockingDischarge", Plain, |c| {
        let b = c.battery();
        b.modules_blocking_discharge.map_or_else(|| fet_blocks(b.discharge_fet), |n| Value::int(Some(n)))
    }),
    row("/Balancing", Plain, |c| {
        Value::flag(c.battery().balancing_cells.as_ref().map(|f| f.iter().any(|on| *on)))
    }),
    row("/Voltages/Sum", Volt, |c| {
        let cells = c.battery().cell_voltages_v.as_ref().filter(|v| !v.is_empty());
        Value::f64(cells.map(|v| v.iter().sum()))
    }),
    row("/Voltages/Diff", CellVolt, |c| {
        let b = c.battery();
        Value::f64(b.max_cell().zip(b.min_cell()).map(|(high, low)| high.1 - low.1))
    }),
];

/// Every published path with its value for this context. Always the same set of paths for the
/// same `max_cells`.
pub fn collect(ctx: &Context<'_>) -> Items {
    let mut items = Items::new();
    visit(ctx, &mut |path, item| {
        items.insert(path.to_owned(), item);
    });
    items
}

/// The values [`update`] last published, in the order [`visit`] gives them: a path whose value
/// equals its last one is skipped without a lookup in the table (most paths, most cycles; the
/// lookups' string compares were a tenth of the daemon's CPU: docs/performance.md, "Per
/// reading"). Only valid while nothing else changes the table: clear it after a client's write.
#[derive(Debug, Default, Clone)]
pub struct Shadow(Vec<(String, Item)>);

impl Shadow {
    /// Forgets the last values: the next [`update`] looks every path up.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Brings `items` to this context's values in place and returns the paths whose value changed
/// (or that were new), in path order: what [`collect`] then [`super::diff::diff`] give, without
/// building a second tree of some 140 freshly formatted paths every cycle (that rebuild was a
/// tenth of the daemon's CPU: docs/performance.md, "Per reading"). Paths this context no longer
/// has are dropped, but for the `/Settings/` ones, which are the clients' (`writable.rs`).
/// `shadow` holds the last values in visit order (see [`Shadow`]).
pub fn update(ctx: &Context<'_>, items: &mut Items, shadow: &mut Shadow) -> Vec<(String, Item)> {
    let mut changes = Vec::new();
    let mut visited = 0;
    visit(ctx, &mut |path, item| {
        let index = visited;
        visited += 1;
        let last = shadow.0.get_mut(index);
        if let Some((last_path, last_item)) = &last {
            if last_item == &item && last_path == path {
                return;
            }
        }
        match items.get_mut(path) {
            Some(old) if old.value == item.value && old.unit == item.unit => {}
            Some(old) => {
                *old = item.clone();
                changes.push((path.to_owned(), item.clone()));
            }
            None => {
                items.insert(path.to_owned(), item.clone());
                changes.push((path.to_owned(), item.clone()));
            }
        }
        match last {
            Some((last_path, last_item)) => {
                last_path.clear();
                last_path.push_str(path);
                *last_item = item;
            }
            None => shadow.0.push((path.to_owned(), item)),
        }
    });
    shadow.0.truncate(visited);
    let from = (std::ops::Bound::Included("/Settings/"), std::ops::Bound::Unbounded);
    let settings = items.range::<str, _>(from).take_while(|(p, _)| p.starts_with("/Settings/")).count();
    if items.len() > visited + settings {
        let current: std::collections::BTreeSet<String> = collect(ctx).into_keys().collect();
        items.retain(|path, _| path.starts_with("/Settings/") || current.contains(path));
    }
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    changes
}

/// Calls `sink` with every path and its value; the numbered paths are formatted into one
/// reused buffer.
fn visit(ctx: &Context<'_>, sink: &mut dyn FnMut(&str, Item)) {
    for row in TABLE {
        sink(row.path, Item { value: (row.value)(ctx), unit: row.unit });
    }
    let battery = ctx.battery();
    let cells = battery.cell_voltages_v.as_deref().unwrap_or(&[]);
    let balancing = battery.balancing_cells.as_deref().unwrap_or(&[]);
    let names = cell_paths();
    for index in 0..ctx.identity.max_cells {
        let volts = Value::f64(cells.get(index).copied());
        let flag = Value::flag(balancing.get(index).copied());
        match names.get(index) {
            Some((voltage, balance)) => {
                sink(voltage, Item { value: volts, unit: CellVolt });
                sink(balance, Item { value: flag, unit: Plain });
            }
            // More cells than any BMS here has: formatted each time.
            None => {
                let number = index + 1;
                sink(&format!("/Voltages/Cell{number}"), Item { value: volts, unit: CellVolt });
                sink(&format!("/Balances/Cell{number}"), Item { value: flag, unit: Plain });
            }
        }
    }
    let temperatures = battery.temperatures_c.as_deref().unwrap_or(&[]);
    for (index, (path, name_path, name)) in TEMPERATURE_PATHS.iter().enumerate() {
        let value = Value::f64(temperatures.get(index).copied());
        sink(path, Item { value, unit: Celsius });
        sink(name_path, Item { value: Value::Text((*name).to_owned()), unit: Plain });
    }
    let mut alarms = battery.alarms.clone();
    if alarms.low_soc.is_none() {
        alarms.low_soc = low_soc(ctx.limits().soc_percent.or(battery.soc_percent));
    }
    // The summary is the worst alarm the BMS reports; the derived low-SoC level is not one.
    let worst = battery.alarms.entries().iter().filter_map(|(_, _, level)| *level).max();
    for ((_, _, level), path) in alarms.entries().into_iter().zip(Alarms::PATHS) {
        let value = Value::int(level.map(AlarmLevel::as_i32));
        sink(path, Item { value, unit: Plain });
    }
    // Summary: the worst level of any alarm the BMS reports; invalid when it reports none.
    let summary = Value::int(worst.map(AlarmLevel::as_i32));
    sink("/Alarms/Alarm", Item { value: summary, unit: Plain });
}

#[cfg(test)]
mod tests;
