//! End to end: a private dbus-daemon, the JBD simulator on a pty and the real `bms-bridge`
//! binary. Pins what Venus OS sees: the mandatory paths, live values equal to the simulated
//! pack, change-only `ItemsChanged`, invalidation and CCL 0 when the BMS falls silent, recovery
//! when it answers again, and recovery after the serial device vanished and came back.

mod support;

use bms_bridge::config::Protocol;
use bms_bridge::sim;
use bms_bridge::victron::private_bus::PrivateBus;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::daemon::*;
use zbus::zvariant::OwnedValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jbd_pack_end_to_end_on_a_private_bus() {
    let dir = scratch_dir("e2e");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let sim = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
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
    let pack = sim.pack(None).unwrap();
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
    // An unread, full signal queue would stall this connection's method replies.
    drop(signals);

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
    let sim = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
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
