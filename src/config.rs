//! The TOML configuration: schema, defaults and validation.
//!
//! Every problem is reported with file, line, column and field, and all of them at once:
//! `bms-bridge check-config` prints the whole list. Unknown keys are errors.

pub mod bank;
pub mod ble;
pub mod can;
pub mod mqtt;
pub mod rules;
pub mod web;

use crate::control::bms_limits::BmsLimits;
use crate::control::ChargeConfig;
pub use can::CanOptions;
pub use mqtt::{MqttClient, MqttPublish};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
pub use web::WebConfig;

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
    pub banks: Vec<bank::BankConfig>,
    /// The JSON state output and Home Assistant discovery (`docs/mqtt-output.md`).
    pub mqtt_publish: Option<MqttPublish>,
    /// The read-only status page (`docs/web.md`).
    #[serde(default)]
    pub web: WebConfig,
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
        Self { poll_interval_ms: 1000, stale_after_s: 10.0, state_dir: default_state_dir() }
    }
}

/// True on Venus OS (a GX device, or Venus on a Raspberry Pi).
pub fn is_venus_os() -> bool {
    Path::new("/opt/victronenergy").is_dir()
}

/// Where charge state is kept when the config says nothing: `/data/bms-bridge` on Venus OS (the
/// partition that survives firmware updates), `/var/lib/bms-bridge` elsewhere (systemd's
/// `StateDirectory=bms-bridge`).
pub fn default_state_dir() -> PathBuf {
    PathBuf::from(if is_venus_os() { "/data/bms-bridge" } else { "/var/lib/bms-bridge" })
}

/// Why the daemon could not keep its state in `dir`, if it could not: `dir` must be a writable
/// directory, or not exist yet below a writable one (the daemon creates it). Writes and removes
/// one empty probe file; nothing is left behind.
pub fn state_dir_problem(dir: &Path) -> Option<String> {
    // A real write, not access(2): root passes access() on read-only places such as /proc.
    let writable = |p: &Path| -> std::io::Result<()> {
        let probe = p.join(format!(".bms-bridge-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"")?;
        std::fs::remove_file(&probe)
    };
    let fix =
        format!("create it (mkdir -p {}) or set [daemon] state_dir to a writable directory", dir.display());
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Some(format!("{} is not a directory; {fix}", dir.display())),
        Ok(_) => writable(dir).err().map(|e| format!("{} is not writable ({e}); {fix}", dir.display())),
        Err(_) => {
            let parent = dir.ancestors().skip(1).find(|a| a.exists())?;
            if !parent.is_dir() {
                return Some(format!("{} is not a directory; {fix}", parent.display()));
            }
            match writable(parent) {
                Ok(()) => None,
                Err(e) => Some(format!(
                    "{} does not exist and cannot be created in {} ({e}); {fix}",
                    dir.display(),
                    parent.display()
                )),
            }
        }
    }
}

/// [`state_dir_problem`] as a config error at `[daemon] state_dir` of `text` (or of the file).
pub fn host_problems(config: &Config, text: &str, file: &str) -> Vec<ConfigError> {
    let Some(message) = state_dir_problem(&config.daemon.state_dir) else { return Vec::new() };
    let (line, column) = locate(text, "daemon", 0, "state_dir");
    vec![ConfigError { file: file.to_owned(), line, column, field: "daemon.state_dir".to_owned(), message }]
}

/// [`load`], then the checks of this host ([`host_problems`]): what `check-config` and `doctor` run.
pub fn load_for_this_host(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let (text, file) = read(path)?;
    let config = parse(&text, &file)?;
    let problems = host_problems(&config, &text, &file);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
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

/// The BMS protocols a port can speak: the key into the registry of `src/bms/`.
pub use crate::bms::Protocol;

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
    /// BLE ports only: the Bluetooth adapter (`hci0` when absent).
    #[serde(default)]
    pub adapter: Option<String>,
    /// Per-battery options.
    #[serde(default, rename = "battery")]
    pub batteries: Vec<BatteryConfig>,
    /// CAN ports only: keep-alive and coexistence with Venus OS (`[port.can]`).
    #[serde(default)]
    pub can: CanOptions,
    /// MQTT ports only: password file, TLS files, client id, QoS (`[port.mqtt]`).
    #[serde(default)]
    pub mqtt: MqttClient,
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
    /// Series cell count, authoritative: a reading with another count is rejected (InternalFailure
    /// alarm, CCL 0 once no good reading came within the grace period). Unset: the first count seen.
    pub cell_count: Option<u16>,
    /// Reverse the sign of the current the BMS reports (`true`), or keep it (`false`). Unset: the
    /// decoder's convention, checked against the direction the BMS itself reports where it does
    /// (Daly; `current_sign.rs`, `docs/protocols/daly.md`). Applied in one place for every protocol.
    pub invert_current: Option<bool>,
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
    /// `"dbus:<service>"`: take the current from that service's `/Dc/0/Current` (a SmartShunt's
    /// `com.victronenergy.battery.*`, a `.dcload.*` or `.dcsource.*`) instead of the BMS's, while it
    /// answers; the BMS's otherwise (`docs/configuration.md`, task/external.rs).
    pub current_source: Option<String>,
    /// `"dbus:<service>"`: take the SoC from that service's `/Soc` likewise.
    pub soc_source: Option<String>,
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
            mqtt: Default::default(),
            adapter: None,
        }
    }

    /// An MQTT battery at `url` (`mqtt://host:port/topic`) with every other setting at its default.
    pub fn mqtt(url: &str) -> PortConfig {
        PortConfig { device: url.to_owned(), protocol: Protocol::Mqtt, ..PortConfig::can(url) }
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
    let (text, file) = read(path)?;
    parse(&text, &file)
}

/// The text of the config file at `path` and its name for messages.
fn read(path: &Path) -> Result<(String, String), Vec<ConfigError>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, file)),
        Err(err) => Err(vec![ConfigError {
            file,
            line: 0,
            column: 0,
            field: "(file)".to_owned(),
            message: format!(
                "cannot read: {err} (the example with every key: config/bms-bridge.toml; \
                 `bms-bridge check-config FILE` checks one)"
            ),
        }]),
    }
}

/// Parses and validates config text; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<Config, Vec<ConfigError>> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut working = text.to_owned();
    // Fields whose line was commented out after an error: their "missing field" is not news.
    let mut commented: Vec<String> = Vec::new();
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
                let raw = err.message().trim().to_owned();
                let field = field_name(&working, line, &raw);
                let follows_from_earlier = raw
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                    .is_some_and(|missing| commented.iter().any(|c| c.rsplit('.').next() == Some(missing)));
                if follows_from_earlier && !errors.is_empty() {
                    return Err(errors);
                }
                let message = plain_words(&raw, &field, working.lines().nth(line.saturating_sub(1)));
                errors.push(ConfigError {
                    file: file.to_owned(),
                    line,
                    column,
                    field: field.clone(),
                    message,
                });
                commented.push(field);
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

/// `a`, `b`, `c` of a parser message that continues "x`, expected one of `a`, `b`, `c`": the
/// name before the first backtick, then every backticked name after it.
fn named_and_listed(rest: &str) -> (&str, Vec<&str>) {
    let (named, tail) = rest.split_once('`').unwrap_or((rest, ""));
    (named, tail.split('`').skip(1).step_by(2).filter(|k| !k.is_empty()).collect())
}

/// The parser's message in words for people: no Rust type names (`u64`, `f64`), no serde
/// jargon ("invalid type", "variant"); the value given is named where the message had it.
fn plain_words(message: &str, field: &str, line: Option<&str>) -> String {
    let given =
        line.and_then(|l| l.split_once('=').map(|(_, v)| v.trim().to_owned())).filter(|v| !v.is_empty());
    let kind = |rust: &str| -> String {
        match rust.trim() {
            "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number >= 0".to_owned(),
            "i32" | "i64" => "a whole number".to_owned(),
            "f64" | "f32" => "a number".to_owned(),
            "a boolean" | "bool" => "true or false".to_owned(),
            "a string" => "text in quotes".to_owned(),
            "a sequence" => "a list [ ... ]".to_owned(),
            other => other.to_owned(),
        }
    };
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, known) = named_and_listed(rest);
        let what = field.rsplit('.').next().unwrap_or(field);
        return format!("unknown {what} {value:?}; known: {}", known.join(", "));
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, known) = named_and_listed(rest);
        return if known.is_empty() {
            format!("unknown key `{key}`")
        } else {
            format!("unknown key `{key}`; this table has: {}", known.join(", "))
        };
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        return format!("expected {}, found {found}", kind(expected));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
        return format!("expected {}, found {found}", kind(expected));
    }
    if message.starts_with("number too large to fit in target type")
        || message.starts_with("number too small to fit in target type")
    {
        return match given {
            Some(value) => format!("{value} is out of range for this key"),
            None => "the number is out of range for this key".to_owned(),
        };
    }
    if let Some(key) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        return format!("required key `{key}` is missing");
    }
    message.to_owned()
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
    for problem in rules::daemon_problems(&config.daemon) {
        fail("daemon", 0, problem.key, format!("daemon.{}", problem.key), problem.message);
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
    for problem in rules::charge_problems(&config.charge) {
        fail("charge", 0, problem.key, format!("charge.{}", problem.key), problem.message);
    }
    if config.ports.is_empty() {
        fail(
            "",
            0,
            "port",
            "port".into(),
            "nothing to poll: no [[port]] is configured; add one to the config, or start with \
             `bms-bridge run --port /dev/ttyUSB0 --protocol jbd` (`bms-bridge probe /dev/ttyUSB0` \
             finds the protocol)"
                .into(),
        );
    }
    let mut devices: Vec<&str> = Vec::new();
    let mut battery_tables = 0usize;
    let mut mqtt_tables = 0usize;
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
        for (key, message) in ble::problems(port) {
            fail("port", i, key, name(key), message);
        }
        for (key, message) in mqtt::problems(port) {
            let table = if key == "device" || key == "baud" { "port" } else { "port.mqtt" };
            let field = if table == "port" { name(key) } else { name(&format!("mqtt.{key}")) };
            fail(table, mqtt_tables, key, field, message);
        }
        if port.protocol.is_mqtt() || port.mqtt != MqttClient::default() {
            mqtt_tables += 1;
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
            let mut sorted = addresses.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != addresses.len() {
                fail("port", i, "addresses", name("addresses"), "an address is listed twice".into());
            }
            // A rule without the address in its message (JK PB's) is reported once, not per address.
            let mut problems: Vec<String> = Vec::new();
            for problem in addresses.iter().filter_map(|a| port.protocol.address_problem(*a)) {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
            for problem in problems {
                fail("port", i, "addresses", name("addresses"), problem);
            }
        }
        for battery in &port.batteries {
            // Reported at the key inside its own [[port.battery]] table, with the value given.
            let table = battery_tables;
            if battery.address.is_some() && !port.poll_addresses().contains(&battery.address) {
                let polled: Vec<String> = port.poll_addresses().iter().flatten().map(u8::to_string).collect();
                fail(
                    "port.battery",
                    table,
                    "address",
                    name("battery.address"),
                    format!(
                        "{} is not polled on this port (addresses polled: {})",
                        battery.address.map_or(String::new(), |a| a.to_string()),
                        if polled.is_empty() {
                            "none, the protocol has no addresses".to_owned()
                        } else {
                            polled.join(", ")
                        }
                    ),
                );
            }
            if let Some(c) = battery.capacity_ah.filter(|c| !(*c > 0.0 && *c < 100_000.0)) {
                fail(
                    "port.battery",
                    table,
                    "capacity_ah",
                    name("battery.capacity_ah"),
                    format!("{c} is outside the allowed range above 0 to below 100000 Ah"),
                );
            }
            if let Some(problem) =
                battery.cell_count.and_then(|n| rules::BATTERY_CELL_COUNT.check(f64::from(n)))
            {
                fail("port.battery", table, problem.key, name("battery.cell_count"), problem.message);
            }
            if battery.allow_writes && !port.protocol.writes().any() {
                fail(
                    "port.battery",
                    table,
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
    for (i, key, message) in bank::problems(config) {
        fail("bank", i, key, format!("bank[{}].{key}", i + 1), message);
    }
    if let Some(publish) = &config.mqtt_publish {
        for (key, message) in mqtt::publish_problems(publish) {
            let client_key = !matches!(key, "url" | "prefix" | "discovery_prefix" | "queue");
            let table = if client_key { "mqtt_publish.client" } else { "mqtt_publish" };
            fail(table, 0, key, format!("{table}.{key}"), message);
        }
    }
    for (key, message) in web::problems(&config.web) {
        fail("web", 0, key, format!("web.{key}"), message);
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
    for (key, source) in [("current_source", &battery.current_source), ("soc_source", &battery.soc_source)] {
        if let Some(Err(why)) = source.as_deref().map(crate::task::external::service_of) {
            out.push((key, why));
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
        assert!(shown[0].starts_with("bad.toml:3:1: daemon.bogus: unknown key `bogus`; this table has: poll_interval_ms, stale_after_s, state_dir"), "{shown:?}");
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
        assert!(
            errors[0].message.starts_with("unknown protocol \"foo\"; known: jbd, "),
            "{}",
            errors[0].message
        );
        assert_eq!(errors.len(), 1, "no false 'missing field protocol': {errors:?}");
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

    /// The careless values of the safety issue: each refused at its own line, with the range.
    #[test]
    fn unsafe_values_are_refused_at_their_line_with_the_allowed_range() {
        let text = "[daemon]\nstale_after_s = 86400\n\n[charge]\ncvl_controller_gain_per_s = 0\n\
                    cvl_controller_deadband_v = 5\nmax_cell_voltage = 4.35\nrebulk_soc = 150\n\
                    time_to_go_soc = nan\ncurrent_recovery_threshold = 2\n\
                    float_ramp_v_per_cell_per_s = 0\nstate_save_interval_s = 0\n\
                    cvl_recovery_hold_s = 1e20\ncurrent_recovery_hold_s = 1e19\n\n\
                    [[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\n";
        let errors = parse(text, "u.toml").expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for (line, field, range) in [
            (2, "daemon.stale_after_s", "2 to 60 s"),
            (5, "charge.cvl_controller_gain_per_s", "0.001 to 1 1/s"),
            (6, "charge.cvl_controller_deadband_v", "0 to 0.05 V"),
            (7, "charge.max_cell_voltage", "2.5 to 3.65 V for chemistry lfp"),
            (8, "charge.rebulk_soc", "0 to 100 %"),
            (9, "charge.time_to_go_soc", "0 to 100 %"),
            (10, "charge.current_recovery_threshold", "0 to 0.5"),
            (11, "charge.float_ramp_v_per_cell_per_s", "0.000001 to 0.1 V/cell/s"),
            (12, "charge.state_save_interval_s", "60 to 86400 s"),
            (13, "charge.cvl_recovery_hold_s", "0 to 3600 s"),
            (14, "charge.current_recovery_hold_s", "0 to 3600 s"),
        ] {
            let prefix = format!("u.toml:{line}:1: {field}: ");
            assert!(
                shown.iter().any(|s| s.starts_with(&prefix) && s.ends_with(range)),
                "{prefix}...{range} not in {shown:#?}"
            );
        }
        assert_eq!(errors.len(), 11, "{shown:#?}");
    }

    #[test]
    fn the_state_dir_must_be_writable_and_its_problem_names_the_path() {
        let dir = std::env::temp_dir().join(format!("bms-bridge-statedir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(state_dir_problem(&dir), None);
        assert_eq!(state_dir_problem(&dir.join("new/deeper")), None, "created by the daemon");
        let file = dir.join("plain-file");
        std::fs::write(&file, "x").unwrap();
        let p = state_dir_problem(&file).expect("a file is no directory");
        assert!(p.contains(&file.display().to_string()) && p.contains("not a directory"), "{p}");
        let p = state_dir_problem(&file.join("below")).expect("below a file");
        assert!(p.contains("not a directory"), "{p}");
        // /proc is not writable, even for root.
        let p = state_dir_problem(Path::new("/proc/bms-bridge")).expect("read-only");
        assert!(p.contains("/proc/bms-bridge") && p.contains("state_dir"), "{p}");
        let config = Config {
            daemon: DaemonConfig { state_dir: "/proc/bms-bridge".into(), ..DaemonConfig::default() },
            ..Config::default()
        };
        let text = "[daemon]\nstate_dir = \"/proc/bms-bridge\"\n";
        let errors = host_problems(&config, text, "h.toml");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].column, errors[0].field.as_str()), (2, 1, "daemon.state_dir"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_state_dir_follows_the_host() {
        let expected =
            if Path::new("/opt/victronenergy").is_dir() { "/data/bms-bridge" } else { "/var/lib/bms-bridge" };
        assert_eq!(DaemonConfig::default().state_dir, PathBuf::from(expected));
    }

    /// Messages for people: the value, the place of the key itself, no serde or Rust type names.
    #[test]
    fn messages_say_what_is_wrong_where_in_plain_words() {
        let text = "[daemon]\npoll_interval_ms = -5\nstale_after_s = \"ten\"\n\n[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\ntimeout_ms = 99999999999999999999\n";
        let errors = parse(text, "m.toml").expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for jargon in ["u64", "f64", "invalid type", "invalid value", "target type", "variant"] {
            assert!(shown.iter().all(|s| !s.contains(jargon)), "{jargon:?} in {shown:#?}");
        }
        assert!(
            shown.contains(
                &"m.toml:2:20: daemon.poll_interval_ms: expected a whole number >= 0, found integer `-5`"
                    .to_owned()
            ),
            "{shown:#?}"
        );
        assert!(
            shown.contains(
                &"m.toml:3:17: daemon.stale_after_s: expected a number, found string \"ten\"".to_owned()
            ),
            "{shown:#?}"
        );
        assert!(
            shown.iter().any(|s| s.contains("port[1].timeout_ms") && s.contains("99999999999999999999")),
            "{shown:#?}"
        );
        // Keys of [[port.battery]]: the line of the key in its own table, and the value.
        let text = "[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd_up16s\"\naddresses = [1]\n\n[[port.battery]]\naddress = 1\ncell_count = 0\n\n[[port.battery]]\naddress = 7\n";
        let errors = parse(text, "b.toml").expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown.contains(
                &"b.toml:8:1: port[1].battery.cell_count: 0 is outside the allowed range 1 to 48".to_owned()
            ),
            "{shown:#?}"
        );
        assert!(
            shown.contains(
                &"b.toml:11:1: port[1].battery.address: 7 is not polled on this port (addresses polled: 1)"
                    .to_owned()
            ),
            "{shown:#?}"
        );
    }

    /// The keys of one table as the parser knows them (from its unknown-key message).
    fn parser_keys(snippet: &str) -> Vec<String> {
        let errors = parse(snippet, "k.toml").expect_err("an unknown key");
        let message = &errors[0].message;
        let list = message.split("this table has: ").nth(1).unwrap_or_else(|| panic!("{message}"));
        list.split(", ")
            .map(str::to_owned)
            .filter(|k| !matches!(k.as_str(), "battery" | "can" | "mqtt" | "client"))
            .collect()
    }

    /// `docs/configuration.md` cannot drift: every key the parser takes is listed under its
    /// table and every listed key exists; the [charge] ranges are the validator's.
    #[test]
    fn the_configuration_reference_lists_every_key() {
        let doc = include_str!("../docs/configuration.md");
        let port = "[[port]]\ndevice = \"x\"\nprotocol = \"jbd\"\n";
        for (title, snippet) in [
            ("[daemon]", "[daemon]\nzz = 1\n".to_owned()),
            ("[dbus]", "[dbus]\nzz = 1\n".to_owned()),
            ("[charge]", "[charge]\nzz = 1\n".to_owned()),
            ("[[port]]", "[[port]]\nzz = 1\n".to_owned()),
            ("[[port.battery]]", format!("{port}[[port.battery]]\nzz = 1\n")),
            ("[port.can]", format!("{port}[port.can]\nzz = 1\n")),
            ("[port.mqtt]", format!("{port}[port.mqtt]\nzz = 1\n")),
            ("[mqtt_publish]", "[mqtt_publish]\nurl = \"mqtt://h\"\nzz = 1\n".to_owned()),
            (
                "[mqtt_publish.client]",
                "[mqtt_publish]\nurl = \"mqtt://h\"\n[mqtt_publish.client]\nzz = 1\n".to_owned(),
            ),
            ("[[bank]]", "[[bank]]\nzz = 1\n".to_owned()),
            ("[web]", "[web]\nzz = 1\n".to_owned()),
        ] {
            let section = doc
                .split(&format!("## `{title}`"))
                .nth(1)
                .unwrap_or_else(|| panic!("docs/configuration.md has no section {title}"));
            let section = section.split("\n## ").next().unwrap_or("");
            let documented: Vec<&str> = section
                .lines()
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|l| l.split('`').next())
                .collect();
            let mut known = parser_keys(&snippet);
            known.sort();
            let mut listed: Vec<String> = documented.iter().map(|k| (*k).to_owned()).collect();
            listed.sort();
            assert_eq!(listed, known, "docs/configuration.md {title} vs the parser");
        }
        for r in rules::CHARGE_RANGES.iter().chain(rules::CHARGE_OPTIONAL_RANGES).map(|r| &r.range) {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", r.key)))
                .unwrap_or_else(|| panic!("{} not documented", r.key));
            let allowed = row.split(" | ").nth(3).unwrap_or("");
            assert_eq!(allowed, r.describe(), "docs/configuration.md range of {}", r.key);
        }
    }

    #[test]
    fn addresses_on_a_single_bms_protocol_are_rejected() {
        let text = "[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\naddresses = [1, 2]\n";
        let errors = parse(text, "a.toml").expect_err("invalid");
        assert_eq!(errors[0].field, "port[1].addresses");
        assert_eq!(errors[0].line, 4);
    }
}
