use super::*;

fn secs(base: Instant, s: f64) -> Instant {
    base + Duration::from_secs_f64(s)
}

#[test]
fn config_max_applies_without_data() {
    let cfg = ChargeConfig::default();
    let (ccl, why) = charge_target(&cfg, &CurrentInputs::default());
    assert_eq!((ccl, why), (50.0, vec![LimitReason::ConfigMax]));
    let (dcl, why) = discharge_target(&cfg, &CurrentInputs::default());
    assert_eq!((dcl, why), (60.0, vec![LimitReason::ConfigMax]));
}

#[test]
fn the_smallest_rule_wins() {
    let cfg = ChargeConfig::default();
    let inputs =
        CurrentInputs { max_cell_v: Some(3.39), bms_charge_limit_a: Some(40.0), ..Default::default() };
    let (ccl, why) = charge_target(&cfg, &inputs);
    assert!((ccl - 27.5).abs() < 1e-9);
    assert_eq!(why, vec![LimitReason::CellVoltage]);
    let inputs = CurrentInputs { bms_charge_limit_a: Some(40.0), ..Default::default() };
    assert_eq!(charge_target(&cfg, &inputs), (40.0, vec![LimitReason::BmsLimit]));
    let inputs = CurrentInputs { bms_discharge_limit_a: Some(20.0), ..Default::default() };
    assert_eq!(discharge_target(&cfg, &inputs), (20.0, vec![LimitReason::BmsLimit]));
}

#[test]
fn both_the_coldest_and_the_hottest_sensor_count() {
    let cfg = ChargeConfig::default();
    let cold = CurrentInputs { temperatures_c: Some((1.0, 25.0)), ..Default::default() };
    assert!((charge_target(&cfg, &cold).0 - 50.0 * 0.125).abs() < 1e-9);
    let hot = CurrentInputs { temperatures_c: Some((20.0, 50.0)), ..Default::default() };
    assert!((charge_target(&cfg, &hot).0 - 12.5).abs() < 1e-9);
    assert_eq!(charge_target(&cfg, &hot).1, vec![LimitReason::Temperature]);
    let frozen = CurrentInputs { temperatures_c: Some((-0.5, 20.0)), ..Default::default() };
    assert_eq!(charge_target(&cfg, &frozen).0, 0.0);
    assert!((discharge_target(&cfg, &frozen).0 - 60.0 * 0.2375).abs() < 1e-9);
}

#[test]
fn mosfet_soc_and_fet_rules() {
    let mut cfg = ChargeConfig::default();
    let hot_fet = CurrentInputs { mosfet_c: Some(80.0), ..Default::default() };
    assert_eq!(charge_target(&cfg, &hot_fet), (12.5, vec![LimitReason::MosfetTemperature]));
    assert_eq!(discharge_target(&cfg, &hot_fet), (15.0, vec![LimitReason::MosfetTemperature]));
    let full = CurrentInputs { soc_percent: Some(95.0), ..Default::default() };
    assert_eq!(charge_target(&cfg, &full).0, 50.0, "SoC table is off by default");
    cfg.charge_soc_limit = true;
    assert_eq!(charge_target(&cfg, &full), (10.0, vec![LimitReason::Soc]));
    let off = CurrentInputs { charge_fet: Some(false), discharge_fet: Some(false), ..Default::default() };
    assert_eq!(charge_target(&cfg, &off), (0.0, vec![LimitReason::FetOff]));
    assert_eq!(discharge_target(&cfg, &off), (0.0, vec![LimitReason::FetOff]));
}

#[test]
fn ties_list_every_rule() {
    let cfg = ChargeConfig::default();
    let inputs = CurrentInputs { max_cell_v: Some(3.6), charge_fet: Some(false), ..Default::default() };
    assert_eq!(charge_target(&cfg, &inputs), (0.0, vec![LimitReason::CellVoltage, LimitReason::FetOff]));
    let text = Limitation { reasons: vec![LimitReason::CellVoltage, LimitReason::FetOff], recovering: true };
    assert_eq!(text.to_string(), "Cell voltage, BMS FET off (recovering)");
}

#[test]
fn a_cut_applies_in_the_same_poll_even_when_small() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut lim = RampLimiter::default();
    assert_eq!(lim.apply(t0, 50.0, 50.0, &cfg), (50.0, false));
    assert_eq!(lim.apply(secs(t0, 1.0), 45.0, 50.0, &cfg), (45.0, false));
}

#[test]
fn recovery_holds_then_ramps_without_overshoot() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut lim = RampLimiter::default();
    lim.apply(t0, 10.0, 50.0, &cfg);
    for s in 1..30 {
        assert_eq!(lim.apply(secs(t0, f64::from(s)), 50.0, 50.0, &cfg), (10.0, true), "hold at {s}s");
    }
    assert_eq!(lim.apply(secs(t0, 30.0), 50.0, 50.0, &cfg).0, 10.0);
    assert_eq!(lim.apply(secs(t0, 31.0), 50.0, 50.0, &cfg).0, 15.0);
    assert_eq!(lim.apply(secs(t0, 32.0), 50.0, 50.0, &cfg).0, 20.0);
    let mut last = 0.0;
    for s in 33..60 {
        last = lim.apply(secs(t0, f64::from(s)), 50.0, 50.0, &cfg).0;
        assert!(last <= 50.0);
    }
    assert_eq!(last, 50.0);
}

#[test]
fn zero_stays_zero_below_the_threshold() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut lim = RampLimiter::default();
    lim.apply(t0, 0.0, 50.0, &cfg);
    for s in 1..200 {
        assert_eq!(lim.apply(secs(t0, f64::from(s)), 0.7, 50.0, &cfg).0, 0.0);
    }
    // Above 1.5 % of 50 A (0.75 A): the hold runs from the last time it was below, then ramps.
    assert_eq!(lim.apply(secs(t0, 200.0), 2.0, 50.0, &cfg).0, 0.0);
    assert_eq!(lim.apply(secs(t0, 228.0), 2.0, 50.0, &cfg).0, 0.0);
    assert_eq!(lim.apply(secs(t0, 230.0), 2.0, 50.0, &cfg).0, 2.0);
}

#[test]
fn ramp_rate_is_per_second_not_per_poll() {
    let cfg = ChargeConfig::default();
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut fast = RampLimiter::default();
    let mut slow = RampLimiter::default();
    fast.apply(t0, 0.0, 50.0, &cfg);
    slow.apply(t0, 0.0, 50.0, &cfg);
    let mut f = 0.0;
    let mut s = 0.0;
    for tenth in 1..=350 {
        f = fast.apply(secs(t0, f64::from(tenth) / 10.0), 50.0, 50.0, &cfg).0;
        if tenth % 50 == 0 {
            s = slow.apply(secs(t0, f64::from(tenth) / 10.0), 50.0, 50.0, &cfg).0;
        }
    }
    assert!((f - s).abs() < 1e-6, "{f} vs {s}");
}

#[test]
fn nothing_is_taken_out_below_min_cell_voltage() {
    let cfg = ChargeConfig::default();
    let low = CurrentInputs { min_cell_v: Some(2.899), ..Default::default() };
    assert_eq!(discharge_target(&cfg, &low), (0.0, vec![LimitReason::CellVoltage]));
    let at_min = CurrentInputs { min_cell_v: Some(2.9), ..Default::default() };
    assert!((discharge_target(&cfg, &at_min).0 - 0.3).abs() < 1e-9);
}
