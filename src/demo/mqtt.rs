//! `bms-bridge demo --protocol mqtt`: a private mosquitto on a free port, a simulated ESP32 BMS
//! bridge publishing the Generic MQTT document every second, the daemon reading it as a battery
//! and publishing its state back to the broker (`[mqtt_publish]`, with HA discovery). The rest
//! is the real path.

use super::{view, ScratchDir};
use crate::config::{Config, PortConfig};
use crate::sim;
use crate::victron::private_bus::PrivateBus;
use crate::victron::BusAddress;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where Debian installs the broker.
const MOSQUITTO: [&str; 2] = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"];

/// The broker process, killed when dropped.
struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(dir: &std::path::Path) -> Result<(Broker, u16), String> {
    let bin = MOSQUITTO
        .iter()
        .find(|p| std::path::Path::new(p).is_file())
        .ok_or("demo --protocol mqtt needs mosquitto (apt-get install mosquitto)")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"))
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let child = std::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let broker = Broker(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!("mosquitto did not listen on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((broker, port))
}

/// Publishes the simulated pack every second until dropped (aborted).
async fn simulated_bridge(port: u16, topic: String, cells: usize) {
    let mut options = rumqttc::MqttOptions::new("bms-bridge-demo-esp32", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let mut pack = sim::model::SimPack::new(cells);
    super::demo_pack(&mut pack);
    loop {
        pack.step(Instant::now());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let doc = sim::mqtt::message(&pack, "DEMO-ESP32", now);
        let _ = client.try_publish(topic.clone(), rumqttc::QoS::AtMostOnce, false, doc.to_string());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the MQTT demo for `seconds` (or until Ctrl-C).
pub async fn run(seconds: Option<u64>, cells: usize) -> Result<(), String> {
    let scratch = ScratchDir(std::env::temp_dir().join(format!("bms-bridge-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let (broker, port) = start_broker(&scratch.0)?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;
    let topic = "demo/battery/1".to_owned();
    let mut config = Config::default();
    config.daemon.state_dir = scratch.0.join("state");
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig::mqtt(&format!("mqtt://127.0.0.1:{port}/{topic}")));
    config.mqtt_publish = Some(crate::config::MqttPublish {
        url: format!("mqtt://127.0.0.1:{port}"),
        prefix: "bms-bridge".into(),
        discovery: true,
        discovery_prefix: "homeassistant".into(),
        queue: 64,
        client: Default::default(),
    });
    println!("private D-Bus: {}", bus.address());
    crate::demo::status_page(&mut config);
    println!(
        "private mosquitto on 127.0.0.1:{port}; a simulated {cells}-cell ESP32 bridge publishes {topic}"
    );
    println!(
        "the daemon's own state: mosquitto_sub -p {port} -t 'bms-bridge/#' -v   (HA discovery under homeassistant/)   (Ctrl-C to stop)"
    );
    println!("{}\n", super::time_lapse_note());
    let bridge = tokio::spawn(simulated_bridge(port, topic, cells));
    let address = BusAddress::Address(bus.address().to_owned());
    let outcome = super::run_with_viewer(
        seconds,
        |stop| crate::app::run(config, address, stop),
        view(bus.address().to_owned()),
    )
    .await;
    bridge.abort();
    drop(broker);
    drop(bus);
    outcome
}
