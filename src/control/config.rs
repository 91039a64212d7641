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

/// The cell chemistry: it gives the default cell voltages (and through them the default cell
/// voltage tables) and the range of cell voltages a config may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chemistry {
    /// Lithium iron phosphate (LiFePO4).
    #[default]
    Lfp,
    /// Lithium titanate.
    Lto,
    /// Nickel manganese cobalt oxide ("li-ion").
    #[serde(alias = "li-ion")]
    Nmc,
}

impl std::fmt::Display for Chemistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Chemistry::Lfp => "lfp",
            Chemistry::Lto => "lto",
            Chemistry::Nmc => "nmc",
        })
    }
}

impl Chemistry {
    /// Default (min, max, float) cell voltages (V).
    pub fn default_voltages(self) -> (f64, f64, f64) {
        match self {
            // The incumbent's LFP defaults: 3.45 V charges to about 99 %, well inside 3.65 V.
            Self::Lfp => (2.900, 3.450, 3.375),
            // LTO cells are specified 1.5..2.7-2.85 V (Toshiba SCiB, Yinlong); 2.70 V leaves margin.
            Self::Lto => (1.900, 2.700, 2.600),
            // NMC cells are specified 2.5-3.0..4.2 V; 4.10 V trades 5-10 % capacity for life.
            Self::Nmc => (3.200, 4.100, 4.000),
        }
    }

    /// The range of cell voltages (V) the datasheets allow for this chemistry; min, float and
    /// max cell voltage must lie within it.
    pub fn cell_voltage_range(self) -> (f64, f64) {
        match self {
            Self::Lfp => (2.5, 3.65),
            Self::Lto => (1.5, 2.85),
            Self::Nmc => (2.8, 4.25),
        }
    }

    /// Name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lfp => "lfp",
            Self::Lto => "lto",
            Self::Nmc => "nmc",
        }
    }
}

/// The derived charge cell-voltage table reaches 0 this far above `max_cell_voltage` (V).
pub const CHARGE_TABLE_ZERO_ABOVE_MAX_V: f64 = 0.05;
/// The derived discharge cell-voltage table reaches 0 this far below `min_cell_voltage` (V).
pub const DISCHARGE_TABLE_ZERO_BELOW_MIN_V: f64 = 0.1;

/// Bits of the "not given" marker the voltages carry between parsing and filling in the
/// chemistry's defaults: a NaN no TOML or JSON text can produce, so a written `nan` stays
/// visible to validation.
const UNSET_BITS: u64 = 0x7ff8_dead_beef_0001;

fn unset_voltage() -> f64 {
    f64::from_bits(UNSET_BITS)
}

/// The `[charge]` section of the config file.
///
/// `chemistry` gives `min_cell_voltage`, `max_cell_voltage` and `float_cell_voltage` when they
/// are left out; an empty (or left out) `charge_cell_voltage_table` /
/// `discharge_cell_voltage_table` is derived from the cell voltages in force (see
/// [`ChargeConfig::charge_cell_table`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, default)]
pub struct ChargeConfig {
    /// Cell chemistry: default voltages, derived tables, allowed voltage range.
    pub chemistry: Chemistry,
    /// Lowest allowed cell voltage (V); times cells = `/Info/BatteryLowVoltage` and the CVL floor.
    #[serde(default = "unset_voltage")]
    pub min_cell_voltage: f64,
    /// Highest cell voltage charging may reach (V); times cells = bulk/absorption CVL.
    #[serde(default = "unset_voltage")]
    pub max_cell_voltage: f64,
    /// Cell voltage held in float (V).
    #[serde(default = "unset_voltage")]
    pub float_cell_voltage: f64,
    /// Absorption starts when the pack is within this many volts per cell of max (V/cell).
    pub absorption_entry_cell_margin: f64,
    /// Cells count as balanced when max - min cell is at most this (V): absorption ends only
    /// then, or when top balancing stops (see `balance_max_time_s`).
    pub float_switch_cell_diff: f64,
    /// Top balancing starts when the spread exceeds `float_switch_cell_diff` + this (V).
    pub float_switch_cell_diff_hysteresis: f64,
    /// Time spent in absorption before float (s).
    pub absorption_time_s: f64,
    /// Top balancing: absorption is extended at most this long while the spread shrinks (s).
    pub balance_max_time_s: f64,
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
    /// CCL fraction over the highest cell voltage (V). Empty = derived from `max_cell_voltage`
    /// and applied by imbalance (see `docs/charge-control.md` §4); given = applied as written.
    pub charge_cell_voltage_table: Table,
    /// DCL fraction over the lowest cell voltage (V). Empty = derived from `min_cell_voltage`.
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

impl<'de> Deserialize<'de> for ChargeConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut cfg = ChargeConfig::deserialize(deserializer)?;
        cfg.fill_chemistry_defaults();
        Ok(cfg)
    }
}

impl Serialize for ChargeConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ChargeConfig::serialize(self, serializer)
    }
}

impl Default for ChargeConfig {
    fn default() -> Self {
        Self::for_chemistry(Chemistry::Lfp)
    }
}

impl ChargeConfig {
    /// The defaults for `chemistry`: its cell voltages, everything else as for LFP.
    pub fn for_chemistry(chemistry: Chemistry) -> Self {
        let (min_cell_voltage, max_cell_voltage, float_cell_voltage) = chemistry.default_voltages();
        Self { chemistry, min_cell_voltage, max_cell_voltage, float_cell_voltage, ..Self::lfp() }
    }

    /// Voltages left out of the file take the chemistry's values.
    fn fill_chemistry_defaults(&mut self) {
        let (min, max, float) = self.chemistry.default_voltages();
        for (field, default) in [
            (&mut self.min_cell_voltage, min),
            (&mut self.max_cell_voltage, max),
            (&mut self.float_cell_voltage, float),
        ] {
            if field.to_bits() == UNSET_BITS {
                *field = default;
            }
        }
    }

    /// The range of cell voltages (V) the chemistry allows: min, float and max cell voltage must
    /// lie within it (checked by the config validation).
    pub fn chemistry_ranges(&self) -> (f64, f64) {
        self.chemistry.cell_voltage_range()
    }

    /// True when `charge_cell_voltage_table` is left to the default (derived, imbalance-weighted).
    pub fn charge_table_is_derived(&self) -> bool {
        self.charge_cell_voltage_table.is_empty()
    }

    /// The charge cell-voltage table in force: the configured one, else derived from
    /// `max_cell_voltage`: full current up to max - 0.05 V, 5 % at max, 0 at max + 0.05 V.
    pub fn charge_cell_table(&self) -> Table {
        if !self.charge_table_is_derived() {
            return self.charge_cell_voltage_table.clone();
        }
        let max = self.max_cell_voltage;
        let band = CHARGE_TABLE_ZERO_ABOVE_MAX_V;
        table(&[[max - band, 1.0], [max, 0.05], [max + band, 0.0]])
    }

    /// The discharge cell-voltage table in force: the configured one, else derived from
    /// `min_cell_voltage` (for LFP's 2.9 V the incumbent's table: 0 at 2.8 V, full at 3.19 V).
    pub fn discharge_cell_table(&self) -> Table {
        if !self.discharge_cell_voltage_table.is_empty() {
            return self.discharge_cell_voltage_table.clone();
        }
        let min = self.min_cell_voltage;
        table(&[
            [min - DISCHARGE_TABLE_ZERO_BELOW_MIN_V, 0.0],
            [min, 0.005],
            [min + 0.1, 0.05],
            [min + 0.2, 0.25],
            [min + 0.29, 1.0],
        ])
    }

    fn lfp() -> Self {
        Self {
            chemistry: Chemistry::Lfp,
            min_cell_voltage: 2.900,
            max_cell_voltage: 3.450,
            float_cell_voltage: 3.375,
            absorption_entry_cell_margin: 0.005,
            float_switch_cell_diff: 0.010,
            float_switch_cell_diff_hysteresis: 0.003,
            absorption_time_s: 900.0,
            balance_max_time_s: 7200.0,
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
            charge_cell_voltage_table: Table::new(),
            discharge_cell_voltage_table: Table::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_issue() {
        let cfg = ChargeConfig::default();
        let problems = crate::config::rules::charge_problems(&cfg);
        assert!(problems.is_empty(), "{problems:?}");
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
    fn chemistry_gives_the_voltages_left_out_and_explicit_values_win() {
        let parse = |text: &str| match toml::from_str::<ChargeConfig>(text) {
            Ok(c) => c,
            Err(e) => panic!("{text}: {e}"),
        };
        let lto = parse("chemistry = \"lto\"");
        assert_eq!(lto.chemistry, Chemistry::Lto);
        assert_eq!((lto.min_cell_voltage, lto.max_cell_voltage, lto.float_cell_voltage), (1.9, 2.7, 2.6));
        assert_eq!(lto.chemistry_ranges(), (1.5, 2.85));
        let nmc = parse("chemistry = \"li-ion\"\nmax_cell_voltage = 4.15");
        assert_eq!(nmc.chemistry, Chemistry::Nmc);
        assert_eq!((nmc.min_cell_voltage, nmc.max_cell_voltage, nmc.float_cell_voltage), (3.2, 4.15, 4.0));
        assert_eq!(nmc.chemistry_ranges(), (2.8, 4.25));
        // Derived tables follow the voltages in force.
        let near = |t: Table, want: &[[f64; 2]]| {
            t.len() == want.len()
                && t.iter().zip(want).all(|(a, b)| (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9)
        };
        assert!(near(nmc.charge_cell_table(), &[[4.1, 1.0], [4.15, 0.05], [4.2, 0.0]]));
        assert!(nmc.discharge_cell_table().first().is_some_and(|p| (p[0] - 3.1).abs() < 1e-9 && p[1] == 0.0));
        let lfp = parse("");
        assert_eq!(lfp, ChargeConfig::default());
        assert_eq!(lfp.chemistry_ranges(), (2.5, 3.65));
        // A written nan is not "left out": validation sees it.
        assert!(parse("max_cell_voltage = nan").max_cell_voltage.is_nan());
        assert!(!crate::config::rules::charge_problems(&parse("max_cell_voltage = nan")).is_empty());
        assert!(toml::from_str::<ChargeConfig>("chemistry = \"lead\"").is_err());
        // Round trip: the written config reads back the same, derived tables stay derived.
        let text = toml::to_string(&nmc).unwrap_or_default();
        assert_eq!(parse(&text), nmc);
    }

    #[test]
    fn explicit_cell_tables_are_kept_as_written() {
        let cfg: ChargeConfig =
            toml::from_str("charge_cell_voltage_table = [[3.4, 1.0], [3.5, 0.0]]").unwrap_or_default();
        assert!(!cfg.charge_table_is_derived());
        assert_eq!(cfg.charge_cell_table(), vec![[3.4, 1.0], [3.5, 0.0]]);
    }

    #[test]
    fn bad_values_are_reported() {
        let cfg = ChargeConfig {
            float_cell_voltage: 3.6,
            charge_temperature_table: vec![[0.0, 1.5]],
            ..ChargeConfig::default()
        };
        let problems = crate::config::rules::charge_problems(&cfg);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
