//! The poll loop on a shared RS485 bus: two UP-series packs at addresses 1 and 2 on one pty,
//! each reading reaching its own battery, values told apart by address.

use bms_bridge::config::{PortConfig, Protocol};
use bms_bridge::driver::{run_port, PollUpdate, Subscriber};
use bms_bridge::sim;
use std::time::Duration;
use tokio::sync::watch;

async fn next_reading(
    rx: &mut watch::Receiver<Option<PollUpdate>>,
) -> Result<bms_bridge::battery::Battery, bms_bridge::driver::ReadError> {
    tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.expect("an update in time").unwrap();
    let update = rx.borrow_and_update().clone().unwrap();
    update.result
}

#[tokio::test]
async fn two_packs_share_one_bus() {
    let sim = sim::spawn(Protocol::JbdUp16s, &[1, 2], 16).unwrap();
    let port = PortConfig {
        device: sim.path().display().to_string(),
        protocol: Protocol::JbdUp16s,
        baud: None,
        addresses: Some(vec![1, 2]),
        timeout_ms: 300,
        batteries: Vec::new(),
        can: Default::default(),
        mqtt: Default::default(),
        adapter: None,
    };
    let (tx1, mut rx1) = watch::channel(None);
    let (tx2, mut rx2) = watch::channel(None);
    let subscribers =
        vec![Subscriber { address: Some(1), tx: tx1 }, Subscriber { address: Some(2), tx: tx2 }];
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(run_port(port, Duration::from_millis(200), subscribers, stop_rx));

    let first = next_reading(&mut rx1).await.expect("pack 1 answers");
    let second = next_reading(&mut rx2).await.expect("pack 2 answers");
    assert_eq!(first.serial.as_deref(), Some("SIMUP16S01"));
    assert_eq!(second.serial.as_deref(), Some("SIMUP16S02"));
    assert_eq!(first.soc_percent, Some(60.0));
    assert_eq!(second.soc_percent, Some(55.0));
    assert_eq!(first.cell_voltages_v.as_ref().map(Vec::len), Some(16));

    // A silent bus: both batteries get failures naming port and address, the loop keeps going.
    sim.control().set_silent(true);
    let failure = loop {
        if let Err(e) = next_reading(&mut rx2).await {
            break e.to_string();
        }
    };
    assert!(failure.contains("address 2") && failure.contains("no complete reply"), "{failure}");
    sim.control().set_silent(false);
    let back = loop {
        if let Ok(b) = next_reading(&mut rx1).await {
            break b;
        }
    };
    assert!(back.voltage_v.is_some());

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(2), poller).await.expect("the loop stops on shutdown").unwrap();
}
