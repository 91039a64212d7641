//! A simulated BlueZ for the tests and `bms-bridge demo` (no radio needed): a zbus server owning
//! `org.bluez` on a private bus, exporting what the daemon's BLE transport talks to — the
//! ObjectManager at `/`, `/org/bluez/hci0` (Adapter1: discovery and its filter), one Device1 per
//! simulated BMS, and under it the protocol's GattService1 with its GattCharacteristic1s.
//!
//! Each device is backed by the protocol's own simulator on a pty (`sim::spawn`): a
//! `WriteValue` on the write characteristic goes to the simulator as bytes, and what the
//! simulator answers comes back as `Value` changes (PropertiesChanged) of the notify
//! characteristic, split into notifications of at most [`BleKnobs::set_mtu`] bytes. Knobs per
//! device: drop the connection, stall (connected but silent), inject garbage before the next
//! reply, vanish (out of range: the device object is removed and Connect fails until it is back
//! and a discovery finds it).

use crate::bms::Gatt;
use crate::config::Protocol;
use crate::sim::PtySimulator;
use crate::transport::ble::BleDevice;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use zbus::fdo;
use zbus::interface;
use zbus::object_server::{ObjectServer, SignalEmitter};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};
use zbus::Connection;

/// Bytes of one notification by default: the ATT MTU of 23 less its 3-byte header.
pub const DEFAULT_MTU_PAYLOAD: usize = 20;
/// What [`BleKnobs::inject_garbage`] sends before the next reply (no protocol starts like it).
pub const GARBAGE: [u8; 5] = [0x00, 0x13, 0x37, 0x42, 0x00];

/// The knobs of one simulated BLE device.
#[derive(Debug)]
pub struct BleKnobs {
    in_range: AtomicBool,
    connected: AtomicBool,
    notifying: AtomicBool,
    stalled: AtomicBool,
    garbage: AtomicBool,
    mtu: AtomicUsize,
    connects: AtomicU64,
    notifications: AtomicU64,
}

impl Default for BleKnobs {
    fn default() -> Self {
        Self {
            in_range: AtomicBool::new(true),
            connected: AtomicBool::new(false),
            notifying: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            garbage: AtomicBool::new(false),
            mtu: AtomicUsize::new(DEFAULT_MTU_PAYLOAD),
            connects: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
        }
    }
}

impl BleKnobs {
    /// Bytes per notification (at least 1).
    pub fn set_mtu(&self, payload: usize) {
        self.mtu.store(payload.max(1), Ordering::SeqCst);
    }

    /// Connected and silent (true), or answering again (false).
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// One notification of [`GARBAGE`] before the next reply.
    pub fn inject_garbage(&self) {
        self.garbage.store(true, Ordering::SeqCst);
    }

    /// Whether a central is connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Successful `Connect` calls so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    /// Notifications sent so far.
    pub fn notifications(&self) -> u64 {
        self.notifications.load(Ordering::SeqCst)
    }
}

/// What the adapter saw: connects in flight at once (a radio does one at a time).
#[derive(Debug, Default)]
pub struct AdapterStats {
    connecting: AtomicU64,
    overlaps: AtomicU64,
    connect_delay_ms: AtomicU64,
}

impl AdapterStats {
    /// Connects that started while another was in flight.
    pub fn overlapping_connects(&self) -> u64 {
        self.overlaps.load(Ordering::SeqCst)
    }

    /// How long a `Connect` takes (a real one: 0.3 to 3 s).
    pub fn set_connect_delay(&self, delay: std::time::Duration) {
        self.connect_delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

/// The simulated BlueZ on a bus.
#[derive(Debug)]
pub struct SimBluez {
    conn: Connection,
    adapter: String,
    devices: Arc<Mutex<Vec<Registered>>>,
    /// The adapter's statistics and its connect delay.
    pub stats: Arc<AdapterStats>,
}

#[derive(Debug, Clone)]
struct Registered {
    device: BleDevice,
    name: String,
    gatt: Gatt,
    knobs: Arc<BleKnobs>,
    stats: Arc<AdapterStats>,
}

/// One simulated BLE BMS: its simulator and knobs.
#[derive(Debug)]
pub struct SimBleDevice {
    /// `ble:ADDR`, the port's device.
    pub device: String,
    /// The BMS simulator behind it (its packs and knobs).
    pub simulator: PtySimulator,
    /// The radio side's knobs.
    pub knobs: Arc<BleKnobs>,
    conn: Connection,
    registered: Registered,
}

fn failed(message: &str) -> fdo::Error {
    fdo::Error::Failed(message.to_owned())
}

struct Adapter1 {
    address: String,
    discovering: bool,
    devices: Arc<Mutex<Vec<Registered>>>,
}

#[interface(name = "org.bluez.Adapter1")]
impl Adapter1 {
    async fn start_discovery(
        &mut self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        self.discovering = true;
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // Every device in range "advertises" at once: registered if BlueZ did not know it.
        for registered in devices.iter().filter(|r| r.knobs.in_range.load(Ordering::SeqCst)) {
            let path = registered.device.path();
            if server.interface::<_, Device1>(path.as_str()).await.is_err() {
                server.at(path.as_str(), Device1::new(registered)).await?;
            }
        }
        self.discovering_changed(&emitter).await?;
        Ok(())
    }

    async fn stop_discovery(
        &mut self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        if !self.discovering {
            return Err(failed("No discovery started"));
        }
        self.discovering = false;
        self.discovering_changed(&emitter).await?;
        Ok(())
    }

    async fn set_discovery_filter(&self, _filter: HashMap<String, OwnedValue>) -> fdo::Result<()> {
        Ok(())
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.address.clone()
    }

    #[zbus(property)]
    fn powered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn discovering(&self) -> bool {
        self.discovering
    }
}

struct Device1 {
    address: String,
    name: String,
    uuids: Vec<String>,
    knobs: Arc<BleKnobs>,
    stats: Arc<AdapterStats>,
}

impl Device1 {
    fn new(registered: &Registered) -> Self {
        Self {
            address: registered.device.address.clone(),
            name: registered.name.clone(),
            uuids: vec![Gatt::uuid128(registered.gatt.service)],
            knobs: Arc::clone(&registered.knobs),
            stats: Arc::clone(&registered.stats),
        }
    }
}

#[interface(name = "org.bluez.Device1")]
impl Device1 {
    async fn connect(&self, #[zbus(signal_emitter)] emitter: SignalEmitter<'_>) -> fdo::Result<()> {
        if self.stats.connecting.fetch_add(1, Ordering::SeqCst) > 0 {
            self.stats.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let delay = self.stats.connect_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        self.stats.connecting.fetch_sub(1, Ordering::SeqCst);
        if !self.knobs.in_range.load(Ordering::SeqCst) {
            return Err(failed("le-connection-abort-by-local"));
        }
        if !self.knobs.connected.swap(true, Ordering::SeqCst) {
            self.knobs.connects.fetch_add(1, Ordering::SeqCst);
        }
        self.connected_changed(&emitter).await?;
        self.services_resolved_changed(&emitter).await?;
        Ok(())
    }

    async fn disconnect(&self, #[zbus(signal_emitter)] emitter: SignalEmitter<'_>) -> fdo::Result<()> {
        self.knobs.connected.store(false, Ordering::SeqCst);
        self.knobs.notifying.store(false, Ordering::SeqCst);
        self.connected_changed(&emitter).await?;
        self.services_resolved_changed(&emitter).await?;
        Ok(())
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.address.clone()
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        self.name.clone()
    }

    #[zbus(property, name = "RSSI")]
    fn rssi(&self) -> i16 {
        -67
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        self.uuids.clone()
    }

    #[zbus(property)]
    fn connected(&self) -> bool {
        self.knobs.connected()
    }

    #[zbus(property)]
    fn services_resolved(&self) -> bool {
        self.knobs.connected()
    }

    #[zbus(property)]
    fn paired(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn trusted(&self) -> bool {
        false
    }
}

struct GattService1 {
    uuid: String,
    device: OwnedObjectPath,
}

#[interface(name = "org.bluez.GattService1")]
impl GattService1 {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.clone()
    }

    #[zbus(property)]
    fn primary(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn device(&self) -> OwnedObjectPath {
        self.device.clone()
    }
}

struct GattCharacteristic1 {
    uuid: String,
    service: OwnedObjectPath,
    flags: Vec<String>,
    value: Vec<u8>,
    knobs: Arc<BleKnobs>,
    /// Where written bytes go (the simulator); `None` on a notify-only characteristic.
    writes: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

#[interface(name = "org.bluez.GattCharacteristic1")]
impl GattCharacteristic1 {
    async fn start_notify(&self, #[zbus(signal_emitter)] emitter: SignalEmitter<'_>) -> fdo::Result<()> {
        if !self.knobs.connected() {
            return Err(failed("Not connected"));
        }
        self.knobs.notifying.store(true, Ordering::SeqCst);
        self.notifying_changed(&emitter).await?;
        Ok(())
    }

    async fn stop_notify(&self, #[zbus(signal_emitter)] emitter: SignalEmitter<'_>) -> fdo::Result<()> {
        self.knobs.notifying.store(false, Ordering::SeqCst);
        self.notifying_changed(&emitter).await?;
        Ok(())
    }

    async fn write_value(&self, value: Vec<u8>, _options: HashMap<String, OwnedValue>) -> fdo::Result<()> {
        if !self.knobs.connected() {
            return Err(failed("Not connected"));
        }
        let writes =
            self.writes.as_ref().ok_or_else(|| fdo::Error::NotSupported("Write not permitted".into()))?;
        writes.send(value).map_err(|_| failed("simulator gone"))
    }

    async fn read_value(&self, _options: HashMap<String, OwnedValue>) -> fdo::Result<Vec<u8>> {
        Ok(self.value.clone())
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.clone()
    }

    #[zbus(property)]
    fn service(&self) -> OwnedObjectPath {
        self.service.clone()
    }

    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        self.flags.clone()
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        self.value.clone()
    }

    #[zbus(property)]
    fn notifying(&self) -> bool {
        self.knobs.notifying.load(Ordering::SeqCst)
    }
}

fn io(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

fn object_path(path: &str) -> zbus::Result<OwnedObjectPath> {
    Ok(ObjectPath::try_from(path.to_owned())?.into())
}

impl SimBluez {
    /// Owns `org.bluez` on the bus at `address` and exports adapter `adapter` (`hci0`).
    pub async fn start(address: &str, adapter: &str) -> zbus::Result<SimBluez> {
        let devices = Arc::new(Mutex::new(Vec::new()));
        let adapter_object = Adapter1 {
            address: "00:1A:7D:DA:71:13".to_owned(),
            discovering: false,
            devices: Arc::clone(&devices),
        };
        // Objects first, then the name: no call can arrive before they exist.
        let conn = zbus::connection::Builder::address(address)?
            .serve_at("/", fdo::ObjectManager)?
            .serve_at(format!("/org/bluez/{adapter}"), adapter_object)?
            .name("org.bluez")?
            .build()
            .await?;
        Ok(SimBluez { conn, adapter: adapter.to_owned(), devices, stats: Arc::default() })
    }

    /// Adds a BLE BMS of `protocol` (a BLE protocol) with `cells` cells at MAC `address`, known
    /// to BlueZ (as after an earlier scan) unless `known` is false: then only a discovery finds
    /// it.
    pub async fn add_device(
        &self,
        protocol: Protocol,
        address: &str,
        cells: usize,
        known: bool,
    ) -> std::io::Result<SimBleDevice> {
        let gatt = protocol.ble().ok_or_else(|| io(format!("{} is not a BLE protocol", protocol.name())))?;
        let device = BleDevice::parse(&format!("ble:{address}"), Some(&self.adapter)).map_err(io)?;
        let simulator = crate::sim::spawn(protocol, &[], cells)?;
        let stream = crate::transport::serial::open_stream(&simulator.path().display().to_string(), 115_200)
            .await
            .map_err(io)?;
        let knobs = Arc::new(BleKnobs::default());
        let name =
            format!("{}-{}", gatt.name_prefixes.first().copied().unwrap_or("BMS"), address.replace(':', ""));
        let registered = Registered {
            device: device.clone(),
            name,
            gatt,
            knobs: Arc::clone(&knobs),
            stats: Arc::clone(&self.stats),
        };
        let server = self.conn.object_server();
        if known {
            server.at(device.path(), Device1::new(&registered)).await.map_err(io)?;
        }
        let service_path = format!("{}/service000c", device.path());
        let service = GattService1 {
            uuid: Gatt::uuid128(gatt.service),
            device: object_path(&device.path()).map_err(io)?,
        };
        server.at(service_path.as_str(), service).await.map_err(io)?;
        let (write_tx, mut write_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let notify_path = format!("{service_path}/char000d");
        let write_path =
            if gatt.write == gatt.notify { notify_path.clone() } else { format!("{service_path}/char0010") };
        let mut notify_flags = vec!["notify".to_owned()];
        if gatt.write == gatt.notify {
            notify_flags.extend(["write".to_owned(), "write-without-response".to_owned()]);
        }
        let characteristic = |uuid: u16, flags: Vec<String>, writes| -> zbus::Result<GattCharacteristic1> {
            Ok(GattCharacteristic1 {
                uuid: Gatt::uuid128(uuid),
                service: object_path(&service_path)?,
                flags,
                value: Vec::new(),
                knobs: Arc::clone(&knobs),
                writes,
            })
        };
        let notify_writes = (gatt.write == gatt.notify).then(|| write_tx.clone());
        server
            .at(notify_path.as_str(), characteristic(gatt.notify, notify_flags, notify_writes).map_err(io)?)
            .await
            .map_err(io)?;
        if gatt.write != gatt.notify {
            let flags = vec!["write".to_owned(), "write-without-response".to_owned()];
            server
                .at(write_path.as_str(), characteristic(gatt.write, flags, Some(write_tx)).map_err(io)?)
                .await
                .map_err(io)?;
        }
        self.devices.lock().unwrap_or_else(PoisonError::into_inner).push(registered.clone());

        // The pump: requests to the simulator, its replies back as notifications.
        let (mut from_bms, mut to_bms) = tokio::io::split(stream);
        tokio::spawn(async move {
            while let Some(bytes) = write_rx.recv().await {
                if to_bms.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let conn = self.conn.clone();
        let pump_knobs = Arc::clone(&knobs);
        tokio::spawn(async move {
            let Ok(notify) =
                conn.object_server().interface::<_, GattCharacteristic1>(notify_path.as_str()).await
            else {
                return;
            };
            let mut chunk = [0u8; 512];
            loop {
                let n = match from_bms.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let k = &pump_knobs;
                if !k.connected() || !k.notifying.load(Ordering::SeqCst) || k.stalled.load(Ordering::SeqCst) {
                    continue;
                }
                let mut parts: Vec<Vec<u8>> = Vec::new();
                if k.garbage.swap(false, Ordering::SeqCst) {
                    parts.push(GARBAGE.to_vec());
                }
                let mtu = k.mtu.load(Ordering::SeqCst).max(1);
                parts.extend(chunk.get(..n).unwrap_or_default().chunks(mtu).map(<[u8]>::to_vec));
                for part in parts {
                    notify.get_mut().await.value = part;
                    let emitted = notify.get().await.value_changed(notify.signal_emitter()).await;
                    if emitted.is_err() {
                        return;
                    }
                    k.notifications.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Ok(SimBleDevice {
            device: format!("ble:{}", device.address),
            simulator,
            knobs,
            conn: self.conn.clone(),
            registered,
        })
    }
}

impl SimBleDevice {
    /// The device drops the connection (as when it reboots or the link supervision times out).
    pub async fn drop_connection(&self) -> zbus::Result<()> {
        self.knobs.connected.store(false, Ordering::SeqCst);
        self.knobs.notifying.store(false, Ordering::SeqCst);
        let path = self.registered.device.path();
        if let Ok(device) = self.conn.object_server().interface::<_, Device1>(path.as_str()).await {
            let device_ref = device.get().await;
            device_ref.connected_changed(device.signal_emitter()).await?;
            device_ref.services_resolved_changed(device.signal_emitter()).await?;
        }
        Ok(())
    }

    /// Out of range (`false`): connection dropped, Connect fails (BlueZ keeps the device it
    /// knows) until it is back in range (`true`).
    pub async fn set_in_range(&self, in_range: bool) -> zbus::Result<()> {
        self.knobs.in_range.store(in_range, Ordering::SeqCst);
        if !in_range {
            self.drop_connection().await?;
        }
        Ok(())
    }
}
