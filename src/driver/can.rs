//! The CAN listener for the Victron/Pylontech dialect: collects the frames a BMS broadcasts, sends
//! the host keep-alive, and hands a complete, fresh battery to the same per-battery `watch`
//! channel as the serial poll loops, so monitor, control and D-Bus are the same for every BMS.
//!
//! Complete: 0x351, 0x355 and 0x356 (and 0x373 once the BMS has sent it) are present. Fresh: a
//! frame older than the grace period is dropped; the reading's time is that of its OLDEST
//! essential frame, so the monitor's fail-safe sees exactly how old the data is.

use super::{publish, ReadError, Subscriber};
use crate::battery::Battery;
use crate::bms::victron_can::codec::{self as vc, Options};
use crate::protocol::{FrameError, MissingFrames};
use crate::transport::can::{CanFrame, CanLink};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Frames that describe the battery, not its state: kept while the link is up.
const IDENTITY: [u32; 12] = [
    0x35E,
    0x35F,
    0x370,
    0x371,
    0x374,
    0x375,
    0x376,
    0x377,
    0x379,
    vc::SERIAL_1,
    vc::SERIAL_2,
    vc::PRODUCT_ID,
];
/// Frames without which a reading is incomplete.
const ESSENTIAL: [u32; 3] = [vc::LIMITS, vc::SOC, vc::MEASUREMENTS];

/// What one CAN battery needs besides its link.
#[derive(Debug, Clone)]
pub struct CanSettings {
    /// Interface name, for messages.
    pub interface: String,
    /// Decoding deviations of this BMS.
    pub decode: Options,
    /// Series cells from the config (else derived from voltage / average cell voltage).
    pub cell_count: Option<u16>,
    /// Grace period: older frames are stale.
    pub stale_after: Duration,
    /// How often a reading is handed on.
    pub publish_every: Duration,
    /// Keep-alive frame and period; `None` = off.
    pub keepalive: Option<(CanFrame, Duration)>,
}

/// The latest frame of each id and when it came; builds readings from them.
#[derive(Debug, Default)]
pub struct Assembler {
    frames: BTreeMap<u32, (Vec<u8>, Instant)>,
    cells_sent: bool,
    cell_count: Option<u16>,
    scale_hint_given: bool,
}

impl Assembler {
    /// Takes one frame; frames the dialect cannot decode are refused (and not kept).
    pub fn feed(&mut self, now: Instant, frame: &CanFrame, options: &Options) -> Result<(), FrameError> {
        let decoded = vc::decode(frame.id, &frame.data, options)?;
        if frame.id == vc::CELLS {
            if decoded.battery.min_cell_voltage_v.is_none() {
                return Ok(());
            }
            self.cells_sent = true;
        }
        self.frames.insert(frame.id, (frame.data.clone(), now));
        Ok(())
    }

    /// The battery now, or why there is none (missing or stale essential frames).
    pub fn reading(&mut self, now: Instant, settings: &CanSettings) -> Result<Battery, ReadError> {
        let stale = settings.stale_after;
        self.frames.retain(|id, (_, at)| IDENTITY.contains(id) || now.saturating_duration_since(*at) < stale);
        let mut needed: Vec<u32> = ESSENTIAL.to_vec();
        if self.cells_sent {
            needed.push(vc::CELLS);
        }
        let missing: Vec<String> = needed
            .iter()
            .filter(|id| !self.frames.contains_key(id))
            .map(|id| format!("0x{id:03X}"))
            .collect();
        if !missing.is_empty() {
            return Err(ReadError::CanSilent {
                interface: settings.interface.clone(),
                address: None,
                missing: MissingFrames { frames: missing, within: settings.stale_after },
            });
        }
        let oldest =
            needed.iter().filter_map(|id| self.frames.get(id).map(|(_, at)| *at)).min().unwrap_or(now);
        let refs: Vec<(u32, &[u8])> =
            self.frames.iter().map(|(id, (data, _))| (*id, data.as_slice())).collect();
        let mut battery = vc::assemble(&refs, &settings.decode);
        battery.read_at = Some(oldest);
        if self.cell_count.is_none() {
            self.cell_count = settings.cell_count.or_else(|| {
                let (v, lo, hi) =
                    (battery.voltage_v?, battery.min_cell_voltage_v?, battery.max_cell_voltage_v?);
                vc::derive_cell_count(v, lo, hi)
            });
        }
        battery.cell_count = self.cell_count;
        self.scale_hint(&battery, settings);
        Ok(battery)
    }

    /// A pack voltage far below the BMS's own limits means a BMS sending another scale
    /// (Discover: 0.1 V). Said once; the config fixes it, nothing is guessed.
    fn scale_hint(&mut self, b: &Battery, settings: &CanSettings) {
        let Some((v, limit)) = b.voltage_v.zip(b.discharge_voltage_limit_v.or(b.charge_voltage_limit_v))
        else {
            return;
        };
        if !self.scale_hint_given && v > 0.0 && v < limit / 3.0 {
            self.scale_hint_given = true;
            tracing::warn!(
                interface = %settings.interface, voltage_v = v, bms_limit_v = limit,
                "pack voltage is far below the BMS's own voltage limits: this BMS may send 0x356 in \
                 0.1 V (Discover does); set can_voltage_scale = 0.1 in its [[port.battery]]"
            );
        }
    }

    /// Forgets everything (link reopened).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// What a CAN listener does with the frames of its dialect: keeps them, and builds the reading
/// of each battery on the bus from them.
pub trait Listener: Send {
    /// Takes one frame; one the dialect cannot decode is refused (and not kept).
    fn feed(&mut self, now: Instant, frame: &CanFrame) -> Result<(), FrameError>;
    /// The battery at `address` now (`None`: the one battery of the bus), or why there is none.
    fn reading(&mut self, now: Instant, address: Option<u8>) -> Result<Battery, ReadError>;
    /// Forgets everything (link reopened).
    fn reset(&mut self);
}

/// The Victron/Pylontech dialect: one battery per bus.
#[derive(Debug)]
pub struct VictronListener {
    assembler: Assembler,
    settings: CanSettings,
}

impl Listener for VictronListener {
    fn feed(&mut self, now: Instant, frame: &CanFrame) -> Result<(), FrameError> {
        self.assembler.feed(now, frame, &self.settings.decode)
    }

    fn reading(&mut self, now: Instant, _: Option<u8>) -> Result<Battery, ReadError> {
        self.assembler.reading(now, &self.settings)
    }

    fn reset(&mut self) {
        self.assembler.reset();
    }
}

/// JK's own CAN protocol: one battery per DIP address.
#[derive(Debug)]
pub struct JkListener {
    assembler: crate::bms::jk_can::assemble::Assembler,
    settings: CanSettings,
    /// Per address: series cells from the config.
    options: BTreeMap<u8, Option<u16>>,
}

impl JkListener {
    /// A listener for the packs at the addresses of `options` (address -> configured cell count).
    pub fn new(settings: CanSettings, options: BTreeMap<u8, Option<u16>>) -> Self {
        Self { assembler: Default::default(), settings, options }
    }
}

impl Listener for JkListener {
    fn feed(&mut self, now: Instant, frame: &CanFrame) -> Result<(), FrameError> {
        self.assembler.feed(now, frame.id, &frame.data)
    }

    fn reading(&mut self, now: Instant, address: Option<u8>) -> Result<Battery, ReadError> {
        let address = address.unwrap_or(0);
        let mut battery =
            self.assembler.reading(now, address, self.settings.stale_after).map_err(|missing| {
                ReadError::CanSilent {
                    interface: self.settings.interface.clone(),
                    address: Some(address),
                    missing,
                }
            })?;
        let cells = self.options.get(&address).copied().flatten();
        // A pack without cell frames (JK CAN "V1"): the configured count, else derived.
        if battery.cell_count.is_none() {
            battery.cell_count = cells.or_else(|| {
                let (v, lo, hi) =
                    (battery.voltage_v?, battery.min_cell_voltage_v?, battery.max_cell_voltage_v?);
                vc::derive_cell_count(v, lo, hi)
            });
        }
        Ok(battery)
    }

    fn reset(&mut self) {
        self.assembler.reset();
    }
}

/// Listens on the link `open` gives until `shutdown` turns true; reopens it when it fails.
pub async fn run_can<L, F>(settings: CanSettings, open: F, sub: Subscriber, shutdown: watch::Receiver<bool>)
where
    L: CanLink,
    F: FnMut() -> std::io::Result<L> + Send,
{
    let listener = VictronListener { assembler: Assembler::default(), settings: settings.clone() };
    run_listener(settings, listener, open, vec![sub], shutdown).await;
}

/// Feeds every frame of the link `open` gives to `listener` and hands each subscriber its
/// battery every `publish_every`, until `shutdown` turns true; reopens the link when it fails.
pub async fn run_listener<L, F, D>(
    settings: CanSettings,
    mut listener: D,
    mut open: F,
    subs: Vec<Subscriber>,
    mut shutdown: watch::Receiver<bool>,
) where
    L: CanLink,
    F: FnMut() -> std::io::Result<L> + Send,
    D: Listener,
{
    let mut bad_frames_logged = false;
    // The link itself failed: every battery of the bus is gone.
    let publish_all = |opening: bool, error: std::io::Error| {
        let error =
            ReadError::CanLink { interface: settings.interface.clone(), opening, error: error.into() };
        for sub in &subs {
            publish(sub, Err(error.clone()), true);
        }
    };
    loop {
        let mut link = match open() {
            Ok(link) => {
                tracing::info!(interface = %settings.interface, "CAN interface open");
                link
            }
            Err(err) => {
                publish_all(true, err);
                tokio::select! {
                    _ = tokio::time::sleep(settings.publish_every) => continue,
                    _ = shutdown.changed() => if *shutdown.borrow() { return } else { continue },
                }
            }
        };
        listener.reset();
        let mut ticker = tokio::time::interval(settings.publish_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let keepalive_period = settings.keepalive.as_ref().map_or(Duration::from_secs(3600), |(_, p)| *p);
        let mut keepalive = tokio::time::interval(keepalive_period);
        let mut send_failed = false;
        loop {
            tokio::select! {
                frame = link.recv() => match frame {
                    Ok(frame) => {
                        if let Err(err) = listener.feed(Instant::now(), &frame) {
                            if !bad_frames_logged {
                                tracing::warn!(interface = %settings.interface, id = frame.id, error = %err, "CAN frame ignored (logged once)");
                                bad_frames_logged = true;
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(interface = %settings.interface, error = %err, "CAN interface failed; reopening");
                        publish_all(false, err);
                        break;
                    }
                },
                _ = ticker.tick() => {
                    let now = Instant::now();
                    for sub in &subs {
                        // Frames that stopped are a device gone, not a missed reply (bank/health.rs).
                        let reading = listener.reading(now, sub.address);
                        let gone = reading.is_err();
                        publish(sub, reading, gone);
                    }
                }
                _ = keepalive.tick(), if settings.keepalive.is_some() => {
                    if let Some((frame, _)) = &settings.keepalive {
                        match link.send(frame).await {
                            Ok(()) => send_failed = false,
                            Err(err) if !send_failed => {
                                send_failed = true;
                                tracing::warn!(interface = %settings.interface, error = %err, "cannot send the CAN keep-alive (said once until it works)");
                            }
                            Err(_) => {}
                        }
                    }
                }
                _ = shutdown.changed() => if *shutdown.borrow() { return },
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.publish_every) => {}
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

#[cfg(test)]
#[path = "can_tests.rs"]
mod tests;
