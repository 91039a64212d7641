//! The value rules of `[daemon]` and `[charge]`: every number finite and inside a range that
//! makes physical sense, and the relations between keys. One place: `check-config`, `run` and the
//! fuzz target all go through [`daemon_problems`] and [`charge_problems`], and
//! `docs/configuration.md` lists the same ranges (a test compares them).
//!
//! Why bounds at all: a value that parses is not a value that is safe. `stale_after_s = 86400`
//! keeps a silent BMS "connected" with frozen values for a day; `cvl_controller_gain_per_s = 0`
//! switches the cell over-voltage controller off; `1e20` seconds overflows a `Duration`.

use super::DaemonConfig;
use crate::control::ChargeConfig;

/// One violated rule: the key (`field` inside its table) and the message, which names the value
/// given and the allowed range.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The key the problem is reported at.
    pub key: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// An inclusive range for one key, with its unit for messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// The key.
    pub key: &'static str,
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
    /// Unit for messages (`"s"`, `"V"`, ...; may be empty).
    pub unit: &'static str,
    /// True when `min` itself is not allowed (e.g. a gain that must be above 0).
    pub min_exclusive: bool,
}

const fn range(key: &'static str, min: f64, max: f64, unit: &'static str) -> Range {
    Range { key, min, max, unit, min_exclusive: false }
}

const fn above(key: &'static str, min: f64, max: f64, unit: &'static str) -> Range {
    Range { key, min, max, unit, min_exclusive: true }
}

/// A `[charge]` key's range and how to read its value from the config (`None`: an optional key
/// left out). Built by `charge!` from the field name, so key and field cannot disagree.
#[derive(Debug, Clone, Copy)]
pub struct ChargeRange {
    /// The key and its range.
    pub range: Range,
    /// The key's value in a config.
    pub value: fn(&ChargeConfig) -> Option<f64>,
}

macro_rules! charge {
    (optional $make:ident, $key:ident, $min:expr, $max:expr, $unit:expr) => {
        ChargeRange { range: $make(stringify!($key), $min, $max, $unit), value: |c| c.$key }
    };
    ($make:ident, $key:ident, $min:expr, $max:expr, $unit:expr) => {
        ChargeRange { range: $make(stringify!($key), $min, $max, $unit), value: |c| Some(c.$key) }
    };
}

/// Ranges of the `[charge]` keys that stand alone (relations are checked in
/// [`charge_problems`]). Cell voltages are checked against the chemistry's window there.
pub const CHARGE_RANGES: &[ChargeRange] = &[
    charge!(range, absorption_entry_cell_margin, 0.0, 0.1, "V"),
    charge!(above, float_switch_cell_diff, 0.0, 0.2, "V"),
    charge!(range, float_switch_cell_diff_hysteresis, 0.0, 0.05, "V"),
    charge!(range, absorption_time_s, 0.0, 86_400.0, "s"),
    // Top balancing extends absorption at most this long (0: never extended).
    charge!(range, balance_max_time_s, 0.0, 86_400.0, "s"),
    // 0 would never reach float (CVL stays at absorption); 0.1 V/cell/s is a step.
    charge!(range, float_ramp_v_per_cell_per_s, 1e-6, 0.1, "V/cell/s"),
    charge!(above, absorption_exit_cell_margin, 0.0, 0.5, "V"),
    charge!(range, rebulk_soc, 0.0, 100.0, "%"),
    charge!(above, rebulk_cell_diff, 0.0, 0.5, "V"),
    // 0 switches the cell over-voltage controller off; above 1/s it oscillates at a 1 s poll.
    charge!(range, cvl_controller_gain_per_s, 0.001, 1.0, "1/s"),
    charge!(range, cvl_controller_deadband_v, 0.0, 0.05, "V"),
    charge!(range, cvl_recovery_hold_s, 0.0, 3_600.0, "s"),
    charge!(range, cvl_recovery_v_per_s, 1e-4, 1.0, "V/s"),
    charge!(range, max_charge_current, 0.0, 10_000.0, "A"),
    charge!(range, max_discharge_current, 0.0, 10_000.0, "A"),
    charge!(range, current_recovery_hold_s, 0.0, 3_600.0, "s"),
    // 0: a recovering limit steps straight to its target after the hold (no ramp).
    charge!(range, current_recovery_a_per_s, 0.0, 10_000.0, "A/s"),
    // A limit at 0 recovers once the new limit exceeds this fraction: 1 or more never would.
    charge!(range, current_recovery_threshold, 0.0, 0.5, ""),
    charge!(range, lost_discharge_timeout_s, 0.0, 86_400.0, "s"),
    charge!(range, current_average_s, 1.0, 86_400.0, "s"),
    charge!(range, time_to_go_soc, 0.0, 100.0, "%"),
    // Each save is a flash write on a GX; more often than once a minute wears it.
    charge!(range, state_save_interval_s, 60.0, 86_400.0, "s"),
];

/// Optional `[charge]` keys: checked when given.
pub const CHARGE_OPTIONAL_RANGES: &[ChargeRange] = &[
    charge!(optional above, full_charge_every_days, 0.0, 365.0, "days"),
    charge!(optional above, capacity_ah, 0.0, 100_000.0, "Ah"),
];

/// `[[port.battery]] cell_count`.
pub const BATTERY_CELL_COUNT: Range = range("cell_count", 1.0, 48.0, "");

/// How far above `max_cell_voltage` the charge cell-voltage table may still allow current (V).
pub const CCL_ZERO_ABOVE_MAX_V: f64 = 0.05;
/// How far below `min_cell_voltage` the discharge cell-voltage table may still allow current (V).
pub const DCL_ZERO_BELOW_MIN_V: f64 = 0.1;
/// The lowest and highest cell voltage any lithium chemistry this daemon serves may be set to;
/// the chemistry's own window (narrower) is checked as well.
pub const CELL_VOLTAGE_WINDOW_V: (f64, f64) = (1.5, 4.35);

fn number(value: f64) -> String {
    // 0.0001 rather than 1e-4 for people; integers without a trailing .0.
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

impl Range {
    /// The range as people read it: `0.001 to 1 1/s`, `above 0 to 0.2 V`.
    pub fn describe(&self) -> String {
        let unit = if self.unit.is_empty() { String::new() } else { format!(" {}", self.unit) };
        let low = if self.min_exclusive { format!("above {}", number(self.min)) } else { number(self.min) };
        format!("{low} to {}{unit}", number(self.max))
    }

    /// The problem with `value`, if it is outside this range (NaN and infinities always are).
    pub fn check(&self, value: f64) -> Option<Problem> {
        let inside = value.is_finite()
            && value <= self.max
            && if self.min_exclusive { value > self.min } else { value >= self.min };
        (!inside).then(|| Problem {
            key: self.key,
            message: format!("{} is outside the allowed range {}", number(value), self.describe()),
        })
    }
}

/// The allowed `stale_after_s` for a poll interval: from two poll intervals (one missed reply is
/// not a lost BMS) up to 60 s, or three poll intervals where the poll interval is longer.
pub fn stale_after_range(poll_interval_ms: u64) -> Range {
    let poll_s = poll_interval_ms as f64 / 1000.0;
    range("stale_after_s", 2.0 * poll_s, (3.0 * poll_s).max(60.0), "s")
}

/// Problems of `[daemon]`.
pub fn daemon_problems(d: &DaemonConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let poll = range("poll_interval_ms", 100.0, 60_000.0, "ms");
    out.extend(poll.check(d.poll_interval_ms as f64));
    out.extend(stale_after_range(d.poll_interval_ms).check(d.stale_after_s));
    out
}

/// Where a table must reach 0, for [`table_problems`].
#[derive(Debug, Clone, Copy)]
enum ZeroAt {
    /// No rule.
    Anywhere,
    /// The table must be 0 from some x at or below this value upwards.
    FromAtOrBelow(f64),
    /// The table must be 0 from some x at or above this value downwards.
    UpToAtOrAbove(f64),
}

fn table_problems(
    key: &'static str,
    points: &[[f64; 2]],
    x_range: Option<(f64, f64)>,
    zero: ZeroAt,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let problem = |message: String| Problem { key, message };
    if points.is_empty() {
        out.push(problem("needs at least one [x, fraction] pair".to_owned()));
        return out;
    }
    for [x, f] in points {
        if !x.is_finite() || !f.is_finite() || !(0.0..=1.0).contains(f) {
            out.push(problem(format!("[{x}, {f}] needs a finite x and a fraction from 0 to 1")));
        } else if let Some((lo, hi)) = x_range.filter(|(lo, hi)| !(lo..=hi).contains(&x)) {
            out.push(problem(format!("x = {} is outside {} to {}", number(*x), number(lo), number(hi))));
        }
    }
    if points.windows(2).any(|w| matches!(w, [a, b] if a[0] >= b[0])) {
        out.push(problem("the x values must be given in increasing order, each once".to_owned()));
    }
    if !out.is_empty() {
        return out;
    }
    match zero {
        ZeroAt::Anywhere => {}
        ZeroAt::FromAtOrBelow(limit) => {
            // The first x of the run of zeros that ends the table: from there up the limit is 0.
            let zero_from = points.iter().rev().take_while(|p| p[1] == 0.0).last().map(|p| p[0]);
            if !zero_from.is_some_and(|x| x <= limit + 1e-9) {
                out.push(problem(format!(
                    "must reach 0 at or below {} V (max_cell_voltage + {} V), so that no \
                     current flows into a cell above its maximum; it {}",
                    number(limit),
                    number(CCL_ZERO_ABOVE_MAX_V),
                    zero_from.map_or("never reaches 0".to_owned(), |x| format!(
                        "reaches 0 only at {} V",
                        number(x)
                    ))
                )));
            }
        }
        ZeroAt::UpToAtOrAbove(limit) => {
            let zero_to = points.iter().take_while(|p| p[1] == 0.0).last().map(|p| p[0]);
            if !zero_to.is_some_and(|x| x >= limit - 1e-9) {
                out.push(problem(format!(
                    "must reach 0 at or above {} V (min_cell_voltage - {} V), so that no \
                     cell is drained below its minimum; it {}",
                    number(limit),
                    number(DCL_ZERO_BELOW_MIN_V),
                    zero_to.map_or("never reaches 0".to_owned(), |x| format!(
                        "reaches 0 only at {} V",
                        number(x)
                    ))
                )));
            }
        }
    }
    out
}

/// Problems of `[charge]`: every range, the cell-voltage relations and the tables.
pub fn charge_problems(c: &ChargeConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    for r in CHARGE_RANGES.iter().chain(CHARGE_OPTIONAL_RANGES) {
        if let Some(value) = (r.value)(c) {
            out.extend(r.range.check(value));
        }
    }
    // The chemistry's window (LFP 2.5 to 3.65 V ...), inside the window of any lithium cell.
    let (lo, hi) = c.chemistry_ranges();
    let (lo, hi) = (lo.max(CELL_VOLTAGE_WINDOW_V.0), hi.min(CELL_VOLTAGE_WINDOW_V.1));
    let chemistry = c.chemistry.to_string();
    let voltages = [
        ("min_cell_voltage", c.min_cell_voltage),
        ("float_cell_voltage", c.float_cell_voltage),
        ("max_cell_voltage", c.max_cell_voltage),
    ];
    let mut voltages_ok = true;
    for (key, value) in voltages {
        if let Some(mut p) = range(key, lo, hi, "V").check(value) {
            p.message = format!("{p} for chemistry {chemistry}", p = p.message);
            out.push(p);
            voltages_ok = false;
        }
    }
    if let Some(p) =
        range("lost_discharge_safe_cell_voltage", CELL_VOLTAGE_WINDOW_V.0, CELL_VOLTAGE_WINDOW_V.1, "V")
            .check(c.lost_discharge_safe_cell_voltage)
    {
        out.push(p);
        voltages_ok = false;
    }
    if !voltages_ok {
        return out;
    }
    let (min, float, max) = (c.min_cell_voltage, c.float_cell_voltage, c.max_cell_voltage);
    if min >= max {
        out.push(Problem {
            key: "min_cell_voltage",
            message: format!("{} V must be below max_cell_voltage ({} V)", number(min), number(max)),
        });
    } else if !(float > min && float <= max) {
        out.push(Problem {
            key: "float_cell_voltage",
            message: format!(
                "{} V must be above min_cell_voltage ({} V) and at most max_cell_voltage ({} V)",
                number(float),
                number(min),
                number(max)
            ),
        });
    }
    let safe = c.lost_discharge_safe_cell_voltage;
    if !(min..=max).contains(&safe) {
        out.push(Problem {
            key: "lost_discharge_safe_cell_voltage",
            message: format!(
                "{} V must lie from min_cell_voltage ({} V) to max_cell_voltage ({} V)",
                number(safe),
                number(min),
                number(max)
            ),
        });
    }
    if c.rebulk_cell_diff <= c.float_switch_cell_diff {
        out.push(Problem {
            key: "rebulk_cell_diff",
            message: format!(
                "{} V must be above float_switch_cell_diff ({} V), or float and bulk take turns \
                 every poll",
                number(c.rebulk_cell_diff),
                number(c.float_switch_cell_diff)
            ),
        });
    }
    let temperature = Some((-60.0, 150.0));
    let (charge_cells, discharge_cells) = (c.charge_cell_table(), c.discharge_cell_table());
    let tables = [
        // Left out (empty): derived from the cell voltages; the table in force is checked.
        (
            "charge_cell_voltage_table",
            &charge_cells,
            Some((lo, hi + 0.5)),
            ZeroAt::FromAtOrBelow(max + CCL_ZERO_ABOVE_MAX_V),
        ),
        (
            "discharge_cell_voltage_table",
            &discharge_cells,
            Some((lo - 0.5, hi)),
            ZeroAt::UpToAtOrAbove(min - DCL_ZERO_BELOW_MIN_V),
        ),
        ("charge_temperature_table", &c.charge_temperature_table, temperature, ZeroAt::Anywhere),
        ("discharge_temperature_table", &c.discharge_temperature_table, temperature, ZeroAt::Anywhere),
        ("mosfet_temperature_table", &c.mosfet_temperature_table, temperature, ZeroAt::Anywhere),
        ("charge_soc_table", &c.charge_soc_table, Some((0.0, 100.0)), ZeroAt::Anywhere),
        ("discharge_soc_table", &c.discharge_soc_table, Some((0.0, 100.0)), ZeroAt::Anywhere),
    ];
    for (key, points, x_range, zero) in tables {
        out.extend(table_problems(key, points, x_range, zero));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &ChargeConfig) -> Vec<&'static str> {
        charge_problems(c).iter().map(|p| p.key).collect()
    }

    #[test]
    fn the_defaults_pass() {
        assert_eq!(charge_problems(&ChargeConfig::default()), vec![]);
        assert_eq!(daemon_problems(&DaemonConfig::default()), vec![]);
    }

    /// Every case of the safety issue that `check-config` used to accept.
    #[test]
    fn the_careless_values_of_the_issue_are_refused_with_their_range() {
        let d = DaemonConfig { stale_after_s: 86_400.0, ..DaemonConfig::default() };
        let p = daemon_problems(&d);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].message, "86400 is outside the allowed range 2 to 60 s");
        for value in [1e300, f64::NAN, f64::INFINITY, 1.0] {
            let d = DaemonConfig { stale_after_s: value, ..DaemonConfig::default() };
            assert_eq!(daemon_problems(&d).len(), 1, "{value}");
        }
        // A 30 s poll may wait three polls.
        let d = DaemonConfig { poll_interval_ms: 30_000, stale_after_s: 90.0, ..DaemonConfig::default() };
        assert_eq!(daemon_problems(&d), vec![]);
        type Case = (&'static str, fn(&mut ChargeConfig));
        let cases: &[Case] = &[
            ("cvl_controller_gain_per_s", |c| c.cvl_controller_gain_per_s = 0.0),
            ("cvl_controller_deadband_v", |c| c.cvl_controller_deadband_v = 5.0),
            ("max_cell_voltage", |c| c.max_cell_voltage = 4.35),
            ("rebulk_soc", |c| c.rebulk_soc = 150.0),
            ("time_to_go_soc", |c| c.time_to_go_soc = f64::NAN),
            ("capacity_ah", |c| c.capacity_ah = Some(-5.0)),
            ("current_recovery_threshold", |c| c.current_recovery_threshold = 2.0),
            ("float_ramp_v_per_cell_per_s", |c| c.float_ramp_v_per_cell_per_s = 0.0),
            ("state_save_interval_s", |c| c.state_save_interval_s = 0.0),
            ("cvl_recovery_hold_s", |c| c.cvl_recovery_hold_s = 1e20),
            ("current_recovery_hold_s", |c| c.current_recovery_hold_s = 1e19),
            ("full_charge_every_days", |c| c.full_charge_every_days = Some(0.0)),
        ];
        for (key, set) in cases {
            let mut c = ChargeConfig::default();
            set(&mut c);
            assert_eq!(keys(&c), vec![*key], "{:?}", charge_problems(&c));
        }
    }

    #[test]
    fn messages_name_the_value_and_the_range() {
        let c = ChargeConfig { cvl_controller_gain_per_s: 0.0, ..ChargeConfig::default() };
        assert_eq!(charge_problems(&c)[0].message, "0 is outside the allowed range 0.001 to 1 1/s");
        let c = ChargeConfig { min_cell_voltage: 3.6, ..ChargeConfig::default() };
        let p = charge_problems(&c);
        assert_eq!(p[0].key, "min_cell_voltage");
        assert_eq!(p[0].message, "3.6 V must be below max_cell_voltage (3.45 V)");
        let c = ChargeConfig { float_cell_voltage: 3.5, ..ChargeConfig::default() };
        assert!(charge_problems(&c)[0].message.contains("at most max_cell_voltage (3.45 V)"));
    }

    #[test]
    fn the_charge_table_must_stop_the_current_near_max_cell_voltage() {
        // The old default table reaches 0 at 3.5 V; with max 3.40 V that is 0.1 V too late.
        let c = ChargeConfig {
            max_cell_voltage: 3.40,
            float_cell_voltage: 3.35,
            charge_cell_voltage_table: vec![[3.375, 1.0], [3.45, 0.005], [3.5, 0.0]],
            ..ChargeConfig::default()
        };
        let p = charge_problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message.contains("at or below 3.45 V") && p[0].message.contains("only at 3.5 V"),
            "{p:?}"
        );
        let never = ChargeConfig {
            charge_cell_voltage_table: vec![[3.4, 1.0], [3.5, 0.1]],
            ..ChargeConfig::default()
        };
        assert!(charge_problems(&never)[0].message.contains("never reaches 0"));
        let late_dcl = ChargeConfig {
            discharge_cell_voltage_table: vec![[2.7, 0.0], [3.2, 1.0]],
            ..ChargeConfig::default()
        };
        assert_eq!(keys(&late_dcl), vec!["discharge_cell_voltage_table"]);
    }

    #[test]
    fn tables_must_be_sorted_with_fractions_from_0_to_1() {
        let c = ChargeConfig {
            mosfet_temperature_table: vec![[80.0, 0.25], [70.0, 1.0]],
            ..ChargeConfig::default()
        };
        assert!(charge_problems(&c)[0].message.contains("increasing order"));
        let c = ChargeConfig { charge_soc_table: vec![[85.0, 1.5]], ..ChargeConfig::default() };
        assert_eq!(keys(&c), vec!["charge_soc_table"]);
        let c = ChargeConfig { charge_soc_table: vec![[185.0, 1.0]], ..ChargeConfig::default() };
        assert_eq!(keys(&c), vec!["charge_soc_table"]);
        let c = ChargeConfig { charge_temperature_table: vec![], ..ChargeConfig::default() };
        assert_eq!(keys(&c), vec!["charge_temperature_table"]);
    }

    #[test]
    fn every_range_has_a_key_that_exists() {
        let c = ChargeConfig {
            full_charge_every_days: Some(1.0),
            capacity_ah: Some(1.0),
            ..ChargeConfig::default()
        };
        for r in CHARGE_RANGES.iter().chain(CHARGE_OPTIONAL_RANGES) {
            assert!((r.value)(&c).is_some(), "{}", r.range.key);
            assert!(r.range.min < r.range.max, "{}", r.range.key);
        }
    }
}
