//! One poll loop per port. Several BMS addresses on one RS485 bus take turns; each reading or
//! failure goes, stamped with the time, to that battery's `watch` channel, so a slow consumer
//! never holds up the bus and always sees the latest result.
//!
//! A port that cannot be opened, or that breaks (USB adapter unplugged), is reopened on the next
//! cycle; the loop never exits because a BMS is silent or its device is gone.

pub mod can;
pub mod mqtt;
mod poll;
mod writes;

pub use writes::{send as send_write, CommandSource, MAX_RETRIES};

use crate::battery::Battery;
use crate::bms::plan::PollTarget;
use crate::bms::Link;
use crate::config::{PortConfig, Protocol};
use crate::transport::ble::{self, BleDevice};
use crate::transport::can::{MemoryCanBus, SocketCanLink};
use crate::transport::can_bridge;
use crate::transport::framed::FramedLink;
use crate::transport::modbus::ModbusLink;
use crate::transport::serial::{self, SerialLink};
use crate::transport::stream::ByteStream;
use crate::transport::LinkError;
use std::time::Duration;
use tokio::sync::watch;

/// Cycles without any answer on a port after which it is closed and opened again.
const REOPEN_AFTER_SILENT_CYCLES: u32 = 3;

/// How often an open port's device path is checked between polls where inotify is not
/// available: an unplugged USB adapter is reported within this time, not at the next poll
/// (5 s apart, say). With inotify (`Presence`) it is reported at once.
const PRESENCE_CHECK: Duration = Duration::from_millis(250);

/// The result of polling one BMS once.
#[derive(Debug, Clone)]
pub struct PollUpdate {
    /// When the poll finished.
    pub at: std::time::Instant,
    /// The reading, or what went wrong (with port and address).
    pub result: Result<Battery, ReadError>,
    /// The failure is the device itself gone (open or I/O failed, its path vanished), not a
    /// BMS that missed one reply: a bank drops the pack at once (`bank/health.rs`).
    pub device_gone: bool,
}

pub use crate::bms::PollError;

#[cfg(test)]
mod tests;

/// Why a battery has no reading this time, and where: typed up to the battery task, which
/// shows it (`/ErrorCode` text, the log, the status page).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// One poll of the BMS failed.
    #[error("port {port}{}: {error}", at_address(*address))]
    Poll {
        /// The port.
        port: String,
        /// The BMS's address on it.
        address: Option<u8>,
        /// What failed.
        error: std::sync::Arc<PollError>,
    },
    /// The device path vanished (USB adapter unplugged).
    #[error("port {port}: device gone")]
    DeviceGone {
        /// The port.
        port: String,
    },
    /// The port (serial, CAN bridge, BLE device) could not be opened.
    #[error("port {port}: cannot open: {reason}")]
    CannotOpen {
        /// The port.
        port: String,
        /// The system's or BlueZ's reason.
        reason: String,
    },
    /// The CAN interface could not be opened or failed.
    #[error("CAN {interface}: {}{error}", if *opening { "cannot open: " } else { "" })]
    CanLink {
        /// The interface.
        interface: String,
        /// While opening it (else while reading).
        opening: bool,
        /// The system's error.
        error: std::sync::Arc<std::io::Error>,
    },
    /// A broadcasting BMS stopped sending what a reading needs.
    #[error("CAN {interface}{}: {missing}", at_address(*address))]
    CanSilent {
        /// The interface.
        interface: String,
        /// The pack's address on the bus (JK CAN), `None` for the one battery of the bus.
        address: Option<u8>,
        /// The frames missing.
        missing: crate::protocol::MissingFrames,
    },
    /// The MQTT battery cannot run (bad URL, broker refused, credentials unreadable).
    #[error("MQTT {broker}: {reason}")]
    Mqtt {
        /// The broker and topic.
        broker: String,
        /// The reason.
        reason: String,
    },
}

fn at_address(address: Option<u8>) -> String {
    address.map_or(String::new(), |a| format!(" address {a}"))
}

/// Where a battery's updates go: its address on the bus and the channel.
#[derive(Debug)]
pub struct Subscriber {
    /// Bus address (`None` for protocols without addressing).
    pub address: Option<u8>,
    /// Latest poll result.
    pub tx: watch::Sender<Option<PollUpdate>>,
}

/// Polls every BMS of `port` every `interval` until `shutdown` turns true.
pub async fn run_port(
    port: PortConfig,
    interval: Duration,
    subscribers: Vec<Subscriber>,
    shutdown: watch::Receiver<bool>,
) {
    run_port_with_commands(port, interval, subscribers, Vec::new(), shutdown).await;
}

/// [`run_port`], plus the writes commanded on `commands` (one channel per battery that allows
/// writes), sent between polls (see `writes.rs`).
pub async fn run_port_with_commands(
    port: PortConfig,
    interval: Duration,
    subscribers: Vec<Subscriber>,
    commands: Vec<CommandSource>,
    shutdown: watch::Receiver<bool>,
) {
    run_port_on(port, interval, subscribers, commands, None, shutdown).await;
}

/// [`run_port_with_commands`]; a polled CAN port (Daly CAN) whose interface is `memory_can`
/// runs on that in-memory bus instead of SocketCAN (demo, tests).
pub async fn run_port_on(
    port: PortConfig,
    interval: Duration,
    subscribers: Vec<Subscriber>,
    commands: Vec<CommandSource>,
    memory_can: Option<MemoryCanBus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut writer = writes::Writer::new(commands);
    let timeout = Duration::from_millis(port.timeout_ms);
    let mut link: Option<PortLink> = None;
    let packs: Vec<u8> = port.poll_addresses().into_iter().flatten().collect();
    let mut identity_read = vec![false; subscribers.len()];
    let mut silent_cycles = 0u32;
    let mut quiet = false;
    let mut presence = Presence::new(&port.device);
    // A timerfd tick: tokio's interval woke the thread twice per tick, at the start of its
    // wheel slot and then at the tick (`transport::alarm`).
    let mut ticker = crate::transport::alarm::Ticker::new(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => {}
            // A CAN interface or a BLE address is no path: a link that fails is reopened from
            // its I/O error.
            () = presence.gone(), if link.is_some() && !port.protocol.is_can() && port.protocol.ble().is_none() => {
                tracing::warn!(port = %port.device, "device gone; reopening when it is back");
                for sub in &subscribers {
                    publish(sub, Err(ReadError::DeviceGone { port: port.device.clone() }), true);
                }
                link = None;
                continue;
            }
        }
        if *shutdown.borrow() {
            return;
        }
        if link.is_none() {
            match open_port(&port, memory_can.as_ref()).await {
                Ok(opened) => {
                    if quiet {
                        tracing::debug!(port = %port.device, baud = port.baud(), "port open");
                    } else {
                        tracing::info!(port = %port.device, baud = port.baud(), "port open");
                    }
                    link = Some(opened);
                    identity_read.fill(false);
                }
                Err(err) => {
                    for sub in &subscribers {
                        let error = ReadError::CannotOpen { port: port.device.clone(), reason: err.clone() };
                        publish(sub, Err(error), true);
                    }
                    continue;
                }
            }
        }
        if let Some(open) = link.as_mut() {
            writer.run(port.protocol, open, &port.device, timeout).await;
        }
        let mut answered = false;
        // The BLE batteries of one adapter take turns: one poll at a time on the radio.
        let turn = link.as_ref().and_then(PortLink::turn);
        let _turn = match &turn {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        for (index, sub) in subscribers.iter().enumerate() {
            let Some(open) = link.as_mut() else { break };
            let need_identity = !identity_read.get(index).copied().unwrap_or(false);
            let result = if port.protocol.one_battery_per_port() {
                poll_addresses(port.protocol, open, &packs, need_identity, timeout).await
            } else {
                poll_once(port.protocol, open, sub.address, need_identity, timeout).await
            };
            match result {
                Ok(battery) => {
                    answered = true;
                    if let Some(read) = identity_read.get_mut(index) {
                        *read |= need_identity;
                    }
                    publish(sub, Ok(battery), false);
                }
                Err(err) => {
                    let broken = matches!(&err, PollError::Link(e) if e.port_is_broken());
                    if broken {
                        tracing::warn!(port = %port.device, error = %err, "port failed; reopening next cycle");
                        link = None;
                    }
                    let error = ReadError::Poll {
                        port: port.device.clone(),
                        address: sub.address,
                        error: err.into(),
                    };
                    publish(sub, Err(error), broken);
                }
            }
        }
        // A device path can come back as a different device (adapter re-plugged, link
        // re-pointed) while the old descriptor just stays silent: after a few cycles without
        // any answer, the port is reopened from its path.
        // A BMS that sleeps (Daly) stays silent for hours: the reopening is logged once per
        // silent stretch, not every few cycles.
        silent_cycles = if answered { 0 } else { silent_cycles + 1 };
        quiet &= !answered;
        if silent_cycles >= REOPEN_AFTER_SILENT_CYCLES && link.is_some() {
            if !quiet {
                tracing::info!(port = %port.device, "no answer for {silent_cycles} cycles; reopening the port (logged once until it answers)");
            }
            quiet = true;
            link = None;
            silent_cycles = 0;
        }
    }
}

fn publish(sub: &Subscriber, result: Result<Battery, ReadError>, device_gone: bool) {
    // send_replace never fails; it keeps only the newest result for a slow reader.
    sub.tx.send_replace(Some(PollUpdate { at: std::time::Instant::now(), result, device_gone }));
}

/// Tells when a device path disappears (a USB adapter unplugged, its udev link removed):
/// inotify on the path's directory, so nothing wakes while nothing changes there; a check every
/// [`PRESENCE_CHECK`] where inotify is not available.
struct Presence {
    path: std::path::PathBuf,
    watch: Option<tokio::io::unix::AsyncFd<InotifyFd>>,
}

/// The inotify instance as the raw fd tokio's reactor registers.
struct InotifyFd(nix::sys::inotify::Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers the inotify fd with the reactor. `AsyncFd::new` is deprecated because it cannot
/// know that the fd outlives the registration; here it does: `InotifyFd` owns it (an
/// `OwnedFd` inside nix's `Inotify`) and the `AsyncFd` owns the `InotifyFd`. The replacement,
/// `AsyncFd::register`, is `unsafe` for the same promise; the crate's one `unsafe` block is
/// zbus's raw-body builder (`victron::bus_item::send_signal`), whose contract its tests check.
#[allow(deprecated)]
fn register(fd: InotifyFd) -> Option<tokio::io::unix::AsyncFd<InotifyFd>> {
    tokio::io::unix::AsyncFd::new(fd).ok()
}

impl Presence {
    fn new(device: &str) -> Self {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let path = std::path::PathBuf::from(device);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|inotify| {
                let gone = AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF;
                inotify.add_watch(dir, gone).map(|_| inotify)
            })
            .ok()
            .and_then(|inotify| register(InotifyFd(inotify)));
        Self { path, watch }
    }

    /// Returns once the device no longer exists.
    async fn gone(&mut self) {
        loop {
            match &self.watch {
                Some(watch) => match watch.readable().await {
                    Ok(mut ready) => {
                        // What changed does not matter (the path is looked at below); all of it
                        // is read, so the next change is a new edge for the reactor.
                        while ready.get_inner().0.read_events().is_ok_and(|events| !events.is_empty()) {}
                        ready.clear_ready();
                    }
                    Err(_) => self.watch = None,
                },
                None => tokio::time::sleep(PRESENCE_CHECK).await,
            }
            if !self.path.exists() {
                return;
            }
        }
    }
}

/// A framed link on a serial port, a CAN bridge or a BLE device.
pub type StreamLink = SerialLink;

/// An open port: a byte link with the protocol's own framing, or a tokio-modbus RTU master.
// One per open port, held by its poll loop: the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PortLink {
    /// Request/response over `FramedLink` with the protocol's `scan` (JBD, UP16S, JK PB, FoxESS;
    /// the BLE protocols, on the notifications of their characteristic).
    Framed(StreamLink),
    /// tokio-modbus RTU client (Renogy, EG4-LL).
    Modbus(ModbusLink),
}

impl PortLink {
    /// The turn lock of a BLE link's adapter (`None`: a serial port, nobody to take turns with).
    fn turn(&self) -> Option<std::sync::Arc<tokio::sync::Mutex<()>>> {
        match self {
            PortLink::Framed(link) => link.get_ref().turn(),
            PortLink::Modbus(_) => None,
        }
    }

    fn framed(&mut self) -> Result<&mut StreamLink, PollError> {
        match self {
            PortLink::Framed(link) => Ok(link),
            PortLink::Modbus(_) => Err(LinkError::Protocol("port opened as a Modbus link".into()).into()),
        }
    }

    fn modbus(&mut self) -> Result<&mut ModbusLink, PollError> {
        match self {
            PortLink::Modbus(link) => Ok(link),
            PortLink::Framed(_) => Err(LinkError::Protocol("port opened as a framed link".into()).into()),
        }
    }
}

/// Opens the port: a BLE device through BlueZ (`ble:ADDR` on its adapter), else [`open_on`].
pub async fn open_port(port: &PortConfig, memory_can: Option<&MemoryCanBus>) -> Result<PortLink, String> {
    match port.protocol.ble() {
        Some(gatt) => {
            let device = BleDevice::parse(&port.device, port.adapter.as_deref())?;
            let stream = ble::open(&device, gatt).await.map_err(|e| e.to_string())?;
            Ok(framed(port.protocol, ByteStream::Ble(stream), None))
        }
        None => {
            open_on(port.protocol, &port.device, port.baud(), memory_can).await.map_err(|e| e.to_string())
        }
    }
}

/// Opens `device` with the link kind `protocol` needs.
pub async fn open(protocol: Protocol, device: &str, baud: u32) -> Result<PortLink, tokio_serial::Error> {
    open_on(protocol, device, baud, None).await
}

/// [`open`]; a polled CAN protocol on `memory_can` when given, else on the SocketCAN interface
/// `device`, its sentences carried by the protocol's bridge.
pub async fn open_on(
    protocol: Protocol,
    device: &str,
    baud: u32,
    memory_can: Option<&MemoryCanBus>,
) -> Result<PortLink, tokio_serial::Error> {
    let spec = protocol.spec();
    if let (Link::Can, Some(bridge)) = (spec.link, spec.can_bridge) {
        let stream = match memory_can {
            Some(bus) => can_bridge::spawn(bus.connect(), bridge),
            None => {
                can_bridge::spawn(SocketCanLink::open(device).map_err(|err| can_error(device, err))?, bridge)
            }
        };
        return Ok(PortLink::Framed(FramedLink::new(ByteStream::Can(stream))));
    }
    Ok(match spec.link {
        Link::Modbus => PortLink::Modbus(ModbusLink::new(serial::open_stream(device, baud).await?)),
        // CAN and MQTT ports have their own listeners (app/can.rs, app/mqtt.rs), BLE ports are
        // opened by `open_port`; a caller that opens one as a serial port gets the serial error
        // for its device.
        Link::Serial | Link::Can | Link::Mqtt | Link::Ble(_) => {
            framed(protocol, ByteStream::Tty(serial::open_tty(device, baud).await?), Some(baud))
        }
    })
}

/// A CAN interface that cannot be opened, in the error type of the other ports.
fn can_error(device: &str, err: std::io::Error) -> tokio_serial::Error {
    tokio_serial::Error::new(
        tokio_serial::ErrorKind::Io(err.kind()),
        format!("CAN interface {device}: {err} (is it up? ip link set {device} up type can bitrate 250000)"),
    )
}

/// A framed link on `stream` with the protocol's command gap and, on a serial line, its byte
/// time (so a reply is read in a few wake-ups, not one per byte).
fn framed(protocol: Protocol, stream: ByteStream, baud: Option<u32>) -> PortLink {
    let mut link = FramedLink::new(stream);
    if let Some(gap) = protocol.spec().command_gap {
        link.set_min_gap(gap);
    }
    if let Some(baud) = baud {
        link.set_baud(baud);
    }
    PortLink::Framed(link)
}

/// One poll of one BMS (its identity too when `need_identity`); the loop and `probe` use it.
/// FoxESS: one pack of the stack.
pub async fn poll_once(
    protocol: Protocol,
    link: &mut PortLink,
    address: Option<u8>,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let address = address.or(protocol.default_address()).unwrap_or(1);
    poll_addresses(protocol, link, &[address], need_identity, timeout).await
}

/// One poll of the BMS (or, `one_battery_per_port`, the stack) at `addresses`: the protocol's
/// plan run by the one executor.
async fn poll_addresses(
    protocol: Protocol,
    link: &mut PortLink,
    addresses: &[u8],
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let spec = protocol.spec();
    let Some(plan) = spec.poll else {
        return Err(LinkError::Protocol(format!(
            "{} is a CAN protocol, not polled on serial ports",
            spec.name
        ))
        .into());
    };
    poll::run(plan(PollTarget { addresses, need_identity }).as_mut(), link, timeout).await
}
