//! The `[charge]` config section: every knob of charge control with its default.
//!
//! Per-cell voltages are multiplied by the series cell count to give pack voltages, so one config
//! serves 4S and 16S packs alike. `docs/charge-control.md` explains each rule these keys feed.

use serde::{Deserialize, Serialize};

/// A limit table: `[x, fraction]` pairs (fraction of the configured maximum current, 0..=1).
/// Given in any x order; evaluated by [`super::tables::fraction`].
pub type Table = Vec<[f64; 2]>;

/// How a table is read between its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableMode {
    /// Straight line between the two neighbouring points.
    #[default]
    Linear,
    /// The more restrictive (smaller) of the two neighbouring points.
    Step,
}

/// Where the published `/Soc` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocSource {
    /// The BMS's own state of charge.
    #[default]
    Bms,
    /// Coulomb counting in bms-bridge (BMS value kept as `/SocBms`).
    Calculated,
}

/// The `[charge]` section of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChargeConfig {
    /// Lowest allowed cell voltage (V); times cells = `/Info/BatteryLowVoltage` and the CVL floor.
    pub min_cell_voltage: f64,
    /// Highest cell voltage charging may reach (V); times cells = bulk/absorption CVL.
    pub max_cell_voltage: f64,
    /// Cell voltage held in float (V).
    pub float_cell_voltage: f64,
    /// Absorption starts when the pack is within this many volts per cell of max (V/cell).
    pub absorption_entry_cell_margin: f64,
    /// Absorption may start only while max - min cell is at most this (V).
    pub float_switch_cell_diff: f64,
    /// The absorption timer restarts while the spread exceeds `float_switch_cell_diff` + this (V).
    pub float_switch_cell_diff_hysteresis: f64,
    /// Time spent in absorption before float (s).
    pub absorption_time_s: f64,
    /// CVL ramp from absorption down to float, per cell (V/cell/s).
    pub float_ramp_v_per_cell_per_s: f64,
    /// Absorption is abandoned when the pack falls this far per cell below max (V/cell).
    pub absorption_exit_cell_margin: f64,
    /// Float returns to bulk below this SoC (%).
    pub rebulk_soc: f64,
    /// Float returns to bulk when max - min cell reaches this (V).
    pub rebulk_cell_diff: f64,
    /// Float returns to bulk when this many days passed since the last full charge (off if unset).
    pub full_charge_every_days: Option<f64>,
    /// Cell over-voltage controller: CVL change per cell, per second, per volt of cell error (1/s).
    pub cvl_controller_gain_per_s: f64,
    /// The controller ignores cell errors smaller than this (V), so CVL does not hunt.
    pub cvl_controller_deadband_v: f64,
    /// After the controller lowered CVL, it is held this long before recovering (s).
    pub cvl_recovery_hold_s: f64,
    /// CVL recovery rate after the hold, pack volts per second (V/s).
    pub cvl_recovery_v_per_s: f64,
    /// Charge current limit from the installation (A).
    pub max_charge_current: f64,
    /// Discharge current limit from the installation (A).
    pub max_discharge_current: f64,
    /// How tables are read between points.
    pub table_mode: TableMode,
    /// CCL fraction over the highest cell voltage (V).
    pub charge_cell_voltage_table: Table,
    /// DCL fraction over the lowest cell voltage (V).
    pub discharge_cell_voltage_table: Table,
    /// CCL fraction over temperature, applied to the coldest and the hottest sensor (°C).
    pub charge_temperature_table: Table,
    /// DCL fraction over temperature, applied to the coldest and the hottest sensor (°C).
    pub discharge_temperature_table: Table,
    /// CCL and DCL fraction over MOSFET temperature (°C).
    pub mosfet_temperature_table: Table,
    /// Apply `charge_soc_table`.
    pub charge_soc_limit: bool,
    /// CCL fraction over SoC (%).
    pub charge_soc_table: Table,
    /// Apply `discharge_soc_table`.
    pub discharge_soc_limit: bool,
    /// DCL fraction over SoC (%).
    pub discharge_soc_table: Table,
    /// A raised current limit is held this long before it ramps up (s).
    pub current_recovery_hold_s: f64,
    /// Ramp rate of a recovering current limit (A/s).
    pub current_recovery_a_per_s: f64,
    /// A limit at 0 stays at 0 until the new limit exceeds this fraction of the maximum.
    pub current_recovery_threshold: f64,
    /// After the BMS is lost, DCL drops to 0 after this long if the last lowest cell was healthy (s).
    pub lost_discharge_timeout_s: f64,
    /// "Healthy" lowest cell for the rule above (V); below it (or unknown) DCL drops after 60 s.
    pub lost_discharge_safe_cell_voltage: f64,
    /// Source of the published SoC.
    pub soc_source: SocSource,
    /// Capacity for coulomb counting when the BMS reports none (Ah).
    pub capacity_ah: Option<f64>,
    /// Time constant of the current average behind `/TimeToGo` (s).
    pub current_average_s: f64,
    /// `/TimeToGo` counts down to this SoC while discharging (%).
    pub time_to_go_soc: f64,
    /// Outside phase changes, state is offered for saving at most this often (s).
    pub state_save_interval_s: f64,
}

fn table(points: &[[f64; 2]]) -> Table {
    points.to_vec()
}

impl Default for ChargeConfig {
    fn default() -> Self {
        Self {
            min_cell_voltage: 2.900,
            max_cell_voltage: 3.450,
            float_cell_voltage: 3.375,
            absorption_entry_cell_margin: 0.005,
            float_switch_cell_diff: 0.010,
            float_switch_cell_diff_hysteresis: 0.003,
            absorption_time_s: 900.0,
            float_ramp_v_per_cell_per_s: 0.0001,
            absorption_exit_cell_margin: 0.030,
            rebulk_soc: 80.0,
            rebulk_cell_diff: 0.080,
            full_charge_every_days: None,
            cvl_controller_gain_per_s: 0.05,
            cvl_controller_deadband_v: 0.002,
            cvl_recovery_hold_s: 60.0,
            cvl_recovery_v_per_s: 0.001,
            max_charge_current: 50.0,
            max_discharge_current: 60.0,
            table_mode: TableMode::Linear,
            charge_cell_voltage_table: table(&[
                [3.375, 1.0],
                [3.400, 0.25],
                [3.425, 0.05],
                [3.450, 0.005],
                [3.500, 0.0],
            ]),
            discharge_cell_voltage_table: table(&[
                [2.800, 0.0],
                [2.900, 0.005],
                [3.000, 0.05],
                [3.100, 0.25],
                [3.190, 1.0],
            ]),
            charge_temperature_table: table(&[
                [0.0, 0.0],
                [2.0, 0.25],
                [5.0, 0.5],
                [10.0, 1.0],
                [40.0, 1.0],
                [45.0, 0.5],
                [50.0, 0.25],
                [55.0, 0.0],
            ]),
            discharge_temperature_table: table(&[
                [-10.0, 0.0],
                [0.0, 0.25],
                [5.0, 0.5],
                [10.0, 1.0],
                [40.0, 1.0],
                [45.0, 0.5],
                [50.0, 0.25],
                [55.0, 0.0],
            ]),
            mosfet_temperature_table: table(&[[70.0, 1.0], [80.0, 0.25], [90.0, 0.0]]),
            charge_soc_limit: false,
            charge_soc_table: table(&[[85.0, 1.0], [90.0, 0.5], [95.0, 0.2], [98.0, 0.1]]),
            discharge_soc_limit: false,
            discharge_soc_table: table(&[[5.0, 0.1], [10.0, 0.2], [15.0, 0.5], [20.0, 1.0]]),
            current_recovery_hold_s: 30.0,
            current_recovery_a_per_s: 5.0,
            current_recovery_threshold: 0.015,
            lost_discharge_timeout_s: 1800.0,
            lost_discharge_safe_cell_voltage: 3.225,
            soc_source: SocSource::Bms,
            capacity_ah: None,
            current_average_s: 300.0,
            time_to_go_soc: 20.0,
            state_save_interval_s: 900.0,
        }
    }
}

impl ChargeConfig {
    /// Every problem with this config, worded for the user; empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (min, max, float) = (self.min_cell_voltage, self.max_cell_voltage, self.float_cell_voltage);
        if !(min.is_finite() && max.is_finite() && min > 0.0 && min < max) {
            out.push(format!("min_cell_voltage {min} must be above 0 and below max_cell_voltage {max}"));
        }
        if !(float >= min && float <= max) {
            out.push(format!("float_cell_voltage {float} must lie within [{min}, {max}]"));
        }
        let non_negative = [
            ("absorption_entry_cell_margin", self.absorption_entry_cell_margin),
            ("float_switch_cell_diff", self.float_switch_cell_diff),
            ("float_switch_cell_diff_hysteresis", self.float_switch_cell_diff_hysteresis),
            ("absorption_time_s", self.absorption_time_s),
            ("float_ramp_v_per_cell_per_s", self.float_ramp_v_per_cell_per_s),
            ("absorption_exit_cell_margin", self.absorption_exit_cell_margin),
            ("rebulk_cell_diff", self.rebulk_cell_diff),
            ("cvl_controller_gain_per_s", self.cvl_controller_gain_per_s),
            ("cvl_controller_deadband_v", self.cvl_controller_deadband_v),
            ("cvl_recovery_hold_s", self.cvl_recovery_hold_s),
            ("cvl_recovery_v_per_s", self.cvl_recovery_v_per_s),
            ("max_charge_current", self.max_charge_current),
            ("max_discharge_current", self.max_discharge_current),
            ("current_recovery_hold_s", self.current_recovery_hold_s),
            ("current_recovery_a_per_s", self.current_recovery_a_per_s),
            ("current_recovery_threshold", self.current_recovery_threshold),
            ("lost_discharge_timeout_s", self.lost_discharge_timeout_s),
            ("current_average_s", self.current_average_s),
            ("state_save_interval_s", self.state_save_interval_s),
        ];
        for (key, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                out.push(format!("{key} {value} must be a number >= 0"));
            }
        }
        let tables = [
            ("charge_cell_voltage_table", &self.charge_cell_voltage_table),
            ("discharge_cell_voltage_table", &self.discharge_cell_voltage_table),
            ("charge_temperature_table", &self.charge_temperature_table),
            ("discharge_temperature_table", &self.discharge_temperature_table),
            ("mosfet_temperature_table", &self.mosfet_temperature_table),
            ("charge_soc_table", &self.charge_soc_table),
            ("discharge_soc_table", &self.discharge_soc_table),
        ];
        for (key, points) in tables {
            if points.is_empty() {
                out.push(format!("{key} needs at least one [x, fraction] pair"));
            }
            for [x, f] in points {
                if !x.is_finite() || !(0.0..=1.0).contains(f) {
                    out.push(format!("{key}: [{x}, {f}] needs a finite x and a fraction in 0..=1"));
                }
            }
        }
        if let Some(days) = self.full_charge_every_days {
            if !(days.is_finite() && days > 0.0) {
                out.push(format!("full_charge_every_days {days} must be above 0"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_issue() {
        let cfg = ChargeConfig::default();
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        assert_eq!(cfg.max_cell_voltage, 3.450);
        assert_eq!(cfg.absorption_time_s, 900.0);
    }

    #[test]
    fn toml_section_parses_and_rejects_unknown_keys() {
        let cfg: ChargeConfig =
            toml::from_str("max_cell_voltage = 3.5\ntable_mode = \"step\"\nsoc_source = \"calculated\"")
                .unwrap();
        assert_eq!(cfg.max_cell_voltage, 3.5);
        assert_eq!(cfg.table_mode, TableMode::Step);
        assert_eq!(cfg.soc_source, SocSource::Calculated);
        assert!(toml::from_str::<ChargeConfig>("max_cel_voltage = 3.5").is_err());
    }

    /// Every key of the example config, uncommented, parses; keys without a default
    /// (shown with an example value) are the only differences from `ChargeConfig::default()`.
    #[test]
    fn example_config_lists_every_key_with_its_default() {
        let text = include_str!("../../config/bms-bridge.toml");
        // The [charge] table of the example: from its header to the next table.
        let section = text.split("\n[charge]\n").nth(1).unwrap_or("");
        let section = section.split("\n[").next().unwrap_or("");
        let body: String = section
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed: ChargeConfig = match toml::from_str(&body) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let expected = ChargeConfig {
            full_charge_every_days: parsed.full_charge_every_days,
            capacity_ah: parsed.capacity_ah,
            ..ChargeConfig::default()
        };
        assert_eq!(parsed, expected);
        let listed = body.lines().count();
        let fields = match serde_json::to_value(&expected) {
            Ok(serde_json::Value::Object(map)) => map.len(),
            _ => 0,
        };
        assert_eq!(listed, fields, "every key is listed once");
    }

    #[test]
    fn bad_values_are_reported() {
        let cfg = ChargeConfig {
            float_cell_voltage: 3.6,
            charge_temperature_table: vec![[0.0, 1.5]],
            ..ChargeConfig::default()
        };
        assert_eq!(cfg.problems().len(), 2, "{:?}", cfg.problems());
    }
}
