//! `probe` names the protocol that answers on a port, for every simulated protocol.

use bms_bridge::config::Protocol;
use bms_bridge::probe::probe;
use bms_bridge::sim;
use std::time::Duration;

#[tokio::test]
async fn probe_recognises_every_simulated_protocol() {
    for &protocol in Protocol::ALL {
        let simulator = sim::spawn(protocol, &[], 16).unwrap();
        let results = probe(&simulator.path().display().to_string(), Duration::from_millis(200)).await;
        let found: Vec<_> = results.iter().filter(|r| r.outcome.is_ok()).map(|r| r.protocol).collect();
        assert_eq!(found, vec![protocol], "{}: {results:?}", protocol.name());
    }
}
