//! CVL: the bulk -> absorption -> float -> bulk state machine and the cell over-voltage controller.
//!
//! Phase targets (pack volts = per-cell value x cells): bulk and absorption aim at max voltage,
//! float transition ramps down at `float_ramp_v_per_cell_per_s` per cell, float holds float voltage.
//! On top, an integral controller regulates the highest cell to `max_cell_voltage` by lowering
//! CVL. Its gain is per second (scaled by the real time between polls), so the poll rate does
//! not change its behaviour. A lower controller output is published at once; a higher one only
//! after `cvl_recovery_hold_s` and then at `cvl_recovery_v_per_s`, never past the controller's
//! own output. CVL always lies within [min, max] pack voltage.

use super::config::ChargeConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};

/// The charge phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Phase {
    /// Charging towards max voltage.
    #[default]
    Bulk,
    /// At max voltage with balanced cells; the absorption timer runs.
    Absorption,
    /// Absorption done; CVL ramps down to float voltage.
    FloatTransition,
    /// Holding float voltage.
    Float,
}

impl Phase {
    /// Words for `/Info/ChargeMode`.
    pub fn text(self) -> &'static str {
        match self {
            Self::Bulk => "Bulk",
            Self::Absorption => "Absorption",
            Self::FloatTransition => "Float transition",
            Self::Float => "Float",
        }
    }
}

/// What shapes CVL besides the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CvlShaping {
    /// CVL is the phase's target.
    #[default]
    Phase,
    /// The cell over-voltage controller lowers CVL.
    CellOvp,
    /// CVL is held low after a cell over-voltage cut.
    CellOvpHold,
    /// CVL ramps back up after a cell over-voltage cut.
    CellOvpRecovery,
    /// The BMS is lost: CVL is the float voltage.
    BmsLost,
}

/// The structured form of `/Info/ChargeMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChargeMode {
    /// The charge phase.
    pub phase: Phase,
    /// What shapes CVL now.
    pub shaping: CvlShaping,
}

impl fmt::Display for ChargeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = match self.shaping {
            CvlShaping::Phase => "",
            CvlShaping::CellOvp => " (cell OVP)",
            CvlShaping::CellOvpHold => " (cell OVP, hold)",
            CvlShaping::CellOvpRecovery => " (cell OVP, recovering)",
            CvlShaping::BmsLost => return write!(f, "BMS lost: float voltage ({})", self.phase.text()),
        };
        write!(f, "{}{}", self.phase.text(), suffix)
    }
}

/// What the CVL rules read from one reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VoltageInputs {
    /// Pack voltage (BMS value, else the sum of the cells).
    pub pack_v: Option<f64>,
    /// Highest cell (V).
    pub max_cell_v: Option<f64>,
    /// Lowest cell (V).
    pub min_cell_v: Option<f64>,
    /// SoC used by control (%).
    pub soc_percent: Option<f64>,
}

/// The saved part of the CVL state, as elapsed times (see `ControlState`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct VoltageState {
    /// Phase at the time of saving.
    pub phase: Phase,
    /// Absorption time already done (s).
    pub absorption_elapsed_s: Option<f64>,
    /// Float transition: CVL where the ramp started (V) and time since (s).
    pub float_ramp: Option<(f64, f64)>,
    /// Running time since the last full charge (s).
    pub since_full_charge_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Ovp {
    /// Controller output (pack V).
    integral: f64,
    /// Rate-limited output (pack V).
    out: f64,
    last_cut: Instant,
}

/// CVL state between polls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoltageControl {
    phase: Phase,
    absorption_start: Option<Instant>,
    float_ramp: Option<(Instant, f64)>,
    last_full_charge: Option<Instant>,
    ovp: Option<Ovp>,
    last_update: Option<Instant>,
    last_cvl: Option<f64>,
}

/// Things that happened in one update that the caller acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoltageEvents {
    /// The phase changed (save the state).
    pub phase_changed: bool,
    /// Absorption finished: the pack is full (SoC sync, history).
    pub full_charge: bool,
}

impl VoltageControl {
    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Absorption time done so far.
    pub fn absorption_elapsed(&self, now: Instant) -> Option<Duration> {
        self.absorption_start.map(|start| now.saturating_duration_since(start))
    }

    /// Time since the last full charge (running time plus offline time given to `restore`).
    pub fn since_full_charge(&self, now: Instant) -> Option<Duration> {
        self.last_full_charge.map(|t| now.saturating_duration_since(t))
    }

    /// The state to save.
    pub fn state(&self, now: Instant) -> VoltageState {
        VoltageState {
            phase: self.phase,
            absorption_elapsed_s: self.absorption_elapsed(now).map(|d| d.as_secs_f64()),
            float_ramp: self
                .float_ramp
                .map(|(start, v)| (v, now.saturating_duration_since(start).as_secs_f64())),
            since_full_charge_s: self.since_full_charge(now).map(|d| d.as_secs_f64()),
        }
    }

    /// Takes a saved state back. `offline` counts towards the time since the last full charge
    /// but not towards the absorption timer (absorption resumes where it stopped).
    pub fn restore(&mut self, state: &VoltageState, now: Instant, offline: Duration) {
        let ago = |s: f64, extra: Duration| {
            let d = Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO) + extra;
            now.checked_sub(d).unwrap_or(now)
        };
        *self = Self {
            phase: state.phase,
            absorption_start: state.absorption_elapsed_s.map(|s| ago(s, Duration::ZERO)),
            float_ramp: state.float_ramp.map(|(v, s)| (ago(s, Duration::ZERO), v)),
            last_full_charge: state.since_full_charge_s.map(|s| ago(s, offline)),
            ..Self::default()
        };
        if self.phase == Phase::Absorption && self.absorption_start.is_none() {
            self.absorption_start = Some(now);
        }
    }

    /// Computes CVL (pack V) for `cells` series cells.
    pub fn update(
        &mut self,
        now: Instant,
        cfg: &ChargeConfig,
        cells: f64,
        input: &VoltageInputs,
    ) -> (f64, ChargeMode, VoltageEvents) {
        let events = self.step_phase(now, cfg, cells, input);
        let target = self.phase_target(now, cfg, cells);
        let shaping = self.step_ovp(now, cfg, cells, input, target);
        let limited = self.ovp.map_or(target, |o| o.out.min(target));
        let cvl = limited.clamp(cells * cfg.min_cell_voltage, cells * cfg.max_cell_voltage);
        self.last_cvl = Some(cvl);
        self.last_update = Some(now);
        (cvl, ChargeMode { phase: self.phase, shaping }, events)
    }

    fn step_phase(
        &mut self,
        now: Instant,
        cfg: &ChargeConfig,
        n: f64,
        input: &VoltageInputs,
    ) -> VoltageEvents {
        let before = self.phase;
        let mut full_charge = false;
        let max_pack = n * cfg.max_cell_voltage;
        let spread = match (input.max_cell_v, input.min_cell_v) {
            (Some(hi), Some(lo)) => Some(hi - lo),
            _ => None,
        };
        match self.phase {
            Phase::Bulk => {
                // "At max": the pack is near max voltage, or the highest cell is at max, where the
                // cell over-voltage controller keeps the pack just under max voltage.
                let pack_at_max =
                    input.pack_v.is_some_and(|v| v >= max_pack - n * cfg.absorption_entry_cell_margin);
                let cell_at_max = input
                    .max_cell_v
                    .is_some_and(|v| v >= cfg.max_cell_voltage - cfg.cvl_controller_deadband_v);
                let at_max = pack_at_max || cell_at_max;
                if at_max && spread.is_some_and(|s| s <= cfg.float_switch_cell_diff) {
                    self.phase = Phase::Absorption;
                    self.absorption_start = Some(now);
                }
            }
            Phase::Absorption => {
                let start = *self.absorption_start.get_or_insert(now);
                if input.pack_v.is_some_and(|v| v < max_pack - n * cfg.absorption_exit_cell_margin) {
                    self.phase = Phase::Bulk;
                    self.absorption_start = None;
                } else if spread
                    .is_some_and(|s| s > cfg.float_switch_cell_diff + cfg.float_switch_cell_diff_hysteresis)
                {
                    self.absorption_start = Some(now);
                } else if now.saturating_duration_since(start).as_secs_f64() >= cfg.absorption_time_s {
                    self.phase = Phase::FloatTransition;
                    self.absorption_start = None;
                    self.float_ramp = Some((now, self.last_cvl.unwrap_or(max_pack)));
                    self.last_full_charge = Some(now);
                    full_charge = true;
                }
            }
            Phase::FloatTransition | Phase::Float => {
                let low_soc = input.soc_percent.is_some_and(|s| s < cfg.rebulk_soc);
                let unbalanced = spread.is_some_and(|s| s >= cfg.rebulk_cell_diff);
                let due = match (cfg.full_charge_every_days, self.last_full_charge) {
                    (Some(days), Some(t)) => {
                        now.saturating_duration_since(t).as_secs_f64() >= days * 86_400.0
                    }
                    _ => false,
                };
                if low_soc || unbalanced || due {
                    self.phase = Phase::Bulk;
                    self.float_ramp = None;
                } else if self.phase == Phase::FloatTransition
                    && self.phase_target(now, cfg, n) <= n * cfg.float_cell_voltage
                {
                    self.phase = Phase::Float;
                    self.float_ramp = None;
                }
            }
        }
        VoltageEvents { phase_changed: before != self.phase, full_charge }
    }

    fn phase_target(&self, now: Instant, cfg: &ChargeConfig, n: f64) -> f64 {
        let float = n * cfg.float_cell_voltage;
        match self.phase {
            Phase::Bulk | Phase::Absorption => n * cfg.max_cell_voltage,
            Phase::Float => float,
            Phase::FloatTransition => match self.float_ramp {
                Some((start, from)) => {
                    let elapsed = now.saturating_duration_since(start).as_secs_f64();
                    (from - n * cfg.float_ramp_v_per_cell_per_s * elapsed).max(float)
                }
                None => float,
            },
        }
    }

    fn step_ovp(
        &mut self,
        now: Instant,
        cfg: &ChargeConfig,
        n: f64,
        input: &VoltageInputs,
        target: f64,
    ) -> CvlShaping {
        // At most 30 s per step: after a gap in readings (BMS lost) one huge step would slam CVL.
        let dt = self.last_update.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64()).min(30.0);
        let error = input.max_cell_v.map(|v| v - cfg.max_cell_voltage);
        let floor = n * cfg.min_cell_voltage;
        if self.ovp.is_none() && error.is_some_and(|e| e > cfg.cvl_controller_deadband_v) {
            let start = self.last_cvl.unwrap_or(target).min(target);
            self.ovp = Some(Ovp { integral: start, out: start, last_cut: now });
        }
        let Some(ovp) = self.ovp.as_mut() else {
            return CvlShaping::Phase;
        };
        if let Some(e) = error.filter(|e| e.abs() > cfg.cvl_controller_deadband_v) {
            let step = n * cfg.cvl_controller_gain_per_s * e * dt;
            // Anti-windup: below the pack voltage the charger already stopped; going lower only
            // delays recovery.
            let windup_floor = input.pack_v.map_or(floor, |v| v - n * 0.02);
            ovp.integral = if e > 0.0 {
                (ovp.integral - step).max(windup_floor.min(ovp.integral))
            } else {
                ovp.integral - step
            };
        }
        ovp.integral = ovp.integral.clamp(floor, target.max(floor));
        let hold_end = ovp.last_cut + Duration::from_secs_f64(cfg.cvl_recovery_hold_s.max(0.0));
        let shaping = if ovp.integral < ovp.out {
            ovp.out = ovp.integral;
            ovp.last_cut = now;
            CvlShaping::CellOvp
        } else if ovp.integral > ovp.out {
            if now < hold_end {
                CvlShaping::CellOvpHold
            } else {
                let from = self.last_update.map_or(now, |t| t.max(hold_end));
                let ramp_dt = now.saturating_duration_since(from).as_secs_f64();
                let rate = cfg.cvl_recovery_v_per_s;
                ovp.out =
                    if rate > 0.0 { (ovp.out + rate * ramp_dt).min(ovp.integral) } else { ovp.integral };
                CvlShaping::CellOvpRecovery
            }
        } else {
            CvlShaping::CellOvp
        };
        if ovp.out >= target - 1e-9 && ovp.integral >= target - 1e-9 {
            self.ovp = None;
            return CvlShaping::Phase;
        }
        shaping
    }
}

#[cfg(test)]
#[path = "voltage_tests.rs"]
mod tests;
