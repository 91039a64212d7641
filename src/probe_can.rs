//! `bms-bridge probe can0`: listens to a CAN interface (3 s by default) and says which dialect it
//! hears, with the ids and their rates. Nothing is sent unless asked (`--active`: one Daly 0x90
//! request per address 1..=16, since Daly packs speak only when asked).

use crate::bms::daly_can::codec as daly_can;
use crate::bms::jk_can::codec as jk_can;
use crate::transport::can::{CanFrame, CanLink};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Daly addresses `--active` asks.
pub const ACTIVE_ADDRESSES: std::ops::RangeInclusive<u8> = 1..=16;

/// What was heard, by dialect and battery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heard {
    /// (dialect, address or `None`) -> frames by id.
    pub batteries: BTreeMap<(&'static str, Option<u8>), BTreeMap<u32, u32>>,
    /// Frames of no known dialect, by id.
    pub unknown: BTreeMap<u32, u32>,
    /// How long was listened.
    pub listened: Duration,
}

/// The dialect and battery address a frame belongs to, if any.
pub fn dialect_of(id: u32) -> Option<(&'static str, Option<u8>)> {
    if (0x351..=0x382).contains(&id) {
        return Some(("victron_can", None));
    }
    if let Ok((_, daly_can::Direction::Reply(bms))) = daly_can::classify(id) {
        return Some(("daly_can", Some(bms)));
    }
    if let Ok((_, address)) = jk_can::classify(id) {
        return Some(("jk_can", Some(address)));
    }
    None
}

impl Heard {
    /// Counts one frame.
    pub fn count(&mut self, frame: &CanFrame) {
        let ids = match dialect_of(frame.id) {
            Some(key) => self.batteries.entry(key).or_default(),
            None => &mut self.unknown,
        };
        *ids.entry(frame.id).or_default() += 1;
    }

    /// One line per battery heard, then the unknown ids; rates in frames per second.
    pub fn lines(&self) -> Vec<String> {
        let secs = self.listened.as_secs_f64().max(0.001);
        let rates = |ids: &BTreeMap<u32, u32>| {
            ids.iter()
                .map(|(id, n)| format!("0x{id:X} {:.1}/s", f64::from(*n) / secs))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out: Vec<String> = self
            .batteries
            .iter()
            .map(|((dialect, address), ids)| {
                let at = address.map_or(String::new(), |a| format!(" address {a}"));
                format!("FOUND  {dialect}{at}: {}", rates(ids))
            })
            .collect();
        if !self.unknown.is_empty() {
            out.push(format!("other  ids of no known dialect: {}", rates(&self.unknown)));
        }
        if out.is_empty() {
            out.push(format!("no     frame in {:.1} s", self.listened.as_secs_f64()));
        }
        out
    }
}

/// Listens on `link` for `listen`; with `active`, first asks every Daly address once.
pub async fn probe<L: CanLink>(mut link: L, listen: Duration, active: bool) -> std::io::Result<Heard> {
    let start = Instant::now();
    if active {
        for bms in ACTIVE_ADDRESSES {
            let id = daly_can::request_id(crate::bms::daly::codec::CMD_SOC, bms);
            link.send(&CanFrame { id, data: vec![0; 8] }).await?;
        }
    }
    let mut heard = Heard::default();
    let until = start + listen;
    while let Ok(frame) = tokio::time::timeout_at(until, link.recv()).await {
        heard.count(&frame?);
    }
    heard.listened = start.elapsed();
    Ok(heard)
}

/// Whether `device` names a CAN interface rather than a serial port (no path, and the kernel
/// has a network interface of that name, or it is named like one).
pub fn is_can_interface(device: &str) -> bool {
    !device.contains('/')
        && (std::path::Path::new("/sys/class/net").join(device).exists()
            || ["can", "vcan", "vecan", "slcan"].iter().any(|p| device.starts_with(p)))
}
