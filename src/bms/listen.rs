//! Listened CAN protocols (the BMS broadcasts; nothing is asked): the frames on a bus in, the
//! reading of each battery out. Sans-IO: the time is passed in; the driver's listener loop
//! (`driver/can.rs`) owns the link, the keep-alive and the clock. A protocol offers one through
//! its spec's `listener`.

use crate::battery::Battery;
use crate::protocol::{FrameError, MissingFrames};
use std::time::{Duration, Instant};

/// What a listener is told from the config.
#[derive(Debug, Clone)]
pub struct ListenSettings {
    /// The interface, for messages.
    pub interface: String,
    /// Grace period: older frames are stale.
    pub stale_after: Duration,
    /// The scale of the pack voltage (Victron dialect 0x356: 0.01 V, some BMSes 0.1 V).
    pub voltage_scale_v: f64,
    /// Series cells from the config, per battery (address; `None`: the one battery of the bus).
    pub cell_counts: Vec<(Option<u8>, Option<u16>)>,
}

impl ListenSettings {
    /// The configured cell count of the battery at `address`.
    pub fn cell_count(&self, address: Option<u8>) -> Option<u16> {
        self.cell_counts.iter().find(|(a, _)| *a == address).and_then(|(_, cells)| *cells)
    }
}

/// What a listener does with the frames of its dialect: keeps them, and builds the reading of
/// each battery on the bus from them.
pub trait Listener: Send {
    /// Takes one frame; one the dialect cannot decode is refused (and not kept).
    fn feed(&mut self, now: Instant, id: u32, data: &[u8]) -> Result<(), FrameError>;
    /// The battery at `address` now (`None`: the one battery of the bus), or the frames missing.
    fn reading(&mut self, now: Instant, address: Option<u8>) -> Result<Battery, MissingFrames>;
    /// Forgets everything (link reopened).
    fn reset(&mut self);
    /// Something about the BMS the user should know (a likely misconfiguration), once; the
    /// listener loop logs it. (Listeners are pure: they log nothing themselves.)
    fn take_notice(&mut self) -> Option<String> {
        None
    }
}

/// Makes the listener of a protocol for the batteries of `settings`.
pub type MakeListener = fn(&ListenSettings) -> Box<dyn Listener>;
