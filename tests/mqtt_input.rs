//! The `mqtt` battery input through the whole daemon: a real mosquitto on a free port, a test
//! publisher, the daemon's app (listener, monitor, charge control, D-Bus service) on a private
//! dbus-daemon. Skipped, saying so, where mosquitto is not installed (.ci/run installs it).

mod support {
    pub mod daemon;
    pub mod mosquitto;
}

use bms_bridge::app;
use bms_bridge::config::{Config, PortConfig};
use bms_bridge::victron::{BusAddress, PrivateBus};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::daemon::{get_items_of, i32_of, is_invalid, number, Items};
use support::mosquitto::{Auth, Broker, Client};

const MINIMAL: &str = include_str!("mqtt/minimal.json");
const FULL: &str = include_str!("mqtt/full.json");
/// The grace period of these tests.
const STALE_S: f64 = 2.0;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bms-bridge-mqtt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn service(topic: &str) -> String {
    format!("com.victronenergy.battery.{}", topic.replace('/', "_"))
}

/// The daemon's app on a private bus with MQTT batteries at `urls`.
struct Rig {
    bus: PrivateBus,
    conn: zbus::Connection,
    stop: tokio::sync::watch::Sender<bool>,
    daemon: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start(dir: &std::path::Path, ports: Vec<PortConfig>) -> Rig {
        let bus = PrivateBus::start().unwrap();
        let mut config = Config::default();
        config.daemon.state_dir = dir.join("state");
        config.daemon.stale_after_s = STALE_S;
        config.dbus.bus = bus.address().to_owned();
        config.ports = ports;
        assert_eq!(bms_bridge::config::validate(&config, "", "t.toml"), vec![]);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let address = BusAddress::Address(bus.address().to_owned());
        let daemon = tokio::spawn(app::run(config, address, stop_rx));
        let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
        Rig { bus, conn, stop, daemon }
    }

    async fn wait(&self, name: &str, limit: Duration, what: &str, check: impl Fn(&Items) -> bool) -> Items {
        support::daemon::wait_for_service(&self.conn, name, limit, what, check).await
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.daemon).await;
        drop(self.bus);
    }
}

fn with(base: &str, changes: Value) -> String {
    let mut v: Value = serde_json::from_str(base).unwrap();
    for (k, val) in changes.as_object().unwrap() {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = val.clone();
        }
    }
    v.to_string()
}

fn voltage_is(items: &Items, volts: f64) -> bool {
    number(items, "/Dc/0/Voltage").is_some_and(|v| (v - volts).abs() < 1e-6)
}

fn valid(items: &Items, path: &str) -> bool {
    items.get(path).and_then(|i| i.get("Value")).is_some_and(|v| !is_invalid(v))
}

fn connected(items: &Items) -> bool {
    items.get("/Connected").and_then(|i| i.get("Value")).and_then(i32_of) == Some(1)
}

macro_rules! broker_or_skip {
    ($dir:expr, $auth:expr, $tls:expr) => {
        match Broker::start($dir, $auth, $tls) {
            Some(b) => b,
            None => {
                eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
                return;
            }
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_examples_reach_dbus_and_absent_fields_are_unknown_not_leftovers() {
    let dir = scratch("examples");
    let broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    let rig = Rig::start(&dir, vec![PortConfig::mqtt(&broker.url("batteries/1"))]).await;
    let name = service("batteries/1");
    let publisher = Client::connect(broker.port, "test-publisher").await;

    publisher.publish("batteries/1", FULL, false).await;
    let items = rig
        .wait(&name, Duration::from_secs(15), "the full example", |i| voltage_is(i, 13.2) && connected(i))
        .await;
    assert_eq!(number(&items, "/Soc"), Some(45.87));
    assert_eq!(number(&items, "/Dc/0/Current"), Some(5.2));
    assert_eq!(number(&items, "/Soh"), Some(98.5));
    assert_eq!(number(&items, "/Capacity"), Some(80.0));
    assert_eq!(number(&items, "/InstalledCapacity"), Some(100.0));
    assert_eq!(number(&items, "/System/NrOfCellsPerBattery"), Some(4.0));
    assert_eq!(number(&items, "/System/MinCellVoltage"), Some(3.29));
    assert_eq!(number(&items, "/System/MaxCellVoltage"), Some(3.31));
    assert_eq!(
        number(&items, "/Dc/0/Temperature").map(|t| (t * 10.0).round()),
        Some(257.0),
        "mean of 25.5..25.8"
    );
    // The BMS's own charge current limit (50 A) caps ours.
    assert!(number(&items, "/Info/MaxChargeCurrent").is_some_and(|a| a <= 50.0));

    // The minimal example next: everything only the full one had is unknown now.
    publisher.publish("batteries/1", with(MINIMAL, json!({"voltage": 13.25})), false).await;
    let items =
        rig.wait(&name, Duration::from_secs(5), "the minimal example", |i| voltage_is(i, 13.25)).await;
    for path in ["/Soh", "/Capacity"] {
        assert!(!valid(&items, path), "{path} kept a value from the older message: {:?}", items.get(path));
    }
    assert_eq!(number(&items, "/Dc/0/Temperature"), Some(25.5));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_message_is_rejected_and_leaves_the_reading_alone() {
    let dir = scratch("bad");
    let broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    let rig = Rig::start(&dir, vec![PortConfig::mqtt(&broker.url("bad/1"))]).await;
    let name = service("bad/1");
    let publisher = Client::connect(broker.port, "test-publisher").await;
    publisher.publish("bad/1", with(MINIMAL, json!({"voltage": 13.21})), false).await;
    rig.wait(&name, Duration::from_secs(20), "the good reading", |i| voltage_is(i, 13.21) && connected(i))
        .await;

    let bad = [
        ("not JSON", "{\"voltage\": 13.9".to_owned()),
        ("missing mandatory field", with(MINIMAL, json!({"voltage": 13.9, "soc": null}))),
        ("wrong type", with(MINIMAL, json!({"voltage": "13.9"}))),
        ("cells length", with(MINIMAL, json!({"voltage": 13.9, "cell_count": 5}))),
        ("SoC above 100", with(MINIMAL, json!({"voltage": 13.9, "soc": 100.1}))),
        ("SoC below 0", with(MINIMAL, json!({"voltage": 13.9, "soc": -0.1}))),
        ("cell above 5 V", MINIMAL.replace("13.2", "13.9").replacen("3.31", "5.2", 1)),
        ("cell below 0.5 V", MINIMAL.replace("13.2", "13.9").replacen("3.31", "0.4", 1)),
        ("out-of-range number", MINIMAL.replace("13.2", "1e999")),
    ];
    // A message that changes the voltage marks where the stream is: once 13.22 shows, every bad
    // message before it has been handled.
    for (i, (what, payload)) in bad.iter().enumerate() {
        publisher.publish("bad/1", payload.clone(), false).await;
        let marker = 13.3 + i as f64 / 100.0;
        publisher.publish("bad/1", with(MINIMAL, json!({"voltage": marker})), false).await;
        let items = rig.wait(&name, Duration::from_secs(10), "the marker", |i| voltage_is(i, marker)).await;
        assert!(connected(&items), "{what}");
    }
    // Only bad messages from here on: they must not keep the battery alive.
    let last_good = Instant::now();
    let flood = tokio::spawn({
        let client = publisher.client.clone();
        let payload = bad[4].1.clone();
        async move {
            loop {
                let _ = client.publish("bad/1", rumqttc::QoS::AtMostOnce, false, payload.clone()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let items =
        rig.wait(&name, Duration::from_secs(6), "lost while only bad messages come", |i| !connected(i)).await;
    flood.abort();
    let lost_after = last_good.elapsed().as_secs_f64();
    assert!(lost_after < STALE_S + 1.0, "lost after {lost_after:.2} s");
    assert_eq!(number(&items, "/Info/MaxChargeCurrent"), Some(0.0));
    assert!(!voltage_is(&items, 13.9));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_dying_means_ccl_zero_within_stale_after_plus_one_second() {
    let dir = scratch("dying");
    let broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    let rig = Rig::start(&dir, vec![PortConfig::mqtt(&broker.url("dying/1"))]).await;
    let name = service("dying/1");
    let publisher = Client::connect(broker.port, "test-publisher").await;
    // Publish every 250 ms, as an ESP32 bridge would, until charging is allowed.
    let start = Instant::now();
    let last_sent = loop {
        publisher.publish("dying/1", MINIMAL, false).await;
        let last_sent = Instant::now();
        let items = get_items_of(&rig.conn, &name).await.ok();
        if items
            .as_ref()
            .is_some_and(|i| connected(i) && number(i, "/Info/MaxChargeCurrent").is_some_and(|a| a > 0.0))
        {
            break last_sent;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never charging");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    drop(publisher);
    // Poll every 50 ms: the measured time is within 50 ms of when CCL 0 appeared.
    let ccl_zero_after = loop {
        let items = get_items_of(&rig.conn, &name).await.unwrap();
        if number(&items, "/Info/MaxChargeCurrent") == Some(0.0) {
            break last_sent.elapsed().as_secs_f64();
        }
        assert!(last_sent.elapsed() < Duration::from_secs_f64(STALE_S + 3.0), "CCL never 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("CCL 0 after {ccl_zero_after:.3} s of silence (stale_after_s {STALE_S})");
    assert!(ccl_zero_after <= STALE_S + 1.0, "CCL 0 only after {ccl_zero_after:.3} s");
    assert!(ccl_zero_after >= STALE_S - 0.3, "CCL 0 already after {ccl_zero_after:.3} s: too early");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_and_broker_down_at_start_keep_the_service_and_values_return() {
    let dir = scratch("restart");
    let mut broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    broker.kill();
    // Broker down at start: the service comes up in the lost state and stays.
    let rig = Rig::start(&dir, vec![PortConfig::mqtt(&broker.url("restart/1"))]).await;
    let name = service("restart/1");
    let items = rig.wait(&name, Duration::from_secs(15), "the service, lost", |i| !connected(i)).await;
    assert_eq!(number(&items, "/Info/MaxChargeCurrent"), Some(0.0));
    broker.run();
    let publisher = Client::connect(broker.port, "test-publisher").await;
    let t = Instant::now();
    let mut sent = 0;
    // The daemon reconnects with backoff (0.5 s, 1 s, 2 s ...): publish until the value shows.
    loop {
        publisher.publish("restart/1", with(MINIMAL, json!({"voltage": 13.31})), false).await;
        sent += 1;
        let items = get_items_of(&rig.conn, &name).await.unwrap();
        if voltage_is(&items, 13.31) && connected(&items) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "values did not come after the broker started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("broker up at start+: values after {:.2} s ({sent} messages)", t.elapsed().as_secs_f64());
    drop(publisher);

    // Restart: the service stays on the bus throughout, the values come back.
    broker.kill();
    rig.wait(&name, Duration::from_secs(6), "lost while the broker is down", |i| !connected(i)).await;
    broker.run();
    let publisher = Client::connect(broker.port, "test-publisher-2").await;
    let t = Instant::now();
    loop {
        publisher.publish("restart/1", with(MINIMAL, json!({"voltage": 13.32})), false).await;
        let items = get_items_of(&rig.conn, &name).await.expect("the service stayed on the bus");
        if voltage_is(&items, 13.32) && connected(&items) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "values did not return after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("broker restart: values back {:.2} s after the broker", t.elapsed().as_secs_f64());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batteries_on_one_broker_share_one_connection() {
    let dir = scratch("two");
    let broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    let ports =
        vec![PortConfig::mqtt(&broker.url("site/pack1")), PortConfig::mqtt(&broker.url("site/pack2"))];
    let rig = Rig::start(&dir, ports).await;
    let mut publisher = Client::connect(broker.port, "test-publisher").await;
    publisher
        .publish("site/pack1", with(MINIMAL, json!({"voltage": 13.1, "serial_number": "P1"})), true)
        .await;
    publisher
        .publish("site/pack2", with(MINIMAL, json!({"voltage": 13.4, "serial_number": "P2"})), true)
        .await;
    rig.wait(&service("site/pack1"), Duration::from_secs(15), "pack 1", |i| voltage_is(i, 13.1)).await;
    rig.wait(&service("site/pack2"), Duration::from_secs(15), "pack 2", |i| voltage_is(i, 13.4)).await;
    // The broker's own count: the daemon and this publisher, nobody else.
    publisher.subscribe("$SYS/broker/clients/connected").await;
    // mosquitto updates it every second (sys_interval 1): the last of 2.5 s is current.
    let mut count = None;
    let until = Instant::now() + Duration::from_millis(2500);
    while let Some((_, c, _)) = publisher
        .next_where(until.saturating_duration_since(Instant::now()), |t, _| {
            t == "$SYS/broker/clients/connected"
        })
        .await
    {
        count = Some(String::from_utf8_lossy(&c).into_owned());
    }
    assert_eq!(count.as_deref(), Some("2"), "one connection for both batteries");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_with_an_old_timestamp_is_never_a_live_battery() {
    let dir = scratch("retained");
    let broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    let publisher = Client::connect(broker.port, "test-publisher").await;
    let yesterday =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 86_400;
    publisher.publish("old/1", with(MINIMAL, json!({"timestamp": yesterday})), true).await;
    let rig = Rig::start(&dir, vec![PortConfig::mqtt(&broker.url("old/1"))]).await;
    let name = service("old/1");
    let items = rig.wait(&name, Duration::from_secs(15), "the service", |_| true).await;
    assert!(!connected(&items));
    assert_eq!(number(&items, "/Info/MaxChargeCurrent"), Some(0.0));
    assert!(!valid(&items, "/Dc/0/Voltage"));
    // A fresh timestamp is live.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    publisher.publish("old/1", with(MINIMAL, json!({"timestamp": now, "voltage": 13.26})), true).await;
    rig.wait(&name, Duration::from_secs(5), "the fresh message", |i| voltage_is(i, 13.26) && connected(i))
        .await;
    rig.stop().await;
}

/// Two MQTT batteries as the packs of one parallel bank: the bank's CCL comes from each pack's
/// rating and its share of the current the messages report (30 A and 10 A: 75 % and 25 %; 60 A
/// and 10 A ratings: min(60 / 0.75, 10 / 0.25) = 40 A, set by pack 2). Pack 2's messages stop:
/// it leaves the bank, which may then take pack 1's own 60 A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_batteries_as_bank_packs() {
    let dir = scratch("bank");
    let broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    let bus = PrivateBus::start().unwrap();
    let d = dir.display();
    let text = format!(
        "[daemon]\npoll_interval_ms = 500\nstale_after_s = {STALE_S}\nstate_dir = \"{d}/state\"\n\n\
         [dbus]\nbus = \"{}\"\n\n\
         [charge]\ncurrent_recovery_hold_s = 0\ncurrent_recovery_a_per_s = 0\n\n\
         [[port]]\nprotocol = \"mqtt\"\ndevice = \"{}\"\n[[port.battery]]\nname = \"A\"\nmax_charge_current = 60.0\n\n\
         [[port]]\nprotocol = \"mqtt\"\ndevice = \"{}\"\n[[port.battery]]\nname = \"B\"\nmax_charge_current = 10.0\n\n\
         [[bank]]\nname = \"Mqtt\"\npacks = [\"A\", \"B\"]\nstartup_wait_s = 10\n",
        bus.address(),
        broker.url("bank/a"),
        broker.url("bank/b"),
    );
    let config = bms_bridge::config::parse(&text, "bank.toml").expect("valid config");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(app::run(config, BusAddress::Address(bus.address().to_owned()), stop_rx));
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let publisher = std::sync::Arc::new(Client::connect(broker.port, "bank-publisher").await);
    let b_running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feeder = {
        let (publisher, b_running) = (publisher.clone(), b_running.clone());
        tokio::spawn(async move {
            loop {
                publisher.publish("bank/a", with(MINIMAL, json!({"current": 30.0})), false).await;
                if b_running.load(std::sync::atomic::Ordering::Relaxed) {
                    publisher.publish("bank/b", with(MINIMAL, json!({"current": 10.0})), false).await;
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    let bank = "com.victronenergy.battery.bank_Mqtt";
    let items = support::daemon::wait_for_service(&conn, bank, Duration::from_secs(20), "both packs", |i| {
        number(i, "/System/NrOfModulesOnline") == Some(2.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|c| (c - 40.0).abs() < 0.01)
    })
    .await;
    assert!(number(&items, "/Dc/0/Current").is_some_and(|a| (a - 40.0).abs() < 0.05));
    b_running.store(false, std::sync::atomic::Ordering::Relaxed);
    support::daemon::wait_for_service(&conn, bank, Duration::from_secs(10), "pack B gone", |i| {
        number(i, "/System/NrOfModulesOffline") == Some(1.0)
            && number(i, "/Info/MaxChargeCurrent").is_some_and(|c| (c - 60.0).abs() < 0.01)
    })
    .await;
    feeder.abort();
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), daemon).await;
}
