//! Shared RS485 buses of the addressable serial protocols (Daly, EG4 LifePower): two packs on one
//! pty, each reading reaching its own battery; a third, silent address fails on its own while
//! the others keep answering.

use bms_bridge::battery::Battery;
use bms_bridge::config::{PortConfig, Protocol};
use bms_bridge::driver::{run_port, PollError, PollUpdate, ReadError, Subscriber};
use bms_bridge::sim;
use bms_bridge::transport::LinkError;
use std::time::Duration;
use tokio::sync::watch;

async fn next(rx: &mut watch::Receiver<Option<PollUpdate>>) -> Result<Battery, ReadError> {
    tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.expect("an update in time").unwrap();
    let update = rx.borrow_and_update().clone().unwrap();
    update.result
}

async fn next_ok(rx: &mut watch::Receiver<Option<PollUpdate>>) -> Battery {
    for _ in 0..5 {
        if let Ok(b) = next(rx).await {
            return b;
        }
    }
    panic!("no good reading in five updates");
}

async fn two_packs_and_a_silent_one(protocol: Protocol, live: [u8; 2], silent: u8) -> (Battery, Battery) {
    let sim = sim::spawn(protocol, &live, 16).unwrap();
    sim.control().set_frozen(true);
    let addresses = vec![live[0], live[1], silent];
    let port = PortConfig {
        device: sim.path().display().to_string(),
        protocol,
        baud: None,
        addresses: Some(addresses.clone()),
        timeout_ms: 150,
        batteries: Vec::new(),
        can: Default::default(),
        mqtt: Default::default(),
        adapter: None,
    };
    let mut receivers = Vec::new();
    let mut subscribers = Vec::new();
    for a in addresses {
        let (tx, rx) = watch::channel(None);
        subscribers.push(Subscriber { address: Some(a), tx });
        receivers.push(rx);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(run_port(port, Duration::from_millis(300), subscribers, stop_rx));
    let first = next_ok(&mut receivers[0]).await;
    let second = next_ok(&mut receivers[1]).await;
    let failure = next(&mut receivers[2]).await.expect_err("nothing answers at the silent address");
    // A timeout of that address's poll, typed up to here; its text names the address.
    assert!(
        matches!(&failure, ReadError::Poll { address: Some(a), error, .. }
            if *a == silent && matches!(**error, PollError::Link(LinkError::Timeout { .. }))),
        "{failure}"
    );
    assert!(failure.to_string().contains(&format!("address {silent}")), "{failure}");
    // The silent address costs a timeout per cycle, nothing more: the others keep answering.
    for _ in 0..2 {
        next_ok(&mut receivers[0]).await;
        next_ok(&mut receivers[1]).await;
    }
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(2), poller).await.expect("the loop stops").unwrap();
    (first, second)
}

#[tokio::test]
async fn daly_packs_share_one_bus() {
    let (first, second) = two_packs_and_a_silent_one(Protocol::Daly, [0x40, 0x41], 0x42).await;
    assert_eq!(first.serial.as_deref(), Some("DALY-SIM-40"));
    assert_eq!(second.serial.as_deref(), Some("DALY-SIM-41"));
    assert_eq!((first.soc_percent, second.soc_percent), (Some(60.0), Some(55.0)));
    assert_eq!(first.cell_voltages_v.as_ref().map(Vec::len), Some(16));
    assert_eq!(first.temperatures_c.as_ref().map(Vec::len), Some(3));
    assert_eq!(first.balancing_cells.as_ref().map(Vec::len), Some(16));
    assert_eq!(first.nominal_capacity_ah, Some(100.0));
    assert_eq!(first.production_date.as_deref(), Some("2024-05-17"));
}

#[tokio::test]
async fn eg4_packs_share_one_bus() {
    let (first, second) = two_packs_and_a_silent_one(Protocol::Eg4Lifepower, [1, 2], 3).await;
    assert_eq!((first.soc_percent, second.soc_percent), (Some(60.0), Some(55.0)));
    assert_eq!(first.firmware_version.as_deref(), Some(bms_bridge::bms::eg4_lifepower::sim::SIM_FIRMWARE));
    assert_eq!(first.cell_voltages_v.as_ref().map(Vec::len), Some(16));
    assert_eq!(first.soh_percent, Some(100.0));
}

/// The Modbus-family BMSes on a shared bus: two packs answer with their own identity, a third
/// address stays silent without holding up the others.
async fn distinct_packs(protocol: Protocol, live: [u8; 2], silent: u8) {
    let (first, second) = two_packs_and_a_silent_one(protocol, live, silent).await;
    let name = protocol.name();
    let soc = |b: &Battery| b.soc_percent.map(|s| s.round());
    assert_eq!((soc(&first), soc(&second)), (Some(60.0), Some(55.0)), "{name}");
    assert!(
        first.serial.is_some() && first.serial != second.serial,
        "{name}: {:?} {:?}",
        first.serial,
        second.serial
    );
    assert_eq!(first.cell_voltages_v.as_ref().map(Vec::len), Some(16), "{name}");
}

#[tokio::test]
async fn jk_pb_packs_share_one_bus() {
    distinct_packs(Protocol::JkPb, [1, 2], 3).await;
}

#[tokio::test]
async fn renogy_packs_share_one_bus() {
    distinct_packs(Protocol::Renogy, [0x30, 0x31], 0x32).await;
}

#[tokio::test]
async fn eg4_ll_packs_share_one_bus() {
    distinct_packs(Protocol::Eg4Ll, [1, 2], 3).await;
}

/// FoxESS packs in series are one battery: voltage is the sum, cells all packs' cells in order,
/// and a silent pack lowers the online count without making the stack's values up.
#[tokio::test]
async fn foxess_stack_is_one_battery() {
    let sim = sim::spawn(Protocol::Foxess, &[1, 2], 18).unwrap();
    sim.control().set_frozen(true);
    let port = PortConfig {
        device: sim.path().display().to_string(),
        protocol: Protocol::Foxess,
        baud: None,
        addresses: Some(vec![1, 2]),
        timeout_ms: 150,
        batteries: Vec::new(),
        can: Default::default(),
        mqtt: Default::default(),
        adapter: None,
    };
    let (tx, mut rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(run_port(
        port,
        Duration::from_millis(300),
        vec![Subscriber { address: None, tx }],
        stop_rx,
    ));
    let stack = next_ok(&mut rx).await;
    let (p1, p2) = (sim.pack(Some(1)).unwrap(), sim.pack(Some(2)).unwrap());
    let cells = stack.cell_voltages_v.as_ref().map(Vec::len).unwrap_or(0);
    assert_eq!(cells, p1.cells + p2.cells, "all packs' cells");
    let sum = p1.voltage_v() + p2.voltage_v();
    assert!((stack.voltage_v.unwrap() - sum).abs() < 0.2, "{:?} vs {sum}", stack.voltage_v);
    assert_eq!(stack.modules_online, Some(2));
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(2), poller).await.expect("the loop stops").unwrap();
}
