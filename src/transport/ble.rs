//! Bluetooth LE through BlueZ's D-Bus API (`org.bluez`): Adapter1 (filtered discovery),
//! Device1 (Connect, Connected, ServicesResolved), GattCharacteristic1 (StartNotify, the `Value`
//! property changes, WriteValue), with plain zbus proxies on the system bus: the D-Bus stack
//! the daemon already has, no libdbus (`docs/architecture.md` "Bluetooth LE").
//!
//! A connected device becomes a [`BleStream`]: bytes written go out as one `WriteValue` each,
//! every notification's bytes come in on the read side. The protocol framing stays where it is
//! for serial ports, in `FramedLink` with the protocol's `scan`: the notifications of a reply
//! are reassembled there, within the reply timeout, and garbage is skipped the same way.
//!
//! Robustness (issue 21): connect with a timeout; a device BlueZ does not know is looked for
//! with a discovery filtered to its address, stopped once found; after a failure the next
//! attempt waits (1 s doubling to [`BACKOFF_MAX`]); connects and polls of the BLE batteries of
//! one adapter take turns ([`adapter_turn`]); one log line per state change (connected,
//! disconnected, first failure), retries at debug level. Pairing and trust are never touched.

use crate::protocol::gatt::Gatt;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;
use zbus::fdo::{ManagedObjects, ObjectManagerProxy, PropertiesProxy};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedValue, Value};
use zbus::Connection;

/// BlueZ's bus name.
pub const BLUEZ: &str = "org.bluez";
/// The adapter used when the port names none.
pub const DEFAULT_ADAPTER: &str = "hci0";
/// Longest wait for `Device1.Connect` and for the GATT services to be resolved.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest discovery for a device BlueZ does not know yet.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between two connect attempts of one device.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// First wait after a failed connect.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Notifications queued before the reader takes them (a reply of JK is 15 of 20 bytes).
const QUEUED_NOTIFICATIONS: usize = 256;

const ADAPTER1: &str = "org.bluez.Adapter1";
const DEVICE1: &str = "org.bluez.Device1";
const SERVICE1: &str = "org.bluez.GattService1";
const CHARACTERISTIC1: &str = "org.bluez.GattCharacteristic1";

/// A BLE BMS: its address and the adapter it is reached through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BleDevice {
    /// `C8:47:8C:12:34:56`, upper case.
    pub address: String,
    /// `hci0`.
    pub adapter: String,
}

/// The MAC address of a `ble:AA:BB:CC:DD:EE:FF` device (upper case), if it is one.
pub fn parse_address(device: &str) -> Option<String> {
    let address = device.strip_prefix("ble:")?;
    let parts: Vec<&str> = address.split(':').collect();
    let valid =
        parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| address.to_ascii_uppercase())
}

/// Whether an adapter name is one BlueZ could export (`hci0`, `hci1` ...).
pub fn valid_adapter(adapter: &str) -> bool {
    adapter
        .strip_prefix("hci")
        .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit()))
}

impl BleDevice {
    /// The device of a port (`ble:ADDR`), on `adapter` (default `hci0`).
    pub fn parse(device: &str, adapter: Option<&str>) -> Result<Self, String> {
        let address = parse_address(device)
            .ok_or_else(|| format!("{device:?} is not a BLE device (ble:AA:BB:CC:DD:EE:FF)"))?;
        let adapter = adapter.unwrap_or(DEFAULT_ADAPTER).to_owned();
        if !valid_adapter(&adapter) {
            return Err(format!("{adapter:?} is not a Bluetooth adapter name (hci0, hci1 ...)"));
        }
        Ok(Self { address, adapter })
    }

    /// `/org/bluez/hci0`.
    pub fn adapter_path(&self) -> String {
        format!("/org/bluez/{}", self.adapter)
    }

    /// `/org/bluez/hci0/dev_C8_47_8C_12_34_56`.
    pub fn path(&self) -> String {
        format!("{}/dev_{}", self.adapter_path(), self.address.replace(':', "_"))
    }
}

/// Why a BLE link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BleError {
    /// The system bus (or `DBUS_SYSTEM_BUS_ADDRESS`) is not there.
    #[error("cannot reach BlueZ on the system bus: {0} (is bluetoothd running? `bms-bridge doctor`)")]
    Bus(zbus::Error),
    /// A BlueZ call failed.
    #[error("{what}: {source}")]
    Call {
        /// What was asked.
        what: &'static str,
        /// BlueZ's answer.
        #[source]
        source: zbus::Error,
    },
    /// A step did not finish in time.
    #[error("{what} took longer than {waited:?}")]
    Timeout {
        /// The step.
        what: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// The adapter is not exported by BlueZ.
    #[error("adapter {0} not found (`bluetoothctl list`; is it powered?)")]
    NoAdapter(String),
    /// Discovery did not find the device.
    #[error("{address} not seen by a {waited:?} discovery on {adapter} (out of range, off, or connected to a phone?)")]
    NotFound {
        /// The device.
        address: String,
        /// The adapter.
        adapter: String,
        /// How long discovery ran.
        waited: Duration,
    },
    /// The device lacks the protocol's service or characteristic.
    #[error("{address} has no GATT {what} {uuid} (another BMS model? `bms-bridge scan-ble`)")]
    MissingGatt {
        /// The device.
        address: String,
        /// Service or characteristic.
        what: &'static str,
        /// Its UUID.
        uuid: String,
    },
    /// The last attempt failed recently and the next one is not due yet: said as that
    /// failure, so that the battery's log does not get a new line per skipped attempt.
    #[error("{last}")]
    Backoff {
        /// The last failure's text.
        last: String,
    },
}

/// The bus BlueZ is looked for on, when not the system bus (`demo` with its simulated BlueZ).
static BUS_OVERRIDE: OnceLock<String> = OnceLock::new();

/// Looks for BlueZ on the bus at `address` instead of the system bus, for this process (the
/// demo's simulated BlueZ). The daemon itself uses the system bus, which
/// `DBUS_SYSTEM_BUS_ADDRESS` redirects (the tests).
pub fn use_bus(address: &str) {
    let _ = BUS_OVERRIDE.set(address.to_owned());
}

async fn bluez_bus() -> Result<Connection, BleError> {
    match BUS_OVERRIDE.get() {
        Some(address) => zbus::connection::Builder::address(address.as_str())
            .map_err(BleError::Bus)?
            .build()
            .await
            .map_err(BleError::Bus),
        None => Connection::system().await.map_err(BleError::Bus),
    }
}

fn call(what: &'static str) -> impl FnOnce(zbus::Error) -> BleError {
    move |source| BleError::Call { what, source }
}

fn fdo_call(what: &'static str) -> impl FnOnce(zbus::fdo::Error) -> BleError {
    move |source| BleError::Call { what, source: source.into() }
}

/// Connects, turns by turn per adapter, and tracks the backoff and log state of each device.
#[derive(Debug, Default)]
struct DeviceState {
    failures: u32,
    next_attempt: Option<Instant>,
    /// A failure was logged at warn since the last success (retries go to debug).
    failure_logged: bool,
    /// The last failure's text.
    last_error: String,
}

fn states() -> &'static StdMutex<HashMap<BleDevice, DeviceState>> {
    static STATES: OnceLock<StdMutex<HashMap<BleDevice, DeviceState>>> = OnceLock::new();
    STATES.get_or_init(Default::default)
}

/// The lock the BLE batteries of `adapter` take turns on: one connect or one poll at a time, so
/// that two BMS on one radio do not interleave their connects (BlueZ answers `InProgress`) or
/// their notifications' timing.
pub fn adapter_turn(adapter: &str) -> Arc<Mutex<()>> {
    static TURNS: OnceLock<StdMutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut turns = TURNS.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(turns.entry(adapter.to_owned()).or_default())
}

/// Forgets the failures of `device`: the next [`open`] connects at once (`probe`, which tries
/// one protocol after another on the same device).
pub fn forget_failures(device: &BleDevice) {
    states().lock().unwrap_or_else(PoisonError::into_inner).remove(device);
}

/// The wait after `failures` failed attempts in a row.
pub fn backoff(failures: u32) -> Duration {
    let doubled = BACKOFF_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(10));
    doubled.min(BACKOFF_MAX)
}

/// Connects to `device` and opens its GATT link for `gatt`: the stream of a connected BMS, or
/// why not. Honours the backoff of the device's earlier failures and logs state changes once.
pub async fn open(device: &BleDevice, gatt: Gatt) -> Result<BleStream, BleError> {
    {
        let states = states().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = states.get(device) {
            if let Some(left) = state.next_attempt.map(|at| at.saturating_duration_since(Instant::now())) {
                if !left.is_zero() {
                    return Err(BleError::Backoff { last: state.last_error.clone() });
                }
            }
        }
    }
    let turn = adapter_turn(&device.adapter);
    let result = {
        let _turn = turn.lock().await;
        connect(device, gatt).await
    };
    let mut states = states().lock().unwrap_or_else(PoisonError::into_inner);
    let state = states.entry(device.clone()).or_default();
    match result {
        Ok(stream) => {
            tracing::info!(device = %device.address, adapter = %device.adapter, "BLE connected");
            *state = DeviceState::default();
            Ok(stream)
        }
        Err(err) => {
            state.failures = state.failures.saturating_add(1);
            let wait = backoff(state.failures);
            state.next_attempt = Some(Instant::now() + wait);
            state.last_error = err.to_string();
            if state.failure_logged {
                tracing::debug!(device = %device.address, error = %err, "BLE connect failed again; next try in {wait:?}");
            } else {
                tracing::warn!(device = %device.address, error = %err, "BLE connect failed; retrying with backoff up to {BACKOFF_MAX:?} (logged once until it connects)");
                state.failure_logged = true;
            }
            Err(err)
        }
    }
}

async fn proxy<'a>(
    conn: &Connection,
    path: String,
    interface: &'static str,
) -> Result<zbus::Proxy<'a>, BleError> {
    zbus::proxy::Builder::new(conn)
        .destination(BLUEZ)
        .and_then(|b| b.path(path))
        .and_then(|b| b.interface(interface))
        .map(|b| b.cache_properties(CacheProperties::No))
        .map_err(call("proxy"))?
        .build()
        .await
        .map_err(call("proxy"))
}

/// Every object BlueZ exports.
pub async fn managed_objects(conn: &Connection) -> Result<ManagedObjects, BleError> {
    let manager = ObjectManagerProxy::builder(conn)
        .destination(BLUEZ)
        .and_then(|b| b.path("/"))
        .map_err(call("ObjectManager"))?
        .build()
        .await
        .map_err(call("ObjectManager"))?;
    manager.get_managed_objects().await.map_err(fdo_call("GetManagedObjects"))
}

/// A string property of an object of `objects`.
pub fn string_property(objects: &ManagedObjects, path: &str, interface: &str, name: &str) -> Option<String> {
    let (_, interfaces) = objects.iter().find(|(p, _)| p.as_str() == path)?;
    let (_, properties) = interfaces.iter().find(|(i, _)| i.as_str() == interface)?;
    String::try_from(properties.get(name)?.clone()).ok()
}

fn has_interface(objects: &ManagedObjects, path: &str, interface: &str) -> bool {
    objects
        .iter()
        .any(|(p, interfaces)| p.as_str() == path && interfaces.keys().any(|i| i.as_str() == interface))
}

fn property<'a>(
    objects: &'a ManagedObjects,
    path: &str,
    interface: &str,
    name: &str,
) -> Option<&'a OwnedValue> {
    let (_, interfaces) = objects.iter().find(|(p, _)| p.as_str() == path)?;
    let (_, properties) = interfaces.iter().find(|(i, _)| i.as_str() == interface)?;
    properties.get(name)
}

/// The object paths below `parent` with `interface` whose `UUID` is `uuid`.
fn children_with_uuid(objects: &ManagedObjects, parent: &str, interface: &str, uuid: &str) -> Vec<String> {
    let prefix = format!("{parent}/");
    let mut found: Vec<String> = objects
        .iter()
        .filter(|(path, _)| path.as_str().starts_with(&prefix))
        .filter(|(path, _)| {
            string_property(objects, path.as_str(), interface, "UUID")
                .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
        })
        .map(|(path, _)| path.to_string())
        .collect();
    found.sort();
    found
}

fn flags(objects: &ManagedObjects, path: &str) -> Vec<String> {
    property(objects, path, CHARACTERISTIC1, "Flags")
        .and_then(|v| Vec::<String>::try_from(v.clone()).ok())
        .unwrap_or_default()
}

async fn within<T>(
    what: &'static str,
    waited: Duration,
    future: impl std::future::Future<Output = Result<T, BleError>>,
) -> Result<T, BleError> {
    tokio::time::timeout(waited, future).await.map_err(|_| BleError::Timeout { what, waited })?
}

/// A filtered discovery for `device` alone, stopped once it is found (or after
/// [`DISCOVERY_TIMEOUT`]).
async fn discover(conn: &Connection, device: &BleDevice) -> Result<(), BleError> {
    let adapter = proxy(conn, device.adapter_path(), ADAPTER1).await?;
    let mut filter: HashMap<&str, Value<'_>> = HashMap::new();
    filter.insert("Transport", Value::from("le"));
    filter.insert("Pattern", Value::from(device.address.as_str()));
    if adapter.call_method("SetDiscoveryFilter", &(filter,)).await.is_err() {
        // BlueZ before 5.54 has no Pattern: the transport filter alone.
        let mut le: HashMap<&str, Value<'_>> = HashMap::new();
        le.insert("Transport", Value::from("le"));
        adapter.call_method("SetDiscoveryFilter", &(le,)).await.map_err(call("SetDiscoveryFilter"))?;
    }
    adapter.call_method("StartDiscovery", &()).await.map_err(call("StartDiscovery"))?;
    tracing::debug!(device = %device.address, adapter = %device.adapter, "discovering");
    let path = device.path();
    let deadline = Instant::now() + DISCOVERY_TIMEOUT;
    let found = loop {
        if has_interface(&managed_objects(conn).await?, &path, DEVICE1) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Stopped whether found or not: a discovery left running slows every connection of the radio.
    if let Err(err) = adapter.call_method("StopDiscovery", &()).await {
        tracing::debug!(error = %err, "StopDiscovery");
    }
    if found {
        Ok(())
    } else {
        Err(BleError::NotFound {
            address: device.address.clone(),
            adapter: device.adapter.clone(),
            waited: DISCOVERY_TIMEOUT,
        })
    }
}

async fn connect(device: &BleDevice, gatt: Gatt) -> Result<BleStream, BleError> {
    let conn = bluez_bus().await?;
    let objects = managed_objects(&conn).await?;
    if !has_interface(&objects, &device.adapter_path(), ADAPTER1) {
        return Err(BleError::NoAdapter(device.adapter.clone()));
    }
    if !has_interface(&objects, &device.path(), DEVICE1) {
        discover(&conn, device).await?;
    }
    let dev = proxy(&conn, device.path(), DEVICE1).await?;
    let connected: bool = dev.get_property("Connected").await.unwrap_or(false);
    if !connected {
        within("Connect", CONNECT_TIMEOUT, async {
            dev.call_method("Connect", &()).await.map_err(call("Connect"))
        })
        .await?;
    }
    within("resolving GATT services", CONNECT_TIMEOUT, async {
        loop {
            if dev.get_property::<bool>("ServicesResolved").await.unwrap_or(false) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    let objects = managed_objects(&conn).await?;
    let missing = |what, short| BleError::MissingGatt {
        address: device.address.clone(),
        what,
        uuid: Gatt::uuid128(short),
    };
    let service = children_with_uuid(&objects, &device.path(), SERVICE1, &Gatt::uuid128(gatt.service))
        .into_iter()
        .next()
        .ok_or_else(|| missing("service", gatt.service))?;
    let pick = |uuid: u16, wanted: &[&str]| {
        children_with_uuid(&objects, &service, CHARACTERISTIC1, &Gatt::uuid128(uuid))
            .into_iter()
            .find(|path| flags(&objects, path).iter().any(|f| wanted.contains(&f.as_str())))
    };
    let notify_path =
        pick(gatt.notify, &["notify", "indicate"]).ok_or_else(|| missing("characteristic", gatt.notify))?;
    let write_path = pick(gatt.write, &["write", "write-without-response"])
        .ok_or_else(|| missing("characteristic", gatt.write))?;
    let notify_char = proxy(&conn, notify_path.clone(), CHARACTERISTIC1).await?;
    let write_char = proxy(&conn, write_path, CHARACTERISTIC1).await?;
    let properties = |path: String| {
        let conn = conn.clone();
        async move {
            PropertiesProxy::builder(&conn)
                .destination(BLUEZ)
                .and_then(|b| b.path(path))
                .map_err(call("Properties"))?
                .build()
                .await
                .map_err(call("Properties"))
        }
    };
    // Subscribed before StartNotify, so that no notification falls between the two.
    let mut values = properties(notify_path)
        .await?
        .receive_properties_changed()
        .await
        .map_err(call("PropertiesChanged"))?;
    let mut device_changes = properties(device.path())
        .await?
        .receive_properties_changed()
        .await
        .map_err(call("PropertiesChanged"))?;
    notify_char.call_method("StartNotify", &()).await.map_err(call("StartNotify"))?;

    let (notification_tx, notification_rx) = mpsc::channel::<Vec<u8>>(QUEUED_NOTIFICATIONS);
    let (write_tx, mut write_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let address = device.address.clone();
    tokio::spawn(async move {
        let _conn = conn;
        let why = loop {
            tokio::select! {
                signal = values.next() => {
                    let Some(signal) = signal else { break "BlueZ stopped sending notifications" };
                    let Ok(args) = signal.args() else { continue };
                    if args.interface_name.as_str() != CHARACTERISTIC1 {
                        continue;
                    }
                    let Some(bytes) = args.changed_properties.get("Value").and_then(|v| Vec::<u8>::try_from(v.try_clone().ok()?).ok()) else { continue };
                    // A full queue means nobody reads: the bytes would be stale anyway.
                    let _ = notification_tx.try_send(bytes);
                }
                signal = device_changes.next() => {
                    let Some(signal) = signal else { break "BlueZ went away" };
                    let Ok(args) = signal.args() else { continue };
                    let dropped = args.changed_properties.get("Connected").and_then(|v| bool::try_from(v).ok()) == Some(false);
                    if args.interface_name.as_str() == DEVICE1 && dropped {
                        break "the device disconnected";
                    }
                }
                request = write_rx.recv() => {
                    let Some(bytes) = request else {
                        // The link was closed on our side (reopen after silence, shutdown).
                        if let Err(err) = dev.call_method("Disconnect", &()).await {
                            tracing::debug!(device = %address, error = %err, "Disconnect");
                        }
                        break "closed by bms-bridge";
                    };
                    let options: HashMap<&str, Value<'_>> = HashMap::new();
                    if let Err(err) = write_char.call_method("WriteValue", &(bytes, options)).await {
                        tracing::debug!(device = %address, error = %err, "WriteValue");
                        break "a write failed";
                    }
                }
            }
        };
        tracing::info!(device = %address, "BLE disconnected: {why}");
    });
    Ok(BleStream {
        notifications: notification_rx,
        pending: VecDeque::new(),
        writes: write_tx,
        turn: adapter_turn(&device.adapter),
    })
}

/// A connected BLE BMS as a byte stream: writes become `WriteValue`s, notifications the bytes
/// read. Reading returns end of stream once the device disconnected (the port is then reopened,
/// i.e. reconnected, by the poll loop).
#[derive(Debug)]
pub struct BleStream {
    notifications: mpsc::Receiver<Vec<u8>>,
    pending: VecDeque<u8>,
    writes: mpsc::UnboundedSender<Vec<u8>>,
    turn: Arc<Mutex<()>>,
}

impl BleStream {
    /// The turn lock of this device's adapter, held by the poll loop for each poll.
    pub fn turn(&self) -> Arc<Mutex<()>> {
        Arc::clone(&self.turn)
    }
}

impl AsyncRead for BleStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            match this.notifications.poll_recv(cx) {
                Poll::Ready(Some(bytes)) => this.pending.extend(bytes),
                // End of stream: the device is gone.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(this.pending.len());
        let bytes: Vec<u8> = this.pending.drain(..n).collect();
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BleStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.writes.send(buf.to_vec()) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => {
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "BLE link closed")))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One device seen by [`scan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// MAC address.
    pub address: String,
    /// Advertised name (may be empty).
    pub name: String,
    /// Signal strength (dBm), if BlueZ has one.
    pub rssi: Option<i16>,
    /// The advertised service UUIDs.
    pub uuids: Vec<String>,
}

/// Discovers BLE devices on `adapter` for `duration` (no filter but LE) and lists what BlueZ
/// knows afterwards.
pub async fn scan(adapter: &str, duration: Duration) -> Result<Vec<Seen>, BleError> {
    let conn = bluez_bus().await?;
    let adapter_path = format!("/org/bluez/{adapter}");
    if !has_interface(&managed_objects(&conn).await?, &adapter_path, ADAPTER1) {
        return Err(BleError::NoAdapter(adapter.to_owned()));
    }
    let proxy = proxy(&conn, adapter_path.clone(), ADAPTER1).await?;
    let mut le: HashMap<&str, Value<'_>> = HashMap::new();
    le.insert("Transport", Value::from("le"));
    proxy.call_method("SetDiscoveryFilter", &(le,)).await.map_err(call("SetDiscoveryFilter"))?;
    proxy.call_method("StartDiscovery", &()).await.map_err(call("StartDiscovery"))?;
    tokio::time::sleep(duration).await;
    if let Err(err) = proxy.call_method("StopDiscovery", &()).await {
        tracing::debug!(error = %err, "StopDiscovery");
    }
    let objects = managed_objects(&conn).await?;
    let prefix = format!("{adapter_path}/");
    let mut seen: Vec<Seen> = objects
        .iter()
        .filter(|(path, _)| {
            path.as_str().starts_with(&prefix) && !path.as_str()[prefix.len()..].contains('/')
        })
        .filter(|(path, _)| has_interface(&objects, path.as_str(), DEVICE1))
        .map(|(path, _)| {
            let path = path.as_str();
            Seen {
                address: string_property(&objects, path, DEVICE1, "Address").unwrap_or_default(),
                name: string_property(&objects, path, DEVICE1, "Name")
                    .or_else(|| string_property(&objects, path, DEVICE1, "Alias"))
                    .unwrap_or_default(),
                rssi: property(&objects, path, DEVICE1, "RSSI").and_then(|v| i16::try_from(v).ok()),
                uuids: property(&objects, path, DEVICE1, "UUIDs")
                    .and_then(|v| Vec::<String>::try_from(v.clone()).ok())
                    .unwrap_or_default(),
            }
        })
        .collect();
    seen.sort_by(|a, b| b.rssi.cmp(&a.rssi).then_with(|| a.address.cmp(&b.address)));
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_paths() {
        let device = BleDevice::parse("ble:c8:47:8c:12:34:56", None).unwrap();
        assert_eq!(device.address, "C8:47:8C:12:34:56");
        assert_eq!(device.path(), "/org/bluez/hci0/dev_C8_47_8C_12_34_56");
        assert_eq!(
            BleDevice::parse("ble:C8:47:8C:12:34:56", Some("hci1")).unwrap().adapter_path(),
            "/org/bluez/hci1"
        );
        for bad in
            ["C8:47:8C:12:34:56", "ble:C8:47:8C:12:34", "ble:C8:47:8C:12:34:5G", "ble:", "/dev/ttyUSB0"]
        {
            assert!(BleDevice::parse(bad, None).is_err(), "{bad}");
        }
        assert!(BleDevice::parse("ble:C8:47:8C:12:34:56", Some("usb0")).is_err());
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let waits: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn uuids_are_bluez_form() {
        assert_eq!(Gatt::uuid128(0xFFE1), "0000ffe1-0000-1000-8000-00805f9b34fb");
    }
}
