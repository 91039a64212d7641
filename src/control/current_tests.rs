use super::*;
use crate::control::Chemistry;

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

/// The incumbent's charge table, given explicitly: applied as written (as before the derived one).
fn explicit_tables() -> ChargeConfig {
    ChargeConfig {
        charge_cell_voltage_table: vec![
            [3.375, 1.0],
            [3.400, 0.25],
            [3.425, 0.05],
            [3.450, 0.005],
            [3.500, 0.0],
        ],
        ..ChargeConfig::default()
    }
}

#[test]
fn the_smallest_rule_wins() {
    let cfg = explicit_tables();
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

fn ccl_at(cfg: &ChargeConfig, max_cell: f64, min_cell: f64) -> f64 {
    let inputs =
        CurrentInputs { max_cell_v: Some(max_cell), min_cell_v: Some(min_cell), ..Default::default() };
    charge_target(cfg, &inputs).0
}

#[test]
fn derived_taper_spares_a_balanced_pack_and_stops_a_leading_cell() {
    let cfg = ChargeConfig::default();
    // Balanced (spread 5 mV): full current right up to max, where the charger's CV stage tapers.
    assert_eq!(ccl_at(&cfg, 3.449, 3.444), 50.0);
    // One cell 30 mV ahead: the whole taper, 5 % at max, linear from max - 0.05 V.
    assert!((ccl_at(&cfg, 3.450, 3.420) - 2.5).abs() < 1e-9);
    assert!((ccl_at(&cfg, 3.425, 3.395) - 50.0 * 0.525).abs() < 1e-9);
    assert_eq!(ccl_at(&cfg, 3.400, 3.370), 50.0);
    // Half the weight at 18 mV (taper from 13 mV, all of it from 23 mV).
    assert!((ccl_at(&cfg, 3.450, 3.432) - 50.0 * (1.0 - 0.5 * 0.95)).abs() < 1e-6);
    // At max + 0.05 V nothing, balanced or not.
    assert_eq!(ccl_at(&cfg, 3.500, 3.499), 0.0);
    assert_eq!(ccl_at(&cfg, 3.500, 3.300), 0.0);
    // The explicit table applies to a balanced pack too, as it always did.
    assert!((ccl_at(&explicit_tables(), 3.449, 3.444) - 50.0 * 0.0068).abs() < 1e-6);
}

#[test]
fn derived_tables_shift_with_the_configured_voltages() {
    let cfg = ChargeConfig { max_cell_voltage: 3.55, min_cell_voltage: 2.8, ..ChargeConfig::default() };
    assert_eq!(ccl_at(&cfg, 3.50, 3.40), 50.0);
    assert_eq!(ccl_at(&cfg, 3.60, 3.40), 0.0, "0 at max + 0.05 V");
    assert!(ccl_at(&cfg, 3.599, 3.40) > 0.0);
    let dcl_at =
        |v: f64| discharge_target(&cfg, &CurrentInputs { min_cell_v: Some(v), ..Default::default() }).0;
    assert_eq!(dcl_at(2.70), 0.0, "0 at min - 0.1 V");
    assert!((dcl_at(2.80) - 60.0 * 0.005).abs() < 1e-9);
    assert_eq!(dcl_at(3.09), 60.0);
    // Every chemistry's derived tables reach 0 at max + 0.05 V / min - 0.1 V.
    for chem in [Chemistry::Lfp, Chemistry::Lto, Chemistry::Nmc] {
        let cfg = ChargeConfig::for_chemistry(chem);
        let (lo, hi) = cfg.chemistry_ranges();
        assert!(lo <= cfg.min_cell_voltage && cfg.max_cell_voltage <= hi, "{chem:?}");
        assert_eq!(ccl_at(&cfg, cfg.max_cell_voltage + 0.05, cfg.min_cell_voltage), 0.0, "{chem:?}");
        assert_eq!(ccl_at(&cfg, cfg.max_cell_voltage - 0.05, cfg.max_cell_voltage - 0.3), 50.0, "{chem:?}");
    }
}

#[test]
fn huge_hold_never_panics_and_keeps_the_limit_low() {
    let cfg = ChargeConfig { current_recovery_hold_s: 1e19, ..ChargeConfig::default() };
    let t0 = crate::sim::closed_loop::fake_clock_start();
    let mut r = RampLimiter::default();
    r.apply(t0, 10.0, 50.0, &cfg);
    for s in 1..100 {
        assert_eq!(r.apply(secs(t0, f64::from(s)), 50.0, 50.0, &cfg), (10.0, true));
    }
    let cfg = ChargeConfig { current_recovery_hold_s: f64::INFINITY, ..cfg };
    assert_eq!(r.apply(secs(t0, 200.0), 50.0, 50.0, &cfg), (10.0, true));
}
