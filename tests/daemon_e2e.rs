//! End to end: a private dbus-daemon, the JBD simulator on a pty and the real `bms-bridge`
//! binary. Pins what Venus OS sees: the mandatory paths, live values equal to the simulated
//! pack, change-only `ItemsChanged`, invalidation and CCL 0 when the BMS falls silent, recovery
//! when it answers again, and recovery after the serial device vanished and came back.

use bms_bridge::sim::jbd::JbdSimulator;
use bms_bridge::victron::private_bus::PrivateBus;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zbus::zvariant::OwnedValue;

const SERVICE: &str = "com.victronenergy.battery.ttyBMS0";
type Items = HashMap<String, HashMap<String, OwnedValue>>;

/// Kills the daemon when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bms-bridge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn link_pty(link: &Path, target: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn start_daemon(dir: &Path, bus: &str, device: &Path) -> Daemon {
    let config = dir.join("bms-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\npoll_interval_ms = 250\nstale_after_s = 2.0\nstate_dir = \"{}\"\n\n[dbus]\nbus = \"{bus}\"\ndevice_instance = 7\n\n[[port]]\ndevice = \"{}\"\nprotocol = \"jbd\"\ntimeout_ms = 200\n",
            dir.join("state").display(),
            device.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(["--log-level", "debug", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    Daemon(child)
}

async fn get_items(conn: &zbus::Connection) -> zbus::Result<Items> {
    let reply =
        conn.call_method(Some(SERVICE), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await?;
    Ok(reply.body().deserialize::<Items>()?)
}

fn value<'a>(items: &'a Items, path: &str) -> &'a OwnedValue {
    items.get(path).and_then(|i| i.get("Value")).unwrap_or_else(|| panic!("{path} missing from GetItems"))
}

fn is_invalid(v: &OwnedValue) -> bool {
    v.value_signature().to_string() == "ai"
        && Vec::<i32>::try_from(v.clone()).map(|a| a.is_empty()).unwrap_or(false)
}

fn f64_of(v: &OwnedValue) -> Option<f64> {
    f64::try_from(v.clone()).ok()
}

fn i32_of(v: &OwnedValue) -> Option<i32> {
    i32::try_from(v.clone()).ok()
}

/// Polls GetItems until `check` holds, or fails after `limit` with the last items.
async fn wait_for(
    conn: &zbus::Connection,
    limit: Duration,
    what: &str,
    check: impl Fn(&Items) -> bool,
) -> Items {
    let start = Instant::now();
    loop {
        if let Ok(items) = get_items(conn).await {
            if check(&items) {
                return items;
            }
            if start.elapsed() > limit {
                panic!("timed out waiting for {what}; /Connected = {:?}", items.get("/Connected"));
            }
        } else if start.elapsed() > limit {
            panic!("timed out waiting for {what}; service not on the bus");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn connected(items: &Items) -> bool {
    items.get("/Connected").and_then(|i| i.get("Value")).and_then(i32_of) == Some(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jbd_pack_end_to_end_on_a_private_bus() {
    let dir = scratch_dir("e2e");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let sim = JbdSimulator::spawn(16).unwrap();
    sim.control().set_frozen(true);
    let link = dir.join("ttyBMS0");
    link_pty(&link, sim.path());
    let daemon = start_daemon(&dir, bus.address(), &link);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();

    // 1. The service appears with every mandatory path valid, values equal to the pack.
    let items = wait_for(&conn, Duration::from_secs(15), "the service to connect", connected).await;
    for path in [
        "/Mgmt/ProcessName",
        "/Mgmt/ProcessVersion",
        "/Mgmt/Connection",
        "/DeviceInstance",
        "/ProductId",
        "/ProductName",
        "/FirmwareVersion",
        "/Connected",
        "/Serial",
        "/CustomName",
    ] {
        assert!(!is_invalid(value(&items, path)), "{path} must be valid");
    }
    assert_eq!(i32_of(value(&items, "/DeviceInstance")), Some(7), "no settings service: configured instance");
    let pack = sim.pack();
    let cells_mv = pack.cell_voltages_mv();
    for (i, mv) in cells_mv.iter().enumerate() {
        let published = f64_of(value(&items, &format!("/Voltages/Cell{}", i + 1))).unwrap();
        assert!((published - f64::from(*mv) / 1000.0).abs() < 1e-9, "cell {} {published} vs {mv} mV", i + 1);
    }
    let pack_v = (pack.voltage_v() * 100.0).round() / 100.0;
    assert!((f64_of(value(&items, "/Dc/0/Voltage")).unwrap() - pack_v).abs() < 0.0101);
    assert_eq!(f64_of(value(&items, "/Soc")), Some(60.0));
    let min_mv = *cells_mv.iter().min().unwrap();
    assert!(
        (f64_of(value(&items, "/System/MinCellVoltage")).unwrap() - f64::from(min_mv) / 1000.0).abs() < 1e-9
    );
    assert!((f64_of(value(&items, "/Info/MaxChargeVoltage")).unwrap() - 55.2).abs() < 1e-6, "16 x 3.45 V");
    assert_eq!(f64_of(value(&items, "/Info/MaxChargeCurrent")), Some(50.0));
    assert_eq!(f64_of(value(&items, "/Info/MaxDischargeCurrent")), Some(60.0));
    assert_eq!(i32_of(value(&items, "/Alarms/BmsCable")), Some(0));
    let text = String::try_from(value(&items, "/ProductName").clone()).unwrap();
    assert!(text.contains("JBD-SP16S020-SIM"), "{text}");

    // 2. ItemsChanged carries only values that changed.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("com.victronenergy.BusItem")
        .unwrap()
        .member("ItemsChanged")
        .unwrap()
        .path("/")
        .unwrap()
        .build();
    let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, Some(16)).await.unwrap();
    let mut known: HashMap<String, OwnedValue> = get_items(&conn)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(p, mut m)| m.remove("Value").map(|v| (p, v)))
        .collect();
    sim.control().set_frozen(false);
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen < 3 && Instant::now() < deadline {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(3), signals.next()).await else {
            continue;
        };
        let changes: Items = msg.body().deserialize().unwrap();
        assert!(!changes.is_empty(), "an empty ItemsChanged is never sent");
        for (path, entry) in changes {
            let new = entry.get("Value").unwrap().clone();
            assert!(entry.contains_key("Text"), "{path} has its Text");
            if let Some(old) = known.get(&path) {
                assert_ne!(old, &new, "{path} was sent although it did not change");
            }
            assert!(
                !["/ProductName", "/DeviceInstance", "/Mgmt/Connection"].contains(&path.as_str()),
                "{path} never changes"
            );
            known.insert(path, new);
        }
        seen += 1;
    }
    assert!(seen >= 3, "moving values produce ItemsChanged signals");

    // 3. A silent BMS: after the grace period values invalid, /Connected 0, CCL 0, cable alarm.
    sim.control().set_silent(true);
    let items =
        wait_for(&conn, Duration::from_secs(10), "the BMS to be declared lost", |i| !connected(i)).await;
    assert!(is_invalid(value(&items, "/Dc/0/Voltage")), "no frozen voltage");
    assert!(is_invalid(value(&items, "/Voltages/Cell1")));
    assert!(is_invalid(value(&items, "/Soc")));
    assert_eq!(f64_of(value(&items, "/Info/MaxChargeCurrent")), Some(0.0), "CCL 0, a valid number");
    assert!((f64_of(value(&items, "/Info/MaxChargeVoltage")).unwrap() - 54.0).abs() < 1e-6, "float voltage");
    assert_eq!(i32_of(value(&items, "/Alarms/BmsCable")), Some(2));

    // 4. It answers again: values come back by themselves.
    sim.control().set_silent(false);
    let items = wait_for(&conn, Duration::from_secs(10), "the BMS to come back", connected).await;
    assert!(!is_invalid(value(&items, "/Dc/0/Voltage")));
    assert_eq!(i32_of(value(&items, "/Alarms/BmsCable")), Some(0));

    // 5. The adapter is unplugged (device path gone, pty closed) and plugged back in.
    std::fs::remove_file(&link).unwrap();
    drop(sim);
    wait_for(&conn, Duration::from_secs(10), "the unplugged BMS to be lost", |i| !connected(i)).await;
    let sim = JbdSimulator::spawn(16).unwrap();
    link_pty(&link, sim.path());
    let items = wait_for(&conn, Duration::from_secs(15), "recovery after re-plugging", connected).await;
    assert!(!is_invalid(value(&items, "/Dc/0/Voltage")));

    // The daemon's footprint while serving one pack (reported in the issue notes).
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).unwrap_or_default();
    let rss = status.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("VmRSS: ?");
    eprintln!("daemon {rss}");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
