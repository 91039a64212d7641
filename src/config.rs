//! The TOML configuration: schema, defaults and validation.
//!
//! Every problem is reported with file, line, column and field, and all of them at once:
//! `bms-bridge check-config` prints the whole list. Unknown keys are errors.

pub mod can;

use crate::control::bms_limits::BmsLimits;
use crate::control::ChargeConfig;
pub use can::CanOptions;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Polling and timing.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Which bus to publish on.
    #[serde(default)]
    pub dbus: DbusConfig,
    /// Charge limits (CVL/CCL/DCL).
    #[serde(default)]
    pub charge: ChargeConfig,
    /// Serial ports, one `[[port]]` table each.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    /// Packs grouped into one battery, one `[[bank]]` table each (`docs/multi-battery.md`).
    #[serde(default, rename = "bank")]
    pub banks: Vec<crate::bank::BankConfig>,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Time between the starts of two polls of one battery (ms).
    pub poll_interval_ms: u64,
    /// A BMS that has not answered for this long is lost: measurements invalid, CCL 0 (s).
    pub stale_after_s: f64,
    /// Where charge-control state (phase, timers, SoC, history) is kept across restarts.
    pub state_dir: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self { poll_interval_ms: 1000, stale_after_s: 10.0, state_dir: PathBuf::from("/data/bms-bridge") }
    }
}

/// `[dbus]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbusConfig {
    /// `"system"` (default; honours `DBUS_SYSTEM_BUS_ADDRESS`), `"session"`, or a D-Bus address
    /// such as `"unix:path=/run/dbus/system_bus_socket"`.
    pub bus: String,
    /// Device instance used when `com.victronenergy.settings` is not on the bus.
    pub device_instance: i32,
    /// Also send one `PropertiesChanged` per changed path, besides the cycle's `ItemsChanged`
    /// (only Venus OS before 2021 needs it; off: one signal per battery and cycle).
    pub properties_changed: bool,
}

impl Default for DbusConfig {
    fn default() -> Self {
        Self { bus: "system".to_owned(), device_instance: 1, properties_changed: false }
    }
}

/// The BMS protocols a port can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// JBD / LLT / Overkill classic UART or RS485 (`DD A5 ...`), one BMS per port.
    Jbd,
    /// JBD UP-series RS485 (addressable, CRC-16/MODBUS).
    JbdUp16s,
    /// JK PB inverter BMS, RS485 115200: FC16 trigger, 300-byte `55 AA EB 90` reply + ACK.
    JkPb,
    /// Renogy smart batteries, Modbus RTU 9600, registers 5000+.
    Renogy,
    /// EG4-LL / LL-S v2, Modbus RTU 9600, DIP addresses.
    Eg4Ll,
    /// FoxESS HV2600 packs (V1) in series: Modbus FC03 + `0D 0A`, 115200; one battery per port.
    Foxess,
    /// JK BMS, older RS485/TTL protocol (`4E 57 ...`), one BMS per port.
    JkRs485,
    /// Daly UART/RS485 (`A5 ...` sentences), addressable (0x40 + board - 1).
    Daly,
    /// EG4 LifePower (TianPower/Narada `7E ... 0D`), addresses 1-15.
    Eg4Lifepower,
    /// The CAN "Victron/Pylontech dialect" over SocketCAN; `device` is the interface (`can0`).
    VictronCan,
}

impl Protocol {
    /// Every protocol, in the order `probe` tries them.
    pub const ALL: &'static [Protocol] = &[
        Protocol::Jbd,
        Protocol::JbdUp16s,
        Protocol::JkPb,
        Protocol::Renogy,
        Protocol::Eg4Ll,
        Protocol::Foxess,
        Protocol::JkRs485,
        Protocol::Daly,
        Protocol::Eg4Lifepower,
    ];

    /// The CAN protocols (not probed on serial ports).
    pub const CAN: &'static [Protocol] = &[Protocol::VictronCan];

    /// The names of every protocol, for messages.
    pub fn names() -> String {
        Self::ALL.iter().chain(Self::CAN).map(|p| p.name()).collect::<Vec<_>>().join(", ")
    }

    /// Addresses `probe` tries (none for protocols without addressing).
    pub fn probe_addresses(self) -> Vec<Option<u8>> {
        match self {
            Protocol::Jbd | Protocol::JkRs485 | Protocol::VictronCan => vec![None],
            Protocol::JbdUp16s
            | Protocol::JkPb
            | Protocol::Eg4Ll
            | Protocol::Foxess
            | Protocol::Eg4Lifepower => {
                vec![Some(1)]
            }
            Protocol::Renogy => vec![Some(0x30), Some(0xF7)],
            Protocol::Daly => vec![Some(0x40), Some(0x80)],
        }
    }

    /// The name used in the config file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Jbd => "jbd",
            Protocol::JbdUp16s => "jbd_up16s",
            Protocol::JkPb => "jk_pb",
            Protocol::Renogy => "renogy",
            Protocol::Eg4Ll => "eg4_ll",
            Protocol::Foxess => "foxess",
            Protocol::JkRs485 => "jk_rs485",
            Protocol::Daly => "daly",
            Protocol::Eg4Lifepower => "eg4_lifepower",
            Protocol::VictronCan => "victron_can",
        }
    }

    /// Parses a config/CLI name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().chain(Self::CAN).copied().find(|p| p.name() == name)
    }

    /// Line speed the BMS ships with.
    pub fn default_baud(self) -> u32 {
        match self {
            Protocol::JkPb | Protocol::Foxess | Protocol::JkRs485 => 115_200,
            Protocol::Jbd
            | Protocol::JbdUp16s
            | Protocol::Renogy
            | Protocol::Eg4Ll
            | Protocol::Daly
            | Protocol::Eg4Lifepower => 9600,
            // Unused: a CAN interface has its bit rate set on the interface.
            Protocol::VictronCan => 0,
        }
    }

    /// Whether several BMS can share one bus (the protocol carries an address).
    pub fn addressable(self) -> bool {
        !matches!(self, Protocol::Jbd | Protocol::JkRs485 | Protocol::VictronCan)
    }

    /// Whether all addresses of a port form ONE battery (FoxESS packs in series) instead of
    /// one battery per address.
    pub fn one_battery_per_port(self) -> bool {
        matches!(self, Protocol::Foxess)
    }

    /// Why `address` cannot be a BMS address of this protocol, if it cannot.
    pub fn address_problem(self, address: u8) -> Option<String> {
        match self {
            Protocol::Eg4Lifepower if !(1..=15).contains(&address) => {
                Some(format!("{address} is outside the EG4 LifePower addresses 1..=15"))
            }
            Protocol::Daly if address < 0x40 => Some(format!(
                "{address} is not a Daly host address (0x40 = board 1, 0x41 = board 2 ..., or 0x80)"
            )),
            _ => None,
        }
    }

    /// Address used when the config names none.
    pub fn default_address(self) -> Option<u8> {
        match self {
            Protocol::Jbd | Protocol::JkRs485 | Protocol::VictronCan => None,
            Protocol::JbdUp16s
            | Protocol::JkPb
            | Protocol::Eg4Ll
            | Protocol::Foxess
            | Protocol::Eg4Lifepower => Some(1),
            Protocol::Renogy => Some(0x30),
            Protocol::Daly => Some(0x40),
        }
    }
}

/// `[[port]]`: one serial device and the BMS on it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Device path, e.g. `/dev/ttyUSB0` (a stable `/dev/serial/by-id/...` link is better).
    pub device: String,
    /// BMS protocol.
    pub protocol: Protocol,
    /// Line speed; the protocol's default when absent.
    pub baud: Option<u32>,
    /// BMS addresses on this bus (addressable protocols only).
    pub addresses: Option<Vec<u8>>,
    /// How long to wait for one reply (ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Per-battery options.
    #[serde(default, rename = "battery")]
    pub batteries: Vec<BatteryConfig>,
    /// CAN ports only: keep-alive and coexistence with Venus OS (`[port.can]`).
    #[serde(default)]
    pub can: CanOptions,
}

fn default_timeout_ms() -> u64 {
    500
}

/// `[[port.battery]]`: options for one BMS.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryConfig {
    /// Which BMS on the bus this applies to; may be left out when the port has one BMS.
    pub address: Option<u8>,
    /// Name shown in the GUI (`/CustomName` default).
    pub name: Option<String>,
    /// Installed capacity override (Ah), for a BMS that reports it wrongly or not at all.
    pub capacity_ah: Option<f64>,
    /// Expected series cell count; a BMS reporting another count raises an alarm.
    pub cell_count: Option<u16>,
    /// Reverse the sign of the current the BMS reports (Daly: decoders disagree on the sign, see
    /// `docs/protocols/daly.md`); applied by the poll loop, for any protocol.
    #[serde(default)]
    pub invert_current: bool,
    /// Offer the BMS writes the protocol documents (MOSFET off, SoC set) as writable D-Bus
    /// `/Settings/*` paths. Off by default; `docs/dbus.md` "Writable paths".
    #[serde(default)]
    pub allow_writes: bool,
    /// The BMS's own CVL/CCL/DCL: `"cap"` ours (default on CAN), `"only"` publish them unchanged.
    pub use_bms_limits: Option<BmsLimits>,
    /// CAN 0x356 volts per count: 0.01 (the dialect) or 0.1 (Discover, a known deviation).
    pub can_voltage_scale: Option<f64>,
    // --- Per-pack ratings and identity (issue 17; docs/multi-battery.md) ---
    /// This pack's continuous charge current rating (A); default `[charge] max_charge_current`.
    pub max_charge_current: Option<f64>,
    /// This pack's continuous discharge current rating (A); default `[charge] max_discharge_current`.
    pub max_discharge_current: Option<f64>,
    /// Unique id override (state file, device instance): for packs that report the same serial.
    pub identity: Option<String>,
}

impl PortConfig {
    /// A CAN port on `interface` with every other setting at its default (demo, replay, tests).
    pub fn can(interface: &str) -> PortConfig {
        PortConfig {
            device: interface.to_owned(),
            protocol: Protocol::VictronCan,
            baud: None,
            addresses: None,
            timeout_ms: 500,
            batteries: Vec::new(),
            can: Default::default(),
        }
    }

    /// The line speed in force.
    pub fn baud(&self) -> u32 {
        self.baud.unwrap_or_else(|| self.protocol.default_baud())
    }

    /// The BMS addresses to poll: the configured ones, else the protocol's default (or none).
    pub fn poll_addresses(&self) -> Vec<Option<u8>> {
        match &self.addresses {
            Some(list) if !list.is_empty() => list.iter().map(|a| Some(*a)).collect(),
            _ => vec![self.protocol.default_address()],
        }
    }

    /// The options for the BMS at `address`.
    pub fn battery(&self, address: Option<u8>) -> BatteryConfig {
        let single = self.poll_addresses().len() == 1;
        self.batteries
            .iter()
            .find(|b| b.address == address || (single && b.address.is_none()))
            .cloned()
            .unwrap_or_default()
    }
}

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the problem is in.
    pub file: String,
    /// 1-based line (0 when the problem has no place, e.g. the file is unreadable).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted field name, e.g. `port[1].baud`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        } else {
            write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.column, self.field, self.message)
        }
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(err) => Err(vec![ConfigError {
            file,
            line: 0,
            column: 0,
            field: "(file)".to_owned(),
            message: format!("cannot read: {err}"),
        }]),
    }
}

/// Parses and validates config text; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut working = text.to_owned();
    // serde stops at the first error. To report them all, the offending line is commented out
    // and the text parsed again, until it parses or an error cannot be pinned to a plain line.
    for _ in 0..64 {
        match toml::from_str::<Config>(&working) {
            Ok(config) => {
                errors.extend(validate(&config, text, file));
                return if errors.is_empty() { Ok(config) } else { Err(errors) };
            }
            Err(err) => {
                let (line, column) = err.span().map_or((0, 0), |s| line_col(&working, s.start));
                let message = err.message().trim().to_owned();
                let field = field_name(&working, line, &message);
                errors.push(ConfigError { file: file.to_owned(), line, column, field, message });
                let retry = line > 0
                    && working
                        .lines()
                        .nth(line - 1)
                        .is_some_and(|l| !l.trim_start().starts_with('[') && !l.trim().is_empty());
                if !retry {
                    return Err(errors);
                }
                working = comment_out(&working, line);
            }
        }
    }
    Err(errors)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // toml's spans are byte offsets on token boundaries; a bad one must not panic on a multibyte char
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

fn comment_out(text: &str, line: usize) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for (index, l) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            out.push_str("# ");
        }
        out.push_str(l);
    }
    out
}

/// The dotted name of the key on `line`, prefixed with its table (`charge.max_cell_voltage`).
fn field_name(text: &str, line: usize, message: &str) -> String {
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(name) = header_name(l) {
            let count = if l.starts_with("[[") {
                match counts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, c)) => {
                        *c += 1;
                        Some(*c)
                    }
                    None => {
                        counts.push((name.clone(), 0));
                        Some(0)
                    }
                }
            } else {
                None
            };
            table = match count {
                Some(c) => format!("{name}[{}]", c + 1),
                None => name,
            };
        }
        if index + 1 == line {
            let key = l.split('=').next().unwrap_or("").trim();
            if header_name(l).is_some() || key.is_empty() {
                return if table.is_empty() { unknown_field(message) } else { table };
            }
            return if table.is_empty() { key.to_owned() } else { format!("{table}.{key}") };
        }
    }
    unknown_field(message)
}

fn unknown_field(message: &str) -> String {
    message.split('`').nth(1).map_or_else(|| "(document)".to_owned(), str::to_owned)
}

fn header_name(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_owned())
}

/// Finds the line of `key` inside the `occurrence`-th table named `table` (0-based), for
/// problems found after parsing. Falls back to the table header, then to no place.
fn locate(text: &str, table: &str, occurrence: usize, key: &str) -> (usize, usize) {
    let mut seen = 0usize;
    let mut in_table = table.is_empty();
    let mut header_line = 0;
    for (index, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(name) = header_name(l) {
            if in_table && header_line > 0 {
                break;
            }
            in_table = false;
            if name == table {
                if seen == occurrence {
                    in_table = true;
                    header_line = index + 1;
                }
                seen += 1;
            }
            continue;
        }
        if in_table && l.split('=').next().is_some_and(|k| k.trim() == key) && l.contains('=') {
            let column = raw.find(key).map_or(1, |c| c + 1);
            return (index + 1, column);
        }
    }
    (header_line, usize::from(header_line > 0))
}

/// Checks what the types cannot: ranges, relations between keys, duplicates.
pub fn validate(config: &Config, text: &str, file: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut fail = |table: &str, occurrence: usize, key: &str, field: String, message: String| {
        let (line, column) = locate(text, table, occurrence, key);
        errors.push(ConfigError { file: file.to_owned(), line, column, field, message });
    };
    let d = &config.daemon;
    if d.poll_interval_ms < 100 || d.poll_interval_ms > 60_000 {
        fail(
            "daemon",
            0,
            "poll_interval_ms",
            "daemon.poll_interval_ms".into(),
            format!("{} is outside 100..=60000 ms", d.poll_interval_ms),
        );
    }
    if !(d.stale_after_s.is_finite() && d.stale_after_s >= 2.0 * d.poll_interval_ms as f64 / 1000.0) {
        fail(
            "daemon",
            0,
            "stale_after_s",
            "daemon.stale_after_s".into(),
            format!("{} s must be at least two poll intervals", d.stale_after_s),
        );
    }
    if !matches!(config.dbus.bus.as_str(), "system" | "session") && !config.dbus.bus.contains(':') {
        fail(
            "dbus",
            0,
            "bus",
            "dbus.bus".into(),
            format!(
                "{:?} is neither \"system\", \"session\" nor a D-Bus address (unix:path=...)",
                config.dbus.bus
            ),
        );
    }
    for message in charge_problems(&config.charge) {
        let key = message.split_whitespace().next().unwrap_or("").to_owned();
        fail("charge", 0, &key, format!("charge.{key}"), message);
    }
    if config.ports.is_empty() {
        fail("", 0, "port", "port".into(), "no [[port]] configured: nothing to poll".into());
    }
    let mut devices: Vec<&str> = Vec::new();
    let mut battery_tables = 0usize;
    for (i, port) in config.ports.iter().enumerate() {
        let name = |key: &str| format!("port[{}].{key}", i + 1);
        if port.device.trim().is_empty() {
            fail("port", i, "device", name("device"), "empty device path".into());
        } else if devices.contains(&port.device.as_str()) {
            fail("port", i, "device", name("device"), format!("{} is configured twice", port.device));
        }
        devices.push(&port.device);
        for (key, message) in can::problems(port) {
            fail("port", i, key, name(key), message);
        }
        if let Some(baud) = port.baud.filter(|_| !port.protocol.is_can()) {
            if ![1200, 2400, 4800, 9600, 19200, 38400, 57600, 115_200].contains(&baud) {
                fail("port", i, "baud", name("baud"), format!("{baud} is not a standard RS485 speed"));
            }
        }
        if port.timeout_ms < 50 || port.timeout_ms > 10_000 {
            fail(
                "port",
                i,
                "timeout_ms",
                name("timeout_ms"),
                format!("{} is outside 50..=10000 ms", port.timeout_ms),
            );
        }
        if let Some(addresses) = &port.addresses {
            if !port.protocol.addressable() && !addresses.is_empty() {
                fail(
                    "port",
                    i,
                    "addresses",
                    name("addresses"),
                    format!("protocol {} has no bus addresses (one BMS per port)", port.protocol.name()),
                );
            }
            if port.protocol == Protocol::JkPb && addresses.contains(&0) {
                fail(
                    "port",
                    i,
                    "addresses",
                    name("addresses"),
                    "JK PB address 0 is the bus master (it polls the other packs itself); set the DIP \
                     switches to 1..=15"
                        .into(),
                );
            }
            if port.protocol == Protocol::JkPb && addresses.iter().any(|&a| a > 15) {
                fail("port", i, "addresses", name("addresses"), "JK PB addresses are 1..=15".into());
            }
            let mut sorted = addresses.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != addresses.len() {
                fail("port", i, "addresses", name("addresses"), "an address is listed twice".into());
            }
            for problem in addresses.iter().filter_map(|a| port.protocol.address_problem(*a)) {
                fail("port", i, "addresses", name("addresses"), problem);
            }
        }
        for battery in &port.batteries {
            if battery.address.is_some() && !port.poll_addresses().contains(&battery.address) {
                fail(
                    "port",
                    i,
                    "battery",
                    name("battery.address"),
                    format!("address {:?} is not polled on this port", battery.address),
                );
            }
            if battery.capacity_ah.is_some_and(|c| !(c > 0.0 && c < 100_000.0)) {
                fail(
                    "port",
                    i,
                    "battery",
                    name("battery.capacity_ah"),
                    "must be between 0 and 100000 Ah".into(),
                );
            }
            if battery.cell_count.is_some_and(|n| n == 0 || n > 48) {
                fail("port", i, "battery", name("battery.cell_count"), "must be 1..=48".into());
            }
            if battery.allow_writes && !port.protocol.writes().any() {
                fail(
                    "port.battery",
                    battery_tables,
                    "allow_writes",
                    name("battery.allow_writes"),
                    format!(
                        "protocol {} has no documented BMS writes (only jbd: MOSFETs, jbd_up16s: SoC)",
                        port.protocol.name()
                    ),
                );
            }
            for (key, message) in battery_problems(battery) {
                fail("port.battery", battery_tables, key, name(&format!("battery.{key}")), message);
            }
            battery_tables += 1;
        }
    }
    for (i, key, message) in crate::bank::config::problems(config) {
        fail("bank", i, key, format!("bank[{}].{key}", i + 1), message);
    }
    errors
}

// --- Per-pack ratings and identity (issue 17) -------------------------------------------------

/// Largest per-pack current rating accepted (A): beyond any pack a serial BMS manages; a typo
/// (an extra zero) must not become a limit.
pub const MAX_PACK_RATING_A: f64 = 2_000.0;

impl BatteryConfig {
    /// The charge config this battery's own limits come from: `[charge]` with this pack's
    /// ratings as the maxima (the tables scale with them).
    pub fn charge_config(&self, charge: &ChargeConfig) -> ChargeConfig {
        let mut cfg = charge.clone();
        if let Some(a) = self.max_charge_current {
            cfg.max_charge_current = a;
        }
        if let Some(a) = self.max_discharge_current {
            cfg.max_discharge_current = a;
        }
        cfg
    }
}

/// Problems of one `[[port.battery]]`'s ratings and identity: (key, message).
fn battery_problems(battery: &BatteryConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (key, value) in [
        ("max_charge_current", battery.max_charge_current),
        ("max_discharge_current", battery.max_discharge_current),
    ] {
        if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0 && *v <= MAX_PACK_RATING_A)) {
            out.push((key, format!("{v} A must be more than 0 and at most {MAX_PACK_RATING_A} A")));
        }
    }
    if let Some(id) = &battery.identity {
        let ok = !id.trim().is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            out.push(("identity", format!("{id:?} must be 1..=64 characters of A-Z a-z 0-9 _ - .")));
        }
    }
    out
}

// --- end of per-pack ratings and identity ------------------------------------------------------

/// Problems of the `[charge]` section, each message starting with its key: the control's own
/// checks (ordering, signs, tables) plus the physical range of a lithium cell.
fn charge_problems(c: &ChargeConfig) -> Vec<String> {
    let mut problems = c.problems();
    for (key, value) in [
        ("min_cell_voltage", c.min_cell_voltage),
        ("float_cell_voltage", c.float_cell_voltage),
        ("max_cell_voltage", c.max_cell_voltage),
    ] {
        if !(value.is_finite() && (1.5..=4.35).contains(&value)) {
            problems.push(format!("{key} {value} V is outside 1.5..=4.35 V"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
poll_interval_ms = 1000

[[port]]
device = "/dev/ttyUSB0"
protocol = "jbd"

[[port]]
device = "/dev/ttyUSB1"
protocol = "jbd_up16s"
addresses = [1, 2]

[[port.battery]]
address = 2
name = "Rear"
"#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let config = parse(GOOD, "good.toml").expect("valid");
        assert_eq!(config.ports.len(), 2);
        assert_eq!(config.ports[0].baud(), 9600);
        assert_eq!(config.ports[0].poll_addresses(), vec![None]);
        assert_eq!(config.ports[1].poll_addresses(), vec![Some(1), Some(2)]);
        assert_eq!(config.ports[1].battery(Some(2)).name.as_deref(), Some("Rear"));
        assert_eq!(config.ports[1].battery(Some(1)).name, None);
        assert_eq!(config.daemon.stale_after_s, 10.0);
        assert_eq!(config.charge.max_cell_voltage, 3.45);
    }

    #[test]
    fn every_problem_is_reported_with_line_and_field() {
        let text = "[daemon]\npoll_interval_ms = 1000\nbogus = 1\n\n[charge]\nmax_cell_voltage = \"high\"\n\n[[port]]\ndevice = \"/dev/ttyUSB0\"\nprotocol = \"jbd\"\nbaud = 1234\n";
        let errors = parse(text, "bad.toml").expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(shown[0].starts_with("bad.toml:3:1: daemon.bogus: unknown field `bogus`"), "{shown:?}");
        assert!(shown[1].starts_with("bad.toml:6:20: charge.max_cell_voltage:"), "{shown:?}");
        assert!(shown[2].starts_with("bad.toml:11:1: port[1].baud: 1234"), "{shown:?}");
        assert_eq!(errors.len(), 3, "{shown:?}");
    }

    #[test]
    fn unknown_protocol_names_the_port() {
        let errors =
            parse("[[port]]\ndevice = \"/dev/x\"\nprotocol = \"foo\"\n", "p.toml").expect_err("invalid");
        assert_eq!(errors[0].line, 3);
        assert_eq!(errors[0].field, "port[1].protocol");
        assert!(errors[0].message.contains("unknown variant `foo`"), "{}", errors[0].message);
    }

    #[test]
    fn relations_between_charge_voltages_are_checked() {
        let text = "[charge]\nfloat_cell_voltage = 3.6\nmax_cell_voltage = 3.5\n\n[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\n";
        let errors = parse(text, "c.toml").expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "charge.float_cell_voltage");
        assert_eq!(errors[0].line, 2);
    }

    #[test]
    fn a_syntax_error_has_its_place() {
        let errors = parse("[daemon\npoll = 1", "s.toml").expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1);
    }

    #[test]
    fn jk_pb_address_zero_is_refused_with_its_line() {
        let text = "[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jk_pb\"\naddresses = [0, 2]\n";
        let errors = parse(text, "j.toml").expect_err("invalid");
        assert_eq!(errors[0].field, "port[1].addresses");
        assert_eq!(errors[0].line, 4);
        assert!(errors[0].message.contains("bus master"), "{}", errors[0].message);
    }

    #[test]
    fn writes_only_where_the_protocol_documents_them() {
        let config = parse(GOOD, "good.toml").expect("valid");
        assert!(!config.ports[0].battery(None).allow_writes, "off by default");
        let ok = "[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\n[[port.battery]]\nallow_writes = true\n";
        assert!(parse(ok, "w.toml").expect("valid").ports[0].battery(None).allow_writes);
        let text = format!(
            "{ok}\n[[port]]\ndevice = \"/dev/y\"\nprotocol = \"daly\"\n\n[[port.battery]]\nname = \"x\"\nallow_writes = true\n"
        );
        let errors = parse(&text, "w.toml").expect_err("invalid");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "port[2].battery.allow_writes");
        assert_eq!(errors[0].line, 13, "{}", errors[0]);
        assert!(errors[0].message.contains("daly"), "{}", errors[0].message);
    }

    #[test]
    fn addresses_on_a_single_bms_protocol_are_rejected() {
        let text = "[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\naddresses = [1, 2]\n";
        let errors = parse(text, "a.toml").expect_err("invalid");
        assert_eq!(errors[0].field, "port[1].addresses");
        assert_eq!(errors[0].line, 4);
    }
}
