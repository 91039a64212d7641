//! Closed-loop charge scenarios: the controller driving a simulated 16S LiFePO4 pack through a
//! Victron-like charger, one simulated second per step (fake clock, no sleeps).
//! Run with `--nocapture` to see the measured figures quoted in `docs/charge-control.md`.

use bms_bridge::control::{tables, ChargeConfig, Phase};
use bms_bridge::sim::closed_loop::{run_scenario, scenario_config, scenario_names, write_csv, Row, GRACE_S};

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

fn follows_temperature_table(name: &str) -> Vec<Row> {
    let rows = run(name);
    let cfg: ChargeConfig = scenario_config(name).unwrap_or_default();
    for r in &rows {
        let f =
            tables::fraction(&cfg.charge_temperature_table, r.temperature_c, cfg.table_mode).unwrap_or(1.0);
        let g = tables::fraction(&cfg.charge_temperature_table, r.temperature_c + 0.5, cfg.table_mode)
            .unwrap_or(1.0);
        assert!(
            r.ccl_a <= f.min(g) * cfg.max_charge_current + 1e-6,
            "{name}: CCL {} at {:.2} °C",
            r.ccl_a,
            r.temperature_c
        );
    }
    rows
}

/// At 0 °C the temperature table allows nothing: CCL 0 throughout, no charge current.
#[test]
fn charge_at_0_c_is_blocked() {
    let rows = follows_temperature_table("charge-cold");
    assert!(rows.iter().all(|r| r.ccl_a == 0.0 && r.current_a <= 1e-9));
}

/// At 50 °C CCL is 25 % of max, less as the pack warms, and never above the table.
#[test]
fn charge_at_50_c_follows_the_table() {
    let rows = follows_temperature_table("charge-hot");
    // Sensors read 50.0 and 50.5 °C: the hotter one sets 22.5 A of 100 A.
    let first = &rows[0];
    assert!((first.ccl_a - 22.5).abs() < 1e-6, "{}", first.ccl_a);
    assert!(rows.iter().any(|r| r.current_a > 20.0));
    let cfg = ChargeConfig::default();
    assert_eq!(tables::fraction(&cfg.charge_temperature_table, 55.0, cfg.table_mode), Some(0.0));
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
    assert!(
        spent >= cfg.absorption_time_s && spent < cfg.absorption_time_s + 120.0,
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

/// Regenerates `docs/charge-cycle.png`: `cargo test --test charge_scenarios -- --ignored`.
#[test]
#[ignore = "writes docs/charge-cycle.png"]
fn plot_full_charge() {
    let rows = run("full-charge");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/charge-cycle.png");
    if let Err(e) = bms_bridge::sim::plot::plot_png(&rows, &path) {
        panic!("{e}");
    }
}
