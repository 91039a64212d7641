//! Per-battery health and limits: takes readings and failures with their time, decides whether
//! the BMS is online, and gives what to publish. Pure: the caller passes `now`.
//!
//! A lost BMS never leaves frozen values behind: after the grace period its measurements become
//! unknown, `/Connected` 0, `/Alarms/BmsCable` alarm, and the charge control switches to its
//! lost-BMS limits (CCL 0).

use crate::battery::{AlarmLevel, Alarms, Battery};
use crate::config::BatteryConfig;
use crate::control::history::History;
use crate::control::{ChargeController, ChargeLimits, ControlState, Link};
use crate::plausibility::{self, Implausible};
use std::time::{Duration, Instant};

/// A rejected reading is logged at most this often per battery (a BMS sending nonsense every
/// poll must not fill the GX's flash with one line a second).
pub const IMPLAUSIBLE_LOG_EVERY: Duration = Duration::from_secs(60);

/// A reading that [`Monitor::handle_reading`] did not take.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Why.
    pub reason: Implausible,
    /// True when the caller should log it now (rate-limited, see [`IMPLAUSIBLE_LOG_EVERY`]).
    pub log: bool,
}

/// `/State` values (Victron's battery state enum).
pub mod state {
    /// Waiting for the first reading.
    pub const INITIALISING: i32 = 0;
    /// Readings arrive.
    pub const RUNNING: i32 = 9;
    /// The BMS is lost.
    pub const ERROR: i32 = 10;
    /// Neither charging nor discharging allowed.
    pub const STANDBY: i32 = 14;
}

/// `/ErrorCode` used when the BMS stops answering (Victron's list has no better fit; 0 = none).
pub const ERROR_CODE_BMS_LOST: i32 = 1;

/// What to publish for one battery at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The battery as it may be shown: measurements only while online.
    pub battery: Battery,
    /// Charge limits.
    pub limits: ChargeLimits,
    /// `/Connected`.
    pub connected: bool,
    /// `/State`.
    pub state: i32,
    /// `/ErrorCode`.
    pub error_code: i32,
    /// Lifetime counters (`/History/*`).
    pub history: History,
}

#[cfg(test)]
impl Output {
    /// `battery` online and running (state 9), with default limits and counters.
    pub(crate) fn online(battery: Battery) -> Self {
        let (limits, history) = (ChargeLimits::default(), History::default());
        Self { battery, limits, connected: true, state: 9, error_code: 0, history }
    }
}

/// Health and limits of one battery.
#[derive(Debug)]
pub struct Monitor {
    options: BatteryConfig,
    stale_after: Duration,
    started: Instant,
    last_good: Option<Instant>,
    latest: Battery,
    controller: ChargeController,
    failures_in_a_row: u32,
    last_error: Option<String>,
    /// The series cell count in force: the configured one, else the first one seen (or saved).
    cells_in_force: Option<u16>,
    /// Why the latest reading was rejected, until a good one arrives (raises InternalFailure).
    rejected: Option<Implausible>,
    last_rejection_logged: Option<Instant>,
    /// Lost now, whatever the age of the last reading ([`Monitor::handle_lost`]).
    lost_now: bool,
    /// Failed or rejected polls per minute since `started`, the last hour of them: 60 fixed
    /// slots (minute number, count), so the memory is the same at any poll rate.
    errors_by_minute: [(u64, u32); 60],
}

impl Monitor {
    /// A monitor that has seen nothing yet.
    pub fn new(
        now: Instant,
        options: BatteryConfig,
        stale_after: Duration,
        controller: ChargeController,
    ) -> Self {
        Self {
            stale_after,
            started: now,
            last_good: None,
            latest: Battery::default(),
            controller,
            failures_in_a_row: 0,
            last_error: None,
            lost_now: false,
            cells_in_force: options.cell_count,
            rejected: None,
            last_rejection_logged: None,
            errors_by_minute: [(u64::MAX, 0); 60],
            options,
        }
    }

    /// A successful poll, received at `now`. The reading's own time (`read_at`, the arrival of
    /// its bytes, e.g. its oldest CAN frame) is kept when it is earlier: the grace period runs
    /// from when the BMS spoke, not from when the reading was forwarded.
    ///
    /// The reading is checked first ([`plausibility::check`]): a rejected one is not used (no
    /// new limits from it, the last good reading keeps ageing) and is returned. Identity (model,
    /// serial ...) read once at start-up is kept when a later reading does not repeat it;
    /// measurements are only ever taken from this reading.
    pub fn handle_reading(&mut self, now: Instant, mut reading: Battery) -> Option<Rejected> {
        let at = reading.read_at.map_or(now, |t| t.min(now));
        plausibility::drop_unreported_limits(&mut reading);
        if let Err(reason) = plausibility::check(&reading, self.cells_in_force) {
            let log = self
                .last_rejection_logged
                .is_none_or(|t| now.saturating_duration_since(t) >= IMPLAUSIBLE_LOG_EVERY)
                || self
                    .rejected
                    .as_ref()
                    .is_none_or(|r| std::mem::discriminant(r) != std::mem::discriminant(&reason));
            if log {
                self.last_rejection_logged = Some(now);
            }
            self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
            self.count_error(now);
            self.last_error = Some(format!("implausible reading: {reason}"));
            self.rejected = Some(reason.clone());
            return Some(Rejected { reason, log });
        }
        self.cells_in_force = self.cells_in_force.or(reading.cells_in_series());
        self.rejected = None;
        reading.read_at = Some(at);
        for (slot, old) in [
            (&mut reading.model, &self.latest.model),
            (&mut reading.serial, &self.latest.serial),
            (&mut reading.firmware_version, &self.latest.firmware_version),
            (&mut reading.hardware_version, &self.latest.hardware_version),
            (&mut reading.production_date, &self.latest.production_date),
        ] {
            if slot.is_none() {
                slot.clone_from(old);
            }
        }
        self.apply_options(&mut reading);
        self.latest = reading;
        self.last_good = Some(self.last_good.map_or(at, |t| t.max(at)));
        self.failures_in_a_row = 0;
        self.last_error = None;
        self.lost_now = false;
        None
    }

    /// A failed poll (timeout, bad frame, port gone). Returns true when this changes the error
    /// text, so the caller logs each distinct problem once rather than every poll.
    pub fn handle_failure(&mut self, error: String) -> bool {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.count_error(Instant::now());
        let changed = self.last_error.as_deref() != Some(error.as_str());
        self.last_error = Some(error);
        changed
    }

    /// The BMS is lost now, without waiting for the grace period (a series bank with a pack
    /// missing: its cells are unknown at once); the next reading ends it. Returns as
    /// [`Monitor::handle_failure`].
    pub fn handle_lost(&mut self, error: String) -> bool {
        self.lost_now = true;
        self.handle_failure(error)
    }

    fn minute(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_secs() / 60
    }

    fn count_error(&mut self, now: Instant) {
        let minute = self.minute(now);
        let index = usize::try_from(minute % 60).unwrap_or(0);
        if let Some(slot) = self.errors_by_minute.get_mut(index) {
            *slot = if slot.0 == minute { (minute, slot.1.saturating_add(1)) } else { (minute, 1) };
        }
    }

    /// Failed and rejected polls in the last hour (whole minutes: the current one and the 59
    /// before it).
    pub fn errors_in_last_hour(&self, now: Instant) -> u32 {
        let minute = self.minute(now);
        self.errors_by_minute
            .iter()
            .filter(|(m, _)| *m != u64::MAX && *m <= minute && minute - *m < 60)
            .map(|(_, n)| *n)
            .fold(0u32, u32::saturating_add)
    }

    /// When the last good reading was taken, if there was one.
    pub fn last_good(&self) -> Option<Instant> {
        self.last_good
    }

    /// The last error text, if the last poll failed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The latest good reading (identity for the D-Bus service, for example).
    pub fn latest(&self) -> &Battery {
        &self.latest
    }

    /// True when a good reading is younger than the grace period.
    pub fn is_online(&self, now: Instant) -> bool {
        !self.lost_now && self.last_good.is_some_and(|t| now.saturating_duration_since(t) < self.stale_after)
    }

    /// When the current state would change by time alone (a reading going stale).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.last_good.and_then(|t| t.checked_add(self.stale_after))
    }

    /// What to publish now.
    pub fn output(&mut self, now: Instant) -> Output {
        let online = self.is_online(now);
        let (mut battery, link) = if online {
            (self.latest.clone(), Link::Online)
        } else {
            let since = self.last_good.unwrap_or(self.started);
            (self.lost_view(), Link::Lost { since })
        };
        let mut limits = self.controller.update(now, &battery, link);
        if self.rejected.is_some() {
            Alarms::raise(&mut battery.alarms.internal_failure, AlarmLevel::Alarm);
        }
        if let (true, Some(mode)) = (online, self.options.use_bms_limits) {
            let ceiling =
                crate::control::bms_limits::Ceiling::of(self.controller.config(), self.cells_in_force);
            crate::control::bms_limits::apply(&mut limits, &battery, mode, ceiling);
        }
        // Lost with BMS limits in use: the fail-safe float voltage must not exceed the charge
        // voltage the BMS last allowed (CCL is 0 anyway; this keeps CVL consistent with the BMS).
        if let (false, Some(_), Some(bms_cvl)) =
            (online, self.options.use_bms_limits, self.latest.charge_voltage_limit_v)
        {
            limits.charge_voltage_v = limits.charge_voltage_v.map(|v| v.min(bms_cvl));
        }
        let (state, error_code) = if online {
            let standby = limits.charge_current_a == Some(0.0) && limits.discharge_current_a == Some(0.0);
            (if standby { state::STANDBY } else { state::RUNNING }, 0)
        } else if self.last_good.is_none() && now.saturating_duration_since(self.started) < self.stale_after {
            (state::INITIALISING, 0)
        } else {
            (state::ERROR, ERROR_CODE_BMS_LOST)
        };
        let history = self.controller.history().clone();
        Output { battery, limits, connected: online, state, error_code, history }
    }

    /// Identity and cell count of the last reading, every measurement unknown, cable alarm set.
    fn lost_view(&self) -> Battery {
        let l = &self.latest;
        let mut alarms = Alarms::default();
        // Still initialising (no reading yet, within the grace period) is not a cable fault.
        if self.last_good.is_some() || self.last_error.is_some() {
            alarms.bms_cable = Some(AlarmLevel::Alarm);
        }
        Battery {
            cell_count: l.cells_in_series(),
            nominal_capacity_ah: l.nominal_capacity_ah,
            model: l.model.clone(),
            serial: l.serial.clone(),
            firmware_version: l.firmware_version.clone(),
            hardware_version: l.hardware_version.clone(),
            production_date: l.production_date.clone(),
            alarms,
            ..Battery::default()
        }
    }

    fn apply_options(&self, reading: &mut Battery) {
        if let Some(capacity) = self.options.capacity_ah {
            reading.nominal_capacity_ah = Some(capacity);
            if let Some(soc) = reading.soc_percent {
                reading.remaining_capacity_ah = Some(capacity * soc / 100.0);
            }
            reading.full_capacity_ah = Some(capacity);
        }
        // Ok unless the reading carries a cable state of its own (a bank with a pack missing).
        Alarms::raise(&mut reading.alarms.bms_cable, AlarmLevel::Ok);
    }

    /// Charge-control state worth saving now (phase change, full charge, periodic), once each.
    pub fn take_state_to_save(&mut self) -> Option<ControlState> {
        self.controller.take_state_to_save()
    }

    /// Clears the `/History/*` counters (`/History/Clear`).
    pub fn clear_history(&mut self) {
        self.controller.clear_history();
    }

    /// Charge-control state as of the last output (for saving at shutdown).
    pub fn control_state(&self) -> ControlState {
        self.controller.state()
    }

    /// Continues from a saved charge-control state; `offline` is how long the daemon was down.
    pub fn restore_control_state(&mut self, state: &ControlState, now: Instant, offline: Duration) {
        self.controller.restore(state, now, offline);
        // The count saved with the state is the one charge control last used: a pack that
        // restarts reporting another count is rejected, not taken as a new pack.
        self.cells_in_force = self.cells_in_force.or(state.cells);
    }

    /// The series cell count in force (configured, else first seen), if known.
    pub fn cells_in_force(&self) -> Option<u16> {
        self.cells_in_force
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_for_an_hour_in_fixed_memory() {
        let start = Instant::now();
        let mut m = Monitor::new(
            start,
            BatteryConfig::default(),
            Duration::from_secs(10),
            ChargeController::new(ChargeConfig::default()),
        );
        for minute in 0..3u64 {
            m.count_error(start + Duration::from_secs(minute * 60));
            m.count_error(start + Duration::from_secs(minute * 60 + 30));
        }
        assert_eq!(m.errors_in_last_hour(start + Duration::from_secs(150)), 6);
        // Minute 0 falls out at minute 60, minute 2 at minute 62.
        assert_eq!(m.errors_in_last_hour(start + Duration::from_secs(60 * 60)), 4);
        assert_eq!(m.errors_in_last_hour(start + Duration::from_secs(63 * 60)), 0);
        m.count_error(start + Duration::from_secs(120 * 60));
        assert_eq!(m.errors_in_last_hour(start + Duration::from_secs(120 * 60)), 1, "a reused slot restarts");
    }
    use crate::control::ChargeConfig;

    fn reading() -> Battery {
        Battery {
            voltage_v: Some(53.0),
            current_a: Some(10.0),
            soc_percent: Some(60.0),
            cell_voltages_v: Some(vec![3.31; 16]),
            charge_fet: Some(true),
            discharge_fet: Some(true),
            model: Some("JBD-SP16".into()),
            ..Battery::default()
        }
    }

    fn monitor(t0: Instant) -> Monitor {
        Monitor::new(
            t0,
            BatteryConfig::default(),
            Duration::from_secs(10),
            ChargeController::new(ChargeConfig::default()),
        )
    }

    #[test]
    fn before_the_first_reading_the_service_is_initialising_with_nothing_known() {
        let t0 = Instant::now();
        let mut m = monitor(t0);
        let out = m.output(t0 + Duration::from_secs(1));
        assert_eq!(out.state, state::INITIALISING);
        assert!(!out.connected);
        assert_eq!(out.battery.voltage_v, None);
        assert_eq!(out.limits.charge_current_a, Some(0.0));
        assert_eq!(out.battery.alarms.bms_cable, None);
    }

    #[test]
    fn fresh_readings_are_published_live() {
        let t0 = Instant::now();
        let mut m = monitor(t0);
        m.handle_reading(t0, reading());
        let out = m.output(t0 + Duration::from_secs(1));
        assert!(out.connected);
        assert_eq!(out.state, state::RUNNING);
        assert_eq!(out.battery.voltage_v, Some(53.0));
        assert_eq!(out.battery.alarms.bms_cable, Some(AlarmLevel::Ok));
        assert!((out.limits.charge_voltage_v.unwrap() - 55.2).abs() < 1e-9);
        assert_eq!(out.limits.charge_current_a, Some(50.0));
    }

    #[test]
    fn a_silent_bms_is_lost_after_the_grace_period_and_comes_back() {
        let t0 = Instant::now();
        let mut m = monitor(t0);
        m.handle_reading(t0, reading());
        assert!(m.handle_failure("timeout".into()));
        assert!(!m.handle_failure("timeout".into()), "the same error is reported once");
        let still = m.output(t0 + Duration::from_millis(9_900));
        assert!(still.connected, "within the grace period");
        let lost = m.output(t0 + Duration::from_secs(10));
        assert!(!lost.connected);
        assert_eq!(lost.state, state::ERROR);
        assert_eq!(lost.battery.voltage_v, None, "never frozen");
        assert_eq!(lost.battery.cell_voltages_v, None);
        assert_eq!(lost.battery.model.as_deref(), Some("JBD-SP16"));
        assert_eq!(lost.battery.alarms.bms_cable, Some(AlarmLevel::Alarm));
        assert_eq!(lost.limits.charge_current_a, Some(0.0));
        assert!((lost.limits.charge_voltage_v.unwrap() - 54.0).abs() < 1e-9, "float voltage");
        m.handle_reading(t0 + Duration::from_secs(20), reading());
        let back = m.output(t0 + Duration::from_secs(20));
        assert!(back.connected);
        assert_eq!(back.battery.voltage_v, Some(53.0));
        assert_eq!(back.battery.alarms.bms_cable, Some(AlarmLevel::Ok));
    }

    #[test]
    fn identity_from_start_up_is_kept_and_options_applied() {
        let t0 = Instant::now();
        let options = BatteryConfig { capacity_ah: Some(280.0), ..Default::default() };
        let mut m = Monitor::new(
            t0,
            options,
            Duration::from_secs(10),
            ChargeController::new(ChargeConfig::default()),
        );
        assert_eq!(m.handle_reading(t0, reading()), None);
        assert_eq!(m.handle_reading(t0, Battery { model: None, ..reading() }), None);
        let out = m.output(t0);
        assert_eq!(out.battery.model.as_deref(), Some("JBD-SP16"));
        assert_eq!(out.battery.nominal_capacity_ah, Some(280.0));
        assert_eq!(out.battery.remaining_capacity_ah, Some(168.0));
        assert_eq!(out.battery.alarms.internal_failure, None);
    }

    fn configured(t0: Instant, cell_count: Option<u16>) -> Monitor {
        let options = BatteryConfig { cell_count, ..Default::default() };
        Monitor::new(t0, options, Duration::from_secs(10), ChargeController::new(ChargeConfig::default()))
    }

    /// 24 cells reported on a configured 16S pack used to give CVL 82.8 V (24 x 3.45).
    #[test]
    fn the_configured_cell_count_wins_and_a_different_count_never_sets_cvl() {
        let t0 = Instant::now();
        let mut m = configured(t0, Some(16));
        assert_eq!(m.handle_reading(t0, reading()), None);
        let before = m.output(t0);
        assert!((before.limits.charge_voltage_v.unwrap() - 16.0 * 3.45).abs() < 1e-9);
        let wrong = Battery { cell_voltages_v: Some(vec![3.31; 24]), voltage_v: Some(79.4), ..reading() };
        let rejected = m.handle_reading(t0 + Duration::from_secs(1), wrong.clone()).expect("rejected");
        assert_eq!(rejected.reason, Implausible::CellCount { expected: 16, reported: 24 });
        assert!(rejected.log, "the first rejection is logged");
        assert!(
            m.handle_reading(t0 + Duration::from_secs(2), wrong.clone()).is_some_and(|r| !r.log),
            "then quiet"
        );
        let during = m.output(t0 + Duration::from_secs(2));
        assert!(during.limits.charge_voltage_v.unwrap() <= 16.0 * 3.45 + 1e-9, "{:?}", during.limits);
        assert_eq!(during.battery.voltage_v, Some(53.0), "the bad reading is never shown");
        assert_eq!(during.battery.alarms.internal_failure, Some(AlarmLevel::Alarm));
        // Only bad readings since t0: lost (CCL 0) exactly when the good one is 10 s old.
        let _ = m.handle_reading(t0 + Duration::from_millis(9_999), wrong.clone());
        assert_eq!(m.output(t0 + Duration::from_millis(9_999)).limits.charge_current_a, Some(50.0));
        let _ = m.handle_reading(t0 + Duration::from_secs(10), wrong);
        let lost = m.output(t0 + Duration::from_secs(10));
        assert!(!lost.connected);
        assert_eq!(lost.limits.charge_current_a, Some(0.0));
        assert!((lost.limits.charge_voltage_v.unwrap() - 16.0 * 3.375).abs() < 1e-9, "float of 16 cells");
        assert_eq!(m.handle_reading(t0 + Duration::from_secs(11), reading()), None);
        assert_eq!(m.output(t0 + Duration::from_secs(11)).battery.alarms.internal_failure, None);
    }

    #[test]
    fn without_a_configured_count_the_first_one_seen_is_in_force() {
        let t0 = Instant::now();
        let mut m = configured(t0, None);
        assert_eq!(m.handle_reading(t0, reading()), None);
        assert_eq!(m.cells_in_force(), Some(16));
        let empty = Battery { cell_voltages_v: Some(vec![]), ..reading() };
        let r = m.handle_reading(t0, empty).expect("an empty cell reply is rejected");
        assert_eq!(r.reason, Implausible::NoCells);
        let out = m.output(t0);
        assert!(out.limits.charge_voltage_v.is_some_and(|v| v > 50.0), "never CVL 0: {:?}", out.limits);
        // A fresh monitor restoring a state saved with 16 cells rejects 24 at once.
        let mut restarted = configured(t0, None);
        let state = ControlState { cells: Some(16), ..ControlState::default() };
        restarted.restore_control_state(&state, t0, Duration::ZERO);
        let more = Battery { cell_voltages_v: Some(vec![3.31; 24]), ..reading() };
        assert!(restarted.handle_reading(t0, more).is_some());
    }

    /// A CAN reading is stamped with its oldest essential frame; forwarding it later must not
    /// make it younger (a silent CAN BMS was lost ~2x late).
    #[test]
    fn the_grace_period_runs_from_when_the_bms_spoke() {
        let t0 = Instant::now();
        let mut m = configured(t0, None);
        let spoke = Battery { read_at: Some(t0), ..reading() };
        assert_eq!(m.handle_reading(t0 + Duration::from_secs(4), spoke), None);
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(m.output(t0 + Duration::from_millis(9_999)).connected);
        assert!(!m.output(t0 + Duration::from_secs(10)).connected);
        // An older reading arriving late never moves the deadline back.
        let _ = m.handle_reading(
            t0 + Duration::from_secs(11),
            Battery { read_at: Some(t0 + Duration::from_secs(8)), ..reading() },
        );
        let _ = m.handle_reading(
            t0 + Duration::from_secs(12),
            Battery { read_at: Some(t0 + Duration::from_secs(5)), ..reading() },
        );
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(18)));
    }

    #[test]
    fn not_reported_bms_limits_never_reach_the_published_limits() {
        let t0 = Instant::now();
        let options = BatteryConfig {
            use_bms_limits: Some(crate::control::bms_limits::BmsLimits::Only),
            ..Default::default()
        };
        let mut m = Monitor::new(
            t0,
            options,
            Duration::from_secs(10),
            ChargeController::new(ChargeConfig::default()),
        );
        let sentinel = Battery {
            charge_voltage_limit_v: Some(6553.5),
            charge_current_limit_a: Some(3276.7),
            discharge_current_limit_a: Some(3276.7),
            ..reading()
        };
        assert_eq!(m.handle_reading(t0, sentinel), None);
        let out = m.output(t0);
        assert!((out.limits.charge_voltage_v.unwrap() - 55.2).abs() < 1e-9, "{:?}", out.limits);
        assert_eq!(out.limits.charge_current_a, Some(50.0));
        assert_eq!(out.limits.discharge_current_a, Some(60.0));
    }

    #[test]
    fn a_lost_bms_with_bms_limits_never_gets_a_cvl_above_its_own() {
        let t0 = Instant::now();
        let options = BatteryConfig {
            use_bms_limits: Some(crate::control::bms_limits::BmsLimits::Cap),
            ..Default::default()
        };
        let mut m = Monitor::new(
            t0,
            options,
            Duration::from_secs(10),
            ChargeController::new(ChargeConfig::default()),
        );
        m.handle_reading(t0, Battery { charge_voltage_limit_v: Some(52.8), ..reading() });
        let lost = m.output(t0 + Duration::from_secs(11));
        assert!(!lost.connected);
        assert_eq!(lost.limits.charge_voltage_v, Some(52.8), "float 54.0 V capped by the BMS's 52.8 V");
        assert_eq!(lost.limits.charge_current_a, Some(0.0));
    }
}
