//! Closed-loop charge scenarios: the controller driving a simulated 16S LiFePO4 pack through a
//! Victron-like charger, one simulated second per step (fake clock, no sleeps).
//! Run with `--nocapture` to see the measured figures quoted in `docs/charge-control.md`.

use bms_bridge::control::{ChargeConfig, Phase};
use bms_bridge::sim::closed_loop::{
    run_scenario, scenario_config, scenario_names, write_csv, ChargeRun, Row, GRACE_S,
};
use bms_bridge::sim::pack::{Imbalance, PackSpec};

fn run(name: &str) -> Vec<Row> {
    match run_scenario(name) {
        Ok(rows) => rows,
        Err(e) => panic!("{e}"),
    }
}

/// Direction changes of CVL among consecutive rows (steps under 0.1 mV ignored).
fn reversals(rows: &[&Row]) -> usize {
    let mut last_sign = 0i8;
    let mut count = 0;
    for pair in rows.windows(2) {
        let d = pair[1].cvl_v - pair[0].cvl_v;
        let sign = if d > 1e-4 {
            1
        } else if d < -1e-4 {
            -1
        } else {
            0
        };
        if sign != 0 {
            if last_sign != 0 && sign != last_sign {
                count += 1;
            }
            last_sign = sign;
        }
    }
    count
}

/// Full charge from 20 % at 100 A: the highest cell stays within 15 mV of max and under 3.65 V,
/// CVL does not hunt in absorption, and float is reached.
#[test]
fn full_charge_from_20_percent_at_100_a() {
    check_full_charge("full-charge");
}

/// The same with a charger that ignores CCL (DC-coupled PV with feed-in): only the cell
/// over-voltage controller acting on CVL keeps the highest cell in bounds.
#[test]
fn full_charge_with_a_charger_ignoring_ccl() {
    check_full_charge("full-charge-pv");
}

fn check_full_charge(name: &str) {
    let rows = run(name);
    let cfg = scenario_config(name).unwrap_or_default();
    let peak = rows.iter().map(|r| r.max_cell_v).fold(0.0, f64::max);
    assert!(peak <= cfg.max_cell_voltage + 0.015, "highest cell peaked at {peak:.4} V");
    assert!(peak < 3.65);
    assert!(rows.iter().any(|r| r.current_a > 95.0), "charged at 100 A");
    let absorption: Vec<&Row> = rows.iter().filter(|r| r.phase == Phase::Absorption).collect();
    assert!(!absorption.is_empty(), "absorption reached");
    let hours = absorption.len() as f64 / 3600.0;
    let rev = reversals(&absorption);
    assert!(rev as f64 <= 4.0 * hours.ceil().max(1.0), "{rev} CVL reversals in {hours:.2} h of absorption");
    let float_at = rows.iter().find(|r| r.phase == Phase::Float).map(|r| r.time_s);
    assert!(float_at.is_some(), "float reached");
    let bulk_end = absorption.first().map_or(0.0, |r| r.time_s);
    println!(
        "{name}: peak cell {peak:.4} V (overshoot {:+.1} mV), absorption at {:.2} h, float at {:.2} h, \
         {rev} CVL reversals in {:.0} min of absorption",
        (peak - cfg.max_cell_voltage) * 1000.0,
        bulk_end / 3600.0,
        float_at.unwrap_or(0.0) / 3600.0,
        hours * 60.0
    );
}

/// At 0 °C the temperature table allows nothing: CCL 0 throughout, no charge current.
#[test]
fn charge_at_0_c_is_blocked() {
    let rows = run("charge-cold");
    assert!(rows.iter().all(|r| r.ccl_a == 0.0 && r.current_a <= 1e-9));
}

/// At 50 °C (sensors 50.0 and 50.5 °C) the documented table gives 0.225 of 100 A at the hotter
/// sensor; as the pack warms CCL only falls, and the pack current never exceeds it.
#[test]
fn charge_at_50_c_follows_the_table() {
    let rows = run("charge-hot");
    // docs/charge-control.md: 50 °C -> 0.25, 55 °C -> 0; 50.5 °C -> 0.225 x 100 A.
    assert!((rows[0].ccl_a - 22.5).abs() < 1e-6, "{}", rows[0].ccl_a);
    assert!(rows.iter().any(|r| r.current_a > 20.0));
    for pair in rows.windows(2) {
        if pair[1].temperature_c >= pair[0].temperature_c {
            assert!(pair[1].ccl_a <= pair[0].ccl_a + 1e-9, "CCL rose at {} s", pair[1].time_s);
        }
        assert!(pair[1].current_a <= pair[0].ccl_a + 0.1);
    }
}

/// Discharge at 60 A from 25 %: DCL tapers by the lowest cell and reaches 0 before any cell
/// goes under 2.8 V.
#[test]
fn discharge_to_empty() {
    let rows = run("discharge");
    let floor = rows.iter().map(|r| r.min_cell_v).fold(f64::MAX, f64::min);
    assert!(floor >= 2.8, "lowest cell fell to {floor:.4} V");
    let zero_at = rows.iter().find(|r| r.dcl_a == 0.0).map(|r| r.time_s);
    assert!(zero_at.is_some(), "DCL reached 0");
    let tapering = rows.iter().filter(|r| r.dcl_a > 0.0 && r.dcl_a < 60.0).count();
    assert!(tapering > 60, "DCL tapered over {tapering} s");
    println!(
        "discharge: DCL 0 at {:.2} h, lowest cell minimum {floor:.4} V",
        zero_at.unwrap_or(0.0) / 3600.0
    );
}

/// The BMS goes silent mid-charge at 600 s: CCL 0 within the grace period plus one poll, CVL
/// float, DCL kept for 30 min (cells healthy) and then 0.
#[test]
fn bms_goes_silent_mid_charge() {
    let rows = run("bms-silent");
    let cfg = ChargeConfig::default();
    let silent = 600.0;
    let last_good = silent - 1.0;
    let deadline = silent + GRACE_S as f64 + 1.0;
    assert!(rows.iter().filter(|r| r.time_s >= deadline).all(|r| r.ccl_a == 0.0));
    assert!(rows
        .iter()
        .filter(|r| r.time_s >= deadline)
        .all(|r| (r.cvl_v - 16.0 * cfg.float_cell_voltage).abs() < 1e-9));
    let before = rows.iter().find(|r| r.time_s == silent).map_or(0.0, |r| r.dcl_a);
    assert!(before > 0.0);
    let lost_at = rows.iter().find(|r| r.lost).map_or(0.0, |r| r.time_s);
    for r in rows.iter().filter(|r| r.lost) {
        let expected = if r.time_s - last_good >= cfg.lost_discharge_timeout_s { 0.0 } else { before };
        assert_eq!(r.dcl_a, expected, "DCL at {} s", r.time_s);
    }
    assert!(lost_at <= deadline);
    assert_eq!(rows.last().map(|r| r.dcl_a), Some(0.0));
}

/// A restart 300 s into absorption: the phase and the timer resume, float follows 600 s later.
#[test]
fn restart_mid_absorption_resumes() {
    let rows = run("restart-absorption");
    let start = rows.iter().find(|r| r.phase == Phase::Absorption).map_or(0.0, |r| r.time_s);
    let float_at = rows.iter().find(|r| r.phase == Phase::FloatTransition).map_or(0.0, |r| r.time_s);
    assert!(start > 0.0);
    // No bulk between absorption start and float: the restart kept the phase.
    assert!(rows
        .iter()
        .filter(|r| r.time_s >= start && r.time_s < float_at)
        .all(|r| r.phase == Phase::Absorption));
    let cfg = ChargeConfig::default();
    let spent = float_at - start;
    // This pack's spread is above float_switch_cell_diff: top balancing may extend absorption.
    assert!(
        spent >= cfg.absorption_time_s && spent < cfg.absorption_time_s + cfg.balance_max_time_s + 120.0,
        "absorption took {spent} s"
    );
}

#[test]
fn every_scenario_runs_and_writes_csv() {
    for name in scenario_names() {
        let rows = run(name);
        let mut out = Vec::new();
        assert!(write_csv(&rows[..rows.len().min(3)], &mut out).is_ok());
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.starts_with("time_s,min_cell_v"), "{name}");
        assert_eq!(text.lines().count(), 1 + rows.len().min(3));
    }
    assert!(run_scenario("nope").is_err());
}

/// Regenerates `docs/charge-cycle.png`, `docs/charge-balanced.png` and
/// `docs/charge-one-ahead.png`: `cargo test --test charge_scenarios -- --ignored`.
#[cfg(feature = "plots")]
#[test]
#[ignore = "writes docs/*.png"]
fn plot_full_charge() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    if let Err(e) = bms_bridge::sim::plot::plot_png(&run("full-charge"), &docs.join("charge-cycle.png")) {
        panic!("{e}");
    }
    let plots = [
        ("charge-balanced.png", "balanced-16s-97", "Balanced 16S 100 Ah LFP from 97 %, defaults"),
        ("charge-one-ahead.png", "ahead-16s-97", "16S 100 Ah LFP, one cell 2.5 % ahead, from 97 %, defaults"),
    ];
    for (file, name, title) in plots {
        if let Err(e) = bms_bridge::sim::plot::plot_run(&run(name), &docs.join(file), title, 16, 3.45) {
            panic!("{e}");
        }
    }
}

// ---- Finishing a charge: balanced and unbalanced 100 Ah packs, default config ----------------
//
// Every assertion reads the simulated pack (cell voltages, current, BMS trip) and the simulated
// time; the limits are only what the simulated charger obeyed. Bounds are the issue's: highest
// cell at most max_cell_voltage + 15 mV, no BMS trip, float reached; balanced packs within the
// time to charge them at the default CCL + absorption_time_s + 10 minutes; at most 4 CVL
// reversals per hour (the issue asks it of balanced packs; every pack here meets it).

/// What one run measured.
struct Figures {
    name: String,
    peak_v: f64,
    ah_in: f64,
    absorption_at_s: Option<f64>,
    full_at_s: Option<f64>,
    float_at_s: Option<f64>,
    reversals_per_h: f64,
    float_mode: String,
    tripped: bool,
}

fn figures(name: &str, rows: &[Row]) -> Figures {
    let first = |p: Phase| rows.iter().find(|r| r.phase == p).map(|r| r.time_s);
    let polled: Vec<&Row> = rows.iter().filter(|r| r.polled).collect();
    let hours = (rows.len() as f64 / 3600.0).max(1.0 / 60.0);
    Figures {
        name: name.to_owned(),
        peak_v: rows.iter().map(|r| r.max_cell_v).fold(0.0, f64::max),
        ah_in: rows.iter().map(|r| r.current_a.max(0.0)).sum::<f64>() / 3600.0,
        absorption_at_s: first(Phase::Absorption),
        full_at_s: first(Phase::FloatTransition),
        float_at_s: first(Phase::Float),
        reversals_per_h: reversals(&polled) as f64 / hours,
        float_mode: rows
            .iter()
            .find(|r| r.phase == Phase::Float)
            .map(|r| r.charge_mode.clone())
            .unwrap_or_default(),
        tripped: rows.iter().any(|r| r.bms_tripped),
    }
}

fn print(f: &Figures) {
    let t = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.0}"));
    println!(
        "| {} | {} | {} | {} | {:.4} | {:.2} | {:.1} | {} |",
        f.name,
        t(f.absorption_at_s),
        t(f.full_at_s),
        t(f.float_at_s),
        f.peak_v,
        f.ah_in,
        f.reversals_per_h,
        f.float_mode
    );
}

fn charge(imbalance: Imbalance, cells: usize, soc_percent: f64, poll_s: u64) -> (Figures, ChargeRun) {
    let pack = PackSpec { cells, capacity_ah: 100.0, soc: soc_percent / 100.0, imbalance };
    let run = ChargeRun { poll_s, ..ChargeRun::new(pack) };
    let kind = match imbalance {
        Imbalance::Balanced => "balanced",
        Imbalance::OneAhead(_) => "ahead",
        Imbalance::WeakCell(_) => "weak",
    };
    let name = format!("{kind}-{cells}s-{soc_percent:.0}-poll{poll_s}");
    let rows = run.run();
    let f = figures(&name, &rows);
    print(&f);
    let cfg = &run.config;
    assert!(!f.tripped, "{name}: the BMS tripped");
    assert!(f.peak_v <= cfg.max_cell_voltage + 0.015, "{name}: highest cell peaked at {:.4} V", f.peak_v);
    assert!(f.float_at_s.is_some(), "{name}: float never reached");
    assert!(rows.iter().all(|r| r.max_cell_v < 3.65), "{name}");
    assert!(f.reversals_per_h <= 4.0, "{name}: {:.1} CVL reversals per hour", f.reversals_per_h);
    (f, run)
}

fn rows_reached(run: &ChargeRun, pack_v: f64) -> bool {
    run.run().iter().any(|r| r.pack_v >= pack_v)
}

/// Balanced pack: float in time, few reversals, the peak within the limit.
fn balanced(cells: usize) {
    for soc in [97.0, 50.0] {
        for poll in [1, 5] {
            let (f, run) = charge(Imbalance::Balanced, cells, soc, poll);
            let cfg = &run.config;
            // Time to charge the missing Ah at the default CCL (the charger can do 100 A).
            let to_full_s = run.pack.capacity_ah * (1.0 - run.pack.soc) / cfg.max_charge_current * 3600.0;
            let bound = to_full_s + cfg.absorption_time_s + 600.0;
            let ramp_s = (cfg.max_cell_voltage - cfg.float_cell_voltage) / cfg.float_ramp_v_per_cell_per_s;
            let full = f.full_at_s.unwrap_or(f64::MAX);
            let float = f.float_at_s.unwrap_or(f64::MAX);
            assert!(full <= bound, "{}: absorption ended at {full} s, bound {bound:.0} s", f.name);
            assert!(float <= bound + ramp_s, "{}: float at {float} s, bound {:.0} s", f.name, bound + ramp_s);
            if soc == 97.0 {
                assert!(float <= 35.0 * 60.0, "{}: float at {float} s", f.name);
            }
            // Charged to CVL: the pack's terminal voltage reached max voltage (less the entry margin).
            let n = cells as f64;
            let at_max = n * (cfg.max_cell_voltage - cfg.absorption_entry_cell_margin);
            assert!(rows_reached(&run, at_max), "{}: never at max voltage", f.name);
        }
    }
}

/// One cell ahead or weak: within the limits, and float after top balancing with the reason.
fn unbalanced(imbalance: Imbalance, cells: usize) {
    for soc in [97.0, 50.0] {
        for poll in [1, 5] {
            let (f, _) = charge(imbalance, cells, soc, poll);
            let ended_balanced = f.float_mode == "Float";
            let reason_shown = f.float_mode.starts_with("Float (top balancing stopped");
            assert!(ended_balanced || reason_shown, "{}: {}", f.name, f.float_mode);
        }
    }
}

#[test]
fn balanced_4s() {
    balanced(4);
}
#[test]
fn balanced_8s() {
    balanced(8);
}
#[test]
fn balanced_16s() {
    balanced(16);
}
#[test]
fn balanced_24s() {
    balanced(24);
}
#[test]
fn one_cell_ahead_4s() {
    unbalanced(Imbalance::OneAhead(0.025), 4);
}
#[test]
fn one_cell_ahead_8s() {
    unbalanced(Imbalance::OneAhead(0.025), 8);
}
#[test]
fn one_cell_ahead_16s() {
    unbalanced(Imbalance::OneAhead(0.025), 16);
}
#[test]
fn one_cell_ahead_24s() {
    unbalanced(Imbalance::OneAhead(0.025), 24);
}
#[test]
fn weak_cell_4s() {
    unbalanced(Imbalance::WeakCell(0.10), 4);
}
#[test]
fn weak_cell_8s() {
    unbalanced(Imbalance::WeakCell(0.10), 8);
}
#[test]
fn weak_cell_16s() {
    unbalanced(Imbalance::WeakCell(0.10), 16);
}
#[test]
fn weak_cell_24s() {
    unbalanced(Imbalance::WeakCell(0.10), 24);
}

/// The charge the issue reported stuck at 3.441 V after 35 minutes: a balanced 16S 100 Ah pack
/// from 97 % reaches absorption within minutes at (nearly) full current.
#[test]
fn balanced_pack_charges_at_full_current_until_cvl() {
    let run =
        ChargeRun::new(PackSpec { cells: 16, capacity_ah: 100.0, soc: 0.97, imbalance: Imbalance::Balanced });
    let rows = run.run();
    let absorption = rows.iter().find(|r| r.phase == Phase::Absorption).map_or(f64::MAX, |r| r.time_s);
    assert!(absorption <= 300.0, "absorption at {absorption} s");
    // Until the pack's terminal voltage reaches CVL (the charger's constant-voltage stage) the
    // current is the full 50 A (after the charger's 2 s lag).
    let bulk: Vec<&Row> = rows.iter().skip(10).take_while(|r| r.pack_v < r.cvl_v - 0.02).collect();
    assert!(bulk.len() > 60, "{} s of bulk", bulk.len());
    assert!(bulk.iter().all(|r| r.current_a > 49.0), "throttled in bulk");
}

/// Quiet logs: over a top-of-charge run with one cell ahead (two hours of top balancing, the
/// controller and the taper working), at most one line per real change.
#[test]
fn top_of_charge_logs_only_real_changes() {
    let pack = PackSpec { cells: 16, capacity_ah: 100.0, soc: 0.97, imbalance: Imbalance::OneAhead(0.025) };
    let rows = ChargeRun::new(pack).run();
    let lines = rows.iter().filter(|r| r.notable).count();
    let raw = rows.iter().filter(|r| r.raw_change).count();
    let hours = rows.len() as f64 / 3600.0;
    let worst_30_min = rows.chunks(1800).map(|c| c.iter().filter(|r| r.notable).count()).max().unwrap_or(0);
    println!("top of charge: {lines} log lines in {hours:.2} h ({raw} unfiltered changes), at most {worst_30_min} in 30 min");
    assert!(lines <= 12, "{lines} log lines");
    assert!(worst_30_min <= 6, "{worst_30_min} lines in 30 minutes");
}

/// A restart 300 s into absorption with one cell held at max: CVL and CCL after the restart
/// never above what the simulated charger obeyed before it; the cell stays within the limit.
#[test]
fn restart_mid_absorption_with_a_high_cell_keeps_the_limits() {
    let pack = PackSpec { cells: 16, capacity_ah: 100.0, soc: 0.97, imbalance: Imbalance::OneAhead(0.025) };
    let run = ChargeRun { restart_in_absorption_s: Some(300), ..ChargeRun::new(pack) };
    let rows = run.run();
    let start = rows.iter().find(|r| r.phase == Phase::Absorption).map_or(0.0, |r| r.time_s);
    let restart_at = start + 300.0;
    let before = rows.iter().find(|r| r.time_s == restart_at - 1.0);
    let Some(before) = before else { panic!("no row before the restart") };
    assert!(before.cvl_v < 16.0 * 3.45 - 0.3, "the controller had cut CVL: {}", before.cvl_v);
    for r in rows.iter().filter(|r| r.time_s >= restart_at && r.time_s < restart_at + 30.0) {
        assert!(r.cvl_v <= before.cvl_v + 1e-9, "CVL {} after the restart, {} before", r.cvl_v, before.cvl_v);
        assert!(r.ccl_a <= before.ccl_a + 1e-9, "CCL {} after the restart, {} before", r.ccl_a, before.ccl_a);
        assert_eq!(r.phase, Phase::Absorption);
    }
    let peak = rows.iter().map(|r| r.max_cell_v).fold(0.0, f64::max);
    assert!(peak <= 3.45 + 0.015, "{peak}");
    // Absorption and top balancing resume where they stopped: float within 2 polls of the run
    // without a restart.
    let plain = ChargeRun::new(pack).run();
    let full = |rows: &[Row]| rows.iter().find(|r| r.phase == Phase::FloatTransition).map(|r| r.time_s);
    let (with, without) = (full(&rows), full(&plain));
    assert!(with.zip(without).is_some_and(|(a, b)| (a - b).abs() <= 2.0), "{with:?} vs {without:?}");
}

/// `soc_source = "calculated"`: the counter starts from the BMS's 97 % and counts what the
/// simulated charger put in, short of 100 % (3.45 V is 99.3 % on this curve); the published SoC is
/// 100 % from the end of absorption on, also when absorption ends after top balancing.
#[test]
fn calculated_soc_syncs_to_100_at_the_end_of_absorption() {
    use bms_bridge::control::SocSource;
    for imbalance in [Imbalance::Balanced, Imbalance::OneAhead(0.025)] {
        let pack = PackSpec { cells: 16, capacity_ah: 100.0, soc: 0.97, imbalance };
        let config = ChargeConfig { soc_source: SocSource::Calculated, ..ChargeConfig::default() };
        let rows = ChargeRun { config, ..ChargeRun::new(pack) }.run();
        let full = rows.iter().position(|r| r.phase == Phase::FloatTransition);
        let Some(full) = full else { panic!("{imbalance:?}: absorption never ended") };
        let before = rows.get(full.saturating_sub(2)).and_then(|r| r.soc_percent).unwrap_or(0.0);
        assert!(before < 99.9, "{imbalance:?}: counted {before} % before the end of absorption");
        assert!(
            rows.iter().skip(full).all(|r| r.soc_percent.is_some_and(|s| s > 99.9)),
            "{imbalance:?}: SoC after the full charge"
        );
    }
}

/// A config with its own charge table behaves as before: the table applies as written to a
/// balanced pack too. Oracle: the table's numbers interpolated here, at the simulated highest
/// cell (less 0.6 mV for the BMS's millivolt rounding; the table falls, so that bound is safe).
#[test]
fn an_explicit_charge_table_applies_as_written() {
    const TABLE: [(f64, f64); 5] = [(3.375, 1.0), (3.400, 0.25), (3.425, 0.05), (3.450, 0.005), (3.500, 0.0)];
    let at = |v: f64| -> f64 {
        if v <= TABLE[0].0 {
            return TABLE[0].1;
        }
        for w in TABLE.windows(2) {
            let ((x1, y1), (x2, y2)) = (w[0], w[1]);
            if v <= x2 {
                return y1 + (y2 - y1) * (v - x1) / (x2 - x1);
            }
        }
        0.0
    };
    let config = ChargeConfig {
        charge_cell_voltage_table: TABLE.iter().map(|&(x, y)| [x, y]).collect(),
        ..ChargeConfig::default()
    };
    let pack = PackSpec { cells: 16, capacity_ah: 100.0, soc: 0.97, imbalance: Imbalance::Balanced };
    let rows = ChargeRun { config, max_s: 2100, ..ChargeRun::new(pack) }.run();
    for r in rows.iter().filter(|r| r.polled) {
        let bound = at(r.max_cell_v - 0.0006) * 50.0;
        assert!(
            r.ccl_a <= bound + 1e-6,
            "{} s: CCL {} A at {:.4} V, table {bound:.3} A",
            r.time_s,
            r.ccl_a,
            r.max_cell_v
        );
    }
    // As the issue found: the table keeps the pack crawling below 3.45 V for 35 minutes.
    assert!(rows.iter().all(|r| r.phase != Phase::FloatTransition), "no full charge within 35 min");
}
