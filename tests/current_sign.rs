//! The current's sign through the whole daemon (simulated Daly pack on a pty, the app, a private
//! D-Bus): the oracle is the simulated pack's own current. A pack that sends the other sign
//! convention is found from its 0x93 state within a few polls; `invert_current` forces either way.

mod support;

use bms_bridge::app;
use bms_bridge::config::{self, Protocol};
use bms_bridge::sim;
use bms_bridge::victron::{BusAddress, PrivateBus};
use std::time::Duration;
use support::daemon::*;

const NAME: &str = "com.victronenergy.battery.ttyDALY";

/// Runs the daemon on a Daly pack charging at 30 A whose current word uses the other convention,
/// with `invert_current` as given; returns the current D-Bus shows after `settle`.
async fn shown_current(tag: &str, invert: Option<bool>, settle: Duration) -> (f64, f64) {
    let dir = scratch_dir(tag);
    let bus = PrivateBus::start().expect("dbus-daemon");
    let daly = sim::spawn(Protocol::Daly, &[], 16).unwrap();
    daly.control().set_frozen(true);
    daly.control().set_current_sign_reversed(true);
    assert!(daly.configure(Some(0x40), |p| p.current_a = 30.0));
    link_pty(&dir.join("ttyDALY"), daly.path());
    let d = dir.display();
    let invert = invert.map_or(String::new(), |i| format!("\n[[port.battery]]\ninvert_current = {i}\n"));
    let text = format!(
        "[daemon]\npoll_interval_ms = 1000\nstate_dir = \"{d}/state\"\n\n[dbus]\nbus = \"{}\"\n\n\
         [[port]]\ndevice = \"{d}/ttyDALY\"\nprotocol = \"daly\"\ntimeout_ms = 300\n{invert}",
        bus.address()
    );
    let cfg = config::parse(&text, "sign.toml").expect("valid config");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(app::run(cfg, BusAddress::Address(bus.address().to_owned()), stop_rx));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for_service(&conn, NAME, Duration::from_secs(20), "a reading", |i| {
        number(i, "/Dc/0/Current").is_some()
    })
    .await;
    let first = number(&items, "/Dc/0/Current").unwrap();
    tokio::time::sleep(settle).await;
    let items = get_items_of(&conn, NAME).await.unwrap();
    let later = number(&items, "/Dc/0/Current").unwrap();
    stop.send_replace(true);
    daemon.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (first, later)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_convention_is_found_from_the_bms_state() {
    // Three contradicting polls at 1 s: 5 s after the first reading is ample.
    let (first, later) = shown_current("sign-auto", None, Duration::from_secs(5)).await;
    assert_eq!(first, -30.0, "the decoder's convention first");
    assert_eq!(later, 30.0, "the pack's own 0x93 state (charging) wins after a few polls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invert_current_forces_either_way() {
    let (first, later) = shown_current("sign-forced-true", Some(true), Duration::from_secs(5)).await;
    assert_eq!((first, later), (30.0, 30.0));
    let (first, later) = shown_current("sign-forced-false", Some(false), Duration::from_secs(5)).await;
    assert_eq!((first, later), (-30.0, -30.0), "invert_current = false is kept, against the state");
}
