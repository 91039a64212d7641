//! `[[bank]]`: packs grouped into one battery, how the packs are named in the config and how the
//! names resolve to (port, bus address).
//!
//! ```toml
//! [[bank]]
//! name = "House"
//! topology = "parallel"          # or "series"
//! publish = "both"               # "aggregate" | "packs" | "both"
//! packs = ["/dev/ttyUSB0", "/dev/ttyUSB1#2", "Rear"]
//! startup_wait_s = 30
//! ```
//!
//! A pack is a port device (when that port has one BMS), `device#address`, or the `name` of a
//! `[[port.battery]]`.

use super::{Config, PortConfig};
use serde::Deserialize;

/// How the packs of a bank are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Packs side by side on one DC bus (the usual case): currents add up.
    #[default]
    Parallel,
    /// Packs in one string (FoxESS-like stacks): voltages add up, one common current.
    Series,
}

/// Which D-Bus services a bank gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// Only the bank's service (the controlling BMS).
    Aggregate,
    /// Only per-pack services, without `/Info/*` limits (another device controls charging).
    Packs,
    /// Both: the bank's service carries the limits, the packs' services are for visibility.
    Both,
}

/// `[[bank]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// Name: service `com.victronenergy.battery.bank_<name>`, `/CustomName` default, unique id.
    pub name: String,
    /// Parallel (default) or series.
    #[serde(default)]
    pub topology: Topology,
    /// Which services to publish; default `both` for more than one pack, else `aggregate`.
    pub publish: Option<Publish>,
    /// The packs: `device`, `device#address` or a `[[port.battery]]` name.
    pub packs: Vec<String>,
    /// At start-up, how long to wait for every pack before running with those present (s).
    #[serde(default = "default_startup_wait_s")]
    pub startup_wait_s: f64,
}

fn default_startup_wait_s() -> f64 {
    30.0
}

impl BankConfig {
    /// The services in force.
    pub fn publish(&self) -> Publish {
        self.publish.unwrap_or(if self.packs.len() > 1 { Publish::Both } else { Publish::Aggregate })
    }

    /// Whether the bank's own (aggregate) service is published.
    pub fn publishes_aggregate(&self) -> bool {
        self.publish() != Publish::Packs
    }

    /// Whether every pack gets a service of its own.
    pub fn publishes_packs(&self) -> bool {
        self.publish() != Publish::Aggregate
    }

    /// The D-Bus service suffix: `bank_<name>` made D-Bus safe.
    pub fn service_suffix(&self) -> String {
        crate::victron::safe_suffix(&format!("bank_{}", self.name.trim()), None)
    }
}

/// One pack of a bank: the index of its `[[port]]` and its bus address as the port polls it
/// (`None` for protocols without addresses and for FoxESS stacks, which are one battery per port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackRef {
    /// Index into `Config::ports`.
    pub port: usize,
    /// Address, as in `PortConfig::poll_addresses`.
    pub address: Option<u8>,
}

/// The batteries a port publishes: one per address, or one for the whole port (FoxESS).
pub fn port_batteries(port: &PortConfig) -> Vec<Option<u8>> {
    if port.protocol.one_battery_per_port() {
        vec![None]
    } else {
        port.poll_addresses()
    }
}

fn parse_address(text: &str) -> Option<u8> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Resolves one pack reference, or says why it cannot.
pub fn resolve(config: &Config, reference: &str) -> Result<PackRef, String> {
    let reference = reference.trim();
    for (index, port) in config.ports.iter().enumerate() {
        for battery in &port.batteries {
            if battery.name.as_deref().map(str::trim) == Some(reference) {
                let batteries = port_batteries(port);
                let address = match battery.address {
                    Some(a) if batteries.contains(&Some(a)) => Some(a),
                    _ if batteries.len() == 1 => batteries.first().copied().flatten(),
                    _ => return Err(format!("battery {reference:?} has no address on a shared bus")),
                };
                return Ok(PackRef { port: index, address });
            }
        }
    }
    let (device, address) = match reference.rsplit_once('#') {
        Some((device, address)) => match parse_address(address) {
            Some(a) => (device, Some(a)),
            None => return Err(format!("{reference:?}: {address:?} is not a bus address")),
        },
        None => (reference, None),
    };
    let Some((index, port)) = config.ports.iter().enumerate().find(|(_, p)| p.device == device) else {
        return Err(format!("{reference:?} is neither a [[port]] device nor a [[port.battery]] name"));
    };
    let batteries = port_batteries(port);
    match address {
        Some(a) if batteries.contains(&Some(a)) => Ok(PackRef { port: index, address: Some(a) }),
        Some(_) if port.protocol.one_battery_per_port() => {
            Err(format!("{device} is one battery (a series stack): name it as {device}"))
        }
        Some(a) => Err(format!("address {a} is not polled on {device}")),
        None if batteries.len() == 1 => {
            Ok(PackRef { port: index, address: batteries.first().copied().flatten() })
        }
        None => Err(format!("{device} has several BMS addresses; name one as {device}#<address>")),
    }
}

/// Every bank's packs, resolved; references that do not resolve are left out (validation
/// reports them).
pub fn resolve_all(config: &Config) -> Vec<Vec<PackRef>> {
    config.banks.iter().map(|b| b.packs.iter().filter_map(|r| resolve(config, r).ok()).collect()).collect()
}

/// Which bank and which pack of it (0-based) a battery belongs to, if any.
pub fn bank_of(resolved: &[Vec<PackRef>], port: usize, address: Option<u8>) -> Option<(usize, usize)> {
    resolved.iter().enumerate().find_map(|(bank, packs)| {
        packs.iter().position(|p| p.port == port && p.address == address).map(|pack| (bank, pack))
    })
}

/// A parallel bank whose packs are configured with different series cell counts: one CVL
/// (cells x max cell voltage) cannot fit them all, and the pack with more cells would discharge
/// into the other. `None` when they agree or are not configured.
fn mixed_cell_counts(config: &Config, bank: &BankConfig) -> Option<String> {
    if bank.topology != Topology::Parallel {
        return None;
    }
    let counts: Vec<(String, u16)> = bank
        .packs
        .iter()
        .filter_map(|reference| {
            let pack = resolve(config, reference).ok()?;
            let port = config.ports.get(pack.port)?;
            port.battery(pack.address).cell_count.map(|n| (reference.trim().to_owned(), n))
        })
        .collect();
    let (first_name, first) = counts.first()?;
    let (other_name, other) = counts.iter().find(|(_, n)| n != first)?;
    Some(format!(
        "parallel packs must have the same series cell count: {first_name:?} has {first}, \
         {other_name:?} has {other} (one charge voltage cannot fit both; make it a series bank or \
         two banks)"
    ))
}

/// Problems of the `[[bank]]` tables: (bank index, key, message).
pub fn problems(config: &Config) -> Vec<(usize, &'static str, String)> {
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut taken: Vec<(PackRef, String)> = Vec::new();
    for (i, bank) in config.banks.iter().enumerate() {
        let suffix = bank.service_suffix();
        if bank.name.trim().is_empty() {
            out.push((i, "name", "empty bank name".to_owned()));
        } else if names.contains(&suffix) {
            out.push((i, "name", format!("{:?} names another bank's service ({suffix})", bank.name)));
        }
        names.push(suffix);
        if bank.packs.is_empty() {
            out.push((i, "packs", "a bank needs at least one pack".to_owned()));
        }
        if !(bank.startup_wait_s.is_finite() && (0.0..=600.0).contains(&bank.startup_wait_s)) {
            out.push((i, "startup_wait_s", format!("{} is outside 0..=600 s", bank.startup_wait_s)));
        }
        if let Some(message) = mixed_cell_counts(config, bank) {
            out.push((i, "packs", message));
        }
        for reference in &bank.packs {
            match resolve(config, reference) {
                Ok(pack) => match taken.iter().find(|(p, _)| *p == pack) {
                    Some((_, bank_name)) => out.push((
                        i,
                        "packs",
                        format!("{reference:?} is already a pack of bank {bank_name:?}"),
                    )),
                    None => taken.push((pack, bank.name.clone())),
                },
                Err(message) => out.push((i, "packs", message)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const PORTS: &str = r#"
[[port]]
device = "/dev/serial/by-id/usb-FTDI_A1-if00-port0"
protocol = "jbd_up16s"
addresses = [1, 2]

[[port.battery]]
address = 2
name = "Rear"

[[port]]
device = "/dev/ttyUSB1"
protocol = "jbd"
"#;

    #[test]
    fn packs_resolve_by_device_address_and_name() {
        let text = format!(
            "{PORTS}\n[[bank]]\nname = \"House\"\npacks = [\"/dev/serial/by-id/usb-FTDI_A1-if00-port0#1\", \"Rear\", \"/dev/ttyUSB1\"]\n"
        );
        let config = parse(&text, "b.toml").expect("valid");
        let resolved = super::resolve_all(&config);
        assert_eq!(resolved[0].len(), 3);
        assert_eq!(super::bank_of(&resolved, 0, Some(2)), Some((0, 1)));
        assert_eq!(super::bank_of(&resolved, 1, None), Some((0, 2)));
        assert_eq!(config.banks[0].publish(), super::Publish::Both);
        assert_eq!(config.banks[0].service_suffix(), "bank_House");
    }

    #[test]
    fn bad_references_are_reported_with_their_line() {
        let text = format!(
            "{PORTS}\n[[bank]]\nname = \"A\"\npacks = [\"/dev/ttyUSB1\"]\n\n[[bank]]\nname = \"B\"\ntopology = \"series\"\npacks = [\"/dev/ttyUSB1\", \"/dev/serial/by-id/usb-FTDI_A1-if00-port0\", \"nope\"]\n"
        );
        let errors = parse(&text, "b.toml").expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{shown:?}");
        assert!(errors.iter().all(|e| e.field == "bank[2].packs" && e.line == 22), "{shown:?}");
        assert!(shown[0].contains("already a pack of bank \"A\""), "{shown:?}");
        assert!(shown[1].contains("name one as"), "{shown:?}");
        assert!(shown[2].contains("neither"), "{shown:?}");
    }

    #[test]
    fn per_pack_ratings_parse_and_bad_ones_are_refused_with_their_line() {
        let good = "[[port]]\ndevice = \"/dev/ttyUSB0\"\nprotocol = \"jbd\"\n\n[[port.battery]]\nmax_charge_current = 25.0\nmax_discharge_current = 50\nidentity = \"pack-3\"\n";
        let config = parse(good, "b.toml").expect("valid");
        let battery = config.ports[0].battery(None);
        assert_eq!((battery.max_charge_current, battery.max_discharge_current), (Some(25.0), Some(50.0)));
        assert_eq!(battery.identity.as_deref(), Some("pack-3"));
        let cfg = battery.charge_config(&config.charge);
        assert_eq!((cfg.max_charge_current, cfg.max_discharge_current), (25.0, 50.0));
        for (line, field) in [
            ("max_charge_current = 0.0", "port[1].battery.max_charge_current"),
            ("max_charge_current = -5.0", "port[1].battery.max_charge_current"),
            ("max_discharge_current = nan", "port[1].battery.max_discharge_current"),
            ("max_discharge_current = inf", "port[1].battery.max_discharge_current"),
            ("max_discharge_current = 20000.0", "port[1].battery.max_discharge_current"),
            ("identity = \"two words\"", "port[1].battery.identity"),
            ("identity = \"\"", "port[1].battery.identity"),
        ] {
            let text = format!(
                "[[port]]\ndevice = \"/dev/ttyUSB0\"\nprotocol = \"jbd\"\n\n[[port.battery]]\n{line}\n"
            );
            let errors = parse(&text, "b.toml").expect_err(line);
            assert_eq!(errors.len(), 1, "{line}: {errors:?}");
            assert_eq!(errors[0].field, field, "{line}");
            assert_eq!(errors[0].line, 6, "{line}");
        }
    }

    #[test]
    fn a_parallel_bank_of_different_cell_counts_is_refused_and_says_why() {
        let text = "[[port]]\ndevice = \"/dev/ttyUSB0\"\nprotocol = \"jbd\"\n[[port.battery]]\ncell_count = 16\n\n[[port]]\ndevice = \"/dev/ttyUSB1\"\nprotocol = \"jbd\"\n[[port.battery]]\ncell_count = 15\n\n[[bank]]\nname = \"A\"\npacks = [\"/dev/ttyUSB0\", \"/dev/ttyUSB1\"]\n";
        let errors = parse(text, "b.toml").expect_err("mixed");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "bank[1].packs");
        assert!(
            errors[0].message.contains("has 16") && errors[0].message.contains("has 15"),
            "{}",
            errors[0].message
        );
        let series = text.replace("name = \"A\"", "name = \"A\"\ntopology = \"series\"");
        assert!(parse(&series, "b.toml").is_ok(), "a series string may mix");
    }

    #[test]
    fn unknown_topology_is_a_parse_error() {
        let text = format!("{PORTS}\n[[bank]]\nname = \"A\"\ntopology = \"ring\"\npacks = [\"Rear\"]\n");
        let errors = parse(&text, "b.toml").expect_err("invalid");
        assert_eq!(errors[0].field, "bank[1].topology");
    }
}
