//! `current_source` / `soc_source`: a simulated shunt service on the private bus (our own
//! BatteryService publishing a chosen current and SoC, as a SmartShunt's would be), a simulated
//! JBD pack on a pty, the daemon in-process. The battery publishes the shunt's current and SoC
//! while the shunt is there, and the BMS's own again once it is gone.

mod support;

use bms_bridge::app;
use bms_bridge::battery::Battery;
use bms_bridge::config::{self, Protocol};
use bms_bridge::control::ChargeLimits;
use bms_bridge::sim;
use bms_bridge::victron::{BatteryService, BusAddress, PrivateBus};
use std::time::Duration;
use support::daemon::*;

const NAME: &str = "com.victronenergy.battery.ttyJBD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shunt_current_and_soc_are_used_while_the_shunt_is_there() {
    let dir = scratch_dir("external-sensor");
    let bus = PrivateBus::start().expect("dbus-daemon");
    let jbd = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    jbd.control().set_frozen(true);
    assert!(jbd.configure(None, |p| p.current_a = 12.0));
    link_pty(&dir.join("ttyJBD"), jbd.path());
    // The shunt: -42.5 A (discharging) and 33 % SoC, unlike the BMS's +12 A and 60 %.
    let shunt_battery = Battery { current_a: Some(-42.5), soc_percent: Some(33.0), ..Battery::default() };
    let limits = ChargeLimits::default();
    let shunt = BatteryService::start(
        &bus.bus_address(),
        support::identity("shunt"),
        &support::snapshot(&shunt_battery, &limits),
    )
    .await
    .unwrap();
    let d = dir.display();
    let text = format!(
        "[daemon]\npoll_interval_ms = 500\nstate_dir = \"{d}/state\"\n\n[dbus]\nbus = \"{}\"\n\n\
         [[port]]\ndevice = \"{d}/ttyJBD\"\nprotocol = \"jbd\"\ntimeout_ms = 300\n\n\
         [[port.battery]]\ncurrent_source = \"dbus:com.victronenergy.battery.shunt\"\n\
         soc_source = \"dbus:com.victronenergy.battery.shunt\"\n",
        bus.address()
    );
    let cfg = config::parse(&text, "external.toml").expect("valid config");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(app::run(cfg, BusAddress::Address(bus.address().to_owned()), stop_rx));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for_service(&conn, NAME, Duration::from_secs(20), "the shunt's current", |i| {
        number(i, "/Dc/0/Current") == Some(-42.5)
    })
    .await;
    assert_eq!(number(&items, "/Soc"), Some(33.0), "the shunt's SoC");
    // The BMS's voltage and cells stay the BMS's.
    let pack = jbd.pack(None).unwrap();
    assert!(number(&items, "/Dc/0/Voltage").is_some_and(|v| (v - pack.voltage_v()).abs() < 0.011));
    // The shunt leaves the bus: within 3 s of staleness plus a poll, the BMS's own values.
    drop(shunt);
    let items = wait_for_service(&conn, NAME, Duration::from_secs(8), "the BMS's current again", |i| {
        number(i, "/Dc/0/Current") == Some(12.0)
    })
    .await;
    assert!(number(&items, "/Soc").is_some_and(|s| (s - pack.soc_percent.round()).abs() <= 1.0));
    stop.send_replace(true);
    daemon.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
