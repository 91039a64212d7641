//! Charge control: CVL, CCL and DCL from the battery model.
//!
//! Pure and synchronous: `now` is passed in; nothing here reads a clock, sleeps or logs. The
//! only I/O is [`persist`] (the state file), which the caller invokes. Rules live in one file
//! each: [`voltage`] (CVL phases and cell over-voltage control), [`current`] (CCL/DCL rules and
//! rate limiting), [`tables`], [`safety`] (BMS lost), [`soc`], [`history`].
//! `docs/charge-control.md` documents every rule and config key.
//!
//! Time across restarts: `now` is an `Instant`, which means nothing after a restart, so the
//! saved [`ControlState`] holds elapsed durations (absorption done, time since the last full
//! charge). [`ChargeController::restore`] rebases them on the new `now`; the caller may pass the
//! time the daemon was down, which counts towards "time since full charge" but not absorption.

pub mod bms_limits;
pub mod config;
pub mod current;
pub mod history;
pub mod persist;
pub mod safety;
pub mod soc;
pub mod tables;
pub mod voltage;

pub use config::Chemistry;
pub use config::{ChargeConfig, SocSource, Table, TableMode};
pub use current::{LimitReason, Limitation};
pub use history::History;
pub use voltage::{BalanceEnd, ChargeMode, CvlShaping, Phase, TopBalance, VoltageState};

use crate::battery::Battery;
use current::{CurrentInputs, RampLimiter, RampState};
use serde::{Deserialize, Serialize};
use soc::{SocCounter, SocInputs};
use std::time::{Duration, Instant};
use voltage::{VoltageControl, VoltageInputs};

/// Whether the BMS is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Readings are fresh.
    Online,
    /// No good reading within the grace period; `since` is the time of the last good reading
    /// (or of start-up when there never was one).
    Lost {
        /// Time of the last good reading.
        since: Instant,
    },
}

/// What the control publishes. Limits are `None` only before the cell count is known (CVL,
/// low voltage); CCL and DCL are always numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChargeLimits {
    /// Charge voltage limit (`/Info/MaxChargeVoltage`).
    pub charge_voltage_v: Option<f64>,
    /// Charge current limit (`/Info/MaxChargeCurrent`).
    pub charge_current_a: Option<f64>,
    /// Discharge current limit (`/Info/MaxDischargeCurrent`).
    pub discharge_current_a: Option<f64>,
    /// Low voltage limit (`/Info/BatteryLowVoltage`).
    pub low_voltage_v: Option<f64>,
    /// Phase and what shapes CVL (`/Info/ChargeMode`).
    pub charge_mode: String,
    /// Rule that set CCL (`/Info/ChargeLimitation`).
    pub charge_limitation: String,
    /// Rule that set DCL (`/Info/DischargeLimitation`).
    pub discharge_limitation: String,
    /// Structured `charge_mode`.
    pub mode: ChargeMode,
    /// Structured `charge_limitation`.
    pub charge_reason: Limitation,
    /// Structured `discharge_limitation`.
    pub discharge_reason: Limitation,
    /// SoC to publish as `/Soc` (BMS or counted; `None` while the BMS is lost).
    pub soc_percent: Option<f64>,
    /// The BMS's own SoC (`/SocBms`).
    pub soc_bms_percent: Option<f64>,
    /// Seconds to `time_to_go_soc` at the average current (`/TimeToGo`); `None` unless discharging.
    pub time_to_go_s: Option<f64>,
    /// Moving average of the current (`/CurrentAvg`).
    pub current_average_a: Option<f64>,
    /// Time since the last full charge (`/History/TimeSinceLastFullCharge`).
    pub since_full_charge_s: Option<f64>,
    /// Worth a log line: a real change since the last limits that were (see [`LimitLog`]).
    pub notable: bool,
}

impl ChargeLimits {
    /// Limits explained by `mode` and the reasons, with their `/Info/*` texts; every number is
    /// still `None`, for the caller to fill in.
    fn explained(mode: ChargeMode, charge_reason: Limitation, discharge_reason: Limitation) -> ChargeLimits {
        ChargeLimits {
            charge_mode: mode.to_string(),
            charge_limitation: charge_reason.to_string(),
            discharge_limitation: discharge_reason.to_string(),
            mode,
            charge_reason,
            discharge_reason,
            ..ChargeLimits::default()
        }
    }

    /// True when the reasons changed or a limit moved to or from 0 / unknown: worth a log line.
    /// (Ramps change values every poll; logging each step would flood the log.)
    pub fn notable_change_from(&self, before: &ChargeLimits) -> bool {
        let zero = |v: Option<f64>| v.map(|v| v <= 0.0);
        self.mode != before.mode
            || self.charge_reason != before.charge_reason
            || self.discharge_reason != before.discharge_reason
            || zero(self.charge_current_a) != zero(before.charge_current_a)
            || zero(self.discharge_current_a) != zero(before.discharge_current_a)
            || self.charge_voltage_v.is_some() != before.charge_voltage_v.is_some()
    }

    /// True for changes that are logged at once (see [`LimitLog`]): a limit to or from 0 or
    /// unknown, CVL known or not, a phase change, the BMS lost or back.
    pub fn urgent_change_from(&self, before: &ChargeLimits) -> bool {
        let zero = |v: Option<f64>| v.map(|v| v <= 0.0);
        let lost = |l: &ChargeLimits| l.mode.shaping == CvlShaping::BmsLost;
        self.mode.phase != before.mode.phase
            || lost(self) != lost(before)
            || zero(self.charge_current_a) != zero(before.charge_current_a)
            || zero(self.discharge_current_a) != zero(before.discharge_current_a)
            || self.charge_voltage_v.is_some() != before.charge_voltage_v.is_some()
    }
}

/// Decides which limits are worth a log line (on a GX the log goes to flash).
///
/// A limit going to or from 0, CVL becoming known or unknown, a phase change or the BMS being
/// lost is logged in the same poll. Any other change of the reasons (`/Info/ChargeMode`,
/// `/Info/ChargeLimitation`) is logged once it has lasted `hold` without reverting to the limits
/// last logged: a reason that flaps between "Cell voltage" and "Cell voltage (recovering)"
/// within the recovery hold is not a change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitLog {
    logged: Option<ChargeLimits>,
    differs_since: Option<Instant>,
}

impl LimitLog {
    /// True when `limits` at `now` should be logged (and then counts them as logged).
    pub fn observe(&mut self, now: Instant, limits: &ChargeLimits, hold: Duration) -> bool {
        let Some(before) = self.logged.as_ref() else {
            self.log(limits);
            return true;
        };
        if limits.urgent_change_from(before) {
            self.log(limits);
            return true;
        }
        if !limits.notable_change_from(before) {
            self.differs_since = None;
            return false;
        }
        let since = *self.differs_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= hold {
            self.log(limits);
            return true;
        }
        false
    }

    fn log(&mut self, limits: &ChargeLimits) {
        self.logged = Some(limits.clone());
        self.differs_since = None;
    }
}

/// Everything control keeps across a restart. Times are durations, see the module doc. Fields
/// added in version 2 (controller and current limiter state) default to "none", so version 1
/// files still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlState {
    /// Format version (2).
    pub version: u32,
    /// Phase and timers.
    pub voltage: VoltageState,
    /// Coulomb-counted SoC (%), when `soc_source = "calculated"`.
    pub soc_percent: Option<f64>,
    /// Lifetime counters.
    pub history: History,
    /// Series cells last seen.
    pub cells: Option<u16>,
    /// Charge current limiter.
    pub ccl: RampState,
    /// Discharge current limiter.
    pub dcl: RampState,
}

/// Format version of [`ControlState`] written now.
pub const STATE_VERSION: u32 = 2;

/// Holds what control remembers between polls.
#[derive(Debug, Clone)]
pub struct ChargeController {
    config: ChargeConfig,
    cells: Option<u16>,
    voltage: VoltageControl,
    ccl: RampLimiter,
    dcl: RampLimiter,
    soc: SocCounter,
    history: History,
    last_min_cell_v: Option<f64>,
    last_online: Option<Instant>,
    last_now: Option<Instant>,
    last_saved: Option<Instant>,
    /// CVL and CCL in the state last saved (or restored).
    saved_limits: (Option<f64>, Option<f64>),
    must_save: bool,
    log: LimitLog,
}

/// A CVL cut of this much per cell, or a CCL cut of this fraction of the maximum, below the
/// values last saved makes the state worth saving (so a restart resumes from the deeper cut) ...
const SAVE_CUT_CELL_V: f64 = 0.01;
const SAVE_CUT_CCL_FRACTION: f64 = 0.1;
/// ... at most this often (s): only at the top of charge does the controller cut repeatedly.
const SAVE_CUT_MIN_INTERVAL_S: u64 = 60;
/// The periodic save never runs more often than this (s), even with `state_save_interval_s = 0`.
pub const MIN_SAVE_INTERVAL_S: u64 = 60;

impl ChargeController {
    /// A controller with no history.
    pub fn new(config: ChargeConfig) -> Self {
        Self {
            config,
            cells: None,
            voltage: VoltageControl::default(),
            ccl: RampLimiter::default(),
            dcl: RampLimiter::default(),
            soc: SocCounter::default(),
            history: History::default(),
            last_min_cell_v: None,
            last_online: None,
            last_now: None,
            last_saved: None,
            saved_limits: (None, None),
            must_save: false,
            log: LimitLog::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ChargeConfig {
        &self.config
    }

    /// The charge phase now.
    pub fn phase(&self) -> Phase {
        self.voltage.phase()
    }

    /// Absorption time done so far (at the last update).
    pub fn absorption_elapsed(&self) -> Option<Duration> {
        self.voltage.absorption_elapsed(self.last_now?)
    }

    /// Lifetime counters (`/History/*`).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Starts the lifetime counters afresh (`/History/Clear`); the charge state is kept.
    pub fn clear_history(&mut self) {
        self.history = History::default();
    }

    /// The state to save, as of the last update.
    pub fn state(&self) -> ControlState {
        let now = self.last_now;
        ControlState {
            version: STATE_VERSION,
            voltage: now.map(|now| self.voltage.state(now)).unwrap_or_default(),
            soc_percent: self.soc.counted(),
            history: self.history.clone(),
            cells: self.cells,
            ccl: self.ccl.state(),
            dcl: self.dcl.state(),
        }
    }

    /// Takes a saved state back at `now`. `offline` is how long the daemon was down (0 when
    /// unknown); it counts towards the time since the last full charge only.
    pub fn restore(&mut self, state: &ControlState, now: Instant, offline: Duration) {
        self.voltage.restore(&state.voltage, now, offline);
        self.ccl.restore(&state.ccl, now);
        self.dcl.restore(&state.dcl, now);
        self.soc.restore(state.soc_percent);
        self.history = state.history.clone();
        self.cells = self.cells.or(state.cells);
        self.last_now = Some(now);
        self.last_saved = Some(now);
        self.saved_limits = (state.voltage.last_cvl_v, state.ccl.value_a);
    }

    /// The state to write now, if it changed in a way worth saving (phase change, full charge,
    /// SoC sync, CVL or CCL cut well below the saved values, at most once a minute) or
    /// `state_save_interval_s` (at least [`MIN_SAVE_INTERVAL_S`]) passed since the last save.
    /// Returns each change once.
    pub fn take_state_to_save(&mut self) -> Option<ControlState> {
        let now = self.last_now?;
        let since_save = self.last_saved.map(|t| now.saturating_duration_since(t));
        // Never more often than once a minute, whatever the config says (flash wear).
        let interval = Duration::try_from_secs_f64(self.config.state_save_interval_s)
            .unwrap_or(Duration::MAX)
            .max(Duration::from_secs(MIN_SAVE_INTERVAL_S));
        let due = since_save.is_none_or(|d| d >= interval);
        let state = self.state();
        let (cvl, ccl) = (state.voltage.last_cvl_v, state.ccl.value_a);
        let below = |now: Option<f64>, saved: Option<f64>, by: f64| {
            now.zip(saved).is_some_and(|(now, saved)| now < saved - by)
        };
        let cells = self.cells.map_or(1.0, f64::from);
        let cut = below(cvl, self.saved_limits.0, cells * SAVE_CUT_CELL_V)
            || below(ccl, self.saved_limits.1, self.config.max_charge_current * SAVE_CUT_CCL_FRACTION);
        let cut_due = cut && since_save.is_none_or(|d| d >= Duration::from_secs(SAVE_CUT_MIN_INTERVAL_S));
        if self.must_save || due || cut_due {
            self.must_save = false;
            self.last_saved = Some(now);
            self.saved_limits = (cvl, ccl);
            return Some(state);
        }
        None
    }

    /// Computes the limits for this poll.
    pub fn update(&mut self, now: Instant, battery: &Battery, link: Link) -> ChargeLimits {
        if let Some(cells) = battery.cells_in_series() {
            self.cells = Some(cells);
        }
        self.last_now = Some(now);
        let mut limits = match link {
            Link::Online => self.online(now, battery),
            Link::Lost { since } => self.lost(now, since),
        };
        limits.notable = self.log.observe(now, &limits, self.log_hold());
        limits
    }

    /// How long a reason change must last to be logged: the longer recovery hold, within
    /// 1 s..=10 min (a huge or broken config value cannot silence the log for good).
    fn log_hold(&self) -> Duration {
        let hold = self.config.current_recovery_hold_s.max(self.config.cvl_recovery_hold_s);
        Duration::from_secs_f64(if hold.is_finite() { hold.clamp(1.0, 600.0) } else { 600.0 })
    }

    fn online(&mut self, now: Instant, battery: &Battery) -> ChargeLimits {
        let cfg = &self.config;
        let dt = self.last_online.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_online = Some(now);
        let max_cell = battery.max_cell().map(|(_, v)| v);
        let min_cell = battery.min_cell().map(|(_, v)| v);
        if min_cell.is_some() {
            self.last_min_cell_v = min_cell;
        }
        let pack_v = battery.voltage_v.or_else(|| battery.cell_voltages_v.as_ref().map(|c| c.iter().sum()));
        let capacity = battery.full_capacity_ah.or(battery.nominal_capacity_ah).or(cfg.capacity_ah);
        let soc_in = SocInputs {
            current_a: battery.current_a,
            bms_soc_percent: battery.soc_percent,
            capacity_ah: capacity,
            min_cell_v: min_cell,
        };
        if self.soc.update(now, dt, cfg, &soc_in) {
            self.must_save = true;
        }
        let cells = self.cells.map(f64::from);
        let mut mode = ChargeMode { phase: self.voltage.phase(), ..ChargeMode::default() };
        let mut cvl = None;
        if let Some(n) = cells {
            let input = VoltageInputs {
                pack_v,
                max_cell_v: max_cell,
                min_cell_v: min_cell,
                soc_percent: self.soc.soc(cfg, battery.soc_percent),
            };
            let (v, m, events) = self.voltage.update(now, cfg, n, &input);
            (cvl, mode) = (Some(v), m);
            if events.full_charge {
                self.soc.sync_full(cfg);
                self.history.full_charge();
            }
            self.must_save |= events.phase_changed || events.full_charge;
        }
        let soc = self.soc.soc(cfg, battery.soc_percent);
        let temps = battery.temperature_extremes().map(|((_, lo), (_, hi))| (lo, hi));
        let inputs = CurrentInputs {
            max_cell_v: max_cell,
            min_cell_v: min_cell,
            temperatures_c: temps,
            mosfet_c: battery.temperature_mos_c,
            soc_percent: soc,
            charge_fet: battery.charge_fet,
            discharge_fet: battery.discharge_fet,
            bms_charge_limit_a: battery.charge_current_limit_a,
            bms_discharge_limit_a: battery.discharge_current_limit_a,
        };
        let (ccl_target, ccl_why) = current::charge_target(cfg, &inputs);
        let (ccl, ccl_held) = self.ccl.apply(now, ccl_target, cfg.max_charge_current, cfg);
        let (dcl_target, dcl_why) = current::discharge_target(cfg, &inputs);
        let (dcl, dcl_held) = self.dcl.apply(now, dcl_target, cfg.max_discharge_current, cfg);
        self.history.update(&history::HistoryInputs {
            dt_s: dt.as_secs_f64().min(soc::MAX_STEP_S),
            pack_v,
            current_a: battery.current_a,
            cells_v: min_cell.zip(max_cell),
            temperatures_c: temps,
            capacity_ah: capacity,
            soc_percent: soc,
            low_voltage_alarm: [battery.alarms.low_voltage, battery.alarms.low_cell_voltage]
                .contains(&Some(crate::battery::AlarmLevel::Alarm)),
            high_voltage_alarm: [battery.alarms.high_voltage, battery.alarms.high_cell_voltage]
                .contains(&Some(crate::battery::AlarmLevel::Alarm)),
        });
        let charge_reason = Limitation { reasons: ccl_why, recovering: ccl_held };
        let discharge_reason = Limitation { reasons: dcl_why, recovering: dcl_held };
        ChargeLimits {
            charge_voltage_v: cvl,
            charge_current_a: Some(ccl),
            discharge_current_a: Some(dcl),
            low_voltage_v: cells.map(|n| n * cfg.min_cell_voltage),
            soc_percent: soc,
            soc_bms_percent: battery.soc_percent,
            time_to_go_s: self.soc.time_to_go_s(cfg, soc),
            current_average_a: self.soc.average_a(),
            since_full_charge_s: self.voltage.since_full_charge(now).map(|d| d.as_secs_f64()),
            ..ChargeLimits::explained(mode, charge_reason, discharge_reason)
        }
    }

    fn lost(&mut self, now: Instant, since: Instant) -> ChargeLimits {
        let cfg = &self.config;
        let cells = self.cells.map(f64::from);
        self.ccl.force(now, 0.0);
        let stopped = safety::discharge_stopped(cfg, now, since, self.last_min_cell_v);
        let (dcl, dcl_reason) = if stopped {
            self.dcl.force(now, 0.0);
            (0.0, LimitReason::BmsLost)
        } else {
            let kept = self.dcl.value().unwrap_or(cfg.max_discharge_current);
            self.dcl.force(now, kept);
            (kept, LimitReason::BmsLostHold)
        };
        let mode =
            ChargeMode { phase: self.voltage.phase(), shaping: CvlShaping::BmsLost, ..ChargeMode::default() };
        let charge_reason = Limitation { reasons: vec![LimitReason::BmsLost], recovering: false };
        let discharge_reason = Limitation { reasons: vec![dcl_reason], recovering: false };
        // SoC, time to go and the average current are unknown while the BMS is lost.
        ChargeLimits {
            charge_voltage_v: cells.map(|n| n * cfg.float_cell_voltage),
            charge_current_a: Some(0.0),
            discharge_current_a: Some(dcl),
            low_voltage_v: cells.map(|n| n * cfg.min_cell_voltage),
            since_full_charge_s: self.voltage.since_full_charge(now).map(|d| d.as_secs_f64()),
            ..ChargeLimits::explained(mode, charge_reason, discharge_reason)
        }
    }
}

#[cfg(test)]
mod tests;
