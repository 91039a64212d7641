//! victron_can through the full daemon: the simulated BMS on an in-memory CAN bus, the real CAN
//! listener, monitor, charge control and D-Bus service on a private bus. (The pty-based
//! `e2e_protocols` covers the serial protocols; the SocketCAN path itself runs in `tests/vm`.)

use bms_bridge::app;
use bms_bridge::config::{Config, PortConfig};
use bms_bridge::victron::{BusAddress, PrivateBus};
use std::time::{Duration, Instant};

type Items = std::collections::HashMap<String, std::collections::HashMap<String, zbus::zvariant::OwnedValue>>;

async fn items(conn: &zbus::Connection, name: &str) -> Option<Items> {
    let reply =
        conn.call_method(Some(name), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await.ok()?;
    reply.body().deserialize::<Items>().ok()
}

fn f64_at(items: &Items, path: &str) -> Option<f64> {
    let v = items.get(path)?.get("Value")?.clone();
    f64::try_from(v.clone()).ok().or_else(|| i32::try_from(v).ok().map(f64::from))
}

/// Start-up (bus, simulator, first CAN cycle) is given 20 s; deadlines are checked with [`wait_within`].
async fn wait(conn: &zbus::Connection, name: &str, what: &str, check: impl Fn(&Items) -> bool) -> Items {
    wait_within(conn, name, what, Duration::from_secs(20), check).await
}

async fn wait_within(
    conn: &zbus::Connection,
    name: &str,
    what: &str,
    limit: Duration,
    check: impl Fn(&Items) -> bool,
) -> Items {
    let start = Instant::now();
    loop {
        if let Some(items) = items(conn, name).await.filter(|i| check(i)) {
            return items;
        }
        assert!(start.elapsed() < limit, "no {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn config(bus: &PrivateBus, dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.daemon.state_dir = dir.to_path_buf();
    config.daemon.stale_after_s = 3.0;
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig::can("simcan0"));
    config
}

const OURS: &str = "com.victronenergy.battery.simcan0";

/// The daemon's app on a private bus with one simulated CAN BMS on `simcan0`.
struct Rig {
    bus: PrivateBus,
    dir: std::path::PathBuf,
    simulator: bms_bridge::bms::victron_can::sim::CanSimulator,
    stop: tokio::sync::watch::Sender<bool>,
    daemon: tokio::task::JoinHandle<()>,
}

impl Rig {
    /// With `venus_first`, Venus's own CAN-bus BMS service for the interface is there before.
    async fn start(tag: &str, venus_first: bool) -> (Rig, Option<zbus::Connection>) {
        let bus = PrivateBus::start().unwrap();
        let dir = std::env::temp_dir().join(format!("bms-bridge-e2e-can-{tag}-{}", std::process::id()));
        let venus = if venus_first { Some(venus_service(&bus).await) } else { None };
        let simulator = bms_bridge::bms::victron_can::sim::spawn(16);
        let buses = app::MemoryCanBuses::from([("simcan0".to_owned(), simulator.bus.clone())]);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let address = BusAddress::Address(bus.address().to_owned());
        let daemon = tokio::spawn(app::run_with_can(config(&bus, &dir), address, stop_rx, buses));
        (Rig { bus, dir, simulator, stop, daemon }, venus)
    }

    async fn client(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.bus.address()).unwrap().build().await.unwrap()
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        self.daemon.await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Venus's own service for the interface (its "CAN-bus BMS" profile), held while the connection lives.
async fn venus_service(bus: &PrivateBus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address())
        .unwrap()
        .name("com.victronenergy.battery.socketcan_simcan0")
        .unwrap()
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_battery_end_to_end_and_fail_safe() {
    let (rig, _) = Rig::start("e2e", false).await;
    let conn = rig.client().await;
    let it = wait(&conn, OURS, "a connected CAN battery", |i| f64_at(i, "/Connected") == Some(1.0)).await;
    let volts = f64_at(&it, "/Dc/0/Voltage").unwrap();
    assert!((50.0..56.0).contains(&volts), "{volts}");
    assert!(f64_at(&it, "/System/MinCellVoltage").is_some_and(|v| (3.0..3.5).contains(&v)));
    // CVL: ours (16 x 3.45 = 55.2 V) capped by the BMS's 0x351 (16 x 3.5 = 56 V): ours.
    assert_eq!(f64_at(&it, "/Info/MaxChargeVoltage"), Some(55.2));
    assert!(rig.simulator.control.requests() >= 1, "the BMS got the keep-alive frame");
    // The serial a JBD pack sends in 0x380/0x381 is the battery's identity (a stable instance).
    let serial = it.get("/Serial").and_then(|v| String::try_from(v.get("Value")?.clone()).ok());
    assert_eq!(serial.as_deref(), Some("UP16S-SIM-0001"));
    // The BMS falls silent: the fail-safe applies after the 3 s grace period, counted from its
    // last frames (at most one 1 s cycle before this), plus 1 s (tests/stale_deadline.rs has
    // the exact timing).
    rig.simulator.control.set_silent(true);
    let grace = Duration::from_secs(3 + 1);
    let it = wait_within(&conn, OURS, "fail-safe", grace, |i| f64_at(i, "/Connected") == Some(0.0)).await;
    assert_eq!(f64_at(&it, "/Info/MaxChargeCurrent"), Some(0.0));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_second_battery_when_venus_decodes_the_interface() {
    let (rig, _venus) = Rig::start("venus", true).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(items(&rig.client().await, OURS).await.is_none(), "no second battery");
    assert!(!rig.daemon.is_finished(), "idle until stopped: exiting would make systemd restart it in a loop");
    rig.stop().await;
}

/// Venus starts its own service for the interface after bms-bridge (at boot its CAN service may
/// come up later): ours is withdrawn within a few checks, and the daemon keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdraws_when_venus_starts_decoding_the_interface_later() {
    let (rig, _) = Rig::start("venus-later", false).await;
    let conn = rig.client().await;
    wait(&conn, OURS, "a connected CAN battery", |i| f64_at(i, "/Connected") == Some(1.0)).await;
    let _venus = venus_service(&rig.bus).await;
    let start = Instant::now();
    while items(&conn, OURS).await.is_some() {
        assert!(
            start.elapsed() < app::VENUS_CHECK_EVERY * 3,
            "our service must go once Venus publishes the battery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!rig.daemon.is_finished(), "the daemon keeps running");
    rig.stop().await;
}
