//! BMS writes end to end: SetValue on a `/Settings/*` path of the real daemon (private D-Bus) ->
//! command -> the port's poll loop -> the simulator on a pty changes its state -> the next readings
//! show it. Without `allow_writes` the paths do not exist and nothing is written.

mod support;

use bms_bridge::config::Protocol;
use bms_bridge::driver::{self, send_write};
use bms_bridge::protocol::writes::{FetRequest, Write};
use bms_bridge::sim;
use bms_bridge::victron::private_bus::PrivateBus;
use std::time::Duration;
use support::daemon::*;
use zbus::zvariant::{OwnedValue, Value};

const BUS_ITEM: &str = "com.victronenergy.BusItem";

async fn set_value(conn: &zbus::Connection, path: &str, value: Value<'_>) -> zbus::Result<i32> {
    set_value_on(conn, SERVICE, path, value).await
}

async fn set_value_on(
    conn: &zbus::Connection,
    service: &str,
    path: &str,
    value: Value<'_>,
) -> zbus::Result<i32> {
    let reply = conn.call_method(Some(service), path, Some(BUS_ITEM), "SetValue", &(value,)).await?;
    reply.body().deserialize::<i32>()
}

async fn get_value(conn: &zbus::Connection, path: &str) -> zbus::Result<OwnedValue> {
    let reply = conn.call_method(Some(SERVICE), path, Some(BUS_ITEM), "GetValue", &()).await?;
    reply.body().deserialize::<OwnedValue>()
}

fn i32_at(items: &Items, path: &str) -> Option<i32> {
    items.get(path).and_then(|i| i.get("Value")).and_then(i32_of)
}

fn f64_at(items: &Items, path: &str) -> Option<f64> {
    items.get(path).and_then(|i| i.get("Value")).and_then(f64_of)
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_charging_off_reaches_the_jbd_and_comes_back() {
    let dir = scratch_dir("e2e-writes-on");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let simulator = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    simulator.control().set_frozen(true);
    let link = dir.join("ttyBMS0");
    link_pty(&link, simulator.path());
    // No recovery hold, so charging is allowed again as soon as the FET is back on.
    let extra = "\n[[port.battery]]\nallow_writes = true\n\n[charge]\ncurrent_recovery_hold_s = 0.0\n";
    let _daemon = start_daemon_with(&dir, bus.address(), &link, Protocol::Jbd, &[], extra);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for(&conn, Duration::from_secs(15), "connect", connected).await;
    assert_eq!(i32_at(&items, "/Settings/HasSettings"), Some(1));
    assert_eq!(i32_at(&items, "/Settings/ForceChargingOff"), Some(0));
    assert_eq!(i32_at(&items, "/Settings/ForceDischargingOff"), Some(0));
    assert!(!items.contains_key("/Settings/ResetSocTo"), "JBD classic has no SoC write");
    assert_eq!(i32_at(&items, "/Io/AllowToCharge"), Some(1));
    assert_eq!(f64_at(&items, "/Info/MaxChargeCurrent"), Some(50.0));

    // Out of range and wrong type are refused and nothing is written.
    assert_eq!(set_value(&conn, "/Settings/ForceChargingOff", Value::I32(2)).await.unwrap(), 2);
    assert_eq!(set_value(&conn, "/Settings/ForceChargingOff", Value::from("1")).await.unwrap(), 1);
    assert_eq!(set_value(&conn, "/Settings/HasSettings", Value::I32(0)).await.unwrap(), 1);

    assert_eq!(set_value(&conn, "/Settings/ForceChargingOff", Value::I32(1)).await.unwrap(), 0);
    wait_until("the charge FET to go off", || simulator.control().charge_fet_off()).await;
    assert!(!simulator.control().discharge_fet_off(), "the discharge FET stays on");
    let items = wait_for(&conn, Duration::from_secs(5), "AllowToCharge 0", |i| {
        i32_at(i, "/Io/AllowToCharge") == Some(0) && f64_at(i, "/Info/MaxChargeCurrent") == Some(0.0)
    })
    .await;
    assert_eq!(i32_at(&items, "/Settings/ForceChargingOff"), Some(1), "the path shows the request");
    assert_eq!(i32_at(&items, "/Io/AllowToDischarge"), Some(1));

    assert_eq!(set_value(&conn, "/Settings/ForceChargingOff", Value::I32(0)).await.unwrap(), 0);
    wait_until("the charge FET to come back", || !simulator.control().charge_fet_off()).await;
    let items = wait_for(&conn, Duration::from_secs(5), "AllowToCharge 1", |i| {
        i32_at(i, "/Io/AllowToCharge") == Some(1) && f64_at(i, "/Info/MaxChargeCurrent") > Some(0.0)
    })
    .await;
    assert_eq!(i32_at(&items, "/Settings/ForceChargingOff"), Some(0));
    assert_eq!(simulator.control().writes(), 2, "one write per accepted SetValue");
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    assert!(log.contains("acknowledged"), "the outcome is logged:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_writes_the_paths_do_not_exist() {
    let dir = scratch_dir("e2e-writes-off");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let simulator = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    let link = dir.join("ttyBMS0");
    link_pty(&link, simulator.path());
    let _daemon = start_daemon_for(&dir, bus.address(), &link, Protocol::Jbd, &[]);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for(&conn, Duration::from_secs(15), "connect", connected).await;
    assert!(!items.keys().any(|p| p.starts_with("/Settings/")), "no settings paths");
    for path in ["/Settings/ForceChargingOff", "/Settings/HasSettings"] {
        match set_value(&conn, path, Value::I32(1)).await.unwrap_err() {
            zbus::Error::MethodError(name, _, _) => {
                assert_eq!(name.as_str(), "org.freedesktop.DBus.Error.UnknownObject", "{path}")
            }
            other => panic!("{path}: expected UnknownObject, got {other:?}"),
        }
        assert!(get_value(&conn, path).await.is_err(), "{path}");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(simulator.control().writes(), 0, "nothing written");
    assert!(!simulator.control().charge_fet_off());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The UP16S SoC write from D-Bus: two packs share one bus, only pack 2 allows writes.
/// `ResetSocTo` alone sends nothing; `ResetSocToApply` = 1 sets pack 2's SoC on the wire (pack 1
/// untouched) and the published `/Soc` follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_soc_reaches_one_up16s_pack_on_a_shared_bus() {
    const PACK_1: &str = "com.victronenergy.battery.ttyBMS0_1";
    const PACK_2: &str = "com.victronenergy.battery.ttyBMS0_2";
    let dir = scratch_dir("e2e-writes-soc");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let simulator = sim::spawn(Protocol::JbdUp16s, &[1, 2], 16).unwrap();
    simulator.control().set_frozen(true);
    let link = dir.join("ttyBMS0");
    link_pty(&link, simulator.path());
    let extra = "\n[[port.battery]]\naddress = 2\nallow_writes = true\n";
    let _daemon = start_daemon_with(&dir, bus.address(), &link, Protocol::JbdUp16s, &[1, 2], extra);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let pack_1 = wait_for_service(&conn, PACK_1, Duration::from_secs(15), "pack 1", connected).await;
    assert!(!pack_1.keys().any(|p| p.starts_with("/Settings/")), "pack 1 does not allow writes");
    let items = wait_for_service(&conn, PACK_2, Duration::from_secs(15), "pack 2", connected).await;
    assert_eq!(i32_at(&items, "/Settings/HasSettings"), Some(1));
    assert_eq!(i32_at(&items, "/Settings/ResetSocToApply"), Some(0));
    assert!(items.contains_key("/Settings/ResetSocTo"));
    let soc_before = simulator.pack(Some(1)).map(|p| p.soc_percent);

    assert_eq!(set_value_on(&conn, PACK_2, "/Settings/ResetSocTo", Value::F64(120.0)).await.unwrap(), 2);
    assert_eq!(set_value_on(&conn, PACK_2, "/Settings/ResetSocTo", Value::F64(42.5)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(simulator.control().writes(), 0, "ResetSocTo alone sends nothing");

    assert_eq!(set_value_on(&conn, PACK_2, "/Settings/ResetSocToApply", Value::I32(1)).await.unwrap(), 0);
    wait_until("pack 2's SoC on the wire", || simulator.pack(Some(2)).map(|p| p.soc_percent) == Some(42.5))
        .await;
    let items = wait_for_service(&conn, PACK_2, Duration::from_secs(5), "/Soc 42.5", |i| {
        number(i, "/Soc").is_some_and(|soc| (soc - 42.5).abs() < 0.51)
    })
    .await;
    assert_eq!(i32_at(&items, "/Settings/ResetSocToApply"), Some(0), "reads 0 again");
    assert_eq!(simulator.pack(Some(1)).map(|p| p.soc_percent), soc_before, "pack 1 untouched");
    assert_eq!(simulator.control().writes(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The UP16S SoC write and the JBD MOSFET write on the wire, through the driver's `send`.
#[tokio::test]
async fn driver_writes_are_acknowledged_by_the_simulators() {
    let timeout = Duration::from_millis(300);
    let up = sim::spawn(Protocol::JbdUp16s, &[1, 2], 16).unwrap();
    up.control().set_frozen(true);
    let mut link = driver::open(Protocol::JbdUp16s, &up.path().to_string_lossy(), 9600).await.unwrap();
    send_write(Protocol::JbdUp16s, &mut link, Some(2), Write::Soc(87.5), timeout).await.unwrap();
    assert_eq!(up.pack(Some(2)).map(|p| p.soc_percent), Some(87.5));
    assert_ne!(up.pack(Some(1)).map(|p| p.soc_percent), Some(87.5), "only the addressed pack");
    assert!(send_write(Protocol::JbdUp16s, &mut link, Some(3), Write::Soc(50.0), timeout).await.is_err());
    let wrong_kind = Write::Mosfets(FetRequest::default());
    assert!(send_write(Protocol::JbdUp16s, &mut link, Some(1), wrong_kind, timeout).await.is_err());
    assert_eq!(up.control().writes(), 1);

    let jbd = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    let mut link = driver::open(Protocol::Jbd, &jbd.path().to_string_lossy(), 9600).await.unwrap();
    let both_off = Write::Mosfets(FetRequest { charge_on: false, discharge_on: false });
    send_write(Protocol::Jbd, &mut link, None, both_off, timeout).await.unwrap();
    assert!(jbd.control().charge_fet_off() && jbd.control().discharge_fet_off());
    let battery = driver::poll_once(Protocol::Jbd, &mut link, None, false, timeout)
        .await
        .expect("a reading after the write");
    assert_eq!((battery.charge_fet, battery.discharge_fet), (Some(false), Some(false)));
}
