//! Issue 7 end to end: four simulated packs (two JBD UP16S on one shared pty bus, two JBD on ports
//! of their own) in one parallel bank, the real daemon, a private D-Bus. Checks the aggregate
//! service (sums, split-capped limits, P<n>C<m> ids) and the per-pack services (no /Info limits),
//! then unplugs one pack's port (the pty disappears) and plugs it back: the daemon keeps running,
//! the pack's values go invalid, the bank's limits shrink and recover, and a pack whose BMS blocks
//! charging takes its share out.

mod support;

use bms_bridge::config::Protocol;
use bms_bridge::sim::{self, PtySimulator};
use bms_bridge::victron::private_bus::PrivateBus;
use std::path::Path;
use std::time::Duration;
use support::daemon::*;

const BANK: &str = "com.victronenergy.battery.bank_House";
const PACKS: [&str; 4] = [
    "com.victronenergy.battery.ttyBUS0_1",
    "com.victronenergy.battery.ttyBUS0_2",
    "com.victronenergy.battery.ttyJBD1",
    "com.victronenergy.battery.ttyJBD2",
];
const WAIT: Duration = Duration::from_secs(20);

/// A frozen simulator whose pack(s) carry `(address, capacity Ah, current A)`.
fn simulator(protocol: Protocol, packs: &[(Option<u8>, f64, f64)]) -> PtySimulator {
    let addresses: Vec<u8> = packs.iter().filter_map(|p| p.0).collect();
    let sim = sim::spawn(protocol, &addresses, 16).unwrap();
    sim.control().set_frozen(true);
    for &(address, capacity, current) in packs {
        assert!(sim.configure(address, |p| {
            p.capacity_ah = capacity;
            p.current_a = current;
        }));
    }
    sim
}

fn config(dir: &Path, bus: &str) -> String {
    let d = dir.display();
    format!(
        r#"[daemon]
poll_interval_ms = 250
stale_after_s = 2.0
state_dir = "{d}/state"

[dbus]
bus = "{bus}"
device_instance = 7

[charge]
current_recovery_hold_s = 0
current_recovery_a_per_s = 0

[[port]]
device = "{d}/ttyBUS0"
protocol = "jbd_up16s"
addresses = [1, 2]
timeout_ms = 200

[[port]]
device = "{d}/ttyJBD1"
protocol = "jbd"
timeout_ms = 200

[[port.battery]]
name = "Garage"

[[port]]
device = "{d}/ttyJBD2"
protocol = "jbd"
timeout_ms = 200

[[bank]]
name = "House"
packs = ["{d}/ttyBUS0#1", "{d}/ttyBUS0#2", "Garage", "{d}/ttyJBD2"]
startup_wait_s = 10
"#
    )
}

fn near(items: &Items, path: &str, expected: f64, tolerance: f64) -> bool {
    number(items, path).is_some_and(|v| (v - expected).abs() <= tolerance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_packs_one_bank_unplug_and_replug() {
    let dir = scratch_dir("multi");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    // Unequal packs: the 200 Ah pack takes 20 of the 45 A, the small one 5 A.
    let shared = simulator(Protocol::JbdUp16s, &[(Some(1), 100.0, 30.0), (Some(2), 100.0, 30.0)]);
    let garage = simulator(Protocol::Jbd, &[(None, 200.0, 60.0)]);
    let mut small = Some(simulator(Protocol::Jbd, &[(None, 100.0, 15.0)]));
    link_pty(&dir.join("ttyBUS0"), shared.path());
    link_pty(&dir.join("ttyJBD1"), garage.path());
    if let Some(sim) = &small {
        link_pty(&dir.join("ttyJBD2"), sim.path());
    }
    let mut daemon = start_daemon_with_config(&dir, &config(&dir, bus.address()));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();

    // 1. All four packs: the bank sums them and is limited by the pack that takes most current:
    // 60/135 of the bank current on a pack with its own 50 A limit -> 112.5 A (the split is
    // measured at 135 A: trusted up to 189 A). Discharge (never
    // measured): the worst plausible split, any pack may take it all -> 60 A (issue 17).
    let items = wait_for_service(&conn, BANK, WAIT, "four packs and the split limit", |i| {
        connected(i)
            && near(i, "/System/NrOfModulesOnline", 4.0, 0.0)
            && near(i, "/Info/MaxChargeCurrent", 112.5, 0.01)
    })
    .await;
    assert!(near(&items, "/Dc/0/Current", 135.0, 0.01));
    assert!(near(&items, "/Info/MaxDischargeCurrent", 60.0, 0.01));
    assert!(near(&items, "/Info/MaxChargeVoltage", 55.2, 1e-6), "16 x 3.45 V");
    assert!(near(&items, "/System/NrOfModulesOffline", 0.0, 0.0));
    assert!(near(&items, "/InstalledCapacity", 500.0, 0.01));
    assert!(near(&items, "/Soc", (60.0 * 100.0 + 55.0 * 100.0 + 60.0 * 200.0 + 60.0 * 100.0) / 500.0, 0.5));
    assert_eq!(items["/System/MaxVoltageCellId"]["Value"].to_string().trim_matches('"'), "P3C5");
    assert!(near(&items, "/Alarms/BmsCable", 0.0, 0.0));
    let voltages: Vec<f64> = [shared.pack(Some(1)), shared.pack(Some(2)), garage.pack(None)]
        .into_iter()
        .flatten()
        .chain(small.as_ref().and_then(|s| s.pack(None)))
        .map(|p| p.voltage_v())
        .collect();
    let mean = voltages.iter().sum::<f64>() / 4.0;
    assert!(near(&items, "/Dc/0/Voltage", mean, 0.02), "{mean}");

    // Pack services: measurements, no limits (systemcalc sees one BMS).
    for (name, current) in PACKS.iter().zip([30.0, 30.0, 60.0, 15.0]) {
        let items = wait_for_service(&conn, name, WAIT, "pack connected", connected).await;
        assert!(near(&items, "/Dc/0/Current", current, 0.01), "{name}");
        for path in ["/Info/MaxChargeVoltage", "/Info/MaxChargeCurrent", "/Info/MaxDischargeCurrent"] {
            assert!(is_invalid(value(&items, path)), "{name} {path} must be invalid");
        }
    }

    // 2. Unplug the small pack: the pty disappears. Its service stays, values invalid; the bank
    // carries on with three packs, a cable warning and smaller limits (20/40 on the big pack).
    drop(small.take());
    let _ = std::fs::remove_file(dir.join("ttyJBD2"));
    let items = wait_for_service(&conn, BANK, WAIT, "three packs", |i| {
        near(i, "/System/NrOfModulesOffline", 1.0, 0.0) && near(i, "/Info/MaxChargeCurrent", 100.0, 0.01)
    })
    .await;
    assert!(connected(&items));
    assert!(near(&items, "/System/NrOfModulesOnline", 3.0, 0.0));
    assert!(near(&items, "/Alarms/BmsCable", 1.0, 0.0), "warning, not alarm");
    assert!(near(&items, "/Dc/0/Current", 120.0, 0.01), "no stale pack current");
    assert!(near(&items, "/Info/MaxDischargeCurrent", 60.0, 0.01));
    let lost = wait_for_service(&conn, PACKS[3], WAIT, "pack lost", |i| !connected(i)).await;
    assert!(is_invalid(value(&lost, "/Dc/0/Voltage")), "never frozen");
    assert!(is_invalid(value(&lost, "/Info/MaxChargeCurrent")));
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon keeps running");

    // 3. Plug it back: four packs again (after three good replies), limits recover: the big
    // pack's share falls back from 20/40 towards 20/45 smoothed (a smaller share is believed
    // slowly), so the limit rises from 100 A towards 112.5 A.
    let back = simulator(Protocol::Jbd, &[(None, 100.0, 15.0)]);
    link_pty(&dir.join("ttyJBD2"), back.path());
    let items = wait_for_service(&conn, BANK, WAIT, "four packs again", |i| {
        near(i, "/System/NrOfModulesOnline", 4.0, 0.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|a| a > 101.0 && a <= 112.5)
    })
    .await;
    assert!(near(&items, "/Alarms/BmsCable", 0.0, 0.0));
    assert!(near(&items, "/Dc/0/Current", 135.0, 0.01));
    wait_for_service(&conn, PACKS[3], WAIT, "pack back", connected).await;

    // 4. The big pack's BMS blocks charging: its share goes to the others (30:30:15 -> 0.4 on a
    // 50 A pack: 125 A, held to 1.4 x the 75 A the split was measured at = 105 A while the
    // simulated currents stay put), counted as blocking; discharge is unaffected.
    garage.control().set_charge_fet_off(true);
    let items = wait_for_service(&conn, BANK, WAIT, "a pack blocking charge", |i| {
        near(i, "/System/NrOfModulesBlockingCharge", 1.0, 0.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|a| a > 100.0 && a <= 125.0)
    })
    .await;
    assert!(near(&items, "/Info/MaxDischargeCurrent", 60.0, 0.01));
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon keeps running");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two more bank shapes on one daemon: a series bank published only as the aggregate (two 16-cell
/// JBD packs make one 32-cell battery), and a parallel bank published only as its packs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_bank_aggregate_only_and_a_packs_only_bank() {
    const SERIES: &str = "com.victronenergy.battery.bank_Stack";
    const PACKS_ONLY: &str = "com.victronenergy.battery.bank_Loose";
    let dir = scratch_dir("multi-series");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let top = simulator(Protocol::Jbd, &[(None, 100.0, 8.0)]);
    let mut bottom = Some(simulator(Protocol::Jbd, &[(None, 100.0, 8.0)]));
    let loose =
        [simulator(Protocol::Jbd, &[(None, 100.0, 3.0)]), simulator(Protocol::Jbd, &[(None, 100.0, 4.0)])];
    let d = dir.display();
    let mut text = format!(
        "[daemon]\npoll_interval_ms = 250\nstale_after_s = 2.0\nstate_dir = \"{d}/state\"\n\n\
         [dbus]\nbus = \"{}\"\ndevice_instance = 7\n\n\
         [charge]\ncurrent_recovery_hold_s = 0\ncurrent_recovery_a_per_s = 0\n",
        bus.address()
    );
    for (name, sim) in [
        ("ttyTOP", Some(&top)),
        ("ttyBOTTOM", bottom.as_ref()),
        ("ttyL1", Some(&loose[0])),
        ("ttyL2", Some(&loose[1])),
    ] {
        if let Some(sim) = sim {
            link_pty(&dir.join(name), sim.path());
        }
        text += &format!("\n[[port]]\ndevice = \"{d}/{name}\"\nprotocol = \"jbd\"\ntimeout_ms = 200\n");
    }
    text += &format!(
        "\n[[bank]]\nname = \"Stack\"\ntopology = \"series\"\npublish = \"aggregate\"\n\
         packs = [\"{d}/ttyTOP\", \"{d}/ttyBOTTOM\"]\nstartup_wait_s = 10\n\n\
         [[bank]]\nname = \"Loose\"\npublish = \"packs\"\npacks = [\"{d}/ttyL1\", \"{d}/ttyL2\"]\n\
         startup_wait_s = 10\n"
    );
    let mut daemon = start_daemon_with_config(&dir, &text);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();

    // Series: one 32-cell battery, voltage the sum, the common current, CVL 32 x 3.45 V.
    let items = wait_for_service(&conn, SERIES, WAIT, "the series bank", |i| {
        connected(i) && near(i, "/System/NrOfModulesOnline", 2.0, 0.0)
    })
    .await;
    let sum: f64 = [top.pack(None), bottom.as_ref().and_then(|b| b.pack(None))]
        .into_iter()
        .flatten()
        .map(|p| p.voltage_v())
        .sum();
    assert!(near(&items, "/Dc/0/Voltage", sum, 0.02), "{sum}");
    assert!(near(&items, "/Dc/0/Current", 8.0, 0.01));
    assert!(near(&items, "/Info/MaxChargeVoltage", 32.0 * 3.45, 1e-6));
    assert!(near(&items, "/Info/MaxChargeCurrent", 50.0, 0.01), "the smallest pack limit");
    assert!(number(&items, "/Voltages/Cell32").is_some(), "the cells of both packs");
    // Aggregate only: the packs have no services of their own.
    let names = zbus::fdo::DBusProxy::new(&conn).await.unwrap().list_names().await.unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    assert!(!names.iter().any(|n| n.ends_with("ttyTOP") || n.ends_with("ttyBOTTOM")), "{names:?}");

    // Packs only: each pack a service without limits, no bank service.
    for name in ["com.victronenergy.battery.ttyL1", "com.victronenergy.battery.ttyL2"] {
        let items = wait_for_service(&conn, name, WAIT, "a pack of the packs-only bank", connected).await;
        for path in ["/Info/MaxChargeVoltage", "/Info/MaxChargeCurrent", "/Info/MaxDischargeCurrent"] {
            assert!(is_invalid(value(&items, path)), "{name} {path} must be invalid");
        }
    }
    let names = zbus::fdo::DBusProxy::new(&conn).await.unwrap().list_names().await.unwrap();
    assert!(!names.iter().any(|n| n.as_str() == PACKS_ONLY), "no service for a packs-only bank");

    // One series pack blocks charging: the stack cannot charge at all.
    top.control().set_charge_fet_off(true);
    wait_for_service(&conn, SERIES, WAIT, "CCL 0 with a pack blocking", |i| {
        near(i, "/Info/MaxChargeCurrent", 0.0, 0.0)
    })
    .await;
    top.control().set_charge_fet_off(false);
    wait_for_service(&conn, SERIES, WAIT, "CCL back", |i| near(i, "/Info/MaxChargeCurrent", 50.0, 0.01))
        .await;

    // A series pack unplugged: no partial voltage, no charging, a cable warning; then back.
    drop(bottom.take());
    let _ = std::fs::remove_file(dir.join("ttyBOTTOM"));
    let items = wait_for_service(&conn, SERIES, WAIT, "a series pack missing", |i| {
        near(i, "/System/NrOfModulesOffline", 1.0, 0.0)
    })
    .await;
    assert!(is_invalid(value(&items, "/Dc/0/Voltage")), "no partial sum");
    // Unknown cells in the string: the BMS-lost policy at once (issue 17).
    assert!(near(&items, "/Info/MaxChargeCurrent", 0.0, 0.0));
    assert!(near(&items, "/Info/MaxChargeVoltage", 32.0 * 3.375, 1e-6), "float of the string");
    assert!(near(&items, "/Alarms/BmsCable", 2.0, 0.0));
    let back = simulator(Protocol::Jbd, &[(None, 100.0, 8.0)]);
    link_pty(&dir.join("ttyBOTTOM"), back.path());
    wait_for_service(&conn, SERIES, WAIT, "the stack whole again", |i| {
        near(i, "/System/NrOfModulesOnline", 2.0, 0.0) && near(i, "/Info/MaxChargeCurrent", 50.0, 0.01)
    })
    .await;
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon keeps running");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[dbus] properties_changed = false` holds for a bank's services as for a battery's (a 2-pack
/// bank once sent 848 PropertiesChanged in 10 s with it off): with values changing every poll,
/// no PropertiesChanged at all, and at most one ItemsChanged per service per poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_with_properties_changed_off_sends_none_and_one_items_changed_per_poll() {
    use futures_util::StreamExt;
    let dir = scratch_dir("multi-quiet");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    // Not frozen: the simulated packs charge, so voltage, current and SoC move every poll.
    let packs = [sim::spawn(Protocol::Jbd, &[], 16).unwrap(), sim::spawn(Protocol::Jbd, &[], 16).unwrap()];
    let d = dir.display();
    let mut text = format!(
        "[daemon]\npoll_interval_ms = 250\nstale_after_s = 2.0\nstate_dir = \"{d}/state\"\n\n\
         [dbus]\nbus = \"{}\"\ndevice_instance = 7\nproperties_changed = false\n",
        bus.address()
    );
    for (i, sim) in packs.iter().enumerate() {
        link_pty(&dir.join(format!("ttyQ{i}")), sim.path());
        text += &format!("\n[[port]]\ndevice = \"{d}/ttyQ{i}\"\nprotocol = \"jbd\"\ntimeout_ms = 200\n");
    }
    text += &format!(
        "\n[[bank]]\nname = \"Quiet\"\npacks = [\"{d}/ttyQ0\", \"{d}/ttyQ1\"]\nstartup_wait_s = 10\n"
    );
    let daemon = start_daemon_with_config(&dir, &text);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    wait_for_service(&conn, "com.victronenergy.battery.bank_Quiet", WAIT, "the bank", connected).await;
    for i in 0..2 {
        wait_for_service(&conn, &format!("com.victronenergy.battery.ttyQ{i}"), WAIT, "a pack", connected)
            .await;
    }

    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(bms_bridge::victron::BUS_ITEM)
        .unwrap()
        .build();
    let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, None).await.unwrap();
    let window = Duration::from_secs(5);
    let polls = (window.as_millis() / 250) as usize;
    let mut items_changed: std::collections::HashMap<String, usize> = Default::default();
    let mut properties_changed = 0usize;
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(end, signals.next()).await {
        let header = msg.header();
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        match header.member().map(|m| m.as_str().to_owned()).as_deref() {
            Some("ItemsChanged") => *items_changed.entry(sender).or_default() += 1,
            Some("PropertiesChanged") => properties_changed += 1,
            _ => {}
        }
    }
    println!("in {window:?} ({polls} polls): ItemsChanged per service {items_changed:?}, PropertiesChanged {properties_changed}");
    assert_eq!(items_changed.len(), 3, "the bank and both packs changed: {items_changed:?}");
    assert_eq!(properties_changed, 0, "properties_changed = false");
    for (sender, count) in &items_changed {
        // One per poll; one more for a window that starts just before a cycle.
        assert!(*count <= polls + 1, "{sender}: {count} ItemsChanged in {polls} polls");
    }
    drop(daemon);
}
