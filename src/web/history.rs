//! The last 24 h of each battery in memory: one sample per minute in a ring of fixed size.
//!
//! A sample is a time (`u32` Unix seconds) and [`FIELDS`] as `f32` (NaN = unknown or lost): 36
//! bytes. [`SAMPLES`] of them are 51 840 bytes per battery at most, and the board keeps at most
//! [`super::MAX_ENTRIES`] batteries: the history never takes more than 3.3 MB, whatever runs how
//! long. Within a minute the latest value wins, so the newest sample is always live.

use crate::monitor::Output;
use std::collections::VecDeque;

/// Seconds per sample.
pub const SAMPLE_EVERY_S: u32 = 60;
/// Samples kept: 24 h.
pub const SAMPLES: usize = 24 * 60;
/// The columns, in order, as named in `/api/history`'s header (units in the names).
pub const FIELDS: [&str; 8] =
    ["voltage_v", "current_a", "soc_percent", "cell_min_v", "cell_max_v", "cvl_v", "ccl_a", "dcl_a"];
/// The state document's keys of [`FIELDS`] (`state_doc::state_json`).
pub const STATE_KEYS: [&str; 8] = ["voltage", "current", "soc", "cell_min", "cell_max", "cvl", "ccl", "dcl"];

/// [`FIELDS`] of a state document (`state_doc::state_json`); NaN where it has none.
pub fn values_of_state(state: &serde_json::Value) -> [f32; 8] {
    let mut values = [f32::NAN; 8];
    for (slot, key) in values.iter_mut().zip(STATE_KEYS) {
        if let Some(v) = state.get(key).and_then(serde_json::Value::as_f64) {
            // f32 keeps 7 digits: 55.2 V to the 0.01 mV, 100 A to the µA.
            *slot = v as f32;
        }
    }
    values
}

/// [`FIELDS`] of a published state, as [`values_of_state`] finds them in its state document
/// (the same rounding), without building the document: the board takes one per reading.
pub fn values_of(out: &Output) -> [f32; 8] {
    let b = &out.battery;
    let l = &out.limits;
    let round = |v: Option<f64>, places: i32| {
        // A value the rounding overflows is null in the document, as a non-finite one is.
        crate::state_doc::rounded(v, places).filter(|v| v.is_finite()).map_or(f32::NAN, |v| v as f32)
    };
    let (cell_min, cell_max) = match (b.min_cell(), b.max_cell()) {
        (Some((_, lo)), Some((_, hi))) => (Some(lo), Some(hi)),
        _ => (None, None),
    };
    [
        round(b.voltage_v, 3),
        round(b.current_a, 3),
        round(b.soc_percent, 2),
        round(cell_min, 4),
        round(cell_max, 4),
        round(l.charge_voltage_v, 3),
        round(l.charge_current_a, 2),
        round(l.discharge_current_a, 2),
    ]
}

/// One minute of one battery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix time of the value (s).
    pub unix_s: u32,
    /// [`FIELDS`]; NaN where unknown.
    pub values: [f32; 8],
}

/// One battery's ring.
#[derive(Debug, Default, Clone)]
pub struct Ring {
    samples: VecDeque<Sample>,
}

impl Ring {
    /// Takes the values of a state document at `unix_s`: replaces the newest sample when it is of
    /// the same minute, else appends (dropping the oldest once [`SAMPLES`] are kept).
    pub fn record(&mut self, unix_s: u32, state: &serde_json::Value) {
        self.record_values(unix_s, values_of_state(state));
    }

    /// [`Ring::record`] with the values already taken ([`values_of`]).
    pub fn record_values(&mut self, unix_s: u32, values: [f32; 8]) {
        let sample = Sample { unix_s, values };
        match self.samples.back_mut() {
            Some(last) if last.unix_s / SAMPLE_EVERY_S == unix_s / SAMPLE_EVERY_S => *last = sample,
            // A clock stepped back: the ring stays in time order from here on.
            Some(last) if last.unix_s > unix_s => {
                self.samples.clear();
                self.samples.push_back(sample);
            }
            _ => {
                if self.samples.len() >= SAMPLES {
                    self.samples.pop_front();
                }
                self.samples.push_back(sample);
            }
        }
    }

    /// Samples at or after `since_unix_s`, oldest first.
    pub fn since(&self, since_unix_s: u32) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.unix_s >= since_unix_s)
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No sample yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn one_sample_per_minute_latest_wins_and_the_size_is_fixed() {
        let mut ring = Ring::default();
        ring.record(60, &json!({"voltage": 52.0}));
        ring.record(119, &json!({"voltage": 53.0, "ccl": 10.0}));
        assert_eq!(ring.len(), 1);
        let first = ring.since(0).next().copied().unwrap();
        assert_eq!(first.values[0], 53.0);
        assert_eq!(first.values[6], 10.0);
        assert!(first.values[1].is_nan(), "unknown current is NaN, not 0");
        for minute in 2..(2 + 2 * SAMPLES as u32) {
            ring.record(minute * 60, &json!({"soc": f64::from(minute)}));
        }
        assert_eq!(ring.len(), SAMPLES);
        let oldest = ring.since(0).next().unwrap();
        assert_eq!(oldest.unix_s, (2 + SAMPLES as u32) * 60, "the oldest went first");
        assert_eq!(ring.since((1 + 2 * SAMPLES as u32) * 60).count(), 1);
        assert_eq!(std::mem::size_of::<Sample>(), 36, "docs/web.md gives 36 bytes a sample");
    }

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            Just(None),
            Just(Some(f64::NAN)),
            Just(Some(f64::INFINITY)),
            Just(Some(1e306)),
            (-1e4..1e4f64).prop_map(Some),
        ]
    }

    proptest! {
        /// The values the board takes per reading are those its state document gives (the
        /// document is the oracle: it is what `/api/state` and MQTT show).
        #[test]
        fn values_of_a_state_are_those_of_its_document(
            v in value(), i in value(), soc in value(), cvl in value(), ccl in value(), dcl in value(),
            cells in proptest::option::of(proptest::collection::vec(2.0..4.0f64, 0..20)),
        ) {
            let mut out = Output::online(crate::battery::Battery {
                voltage_v: v, current_a: i, soc_percent: soc, cell_voltages_v: cells,
                ..Default::default()
            });
            out.limits.charge_voltage_v = cvl;
            out.limits.charge_current_a = ccl;
            out.limits.discharge_current_a = dcl;
            let document = crate::state_doc::state_json(&out, 0.0);
            let want = values_of_state(&document).map(f32::to_bits);
            prop_assert_eq!(values_of(&out).map(f32::to_bits), want, "{}", document);
        }
    }

    #[test]
    fn a_clock_stepping_back_keeps_the_ring_in_order() {
        let mut ring = Ring::default();
        ring.record(6000, &json!({}));
        ring.record(60, &json!({}));
        assert_eq!(ring.since(0).map(|s| s.unix_s).collect::<Vec<_>>(), vec![60]);
    }
}
