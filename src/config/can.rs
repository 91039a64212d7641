//! `[port.can]`: options of a CAN port (`protocol = "victron_can"`, `device = "can0"`).

use super::PortConfig;
use serde::Deserialize;

/// `[port.can]`. Every key has a default; the table may be left out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanOptions {
    /// Send the keep-alive frame (some BMS sleep until a host frame arrives and fall asleep
    /// again about 20 s after the last one).
    pub keepalive: bool,
    /// Id of the keep-alive frame.
    pub keepalive_id: u32,
    /// Time between two keep-alive frames (s).
    pub keepalive_interval_s: f64,
    /// Data of the keep-alive frame, hex (up to 8 bytes).
    pub keepalive_data: String,
    /// Publish a battery for this interface even when Venus OS already publishes
    /// `com.victronenergy.battery.socketcan_<interface>` for it (its "CAN-bus BMS" profile).
    pub alongside_venus: bool,
}

impl Default for CanOptions {
    fn default() -> Self {
        Self {
            keepalive: true,
            keepalive_id: 0x35E,
            keepalive_interval_s: 5.0,
            // ASCII "BMSBRIDG"; the BMS that need a host frame look at the id, not the content.
            keepalive_data: "42 4D 53 42 52 49 44 47".to_owned(),
            alongside_venus: false,
        }
    }
}

impl CanOptions {
    /// The keep-alive data bytes (validated by [`problems`]; empty if unparsable).
    pub fn keepalive_bytes(&self) -> Vec<u8> {
        crate::protocol::parse_hex(&self.keepalive_data).unwrap_or_default()
    }
}

/// Problems of a CAN port, as (key, message).
pub fn problems(port: &PortConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !port.protocol.is_can() {
        if port.can != CanOptions::default() {
            out.push((
                "can",
                format!("[port.can] is for CAN ports; protocol {} is serial", port.protocol.name()),
            ));
        }
        return out;
    }
    let interface = port.device.as_str();
    if interface.contains('/') || interface.len() > 15 || interface.trim().is_empty() {
        out.push(("device", format!("{interface:?} is not a CAN interface name (can0, vecan1 ...)")));
    }
    if port.baud.is_some() {
        out.push((
            "baud",
            "a CAN port has no baud; set the bit rate on the interface (Venus: 500 kbit/s)".to_owned(),
        ));
    }
    let c = &port.can;
    if !port.protocol.listens_per_bus() && *c != CanOptions::default() {
        // Daly CAN is polled and JK CAN is listen-only: a keep-alive or the Venus check would
        // silently do nothing.
        out.push((
            "can",
            format!(
                "[port.can] applies to {} only; protocol {} has no options there",
                crate::bms::Protocol::CAN
                    .iter()
                    .filter(|p| p.listens_per_bus())
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                port.protocol.name()
            ),
        ));
    }
    if c.keepalive_id > 0x7FF {
        out.push(("keepalive_id", format!("0x{:X} is not an 11-bit CAN id", c.keepalive_id)));
    }
    if !(c.keepalive_interval_s.is_finite() && (0.5..=60.0).contains(&c.keepalive_interval_s)) {
        out.push(("keepalive_interval_s", format!("{} is outside 0.5..=60 s", c.keepalive_interval_s)));
    }
    match crate::protocol::parse_hex(&c.keepalive_data) {
        Ok(bytes) if bytes.len() <= 8 => {}
        Ok(bytes) => out.push(("keepalive_data", format!("{} bytes; a CAN frame holds 8", bytes.len()))),
        Err(why) => out.push(("keepalive_data", why)),
    }
    for battery in &port.batteries {
        if let Some(scale) = battery.can_voltage_scale {
            if scale != 0.01 && scale != 0.1 {
                out.push((
                    "can_voltage_scale",
                    format!("{scale} is neither 0.01 (standard) nor 0.1 (Discover)"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn errors(text: &str) -> Vec<String> {
        parse(text, "t.toml").err().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn can_dialect_ports_are_checked() {
        let daly = "[[port]]\ndevice = \"can0\"\nprotocol = \"daly_can\"\naddresses = [1, 2]\n";
        assert!(errors(daly).is_empty(), "{:?}", errors(daly));
        let bad_address = "[[port]]\ndevice = \"can0\"\nprotocol = \"daly_can\"\naddresses = [64]\n";
        assert!(
            errors(bad_address).iter().any(|e| e.contains("not a Daly CAN address")),
            "{:?}",
            errors(bad_address)
        );
        let jk = "[[port]]\ndevice = \"can0\"\nprotocol = \"jk_can\"\naddresses = [0, 15]\n";
        assert!(errors(jk).is_empty(), "{:?}", errors(jk));
        let jk_bad = "[[port]]\ndevice = \"can0\"\nprotocol = \"jk_can\"\naddresses = [16]\n";
        assert!(errors(jk_bad).iter().any(|e| e.contains("not a JK CAN address")), "{:?}", errors(jk_bad));
        let keepalive = "[[port]]\ndevice = \"can0\"\nprotocol = \"jk_can\"\n[port.can]\nkeepalive = false\n";
        assert!(
            errors(keepalive).iter().any(|e| e.contains("applies to victron_can only")),
            "{:?}",
            errors(keepalive)
        );
        let baud = "[[port]]\ndevice = \"can0\"\nprotocol = \"daly_can\"\nbaud = 250000\n";
        assert!(errors(baud).iter().any(|e| e.contains("has no baud")), "{:?}", errors(baud));
    }
}
