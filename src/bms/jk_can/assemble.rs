//! The battery of each JK pack on the bus from the latest frame of each kind it sent, when fresh.
//! Pure: frames and the time they came are passed in.
//!
//! Complete: BATT_ST1 (voltage, current, SoC) and CELL_VOLT (min/max cell) within the grace
//! period, and every cell frame the pack has sent so far (a pack with 16 cells sends two). The
//! reading's time is that of its oldest essential frame, so the monitor's fail-safe sees how old
//! the data is.

use super::codec::{self, Kind};
use crate::battery::Battery;
use crate::protocol::{FrameError, MissingFrames};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Frames by (address, kind) with the time they came.
#[derive(Debug, Default)]
pub struct Assembler {
    frames: BTreeMap<(u8, KindKey), (Vec<u8>, Instant)>,
    /// Cell frames each pack has sent since the link opened: all must be fresh for a reading.
    cell_frames: BTreeMap<u8, u32>,
    /// When each pack's first frame came since the link opened.
    first_heard: BTreeMap<u8, Instant>,
}

/// An orderable [`Kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KindKey {
    Frame(u32),
    Cells(u32),
}

impl Assembler {
    /// Takes one frame; frames JK does not send are refused, undocumented ones ignored.
    pub fn feed(&mut self, now: Instant, id: u32, data: &[u8]) -> Result<(), FrameError> {
        codec::decode(id, data)?;
        let (kind, address) = codec::classify(id)?;
        self.first_heard.entry(address).or_insert(now);
        let key = match kind {
            Kind::Frame(base) => KindKey::Frame(base),
            Kind::Cells(k) => {
                let seen = self.cell_frames.entry(address).or_default();
                *seen = (*seen).max(k + 1);
                KindKey::Cells(k)
            }
            Kind::Undocumented(_) => return Ok(()),
        };
        self.frames.insert((address, key), (data.to_vec(), now));
        Ok(())
    }

    /// The battery of the pack at `address`, or why there is none.
    pub fn reading(
        &mut self,
        now: Instant,
        address: u8,
        stale_after: Duration,
    ) -> Result<Battery, MissingFrames> {
        self.frames.retain(|_, (_, at)| now.saturating_duration_since(*at) < stale_after);
        let ours: Vec<(KindKey, &[u8], Instant)> = self
            .frames
            .iter()
            .filter(|((a, _), _)| *a == address)
            .map(|((_, key), (data, at))| (*key, data.as_slice(), *at))
            .collect();
        let essential = [KindKey::Frame(codec::BATT_ST1), KindKey::Frame(codec::CELL_VOLT)];
        let missing: Vec<String> = essential
            .iter()
            .filter(|key| !ours.iter().any(|(k, _, _)| k == *key))
            .map(|key| match key {
                KindKey::Frame(id) => format!("0x{:X}", id + u32::from(address)),
                KindKey::Cells(k) => format!("cells {k}"),
            })
            .collect();
        if !missing.is_empty() {
            return Err(MissingFrames { frames: missing, within: stale_after });
        }
        let mut battery = Battery::default();
        let mut cells: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
        for (key, data, _) in &ours {
            let id = match key {
                KindKey::Frame(id) => *id,
                KindKey::Cells(k) => codec::CELLS + (k << 16),
            };
            let Ok(decoded) = codec::decode(id + u32::from(address), data) else { continue };
            battery.merge(&decoded.battery);
            if let KindKey::Cells(k) = key {
                cells.insert(*k, codec::cell_values(data));
            }
        }
        let sent = self.cell_frames.get(&address).copied().unwrap_or(0);
        // A pack that sends no cell frames (JK CAN "V1") is told from one whose cell frames have
        // not come yet only by listening a full freshness period: every frame a pack sends comes
        // within it.
        let heard_for =
            self.first_heard.get(&address).map_or(Duration::ZERO, |at| now.saturating_duration_since(*at));
        if sent == 0 && heard_for < stale_after {
            return Err(MissingFrames { frames: vec!["cell frames".into()], within: stale_after });
        }
        if sent > 0 {
            // Every cell frame the pack sends, fresh: half a cell list is no cell list.
            let list: Vec<f64> = cells.values().flatten().copied().collect();
            if !cells.keys().copied().eq(0..sent) || list.is_empty() {
                let stale: Vec<u32> = (0..sent).filter(|k| !cells.contains_key(k)).collect();
                return Err(MissingFrames {
                    frames: vec![format!("cell frame {stale:?}")],
                    within: stale_after,
                });
            }
            // The extremes' cell numbers (0x04F4, 1-based) say how many cells there are at
            // least: right after the link opens, the pack may not have sent its later cell
            // frames yet, and a list that lacks the cell named there is incomplete.
            let named = ours
                .iter()
                .filter(|(k, _, _)| *k == KindKey::Frame(codec::CELL_VOLT))
                .flat_map(|(_, data, _)| [data.get(2), data.get(5)])
                .flatten()
                .map(|&n| usize::from(n))
                .max()
                .unwrap_or(0);
            if list.len() < named {
                return Err(MissingFrames {
                    frames: vec![format!("cell frames up to cell {named}")],
                    within: stale_after,
                });
            }
            battery.cell_count = u16::try_from(list.len()).ok();
            battery.cell_voltages_v = Some(list);
        }
        battery.read_at = ours
            .iter()
            .filter(|(k, _, _)| essential.contains(k) || matches!(k, KindKey::Cells(_)))
            .map(|(_, _, at)| *at)
            .min();
        Ok(battery)
    }

    /// Forgets everything (link reopened).
    pub fn reset(&mut self) {
        self.frames.clear();
        self.cell_frames.clear();
        self.first_heard.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell frame of four cells, millivolts little-endian.
    fn frame(mv: [u16; 4]) -> Vec<u8> {
        mv.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn battery_frames(a: &mut Assembler, now: Instant, address: u8) {
        let at = u32::from(address);
        // 53.1 V, +1.8 A, 81 %; cells 3.327 / 3.324 V.
        a.feed(now, codec::BATT_ST1 + at, &[0x13, 0x02, 0xB2, 0x0F, 0x51, 0, 0, 0]).unwrap();
        a.feed(now, codec::CELL_VOLT + at, &[0xFF, 0x0C, 0x06, 0xFC, 0x0C, 0x01, 0, 0]).unwrap();
    }

    #[test]
    fn packs_are_kept_apart_by_address() {
        let now = Instant::now();
        let mut a = Assembler::default();
        battery_frames(&mut a, now, 2);
        let stale = Duration::from_secs(3);
        let later = now + stale;
        battery_frames(&mut a, later, 2);
        assert!(a.reading(later, 0, stale).is_err());
        let b = a.reading(later, 2, stale).unwrap();
        assert_eq!(b.voltage_v, Some(53.1));
        assert_eq!(b.soc_percent, Some(81.0));
        assert_eq!(b.max_cell_voltage_v, Some(3.327));
    }

    #[test]
    fn cells_come_from_the_cell_frames_and_a_missing_one_is_no_reading() {
        let now = Instant::now();
        let mut a = Assembler::default();
        battery_frames(&mut a, now, 0);
        a.feed(now, codec::CELLS, &frame([3300, 3301, 3302, 3303])).unwrap();
        a.feed(now, codec::CELLS + (1 << 16), &frame([3304, 3305, 0, 0])).unwrap();
        let stale = Duration::from_secs(3);
        let b = a.reading(now, 0, stale).unwrap();
        assert_eq!(b.cell_voltages_v, Some(vec![3.3, 3.301, 3.302, 3.303, 3.304, 3.305]));
        assert_eq!(b.cell_count, Some(6));
        // The second cell frame stops; the first goes on: no reading with half the cells.
        let later = now + Duration::from_secs(2);
        battery_frames(&mut a, later, 0);
        a.feed(later, codec::CELLS, &frame([3300, 3301, 3302, 3303])).unwrap();
        let error = a.reading(now + Duration::from_secs(4), 0, stale).unwrap_err();
        assert_eq!(error.to_string(), "no fresh cell frame [1] within 3s");
    }

    #[test]
    fn no_cell_list_is_no_reading_until_a_pack_without_cell_frames_is_known() {
        // Right after the link opens, BATT_ST1 and CELL_VOLT are in, no cell frame yet: it may
        // still come, so there is no reading (the VM test caught one without cells). A pack
        // that has sent none for a full freshness period sends none: its reading has no cells.
        let now = Instant::now();
        let mut a = Assembler::default();
        battery_frames(&mut a, now, 0);
        let stale = Duration::from_secs(3);
        let error = a.reading(now, 0, stale).unwrap_err();
        assert_eq!(error.to_string(), "no fresh cell frames within 3s");
        let later = now + Duration::from_millis(2900);
        battery_frames(&mut a, later, 0);
        assert!(a.reading(later, 0, stale).is_err());
        let known = now + stale;
        battery_frames(&mut a, known, 0);
        let b = a.reading(known, 0, stale).unwrap();
        assert_eq!(b.cell_voltages_v, None);
        assert_eq!(b.voltage_v, Some(53.1));
        // Reopening the link listens afresh.
        a.reset();
        battery_frames(&mut a, known, 0);
        assert!(a.reading(known, 0, stale).is_err());
    }

    #[test]
    fn a_cell_list_shorter_than_the_cell_the_extremes_name_is_no_reading() {
        // Right after the link opens: the first cell frame is in, the pack's lowest cell (its
        // 0x04F4 names cell 6) is in the second, not sent yet.
        let now = Instant::now();
        let mut a = Assembler::default();
        battery_frames(&mut a, now, 0);
        a.feed(now, codec::CELLS, &frame([3300, 3301, 3302, 3303])).unwrap();
        let stale = Duration::from_secs(3);
        let error = a.reading(now, 0, stale).unwrap_err();
        assert_eq!(error.to_string(), "no fresh cell frames up to cell 6 within 3s");
        a.feed(now, codec::CELLS + (1 << 16), &frame([3304, 3305, 0, 0])).unwrap();
        assert_eq!(a.reading(now, 0, stale).unwrap().cell_count, Some(6));
    }
}
