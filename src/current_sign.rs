//! The sign of a battery's current, one place for every protocol (the model step between the
//! driver and the monitor, `task::take_update`).
//!
//! `invert_current = true` or `false` in `[[port.battery]]` forces it. Unset, the decoder's
//! convention stands, checked against the direction the BMS itself reports in the same reading
//! (`Battery::current_flow`, Daly's 0x93 state): when the two disagree in
//! [`POLLS_TO_FLIP`] readings in a row at a current clearly away from zero, the sign is reversed
//! for that battery, and said once. Daly packs differ here: the same 0x90 word means charging on
//! some and discharging on others (`docs/protocols/daly.md`).

use crate::battery::{Battery, CurrentFlow};

/// Readings in a row that must contradict the BMS's own direction before the sign is reversed.
pub const POLLS_TO_FLIP: u32 = 3;

/// A current this far from zero has a direction worth checking (below, sensor noise and the
/// BMS's own idle threshold make the state meaningless).
pub const CLEAR_CURRENT_A: f64 = 1.0;

/// The sign rule of one battery.
#[derive(Debug, Clone, Default)]
pub struct CurrentSign {
    forced: Option<bool>,
    reversed: bool,
    contradicting: u32,
}

impl CurrentSign {
    /// The rule for a battery whose config says `invert_current` (`None`: checked).
    pub fn new(invert_current: Option<bool>) -> Self {
        Self { forced: invert_current, ..Self::default() }
    }

    /// Whether the current is being reversed now.
    pub fn reversed(&self) -> bool {
        self.forced.unwrap_or(self.reversed)
    }

    /// Applies the rule to `battery`; returns a message when the check reverses the sign.
    pub fn apply(&mut self, battery: &mut Battery) -> Option<String> {
        let mut said = None;
        if self.forced.is_none() {
            if let (Some(raw), Some(flow)) = (battery.current_a, battery.current_flow) {
                let shown = if self.reversed { -raw } else { raw };
                let contradicts = matches!(
                    (flow, shown),
                    (CurrentFlow::Charging, a) if a < -CLEAR_CURRENT_A
                ) || matches!((flow, shown), (CurrentFlow::Discharging, a) if a > CLEAR_CURRENT_A);
                let agrees = matches!((flow, shown), (CurrentFlow::Charging, a) if a > CLEAR_CURRENT_A)
                    || matches!((flow, shown), (CurrentFlow::Discharging, a) if a < -CLEAR_CURRENT_A);
                if contradicts {
                    self.contradicting += 1;
                } else if agrees {
                    self.contradicting = 0;
                }
                if self.contradicting >= POLLS_TO_FLIP {
                    self.reversed = !self.reversed;
                    self.contradicting = 0;
                    said = Some(format!(
                        "the BMS says it is {} while its current reads {shown:+.1} A, {POLLS_TO_FLIP} readings in a \
                         row: the current's sign is reversed for this battery from now on (set invert_current in \
                         [[port.battery]] to fix either way)",
                        if flow == CurrentFlow::Charging { "charging" } else { "discharging" },
                    ));
                }
            }
        }
        if self.reversed() {
            battery.current_a = battery.current_a.map(|a| -a);
        }
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(current: f64, flow: CurrentFlow) -> Battery {
        Battery { current_a: Some(current), current_flow: Some(flow), ..Battery::default() }
    }

    #[test]
    fn a_steady_contradiction_reverses_the_sign_once() {
        let mut sign = CurrentSign::new(None);
        for _ in 0..POLLS_TO_FLIP - 1 {
            let mut b = reading(50.0, CurrentFlow::Discharging);
            assert_eq!(sign.apply(&mut b), None);
            assert_eq!(b.current_a, Some(50.0), "not before {POLLS_TO_FLIP} readings");
        }
        let mut b = reading(50.0, CurrentFlow::Discharging);
        assert!(sign.apply(&mut b).is_some());
        assert_eq!(b.current_a, Some(-50.0));
        // From now on it agrees: no more flips, nothing more said.
        for _ in 0..10 {
            let mut b = reading(40.0, CurrentFlow::Discharging);
            assert_eq!(sign.apply(&mut b), None);
            assert_eq!(b.current_a, Some(-40.0));
        }
    }

    #[test]
    fn small_currents_an_agreeing_reading_and_a_forced_rule_keep_the_sign() {
        let mut sign = CurrentSign::new(None);
        for _ in 0..10 {
            let mut b = reading(0.5, CurrentFlow::Discharging);
            sign.apply(&mut b);
            assert_eq!(b.current_a, Some(0.5), "noise near zero is no evidence");
        }
        // Two contradictions, then one agreement: the count starts again.
        for current in [50.0, 50.0, -50.0, 50.0, 50.0] {
            let mut b = reading(current, CurrentFlow::Discharging);
            sign.apply(&mut b);
            assert_eq!(b.current_a, Some(current));
        }
        let mut forced = CurrentSign::new(Some(false));
        for _ in 0..10 {
            let mut b = reading(50.0, CurrentFlow::Discharging);
            assert_eq!(forced.apply(&mut b), None);
            assert_eq!(b.current_a, Some(50.0), "invert_current = false is the user's word");
        }
        let mut inverted = CurrentSign::new(Some(true));
        let mut b = reading(50.0, CurrentFlow::Charging);
        inverted.apply(&mut b);
        assert_eq!(b.current_a, Some(-50.0));
    }
}
