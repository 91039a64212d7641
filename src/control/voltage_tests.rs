use super::*;

const N: f64 = 16.0;

fn at(base: Instant, s: f64) -> Instant {
    base + Duration::from_secs_f64(s)
}

fn input(pack_v: f64, max_cell: f64, min_cell: f64, soc: f64) -> VoltageInputs {
    VoltageInputs {
        pack_v: Some(pack_v),
        max_cell_v: Some(max_cell),
        min_cell_v: Some(min_cell),
        soc_percent: Some(soc),
    }
}

/// Full, balanced pack at max voltage: highest cell exactly at max (no controller action).
fn full() -> VoltageInputs {
    input(55.2, 3.450, 3.445, 99.0)
}

/// Runs `seconds` one-second polls with the same input; returns the last CVL and mode.
fn run(vc: &mut VoltageControl, t0: Instant, from: u32, to: u32, i: &VoltageInputs) -> (f64, ChargeMode) {
    let cfg = ChargeConfig::default();
    let mut last = (0.0, ChargeMode::default());
    for s in from..to {
        let (v, m, _) = vc.update(at(t0, f64::from(s)), &cfg, N, i);
        last = (v, m);
    }
    last
}

#[test]
fn absorption_starts_at_max_voltage_balanced_or_not() {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    run(&mut vc, t0, 0, 10, &input(54.0, 3.40, 3.36, 90.0));
    assert_eq!(vc.phase(), Phase::Bulk);
    // Spread 20 mV: absorption all the same, it is where the cells get balanced.
    run(&mut vc, t0, 10, 11, &input(55.2, 3.450, 3.43, 99.0));
    assert_eq!(vc.phase(), Phase::Absorption);
    // Highest cell at max while the controller holds the pack lower: absorption too.
    let mut vc = VoltageControl::default();
    run(&mut vc, t0, 0, 1, &input(54.0, 3.449, 3.37, 95.0));
    assert_eq!(vc.phase(), Phase::Absorption);
}

/// `spread_mv(s)` gives the spread at second `s`; returns the second absorption ended and the mode then.
fn absorption_end(cfg: &ChargeConfig, spread_mv: impl Fn(u32) -> f64) -> (u32, ChargeMode) {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    for s in 0..20_000 {
        let i = input(55.2, 3.450, 3.450 - spread_mv(s) / 1000.0, 99.0);
        let (_, mode, events) = vc.update(at(t0, f64::from(s)), cfg, N, &i);
        if s < 900 {
            assert_eq!(mode.balance, TopBalance::None);
        }
        if events.full_charge {
            return (s, mode);
        }
    }
    panic!("absorption never ended");
}

#[test]
fn balanced_cells_float_after_the_absorption_time() {
    let (at_s, mode) = absorption_end(&ChargeConfig::default(), |_| 5.0);
    assert_eq!(at_s, 900);
    assert_eq!((mode.phase, mode.balance), (Phase::FloatTransition, TopBalance::None));
    // 12 mV is within the 3 mV hysteresis: no top balancing either.
    assert_eq!(absorption_end(&ChargeConfig::default(), |_| 12.0).0, 900);
}

#[test]
fn top_balancing_runs_while_the_spread_shrinks_and_ends_when_balanced() {
    // 30 mV at the end of the absorption time, 1 mV less every 5 minutes after it.
    let spread = |s: u32| if s < 900 { 30.0 } else { 30.0 - f64::from((s - 900) / 300) };
    let (at_s, mode) = absorption_end(&ChargeConfig::default(), spread);
    // 10 mV after 20 steps of 300 s.
    assert_eq!(at_s, 900 + 20 * 300);
    assert_eq!(mode.balance, TopBalance::None, "ended balanced");
    assert_eq!(mode.to_string(), "Float transition");
}

#[test]
fn top_balancing_stops_at_its_time_limit_or_without_progress() {
    let cfg = ChargeConfig { balance_max_time_s: 3600.0, ..ChargeConfig::default() };
    let spread = |s: u32| if s < 900 { 60.0 } else { 60.0 - f64::from((s - 900) / 300) };
    let (at_s, mode) = absorption_end(&cfg, spread);
    assert_eq!(at_s, 900 + 3600);
    assert_eq!(mode.balance, TopBalance::Stopped(BalanceEnd::TimeLimit));
    assert_eq!(mode.to_string(), "Float transition (top balancing stopped: time limit)");
    // Stuck at 30 mV: no new low for 30 minutes.
    let (at_s, mode) = absorption_end(&ChargeConfig::default(), |_| 30.0);
    assert_eq!(at_s, 900 + 1800);
    assert_eq!(mode.balance, TopBalance::Stopped(BalanceEnd::NoProgress));
    // Off when the maximum is 0.
    let off = ChargeConfig { balance_max_time_s: 0.0, ..ChargeConfig::default() };
    assert_eq!(absorption_end(&off, |_| 30.0).0, 900);
}

#[test]
fn after_top_balancing_gave_up_a_large_spread_does_not_rebulk() {
    let cfg = ChargeConfig { balance_max_time_s: 600.0, ..ChargeConfig::default() };
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    let wide = input(54.5, 3.450, 3.360, 95.0);
    let mut s = 0;
    while vc.phase() != Phase::Float {
        vc.update(at(t0, f64::from(s)), &cfg, N, &wide);
        s += 1;
        assert!(s < 10_000);
    }
    for s in s..s + 600 {
        vc.update(at(t0, f64::from(s)), &cfg, N, &wide);
    }
    assert_eq!(vc.phase(), Phase::Float);
}

#[test]
fn absorption_is_left_only_below_the_per_cell_margin() {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    run(&mut vc, t0, 0, 10, &full());
    // 16 x 0.030 = 0.48 V below 55.2 V.
    run(&mut vc, t0, 10, 20, &input(54.73, 3.415, 3.410, 98.0));
    assert_eq!(vc.phase(), Phase::Absorption);
    // Lower, but the highest cell is at max (the controller holds the pack down): stays.
    run(&mut vc, t0, 20, 30, &input(54.5, 3.450, 3.380, 98.0));
    assert_eq!(vc.phase(), Phase::Absorption);
    run(&mut vc, t0, 30, 31, &input(54.71, 3.415, 3.410, 98.0));
    assert_eq!(vc.phase(), Phase::Bulk);
}

fn float_ramp_seconds(cells: f64) -> u32 {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    let pack = cells * 3.45;
    let i = input(pack, 3.450, 3.445, 99.0);
    let mut s = 0;
    let mut entered = None;
    loop {
        let (cvl, mode, _) = vc.update(at(t0, f64::from(s)), &cfg, cells, &i);
        assert!(cvl <= pack + 1e-9 && cvl >= cells * 3.375 - 1e-9);
        if mode.phase == Phase::FloatTransition && entered.is_none() {
            entered = Some(s);
        }
        if mode.phase == Phase::Float {
            assert!((cvl - cells * 3.375).abs() < 1e-9);
            return s - entered.unwrap_or(s);
        }
        s += 1;
        assert!(s < 10_000);
    }
}

#[test]
fn float_ramp_is_per_cell_so_4s_and_16s_take_the_same_time() {
    let four = float_ramp_seconds(4.0);
    let sixteen = float_ramp_seconds(16.0);
    // (3.450 - 3.375) / 0.0001 = 750 s.
    assert!((749..=751).contains(&four), "{four}");
    assert_eq!(four, sixteen);
}

fn in_float() -> (VoltageControl, Instant) {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    run(&mut vc, t0, 0, 2000, &full());
    assert_eq!(vc.phase(), Phase::Float);
    (vc, t0)
}

#[test]
fn rebulk_on_low_soc_or_large_spread() {
    let (mut vc, t0) = in_float();
    run(&mut vc, t0, 2000, 2010, &input(54.0, 3.38, 3.37, 80.0));
    assert_eq!(vc.phase(), Phase::Float);
    run(&mut vc, t0, 2010, 2011, &input(54.0, 3.38, 3.37, 79.9));
    assert_eq!(vc.phase(), Phase::Bulk);
    let (mut vc, t0) = in_float();
    run(&mut vc, t0, 2000, 2001, &input(54.0, 3.40, 3.32, 95.0));
    assert_eq!(vc.phase(), Phase::Bulk);
}

#[test]
fn rebulk_after_full_charge_every_days() {
    let cfg = ChargeConfig { full_charge_every_days: Some(1.0), ..ChargeConfig::default() };
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    let mut s = 0.0;
    while vc.phase() != Phase::Float {
        vc.update(at(t0, s), &cfg, N, &full());
        s += 1.0;
    }
    let full_at = s - 751.0;
    let floating = input(54.0, 3.376, 3.374, 100.0);
    vc.update(at(t0, full_at + 86_399.0), &cfg, N, &floating);
    assert_eq!(vc.phase(), Phase::Float);
    let (cvl, _, events) = vc.update(at(t0, full_at + 86_400.0), &cfg, N, &floating);
    assert_eq!(vc.phase(), Phase::Bulk);
    assert!(events.phase_changed);
    assert!((cvl - 55.2).abs() < 1e-9);
}

#[test]
fn ovp_cuts_at_once_holds_then_recovers_to_the_controller_target_only() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    vc.update(t0, &cfg, N, &input(54.5, 3.40, 3.38, 90.0));
    // One cell 20 mV over: CVL falls in the same poll, to the pack voltage less cells x error.
    let (cvl, mode, _) = vc.update(at(t0, 1.0), &cfg, N, &input(54.9, 3.47, 3.42, 95.0));
    assert!((cvl - (54.9 - 16.0 * 0.02)).abs() < 1e-9, "{cvl}");
    assert_eq!(mode.shaping, CvlShaping::CellOvp);
    let mut low = cvl;
    for s in 2..30 {
        low = vc.update(at(t0, f64::from(s)), &cfg, N, &input(54.9, 3.47, 3.42, 95.0)).0;
    }
    // Anti-windup: never more than 0.02 V per cell under the pack voltage.
    assert!((low - (54.9 - 16.0 * 0.02)).abs() < 1e-9, "{low}");
    // The cell sits at max (inside the deadband): controller output stays, CVL holds 60 s.
    for s in 30..200 {
        let (v, m, _) = vc.update(at(t0, f64::from(s)), &cfg, N, &input(54.9, 3.45, 3.42, 95.0));
        assert!((v - low).abs() < 1e-9, "no recovery past the controller target at {s}s");
        assert_ne!(m.shaping, CvlShaping::Phase);
    }
    // The cell drops: controller rises, published CVL waits for the hold then ramps 1 mV/s.
    let cell_low = input(54.9, 3.44, 3.39, 95.0);
    let (v, m, _) = vc.update(at(t0, 200.0), &cfg, N, &cell_low);
    assert_eq!(m.shaping, CvlShaping::CellOvpRecovery, "hold ran from the last cut at 29 s");
    assert!((v - (low + 0.001)).abs() < 1e-9);
    let (v, _, _) = vc.update(at(t0, 210.0), &cfg, N, &cell_low);
    assert!((v - (low + 0.011)).abs() < 1e-9, "{v}");
    // Never above the pack voltage plus the deadband per cell while the pack stays at 54.9 V ...
    let mut v = 0.0;
    for s in 211..2000 {
        v = vc.update(at(t0, f64::from(s)), &cfg, N, &cell_low).0;
    }
    assert!((v - (54.9 + 16.0 * 0.002)).abs() < 1e-9, "{v}");
    // ... and released once the pack follows CVL up to max voltage.
    let mut last = (0.0, ChargeMode::default());
    for s in 2000..2400 {
        let (v, m, _) = vc.update(at(t0, f64::from(s)), &cfg, N, &input(55.19, 3.44, 3.42, 99.0));
        last = (v, m);
    }
    assert_eq!((last.0, last.1.shaping, last.1.phase), (55.2, CvlShaping::Phase, Phase::Absorption));
}

#[test]
fn controller_gain_is_per_second_not_per_poll() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let over = input(55.0, 3.47, 3.44, 95.0);
    let mut fast = VoltageControl::default();
    let mut slow = VoltageControl::default();
    let (mut f, mut s) = (0.0, 0.0);
    for tenth in 0..=100 {
        f = fast.update(at(t0, f64::from(tenth) / 10.0), &cfg, N, &over).0;
        if tenth % 50 == 0 {
            s = slow.update(at(t0, f64::from(tenth) / 10.0), &cfg, N, &over).0;
        }
    }
    assert!((f - s).abs() < 1e-9, "{f} vs {s}");
}

#[test]
fn cvl_stays_within_min_and_max() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    for s in 0..5000 {
        let (v, _, _) = vc.update(at(t0, f64::from(s)), &cfg, N, &input(47.0, 3.60, 2.95, 50.0));
        assert!((46.4 - 1e-9..=55.2 + 1e-9).contains(&v), "{v} at {s}");
    }
}

#[test]
fn state_round_trip_resumes_absorption() {
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut vc = VoltageControl::default();
    run(&mut vc, t0, 0, 400, &full());
    let saved = vc.state(at(t0, 400.0));
    assert_eq!(saved.phase, Phase::Absorption);
    assert_eq!(saved.absorption_elapsed_s, Some(400.0));
    let t1 = at(t0, 5000.0);
    let mut again = VoltageControl::default();
    again.restore(&saved, t1, Duration::from_secs(600));
    assert_eq!(again.absorption_elapsed(t1), Some(Duration::from_secs(400)));
    let cfg = ChargeConfig::default();
    again.update(at(t1, 499.0), &cfg, N, &full());
    assert_eq!(again.phase(), Phase::Absorption);
    again.update(at(t1, 500.0), &cfg, N, &full());
    assert_eq!(again.phase(), Phase::FloatTransition);
}
