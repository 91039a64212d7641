//! The BMS's own limits (CAN 0x351, UP16S CVL/CCL/DCL) applied on top of ours, per battery
//! (`use_bms_limits`). Only while the BMS is online: when it is lost, the fail-safe limits stand.

use super::current::{LimitReason, Limitation};
use super::ChargeLimits;
use crate::battery::Battery;
use serde::{Deserialize, Serialize};

/// What the BMS's own limits do to the published ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BmsLimits {
    /// Ours, capped by the BMS's: CVL, CCL and DCL never exceed what the BMS asks for.
    Cap,
    /// The BMS's CVL/CCL/DCL (and DVL as the low voltage) published unchanged; ours only where
    /// the BMS sends none.
    Only,
}

fn lower(ours: Option<f64>, bms: Option<f64>) -> Option<f64> {
    match (ours, bms.filter(|v| v.is_finite())) {
        (Some(a), Some(b)) => Some(a.min(b.max(0.0))),
        (a, b) => a.or(b.map(|v| v.max(0.0))),
    }
}

/// The configured maxima: no BMS value is ever published above them, in either mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceiling {
    /// `max_cell_voltage` x the series cell count in force (`None` while it is unknown).
    pub charge_voltage_v: Option<f64>,
    /// `max_charge_current`.
    pub charge_current_a: f64,
    /// `max_discharge_current`.
    pub discharge_current_a: f64,
}

impl Ceiling {
    /// The ceiling of `config` for a pack of `cells` in series.
    pub fn of(config: &super::ChargeConfig, cells: Option<u16>) -> Self {
        Ceiling {
            charge_voltage_v: cells.map(|n| f64::from(n) * config.max_cell_voltage),
            charge_current_a: config.max_charge_current,
            discharge_current_a: config.max_discharge_current,
        }
    }
}

/// `value` at most `ceiling` (an unknown ceiling leaves it).
fn at_most(value: Option<f64>, ceiling: Option<f64>) -> Option<f64> {
    match (value, ceiling) {
        (Some(v), Some(c)) => Some(v.min(c)),
        (v, _) => v,
    }
}

/// Applies `mode` to `limits` computed for `battery` (call only while the BMS is online). In
/// `only` mode the BMS's values are still clamped to the configured maxima, and a hard stop of
/// ours (CCL or DCL 0: a cell beyond its limit, a FET off, a temperature out of range) stands.
pub fn apply(limits: &mut ChargeLimits, battery: &Battery, mode: BmsLimits, ceiling: Ceiling) {
    let bms_cvl = at_most(battery.charge_voltage_limit_v.filter(|v| v.is_finite()), ceiling.charge_voltage_v);
    match mode {
        BmsLimits::Cap => {
            let capped = lower(limits.charge_voltage_v, bms_cvl);
            if capped != limits.charge_voltage_v && limits.charge_voltage_v.is_some() {
                limits.charge_mode.push_str(" (BMS CVL)");
            }
            limits.charge_voltage_v = capped;
            limits.charge_current_a = lower(limits.charge_current_a, battery.charge_current_limit_a);
            limits.discharge_current_a = lower(limits.discharge_current_a, battery.discharge_current_limit_a);
        }
        BmsLimits::Only => {
            let bms = Limitation { reasons: vec![LimitReason::BmsLimit], recovering: false };
            if bms_cvl.is_some() {
                limits.charge_voltage_v = bms_cvl;
                limits.charge_mode = "BMS limits".to_owned();
            }
            let stopped = |ours: Option<f64>| ours.is_some_and(|a| a <= 0.0);
            if let Some(ccl) = battery.charge_current_limit_a.filter(|_| !stopped(limits.charge_current_a)) {
                limits.charge_current_a = Some(ccl.clamp(0.0, ceiling.charge_current_a));
                limits.charge_limitation = bms.to_string();
                limits.charge_reason = bms.clone();
            }
            if let Some(dcl) =
                battery.discharge_current_limit_a.filter(|_| !stopped(limits.discharge_current_a))
            {
                limits.discharge_current_a = Some(dcl.clamp(0.0, ceiling.discharge_current_a));
                limits.discharge_limitation = bms.to_string();
                limits.discharge_reason = bms;
            }
            if battery.discharge_voltage_limit_v.is_some() {
                limits.low_voltage_v = battery.discharge_voltage_limit_v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bms() -> Battery {
        Battery {
            charge_voltage_limit_v: Some(53.2),
            charge_current_limit_a: Some(40.0),
            discharge_current_limit_a: Some(480.0),
            discharge_voltage_limit_v: Some(45.0),
            ..Battery::default()
        }
    }

    fn ours() -> ChargeLimits {
        ChargeLimits {
            charge_voltage_v: Some(55.2),
            charge_current_a: Some(100.0),
            discharge_current_a: Some(200.0),
            low_voltage_v: Some(48.0),
            ..ChargeLimits::default()
        }
    }

    const CEILING: Ceiling =
        Ceiling { charge_voltage_v: Some(55.2), charge_current_a: 100.0, discharge_current_a: 500.0 };

    #[test]
    fn cap_takes_the_lower_of_each() {
        let mut l = ours();
        apply(&mut l, &bms(), BmsLimits::Cap, CEILING);
        assert_eq!(l.charge_voltage_v, Some(53.2));
        assert_eq!(l.charge_current_a, Some(40.0));
        assert_eq!(l.discharge_current_a, Some(200.0));
        assert_eq!(l.low_voltage_v, Some(48.0));
        assert!(l.charge_mode.ends_with("(BMS CVL)"), "{}", l.charge_mode);
    }

    #[test]
    fn only_publishes_the_bms_values_unchanged() {
        let mut l = ours();
        apply(&mut l, &bms(), BmsLimits::Only, CEILING);
        assert_eq!(l.charge_voltage_v, Some(53.2));
        assert_eq!(l.charge_current_a, Some(40.0));
        assert_eq!(l.discharge_current_a, Some(480.0));
        assert_eq!(l.low_voltage_v, Some(45.0));
        let mut l = ours();
        apply(&mut l, &Battery::default(), BmsLimits::Only, CEILING);
        assert_eq!(l, ours(), "nothing from the BMS: ours stand");
    }

    /// `only` with a BMS asking for more than the config allows: 58.4 V where 16 x 3.45 V =
    /// 55.2 V is configured, 150 A where 100 A is.
    #[test]
    fn only_never_exceeds_the_configured_maxima_nor_overrides_a_hard_stop() {
        let greedy = Battery {
            charge_voltage_limit_v: Some(58.4),
            charge_current_limit_a: Some(150.0),
            discharge_current_limit_a: Some(900.0),
            ..bms()
        };
        let mut l = ours();
        apply(&mut l, &greedy, BmsLimits::Only, CEILING);
        assert_eq!(l.charge_voltage_v, Some(55.2));
        assert_eq!(l.charge_current_a, Some(100.0));
        assert_eq!(l.discharge_current_a, Some(500.0));
        let mut stopped =
            ChargeLimits { charge_current_a: Some(0.0), discharge_current_a: Some(0.0), ..ours() };
        apply(&mut stopped, &greedy, BmsLimits::Only, CEILING);
        assert_eq!(stopped.charge_current_a, Some(0.0), "a cell over its maximum stops charging");
        assert_eq!(stopped.discharge_current_a, Some(0.0));
    }
}
