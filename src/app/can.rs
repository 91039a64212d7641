//! A CAN port: the Venus coexistence check, then the CAN listener and the battery task (the
//! same monitor, charge control and D-Bus service as for serial ports).

use super::{battery_task, BatterySlot};
use crate::config::{Config, PortConfig};
use crate::control::bms_limits::BmsLimits;
use crate::driver::can::{run_can, CanSettings};
use crate::driver::Subscriber;
use crate::protocol::victron_can::Options;
use crate::transport::can::{CanFrame, MemoryCanBus, SocketCanLink};
use crate::victron::BusAddress;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

/// In-memory CAN buses by interface name (demo, `replay`, tests); other interfaces use SocketCAN.
pub type MemoryCanBuses = HashMap<String, MemoryCanBus>;

/// The service Venus OS publishes for an interface that runs its "CAN-bus BMS" profile.
pub fn venus_service(interface: &str) -> String {
    format!("{}socketcan_{interface}", crate::victron::SERVICE_PREFIX)
}

/// Whether `name` is on the bus (`false` when the bus cannot be asked: we publish then).
async fn service_exists(bus: &BusAddress, name: &str) -> bool {
    let Ok(builder) = bus.builder() else { return false };
    let Ok(conn) = builder.build().await else { return false };
    let Ok(reply) = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "ListNames",
            &(),
        )
        .await
    else {
        return false;
    };
    let names: Vec<String> = reply.body().deserialize().unwrap_or_default();
    names.iter().any(|n| n == name)
}

/// The listener settings of `port`.
pub fn settings(port: &PortConfig, config: &Config) -> CanSettings {
    let options = port.battery(None);
    let keepalive = port.can.keepalive.then(|| {
        (
            CanFrame { id: port.can.keepalive_id, data: port.can.keepalive_bytes() },
            Duration::from_secs_f64(port.can.keepalive_interval_s),
        )
    });
    CanSettings {
        interface: port.device.clone(),
        decode: Options { voltage_scale_v: options.can_voltage_scale.unwrap_or(0.01) },
        cell_count: options.cell_count,
        stale_after: Duration::from_secs_f64(config.daemon.stale_after_s),
        publish_every: Duration::from_millis(config.daemon.poll_interval_ms),
        keepalive,
        invert_current: options.invert_current,
    }
}

/// Runs one CAN port until `shutdown`.
pub async fn run_port(
    port: PortConfig,
    config: Config,
    bus: BusAddress,
    memory: Option<MemoryCanBus>,
    shutdown: watch::Receiver<bool>,
) {
    let venus = venus_service(&port.device);
    if !port.can.alongside_venus && service_exists(&bus, &venus).await {
        tracing::warn!(
            interface = %port.device, service = %venus,
            "Venus OS already publishes this CAN battery (its 'CAN-bus BMS' profile runs on the \
             interface): not publishing a second one. Set alongside_venus = true in [port.can] to \
             publish ours too, or give the interface another profile in Venus."
        );
        return;
    }
    let mut options = port.battery(None);
    options.use_bms_limits.get_or_insert(BmsLimits::Cap);
    let slot = BatterySlot { port: port.clone(), address: None, options, writes: None };
    let (tx, rx) = watch::channel(None);
    let sub = Subscriber { address: None, tx };
    let settings = settings(&port, &config);
    let battery = battery_task(slot, config, bus, rx, shutdown.clone());
    match memory {
        Some(mem) => {
            let listen = run_can(settings, move || Ok(mem.connect()), sub, shutdown);
            tokio::join!(battery, listen);
        }
        None => {
            let interface = port.device.clone();
            let listen = run_can(settings, move || SocketCanLink::open(&interface), sub, shutdown);
            tokio::join!(battery, listen);
        }
    }
}
