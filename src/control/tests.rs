//! Controller-level tests: the rules working together, with a fake clock.

use super::*;

fn at(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

fn pack(cell_v: f64) -> Battery {
    Battery {
        voltage_v: Some(cell_v * 16.0),
        current_a: Some(10.0),
        soc_percent: Some(60.0),
        cell_voltages_v: Some(vec![cell_v; 16]),
        temperatures_c: Some(vec![20.0, 22.0]),
        full_capacity_ah: Some(100.0),
        ..Battery::default()
    }
}

#[test]
fn limits_are_numbers_once_cells_are_known() {
    let mut c = ChargeController::new(ChargeConfig::default());
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let none = c.update(t0, &Battery::default(), Link::Online);
    assert_eq!(none.charge_voltage_v, None);
    assert_eq!(none.charge_current_a, Some(50.0));
    let l = c.update(at(t0, 1.0), &pack(3.3), Link::Online);
    assert_eq!(l.charge_voltage_v, Some(55.2));
    assert!((l.low_voltage_v.unwrap_or(0.0) - 46.4).abs() < 1e-9);
    assert_eq!(l.charge_mode, "Bulk");
    assert_eq!(l.charge_limitation, "Config max");
    let lost = c.update(at(t0, 2.0), &Battery::default(), Link::Lost { since: at(t0, 1.0) });
    assert!(lost.charge_voltage_v.is_some() && lost.discharge_current_a.is_some());
}

#[test]
fn fet_off_gives_zero_in_the_same_poll() {
    let mut c = ChargeController::new(ChargeConfig::default());
    let t0 = crate::sim::closed_loop::fake_clock_start();
    c.update(t0, &pack(3.3), Link::Online);
    let off = Battery { charge_fet: Some(false), ..pack(3.3) };
    let l = c.update(at(t0, 1.0), &off, Link::Online);
    assert_eq!(l.charge_current_a, Some(0.0));
    assert_eq!(l.charge_reason.reasons, vec![LimitReason::FetOff]);
}

#[test]
fn bms_lost_zeroes_ccl_floats_cvl_and_keeps_dcl_for_the_timeout() {
    let mut c = ChargeController::new(ChargeConfig::default());
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let reading = Battery { current_a: Some(-20.0), ..pack(3.28) };
    let dcl_before = c.update(t0, &reading, Link::Online).discharge_current_a;
    let lost = Link::Lost { since: t0 };
    let l = c.update(at(t0, 10.0), &Battery::default(), lost);
    assert_eq!(l.charge_current_a, Some(0.0));
    assert_eq!(l.charge_voltage_v, Some(16.0 * 3.375));
    assert_eq!(l.discharge_current_a, dcl_before);
    assert!(l.charge_mode.starts_with("BMS lost"));
    assert_eq!(l.soc_percent, None);
    let l = c.update(at(t0, 1799.0), &Battery::default(), lost);
    assert_eq!(l.discharge_current_a, dcl_before);
    let l = c.update(at(t0, 1800.0), &Battery::default(), lost);
    assert_eq!(l.discharge_current_a, Some(0.0));
    assert_eq!(l.discharge_reason.reasons, vec![LimitReason::BmsLost]);
    // Back online: CCL recovers only after the hold, then ramps.
    let l = c.update(at(t0, 1801.0), &pack(3.3), Link::Online);
    assert_eq!(l.charge_current_a, Some(0.0));
    // The hold runs from the last lost poll (1800 s).
    let l = c.update(at(t0, 1830.0), &pack(3.3), Link::Online);
    assert_eq!(l.charge_current_a, Some(0.0));
    let l = c.update(at(t0, 1831.0), &pack(3.3), Link::Online);
    assert_eq!(l.charge_current_a, Some(5.0));
}

#[test]
fn bms_lost_with_a_low_cell_stops_discharge_after_60_s() {
    let mut c = ChargeController::new(ChargeConfig::default());
    let t0 = crate::sim::closed_loop::fake_clock_start();
    c.update(t0, &pack(3.1), Link::Online);
    let lost = Link::Lost { since: t0 };
    assert_ne!(c.update(at(t0, 59.0), &Battery::default(), lost).discharge_current_a, Some(0.0));
    assert_eq!(c.update(at(t0, 60.0), &Battery::default(), lost).discharge_current_a, Some(0.0));
    let mut never = ChargeController::new(ChargeConfig::default());
    let l = never.update(at(t0, 60.0), &Battery::default(), lost);
    assert_eq!(l.discharge_current_a, Some(0.0));
    assert_eq!(l.charge_voltage_v, None, "no cell count ever seen");
}

#[test]
fn state_is_offered_for_saving_at_phase_changes_not_every_poll() {
    let mut c = ChargeController::new(ChargeConfig::default());
    let t0 = crate::sim::closed_loop::fake_clock_start();
    c.update(t0, &pack(3.3), Link::Online);
    assert!(c.take_state_to_save().is_some(), "first state is saved");
    for s in 1..100 {
        c.update(at(t0, f64::from(s)), &pack(3.3), Link::Online);
        assert!(c.take_state_to_save().is_none());
    }
    let full = Battery {
        voltage_v: Some(55.2),
        cell_voltages_v: Some(vec![3.45; 16]),
        current_a: Some(1.0),
        ..pack(3.45)
    };
    c.update(at(t0, 100.0), &full, Link::Online);
    let saved = c.take_state_to_save();
    assert_eq!(saved.map(|s| s.voltage.phase), Some(Phase::Absorption));
    assert!(c.take_state_to_save().is_none());
    c.update(at(t0, 1000.0), &pack(3.3), Link::Online);
    assert!(c.take_state_to_save().is_some(), "900 s interval");
}

#[test]
fn restart_keeps_phase_timer_soc_and_history() {
    let cfg = ChargeConfig { soc_source: SocSource::Calculated, ..ChargeConfig::default() };
    let mut c = ChargeController::new(cfg.clone());
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let full = Battery {
        voltage_v: Some(55.2),
        cell_voltages_v: Some(vec![3.45; 16]),
        current_a: Some(1.0),
        ..pack(3.45)
    };
    for s in 0..300 {
        c.update(at(t0, f64::from(s)), &full, Link::Online);
    }
    let state = c.state();
    let text = serde_json::to_string(&state).unwrap_or_default();
    let loaded: ControlState = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(loaded, state);
    let t1 = at(t0, 10_000.0);
    let mut again = ChargeController::new(cfg);
    again.restore(&loaded, t1, Duration::from_secs(60));
    assert_eq!(again.phase(), Phase::Absorption);
    assert_eq!(again.absorption_elapsed(), Some(Duration::from_secs(299)));
    let l = again.update(t1, &full, Link::Online);
    assert_eq!(l.soc_percent, state.soc_percent);
    assert_eq!(again.history(), &state.history);
}

#[test]
fn calculated_soc_publishes_the_bms_value_alongside() {
    let cfg = ChargeConfig { soc_source: SocSource::Calculated, ..ChargeConfig::default() };
    let mut c = ChargeController::new(cfg);
    let t0 = crate::sim::closed_loop::fake_clock_start();
    c.update(t0, &pack(3.3), Link::Online);
    let l = c.update(at(t0, 36.0), &pack(3.3), Link::Online);
    // 10 A for 36 s into 100 Ah = +0.1 %.
    assert!((l.soc_percent.unwrap_or(0.0) - 60.1).abs() < 1e-9);
    assert_eq!(l.soc_bms_percent, Some(60.0));
}

#[test]
fn notable_changes_are_reason_changes_not_ramp_steps() {
    let a = ChargeLimits { charge_current_a: Some(10.0), ..ChargeLimits::default() };
    let b = ChargeLimits { charge_current_a: Some(15.0), ..ChargeLimits::default() };
    assert!(!b.notable_change_from(&a));
    let c = ChargeLimits { charge_current_a: Some(0.0), ..ChargeLimits::default() };
    assert!(c.notable_change_from(&a));
}

fn one_cell_high(high: f64) -> Battery {
    let mut cells = vec![3.37; 16];
    cells[4] = high;
    Battery { voltage_v: Some(cells.iter().sum()), cell_voltages_v: Some(cells), ..pack(3.37) }
}

/// Absorption with one cell over max: the controller has cut CVL and the taper CCL. A restart
/// (state through JSON, a new `Instant` base) starts neither above what it was before.
#[test]
fn a_restart_mid_absorption_never_raises_cvl_or_ccl() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut c = ChargeController::new(cfg.clone());
    let mut before = ChargeLimits::default();
    for s in 0..120 {
        before = c.update(at(t0, f64::from(s)), &one_cell_high(3.47), Link::Online);
    }
    assert_eq!(before.mode.phase, Phase::Absorption);
    let (cvl, ccl) =
        (before.charge_voltage_v.unwrap_or(f64::NAN), before.charge_current_a.unwrap_or(f64::NAN));
    assert!(cvl < 55.2 - 0.3 && ccl < 50.0, "cut before the restart: {cvl} V, {ccl} A");
    let text = serde_json::to_string(&c.state()).unwrap_or_default();
    let saved: ControlState = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(saved.version, STATE_VERSION);
    // A new process: another Instant base, an hour later.
    let t1 = at(t0, 3600.0);
    let mut again = ChargeController::new(cfg.clone());
    again.restore(&saved, t1, Duration::from_secs(60));
    // The cell has relaxed a little: the controller would like to raise CVL, the rules CCL.
    for s in 0..cfg.cvl_recovery_hold_s.min(cfg.current_recovery_hold_s) as u32 {
        let l = again.update(at(t1, f64::from(s)), &one_cell_high(3.449), Link::Online);
        assert!(
            l.charge_voltage_v.is_some_and(|v| v <= cvl + 1e-9),
            "{s} s: {:?} > {cvl}",
            l.charge_voltage_v
        );
        assert!(
            l.charge_current_a.is_some_and(|a| a <= ccl + 1e-9),
            "{s} s: {:?} > {ccl}",
            l.charge_current_a
        );
        assert_eq!(l.mode.phase, Phase::Absorption);
    }
    // Without the saved state the same reading gives a higher CVL and CCL: the test can fail.
    let mut fresh = ChargeController::new(cfg);
    let l = fresh.update(t1, &one_cell_high(3.449), Link::Online);
    assert!(l.charge_voltage_v.is_some_and(|v| v > cvl + 0.3));
    assert!(l.charge_current_a.is_some_and(|a| a > ccl + 1.0), "{:?} vs {ccl}", l.charge_current_a);
}

#[test]
fn version_1_state_files_still_load() {
    let v1 = r#"{"version":1,"voltage":{"phase":"Absorption","absorption_elapsed_s":300.0,
        "float_ramp":null,"since_full_charge_s":null},"soc_percent":null,"cells":16}"#;
    let state: ControlState = serde_json::from_str(v1).unwrap_or_default();
    assert_eq!(state.voltage.phase, Phase::Absorption);
    assert_eq!(state.voltage.ovp, None);
    assert_eq!(state.ccl.value_a, None);
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut c = ChargeController::new(ChargeConfig::default());
    c.restore(&state, t0, Duration::ZERO);
    assert_eq!(c.absorption_elapsed(), Some(Duration::from_secs(300)));
}

#[test]
fn huge_or_broken_config_values_never_panic() {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let configs = [
        ChargeConfig { cvl_recovery_hold_s: 1e20, current_recovery_hold_s: 1e19, ..ChargeConfig::default() },
        ChargeConfig {
            cvl_recovery_hold_s: f64::NAN,
            current_recovery_hold_s: f64::INFINITY,
            ..ChargeConfig::default()
        },
        ChargeConfig { min_cell_voltage: 3.6, max_cell_voltage: 3.0, ..ChargeConfig::default() },
        ChargeConfig {
            max_cell_voltage: f64::NAN,
            cvl_controller_gain_per_s: 1e300,
            ..ChargeConfig::default()
        },
        ChargeConfig { absorption_time_s: 0.0, balance_max_time_s: f64::INFINITY, ..ChargeConfig::default() },
    ];
    for cfg in configs {
        let mut c = ChargeController::new(cfg);
        for s in 0..200 {
            let high = 3.40 + f64::from(s % 40) * 0.003;
            let l = c.update(at(t0, f64::from(s) * 7.0), &one_cell_high(high), Link::Online);
            let state = c.state();
            c.restore(&state, at(t0, f64::from(s) * 7.0), Duration::from_secs(u64::MAX / 4));
            assert!(l.charge_current_a.is_some_and(f64::is_finite));
        }
    }
}

#[test]
fn limit_log_ignores_a_reason_that_reverts_within_the_hold() {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let hold = Duration::from_secs(30);
    let mut log = LimitLog::default();
    let limits = |recovering: bool, ccl: f64| ChargeLimits {
        charge_current_a: Some(ccl),
        charge_reason: Limitation { reasons: vec![LimitReason::CellVoltage], recovering },
        ..ChargeLimits::default()
    };
    assert!(log.observe(t0, &limits(false, 10.0), hold), "the first limits are logged");
    // Flapping every second for ten minutes: nothing.
    for s in 1..600 {
        assert!(!log.observe(at(t0, f64::from(s)), &limits(s % 2 == 0, 10.0), hold), "{s}");
    }
    // A change that lasts: logged once, when it has lasted the hold.
    let lines: usize =
        (600..700).filter(|s| log.observe(at(t0, f64::from(*s)), &limits(true, 10.0), hold)).count();
    assert_eq!(lines, 1);
    // To 0: at once.
    assert!(log.observe(at(t0, 700.0), &limits(true, 0.0), hold));
}

/// While the controller cuts deeper, the state is offered for saving at most once a minute, and
/// the saved CVL is never more than 10 mV per cell above the one published.
#[test]
fn deeper_cuts_are_saved_at_most_once_a_minute() {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut c = ChargeController::new(ChargeConfig::default());
    let mut saves = Vec::new();
    let mut saved_cvl = f64::NAN;
    for s in 0..600u32 {
        // The pack voltage falls as CVL is cut, the high cell stays over max.
        let mut battery = one_cell_high(3.47);
        battery.voltage_v = Some(54.0 - f64::from(s) * 0.002);
        let l = c.update(at(t0, f64::from(s)), &battery, Link::Online);
        if let Some(state) = c.take_state_to_save() {
            saves.push(s);
            saved_cvl = state.voltage.last_cvl_v.unwrap_or(f64::NAN);
        }
        let cvl = l.charge_voltage_v.unwrap_or(f64::NAN);
        if s >= 60 {
            assert!(
                saved_cvl <= cvl + 16.0 * 0.01 + 16.0 * 0.002 * 60.0,
                "{s} s: saved {saved_cvl}, now {cvl}"
            );
        }
    }
    assert!(saves.len() >= 5, "{saves:?}");
    assert!(saves.windows(2).skip(1).all(|w| w[1] - w[0] >= 60), "{saves:?}");
}

#[test]
fn a_zero_save_interval_still_saves_at_most_once_a_minute() {
    let cfg = ChargeConfig { state_save_interval_s: 0.0, ..ChargeConfig::default() };
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut c = ChargeController::new(cfg);
    let saves = (0..600u32)
        .filter(|s| {
            c.update(at(t0, f64::from(*s)), &pack(3.3), Link::Online);
            c.take_state_to_save().is_some()
        })
        .count();
    assert_eq!(saves, 10, "at 0, 60, ..., 540 s");
}

/// A small deterministic generator (xorshift64*), so the randomized test below is repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// Random valid configs (every chemistry, voltages anywhere in its range, random gains, holds
/// and maxima) against random readings (cells jumping around, gaps, BMS lost, restarts):
/// CVL within [min, max] x cells, CCL and DCL within [0, max], CCL 0 in the poll a cell reaches
/// max + 0.05 V, DCL 0 below min, every limit a finite number, a restart never raises CVL or CCL.
#[test]
fn invariants_hold_for_random_configs_and_readings() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t0 = crate::sim::closed_loop::fake_clock_start();
    for case in 0..400 {
        let chem = [Chemistry::Lfp, Chemistry::Lto, Chemistry::Nmc][case % 3];
        let (lo, hi) = chem.cell_voltage_range();
        let min = rng.range(lo, lo + 0.3 * (hi - lo));
        let max = rng.range(min + 0.1, hi);
        let cfg = ChargeConfig {
            min_cell_voltage: min,
            max_cell_voltage: max,
            float_cell_voltage: rng.range(min, max),
            absorption_time_s: rng.range(0.0, 1200.0),
            balance_max_time_s: rng.range(0.0, 3000.0),
            cvl_controller_gain_per_s: rng.range(0.001, 1.0),
            cvl_controller_deadband_v: rng.range(0.0, 0.05),
            cvl_recovery_hold_s: rng.range(0.0, 300.0),
            cvl_recovery_v_per_s: rng.range(0.0, 0.1),
            max_charge_current: rng.range(1.0, 500.0),
            max_discharge_current: rng.range(1.0, 500.0),
            current_recovery_hold_s: rng.range(0.0, 120.0),
            current_recovery_a_per_s: rng.range(0.0, 50.0),
            ..ChargeConfig::for_chemistry(chem)
        };
        let cells = 4 + (case % 21);
        let n = cells as f64;
        let mut c = ChargeController::new(cfg.clone());
        let mut s = 0.0;
        let mut last: Option<ChargeLimits> = None;
        for step in 0..300 {
            s += rng.range(0.5, 20.0);
            let now = at(t0, s);
            let lost = rng.next() < 0.03;
            let volts: Vec<f64> = (0..cells).map(|_| rng.range(min - 0.2, max + 0.1)).collect();
            let battery = Battery {
                voltage_v: Some(volts.iter().sum()),
                current_a: Some(rng.range(-100.0, 100.0)),
                soc_percent: Some(rng.range(0.0, 100.0)),
                cell_voltages_v: Some(volts.clone()),
                temperatures_c: Some(vec![rng.range(-10.0, 60.0)]),
                ..Battery::default()
            };
            if step % 97 == 96 {
                // A restart through JSON: nothing published right after it is above before.
                let state: ControlState =
                    serde_json::from_str(&serde_json::to_string(&c.state()).unwrap_or_default())
                        .unwrap_or_default();
                c = ChargeController::new(cfg.clone());
                c.restore(&state, now, Duration::from_secs(30));
                let quiet = Battery { cell_voltages_v: Some(vec![min + 0.1; cells]), ..battery.clone() };
                let l = c.update(now, &quiet, Link::Online);
                if let Some(before) = &last {
                    let (cv, cb) =
                        (l.charge_voltage_v.unwrap_or(0.0), before.charge_voltage_v.unwrap_or(0.0));
                    let (iv, ib) =
                        (l.charge_current_a.unwrap_or(0.0), before.charge_current_a.unwrap_or(0.0));
                    if before.mode.shaping != CvlShaping::BmsLost {
                        assert!(cv <= cb + 1e-9, "case {case}: CVL {cv} after a restart, {cb} before");
                    }
                    assert!(iv <= ib + 1e-9, "case {case}: CCL {iv} after a restart, {ib} before");
                }
                continue;
            }
            let link = if lost { Link::Lost { since: at(t0, (s - 5.0).max(0.0)) } } else { Link::Online };
            let l = c.update(now, &battery, link);
            let cvl = l.charge_voltage_v.unwrap_or(f64::NAN);
            let ccl = l.charge_current_a.unwrap_or(f64::NAN);
            let dcl = l.discharge_current_a.unwrap_or(f64::NAN);
            assert!(cvl.is_finite() && ccl.is_finite() && dcl.is_finite(), "case {case}: {l:?}");
            assert!(cvl >= n * min - 1e-9 && cvl <= n * max + 1e-9, "case {case}: CVL {cvl}");
            assert!((0.0..=cfg.max_charge_current + 1e-9).contains(&ccl), "case {case}: CCL {ccl}");
            assert!((0.0..=cfg.max_discharge_current + 1e-9).contains(&dcl), "case {case}: DCL {dcl}");
            let highest = volts.iter().copied().fold(f64::MIN, f64::max);
            let lowest = volts.iter().copied().fold(f64::MAX, f64::min);
            if !lost && highest >= max + 0.05 {
                assert_eq!(ccl, 0.0, "case {case}: a cell at {highest} V, max {max}");
            }
            if !lost && lowest < min {
                assert_eq!(dcl, 0.0, "case {case}: a cell at {lowest} V, min {min}");
            }
            last = Some(l);
        }
    }
}
