//! An MQTT port: the listener on the battery's topic (one broker connection shared by every
//! battery on that broker, `transport::mqtt::Hub`) and the battery task (the same monitor, charge
//! control and D-Bus service as for serial ports).

use crate::config::{Config, PortConfig};
use crate::driver::mqtt::{run_mqtt, MqttSettings};
use crate::driver::{PollUpdate, Subscriber};
use crate::task::{stale_after, BatterySlot};
use crate::transport::mqtt::{qos, BrokerUrl, Hub};
use tokio::sync::watch;

/// The slot, the channel its readings arrive on, and the listener to run. When the connection
/// cannot be made at all (a TLS file unreadable since check-config), the listener only says so:
/// the battery stays on the bus in the lost state.
pub(crate) fn battery(
    port: &PortConfig,
    config: &Config,
    hub: &Hub,
    shutdown: watch::Receiver<bool>,
) -> (BatterySlot, watch::Receiver<Option<PollUpdate>>, impl std::future::Future<Output = ()>) {
    let (tx, rx) = watch::channel(None);
    let options = port.battery(None);
    let slot = BatterySlot { port: port.clone(), address: None, options: options.clone(), writes: None };
    let source = BrokerUrl::parse(&port.device).map_or_else(|_| port.device.clone(), |u| u.to_string());
    let settings = MqttSettings { source: source.clone(), stale_after: stale_after(config) };
    let messages = port.mqtt.settings(&port.device).and_then(|s| {
        let conn = hub.connection(&s)?;
        Ok(conn.subscribe(&s.broker.topic, qos(port.mqtt.qos.unwrap_or(0))))
    });
    let sub = Subscriber { address: None, tx };
    let listener = async move {
        match messages {
            Ok(messages) => run_mqtt(settings, messages, sub, shutdown).await,
            Err(why) => {
                tracing::error!(source = %source, error = %why, "cannot connect this MQTT battery; it stays lost");
                driver_failed(&sub, source.to_string(), why.to_string());
                let mut shutdown = shutdown;
                let _ = shutdown.wait_for(|stop| *stop).await;
            }
        }
    };
    (slot, rx, listener)
}

/// Tells the battery task that its driver cannot run (the reason is its `/ErrorCode` text).
fn driver_failed(sub: &Subscriber, broker: String, reason: String) {
    sub.tx.send_replace(Some(PollUpdate {
        at: std::time::Instant::now(),
        result: Err(crate::driver::ReadError::Mqtt { broker, reason }),
        device_gone: true,
    }));
}
