//! End to end over Bluetooth LE without a radio: the simulated BlueZ (`sim::bluez`, backed by the
//! protocol's own simulator, replies split into 20-byte notifications) on a private dbus-daemon,
//! the real `bms-bridge` binary with its BLE side pointed at that bus (DBUS_SYSTEM_BUS_ADDRESS)
//! and its Victron services on the same bus. Pins: values equal to the simulated pack, a device
//! BlueZ did not know found by discovery, garbage between notifications skipped, reconnect after
//! the device drops the link, the BMS-lost policy when it vanishes (CCL 0 within
//! stale_after_s + 1 s, service stays), reconnect when it is back, one log line per state change,
//! and two BLE batteries on one adapter.

mod support;
#[path = "support/vectors.rs"]
mod vectors_support;

use bms_bridge::config::Protocol;
use bms_bridge::sim::bluez::{SimBleDevice, SimBluez};
use bms_bridge::victron::private_bus::PrivateBus;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::daemon::*;

const STALE_AFTER_S: f64 = 2.0;

fn service_of(device: &str) -> String {
    format!("com.victronenergy.battery.{}", device.replace(':', "_"))
}

fn port_toml(protocol: Protocol, device: &str) -> String {
    format!("[[port]]\ndevice = \"{device}\"\nprotocol = \"{}\"\ntimeout_ms = 1000\n\n", protocol.name())
}

/// The daemon on `ports`, its Victron services and its BlueZ both on `bus`.
fn start(dir: &Path, bus: &PrivateBus, ports: &str) -> Daemon {
    let config = dir.join("bms-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\npoll_interval_ms = 250\nstale_after_s = {STALE_AFTER_S}\nstate_dir = \"{}\"\n\n[dbus]\nbus = \"{}\"\ndevice_instance = 7\n\n{ports}",
            dir.join("state").display(),
            bus.address(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(["--log-level", "debug", "run", "--config"])
        .arg(&config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    Daemon(child)
}

fn ccl(items: &Items) -> Option<f64> {
    number(items, "/Info/MaxChargeCurrent")
}

/// The published cells equal the simulated pack's (the oracle is the simulator, not the codec).
fn assert_cells_match(items: &Items, ble: &SimBleDevice) {
    let pack = ble.simulator.pack(None).unwrap();
    let cells_mv = pack.cell_voltages_mv();
    assert!(!cells_mv.is_empty());
    for (i, mv) in cells_mv.iter().enumerate() {
        let published = number(items, &format!("/Voltages/Cell{}", i + 1)).unwrap();
        assert!(
            (published - f64::from(*mv) / 1000.0).abs() < 1e-9,
            "cell {} {published} V vs {mv} mV",
            i + 1
        );
    }
    let published = number(items, "/Dc/0/Voltage").unwrap();
    assert!((published - pack.voltage_v()).abs() < 0.0101, "{published} V vs {} V", pack.voltage_v());
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// One BLE protocol end to end: discovery, values, garbage, dropped link, vanish and return.
async fn end_to_end(protocol: Protocol, cells: usize, name: &str) {
    let dir = scratch_dir(name);
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let bluez = SimBluez::start(bus.address(), "hci0").await.unwrap();
    // Not known to BlueZ: the daemon must find it with a filtered discovery.
    let ble = bluez.add_device(protocol, "C8:47:8C:12:34:56", cells, false).await.unwrap();
    ble.simulator.control().set_frozen(true);
    let _daemon = start(&dir, &bus, &port_toml(protocol, &ble.device));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let service = service_of(&ble.device);

    // 1. Values equal to the pack, charging allowed.
    let items =
        wait_for_service(&conn, &service, Duration::from_secs(20), "the BLE battery to connect", |i| {
            connected(i) && number(i, "/Voltages/Cell1").is_some()
        })
        .await;
    assert_cells_match(&items, &ble);
    assert_eq!(ccl(&items), Some(50.0), "default max_charge_current");
    assert_eq!(ble.knobs.connects(), 1);
    let text = String::try_from(value(&items, "/Mgmt/Connection").clone()).unwrap();
    assert!(text.starts_with("Bluetooth ble:C8:47:8C:12:34:56"), "{text}");

    // 2. Garbage before a reply's notifications is skipped; readings go on.
    let before = ble.knobs.notifications();
    ble.knobs.inject_garbage();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(ble.knobs.notifications() > before + 2);
    let items = support::daemon::get_items_of(&conn, &service).await.unwrap();
    assert!(connected(&items), "garbage must not cost the connection");
    assert_eq!(ble.knobs.connects(), 1, "garbage is resynchronised, not reconnected");

    // 3. The device drops the link: reconnected, values back.
    ble.drop_connection().await.unwrap();
    let t0 = Instant::now();
    while ble.knobs.connects() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5), "no reconnect within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{name}: reconnected {:?} after the drop", t0.elapsed());
    wait_for_service(&conn, &service, Duration::from_secs(5), "values after the reconnect", connected).await;

    // 4. Vanished: CCL 0 within stale_after_s + 1 s of the last reply, the service stays.
    ble.set_in_range(false).await.unwrap();
    let vanished = Instant::now();
    let items = wait_for_service(
        &conn,
        &service,
        Duration::from_secs_f64(STALE_AFTER_S + 1.0),
        "CCL 0 after the device vanished",
        |i| ccl(i) == Some(0.0),
    )
    .await;
    let lost_after = vanished.elapsed();
    println!("{name}: CCL 0 {lost_after:?} after the device vanished");
    assert!(lost_after >= Duration::from_secs_f64(STALE_AFTER_S - 0.5), "lost too early: {lost_after:?}");
    assert_eq!(i32_of(value(&items, "/Connected")), Some(0));
    assert!(is_invalid(value(&items, "/Voltages/Cell1")), "no frozen cell values while lost");
    // A few failed attempts later the service is still there, still CCL 0.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let items = support::daemon::get_items_of(&conn, &service).await.unwrap();
    assert_eq!(ccl(&items), Some(0.0));

    // 5. Back in range: found by discovery, reconnected within the longest backoff.
    ble.set_in_range(true).await.unwrap();
    let back = Instant::now();
    // (CCL ramps back up after a loss, so "connected with live cells" is the condition.)
    let items = wait_for_service(&conn, &service, Duration::from_secs(15), "reconnect after return", |i| {
        connected(i) && number(i, "/Voltages/Cell1").is_some()
    })
    .await;
    println!("{name}: back {:?} after return", back.elapsed());
    assert_cells_match(&items, &ble);
    assert_eq!(ble.knobs.connects(), 3);

    // 6. One log line per state change: 3 connects, 2 disconnects, one warning for the whole
    //    outage however many attempts failed.
    let log = daemon_log(&dir);
    assert_eq!(count(&log, "BLE connected"), 3, "{log}");
    assert_eq!(count(&log, "BLE disconnected"), 2, "{log}");
    assert_eq!(count(&log, "BLE connect failed;"), 1, "{log}");
    assert!(count(&log, "BLE connect failed again") >= 1, "retries are logged at debug: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jbd_ble_end_to_end_with_reconnect_and_vanish() {
    end_to_end(Protocol::JbdBle, 16, "ble-jbd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jk_ble_end_to_end_with_reconnect_and_vanish() {
    end_to_end(Protocol::JkBle, 16, "ble-jk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daly_ble_end_to_end_with_reconnect_and_vanish() {
    end_to_end(Protocol::DalyBle, 16, "ble-daly").await;
}

/// Two BLE batteries (JBD and JK) on one adapter: both publish their own pack's values, their
/// connects never overlap on the radio (each Connect takes 300 ms in the simulated BlueZ; both
/// ports start at once), and one dropping its link does not disturb the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ble_batteries_on_one_adapter_take_turns() {
    let dir = scratch_dir("ble-two");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let bluez = SimBluez::start(bus.address(), "hci0").await.unwrap();
    bluez.stats.set_connect_delay(Duration::from_millis(300));
    let jbd = bluez.add_device(Protocol::JbdBle, "C8:47:8C:00:00:01", 16, true).await.unwrap();
    let jk = bluez.add_device(Protocol::JkBle, "C8:47:8C:00:00:02", 8, true).await.unwrap();
    for ble in [&jbd, &jk] {
        ble.simulator.control().set_frozen(true);
    }
    let ports = port_toml(Protocol::JbdBle, &jbd.device) + &port_toml(Protocol::JkBle, &jk.device);
    let _daemon = start(&dir, &bus, &ports);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    for ble in [&jbd, &jk] {
        let items = wait_for_service(
            &conn,
            &service_of(&ble.device),
            Duration::from_secs(20),
            "both to connect",
            |i| connected(i) && number(i, "/Voltages/Cell1").is_some(),
        )
        .await;
        assert_cells_match(&items, ble);
    }
    assert_eq!(bluez.stats.overlapping_connects(), 0, "connects on one adapter must take turns");

    jk.drop_connection().await.unwrap();
    let t0 = Instant::now();
    while jk.knobs.connects() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5), "JK not reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The JBD battery stayed online all along (no reconnect, values live).
    tokio::time::sleep(Duration::from_secs_f64(STALE_AFTER_S)).await;
    let items = support::daemon::get_items_of(&conn, &service_of(&jbd.device)).await.unwrap();
    assert!(connected(&items));
    assert_eq!(jbd.knobs.connects(), 1);
    assert_eq!(bluez.stats.overlapping_connects(), 0);
}

fn cli(bus: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `scan-ble` names the BMS nearby and their protocol, `probe ble:ADDR` says what answered,
/// `decode --protocol daly_ble` reads the notifications of one reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_ble_probe_and_decode_on_the_command_line() {
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let bluez = SimBluez::start(bus.address(), "hci0").await.unwrap();
    let _jk = bluez.add_device(Protocol::JkBle, "C8:47:8C:00:00:0A", 16, false).await.unwrap();
    let _daly = bluez.add_device(Protocol::DalyBle, "C8:47:8C:00:00:0B", 8, true).await.unwrap();
    let address = bus.address().to_owned();
    let (ok, out) =
        tokio::task::spawn_blocking(move || cli(&address, &["scan-ble", "--seconds", "1"])).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("C8:47:8C:00:00:0A") && out.contains("looks like jk_ble"), "{out}");
    assert!(out.contains("C8:47:8C:00:00:0B") && out.contains("looks like daly_ble"), "{out}");
    assert!(out.contains("2 devices, 2 that look like a BMS"), "{out}");

    let address = bus.address().to_owned();
    let (ok, out) = tokio::task::spawn_blocking(move || cli(&address, &["probe", "ble:C8:47:8C:00:00:0B"]))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("FOUND  daly_ble") && out.contains("8 cells"), "{out}");
    assert!(out.contains("protocol = \"daly_ble\""), "{out}");

    // The vector's reply given as its 20-byte notifications, one argument each.
    let case = vectors_support::case(&vectors_support::load("daly_ble.json"), "status_4s_aiobmsble").clone();
    let parts: Vec<String> =
        case.bytes.chunks(20).map(|c| c.iter().map(|b| format!("{b:02X}")).collect()).collect();
    let mut args = vec!["decode", "--protocol", "daly_ble"];
    args.extend(parts.iter().map(String::as_str));
    let (ok, out) = cli(bus.address(), &args);
    assert!(ok, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["voltage_v"], serde_json::json!(14.0), "{out}");
}

/// A link that stays connected but goes silent (a stuck adapter or BMS module) is closed and
/// connected again after a few silent poll cycles; meanwhile the battery is lost (CCL 0), and it
/// is back once the device answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ble_link_is_reconnected() {
    let dir = scratch_dir("ble-stall");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let bluez = SimBluez::start(bus.address(), "hci0").await.unwrap();
    let ble = bluez.add_device(Protocol::JbdBle, "C8:47:8C:00:00:0C", 16, true).await.unwrap();
    let _daemon = start(&dir, &bus, &port_toml(Protocol::JbdBle, &ble.device));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let service = service_of(&ble.device);
    wait_for_service(&conn, &service, Duration::from_secs(20), "connect", connected).await;
    assert_eq!(ble.knobs.connects(), 1);

    ble.knobs.set_stalled(true);
    let stalled = Instant::now();
    wait_for_service(
        &conn,
        &service,
        Duration::from_secs_f64(STALE_AFTER_S + 1.0),
        "CCL 0 while stalled",
        |i| ccl(i) == Some(0.0),
    )
    .await;
    // 3 silent cycles of 1 s timeout + 250 ms: the link is closed and connected again.
    while ble.knobs.connects() < 2 {
        assert!(stalled.elapsed() < Duration::from_secs(8), "stalled link not reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("stalled link reconnected after {:?}", stalled.elapsed());
    ble.knobs.set_stalled(false);
    wait_for_service(&conn, &service, Duration::from_secs(10), "values after the stall", |i| {
        connected(i) && number(i, "/Voltages/Cell1").is_some()
    })
    .await;
    let log = daemon_log(&dir);
    assert!(log.contains("no answer for 3 cycles; reopening the port"), "{log}");
}
