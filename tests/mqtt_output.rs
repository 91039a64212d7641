//! `[mqtt_publish]` and the secured input against a real mosquitto: the round trip (one host's
//! output is another's input), the Home Assistant discovery messages read as HA reads them, the
//! last will, a password-protected broker (the password never in the log) and TLS with a CA made
//! at test time. Skipped, saying so, where mosquitto is not installed.

mod support {
    pub mod daemon;
    pub mod mosquitto;
}

use bms_bridge::app;
use bms_bridge::config::{Config, MqttPublish, PortConfig};
use bms_bridge::victron::{BusAddress, PrivateBus};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::daemon::{get_items_of, i32_of, number, Items};
use support::mosquitto::{make_tls, Auth, Broker, Client};

const FULL: &str = include_str!("mqtt/full.json");

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bms-bridge-mqtt-out-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

struct Rig {
    _bus: PrivateBus,
    conn: zbus::Connection,
    stop: tokio::sync::watch::Sender<bool>,
    daemon: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start(dir: &std::path::Path, ports: Vec<PortConfig>, publish: Option<MqttPublish>) -> Rig {
        let bus = PrivateBus::start().unwrap();
        let mut config = Config::default();
        config.daemon.state_dir = dir.join("state");
        config.daemon.stale_after_s = 3.0;
        config.dbus.bus = bus.address().to_owned();
        config.ports = ports;
        config.mqtt_publish = publish;
        assert_eq!(bms_bridge::config::validate(&config, "", "t.toml"), vec![]);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let daemon = tokio::spawn(app::run(config, BusAddress::Address(bus.address().to_owned()), stop_rx));
        let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
        Rig { _bus: bus, conn, stop, daemon }
    }

    async fn wait(&self, name: &str, what: &str, check: impl Fn(&Items) -> bool) -> Items {
        support::daemon::wait_for_service(&self.conn, name, Duration::from_secs(15), what, check).await
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.daemon).await;
    }
}

fn publish_to(url: &str, prefix: &str) -> MqttPublish {
    toml::from_str(&format!("url = \"{url}\"\nprefix = \"{prefix}\"\n")).unwrap()
}

fn connected(items: &Items) -> bool {
    items.get("/Connected").and_then(|i| i.get("Value")).and_then(i32_of) == Some(1)
}

/// Keeps a publisher sending `payload` to `topic` every 500 ms (a live battery).
fn keep_publishing(client: &Client, topic: &'static str, payload: String) -> tokio::task::JoinHandle<()> {
    let client = client.client.clone();
    tokio::spawn(async move {
        loop {
            let _ = client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.clone()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// What HA does with `{{ value_json.<field> }}`: the field of the state document.
fn render(template: &str, state: &Value) -> Option<Value> {
    let field = template.strip_prefix("{{ value_json.")?.strip_suffix(" }}")?;
    state.get(field).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_round_trips_into_another_host_and_discovery_reads_as_home_assistant_does() {
    let dir = scratch("roundtrip");
    let broker = broker_or_skip!(&dir, Auth::Anonymous, None);
    let mut watcher = Client::connect(broker.port, "test-watcher").await;
    watcher.subscribe("hostA/#").await;
    // Host A: the battery from the test publisher, published under hostA/.
    let host_a = Rig::start(
        &dir.join("a"),
        vec![PortConfig::mqtt(&broker.url("in/1"))],
        Some(publish_to(&format!("mqtt://127.0.0.1:{}", broker.port), "hostA")),
    )
    .await;
    let publisher = Client::connect(broker.port, "test-publisher").await;
    let feeding = keep_publishing(&publisher, "in/1", FULL.to_owned());
    host_a.wait("com.victronenergy.battery.in_1", "host A online", connected).await;

    // Host A's state document: the input schema plus the limits.
    let (_, state, retained) = watcher
        .next_where(Duration::from_secs(10), |t, p| {
            t == "hostA/SN12345678/state"
                && serde_json::from_slice::<Value>(p).is_ok_and(|v| v["connected"] == true)
        })
        .await
        .expect("host A's state");
    let _ = retained;
    let state: Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["voltage"].as_f64(), Some(13.2));
    assert_eq!(state["cells"].as_array().map(Vec::len), Some(4));
    assert!(state["cvl"].as_f64().is_some_and(|v| v > 13.0 && v <= 14.6), "{state}");
    assert!(state["ccl"].as_f64().is_some_and(|a| a > 0.0 && a <= 50.0), "BMS limit 50 A caps: {state}");
    assert!(state["charge_phase"].is_string() && state["charge_limitation"].is_string());

    // Host B reads host A's output as a battery.
    let host_b =
        Rig::start(&dir.join("b"), vec![PortConfig::mqtt(&broker.url("hostA/SN12345678/state"))], None).await;
    let items = host_b
        .wait("com.victronenergy.battery.hostA_SN12345678_state", "host B from host A's output", |i| {
            connected(i) && number(i, "/Dc/0/Voltage") == Some(13.2)
        })
        .await;
    assert_eq!(number(&items, "/Soc"), Some(45.87));
    assert_eq!(number(&items, "/System/MinCellVoltage"), Some(3.29));
    assert_eq!(number(&items, "/Soh"), Some(98.5));

    // Discovery, as Home Assistant starting now sees it: retained configs on subscribing.
    let mut ha = Client::connect(broker.port, "test-home-assistant").await;
    ha.subscribe("homeassistant/#").await;
    let mut configs: HashMap<String, Value> = HashMap::new();
    let until = Instant::now() + Duration::from_secs(2);
    while let Some((topic, payload, retained)) =
        ha.next_where(until.saturating_duration_since(Instant::now()), |_, _| true).await
    {
        assert!(retained, "{topic} is not retained");
        configs.insert(topic, serde_json::from_slice(&payload).expect("discovery config is JSON"));
    }

    let expected_units =
        [("voltage", "V"), ("current", "A"), ("power", "W"), ("battery", "%"), ("temperature", "°C")];
    for field in [
        "voltage",
        "current",
        "power",
        "soc",
        "cell_min",
        "cell_max",
        "cell_delta",
        "temperature_1",
        "cvl",
        "ccl",
        "dcl",
    ] {
        let topic = format!("homeassistant/sensor/SN12345678/{field}/config");
        let c = configs.get(&topic).unwrap_or_else(|| panic!("no {topic} among {:?}", configs.keys()));
        assert_eq!(c["state_topic"], "hostA/SN12345678/state");
        assert_eq!(c["unique_id"], format!("bms-bridge_SN12345678_{field}"));
        assert_eq!(c["state_class"], "measurement");
        let class = c["device_class"].as_str().unwrap();
        let unit = c["unit_of_measurement"].as_str().unwrap();
        assert_eq!(
            expected_units.iter().find(|(k, _)| *k == class).map(|(_, u)| *u),
            Some(unit),
            "{field}: {class} in {unit}"
        );
        assert_eq!(c["device"]["serial_number"], "SN12345678");
        assert!(c["device"]["identifiers"].as_array().is_some_and(|a| !a.is_empty()));
        assert!(c["device"]["manufacturer"].is_string() && c["device"]["model"].is_string());
        let value = render(c["value_template"].as_str().unwrap(), &state)
            .unwrap_or_else(|| panic!("{field} renders nothing"));
        assert!(value.is_number(), "{field}: {value}");
        let topics: Vec<&str> =
            c["availability"].as_array().unwrap().iter().map(|a| a["topic"].as_str().unwrap()).collect();
        assert_eq!(topics, ["hostA/availability", "hostA/SN12345678/availability"]);
    }
    assert_eq!(
        render("{{ value_json.power }}", &state).and_then(|v| v.as_f64()),
        Some(68.6),
        "13.2 V x 5.2 A"
    );
    // Both availability topics say online (retained).
    let mut avail = Client::connect(broker.port, "test-avail").await;
    avail.subscribe("hostA/+/availability").await;
    avail.subscribe("hostA/availability").await;
    let mut seen = HashMap::new();
    let until = Instant::now() + Duration::from_secs(2);
    while let Some((t, p, _)) =
        avail.next_where(until.saturating_duration_since(Instant::now()), |_, _| true).await
    {
        seen.insert(t, String::from_utf8(p).unwrap());
    }
    assert_eq!(seen.get("hostA/availability").map(String::as_str), Some("online"), "{seen:?}");
    assert_eq!(seen.get("hostA/SN12345678/availability").map(String::as_str), Some("online"), "{seen:?}");

    // The publisher dies: host A says the battery is offline, host B loses it.
    feeding.abort();
    drop(publisher);
    let offline = watcher
        .next_where(Duration::from_secs(8), |t, p| t == "hostA/SN12345678/availability" && p == b"offline")
        .await;
    assert!(offline.is_some(), "battery availability never went offline");
    host_b.wait("com.victronenergy.battery.hostA_SN12345678_state", "host B lost", |i| !connected(i)).await;
    host_a.stop().await;
    host_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_broker_last_will_and_no_password_in_the_log() {
    let dir = scratch("password");
    let password = "s3cret-Pa55-xyz";
    let broker = broker_or_skip!(&dir, Auth::Password("bms".into(), password.into()), None);
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    let mut watcher = {
        let mut o = rumqttc::MqttOptions::new("test-watcher", "127.0.0.1", broker.port);
        o.set_credentials("bms", password);
        Client::connect_with(o).await
    };
    watcher.subscribe("pw/#").await;
    watcher.subscribe("out/#").await;
    let text = format!(
        "[daemon]\nstale_after_s = 3\nstate_dir = \"{state}\"\n[dbus]\nbus = \"{bus}\"\n\
         [[port]]\nprotocol = \"mqtt\"\ndevice = \"mqtt://bms@127.0.0.1:{port}/pw/1\"\n[port.mqtt]\npassword_file = \"{pw}\"\n\
         [mqtt_publish]\nurl = \"mqtt://bms@127.0.0.1:{port}\"\nprefix = \"out\"\n[mqtt_publish.client]\npassword_file = \"{pw}\"\n",
        state = dir.join("state").display(),
        bus = "unix:path=/nonexistent/bus",
        port = broker.port,
        pw = pw_file.display(),
    );
    let daemon = support::daemon::start_daemon_with_config(&dir, &text);
    let feeder = keep_publishing(&watcher, "pw/1", FULL.to_owned());
    // The daemon reads the battery through the password-protected broker (no D-Bus needed to
    // see it: its output says so).
    let state = watcher
        .next_where(Duration::from_secs(20), |t, p| {
            t == "out/SN12345678/state"
                && serde_json::from_slice::<Value>(p).is_ok_and(|v| v["voltage"] == 13.2)
        })
        .await;
    assert!(
        state.is_some(),
        "no state through the password broker; log:\n{}",
        support::daemon::daemon_log(&dir)
    );
    // Killed hard: the broker sends the last will.
    let mut daemon = daemon;
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    let will =
        watcher.next_where(Duration::from_secs(5), |t, p| t == "out/availability" && p == b"offline").await;
    assert!(will.is_some(), "no last will after the daemon was killed");
    feeder.abort();
    let log = support::daemon::daemon_log(&dir);
    assert!(log.contains("MQTT broker connected"), "{log}");
    assert!(!log.contains(password), "the password is in the log");

    // A wrong password: no data, a clear line, no password either.
    std::fs::write(&pw_file, "wrong-password-123\n").unwrap();
    let _daemon = support::daemon::start_daemon_with_config(&dir, &text);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = support::daemon::daemon_log(&dir);
    assert!(log.contains("MQTT broker unreachable"), "{log}");
    assert!(!log.contains("wrong-password-123") && !log.contains(password), "a password is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_made_at_test_time() {
    let dir = scratch("tls");
    let tls = make_tls(&dir);
    let broker = broker_or_skip!(&dir, Auth::Anonymous, Some(&tls));
    // The test publisher over TLS too (rumqttc with the same CA).
    let config = bms_bridge::transport::mqtt::rustls_config(&bms_bridge::transport::mqtt::TlsFiles {
        ca_file: Some(tls.ca.clone()),
        ..Default::default()
    })
    .unwrap();
    let mut o = rumqttc::MqttOptions::new("test-publisher", "localhost", broker.port);
    o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
        std::sync::Arc::new(config),
    )));
    let publisher = Client::connect_with(o).await;
    let _feed = keep_publishing(&publisher, "tls/1", FULL.to_owned());

    let mut good = PortConfig::mqtt(&format!("mqtts://localhost:{}/tls/1", broker.port));
    good.mqtt.ca_file = Some(tls.ca.clone());
    // Another CA: the broker's certificate is not trusted, nothing comes through.
    let other = make_tls(&dir.join("other"));
    let mut wrong_ca = PortConfig::mqtt(&format!("mqtts://localhost:{}/tls/2", broker.port));
    wrong_ca.mqtt.ca_file = Some(other.ca.clone());
    let _feed2 = keep_publishing(&publisher, "tls/2", FULL.to_owned());
    // With a client certificate from the right CA (the broker does not demand one; it must be
    // accepted when given).
    let mut with_cert = PortConfig::mqtt(&format!("mqtts://localhost:{}/tls/3", broker.port));
    with_cert.mqtt.ca_file = Some(tls.ca.clone());
    with_cert.mqtt.client_cert = Some(tls.client_cert.clone());
    with_cert.mqtt.client_key = Some(tls.client_key.clone());
    let _feed3 = keep_publishing(&publisher, "tls/3", FULL.to_owned());
    let rig = Rig::start(&dir, vec![good, wrong_ca, with_cert], None).await;
    rig.wait("com.victronenergy.battery.tls_1", "TLS battery", |i| {
        connected(i) && number(i, "/Dc/0/Voltage") == Some(13.2)
    })
    .await;
    rig.wait("com.victronenergy.battery.tls_3", "TLS battery with a client certificate", connected).await;
    let items = rig.wait("com.victronenergy.battery.tls_2", "the untrusted one, registered", |_| true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let items = get_items_of(&rig.conn, "com.victronenergy.battery.tls_2").await.unwrap_or(items);
    assert!(!connected(&items), "a broker with an untrusted certificate was believed");
    assert_eq!(number(&items, "/Info/MaxChargeCurrent"), Some(0.0));
    rig.stop().await;
}
