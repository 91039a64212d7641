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

/// Top balancing: absorption extended past `absorption_time_s` while the cells converge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BalanceEnd {
    /// The spread came down to `float_switch_cell_diff`.
    Balanced,
    /// `balance_max_time_s` ran out with the spread still above `float_switch_cell_diff`.
    TimeLimit,
    /// The spread stopped shrinking for [`BALANCE_STALL_S`].
    NoProgress,
}

/// What top balancing is doing, for `/Info/ChargeMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopBalance {
    /// Not balancing, or it ended with balanced cells.
    #[default]
    None,
    /// Absorption is extended while the spread shrinks.
    Running,
    /// Absorption ended with the cells still apart (shown until the next bulk).
    Stopped(BalanceEnd),
}

/// Top balancing ends when the spread made no new low (by [`BALANCE_PROGRESS_V`]) this long (s).
pub const BALANCE_STALL_S: f64 = 1800.0;
/// A new low of the spread counts as progress when it is this much under the best so far (V).
pub const BALANCE_PROGRESS_V: f64 = 0.001;
/// Beyond this many deadbands of cell error the controller cuts proportionally again.
const PROPORTIONAL_CUT_DEADBANDS: f64 = 4.0;
/// The controller never integrates more than this far per cell below the pack voltage (V).
const WINDUP_CELL_V: f64 = 0.02;

/// The structured form of `/Info/ChargeMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChargeMode {
    /// The charge phase.
    pub phase: Phase,
    /// What shapes CVL now.
    pub shaping: CvlShaping,
    /// Top balancing.
    pub balance: TopBalance,
}

impl fmt::Display for ChargeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shaping = match self.shaping {
            CvlShaping::Phase => None,
            CvlShaping::CellOvp => Some("cell OVP"),
            CvlShaping::CellOvpHold => Some("cell OVP, hold"),
            CvlShaping::CellOvpRecovery => Some("cell OVP, recovering"),
            CvlShaping::BmsLost => return write!(f, "BMS lost: float voltage ({})", self.phase.text()),
        };
        let balance = match self.balance {
            TopBalance::None | TopBalance::Stopped(BalanceEnd::Balanced) => None,
            TopBalance::Running => Some("top balancing"),
            TopBalance::Stopped(BalanceEnd::TimeLimit) => Some("top balancing stopped: time limit"),
            TopBalance::Stopped(BalanceEnd::NoProgress) => Some("top balancing stopped: no progress"),
        };
        f.write_str(self.phase.text())?;
        match (balance, shaping) {
            (Some(b), Some(s)) => write!(f, " ({b}; {s})"),
            (Some(x), None) | (None, Some(x)) => write!(f, " ({x})"),
            (None, None) => Ok(()),
        }
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

/// The saved cell over-voltage controller.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OvpState {
    /// Controller output (pack V).
    pub integral_v: f64,
    /// Published, rate-limited output (pack V).
    pub out_v: f64,
}

/// The saved part of the CVL state, as elapsed times (see `ControlState`). Fields added later
/// default to "none", so older state files load.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VoltageState {
    /// Phase at the time of saving.
    pub phase: Phase,
    /// Absorption time already done (s).
    pub absorption_elapsed_s: Option<f64>,
    /// Float transition: CVL where the ramp started (V) and time since (s).
    pub float_ramp: Option<(f64, f64)>,
    /// Running time since the last full charge (s).
    pub since_full_charge_s: Option<f64>,
    /// Top balancing: time done (s), best spread (V), time since the best spread (s).
    pub balance: Option<(f64, f64, f64)>,
    /// How the last absorption ended, when the cells were still apart.
    pub balance_end: Option<BalanceEnd>,
    /// Cell over-voltage controller, when active.
    pub ovp: Option<OvpState>,
    /// CVL last published (pack V).
    pub last_cvl_v: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Ovp {
    /// Controller output (pack V).
    integral: f64,
    /// Rate-limited output (pack V).
    out: f64,
    last_cut: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Balancing {
    started: Instant,
    best_spread: f64,
    best_at: Instant,
}

/// CVL state between polls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoltageControl {
    phase: Phase,
    absorption_start: Option<Instant>,
    float_ramp: Option<(Instant, f64)>,
    last_full_charge: Option<Instant>,
    balancing: Option<Balancing>,
    balance_end: Option<BalanceEnd>,
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `s` seconds as a duration; negative, NaN or too large for a `Duration` gives `None`.
fn duration(s: f64) -> Option<Duration> {
    if s >= 0.0 {
        Duration::try_from_secs_f64(s).ok()
    } else {
        None
    }
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
        let since = |t: Instant| secs(now.saturating_duration_since(t));
        VoltageState {
            phase: self.phase,
            absorption_elapsed_s: self.absorption_elapsed(now).map(secs),
            float_ramp: self.float_ramp.map(|(start, v)| (v, since(start))),
            since_full_charge_s: self.since_full_charge(now).map(secs),
            balance: self.balancing.map(|b| (since(b.started), b.best_spread, since(b.best_at))),
            balance_end: self.balance_end,
            ovp: self.ovp.map(|o| OvpState { integral_v: o.integral, out_v: o.out }),
            last_cvl_v: self.last_cvl,
        }
    }

    /// Takes a saved state back. `offline` counts towards the time since the last full charge
    /// but not towards the absorption timer (absorption resumes where it stopped). A saved
    /// over-voltage controller resumes at its saved output with a fresh recovery hold, so CVL
    /// never starts above what it was before the restart.
    pub fn restore(&mut self, state: &VoltageState, now: Instant, offline: Duration) {
        let ago = |s: f64, extra: Duration| {
            let d = duration(s).unwrap_or(Duration::ZERO).saturating_add(extra);
            now.checked_sub(d).unwrap_or(now)
        };
        let finite = |v: f64| v.is_finite().then_some(v);
        *self = Self {
            phase: state.phase,
            absorption_start: state.absorption_elapsed_s.map(|s| ago(s, Duration::ZERO)),
            float_ramp: state.float_ramp.and_then(|(v, s)| finite(v).map(|v| (ago(s, Duration::ZERO), v))),
            last_full_charge: state.since_full_charge_s.map(|s| ago(s, offline)),
            balancing: state.balance.and_then(|(done, best, since_best)| {
                finite(best).map(|best_spread| Balancing {
                    started: ago(done, Duration::ZERO),
                    best_spread,
                    best_at: ago(since_best, Duration::ZERO),
                })
            }),
            balance_end: state.balance_end,
            ovp: state.ovp.and_then(|o| {
                let integral = finite(o.integral_v)?;
                let out = finite(o.out_v)?;
                Some(Ovp { integral, out, last_cut: now })
            }),
            last_update: None,
            last_cvl: state.last_cvl_v.and_then(finite),
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
        // max/min, not clamp: clamp panics on a NaN or inverted range, and no config may panic.
        let (lo, hi) = (cells * cfg.min_cell_voltage, cells * cfg.max_cell_voltage);
        let cvl = if limited.is_finite() { limited.max(lo).min(hi) } else { lo.min(hi) };
        self.last_cvl = Some(cvl);
        self.last_update = Some(now);
        let balance = match (self.balancing, self.balance_end) {
            (Some(_), _) => TopBalance::Running,
            (None, Some(end)) => TopBalance::Stopped(end),
            (None, None) => TopBalance::None,
        };
        (cvl, ChargeMode { phase: self.phase, shaping, balance }, events)
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
                // cell over-voltage controller keeps the pack under max voltage. Imbalance does not
                // keep the pack out of absorption: absorption is where it gets balanced.
                let pack_at_max =
                    input.pack_v.is_some_and(|v| v >= max_pack - n * cfg.absorption_entry_cell_margin);
                let cell_at_max = input
                    .max_cell_v
                    .is_some_and(|v| v >= cfg.max_cell_voltage - cfg.cvl_controller_deadband_v);
                if pack_at_max || cell_at_max {
                    self.phase = Phase::Absorption;
                    self.absorption_start = Some(now);
                    self.balancing = None;
                    self.balance_end = None;
                }
            }
            Phase::Absorption => {
                let start = *self.absorption_start.get_or_insert(now);
                // Left only when the pack was really discharged: a pack held low by the
                // over-voltage controller still has its highest cell at max.
                let pack_low =
                    input.pack_v.is_some_and(|v| v < max_pack - n * cfg.absorption_exit_cell_margin);
                let cell_low = input
                    .max_cell_v
                    .is_none_or(|v| v < cfg.max_cell_voltage - cfg.absorption_exit_cell_margin);
                if pack_low && cell_low {
                    self.phase = Phase::Bulk;
                    self.absorption_start = None;
                    self.balancing = None;
                } else if secs(now.saturating_duration_since(start)) >= cfg.absorption_time_s {
                    if let Some(end) = self.top_balance(now, cfg, spread) {
                        self.phase = Phase::FloatTransition;
                        self.absorption_start = None;
                        self.balancing = None;
                        self.balance_end = (end != BalanceEnd::Balanced).then_some(end);
                        self.float_ramp = Some((now, self.last_cvl.unwrap_or(max_pack)));
                        self.last_full_charge = Some(now);
                        full_charge = true;
                    }
                }
            }
            Phase::FloatTransition | Phase::Float => {
                let low_soc = input.soc_percent.is_some_and(|s| s < cfg.rebulk_soc);
                // After top balancing gave up, the spread is known to be large: re-bulking for it
                // would only repeat the same absorption.
                let unbalanced =
                    self.balance_end.is_none() && spread.is_some_and(|s| s >= cfg.rebulk_cell_diff);
                let due = match (cfg.full_charge_every_days, self.last_full_charge) {
                    (Some(days), Some(t)) => secs(now.saturating_duration_since(t)) >= days * 86_400.0,
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

    /// At the end of the absorption time: `Some(how it ended)` when absorption may end now,
    /// `None` while top balancing extends it.
    fn top_balance(&mut self, now: Instant, cfg: &ChargeConfig, spread: Option<f64>) -> Option<BalanceEnd> {
        let Some(spread) = spread.filter(|s| s.is_finite()) else {
            return Some(BalanceEnd::Balanced);
        };
        let Some(b) = self.balancing.as_mut() else {
            if spread > cfg.float_switch_cell_diff + cfg.float_switch_cell_diff_hysteresis
                && cfg.balance_max_time_s > 0.0
            {
                self.balancing = Some(Balancing { started: now, best_spread: spread, best_at: now });
                return None;
            }
            return Some(BalanceEnd::Balanced);
        };
        if spread <= cfg.float_switch_cell_diff {
            return Some(BalanceEnd::Balanced);
        }
        if spread < b.best_spread - BALANCE_PROGRESS_V {
            b.best_spread = spread;
            b.best_at = now;
        }
        if secs(now.saturating_duration_since(b.started)) >= cfg.balance_max_time_s {
            return Some(BalanceEnd::TimeLimit);
        }
        if secs(now.saturating_duration_since(b.best_at)) >= BALANCE_STALL_S {
            return Some(BalanceEnd::NoProgress);
        }
        None
    }

    fn phase_target(&self, now: Instant, cfg: &ChargeConfig, n: f64) -> f64 {
        let float = n * cfg.float_cell_voltage;
        match self.phase {
            Phase::Bulk | Phase::Absorption => n * cfg.max_cell_voltage,
            Phase::Float => float,
            Phase::FloatTransition => match self.float_ramp {
                Some((start, from)) => {
                    let elapsed = secs(now.saturating_duration_since(start));
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
        let dt = self.last_update.map_or(0.0, |t| secs(now.saturating_duration_since(t))).min(30.0);
        let error = input.max_cell_v.map(|v| v - cfg.max_cell_voltage).filter(|e| e.is_finite());
        let floor = n * cfg.min_cell_voltage;
        let over = error.filter(|e| *e > cfg.cvl_controller_deadband_v);
        let engaging = self.ovp.is_none() && over.is_some();
        if engaging {
            // Start at the operating point: a CVL above the pack voltage does nothing while the
            // charger is current-limited, so starting at the old CVL would lose seconds.
            let start = self.last_cvl.unwrap_or(target).min(target).min(input.pack_v.unwrap_or(target));
            self.ovp = Some(Ovp { integral: start, out: start, last_cut: now });
        }
        let Some(ovp) = self.ovp.as_mut() else {
            return CvlShaping::Phase;
        };
        if let Some(e) = error.filter(|e| e.abs() > cfg.cvl_controller_deadband_v) {
            let step = n * cfg.cvl_controller_gain_per_s * e * dt;
            if e > 0.0 {
                // Anti-windup: below the pack voltage the charger already stopped; going lower
                // only delays recovery.
                let windup_floor = input.pack_v.map_or(floor, |v| v - n * WINDUP_CELL_V);
                let mut next = ovp.integral - step;
                if let Some(pack) = input
                    .pack_v
                    .filter(|_| engaging || e > PROPORTIONAL_CUT_DEADBANDS * cfg.cvl_controller_deadband_v)
                {
                    // Proportional cut, when the controller engages (the charger was pushing full
                    // current) or the cell is far over: the highest cell is e over max now;
                    // lowering the pack by cells x e takes about e off every cell's IR drop,
                    // whatever the poll rate. Near max at small currents the error is the cell's
                    // own voltage, not IR: there the integral acts alone, or CVL would hunt.
                    next = next.min(pack - n * e);
                }
                ovp.integral = next.max(windup_floor.min(ovp.integral));
            } else {
                // Upward, never past the pack voltage plus the deadband per cell: above that the
                // charger would push current the cell does not need (at the top it takes what
                // the balancer bleeds), and a wound-up output overshoots once the hold ends.
                let ceiling = input.pack_v.map_or(f64::INFINITY, |v| v + n * cfg.cvl_controller_deadband_v);
                ovp.integral = (ovp.integral - step).min(ceiling.max(ovp.integral));
            }
        }
        ovp.integral = ovp.integral.max(floor).min(target.max(floor));
        // A hold too long for the clock (a huge config value) never ends: CVL stays low.
        let hold_end = duration(cfg.cvl_recovery_hold_s.max(0.0)).and_then(|h| ovp.last_cut.checked_add(h));
        let shaping = if ovp.integral < ovp.out {
            ovp.out = ovp.integral;
            ovp.last_cut = now;
            CvlShaping::CellOvp
        } else if ovp.integral > ovp.out {
            match hold_end {
                Some(end) if now >= end => {
                    let from = self.last_update.map_or(now, |t| t.max(end));
                    let ramp_dt = secs(now.saturating_duration_since(from));
                    let rate = cfg.cvl_recovery_v_per_s;
                    ovp.out =
                        if rate > 0.0 { (ovp.out + rate * ramp_dt).min(ovp.integral) } else { ovp.integral };
                    CvlShaping::CellOvpRecovery
                }
                _ => CvlShaping::CellOvpHold,
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
