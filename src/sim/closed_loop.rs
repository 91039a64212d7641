//! Closed-loop charge scenarios: [`Pack`] readings -> [`ChargeController`] -> [`Charger`] -> pack,
//! one simulated second per step, on a fake clock. Used by `tests/charge_scenarios.rs` and by
//! `bms-bridge simulate-charge --scenario NAME --out run.csv`.

use super::pack::{Charger, Imbalance, Pack, PackSpec};
use crate::control::{ChargeConfig, ChargeController, ChargeLimits, ControlState, Link, Phase};
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// The base of a fake clock: any `Instant` works, the scenarios and the control tests only add
/// `Duration`s to it. (Kept here so `control/` never names the real clock, even in tests.)
pub fn fake_clock_start() -> Instant {
    Instant::now()
}

/// The daemon's grace period before it reports the BMS lost (s).
pub const GRACE_S: u64 = 10;

/// One simulated second.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Simulated time (s).
    pub time_s: f64,
    /// Lowest and highest cell (V).
    pub min_cell_v: f64,
    /// Highest cell (V).
    pub max_cell_v: f64,
    /// Pack voltage (V).
    pub pack_v: f64,
    /// Pack current, + = charging (A).
    pub current_a: f64,
    /// Published CVL (V).
    pub cvl_v: f64,
    /// Published CCL (A).
    pub ccl_a: f64,
    /// Published DCL (A).
    pub dcl_a: f64,
    /// Charge phase.
    pub phase: Phase,
    /// Published SoC (%), when known.
    pub soc_percent: Option<f64>,
    /// Pack temperature (°C).
    pub temperature_c: f64,
    /// The BMS link is reported lost.
    pub lost: bool,
    /// The controller ran this second (a poll).
    pub polled: bool,
    /// The limits of this poll are worth a log line (`ChargeLimits::notable`).
    pub notable: bool,
    /// The reasons or a limit's zero state changed since the previous poll (unfiltered).
    pub raw_change: bool,
    /// The simulated BMS opened its charge FET on a cell over-voltage.
    pub bms_tripped: bool,
    /// `/Info/ChargeMode` text.
    pub charge_mode: String,
}

/// Why a scenario could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// No scenario has this name.
    #[error("unknown scenario {name:?}; known: {}", scenario_names().join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Scenario {
    start_soc: f64,
    temperature_c: f64,
    charge_a: f64,
    load_a: f64,
    max_s: u64,
    /// Stop this long after float is reached.
    after_float_s: Option<u64>,
    /// Stop this long after DCL reached 0.
    after_dcl_zero_s: Option<u64>,
    /// The BMS stops answering at this time.
    silent_at_s: Option<u64>,
    /// Restart the controller once absorption has run this long (s).
    restart_in_absorption_s: Option<u64>,
    /// The charger ignores CCL (DC-coupled PV with feed-in): only CVL protects the cells.
    ignore_ccl: bool,
}

const BASE: Scenario = Scenario {
    start_soc: 0.2,
    temperature_c: 25.0,
    charge_a: 100.0,
    load_a: 0.0,
    max_s: 12 * 3600,
    after_float_s: Some(1800),
    after_dcl_zero_s: None,
    silent_at_s: None,
    restart_in_absorption_s: None,
    ignore_ccl: false,
};

const NAMES: &[&str] = &[
    "balanced-16s-97",
    "ahead-16s-97",
    "weak-16s-97",
    "full-charge",
    "full-charge-pv",
    "charge-cold",
    "charge-hot",
    "discharge",
    "bms-silent",
    "restart-absorption",
];

/// The scenarios [`run_scenario`] knows.
pub fn scenario_names() -> &'static [&'static str] {
    NAMES
}

fn scenario(name: &str) -> Option<Scenario> {
    Some(match name {
        "full-charge" => BASE,
        "full-charge-pv" => Scenario { ignore_ccl: true, ..BASE },
        "charge-cold" => Scenario { temperature_c: 0.0, max_s: 2 * 3600, after_float_s: None, ..BASE },
        "charge-hot" => Scenario { temperature_c: 50.0, max_s: 2 * 3600, after_float_s: None, ..BASE },
        "discharge" => Scenario {
            start_soc: 0.25,
            charge_a: 0.0,
            load_a: 60.0,
            max_s: 6 * 3600,
            after_float_s: None,
            after_dcl_zero_s: Some(300),
            ..BASE
        },
        "bms-silent" => Scenario {
            start_soc: 0.5,
            max_s: 600 + 2000,
            after_float_s: None,
            silent_at_s: Some(600),
            ..BASE
        },
        "restart-absorption" => {
            Scenario { restart_in_absorption_s: Some(300), after_float_s: Some(600), ..BASE }
        }
        _ => return None,
    })
}

/// The controller config the scenarios use: defaults, with the scenario's charger current as
/// `max_charge_current`.
pub fn scenario_config(name: &str) -> Result<ChargeConfig, ScenarioError> {
    if let Some(run) = parse_charge_run(name) {
        return Ok(run.config);
    }
    let s = scenario(name).ok_or_else(|| ScenarioError::Unknown { name: name.to_owned() })?;
    Ok(config(&s))
}

fn config(s: &Scenario) -> ChargeConfig {
    ChargeConfig { max_charge_current: s.charge_a.max(50.0), ..ChargeConfig::default() }
}

/// Runs scenario `name` and returns one row per simulated second. Besides the named ones, any
/// [`parse_charge_run`] name runs (e.g. `weak-24s-50-poll5`).
pub fn run_scenario(name: &str) -> Result<Vec<Row>, ScenarioError> {
    if let Some(run) = parse_charge_run(name) {
        return Ok(run.run());
    }
    let s = scenario(name).ok_or_else(|| ScenarioError::Unknown { name: name.to_owned() })?;
    Ok(run(&s))
}

fn run(s: &Scenario) -> Vec<Row> {
    let cfg = config(s);
    let t0 = fake_clock_start();
    let mut pack = Pack::lifepo4_16s(s.start_soc, s.temperature_c);
    let mut charger = Charger::new(s.charge_a);
    let mut ctrl = ChargeController::new(cfg.clone());
    let mut rows = Vec::new();
    let mut last_good = t0;
    let mut last_reading = pack.reading(t0);
    let mut limits = ChargeLimits::default();
    let (mut float_at, mut dcl_zero_at, mut restarted) = (None, None, false);
    for second in 0..=s.max_s {
        let now = t0 + Duration::from_secs(second);
        let silent = s.silent_at_s.is_some_and(|at| second >= at);
        if !silent {
            last_reading = pack.reading(now);
            last_good = now;
        }
        let link = if second.saturating_sub(s.silent_at_s.unwrap_or(u64::MAX)) >= GRACE_S {
            Link::Lost { since: last_good }
        } else {
            Link::Online
        };
        limits = ctrl.update(now, &last_reading, link);
        restart_once(&mut ctrl, &cfg, s.restart_in_absorption_s, &mut restarted, now);
        let (cvl, ccl, dcl) = published(&limits);
        let lost = matches!(link, Link::Lost { .. });
        rows.push(row(second, &pack, &limits, lost, Polled { polled: true, raw_change: false }));
        let charge_limit = if s.ignore_ccl { s.charge_a } else { ccl };
        let current = charger.step(&pack, cvl, charge_limit, dcl, s.load_a, 1.0);
        pack.step(current, 1.0);
        if limits.mode.phase == Phase::Float && float_at.is_none() {
            float_at = Some(second);
        }
        if dcl <= 0.0 && dcl_zero_at.is_none() {
            dcl_zero_at = Some(second);
        }
        let stop_float = s.after_float_s.zip(float_at).is_some_and(|(after, at)| second >= at + after);
        let stop_dcl = s.after_dcl_zero_s.zip(dcl_zero_at).is_some_and(|(after, at)| second >= at + after);
        if stop_float || stop_dcl {
            break;
        }
    }
    let _ = limits;
    rows
}

/// A closed-loop charge: a [`PackSpec`] pack, a charger, the controller polled every `poll_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRun {
    /// The pack.
    pub pack: PackSpec,
    /// Controller poll interval (s); between polls the charger keeps the last limits.
    pub poll_s: u64,
    /// Controller config.
    pub config: ChargeConfig,
    /// Most the charger can deliver (A).
    pub charger_a: f64,
    /// Stop after this long at the latest (s).
    pub max_s: u64,
    /// Stop this long after float was reached (s).
    pub after_float_s: u64,
    /// Restart the controller (state through JSON) once absorption has run this long (s).
    pub restart_in_absorption_s: Option<u64>,
}

impl ChargeRun {
    /// `pack` on the default config, a 100 A charger (the default CCL of 50 A binds), 1 s polls.
    pub fn new(pack: PackSpec) -> Self {
        Self {
            pack,
            poll_s: 1,
            config: ChargeConfig::default(),
            charger_a: 100.0,
            max_s: 8 * 3600,
            after_float_s: 600,
            restart_in_absorption_s: None,
        }
    }

    /// Runs it: one row per simulated second.
    pub fn run(&self) -> Vec<Row> {
        let t0 = fake_clock_start();
        let mut pack = Pack::from_spec(&self.pack);
        let mut charger = Charger::new(self.charger_a);
        let mut ctrl = ChargeController::new(self.config.clone());
        let mut rows = Vec::new();
        let mut limits = ChargeLimits::default();
        let mut previous: Option<ChargeLimits> = None;
        let (mut float_at, mut restarted) = (None, false);
        let poll = self.poll_s.max(1);
        for second in 0..=self.max_s {
            let now = t0 + Duration::from_secs(second);
            let polled = second % poll == 0;
            let mut raw_change = false;
            if polled {
                limits = ctrl.update(now, &pack.reading(now), Link::Online);
                raw_change = previous.as_ref().is_none_or(|p| limits.notable_change_from(p));
                previous = Some(limits.clone());
                restart_once(&mut ctrl, &self.config, self.restart_in_absorption_s, &mut restarted, now);
            }
            let (cvl, ccl, dcl) = published(&limits);
            rows.push(row(second, &pack, &limits, false, Polled { polled, raw_change }));
            let current = charger.step(&pack, cvl, ccl, dcl, 0.0, 1.0);
            pack.step(current, 1.0);
            if limits.mode.phase == Phase::Float && float_at.is_none() {
                float_at = Some(second);
            }
            if float_at.is_some_and(|at| second >= at + self.after_float_s) {
                break;
            }
        }
        rows
    }
}

/// Parses `KIND-<cells>s-<soc %>[-poll<s>]` (KIND: balanced, ahead = one cell 2.5 % ahead,
/// weak = one cell -10 % capacity) into a run on a 100 Ah pack.
pub fn parse_charge_run(name: &str) -> Option<ChargeRun> {
    let mut parts = name.split('-');
    let imbalance = match parts.next()? {
        "balanced" => Imbalance::Balanced,
        "ahead" => Imbalance::OneAhead(0.025),
        "weak" => Imbalance::WeakCell(0.10),
        _ => return None,
    };
    let cells: usize = parts.next()?.strip_suffix('s')?.parse().ok()?;
    let soc: f64 = parts.next()?.parse().ok()?;
    let poll_s = match parts.next() {
        Some(p) => p.strip_prefix("poll")?.parse().ok()?,
        None => 1,
    };
    if parts.next().is_some() || !(1..=48).contains(&cells) || !(0.0..=100.0).contains(&soc) {
        return None;
    }
    let pack = PackSpec { cells, capacity_ah: 100.0, soc: soc / 100.0, imbalance };
    Some(ChargeRun { poll_s, ..ChargeRun::new(pack) })
}

/// Whether the controller ran this second and what changed (for [`Row`]).
struct Polled {
    polled: bool,
    raw_change: bool,
}

/// CVL, CCL and DCL as the charger obeys them (0 while unknown).
fn published(limits: &ChargeLimits) -> (f64, f64, f64) {
    (
        limits.charge_voltage_v.unwrap_or(0.0),
        limits.charge_current_a.unwrap_or(0.0),
        limits.discharge_current_a.unwrap_or(0.0),
    )
}

/// The row of `second`: the simulated pack now and the limits in force.
fn row(second: u64, pack: &Pack, limits: &ChargeLimits, lost: bool, poll: Polled) -> Row {
    let (cvl_v, ccl_a, dcl_a) = published(limits);
    let cells = pack.cell_voltages();
    Row {
        time_s: second as f64,
        min_cell_v: cells.iter().copied().fold(f64::INFINITY, f64::min),
        max_cell_v: cells.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        pack_v: cells.iter().sum(),
        current_a: pack.current_a,
        cvl_v,
        ccl_a,
        dcl_a,
        phase: limits.mode.phase,
        soc_percent: limits.soc_percent,
        temperature_c: pack.temperature_c,
        lost,
        polled: poll.polled,
        notable: poll.polled && limits.notable,
        raw_change: poll.raw_change,
        bms_tripped: pack.tripped,
        charge_mode: limits.charge_mode.clone(),
    }
}

/// Restarts `ctrl` (see [`restart`]) the first time absorption has run `after` seconds.
fn restart_once(
    ctrl: &mut ChargeController,
    cfg: &ChargeConfig,
    after: Option<u64>,
    restarted: &mut bool,
    now: Instant,
) {
    if let (Some(after), false) = (after, *restarted) {
        if ctrl.absorption_elapsed().is_some_and(|d| d.as_secs() >= after) {
            *restarted = true;
            *ctrl = restart(cfg, &ctrl.state(), now);
        }
    }
}

/// A daemon restart: the state goes through JSON (as through the state file) into a new
/// controller, which resumes at once (the simulated daemon restarts within the same second).
fn restart(cfg: &ChargeConfig, state: &ControlState, now: Instant) -> ChargeController {
    let restored = serde_json::to_string(state)
        .ok()
        .and_then(|text| serde_json::from_str::<ControlState>(&text).ok())
        .unwrap_or_default();
    let mut ctrl = ChargeController::new(cfg.clone());
    ctrl.restore(&restored, now, Duration::ZERO);
    ctrl
}

/// Writes `rows` as CSV with a header line.
pub fn write_csv(rows: &[Row], mut out: impl Write) -> io::Result<()> {
    writeln!(out, "time_s,min_cell_v,max_cell_v,pack_v,current_a,cvl_v,ccl_a,dcl_a,phase,soc_percent,temperature_c,bms_lost")?;
    for r in rows {
        let soc = r.soc_percent.map(|s| format!("{s:.2}")).unwrap_or_default();
        writeln!(
            out,
            "{},{:.4},{:.4},{:.3},{:.2},{:.3},{:.2},{:.2},{},{},{:.2},{}",
            r.time_s,
            r.min_cell_v,
            r.max_cell_v,
            r.pack_v,
            r.current_a,
            r.cvl_v,
            r.ccl_a,
            r.dcl_a,
            r.phase.text(),
            soc,
            r.temperature_c,
            u8::from(r.lost)
        )?;
    }
    Ok(())
}
