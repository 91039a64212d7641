//! Charge control: CVL, CCL and DCL from the battery model.
//!
//! Pure and synchronous: `now` is passed in, nothing here reads a clock, sleeps or logs.

use crate::battery::Battery;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// The `[charge]` section of the config file. Per-cell voltages are multiplied by the series cell
/// count to give pack voltages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChargeConfig {
    /// Lowest allowed cell voltage (V); times cells = `/Info/BatteryLowVoltage`.
    pub min_cell_voltage: f64,
    /// Highest cell voltage charging may reach (V).
    pub max_cell_voltage: f64,
    /// Cell voltage held in float (V).
    pub float_cell_voltage: f64,
    /// Charge current limit from the installation (A).
    pub max_charge_current: f64,
    /// Discharge current limit from the installation (A).
    pub max_discharge_current: f64,
    /// After the BMS is lost, DCL drops to 0 after this long if the last lowest cell was healthy (s).
    pub lost_discharge_timeout_s: f64,
    /// "Healthy" lowest cell for the rule above (V).
    pub lost_discharge_safe_cell_voltage: f64,
}

impl Default for ChargeConfig {
    fn default() -> Self {
        Self {
            min_cell_voltage: 2.900,
            max_cell_voltage: 3.450,
            float_cell_voltage: 3.375,
            max_charge_current: 50.0,
            max_discharge_current: 60.0,
            lost_discharge_timeout_s: 1800.0,
            lost_discharge_safe_cell_voltage: 3.225,
        }
    }
}

/// Whether the BMS is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Readings are fresh.
    Online,
    /// No good reading within the grace period; `since` is the time of the last good reading
    /// (or of start-up when there never was one).
    Lost {
        /// Time of the last good reading.
        since: Instant,
    },
}

/// What the control publishes. `None` means "not known yet" (no cell count, no reading ever).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChargeLimits {
    /// Charge voltage limit (`/Info/MaxChargeVoltage`).
    pub charge_voltage_v: Option<f64>,
    /// Charge current limit (`/Info/MaxChargeCurrent`).
    pub charge_current_a: Option<f64>,
    /// Discharge current limit (`/Info/MaxDischargeCurrent`).
    pub discharge_current_a: Option<f64>,
    /// Low voltage limit (`/Info/BatteryLowVoltage`).
    pub low_voltage_v: Option<f64>,
    /// Phase and what shapes CVL (`/Info/ChargeMode`).
    pub charge_mode: String,
    /// Rule that set CCL (`/Info/ChargeLimitation`).
    pub charge_limitation: String,
    /// Rule that set DCL (`/Info/DischargeLimitation`).
    pub discharge_limitation: String,
}

/// Holds what control remembers between polls.
#[derive(Debug, Clone)]
pub struct ChargeController {
    config: ChargeConfig,
    cells: Option<u16>,
    last: ChargeLimits,
    last_min_cell_v: Option<f64>,
}

impl ChargeController {
    /// A controller with no history.
    pub fn new(config: ChargeConfig) -> Self {
        Self { config, cells: None, last: ChargeLimits::default(), last_min_cell_v: None }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ChargeConfig {
        &self.config
    }

    /// Computes the limits for this poll.
    pub fn update(&mut self, now: Instant, battery: &Battery, link: Link) -> ChargeLimits {
        if let Some(cells) = battery.cells_in_series() {
            self.cells = Some(cells);
        }
        let cells = self.cells.map(f64::from);
        let cfg = &self.config;
        let limits = match link {
            Link::Online => {
                if let Some((_, v)) = battery.min_cell() {
                    self.last_min_cell_v = Some(v);
                }
                let (ccl, charge_reason) = if battery.charge_fet == Some(false) {
                    (0.0, "BMS charge FET off")
                } else {
                    (cfg.max_charge_current, "Config max")
                };
                let (dcl, discharge_reason) = if battery.discharge_fet == Some(false) {
                    (0.0, "BMS discharge FET off")
                } else {
                    (cfg.max_discharge_current, "Config max")
                };
                ChargeLimits {
                    charge_voltage_v: cells.map(|n| n * cfg.max_cell_voltage),
                    charge_current_a: Some(ccl),
                    discharge_current_a: Some(dcl),
                    low_voltage_v: cells.map(|n| n * cfg.min_cell_voltage),
                    charge_mode: "Bulk".to_owned(),
                    charge_limitation: charge_reason.to_owned(),
                    discharge_limitation: discharge_reason.to_owned(),
                }
            }
            Link::Lost { since } => {
                let healthy = self.last_min_cell_v.is_some_and(|v| v >= cfg.lost_discharge_safe_cell_voltage);
                let timeout = if healthy {
                    Duration::from_secs_f64(cfg.lost_discharge_timeout_s.max(0.0))
                } else {
                    Duration::from_secs(60)
                };
                let expired = now.saturating_duration_since(since) >= timeout;
                let (dcl, discharge_reason) = if expired {
                    (Some(0.0), "BMS lost: discharge stopped")
                } else {
                    (
                        self.last.discharge_current_a.or(Some(cfg.max_discharge_current)),
                        "BMS lost: last limit held",
                    )
                };
                ChargeLimits {
                    charge_voltage_v: cells.map(|n| n * cfg.float_cell_voltage),
                    charge_current_a: Some(0.0),
                    discharge_current_a: if expired { dcl } else { dcl.map(|d| d.max(0.0)) },
                    low_voltage_v: cells.map(|n| n * cfg.min_cell_voltage),
                    charge_mode: "BMS lost: float".to_owned(),
                    charge_limitation: "BMS lost".to_owned(),
                    discharge_limitation: discharge_reason.to_owned(),
                }
            }
        };
        self.last = limits.clone();
        limits
    }
}
