//! `bms-bridge probe <port>`: tries every known protocol at its line speed and addresses with
//! read requests only (nothing is ever written to a BMS) and reports what answered.

use crate::config::Protocol;
use crate::driver::{open, poll_once};
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

/// Tries every protocol on `device`; `timeout` per request.
pub async fn probe(device: &str, timeout: Duration) -> Vec<ProbeResult> {
    let mut results = Vec::new();
    for &protocol in Protocol::ALL {
        let baud = protocol.default_baud();
        for address in protocol.probe_addresses() {
            let outcome = match open(protocol, device, baud).await {
                Err(err) => Err(format!("cannot open {device}: {err}")),
                Ok(mut link) => match poll_once(protocol, &mut link, address, true, timeout).await {
                    Ok(b) => Ok(format!(
                        "{} cells, {} V, SoC {} %, model {}, serial {}",
                        b.cells_in_series().map_or("?".into(), |n| n.to_string()),
                        b.voltage_v.map_or("?".into(), |v| format!("{v:.2}")),
                        b.soc_percent.map_or("?".into(), |v| format!("{v:.0}")),
                        b.model.as_deref().unwrap_or("?"),
                        b.serial.as_deref().unwrap_or("?"),
                    )),
                    Err(err) => Err(err.to_string()),
                },
            };
            results.push(ProbeResult { protocol, baud, address, outcome });
        }
    }
    results
}
