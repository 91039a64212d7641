//! The keys of a Bluetooth LE port (`protocol = "jk_ble"`, `device = "ble:C8:47:8C:12:34:56"`,
//! optional `adapter = "hci0"`).

use super::PortConfig;
use crate::transport::ble::{parse_address, valid_adapter};

/// Problems of a BLE port (or of BLE keys on another port), as (key, message).
pub fn problems(port: &PortConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if port.protocol.ble().is_none() {
        if port.adapter.is_some() {
            out.push((
                "adapter",
                format!("adapter is for Bluetooth ports; protocol {} is not one", port.protocol.name()),
            ));
        }
        if parse_address(&port.device).is_some() {
            let ble: Vec<&str> = crate::bms::Protocol::BLE.iter().map(|p| p.name()).collect();
            out.push((
                "device",
                format!(
                    "{} is a Bluetooth device; protocol {} is not a BLE protocol ({})",
                    port.device,
                    port.protocol.name(),
                    ble.join(", ")
                ),
            ));
        }
        return out;
    }
    if parse_address(&port.device).is_none() {
        out.push((
            "device",
            format!("{:?} is not a BLE device: write the MAC address as ble:C8:47:8C:12:34:56", port.device),
        ));
    }
    if let Some(adapter) = port.adapter.as_deref().filter(|a| !valid_adapter(a)) {
        out.push(("adapter", format!("{adapter:?} is not a Bluetooth adapter name (hci0, hci1 ...)")));
    }
    if port.baud.is_some() {
        out.push(("baud", "a Bluetooth port has no baud".to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, "b.toml") {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_ble_port_parses_and_bad_keys_are_placed() {
        let good =
            "[[port]]\nprotocol = \"jk_ble\"\ndevice = \"ble:C8:47:8C:12:34:56\"\nadapter = \"hci1\"\n";
        assert_eq!(problems(good), Vec::<String>::new());
        let bad = "[[port]]\nprotocol = \"jbd_ble\"\ndevice = \"/dev/ttyUSB0\"\nadapter = \"usb0\"\n";
        let p = problems(bad);
        assert!(p.iter().any(|m| m.contains("port[1].device") && m.contains("ble:C8")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("b.toml:4:") && m.contains("port[1].adapter")), "{p:?}");
        let serial = "[[port]]\nprotocol = \"jbd\"\ndevice = \"ble:C8:47:8C:12:34:56\"\nadapter = \"hci0\"\n";
        let p = problems(serial);
        assert!(p.iter().any(|m| m.contains("port[1].device") && m.contains("jbd_ble")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("port[1].adapter")), "{p:?}");
    }
}
