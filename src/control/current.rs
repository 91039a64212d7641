//! CCL and DCL: the smallest of every rule's limit, cut at once, raised slowly.
//!
//! Candidates: config maximum, the BMS's own limit, cell voltage table (highest cell for charge,
//! lowest for discharge), temperature table (coldest and hottest sensor), MOSFET temperature,
//! optional SoC table, and 0 when the BMS's FET is off. A missing input drops its rule.
//! [`RampLimiter`] applies a cut in the same poll; a rise waits `current_recovery_hold_s`, then
//! ramps at `current_recovery_a_per_s`; from 0 it waits until the limit exceeds
//! `current_recovery_threshold` of the maximum.

use super::config::{ChargeConfig, Table};
use super::tables::fraction;
use std::fmt;
use std::time::{Duration, Instant};

/// Which rule set a current limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LimitReason {
    /// `max_charge_current` / `max_discharge_current`.
    ConfigMax,
    /// The BMS's own charge/discharge current limit.
    BmsLimit,
    /// The cell voltage table.
    CellVoltage,
    /// The temperature table.
    Temperature,
    /// The MOSFET temperature table.
    MosfetTemperature,
    /// The SoC table.
    Soc,
    /// The BMS switched its charge/discharge FET off.
    FetOff,
    /// The BMS is not answering: limit 0.
    BmsLost,
    /// The BMS is not answering: the last limit is kept until the lost timeout.
    BmsLostHold,
}

impl LimitReason {
    /// Words for `/Info/ChargeLimitation` and the log.
    pub fn text(self) -> &'static str {
        match self {
            Self::ConfigMax => "Config max",
            Self::BmsLimit => "BMS limit",
            Self::CellVoltage => "Cell voltage",
            Self::Temperature => "Temperature",
            Self::MosfetTemperature => "MOSFET temperature",
            Self::Soc => "SoC",
            Self::FetOff => "BMS FET off",
            Self::BmsLost => "BMS lost",
            Self::BmsLostHold => "BMS lost: last limit kept",
        }
    }
}

/// Why a current limit has its value: the rule(s) giving the smallest limit, and whether the
/// published value is still below it because it is recovering (hold or ramp).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limitation {
    /// Every rule that gave the smallest value (ties are all listed).
    pub reasons: Vec<LimitReason>,
    /// The published limit is below the rules' value while it recovers.
    pub recovering: bool,
}

impl fmt::Display for Limitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for reason in &self.reasons {
            if !first {
                f.write_str(", ")?;
            }
            f.write_str(reason.text())?;
            first = false;
        }
        if self.recovering {
            f.write_str(" (recovering)")?;
        }
        Ok(())
    }
}

/// What the current rules read from one reading. `None` = not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CurrentInputs {
    /// Highest cell (V).
    pub max_cell_v: Option<f64>,
    /// Lowest cell (V).
    pub min_cell_v: Option<f64>,
    /// Coldest and hottest sensor (°C).
    pub temperatures_c: Option<(f64, f64)>,
    /// MOSFET temperature (°C).
    pub mosfet_c: Option<f64>,
    /// SoC used by control (%).
    pub soc_percent: Option<f64>,
    /// Charge FET state.
    pub charge_fet: Option<bool>,
    /// Discharge FET state.
    pub discharge_fet: Option<bool>,
    /// BMS charge current limit (A).
    pub bms_charge_limit_a: Option<f64>,
    /// BMS discharge current limit (A).
    pub bms_discharge_limit_a: Option<f64>,
}

struct Candidates {
    max: f64,
    list: Vec<(f64, LimitReason)>,
}

impl Candidates {
    fn new(max: f64) -> Self {
        Self { max, list: vec![(max, LimitReason::ConfigMax)] }
    }

    fn table(&mut self, cfg: &ChargeConfig, table: &Table, x: Option<f64>, reason: LimitReason) {
        if let Some(f) = x.and_then(|x| fraction(table, x, cfg.table_mode)) {
            self.list.push((f * self.max, reason));
        }
    }

    fn value(&mut self, value: Option<f64>, reason: LimitReason) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.list.push((v.max(0.0), reason));
        }
    }

    fn smallest(self) -> (f64, Vec<LimitReason>) {
        let min = self.list.iter().map(|(v, _)| *v).fold(self.max.max(0.0), f64::min);
        if min >= self.max - 1e-9 {
            // Rules that allow the full maximum do not limit anything.
            return (self.max.max(0.0), vec![LimitReason::ConfigMax]);
        }
        let mut reasons: Vec<LimitReason> = Vec::new();
        for (v, r) in &self.list {
            if (v - min).abs() < 1e-9 && !reasons.contains(r) {
                reasons.push(*r);
            }
        }
        (min, reasons)
    }
}

/// How much of the derived cell-voltage taper applies (0..=1) at a cell spread (max - min
/// cell, V): none up to `float_switch_cell_diff` + hysteresis (a balanced pack charges at full
/// current until the charger's own constant-voltage stage tapers it), all of it from
/// [`IMBALANCE_FULL_TAPER_V`] more; unknown spread = all of it.
pub fn imbalance_weight(cfg: &ChargeConfig, spread_v: Option<f64>) -> f64 {
    let Some(spread) = spread_v.filter(|s| s.is_finite()) else { return 1.0 };
    let start = cfg.float_switch_cell_diff + cfg.float_switch_cell_diff_hysteresis;
    let w = (spread - start) / IMBALANCE_FULL_TAPER_V;
    if w.is_nan() {
        1.0
    } else {
        w.clamp(0.0, 1.0)
    }
}

/// The spread above the taper's start at which all of the taper applies (V).
pub const IMBALANCE_FULL_TAPER_V: f64 = 0.010;

/// The derived charge table weighted by imbalance: full current up to max - 0.05 V; at max,
/// 5 % of max when one cell runs ahead (weight 1), full current on a balanced pack (weight 0);
/// 0 at max + 0.05 V whatever the weight.
pub fn imbalance_charge_table(cfg: &ChargeConfig, spread_v: Option<f64>) -> Table {
    let mut table = cfg.charge_cell_table();
    let w = imbalance_weight(cfg, spread_v);
    if let Some(point) = table.get_mut(1) {
        point[1] = 1.0 - w * (1.0 - point[1]);
    }
    table
}

/// The charge current the rules allow now, and which rules set it.
pub fn charge_target(cfg: &ChargeConfig, i: &CurrentInputs) -> (f64, Vec<LimitReason>) {
    let mut c = Candidates::new(cfg.max_charge_current);
    c.value(i.bms_charge_limit_a, LimitReason::BmsLimit);
    if cfg.charge_table_is_derived() {
        let spread = i.max_cell_v.zip(i.min_cell_v).map(|(hi, lo)| hi - lo);
        let table = imbalance_charge_table(cfg, spread);
        c.table(cfg, &table, i.max_cell_v, LimitReason::CellVoltage);
    } else {
        c.table(cfg, &cfg.charge_cell_voltage_table, i.max_cell_v, LimitReason::CellVoltage);
    }
    let (cold, hot) = (i.temperatures_c.map(|t| t.0), i.temperatures_c.map(|t| t.1));
    c.table(cfg, &cfg.charge_temperature_table, cold, LimitReason::Temperature);
    c.table(cfg, &cfg.charge_temperature_table, hot, LimitReason::Temperature);
    c.table(cfg, &cfg.mosfet_temperature_table, i.mosfet_c, LimitReason::MosfetTemperature);
    if cfg.charge_soc_limit {
        c.table(cfg, &cfg.charge_soc_table, i.soc_percent, LimitReason::Soc);
    }
    if i.charge_fet == Some(false) {
        c.value(Some(0.0), LimitReason::FetOff);
    }
    c.smallest()
}

/// The discharge current the rules allow now, and which rules set it.
pub fn discharge_target(cfg: &ChargeConfig, i: &CurrentInputs) -> (f64, Vec<LimitReason>) {
    let mut c = Candidates::new(cfg.max_discharge_current);
    c.value(i.bms_discharge_limit_a, LimitReason::BmsLimit);
    c.table(cfg, &cfg.discharge_cell_table(), i.min_cell_v, LimitReason::CellVoltage);
    if i.min_cell_v.is_some_and(|v| v < cfg.min_cell_voltage) {
        // Below the lowest allowed cell voltage nothing more is taken out, whatever the table.
        c.value(Some(0.0), LimitReason::CellVoltage);
    }
    let (cold, hot) = (i.temperatures_c.map(|t| t.0), i.temperatures_c.map(|t| t.1));
    c.table(cfg, &cfg.discharge_temperature_table, cold, LimitReason::Temperature);
    c.table(cfg, &cfg.discharge_temperature_table, hot, LimitReason::Temperature);
    c.table(cfg, &cfg.mosfet_temperature_table, i.mosfet_c, LimitReason::MosfetTemperature);
    if cfg.discharge_soc_limit {
        c.table(cfg, &cfg.discharge_soc_table, i.soc_percent, LimitReason::Soc);
    }
    if i.discharge_fet == Some(false) {
        c.value(Some(0.0), LimitReason::FetOff);
    }
    c.smallest()
}

/// Rate limiter for one current limit: down at once, up after a hold and along a ramp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RampLimiter {
    value: Option<f64>,
    last_cut: Option<Instant>,
    last_update: Option<Instant>,
}

/// The saved part of a [`RampLimiter`]: the value last published (A).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RampState {
    /// The limit last published (A).
    pub value_a: Option<f64>,
}

impl RampLimiter {
    /// The state to save.
    pub fn state(&self) -> RampState {
        RampState { value_a: self.value }
    }

    /// Takes a saved state back at `now`: the limit starts at the saved value (or lower, when the
    /// rules allow less) and a rise waits a full hold from `now`, so a restart never raises it.
    pub fn restore(&mut self, state: &RampState, now: Instant) {
        let value = state.value_a.filter(|v| v.is_finite()).map(|v| v.max(0.0));
        *self = Self { value, last_cut: value.map(|_| now), last_update: value.map(|_| now) };
    }

    /// The value last published.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    /// Moves towards `target` (A); `max` is the configured maximum (for the 0 threshold).
    /// Returns the limit to publish and whether it is below `target` (recovering).
    pub fn apply(&mut self, now: Instant, target: f64, max: f64, cfg: &ChargeConfig) -> (f64, bool) {
        let target = target.max(0.0);
        let previous = self.last_update.replace(now);
        let Some(current) = self.value else {
            self.value = Some(target);
            self.last_cut = Some(now);
            return (target, false);
        };
        if target <= current {
            self.value = Some(target);
            self.last_cut = Some(now);
            return (target, false);
        }
        if current <= 0.0 && target <= max * cfg.current_recovery_threshold {
            self.last_cut = Some(now);
            return (0.0, true);
        }
        // A hold too long for the clock (a huge config value) never ends: the limit stays low.
        let hold = Duration::try_from_secs_f64(cfg.current_recovery_hold_s.max(0.0)).ok();
        let hold_end = match self.last_cut.map(|cut| hold.and_then(|h| cut.checked_add(h))) {
            Some(None) => return (current, true),
            Some(Some(end)) => Some(end),
            None => None,
        };
        if hold_end.is_some_and(|end| now < end) {
            return (current, true);
        }
        // The ramp runs from the end of the hold, so the result does not depend on the poll rate.
        let ramp_from = match (previous, hold_end) {
            (Some(p), Some(e)) => p.max(e),
            (Some(p), None) => p,
            (None, e) => e.unwrap_or(now),
        };
        let dt = now.saturating_duration_since(ramp_from).as_secs_f64();
        let next = if cfg.current_recovery_a_per_s > 0.0 {
            (current + cfg.current_recovery_a_per_s * dt).min(target)
        } else {
            target
        };
        self.value = Some(next);
        (next, next < target)
    }

    /// Sets the limit at once (safety overrides); counts as a cut unless it raises the value,
    /// so a recovery afterwards holds from the last forced poll.
    pub fn force(&mut self, now: Instant, value: f64) {
        if self.value.is_none_or(|v| value <= v) {
            self.last_cut = Some(now);
        }
        self.value = Some(value);
        self.last_update = Some(now);
    }
}

#[cfg(test)]
#[path = "current_tests.rs"]
mod tests;
