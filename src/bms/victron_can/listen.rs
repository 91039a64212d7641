//! Listening to the Victron/Pylontech dialect: collects the frames a BMS broadcasts and builds
//! a complete, fresh battery from them.
//!
//! Complete: 0x351, 0x355 and 0x356 (and 0x373 once the BMS has sent it) are present. Fresh: a
//! frame older than the grace period is dropped; the reading's time is that of its OLDEST
//! essential frame, so the monitor's fail-safe sees exactly how old the data is.

use super::codec::{self as vc, Options};
use crate::battery::Battery;
use crate::bms::listen::{ListenSettings, Listener};
use crate::protocol::{FrameError, MissingFrames};
use std::collections::BTreeMap;
use std::time::Instant;

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

/// The latest frame of each id and when it came; builds readings from them.
#[derive(Debug, Default)]
pub struct Assembler {
    frames: BTreeMap<u32, (Vec<u8>, Instant)>,
    cells_sent: bool,
    cell_count: Option<u16>,
    scale_hint_given: bool,
    notice: Option<String>,
}

impl Assembler {
    /// Takes one frame; frames the dialect cannot decode are refused (and not kept).
    pub fn feed(&mut self, now: Instant, id: u32, data: &[u8], options: &Options) -> Result<(), FrameError> {
        let decoded = vc::decode(id, data, options)?;
        if id == vc::CELLS {
            if decoded.battery.min_cell_voltage_v.is_none() {
                return Ok(());
            }
            self.cells_sent = true;
        }
        self.frames.insert(id, (data.to_vec(), now));
        Ok(())
    }

    /// The battery now, or why there is none (missing or stale essential frames).
    pub fn reading(&mut self, now: Instant, settings: &ListenSettings) -> Result<Battery, MissingFrames> {
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
            return Err(MissingFrames { frames: missing, within: settings.stale_after });
        }
        let oldest =
            needed.iter().filter_map(|id| self.frames.get(id).map(|(_, at)| *at)).min().unwrap_or(now);
        let refs: Vec<(u32, &[u8])> =
            self.frames.iter().map(|(id, (data, _))| (*id, data.as_slice())).collect();
        let mut battery = vc::assemble(&refs, &options(settings));
        battery.read_at = Some(oldest);
        if self.cell_count.is_none() {
            self.cell_count = settings.cell_count(None).or_else(|| {
                let (v, lo, hi) =
                    (battery.voltage_v?, battery.min_cell_voltage_v?, battery.max_cell_voltage_v?);
                vc::derive_cell_count(v, lo, hi)
            });
        }
        battery.cell_count = self.cell_count;
        self.scale_hint(&battery);
        Ok(battery)
    }

    /// A pack voltage far below the BMS's own limits means a BMS sending another scale
    /// (Discover: 0.1 V). Said once (the loop logs it); the config fixes it, nothing is guessed.
    fn scale_hint(&mut self, b: &Battery) {
        let Some((v, limit)) = b.voltage_v.zip(b.discharge_voltage_limit_v.or(b.charge_voltage_limit_v))
        else {
            return;
        };
        if !self.scale_hint_given && v > 0.0 && v < limit / 3.0 {
            self.scale_hint_given = true;
            self.notice = Some(format!(
                "pack voltage {v} V is far below the BMS's own voltage limit {limit} V: this BMS may \
                 send 0x356 in 0.1 V (Discover does); set can_voltage_scale = 0.1 in its [[port.battery]]"
            ));
        }
    }

    /// Something the user should know, once (taken by the listener loop, which logs it).
    pub fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    /// Forgets everything (link reopened).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The Victron/Pylontech dialect: one battery per bus.
#[derive(Debug)]
pub struct VictronListener {
    assembler: Assembler,
    settings: ListenSettings,
}

impl Listener for VictronListener {
    fn feed(&mut self, now: Instant, id: u32, data: &[u8]) -> Result<(), FrameError> {
        self.assembler.feed(now, id, data, &options(&self.settings))
    }

    fn reading(&mut self, now: Instant, _: Option<u8>) -> Result<Battery, MissingFrames> {
        self.assembler.reading(now, &self.settings)
    }

    fn reset(&mut self) {
        self.assembler.reset();
    }

    fn take_notice(&mut self) -> Option<String> {
        self.assembler.take_notice()
    }
}

/// The spec's listener: one battery per bus.
pub fn listener(settings: &ListenSettings) -> Box<dyn Listener> {
    Box::new(VictronListener { assembler: Assembler::default(), settings: settings.clone() })
}

/// The decoding options of `settings`.
fn options(settings: &ListenSettings) -> Options {
    Options { voltage_scale_v: settings.voltage_scale_v }
}
