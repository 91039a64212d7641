//! Daren 485 and EG4 LifePower4 (the YD/T 1363 ASCII protocols) end to end with three packs on
//! one RS485 bus: simulator -> daemon -> private D-Bus. Each service shows its own pack's values
//! (the simulated packs start at different SoCs, so a reading routed to the wrong address
//! fails), a charge MOSFET off gives CCL 0, and when the bus goes silent every pack's CCL is 0
//! within stale_after_s + 1 s of its last reply (the simulator's log is the oracle) and not
//! before stale_after_s - 0.5 s.

mod support;

use bms_bridge::bms::daren_485::sim as daren_sim;
use bms_bridge::config::Protocol;
use bms_bridge::protocol::yd1363;
use bms_bridge::sim;
use bms_bridge::victron::private_bus::PrivateBus;
use std::time::{Duration, Instant};
use support::daemon::*;

const STALE_S: f64 = 2.0;
const WAIT: Duration = Duration::from_secs(20);

fn service(address: u8) -> String {
    format!("com.victronenergy.battery.ttyBUS0_{address}")
}

fn near(items: &Items, path: &str, want: f64, tolerance: f64) -> bool {
    number(items, path).is_some_and(|got| (got - want).abs() <= tolerance)
}

async fn three_packs_on_one_bus(protocol: Protocol, addresses: [u8; 3]) {
    let name = protocol.name();
    let dir = scratch_dir(&format!("bus-{name}"));
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let sim = sim::spawn(protocol, &addresses, 16).unwrap();
    sim.control().set_frozen(true);
    sim.configure_all(|pack| pack.current_a = -7.5);
    let link = dir.join("ttyBUS0");
    link_pty(&link, sim.path());
    let list: Vec<String> = addresses.iter().map(u8::to_string).collect();
    let text = format!(
        "[daemon]\npoll_interval_ms = 500\nstale_after_s = {STALE_S}\nstate_dir = \"{}\"\n\n\
         [dbus]\nbus = \"{}\"\n\n\
         [charge]\ncurrent_recovery_hold_s = 0\ncurrent_recovery_a_per_s = 0\n\n[[port]]\ndevice = \"{}\"\nprotocol = \"{name}\"\naddresses = [{}]\n\
         timeout_ms = 300\n",
        dir.join("state").display(),
        bus.address(),
        link.display(),
        list.join(", "),
    );
    let daemon = start_daemon_with_config(&dir, &text);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();

    let mut socs = Vec::new();
    for a in addresses {
        let items = wait_for_service(&conn, &service(a), WAIT, "connected", connected).await;
        let pack = sim.pack(Some(a)).unwrap();
        let cells = pack.cell_voltages_mv();
        let what = format!("{name} address {a}");
        assert!(near(&items, "/Dc/0/Voltage", pack.voltage_v(), 0.01), "{what}: voltage");
        // LifePower4 reports whole percent.
        assert!(near(&items, "/Soc", pack.soc_percent, 0.5), "{what}: SoC {:?}", number(&items, "/Soc"));
        assert!(near(&items, "/Dc/0/Current", -7.5, 0.005), "{what}: current");
        let min = f64::from(*cells.iter().min().unwrap()) / 1000.0;
        let max = f64::from(*cells.iter().max().unwrap()) / 1000.0;
        assert!(near(&items, "/System/MinCellVoltage", min, 0.0005), "{what}: min cell");
        assert!(near(&items, "/System/MaxCellVoltage", max, 0.0005), "{what}: max cell");
        assert!(near(&items, "/System/MOSTemperature", pack.temperature_mos_c, 0.051), "{what}: MOSFET");
        assert!(near(&items, "/Capacity", pack.remaining_ah(), 0.01), "{what}: remaining Ah");
        if protocol == Protocol::Daren485 {
            let serial = String::try_from(value(&items, "/Serial").clone()).ok();
            assert_eq!(serial, Some(daren_sim::serial(a)), "{what}: serial from 0xB0 module 3");
        }
        socs.push(number(&items, "/Soc").unwrap());
    }
    assert!(socs.windows(2).all(|w| w[0] > w[1]), "{name}: each service its own pack: {socs:?}");

    // The BMSes switch their charge MOSFETs off: CCL 0 on every pack, discharge untouched (and
    // back at once when they switch on: the recovery ramp is off in this config).
    sim.control().set_charge_fet_off(true);
    for a in addresses {
        let items = wait_for_service(&conn, &service(a), Duration::from_secs(5), "CCL 0 on FET off", |i| {
            number(i, "/Info/MaxChargeCurrent") == Some(0.0)
        })
        .await;
        assert_eq!(number(&items, "/Io/AllowToCharge"), Some(0.0), "{name} address {a}");
        assert!(number(&items, "/Info/MaxDischargeCurrent").is_some_and(|dcl| dcl > 0.0), "{name} {a}: DCL");
    }
    sim.control().set_charge_fet_off(false);
    for a in addresses {
        wait_for_service(&conn, &service(a), Duration::from_secs(10), "CCL back", |i| {
            number(i, "/Info/MaxChargeCurrent").is_some_and(|ccl| ccl > 0.0)
        })
        .await;
    }

    // The bus goes silent: every pack lost at its deadline, counted from its own last reply
    // (the simulator's log: when the reply to a request for that address was written).
    sim.control().start_log();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sim.control().set_silent(true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let log = sim.control().take_log();
    let last_reply = |a: u8| {
        log.iter()
            .filter(|e| yd1363::parse(&e.request).is_ok_and(|f| f.adr == a))
            .filter_map(|e| e.replied)
            .max()
            .unwrap_or_else(|| panic!("{name}: address {a} answered before the silence"))
    };
    let mut zero_at: Vec<Option<Instant>> = vec![None; 3];
    let mut connected_at: Vec<Option<Instant>> = vec![None; 3];
    let start = Instant::now();
    while zero_at.iter().any(Option::is_none) {
        assert!(start.elapsed() < Duration::from_secs_f64(STALE_S + 5.0), "{name}: CCL not 0: {zero_at:?}");
        for (i, a) in addresses.iter().enumerate() {
            let Ok(items) = get_items_of(&conn, &service(*a)).await else { continue };
            if zero_at[i].is_none() && number(&items, "/Info/MaxChargeCurrent") == Some(0.0) {
                zero_at[i] = Some(Instant::now());
            }
            if number(&items, "/Connected") == Some(1.0) {
                connected_at[i] = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for i in 0..3 {
        let last = last_reply(addresses[i]);
        let after = zero_at[i].unwrap().saturating_duration_since(last).as_secs_f64();
        let still = connected_at[i].map(|t| t.saturating_duration_since(last).as_secs_f64());
        println!(
            "{name} address {}: CCL 0 {after:.2} s after the last reply (stale_after_s {STALE_S})",
            addresses[i]
        );
        assert!(after <= STALE_S + 1.0, "{name} address {}: CCL 0 only {after:.2} s after", addresses[i]);
        assert!(
            still.is_some_and(|s| s >= STALE_S - 0.5),
            "{name} address {}: lost early ({still:?})",
            addresses[i]
        );
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daren_packs_share_one_bus() {
    // 0 and 15: both ends of the DIP range.
    three_packs_on_one_bus(Protocol::Daren485, [0, 7, 15]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifepower4_packs_share_one_bus() {
    three_packs_on_one_bus(Protocol::Eg4Lifepower4, [1, 2, 15]).await;
}
