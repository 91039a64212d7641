//! Listening to JK's own CAN protocol: one battery per DIP address.

use super::assemble::Assembler;
use crate::battery::Battery;
use crate::bms::listen::{ListenSettings, Listener};
use crate::bms::victron_can::codec::derive_cell_count;
use crate::protocol::{FrameError, MissingFrames};
use std::time::Instant;

/// The packs of one bus, by address.
#[derive(Debug)]
pub struct JkListener {
    assembler: Assembler,
    settings: ListenSettings,
}

impl Listener for JkListener {
    fn feed(&mut self, now: Instant, id: u32, data: &[u8]) -> Result<(), FrameError> {
        self.assembler.feed(now, id, data)
    }

    fn reading(&mut self, now: Instant, address: Option<u8>) -> Result<Battery, MissingFrames> {
        let address = address.unwrap_or(0);
        let mut battery = self.assembler.reading(now, address, self.settings.stale_after)?;
        // A pack without cell frames (JK CAN "V1"): the configured count, else derived.
        if battery.cell_count.is_none() {
            battery.cell_count = self.settings.cell_count(Some(address)).or_else(|| {
                let (v, lo, hi) =
                    (battery.voltage_v?, battery.min_cell_voltage_v?, battery.max_cell_voltage_v?);
                derive_cell_count(v, lo, hi)
            });
        }
        Ok(battery)
    }

    fn reset(&mut self) {
        self.assembler.reset();
    }
}

/// The spec's listener: a battery per address of `settings.cell_counts`.
pub fn listener(settings: &ListenSettings) -> Box<dyn Listener> {
    Box::new(JkListener { assembler: Assembler::default(), settings: settings.clone() })
}
