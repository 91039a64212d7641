//! A CAN port: the Venus coexistence check, then the CAN listener and the battery task (the
//! same monitor, charge control and D-Bus service as for serial ports).

use crate::config::{Config, PortConfig};
use crate::control::bms_limits::BmsLimits;
use crate::driver::can::{run_listener, CanSettings};
use crate::driver::Subscriber;
use crate::task::battery::battery_task;
use crate::task::BatterySlot;
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

/// How often a running CAN port checks that Venus has not started its own service for the
/// interface since (at boot Venus's CAN service may come up after bms-bridge).
pub const VENUS_CHECK_EVERY: Duration = Duration::from_secs(5);

async fn connect(bus: &BusAddress) -> Option<zbus::Connection> {
    bus.builder().ok()?.build().await.ok()
}

/// Whether `name` is on the bus; `None` when the bus cannot be asked.
async fn has_name(conn: &zbus::Connection, name: &str) -> Option<bool> {
    Some(crate::victron::bus_names(conn).await?.iter().any(|n| n == name))
}

/// Whether `name` is on the bus (`false` when the bus cannot be asked: we publish then).
async fn service_exists(bus: &BusAddress, name: &str) -> bool {
    match connect(bus).await {
        Some(conn) => has_name(&conn, name).await.unwrap_or(false),
        None => false,
    }
}

/// Returns once `name` appears on the bus. One connection, reopened after a D-Bus restart.
async fn service_appears(bus: &BusAddress, name: &str) {
    let mut conn: Option<zbus::Connection> = None;
    loop {
        tokio::time::sleep(VENUS_CHECK_EVERY).await;
        if conn.is_none() {
            conn = connect(bus).await;
        }
        if let Some(c) = &conn {
            match has_name(c, name).await {
                Some(true) => return,
                Some(false) => {}
                None => conn = None,
            }
        }
    }
}

/// A stop signal for one port: the daemon's shutdown, or Venus starting its own service for
/// the interface (then this port withdraws its service, see `run_port`).
fn port_shutdown(
    bus: BusAddress,
    venus: String,
    interface: String,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(*shutdown.borrow());
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => {}
            () = service_appears(&bus, &venus) => {
                tracing::warn!(
                    interface = %interface, service = %venus,
                    "Venus OS started its own service for this CAN battery (its 'CAN-bus BMS' \
                     profile now runs on the interface): withdrawing ours so that the system \
                     sees one battery. Set alongside_venus = true in [port.can] to keep both."
                );
            }
        }
        stop_tx.send_replace(true);
    });
    stop_rx
}

/// The listener settings of `port`.
pub fn settings(port: &PortConfig, config: &Config) -> CanSettings {
    let options = port.battery(None);
    let keepalive = port.can.keepalive.then(|| {
        (
            CanFrame { id: port.can.keepalive_id, data: port.can.keepalive_bytes() },
            // Validated to 0.5..=60 s; never a panic for a config built in code.
            Duration::try_from_secs_f64(port.can.keepalive_interval_s).unwrap_or(Duration::from_secs(5)),
        )
    });
    CanSettings {
        interface: port.device.clone(),
        voltage_scale_v: options.can_voltage_scale.unwrap_or(0.01),
        stale_after: crate::task::stale_after(config),
        publish_every: Duration::from_millis(config.daemon.poll_interval_ms),
        keepalive,
    }
}

/// Runs one CAN port until `shutdown`.
pub async fn run_port(
    port: PortConfig,
    config: Config,
    bus: BusAddress,
    memory: Option<MemoryCanBus>,
    shutdown: watch::Receiver<bool>,
    identities: std::sync::Arc<crate::bank::identity::Registry>,
    publisher: crate::mqtt_output::Publisher,
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
    let shutdown = if port.can.alongside_venus {
        shutdown
    } else {
        port_shutdown(bus.clone(), venus, port.device.clone(), shutdown)
    };
    let slot = BatterySlot { port: port.clone(), address: None, options: options(&port), writes: None };
    let (tx, rx) = watch::channel(None);
    let sub = Subscriber { address: None, tx };
    let settings = settings(&port, &config);
    let battery = battery_task(slot, config, bus, rx, shutdown.clone(), identities, publisher);
    let cells = port.battery(None).cell_count;
    tokio::join!(battery, listen(port.protocol, settings, cells, memory, sub, shutdown));
}

/// The options of a CAN battery: its BMS's own limits capped by ours unless configured.
pub fn options(port: &PortConfig) -> crate::config::BatteryConfig {
    options_at(port, None)
}

/// [`options`] of the battery at `address` of the port.
pub fn options_at(port: &PortConfig, address: Option<u8>) -> crate::config::BatteryConfig {
    let mut options = port.battery(address);
    options.use_bms_limits.get_or_insert(BmsLimits::Cap);
    options
}

/// A CAN battery broadcasts its frames about once a second; a bank counts it gone when its frames
/// are this much older (the single-battery grace period is far too long for a bank).
pub const BANK_MEMBER_STALE: Duration = Duration::from_secs(2);

/// A CAN battery of a bank: its slot, the channel its readings arrive on, and the listener to
/// run (with the bank's short staleness, [`BANK_MEMBER_STALE`]). Its frames stopping is a device
/// gone for the bank. (Venus OS must not run its own CAN-bus BMS profile on the interface: the
/// bank is the controlling BMS.)
pub(crate) fn bank_member(
    port: &PortConfig,
    config: &Config,
    memory: Option<MemoryCanBus>,
    shutdown: watch::Receiver<bool>,
) -> (BatterySlot, watch::Receiver<Option<crate::driver::PollUpdate>>, impl std::future::Future<Output = ()>)
{
    let (tx, rx) = watch::channel(None);
    let slot = BatterySlot { port: port.clone(), address: None, options: options(port), writes: None };
    let mut settings = settings(port, config);
    settings.stale_after = settings.stale_after.min(BANK_MEMBER_STALE);
    let cells = port.battery(None).cell_count;
    (slot, rx, listen(port.protocol, settings, cells, memory, Subscriber { address: None, tx }, shutdown))
}

/// The listener of a CAN protocol with one battery per address (JK CAN): its readings to `subs`
/// (battery tasks or banks). With `bank_member`, frames older than [`BANK_MEMBER_STALE`] count
/// as gone.
pub(crate) fn per_address_listener(
    port: &PortConfig,
    config: &Config,
    memory: Option<MemoryCanBus>,
    subs: Vec<Subscriber>,
    bank_member: bool,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let mut settings = settings(port, config);
    // Listen-only: nothing is sent ([port.can] keep-alive applies to the one-per-bus dialect).
    settings.keepalive = None;
    if bank_member {
        settings.stale_after = settings.stale_after.min(BANK_MEMBER_STALE);
    }
    let cells = subs
        .iter()
        .map(|sub| (Some(sub.address.unwrap_or(0)), port.battery(sub.address).cell_count))
        .collect();
    run_on(port.protocol, settings, cells, memory, subs, shutdown)
}

/// Runs the protocol's listener on the in-memory bus or the SocketCAN interface.
async fn run_on(
    protocol: crate::config::Protocol,
    settings: CanSettings,
    cells: Vec<(Option<u8>, Option<u16>)>,
    memory: Option<MemoryCanBus>,
    subs: Vec<Subscriber>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(make) = protocol.spec().listener else {
        tracing::error!(interface = %settings.interface, protocol = protocol.name(), "not a listened CAN protocol");
        return;
    };
    let listener = make(&settings.listen(cells));
    match memory {
        Some(mem) => run_listener(settings, listener, move || Ok(mem.connect()), subs, shutdown).await,
        None => {
            let interface = settings.interface.clone();
            run_listener(settings, listener, move || SocketCanLink::open(&interface), subs, shutdown).await;
        }
    }
}

/// The listener of a one-battery-per-bus protocol alone, its readings to `sub` (the battery
/// task, or a bank that takes the pack).
pub async fn listen(
    protocol: crate::config::Protocol,
    settings: CanSettings,
    cell_count: Option<u16>,
    memory: Option<MemoryCanBus>,
    sub: Subscriber,
    shutdown: watch::Receiver<bool>,
) {
    run_on(protocol, settings, vec![(None, cell_count)], memory, vec![sub], shutdown).await;
}
