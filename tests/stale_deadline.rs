//! Loss is a deadline at exactly the last good reading + `stale_after_s`, one test per transport
//! (serial framed, serial Modbus, CAN), at a short and at a long poll interval. The oracle is
//! the simulator's own clock: when it last finished sending (`SimControl::last_sent`), not
//! anything the daemon reports. CCL must be 0 on D-Bus within stale_after_s + 1 s of that, and
//! never before stale_after_s (the BMS did answer until then).

mod support;

use bms_bridge::app;
use bms_bridge::config::{Config, PortConfig, Protocol};
use bms_bridge::sim::{self, SimControl};
use bms_bridge::victron::private_bus::PrivateBus;
use bms_bridge::victron::BusAddress;
use std::time::{Duration, Instant};
use support::daemon::*;

/// Polls `name` until CCL is 0; returns when that was first seen and the last time the battery
/// was still seen connected.
async fn time_to_ccl_zero(
    conn: &zbus::Connection,
    name: &str,
    limit: Duration,
) -> (Instant, Option<Instant>) {
    let start = Instant::now();
    let mut last_connected = None;
    loop {
        if let Ok(items) = get_items_of(conn, name).await {
            if number(&items, "/Info/MaxChargeCurrent") == Some(0.0) {
                return (Instant::now(), last_connected);
            }
            if number(&items, "/Connected") == Some(1.0) {
                last_connected = Some(Instant::now());
            }
        }
        assert!(start.elapsed() < limit, "{name}: CCL not 0 within {limit:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Silences the BMS, then checks when CCL reaches 0 against when the BMS last spoke.
async fn check_deadline(what: &str, conn: &zbus::Connection, name: &str, control: &SimControl, stale_s: f64) {
    control.set_silent(true);
    // A reply already on its way finishes within the wire time; after this the last one is known.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = control.last_sent().expect("the BMS answered before");
    let (zero, connected) = time_to_ccl_zero(conn, name, Duration::from_secs_f64(stale_s + 5.0)).await;
    let after = zero.saturating_duration_since(last).as_secs_f64();
    println!("{what}: CCL 0 {after:.2} s after the last reply (stale_after_s {stale_s})");
    assert!(after <= stale_s + 1.0, "{what}: CCL 0 only {after:.2} s after the last reply");
    let still = connected.map(|t| t.saturating_duration_since(last).as_secs_f64());
    assert!(
        still.is_some_and(|s| s >= stale_s - 0.5),
        "{what}: lost too early: last seen connected {still:?} s after the last reply"
    );
}

/// `address`: where the simulator answers (the protocol's default address, so the daemon's
/// config names none and the service is `ttyBMS0`).
async fn serial_case(protocol: Protocol, address: &[u8], poll_ms: u64, stale_s: f64) {
    let tag = format!("deadline-{}-{poll_ms}", protocol.name());
    let dir = scratch_dir(&tag);
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let sim = sim::spawn(protocol, address, 16).unwrap();
    let link = dir.join("ttyBMS0");
    link_pty(&link, sim.path());
    let text = format!(
        "[daemon]\npoll_interval_ms = {poll_ms}\nstale_after_s = {stale_s}\nstate_dir = \"{}\"\n\n\
         [dbus]\nbus = \"{}\"\n\n[[port]]\ndevice = \"{}\"\nprotocol = \"{}\"\ntimeout_ms = 300\n",
        dir.join("state").display(),
        bus.address(),
        link.display(),
        protocol.name(),
    );
    let _daemon = start_daemon_with_config(&dir, &text);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    wait_for(&conn, Duration::from_secs_f64(stale_s + 10.0), "a connected battery", connected).await;
    // Two more replies, so that the silence starts somewhere inside a poll cycle.
    let seen = sim.control().requests();
    while sim.control().requests() < seen + 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(poll_ms / 3)).await;
    check_deadline(&tag, &conn, SERVICE, sim.control(), stale_s).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every serial protocol (framed and Modbus) at a 1 s poll, and Modbus (Renogy) at a 5 s poll,
/// where the old tick (one poll interval) noticed the loss up to 5 s late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_bms_lost_at_the_deadline_at_short_and_long_poll_intervals() {
    let every = Protocol::ALL.iter().map(|&p| {
        let address: Vec<u8> = p.default_address().into_iter().collect();
        async move { serial_case(p, &address, 1000, 2.0).await }
    });
    let long = serial_case(Protocol::Renogy, &[0x30], 5000, 10.0);
    tokio::join!(futures_util::future::join_all(every), long);
}

/// CAN readings carry the time of their oldest essential frame; they used to be restamped when
/// forwarded, which made a silent CAN BMS lost about twice as late as configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_bms_lost_at_the_deadline() {
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let dir = scratch_dir("deadline-can");
    let simulator = bms_bridge::bms::victron_can::sim::spawn(16);
    let mut config = Config::default();
    config.daemon.state_dir = dir.clone();
    config.daemon.stale_after_s = 3.0;
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig::can("simcan0"));
    let buses = app::MemoryCanBuses::from([("simcan0".to_owned(), simulator.bus.clone())]);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let address = BusAddress::Address(bus.address().to_owned());
    let daemon = tokio::spawn(app::run_with_can(config, address, stop_rx, buses));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let name = "com.victronenergy.battery.simcan0";
    wait_for_service(&conn, name, Duration::from_secs(10), "a connected CAN battery", connected).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    check_deadline("can", &conn, name, &simulator.control, 3.0).await;
    stop.send_replace(true);
    daemon.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
