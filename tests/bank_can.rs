//! Issue 17, every battery kind as a bank member: a Victron-dialect CAN pack (simulated on an
//! in-memory CAN bus) and a JBD pack (simulated on a pty) in one parallel bank, the daemon's app
//! in-process, a private D-Bus. The CAN pack's effective rating is the smaller of its configured
//! 200 A and the 100 A its BMS reports (0x351); when its frames stop it leaves the bank.

mod support;

use bms_bridge::app;
use bms_bridge::config::{self, Protocol};
use bms_bridge::sim;
use bms_bridge::victron::{BusAddress, PrivateBus};
use std::time::{Duration, Instant};
use support::daemon::*;

const BANK: &str = "com.victronenergy.battery.bank_Mixed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_can_pack_and_a_serial_pack_in_one_bank() {
    let dir = scratch_dir("bank-can");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let can = bms_bridge::bms::victron_can::sim::spawn(16);
    can.control.set_frozen(true);
    assert!(can.packs.update(None, |p| p.current_a = 80.0));
    let jbd = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    jbd.control().set_frozen(true);
    assert!(jbd.configure(None, |p| p.current_a = 20.0));
    link_pty(&dir.join("ttyJBD"), jbd.path());
    let d = dir.display();
    let text = format!(
        "[daemon]\npoll_interval_ms = 1000\nstate_dir = \"{d}/state\"\n\n\
         [dbus]\nbus = \"{}\"\ndevice_instance = 7\n\n\
         [charge]\ncurrent_recovery_hold_s = 0\ncurrent_recovery_a_per_s = 0\n\n\
         [[port]]\ndevice = \"simcan0\"\nprotocol = \"victron_can\"\n\n\
         [[port.battery]]\nname = \"Can\"\nmax_charge_current = 200.0\n\n\
         [[port]]\ndevice = \"{d}/ttyJBD\"\nprotocol = \"jbd\"\ntimeout_ms = 300\n\n\
         [[port.battery]]\nname = \"Jbd\"\nmax_charge_current = 50.0\n\n\
         [[bank]]\nname = \"Mixed\"\npacks = [\"Can\", \"Jbd\"]\nstartup_wait_s = 10\n",
        bus.address()
    );
    let cfg = config::parse(&text, "bank-can.toml").expect("valid config");
    let buses = app::MemoryCanBuses::from([("simcan0".to_owned(), can.bus.clone())]);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let address = BusAddress::Address(bus.address().to_owned());
    let daemon = tokio::spawn(app::run_with_can(cfg, address, stop_rx, buses));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();

    // 80 A of 100 on the CAN pack (80 %), whose limit is its BMS's 100 A (below its 200 A
    // rating): CCL = 100 / 0.8 = 125 A (measured at 100 A: trusted that far), named after that
    // pack and rule.
    let items = wait_for_service(&conn, BANK, Duration::from_secs(20), "both packs, split measured", |i| {
        number(i, "/System/NrOfModulesOnline") == Some(2.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|c| (c - 125.0).abs() < 0.01)
    })
    .await;
    assert!(number(&items, "/Dc/0/Current").is_some_and(|a| (a - 100.0).abs() < 0.05));
    let limitation: String = value(&items, "/Info/ChargeLimitation").clone().try_into().unwrap();
    assert_eq!(limitation, "Pack 1 Can: BMS limit 100.0 A at 80 % of the bank current");

    // The CAN pack's frames stop: it leaves the bank; the JBD pack alone may take its 50 A.
    can.control.set_silent(true);
    let silent = Instant::now();
    let items = wait_for_service(&conn, BANK, Duration::from_secs(10), "the CAN pack gone", |i| {
        number(i, "/System/NrOfModulesOffline") == Some(1.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|c| (c - 50.0).abs() < 0.01)
    })
    .await;
    let took = silent.elapsed().as_secs_f64();
    println!("CAN frames stopped -> pack out of the bank, CCL 50 A after {took:.1} s");
    assert!(took <= 3.5, "{took:.1} s (frames stale after 2 s, one publish period more)");
    assert!(number(&items, "/Dc/0/Current").is_some_and(|a| (a - 20.0).abs() < 0.05), "no vanished pack");
    stop.send_replace(true);
    daemon.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The other CAN dialects as bank members: a JK CAN pack (listened to, DIP address 0) and a Daly
/// CAN pack (polled, address 1) on two interfaces in one parallel bank. The split the bank
/// measures is the simulated packs' currents (60 A and 40 A); its CCL is the Daly pack's 50 A
/// rating at its 40 % share. The Daly pack falls silent: it leaves, the JK pack alone may take
/// its own 100 A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jk_can_and_daly_can_packs_in_one_bank() {
    let dir = scratch_dir("bank-can-dialects");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let jk_bus = bms_bridge::transport::can::MemoryCanBus::new();
    let daly_bus = bms_bridge::transport::can::MemoryCanBus::new();
    let jk = bms_bridge::bms::jk_can::sim::spawn(&jk_bus, &[0], 16);
    let daly = bms_bridge::bms::daly_can::sim::spawn(&daly_bus, &[1], 16);
    jk.control.set_frozen(true);
    daly.control.set_frozen(true);
    assert!(jk.packs.update(Some(0), |p| p.current_a = 60.0));
    assert!(daly.packs.update(Some(0x40), |p| p.current_a = 40.0));
    let d = dir.display();
    let text = format!(
        "[daemon]\npoll_interval_ms = 1000\nstate_dir = \"{d}/state\"\n\n\
         [dbus]\nbus = \"{}\"\ndevice_instance = 7\n\n\
         [charge]\ncurrent_recovery_hold_s = 0\ncurrent_recovery_a_per_s = 0\n\n\
         [[port]]\ndevice = \"jkcan0\"\nprotocol = \"jk_can\"\n\n\
         [[port.battery]]\nname = \"Jk\"\nmax_charge_current = 100.0\n\n\
         [[port]]\ndevice = \"dalycan0\"\nprotocol = \"daly_can\"\naddresses = [1]\ntimeout_ms = 300\n\n\
         [[port.battery]]\naddress = 1\nname = \"Daly\"\nmax_charge_current = 50.0\n\n\
         [[bank]]\nname = \"Mixed\"\npacks = [\"Jk\", \"Daly\"]\nstartup_wait_s = 10\n",
        bus.address()
    );
    let cfg = config::parse(&text, "bank-can-dialects.toml").expect("valid config");
    let buses = app::MemoryCanBuses::from([("jkcan0".to_owned(), jk_bus), ("dalycan0".to_owned(), daly_bus)]);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let address = BusAddress::Address(bus.address().to_owned());
    let daemon = tokio::spawn(app::run_with_can(cfg, address, stop_rx, buses));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for_service(&conn, BANK, Duration::from_secs(20), "both packs, split measured", |i| {
        number(i, "/System/NrOfModulesOnline") == Some(2.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|c| (c - 125.0).abs() < 0.01)
    })
    .await;
    assert!(number(&items, "/Dc/0/Current").is_some_and(|a| (a - 100.0).abs() < 0.05));
    let limitation: String = value(&items, "/Info/ChargeLimitation").clone().try_into().unwrap();
    assert!(limitation.starts_with("Pack 2 Daly:"), "{limitation}");
    daly.control.set_silent(true);
    let silent = Instant::now();
    wait_for_service(&conn, BANK, Duration::from_secs(15), "the Daly pack gone", |i| {
        number(i, "/System/NrOfModulesOffline") == Some(1.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|c| (c - 100.0).abs() < 0.01)
    })
    .await;
    println!("Daly pack silent -> out of the bank, CCL 100 A after {:.1} s", silent.elapsed().as_secs_f64());
    stop.send_replace(true);
    daemon.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
