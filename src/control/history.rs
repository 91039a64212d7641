//! `/History/*`: lifetime counters, updated on every reading and saved with the control state.
//!
//! Ah values are positive amounts; the D-Bus layer adds Victron's sign (discharge negative).

use serde::{Deserialize, Serialize};

/// One reading as history sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistoryInputs {
    /// Seconds since the previous reading (already capped by the caller).
    pub dt_s: f64,
    /// Pack voltage (V).
    pub pack_v: Option<f64>,
    /// Pack current, + = charging (A).
    pub current_a: Option<f64>,
    /// Lowest and highest cell (V).
    pub cells_v: Option<(f64, f64)>,
    /// Coldest and hottest sensor (°C).
    pub temperatures_c: Option<(f64, f64)>,
    /// Capacity (Ah), for the cycle count.
    pub capacity_ah: Option<f64>,
    /// SoC (%), for full discharges.
    pub soc_percent: Option<f64>,
    /// The BMS reports a low-voltage alarm (pack or cell) now.
    pub low_voltage_alarm: bool,
    /// The BMS reports a high-voltage alarm (pack or cell) now.
    pub high_voltage_alarm: bool,
}

/// Lifetime counters (`/History/*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct History {
    /// Charge cycles: Ah drawn in total / capacity (`/History/ChargeCycles`).
    pub charge_cycles: f64,
    /// Ah drawn in total (`/History/TotalAhDrawn`, published negative).
    pub total_ah_drawn: f64,
    /// Most Ah drawn between two full charges (`/History/DeepestDischarge`).
    pub deepest_discharge_ah: f64,
    /// Ah drawn in the previous discharge (`/History/LastDischarge`).
    pub last_discharge_ah: f64,
    /// Ah drawn since the last full charge.
    pub discharge_now_ah: f64,
    /// Times SoC reached 0 % (re-armed above 15 %) (`/History/FullDischarges`).
    pub full_discharges: u32,
    /// Full charges (absorption completed) (`/History/AutomaticSyncs`).
    pub full_charges: u32,
    /// Lowest pack voltage seen (`/History/MinimumVoltage`).
    pub min_voltage_v: Option<f64>,
    /// Highest pack voltage seen (`/History/MaximumVoltage`).
    pub max_voltage_v: Option<f64>,
    /// Lowest cell voltage seen (`/History/MinimumCellVoltage`).
    pub min_cell_voltage_v: Option<f64>,
    /// Highest cell voltage seen (`/History/MaximumCellVoltage`).
    pub max_cell_voltage_v: Option<f64>,
    /// Lowest temperature seen (`/History/MinimumTemperature`).
    pub min_temperature_c: Option<f64>,
    /// Highest temperature seen (`/History/MaximumTemperature`).
    pub max_temperature_c: Option<f64>,
    /// Energy into the pack (`/History/ChargedEnergy`, kWh).
    pub charged_energy_kwh: f64,
    /// Energy out of the pack (`/History/DischargedEnergy`, kWh).
    pub discharged_energy_kwh: f64,
    /// A full discharge may be counted again (SoC was above 15 %).
    pub full_discharge_armed: bool,
    /// Low-voltage alarms raised (edges, `/History/LowVoltageAlarms`).
    pub low_voltage_alarms: u32,
    /// High-voltage alarms raised (edges, `/History/HighVoltageAlarms`).
    pub high_voltage_alarms: u32,
    /// A low-voltage alarm is active now (for the edge count).
    pub low_voltage_alarm_active: bool,
    /// A high-voltage alarm is active now (for the edge count).
    pub high_voltage_alarm_active: bool,
    /// Discharges ended by a full charge, and the Ah they drew (`/History/AverageDischarge`).
    pub discharges: u32,
    /// Ah drawn by those discharges.
    pub discharges_ah: f64,
}

fn lower(slot: &mut Option<f64>, v: f64) {
    if v.is_finite() && slot.is_none_or(|old| v < old) {
        *slot = Some(v);
    }
}

fn higher(slot: &mut Option<f64>, v: f64) {
    if v.is_finite() && slot.is_none_or(|old| v > old) {
        *slot = Some(v);
    }
}

impl History {
    /// Mean Ah of the discharges ended by a full charge (`None` before the first).
    pub fn average_discharge_ah(&self) -> Option<f64> {
        (self.discharges > 0).then(|| self.discharges_ah / f64::from(self.discharges))
    }

    /// Books one reading.
    pub fn update(&mut self, i: &HistoryInputs) {
        if let Some(v) = i.pack_v {
            lower(&mut self.min_voltage_v, v);
            higher(&mut self.max_voltage_v, v);
        }
        if let Some((lo, hi)) = i.cells_v {
            lower(&mut self.min_cell_voltage_v, lo);
            higher(&mut self.max_cell_voltage_v, hi);
        }
        if let Some((cold, hot)) = i.temperatures_c {
            lower(&mut self.min_temperature_c, cold);
            higher(&mut self.max_temperature_c, hot);
        }
        if let Some(current) = i.current_a.filter(|c| c.is_finite()) {
            let ah = current * i.dt_s / 3600.0;
            let kwh = i.pack_v.map_or(0.0, |v| v * ah / 1000.0);
            if ah < 0.0 {
                self.total_ah_drawn -= ah;
                self.discharge_now_ah -= ah;
                self.discharged_energy_kwh -= kwh;
                self.deepest_discharge_ah = self.deepest_discharge_ah.max(self.discharge_now_ah);
            } else {
                self.charged_energy_kwh += kwh;
            }
            if let Some(cap) = i.capacity_ah.filter(|c| *c > 0.0) {
                self.charge_cycles = self.total_ah_drawn / cap;
            }
        }
        if i.low_voltage_alarm && !self.low_voltage_alarm_active {
            self.low_voltage_alarms += 1;
        }
        if i.high_voltage_alarm && !self.high_voltage_alarm_active {
            self.high_voltage_alarms += 1;
        }
        self.low_voltage_alarm_active = i.low_voltage_alarm;
        self.high_voltage_alarm_active = i.high_voltage_alarm;
        match i.soc_percent {
            Some(soc) if soc > 15.0 => self.full_discharge_armed = true,
            Some(soc) if soc <= 0.0 && self.full_discharge_armed => {
                self.full_discharges += 1;
                self.full_discharge_armed = false;
            }
            _ => {}
        }
    }

    /// The pack was charged full: the running discharge ends.
    pub fn full_charge(&mut self) {
        self.full_charges += 1;
        if self.discharge_now_ah > 0.0 {
            self.last_discharge_ah = self.discharge_now_ah;
            self.discharges += 1;
            self.discharges_ah += self.discharge_now_ah;
        }
        self.discharge_now_ah = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voltage_alarms_are_counted_by_edge_and_discharges_averaged() {
        let mut h = History::default();
        let at = |low, high| HistoryInputs {
            low_voltage_alarm: low,
            high_voltage_alarm: high,
            ..Default::default()
        };
        for (low, high) in [(true, false), (true, false), (false, false), (true, true), (false, true)] {
            h.update(&at(low, high));
        }
        assert_eq!((h.low_voltage_alarms, h.high_voltage_alarms), (2, 1));
        assert_eq!(h.average_discharge_ah(), None);
        for drawn in [30.0, 50.0] {
            h.update(&HistoryInputs { dt_s: 3600.0, current_a: Some(-drawn), ..Default::default() });
            h.full_charge();
        }
        assert_eq!(h.average_discharge_ah(), Some(40.0));
    }

    #[test]
    fn counts_energy_extremes_cycles_and_discharges() {
        let mut h = History::default();
        let base = HistoryInputs { dt_s: 3600.0, capacity_ah: Some(100.0), ..Default::default() };
        h.update(&HistoryInputs {
            pack_v: Some(50.0),
            current_a: Some(-50.0),
            cells_v: Some((3.1, 3.2)),
            temperatures_c: Some((10.0, 20.0)),
            soc_percent: Some(50.0),
            ..base
        });
        h.update(&HistoryInputs {
            pack_v: Some(54.0),
            current_a: Some(20.0),
            cells_v: Some((3.3, 3.4)),
            temperatures_c: Some((15.0, 30.0)),
            soc_percent: Some(0.0),
            ..base
        });
        assert_eq!(h.total_ah_drawn, 50.0);
        assert_eq!(h.charge_cycles, 0.5);
        assert_eq!(h.discharged_energy_kwh, 2.5);
        assert!((h.charged_energy_kwh - 1.08).abs() < 1e-9);
        assert_eq!((h.min_voltage_v, h.max_voltage_v), (Some(50.0), Some(54.0)));
        assert_eq!((h.min_cell_voltage_v, h.max_cell_voltage_v), (Some(3.1), Some(3.4)));
        assert_eq!((h.min_temperature_c, h.max_temperature_c), (Some(10.0), Some(30.0)));
        assert_eq!(h.full_discharges, 1);
        h.full_charge();
        assert_eq!((h.last_discharge_ah, h.deepest_discharge_ah, h.discharge_now_ah), (50.0, 50.0, 0.0));
        assert_eq!(h.full_charges, 1);
    }

    #[test]
    fn round_trips_through_json() {
        let h = History { charge_cycles: 3.5, min_voltage_v: Some(48.0), ..Default::default() };
        let text = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(serde_json::from_str::<History>(&text).ok(), Some(h));
    }
}
