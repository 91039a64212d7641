//! The D-Bus path set of a battery service, on the simulated JBD pack through the whole daemon,
//! compared with the committed list `tests/dbus/jbd_paths.txt`: no path disappears (or appears)
//! unnoticed. The list is what GX screens, VRM and Node-RED flows may read (docs/dbus.md).
//! `BMS_BRIDGE_WRITE_PATHS=1 cargo test --test dbus_paths` rewrites the list after a deliberate change.

mod support;

use bms_bridge::app;
use bms_bridge::config::{self, Protocol};
use bms_bridge::sim;
use bms_bridge::victron::{BusAddress, PrivateBus};
use std::time::Duration;
use support::daemon::*;

const NAME: &str = "com.victronenergy.battery.ttyJBD";

/// A frozen 16-cell JBD simulator linked as `<scratch>/ttyJBD`, a private bus, and the config
/// of a daemon polling it every 500 ms with its state in `<scratch>/state`.
fn frozen_jbd(name: &str) -> (std::path::PathBuf, PrivateBus, sim::PtySimulator, config::Config) {
    let dir = scratch_dir(name);
    let bus = PrivateBus::start().expect("dbus-daemon");
    let jbd = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    jbd.control().set_frozen(true);
    link_pty(&dir.join("ttyJBD"), jbd.path());
    let d = dir.display();
    let text = format!(
        "[daemon]\npoll_interval_ms = 500\nstate_dir = \"{d}/state\"\n\n[dbus]\nbus = \"{}\"\n\n\
         [[port]]\ndevice = \"{d}/ttyJBD\"\nprotocol = \"jbd\"\ntimeout_ms = 300\n",
        bus.address()
    );
    let cfg = config::parse(&text, &format!("{name}.toml")).expect("valid config");
    (dir, bus, jbd, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jbd_service_publishes_exactly_the_committed_paths() {
    let (dir, bus, jbd, cfg) = frozen_jbd("dbus-paths");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(app::run(cfg, BusAddress::Address(bus.address().to_owned()), stop_rx));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for_service(&conn, NAME, Duration::from_secs(20), "a connected battery", |i| {
        number(i, "/Connected") == Some(1.0) && number(i, "/Voltages/Cell16").is_some()
    })
    .await;
    let mut paths: Vec<&String> = items.keys().collect();
    paths.sort();
    let valid = items.values().filter(|i| i.get("Value").is_some_and(|v| !is_invalid(v))).count();
    println!("{} paths, {valid} valid", paths.len());
    let listed: String = paths.iter().map(|p| format!("{p}\n")).collect();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dbus/jbd_paths.txt");
    if std::env::var_os("BMS_BRIDGE_WRITE_PATHS").is_some() {
        std::fs::write(&file, &listed).unwrap();
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    let missing: Vec<&str> = committed.lines().filter(|p| !paths.iter().any(|q| q == p)).collect();
    let extra: Vec<&&String> = paths.iter().filter(|p| !committed.lines().any(|c| c == p.as_str())).collect();
    assert!(missing.is_empty() && extra.is_empty(), "paths gone: {missing:?}\nnew paths: {extra:?}");
    // The parity issue's paths are among them, with values from the simulated pack.
    for path in [
        "/System/Temperature1",
        "/System/MOSTemperature",
        "/Info/MaxChargeCellVoltage",
        "/History/HighVoltageAlarms",
        "/History/LowVoltageAlarms",
        "/History/AverageDischarge",
        "/Manufacturer",
        "/Family",
        "/DeviceName",
        "/ConnectionInformation",
        "/Dc/0/MidVoltage",
        "/Dc/0/MidVoltageDeviation",
        "/Alarms/LowSoc",
        "/Io/AllowToBalance",
    ] {
        assert!(items.contains_key(path), "{path} missing");
    }
    let pack = jbd.pack(None).unwrap();
    let cells = pack.cell_voltages_mv();
    let first: f64 = cells.iter().take(8).map(|mv| f64::from(*mv) / 1000.0).sum();
    let mid = number(&items, "/Dc/0/MidVoltage").unwrap();
    assert!((mid - first).abs() < 0.0005, "{mid} vs the first 8 cells' {first}");
    let info: String = value(&items, "/ConnectionInformation").clone().try_into().unwrap();
    assert!(info.starts_with("JBD (jbd) on "), "{info}");
    stop.send_replace(true);
    daemon.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/History/Clear`: writing 1 resets the counters kept in the charge state file (restored
/// from it at start), on D-Bus and in the file; 0 changes nothing, another value is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_history_clear_resets_the_saved_counters() {
    let (dir, bus, _jbd, cfg) = frozen_jbd("history-clear");
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let run = |cfg: config::Config| {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        (stop, tokio::spawn(app::run(cfg, BusAddress::Address(bus.address().to_owned()), stop_rx)))
    };

    // A first run leaves its state file (saved at shutdown); give it a history to restore.
    let (stop, daemon) = run(cfg.clone());
    wait_for_service(&conn, NAME, Duration::from_secs(20), "a connected battery", connected).await;
    stop.send_replace(true);
    daemon.await.unwrap();
    let state_file = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a charge state file");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    state["history"]["charge_cycles"] = 12.5.into();
    state["history"]["total_ah_drawn"] = 1250.0.into();
    state["history"]["low_voltage_alarms"] = 3.into();
    std::fs::write(&state_file, state.to_string()).unwrap();

    let (stop, daemon) = run(cfg);
    let restored = wait_for_service(&conn, NAME, Duration::from_secs(20), "the restored history", |i| {
        connected(i) && number(i, "/History/TotalAhDrawn") == Some(-1250.0)
    })
    .await;
    assert_eq!(number(&restored, "/History/ChargeCycles"), Some(12.5));
    assert_eq!(number(&restored, "/History/LowVoltageAlarms"), Some(3.0));
    assert_eq!(number(&restored, "/History/CanBeCleared"), Some(1.0));
    assert_eq!(number(&restored, "/History/Clear"), Some(0.0));

    let set = |value: zbus::zvariant::Value<'static>| {
        let conn = conn.clone();
        async move {
            let reply = conn
                .call_method(
                    Some(NAME),
                    "/History/Clear",
                    Some("com.victronenergy.BusItem"),
                    "SetValue",
                    &(value,),
                )
                .await
                .unwrap();
            reply.body().deserialize::<i32>().unwrap()
        }
    };
    assert_eq!(set(zbus::zvariant::Value::I32(2)).await, 2, "only 0 and 1");
    assert_eq!(set(zbus::zvariant::Value::I32(0)).await, 0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let kept = get_items_of(&conn, NAME).await.unwrap();
    assert_eq!(number(&kept, "/History/ChargeCycles"), Some(12.5), "0 clears nothing");

    assert_eq!(set(zbus::zvariant::Value::I32(1)).await, 0);
    // Taken on the battery task's next cycle: within two poll intervals.
    let cleared = wait_for_service(&conn, NAME, Duration::from_millis(1000), "the cleared history", |i| {
        number(i, "/History/ChargeCycles").is_some_and(|c| c < 0.01)
    })
    .await;
    // The frozen pack's own current may add a little since.
    assert!(
        number(&cleared, "/History/TotalAhDrawn").is_some_and(|ah| ah > -1.0),
        "{:?}",
        number(&cleared, "/History/TotalAhDrawn")
    );
    assert_eq!(number(&cleared, "/History/LowVoltageAlarms"), Some(0.0));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert!(saved["history"]["total_ah_drawn"].as_f64().is_some_and(|ah| ah < 1.0), "{saved}");
    assert_eq!(saved["history"]["low_voltage_alarms"], 0);
    stop.send_replace(true);
    daemon.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
