//! `bms-bridge probe <port>`: tries every known protocol at its line speed and addresses with
//! read requests only (nothing is ever written to a BMS) and reports what answered.

use crate::config::Protocol;
use crate::driver::{open, open_port, poll_once};
use std::time::Duration;

/// What one attempt found.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// Protocol tried.
    pub protocol: Protocol,
    /// Line speed tried.
    pub baud: u32,
    /// Address tried.
    pub address: Option<u8>,
    /// A one-line summary of the reading, or why nothing answered.
    pub outcome: Result<String, String>,
}

/// Tries every protocol on `device`; `timeout` per request. A `ble:ADDR` device is tried with
/// every BLE protocol (connect, read, disconnect), on adapter hci0.
pub async fn probe(device: &str, timeout: Duration) -> Vec<ProbeResult> {
    let mut results = Vec::new();
    if crate::transport::ble::parse_address(device).is_some() {
        for &protocol in Protocol::BLE {
            let port = crate::config::PortConfig { protocol, ..crate::config::PortConfig::can(device) };
            if let Ok(ble) = crate::transport::ble::BleDevice::parse(device, None) {
                crate::transport::ble::forget_failures(&ble);
            }
            let outcome = match open_port(&port, None).await {
                Err(err) => Err(format!("cannot connect {device}: {err}")),
                Ok(mut link) => poll_once(protocol, &mut link, None, true, timeout)
                    .await
                    .map(|b| summary(&b))
                    .map_err(|e| e.to_string()),
            };
            results.push(ProbeResult { protocol, baud: 0, address: None, outcome });
        }
        return results;
    }
    for &protocol in Protocol::ALL {
        let baud = protocol.default_baud();
        for address in protocol.probe_addresses() {
            let outcome = match open(protocol, device, baud).await {
                Err(err) => Err(format!("cannot open {device}: {err}")),
                Ok(mut link) => match poll_once(protocol, &mut link, address, true, timeout).await {
                    Ok(b) => Ok(summary(&b)),
                    Err(err) => Err(err.to_string()),
                },
            };
            results.push(ProbeResult { protocol, baud, address, outcome });
        }
    }
    results
}

/// One line about a reading.
fn summary(b: &crate::battery::Battery) -> String {
    format!(
        "{} cells, {} V, SoC {} %, model {}, serial {}",
        b.cells_in_series().map_or("?".into(), |n| n.to_string()),
        b.voltage_v.map_or("?".into(), |v| format!("{v:.2}")),
        b.soc_percent.map_or("?".into(), |v| format!("{v:.0}")),
        b.model.as_deref().unwrap_or("?"),
        b.serial.as_deref().unwrap_or("?"),
    )
}

/// Which BLE protocol a device advertising `name` and service `uuids` looks like (service UUID
/// first, then the name prefix), for `scan-ble`.
pub fn ble_protocol_of(name: &str, uuids: &[String]) -> Option<Protocol> {
    let by_service = Protocol::BLE.iter().copied().find(|p| {
        p.ble().is_some_and(|g| {
            uuids.iter().any(|u| u.eq_ignore_ascii_case(&crate::bms::Gatt::uuid128(g.service)))
        })
    });
    by_service.or_else(|| {
        Protocol::BLE
            .iter()
            .copied()
            .find(|p| p.ble().is_some_and(|g| g.name_prefixes.iter().any(|prefix| name.starts_with(prefix))))
    })
}
