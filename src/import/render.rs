//! Writes the imported bms-bridge.toml: a header naming what was not carried over, then only the
//! keys that differ from bms-bridge's defaults, each with the dbus-serialbattery key it came from.

use super::Unmapped;
use crate::control::ChargeConfig;
use std::fmt::Write as _;

pub(super) fn render(
    source: &str,
    daemon: &[(String, String)],
    charge: &ChargeConfig,
    port: &[String],
    unmapped: &[Unmapped],
    mapped: &[(String, String)],
) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bms-bridge.toml imported from {source} by bms-bridge import-serialbattery {}.",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# Keys equal to bms-bridge's defaults are left out (config/bms-bridge.toml lists them all)."
    );
    let _ = writeln!(out, "# Check it with: bms-bridge check-config <this file>");
    if !unmapped.is_empty() {
        let _ = writeln!(out, "#\n# Not carried over:");
        for u in unmapped {
            let _ = writeln!(out, "#   {} = {} ({}): {}", u.key, u.value, u.place, u.reason);
        }
    }
    if !daemon.is_empty() {
        let _ = writeln!(out, "\n[daemon]");
        for (key, value) in daemon {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    let ours = toml::Table::try_from(charge).map_err(|e| format!("cannot write [charge]: {e}"))?;
    let defaults =
        toml::Table::try_from(ChargeConfig::default()).map_err(|e| format!("cannot write [charge]: {e}"))?;
    let changed: Vec<_> = ours.iter().filter(|(k, v)| defaults.get(*k) != Some(*v)).collect();
    if !changed.is_empty() {
        let _ = writeln!(out, "\n[charge]");
        for (key, value) in changed {
            let from: Vec<&str> = mapped
                .iter()
                .filter(|(_, t)| t == &format!("charge.{key}"))
                .map(|(s, _)| s.as_str())
                .collect();
            let _ = writeln!(out, "{key} = {value}  # {}", from.join(", "));
        }
    }
    let _ = writeln!(out, "\n# dbus-serialbattery took the port from serial-starter: check the device (prefer /dev/serial/by-id/...).");
    let _ = writeln!(out, "[[port]]");
    for line in port {
        let _ = writeln!(out, "{line}");
    }
    Ok(out)
}
