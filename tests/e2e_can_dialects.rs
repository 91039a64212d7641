//! The CAN dialects beyond Victron's through the full daemon: simulated packs on an in-memory CAN
//! bus, the real driver (Daly CAN: the Daly poll plan over the CAN bridge; JK CAN: the listener),
//! monitor, charge control and D-Bus services on a private bus. The oracle is the simulated packs
//! themselves (their cells, SoC and voltage), never the decoder under test. (The SocketCAN path
//! runs in `tests/vm` on a real kernel CAN stack.)

use bms_bridge::app;
use bms_bridge::config::{Config, PortConfig, Protocol};
use bms_bridge::sim::model::SimPack;
use bms_bridge::transport::can::MemoryCanBus;
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

/// Waits up to `limit` for `check` on the service `name`.
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
        assert!(start.elapsed() < limit, "no {what} on {name} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Start-up (bus, first polls) is given 20 s; deadlines use [`wait_within`] with their own limit.
const START: Duration = Duration::from_secs(20);

/// Grace period of these tests.
const STALE_AFTER_S: f64 = 3.0;

fn config(bus: &PrivateBus, dir: &std::path::Path, port: PortConfig) -> Config {
    let mut config = Config::default();
    config.daemon.state_dir = dir.to_path_buf();
    config.daemon.stale_after_s = STALE_AFTER_S;
    config.daemon.poll_interval_ms = 1000;
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(port);
    config
}

struct Daemon {
    bus: PrivateBus,
    dir: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    async fn start(tag: &str, port: PortConfig, can: MemoryCanBus) -> Daemon {
        let bus = PrivateBus::start().unwrap();
        let dir = std::env::temp_dir().join(format!("bms-bridge-can-dialects-{tag}-{}", std::process::id()));
        let buses = app::MemoryCanBuses::from([(port.device.clone(), can)]);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let address = BusAddress::Address(bus.address().to_owned());
        let task = tokio::spawn(app::run_with_can(config(&bus, &dir, port), address, stop_rx, buses));
        Daemon { bus, dir, stop, task }
    }

    async fn client(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.bus.address()).unwrap().build().await.unwrap()
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cells, SoC and voltage a pack reports are what the simulated pack holds: SoC to the
/// BMS's resolution, every cell to the mV, the pack voltage to 0.1 V (Daly's resolution).
fn assert_matches_pack(it: &Items, pack: &SimPack, what: &str) {
    let mv = pack.cell_voltages_mv();
    let min = f64::from(*mv.iter().min().unwrap()) / 1000.0;
    let max = f64::from(*mv.iter().max().unwrap()) / 1000.0;
    assert_eq!(f64_at(it, "/System/MinCellVoltage"), Some(min), "{what}: min cell");
    assert_eq!(f64_at(it, "/System/MaxCellVoltage"), Some(max), "{what}: max cell");
    for (i, cell) in mv.iter().enumerate() {
        let path = format!("/Voltages/Cell{}", i + 1);
        assert_eq!(f64_at(it, &path), Some(f64::from(*cell) / 1000.0), "{what}: {path}");
    }
    let soc = f64_at(it, "/Soc").unwrap();
    assert!((soc - pack.soc_percent).abs() <= 0.1, "{what}: SoC {soc} vs {}", pack.soc_percent);
    let volts = f64_at(it, "/Dc/0/Voltage").unwrap();
    assert!((volts - pack.voltage_v()).abs() <= 0.051, "{what}: {volts} V vs {} V", pack.voltage_v());
    assert_eq!(f64_at(it, "/System/NrOfCellsPerBattery"), Some(mv.len() as f64), "{what}: cells");
}

/// Two Daly packs on one CAN bus at addresses 1 and 2, each its own simulator (so one can fall
/// silent alone); the daemon polls both by address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daly_can_two_packs_by_address_and_one_falls_silent() {
    let can = MemoryCanBus::new();
    let one = bms_bridge::bms::daly_can::sim::spawn(&can, &[1], 16);
    let two = bms_bridge::bms::daly_can::sim::spawn(&can, &[2], 16);
    // Still packs at distinct charge levels: what each service shows tells the packs apart.
    one.packs.configure_all(|p| {
        p.swing_a = 0.0;
        p.soc_percent = 40.0;
    });
    two.packs.configure_all(|p| {
        p.swing_a = 0.0;
        p.soc_percent = 80.0;
    });
    let port = PortConfig {
        protocol: Protocol::DalyCan,
        addresses: Some(vec![1, 2]),
        ..PortConfig::can("dalycan0")
    };
    let daemon = Daemon::start("daly", port, can).await;
    let conn = daemon.client().await;
    let (name_1, name_2) = ("com.victronenergy.battery.dalycan0_1", "com.victronenergy.battery.dalycan0_2");
    for (name, sim, host) in [(name_1, &one, 0x40), (name_2, &two, 0x41)] {
        let it = wait_within(&conn, name, "a connected pack", START, |i| {
            f64_at(i, "/Connected") == Some(1.0) && f64_at(i, "/Voltages/Cell16").is_some()
        })
        .await;
        let pack = sim.packs.get(Some(host)).unwrap();
        assert_matches_pack(&it, &pack, name);
        // The battery code read over CAN (0x57, five frames) is the pack's serial.
        let serial = it.get("/Serial").and_then(|v| String::try_from(v.get("Value")?.clone()).ok());
        assert_eq!(serial.as_deref(), Some(format!("DALY-SIM-{host:02X}").as_str()), "{name}");
    }
    // Pack 2 stops answering: its service goes to the fail-safe within the grace period plus
    // one poll; pack 1 keeps being polled and stays connected throughout.
    two.control.set_silent(true);
    let silenced = Instant::now();
    let limit = Duration::from_secs_f64(STALE_AFTER_S + 1.0);
    let it = wait_within(&conn, name_2, "fail-safe", limit, |i| f64_at(i, "/Connected") == Some(0.0)).await;
    assert_eq!(f64_at(&it, "/Info/MaxChargeCurrent"), Some(0.0));
    let requests_before = one.control.requests();
    while silenced.elapsed() < limit {
        let it = items(&conn, name_1).await.unwrap();
        assert_eq!(f64_at(&it, "/Connected"), Some(1.0), "pack 1 disturbed by pack 2's silence");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(one.control.requests() > requests_before, "pack 1 is still polled");
    // Pack 2 answers again: it comes back.
    two.control.set_silent(false);
    wait_within(&conn, name_2, "pack 2 back", START, |i| f64_at(i, "/Connected") == Some(1.0)).await;
    daemon.stop().await;
}

/// Two JK packs broadcasting on one bus at DIP addresses 0 and 1 (ids offset by the address),
/// each its own simulator; the daemon listens and serves one battery per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jk_can_two_packs_by_address_and_one_falls_silent() {
    let can = MemoryCanBus::new();
    let zero = bms_bridge::bms::jk_can::sim::spawn(&can, &[0], 16);
    let one = bms_bridge::bms::jk_can::sim::spawn(&can, &[1], 16);
    zero.packs.configure_all(|p| {
        p.swing_a = 0.0;
        p.soc_percent = 30.0;
    });
    one.packs.configure_all(|p| {
        p.swing_a = 0.0;
        p.soc_percent = 70.0;
    });
    let port =
        PortConfig { protocol: Protocol::JkCan, addresses: Some(vec![0, 1]), ..PortConfig::can("jkcan0") };
    let daemon = Daemon::start("jk", port, can).await;
    let conn = daemon.client().await;
    let (name_0, name_1) = ("com.victronenergy.battery.jkcan0_0", "com.victronenergy.battery.jkcan0_1");
    for (name, sim, address) in [(name_0, &zero, 0), (name_1, &one, 1)] {
        let it = wait_within(&conn, name, "a connected pack", START, |i| {
            f64_at(i, "/Connected") == Some(1.0) && f64_at(i, "/Voltages/Cell16").is_some()
        })
        .await;
        let pack = sim.packs.get(Some(address)).unwrap();
        assert_matches_pack(&it, &pack, name);
        assert_eq!(
            f64_at(&it, "/InstalledCapacity"),
            Some(pack.capacity_ah),
            "{name}: BATT_ST2 full capacity"
        );
    }
    one.control.set_silent(true);
    let silenced = Instant::now();
    let limit = Duration::from_secs_f64(STALE_AFTER_S + 1.0);
    let it = wait_within(&conn, name_1, "fail-safe", limit, |i| f64_at(i, "/Connected") == Some(0.0)).await;
    assert_eq!(f64_at(&it, "/Info/MaxChargeCurrent"), Some(0.0));
    while silenced.elapsed() < limit {
        let it = items(&conn, name_0).await.unwrap();
        assert_eq!(f64_at(&it, "/Connected"), Some(1.0), "pack 0 disturbed by pack 1's silence");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    one.control.set_silent(false);
    wait_within(&conn, name_1, "pack 1 back", START, |i| f64_at(i, "/Connected") == Some(1.0)).await;
    daemon.stop().await;
}

/// `probe can0` on a bus with a JK pack (address 3) and a Daly pack (address 2): listening alone
/// hears the JK broadcast; `--active` asks the Daly addresses and hears the Daly pack too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_names_the_dialects_it_hears() {
    use bms_bridge::probe_can::probe;
    let can = MemoryCanBus::new();
    let _jk = bms_bridge::bms::jk_can::sim::spawn(&can, &[3], 16);
    let _daly = bms_bridge::bms::daly_can::sim::spawn(&can, &[2], 16);
    let passive = probe(can.connect(), Duration::from_millis(1500), false).await.unwrap();
    let found: Vec<_> = passive.batteries.keys().copied().collect();
    assert_eq!(found, [("jk_can", Some(3))], "{:?}", passive.lines());
    // JK sends BATT_ST1 at 0x02F4 + address once a second here.
    assert!(passive.batteries[&("jk_can", Some(3))].contains_key(&0x2F7), "{:?}", passive.lines());
    let active = probe(can.connect(), Duration::from_millis(1500), true).await.unwrap();
    let found: Vec<_> = active.batteries.keys().copied().collect();
    assert_eq!(found, [("daly_can", Some(2)), ("jk_can", Some(3))], "{:?}", active.lines());
    assert!(active.lines()[0].starts_with("FOUND  daly_can address 2: 0x18904002"), "{:?}", active.lines());
}
