//! The invariants of `docs/safety.md` as properties (proptest) over random accepted configs and
//! random reading sequences, on the pure core: plausibility check, monitor and charge control
//! (`Monitor::handle_reading` / `Monitor::output`, time passed in).
//!
//! The oracle is the test's own bookkeeping of what it fed in (which readings were sane, when
//! the last sane one was, which cells it had), never the code under test. The config validator
//! is used only as the filter "check-config accepts this".

use bms_bridge::battery::Battery;
use bms_bridge::config::rules;
use bms_bridge::config::{BatteryConfig, DaemonConfig};
use bms_bridge::control::{ChargeConfig, ChargeController};
use bms_bridge::monitor::Monitor;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const EPS: f64 = 1e-9;

/// A `[charge]` section with every knob drawn from (a little beyond) its documented range.
fn charge_config() -> impl Strategy<Value = ChargeConfig> {
    let voltages = (2.5f64..3.1, 3.3f64..3.65, 0.0f64..1.0, 0.0f64..=0.05, 0.0f64..=0.1);
    let control = (0.0005f64..1.2, 0.0f64..0.06, 0.0f64..4000.0, 0.00005f64..1.0);
    let currents = (0.0f64..400.0, 0.0f64..600.0, 0.0f64..4000.0, 0.0f64..60.0, 0.0f64..0.6);
    let timing = (0.0f64..7200.0, 0.0000005f64..0.01, 0.0f64..100.0, any::<bool>(), any::<bool>());
    (voltages, control, currents, timing).prop_map(
        |(
            (min, max, float_at, ccl_zero_over, dcl_zero_under),
            (gain, deadband, cvl_hold, cvl_rate),
            (ccl, dcl, hold, ramp, threshold),
            (absorption, float_ramp, rebulk, soc_ccl, soc_dcl),
        )| {
            let float = min + (max - min) * float_at;
            let d = ChargeConfig::default();
            ChargeConfig {
                min_cell_voltage: min,
                max_cell_voltage: max,
                float_cell_voltage: float,
                cvl_controller_gain_per_s: gain,
                cvl_controller_deadband_v: deadband,
                cvl_recovery_hold_s: cvl_hold,
                cvl_recovery_v_per_s: cvl_rate,
                max_charge_current: ccl,
                max_discharge_current: dcl,
                current_recovery_hold_s: hold,
                current_recovery_a_per_s: ramp,
                current_recovery_threshold: threshold,
                absorption_time_s: absorption,
                float_ramp_v_per_cell_per_s: float_ramp,
                rebulk_soc: rebulk,
                charge_soc_limit: soc_ccl,
                discharge_soc_limit: soc_dcl,
                lost_discharge_safe_cell_voltage: (min + 0.3).min(max),
                // The cell-voltage tables follow the voltages (zero points drawn on both sides of
                // the allowed ones, so that some configs are refused).
                charge_cell_voltage_table: vec![
                    [max - 0.1, 1.0],
                    [max - 0.02, 0.3],
                    [max + ccl_zero_over, 0.0],
                ],
                discharge_cell_voltage_table: vec![
                    [min - dcl_zero_under, 0.0],
                    [min + 0.1, 0.2],
                    [min + 0.3, 1.0],
                ],
                ..d
            }
        },
    )
}

/// One step of the BMS's life, as the test decides it.
#[derive(Debug, Clone)]
enum Step {
    /// A sane reading: every cell in 0.5..5 V, the configured count.
    Good { cells_mv: Vec<u16>, current_a: f64, temp_c: f64, soc: f64, charge_fet: bool, discharge_fet: bool },
    /// A reading with another cell count than configured.
    WrongCount(usize),
    /// A reading with no cells.
    NoCells,
    /// A reading with one cell far outside physics.
    WildCell(f64),
    /// No reading (BMS silent).
    Silent,
}

fn steps(cells: usize) -> impl Strategy<Value = Vec<(u64, Step)>> {
    let good = (
        prop::collection::vec(2400u16..3900, cells),
        -200.0f64..200.0,
        -30.0f64..70.0,
        0.0f64..=100.0,
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(cells_mv, current_a, temp_c, soc, charge_fet, discharge_fet)| Step::Good {
            cells_mv,
            current_a,
            temp_c,
            soc,
            charge_fet,
            discharge_fet,
        });
    let step = prop_oneof![
        8 => good,
        1 => (1usize..48).prop_filter("another count", move |n| *n != cells).prop_map(Step::WrongCount),
        1 => Just(Step::NoCells),
        1 => prop_oneof![-5.0f64..0.49, 5.01f64..70.0].prop_map(Step::WildCell),
        3 => Just(Step::Silent),
    ];
    // Milliseconds since the previous step: from a fast poll to a long silence.
    prop::collection::vec((prop_oneof![3 => 100u64..2000, 1 => 2000u64..30_000], step), 1..120)
}

fn reading(
    cells_v: Vec<f64>,
    current_a: f64,
    temp_c: f64,
    soc: f64,
    charge_fet: bool,
    discharge_fet: bool,
) -> Battery {
    Battery {
        voltage_v: Some(cells_v.iter().sum()),
        current_a: Some(current_a),
        soc_percent: Some(soc),
        cell_voltages_v: Some(cells_v),
        temperatures_c: Some(vec![temp_c]),
        charge_fet: Some(charge_fet),
        discharge_fet: Some(discharge_fet),
        ..Battery::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn limits_stay_inside_the_safe_window(
        cfg in charge_config(),
        (cells, script) in (1usize..=24).prop_flat_map(|cells| (Just(cells), steps(cells))),
        poll_ms in 100u64..=10_000,
        stale_frac in 0.0f64..1.0,
    ) {
        prop_assume!(rules::charge_problems(&cfg).is_empty());
        let range = rules::stale_after_range(poll_ms);
        let stale_s = range.min + (range.max - range.min) * stale_frac;
        let daemon = DaemonConfig { poll_interval_ms: poll_ms, stale_after_s: stale_s, ..DaemonConfig::default() };
        prop_assume!(rules::daemon_problems(&daemon).is_empty());
        let stale = Duration::from_secs_f64(stale_s);
        let n = cells as f64;
        let t0 = Instant::now();
        let options = BatteryConfig { cell_count: Some(cells as u16), ..BatteryConfig::default() };
        let mut monitor = Monitor::new(t0, options, stale, ChargeController::new(cfg.clone()));
        let mut now = t0;
        // The test's own record: when the last sane reading came, and its cells.
        let mut last_good: Option<(Instant, Vec<f64>, bool, bool)> = None;
        for (dt_ms, step) in script {
            now += Duration::from_millis(dt_ms);
            match step {
                Step::Good { cells_mv, current_a, temp_c, soc, charge_fet, discharge_fet } => {
                    let cells_v: Vec<f64> = cells_mv.iter().map(|mv| f64::from(*mv) / 1000.0).collect();
                    let sane = cells_v.len() == cells;
                    let rejected = monitor.handle_reading(now, reading(cells_v.clone(), current_a, temp_c, soc, charge_fet, discharge_fet));
                    prop_assert_eq!(rejected.is_none(), sane, "sane readings are taken, others refused");
                    if sane {
                        last_good = Some((now, cells_v, charge_fet, discharge_fet));
                    }
                }
                Step::WrongCount(count) => {
                    let r = monitor.handle_reading(now, reading(vec![3.3; count], 0.0, 20.0, 50.0, true, true));
                    prop_assert!(r.is_some() || count == cells);
                    if count == cells { last_good = Some((now, vec![3.3; count], true, true)); }
                }
                Step::NoCells => {
                    let r = monitor.handle_reading(now, Battery { cell_voltages_v: Some(vec![]), ..reading(vec![], 0.0, 20.0, 50.0, true, true) });
                    prop_assert!(r.is_some());
                }
                Step::WildCell(volts) => {
                    let mut v = vec![3.3; cells];
                    v[0] = volts;
                    prop_assert!(monitor.handle_reading(now, reading(v, 0.0, 20.0, 50.0, true, true)).is_some());
                }
                Step::Silent => {}
            }
            let out = monitor.output(now);
            let l = &out.limits;
            let ccl = l.charge_current_a.expect("CCL is always a number");
            let dcl = l.discharge_current_a.expect("DCL is always a number");
            prop_assert!(ccl.is_finite() && dcl.is_finite(), "{:?}", l);
            prop_assert!((0.0..=cfg.max_charge_current + EPS).contains(&ccl), "CCL {} max {}", ccl, cfg.max_charge_current);
            prop_assert!((0.0..=cfg.max_discharge_current + EPS).contains(&dcl), "DCL {} max {}", dcl, cfg.max_discharge_current);
            if let Some(cvl) = l.charge_voltage_v {
                prop_assert!(cvl.is_finite());
                prop_assert!(cvl <= cfg.max_cell_voltage * n + EPS, "CVL {} above {} x {}", cvl, n, cfg.max_cell_voltage);
                prop_assert!(cvl >= cfg.min_cell_voltage * n - EPS, "CVL {} below {} x {}", cvl, n, cfg.min_cell_voltage);
            }
            let fresh = last_good.as_ref().filter(|(t, ..)| now.saturating_duration_since(*t) < stale);
            match fresh {
                None => {
                    prop_assert!(!out.connected, "no sane reading within stale_after_s: lost");
                    prop_assert_eq!(ccl, 0.0, "lost BMS: CCL 0");
                    if let Some(cvl) = l.charge_voltage_v {
                        prop_assert!(cvl <= cfg.float_cell_voltage * n + EPS, "lost BMS: CVL {} above float", cvl);
                    }
                    prop_assert!(out.battery.voltage_v.is_none() && out.battery.cell_voltages_v.is_none(), "never frozen");
                }
                Some((_, cells_v, charge_fet, discharge_fet)) => {
                    prop_assert!(out.connected);
                    prop_assert_eq!(out.battery.cell_voltages_v.as_ref(), Some(cells_v), "the published cells are the last sane ones");
                    let high = cells_v.iter().copied().fold(f64::MIN, f64::max);
                    let low = cells_v.iter().copied().fold(f64::MAX, f64::min);
                    if high >= cfg.max_cell_voltage + rules::CCL_ZERO_ABOVE_MAX_V {
                        prop_assert_eq!(ccl, 0.0, "a cell at {} V: CCL 0", high);
                    }
                    if low <= cfg.min_cell_voltage - rules::DCL_ZERO_BELOW_MIN_V {
                        prop_assert_eq!(dcl, 0.0, "a cell at {} V: DCL 0", low);
                    }
                    if !charge_fet {
                        prop_assert_eq!(ccl, 0.0, "charge FET off: CCL 0");
                    }
                    if !discharge_fet {
                        prop_assert_eq!(dcl, 0.0, "discharge FET off: DCL 0");
                    }
                }
            }
        }
    }
}
