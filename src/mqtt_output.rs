//! `[mqtt_publish]`: every battery and bank as one retained JSON document on
//! `<prefix>/<identity>/state`, in the Generic MQTT input schema plus the published limits, charge
//! phase and limitation reasons (so one host's output is another's input), and Home Assistant
//! discovery configs. `docs/mqtt-output.md`.
//!
//! Publishing never blocks polling or control: a battery task offers its state to a bounded
//! queue ([`Publisher::offer`] never waits); when the queue or the connection's own queue is full
//! the state is dropped and counted. States are retained and re-sent when they change, and at
//! least every [`REFRESH`] so that their `timestamp` stays fresh for a reader with a grace period.

use crate::monitor::Output;
pub use crate::state_doc::{state_json, state_json_at};
use crate::transport::mqtt::{qos, ClientSettings, Connection, LinkState};
use crate::victron::Identity;
use rumqttc::{LastWill, QoS};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// An unchanged state is sent again after this long (its `timestamp` then stays fresh).
pub const REFRESH: Duration = Duration::from_secs(5);
/// How often drops are logged at most.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// One battery's (or bank's) state as offered by its task.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The unique id: the topic level and the HA device id.
    pub unique_id: String,
    /// Product name, for the HA device block.
    pub model: String,
    /// Serial number, for the HA device block.
    pub serial: String,
    /// The document.
    pub state: Value,
    /// The battery is online (availability).
    pub online: bool,
}

/// The handle battery and bank tasks offer their states to; a disabled one does nothing.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    queue: Option<mpsc::Sender<Offer>>,
    dropped: Arc<AtomicU64>,
    /// The status page's board (`[web]`): fed the same document.
    web: Option<crate::web::Board>,
}

impl Publisher {
    /// No output configured.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// This publisher, also feeding the status page's `board`.
    pub fn with_web(mut self, board: crate::web::Board) -> Self {
        self.web = Some(board);
        self
    }

    /// Offers `out` of the battery `identity`. Never waits: a full queue drops it (counted).
    pub fn offer(&self, identity: &Identity, out: &Output) {
        self.offer_with(identity, out, crate::web::Extra::default());
    }

    /// [`Publisher::offer`], with what only the status page shows (the port's health, the cell
    /// window, a bank's packs).
    pub fn offer_with(&self, identity: &Identity, out: &Output, extra: crate::web::Extra) {
        if self.queue.is_none() && self.web.is_none() {
            return;
        }
        let now = unix_now();
        if let Some(board) = &self.web {
            board.update(identity, out, extra, now);
        }
        let Some(queue) = &self.queue else { return };
        let state = state_json(out, now);
        let offer = Offer {
            unique_id: identity.unique_id.clone(),
            model: identity.product_name.clone(),
            serial: identity.serial.clone(),
            state,
            online: out.connected,
        };
        if queue.try_send(offer).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// States dropped so far (queue full, or the connection's queue full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One Home Assistant sensor of a battery.
#[derive(Debug, Clone, Copy)]
pub struct Sensor {
    /// The state document's field.
    pub field: &'static str,
    /// The entity name.
    pub name: &'static str,
    /// HA's device class, where one fits.
    pub device_class: Option<&'static str>,
    /// The unit.
    pub unit: Option<&'static str>,
    /// A measurement (statistics in HA), not a text.
    pub measurement: bool,
}

const fn sensor(
    field: &'static str,
    name: &'static str,
    device_class: Option<&'static str>,
    unit: Option<&'static str>,
    measurement: bool,
) -> Sensor {
    Sensor { field, name, device_class, unit, measurement }
}

/// The HA sensors.
pub const SENSORS: [Sensor; 15] = [
    sensor("voltage", "Voltage", Some("voltage"), Some("V"), true),
    sensor("current", "Current", Some("current"), Some("A"), true),
    sensor("power", "Power", Some("power"), Some("W"), true),
    sensor("soc", "State of charge", Some("battery"), Some("%"), true),
    sensor("soh", "State of health", None, Some("%"), true),
    sensor("cell_min", "Lowest cell", Some("voltage"), Some("V"), true),
    sensor("cell_max", "Highest cell", Some("voltage"), Some("V"), true),
    sensor("cell_delta", "Cell delta", Some("voltage"), Some("V"), true),
    sensor("temperature_1", "Temperature 1", Some("temperature"), Some("°C"), true),
    sensor("temperature_2", "Temperature 2", Some("temperature"), Some("°C"), true),
    sensor("temperature_mos", "MOSFET temperature", Some("temperature"), Some("°C"), true),
    sensor("cvl", "Charge voltage limit", Some("voltage"), Some("V"), true),
    sensor("ccl", "Charge current limit", Some("current"), Some("A"), true),
    sensor("dcl", "Discharge current limit", Some("current"), Some("A"), true),
    sensor("charge_phase", "Charge phase", None, None, false),
];

/// A topic level / HA object id from a unique id: `[A-Za-z0-9_-]` only.
pub fn object_id(unique_id: &str) -> String {
    unique_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// The discovery messages (topic, config) of one battery.
pub fn discovery(prefix: &str, discovery_prefix: &str, offer: &Offer) -> Vec<(String, Value)> {
    let id = object_id(&offer.unique_id);
    let device = json!({
        "identifiers": [format!("bms-bridge_{id}")],
        "name": offer.model,
        "manufacturer": "bms-bridge",
        "model": offer.model,
        "serial_number": offer.serial,
    });
    SENSORS
        .iter()
        .map(|&Sensor { field, name, device_class: class, unit, measurement }| {
            let mut c = json!({
                "name": name,
                "unique_id": format!("bms-bridge_{id}_{field}"),
                "object_id": format!("{id}_{field}"),
                "state_topic": format!("{prefix}/{id}/state"),
                "value_template": format!("{{{{ value_json.{field} }}}}"),
                "availability": [
                    { "topic": format!("{prefix}/availability") },
                    { "topic": format!("{prefix}/{id}/availability") },
                ],
                "availability_mode": "all",
                "device": device.clone(),
            });
            if let Some(obj) = c.as_object_mut() {
                if let Some(class) = class {
                    obj.insert("device_class".into(), json!(class));
                }
                if let Some(unit) = unit {
                    obj.insert("unit_of_measurement".into(), json!(unit));
                }
                if measurement {
                    obj.insert("state_class".into(), json!("measurement"));
                }
            }
            (format!("{discovery_prefix}/sensor/{id}/{field}/config"), c)
        })
        .collect()
}

/// What the output needs from `[mqtt_publish]`.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// The connection.
    pub client: ClientSettings,
    /// Topic prefix.
    pub prefix: String,
    /// Publish HA discovery.
    pub discovery: bool,
    /// HA's discovery prefix.
    pub discovery_prefix: String,
    /// Offers waiting at most.
    pub queue: usize,
    /// QoS of the states.
    pub qos: QoS,
}

impl PublishSettings {
    /// From the config (reads the password file).
    pub fn from_config(c: &crate::config::MqttPublish) -> Result<Self, String> {
        Ok(Self {
            client: c.client.settings(&c.url)?,
            prefix: c.prefix.clone(),
            discovery: c.discovery,
            discovery_prefix: c.discovery_prefix.clone(),
            queue: c.queue.clamp(1, 10_000),
            qos: qos(c.client.qos.unwrap_or(1)),
        })
    }
}

/// Starts the output: the publisher handle, and the task to run until `shutdown`.
pub fn start(
    settings: PublishSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<(Publisher, impl std::future::Future<Output = ()>), String> {
    let (tx, rx) = mpsc::channel(settings.queue);
    let dropped = Arc::new(AtomicU64::new(0));
    let bridge_availability = format!("{}/availability", settings.prefix);
    // The connection stops when the output has said "offline" (else the will would say it).
    let (conn_stop_tx, conn_stop) = watch::channel(false);
    let will = LastWill::new(bridge_availability.clone(), "offline", QoS::AtLeastOnce, true);
    let conn = Connection::open(&settings.client, Some(will), conn_stop)?;
    let publisher = Publisher { queue: Some(tx), dropped: dropped.clone(), web: None };
    let task = run(settings, conn, rx, dropped, shutdown, conn_stop_tx);
    Ok((publisher, task))
}

async fn run(
    settings: PublishSettings,
    conn: Connection,
    mut offers: mpsc::Receiver<Offer>,
    dropped: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
    conn_stop: watch::Sender<bool>,
) {
    let client = conn.client().clone();
    let mut state = conn.state();
    let bridge = format!("{}/availability", settings.prefix);
    // Per battery: the last document sent (without its timestamp), when, and the availability.
    let mut sent: HashMap<String, (Value, Instant, bool)> = HashMap::new();
    let mut announced: HashSet<String> = HashSet::new();
    let mut last_drop_log: Option<Instant> = None;
    let mut reported_drops = 0u64;
    loop {
        tokio::select! {
            offer = offers.recv() => {
                let Some(offer) = offer else { break };
                let id = object_id(&offer.unique_id);
                let mut body = offer.state.clone();
                if let Some(obj) = body.as_object_mut() {
                    obj.remove("timestamp");
                }
                let due = sent.get(&id).is_none_or(|(last, at, online)| {
                    *last != body || at.elapsed() >= REFRESH || *online != offer.online
                });
                if !due {
                    continue;
                }
                let mut ok = true;
                if settings.discovery && !announced.contains(&id) {
                    for (topic, config) in discovery(&settings.prefix, &settings.discovery_prefix, &offer) {
                        ok &= client.try_publish(topic, QoS::AtLeastOnce, true, config.to_string()).is_ok();
                    }
                    if ok {
                        announced.insert(id.clone());
                    }
                }
                let availability = if offer.online { "online" } else { "offline" };
                ok &= client
                    .try_publish(format!("{}/{id}/availability", settings.prefix), QoS::AtLeastOnce, true, availability)
                    .is_ok();
                ok &= client
                    .try_publish(format!("{}/{id}/state", settings.prefix), settings.qos, true, offer.state.to_string())
                    .is_ok();
                if ok {
                    sent.insert(id, (body, Instant::now(), offer.online));
                } else {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            changed = state.changed() => {
                if changed.is_err() { break }
                if *state.borrow_and_update() == LinkState::Up {
                    // A broker without persistence forgot everything: say it all again.
                    let _ = client.try_publish(bridge.clone(), QoS::AtLeastOnce, true, "online");
                    sent.clear();
                    announced.clear();
                }
            }
            _ = shutdown.changed() => if *shutdown.borrow() { break },
        }
        let total = dropped.load(Ordering::Relaxed);
        if total > reported_drops && last_drop_log.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
            tracing::warn!(dropped = total, "MQTT output: states dropped because the broker is slow or down (polling is not held up; logged at most once a minute)");
            last_drop_log = Some(Instant::now());
            reported_drops = total;
        }
    }
    for id in sent.keys() {
        let _ = client.try_publish(
            format!("{}/{id}/availability", settings.prefix),
            QoS::AtLeastOnce,
            true,
            "offline",
        );
    }
    let _ = client.try_publish(bridge, QoS::AtLeastOnce, true, "offline");
    conn_stop.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::Battery;

    fn output() -> Output {
        let battery = Battery {
            voltage_v: Some(53.2),
            current_a: Some(-10.0),
            soc_percent: Some(80.0),
            cell_voltages_v: Some(vec![3.30, 3.35, 3.32, 3.31]),
            balancing_cells: Some(vec![false, true, false, false]),
            temperatures_c: Some(vec![21.0, 22.5]),
            charge_fet: Some(true),
            discharge_fet: Some(true),
            serial: Some("SN1".into()),
            nominal_capacity_ah: Some(280.0),
            ..Default::default()
        };
        let mut out = Output::online(battery);
        out.limits.charge_voltage_v = Some(55.2);
        out.limits.charge_current_a = Some(100.0);
        out.limits.discharge_current_a = Some(150.0);
        out.limits.charge_mode = "Bulk".into();
        out
    }

    #[test]
    fn the_state_is_valid_input_and_carries_the_limits() {
        let state = state_json(&output(), 1_000_000.0);
        let back = crate::bms::mqtt::decode(state.to_string().as_bytes()).unwrap();
        assert_eq!(back.battery.voltage_v, Some(53.2));
        assert_eq!(back.battery.cell_voltages_v, Some(vec![3.30, 3.35, 3.32, 3.31]));
        assert_eq!(back.battery.balancing_cells, Some(vec![false, true, false, false]));
        assert_eq!(back.battery.temperatures_c, Some(vec![21.0, 22.5]));
        assert_eq!(back.timestamp_s, Some(1_000_000.0));
        assert_eq!(
            (state["cvl"].as_f64(), state["ccl"].as_f64(), state["dcl"].as_f64()),
            (Some(55.2), Some(100.0), Some(150.0))
        );
        assert_eq!(state["charge_phase"], "Bulk");
        assert_eq!(state["power"].as_f64(), Some(-532.0));
        assert_eq!(state["cell_delta"].as_f64(), Some(0.05));
        assert!(state.get("soh").is_none(), "unknown is absent, not 0");
    }

    #[test]
    fn object_ids_are_topic_safe() {
        assert_eq!(object_id("JBD 48/100#1"), "JBD_48_100_1");
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (tx, _rx) = mpsc::channel(2);
        let publisher = Publisher { queue: Some(tx), dropped: Arc::default(), web: None };
        let identity = Identity {
            service_suffix: "x".into(),
            unique_id: "u".into(),
            product_name: "p".into(),
            connection: "c".into(),
            custom_name: String::new(),
            firmware_version: String::new(),
            hardware_version: String::new(),
            serial: "s".into(),
            fallback_device_instance: 1,
            max_cells: 4,
            manufacturer: String::new(),
            connection_information: String::new(),
        };
        let out = Output {
            battery: Default::default(),
            limits: Default::default(),
            connected: false,
            state: 0,
            error_code: 0,
            history: Default::default(),
        };
        let start = Instant::now();
        for _ in 0..10 {
            publisher.offer(&identity, &out);
        }
        assert_eq!(publisher.dropped(), 8);
        assert!(start.elapsed() < Duration::from_millis(100), "offer waited");
        Publisher::disabled().offer(&identity, &out);
    }
}
