//! `bms-bridge import-serialbattery config.ini`: turns a dbus-serialbattery `config.ini` (over its
//! `config.default.ini`, or the built-in copy of its defaults) into the equivalent bms-bridge.toml
//! and lists every key it could not map, and why.

mod keys;
mod render;

use render::render;

use crate::control::ChargeConfig;
use std::collections::BTreeMap;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The user's config.ini, line.
    Config(usize),
    /// The config.default.ini given or found, line.
    Defaults(usize),
    /// The built-in copy of dbus-serialbattery's defaults.
    Builtin,
}

/// A key the importer could not carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// The dbus-serialbattery key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// `config.ini:12` or `config.default.ini:40`.
    pub place: String,
    /// Why.
    pub reason: String,
}

/// What the import produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The bms-bridge.toml text.
    pub toml: String,
    /// `(dbus-serialbattery key, bms-bridge key)` for every mapped key.
    pub mapped: Vec<(String, String)>,
    /// Keys set by the user (or changed in config.default.ini) that have no equivalent.
    pub unmapped: Vec<Unmapped>,
    /// Keys left at dbus-serialbattery's defaults that have no equivalent (no action needed).
    pub unmapped_defaults: Vec<String>,
}

/// Inputs besides the files.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serial device for the `[[port]]` (dbus-serialbattery got it from serial-starter).
    pub port: Option<String>,
    /// Protocol, when `BMS_TYPE` does not name one.
    pub protocol: Option<String>,
}

/// `KEY = value` lines of the `[DEFAULT]` section: (upper-case key, value, line).
pub fn parse_ini(text: &str, file: &str) -> Result<Vec<(String, String, usize)>, String> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            if line != "[DEFAULT]" {
                return Err(format!(
                    "{file}:{}: only the [DEFAULT] section is read, found {line}",
                    index + 1
                ));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(format!("{file}:{}: expected KEY = value, found {line:?}", index + 1));
        };
        out.push((key.trim().to_uppercase(), value.trim().to_owned(), index + 1));
    }
    Ok(out)
}

/// Converts; `defaults` is the text of config.default.ini when available.
pub fn convert(
    config: (&str, &str),
    defaults: Option<(&str, &str)>,
    options: &Options,
) -> Result<Outcome, String> {
    let (config_text, config_name) = config;
    let mut values: BTreeMap<String, (String, Origin)> =
        keys::DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), ((*v).to_owned(), Origin::Builtin))).collect();
    let mut defaults_name = String::new();
    if let Some((text, name)) = defaults {
        defaults_name = name.to_owned();
        for (key, value, line) in parse_ini(text, name)? {
            values.insert(key, (value, Origin::Defaults(line)));
        }
    }
    for (key, value, line) in parse_ini(config_text, config_name)? {
        values.insert(key, (value, Origin::Config(line)));
    }
    let mut m = Mapper { values, used: BTreeMap::new(), problems: Vec::new(), mapped: Vec::new() };
    let charge = m.charge();
    let port = m.port(options);
    let daemon = m.daemon();

    let place = |origin: &Origin| match origin {
        Origin::Config(line) => format!("{config_name}:{line}"),
        Origin::Defaults(line) => format!("{defaults_name}:{line}"),
        Origin::Builtin => "dbus-serialbattery default".to_owned(),
    };
    let builtin = |key: &str| keys::DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let mut unmapped = Vec::new();
    let mut unmapped_defaults = Vec::new();
    for (key, (value, origin)) in &m.values {
        if let Some(reason) = m.problems.iter().find(|(k, _)| k == key).map(|(_, r)| r.clone()) {
            unmapped.push(Unmapped { key: key.clone(), value: value.clone(), place: place(origin), reason });
            continue;
        }
        if m.used.contains_key(key) {
            continue;
        }
        let user_set = matches!(origin, Origin::Config(_)) || builtin(key).is_some_and(|d| d != value);
        let reason = keys::unmapped_reason(key).map(str::to_owned).unwrap_or_else(|| {
            "unknown to this importer (renamed in another dbus-serialbattery release?)".into()
        });
        if user_set {
            unmapped.push(Unmapped { key: key.clone(), value: value.clone(), place: place(origin), reason });
        } else {
            unmapped_defaults.push(key.clone());
        }
    }
    let toml = render(config_name, &daemon, &charge, &port, &unmapped, &m.mapped)?;
    Ok(Outcome { toml, mapped: m.mapped, unmapped, unmapped_defaults })
}

struct Mapper {
    values: BTreeMap<String, (String, Origin)>,
    used: BTreeMap<String, ()>,
    problems: Vec<(String, String)>,
    mapped: Vec<(String, String)>,
}

impl Mapper {
    fn raw(&mut self, key: &str) -> Option<String> {
        let value = self.values.get(key).map(|(v, _)| v.clone())?;
        self.used.insert(key.to_owned(), ());
        Some(value).filter(|v| !v.is_empty())
    }

    fn problem(&mut self, key: &str, reason: String) {
        self.used.remove(key);
        self.problems.push((key.to_owned(), reason));
    }

    fn float(&mut self, key: &str, target: &str) -> Option<f64> {
        let raw = self.raw(key)?;
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => {
                self.mapped.push((key.to_owned(), target.to_owned()));
                Some(v)
            }
            _ => {
                self.problem(key, format!("not a number: {raw:?}"));
                None
            }
        }
    }

    fn flag(&mut self, key: &str, target: &str) -> Option<bool> {
        let raw = self.raw(key)?;
        let value = match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.problem(key, format!("not True/False: {raw:?}"));
                return None;
            }
        };
        self.mapped.push((key.to_owned(), target.to_owned()));
        Some(value)
    }

    fn list(&mut self, key: &str) -> Option<Vec<f64>> {
        let raw = self.raw(key)?;
        let parsed: Result<Vec<f64>, _> = raw.split(',').map(|s| s.trim().parse::<f64>()).collect();
        parsed.map_err(|_| self.problem(key, format!("not a list of numbers: {raw:?}"))).ok()
    }

    /// Two parallel lists -> a `[x, fraction]` table.
    fn table(&mut self, xs: &str, ys: &str, target: &str) -> Option<Vec<[f64; 2]>> {
        let (x, y) = (self.list(xs)?, self.list(ys)?);
        if x.len() != y.len() || x.is_empty() {
            let why = format!("{xs} has {} values but {ys} has {}: cannot pair them", x.len(), y.len());
            self.problem(xs, why.clone());
            self.problem(ys, why);
            return None;
        }
        self.mapped.push((format!("{xs} + {ys}"), target.to_owned()));
        let mut table: Vec<[f64; 2]> = x.into_iter().zip(y).map(|(a, b)| [a, b]).collect();
        table.sort_by(|a, b| a[0].total_cmp(&b[0]));
        Some(table)
    }

    fn charge(&mut self) -> ChargeConfig {
        let mut c = ChargeConfig::default();
        macro_rules! float {
            ($key:literal, $field:ident) => {
                if let Some(v) = self.float($key, concat!("charge.", stringify!($field))) {
                    c.$field = v;
                }
            };
        }
        macro_rules! table {
            ($xs:literal, $ys:literal, $field:ident) => {
                if let Some(t) = self.table($xs, $ys, concat!("charge.", stringify!($field))) {
                    c.$field = t;
                }
            };
        }
        float!("MAX_BATTERY_CHARGE_CURRENT", max_charge_current);
        float!("MAX_BATTERY_DISCHARGE_CURRENT", max_discharge_current);
        float!("MIN_CELL_VOLTAGE", min_cell_voltage);
        float!("MAX_CELL_VOLTAGE", max_cell_voltage);
        float!("FLOAT_CELL_VOLTAGE", float_cell_voltage);
        float!("SWITCH_TO_FLOAT_WAIT_FOR_SEC", absorption_time_s);
        float!("SWITCH_TO_FLOAT_CELL_VOLTAGE_DIFF", float_switch_cell_diff);
        float!("SWITCH_TO_FLOAT_CELL_VOLTAGE_DEVIATION", float_switch_cell_diff_hysteresis);
        float!("SWITCH_TO_BULK_SOC_THRESHOLD", rebulk_soc);
        float!("SWITCH_TO_BULK_CELL_VOLTAGE_DIFF", rebulk_cell_diff);
        float!("CVL_RECOVERY_HOLD_SEC", cvl_recovery_hold_s);
        float!("CVL_RECOVERY_RATE_V_PER_SEC", cvl_recovery_v_per_s);
        float!("CHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT", current_recovery_threshold);
        float!("CCL_RECOVERY_HOLD_SEC", current_recovery_hold_s);
        float!("CCL_RECOVERY_RATE_A_PER_SEC", current_recovery_a_per_s);
        float!("BLOCK_ON_DISCONNECT_VOLTAGE_MIN", lost_discharge_safe_cell_voltage);
        float!("SOC_LOW_WARNING", time_to_go_soc);
        if let Some(minutes) =
            self.float("BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES", "charge.lost_discharge_timeout_s")
        {
            c.lost_discharge_timeout_s = minutes * 60.0;
        }
        if let Some(days) = self.float("SOC_RESET_AFTER_DAYS", "charge.full_charge_every_days") {
            c.full_charge_every_days = Some(days);
        }
        if let Some(ah) = self.float("BATTERY_CAPACITY", "charge.capacity_ah") {
            c.capacity_ah = Some(ah);
        }
        if let Some(mode) = self.raw("CHARGE_MODE") {
            match mode.as_str() {
                "1" => c.table_mode = crate::control::config::TableMode::Linear,
                "2" => c.table_mode = crate::control::config::TableMode::Step,
                other => self.problem("CHARGE_MODE", format!("{other:?} is neither 1 (linear) nor 2 (step)")),
            }
            if mode == "1" || mode == "2" {
                self.mapped.push(("CHARGE_MODE".into(), "charge.table_mode".into()));
            }
        }
        if self.flag("SOC_CALCULATION", "charge.soc_source") == Some(true) {
            c.soc_source = crate::control::config::SocSource::Calculated;
        }
        if let Some(on) = self.flag("CCCM_SOC_ENABLE", "charge.charge_soc_limit") {
            c.charge_soc_limit = on;
        }
        if let Some(on) = self.flag("DCCM_SOC_ENABLE", "charge.discharge_soc_limit") {
            c.discharge_soc_limit = on;
        }
        table!("CELL_VOLTAGES_WHILE_CHARGING", "MAX_CHARGE_CURRENT_CV_FRACTION", charge_cell_voltage_table);
        table!(
            "CELL_VOLTAGES_WHILE_DISCHARGING",
            "MAX_DISCHARGE_CURRENT_CV_FRACTION",
            discharge_cell_voltage_table
        );
        table!("TEMPERATURES_WHILE_CHARGING", "MAX_CHARGE_CURRENT_T_FRACTION", charge_temperature_table);
        table!(
            "TEMPERATURES_WHILE_DISCHARGING",
            "MAX_DISCHARGE_CURRENT_T_FRACTION",
            discharge_temperature_table
        );
        table!(
            "MOSFET_TEMPERATURES_WHILE_CHARGING",
            "MAX_CHARGE_CURRENT_T_MOSFET_FRACTION",
            mosfet_temperature_table
        );
        table!("SOC_WHILE_CHARGING", "MAX_CHARGE_CURRENT_SOC_FRACTION", charge_soc_table);
        table!("SOC_WHILE_DISCHARGING", "MAX_DISCHARGE_CURRENT_SOC_FRACTION", discharge_soc_table);
        c
    }

    fn daemon(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(seconds) = self.float("POLL_INTERVAL", "daemon.poll_interval_ms") {
            let ms = (seconds * 1000.0).round().clamp(100.0, 60_000.0);
            out.push(("poll_interval_ms".into(), format!("{ms}")));
            if ms * 2.0 / 1000.0 > 10.0 {
                out.push(("stale_after_s".into(), format!("{:.1}", ms * 2.5 / 1000.0)));
            }
        }
        out
    }

    fn port(&mut self, options: &Options) -> Vec<String> {
        let device = options.port.clone().unwrap_or_else(|| "/dev/ttyUSB0".into());
        let mut lines = vec![format!("device = {}", toml::Value::from(device.clone()))];
        let protocol = match (options.protocol.clone(), self.raw("BMS_TYPE")) {
            (Some(p), _) => p,
            (None, Some(types)) => {
                let first = types.split(',').next().unwrap_or("").trim().to_owned();
                match keys::protocol_for_class(&first) {
                    Some(p) => {
                        self.mapped.push(("BMS_TYPE".into(), "port.protocol".into()));
                        p.to_owned()
                    }
                    None => {
                        self.problem(
                            "BMS_TYPE",
                            format!("{first} is not supported by bms-bridge (or pass --protocol)"),
                        );
                        "jbd".into()
                    }
                }
            }
            (None, None) => "jbd".into(),
        };
        lines.push(format!("protocol = {}", toml::Value::from(protocol)));
        let mut addresses = Vec::new();
        if let Some(raw) = self.raw("BATTERY_ADDRESSES") {
            let parsed: Result<Vec<u8>, _> = raw
                .split(',')
                .map(|s| {
                    let s = s.trim();
                    s.strip_prefix("0x")
                        .or_else(|| s.strip_prefix("0X"))
                        .map_or_else(|| s.parse(), |h| u8::from_str_radix(h, 16))
                })
                .collect();
            match parsed {
                Ok(list) => {
                    self.mapped.push(("BATTERY_ADDRESSES".into(), "port.addresses".into()));
                    let hex: Vec<String> = list.iter().map(|a| format!("0x{a:02X}")).collect();
                    lines.push(format!("addresses = [{}]", hex.join(", ")));
                    addresses = list;
                }
                Err(_) => self.problem("BATTERY_ADDRESSES", format!("not a list of byte addresses: {raw:?}")),
            }
        }
        if let Some(raw) = self.raw("INVERT_CURRENT_MEASUREMENT") {
            match raw.as_str() {
                "1" => self
                    .mapped
                    .push(("INVERT_CURRENT_MEASUREMENT".into(), "port.battery.invert_current".into())),
                "-1" => {
                    self.mapped
                        .push(("INVERT_CURRENT_MEASUREMENT".into(), "port.battery.invert_current".into()));
                    let targets: Vec<Option<u8>> = if addresses.is_empty() {
                        vec![None]
                    } else {
                        addresses.iter().copied().map(Some).collect()
                    };
                    for address in targets {
                        lines.push(String::new());
                        lines.push("[[port.battery]]".into());
                        if let Some(a) = address {
                            lines.push(format!("address = 0x{a:02X}"));
                        }
                        lines.push("invert_current = true".into());
                    }
                }
                other => self.problem("INVERT_CURRENT_MEASUREMENT", format!("{other:?} is neither 1 nor -1")),
            }
        }
        lines
    }
}
