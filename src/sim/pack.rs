//! LiFePO4 packs and a Victron-like charger, for closed-loop tests of charge control.
//!
//! Each cell: open-circuit voltage from a state-of-charge curve with the LiFePO4 knees at both
//! ends, plus current x internal resistance. [`Pack::lifepo4_16s`]: 16 x 280 Ah, capacities over
//! 5 %, one cell starting with more charge. [`Pack::from_spec`]: any series count and capacity,
//! balanced, one cell ahead or one weak cell ([`Imbalance`]), behind a BMS that reports whole
//! millivolts and opens its charge FET at 3.65 V. A passive balancer bleeds high cells near the top. Temperature
//! follows I²R heating against an ambient. The charger regulates the pack to CVL, never above
//! CCL, and loads draw at most DCL, with a first-order lag like a Multi following DVCC.

use crate::battery::Battery;
use std::time::Instant;

/// Open-circuit voltage curve of a LiFePO4 cell: (state of charge 0..1, volts).
const OCV: [(f64, f64); 17] = [
    (0.000, 2.50),
    (0.010, 2.80),
    (0.030, 3.00),
    (0.060, 3.15),
    (0.100, 3.21),
    (0.200, 3.26),
    (0.350, 3.29),
    (0.500, 3.30),
    (0.650, 3.315),
    (0.800, 3.33),
    (0.900, 3.34),
    (0.950, 3.35),
    (0.970, 3.37),
    (0.985, 3.40),
    (0.993, 3.45),
    (0.998, 3.55),
    (1.000, 3.65),
];

/// Open-circuit voltage at `soc` (0..1); beyond the ends the curve continues steeply.
pub fn ocv(soc: f64) -> f64 {
    let ([first, ..], [.., last]) = (OCV, OCV);
    if soc <= first.0 {
        return first.1 + (soc - first.0) * 30.0;
    }
    if soc >= last.0 {
        return last.1 + (soc - last.0) * 50.0;
    }
    for (&(x1, y1), &(x2, y2)) in OCV.iter().zip(OCV.iter().skip(1)) {
        if soc <= x2 {
            return y1 + (y2 - y1) * (soc - x1) / (x2 - x1);
        }
    }
    last.1
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Capacity (Ah).
    pub capacity_ah: f64,
    /// Charge held (Ah).
    pub charge_ah: f64,
    /// Internal resistance (Ω).
    pub resistance_ohm: f64,
}

impl Cell {
    /// State of charge 0..1.
    pub fn soc(&self) -> f64 {
        self.charge_ah / self.capacity_ah
    }
}

/// The pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    /// Cells in series, cell 1 first.
    pub cells: Vec<Cell>,
    /// Pack temperature (°C).
    pub temperature_c: f64,
    /// Ambient temperature (°C).
    pub ambient_c: f64,
    /// Present current, + = charging (A).
    pub current_a: f64,
    /// Balancer bleed current per cell (A).
    pub balance_a: f64,
    /// Cells above this balance (V).
    pub balance_start_v: f64,
    /// ... when this much above the lowest cell (V).
    pub balance_diff_v: f64,
    /// A cell at or above this opens the charge FET, like a BMS's cell over-voltage protection (V).
    pub ovp_trip_v: f64,
    /// The charge FET opened on a cell over-voltage (a BMS trip); closes again below 3.40 V.
    pub tripped: bool,
    /// Report cell voltages rounded to whole millivolts, as a BMS does.
    pub millivolt_readings: bool,
    /// Nominal capacity (Ah), reported as the BMS's capacity.
    pub nominal_ah: f64,
    balancing: Vec<bool>,
}

/// Nominal capacity of the simulated pack (Ah).
pub const NOMINAL_AH: f64 = 280.0;

/// How the cells of a [`PackSpec`] pack differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Imbalance {
    /// Capacities within ±1 %, top balanced: every cell misses the same charge to full
    /// (±0.05 % of nominal, 2 mV at 97 %).
    Balanced,
    /// Balanced, but one cell holds this fraction of its capacity more charge (0.025 = 2.5 %):
    /// it starts at the spec's state of charge, the others this much lower.
    OneAhead(f64),
    /// Balanced, but one cell has this fraction less capacity (0.10 = -10 %) at the same state
    /// of charge as the others, so it misses that much less charge to full (from 50 %: 5 % of
    /// nominal ahead).
    WeakCell(f64),
}

/// A pack for the closed-loop scenarios: LiFePO4 cells, series count, capacity, start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackSpec {
    /// Series cells.
    pub cells: usize,
    /// Nominal capacity (Ah).
    pub capacity_ah: f64,
    /// Starting state of charge (0..1).
    pub soc: f64,
    /// How the cells differ.
    pub imbalance: Imbalance,
}

impl PackSpec {
    /// The cell that differs (cell 1 is index 0).
    pub fn odd_cell(&self) -> usize {
        self.cells / 3
    }
}

impl Pack {
    /// A pack built to `spec` at 25 °C: 0.8 mΩ per 100 Ah-cell (scaled by capacity), a passive
    /// balancer of 0.5 A, cell over-voltage trip at 3.65 V, millivolt readings.
    pub fn from_spec(spec: &PackSpec) -> Self {
        let n = spec.cells.max(1);
        let odd = spec.odd_cell();
        let cells = (0..n)
            .map(|i| {
                // Deterministic spread: ranks 0..1 in a shuffled order.
                let rank = if n > 1 { ((i * 7) % n) as f64 / (n - 1) as f64 } else { 0.5 };
                let mut capacity_ah = spec.capacity_ah * (0.99 + 0.02 * rank);
                // Top balanced: every cell misses the same charge to full, ±0.05 % of nominal.
                let jitter = 0.0005 * (2.0 * (((i * 5) % n) as f64 / n as f64) - 1.0);
                let mut missing = (1.0 - spec.soc + jitter) * spec.capacity_ah;
                match spec.imbalance {
                    Imbalance::Balanced => {}
                    // The leading cell starts at `spec.soc`, the others that much behind.
                    Imbalance::OneAhead(ahead) if i != odd => missing += ahead * spec.capacity_ah,
                    Imbalance::WeakCell(less) if i == odd => {
                        capacity_ah = spec.capacity_ah * (1.0 - less);
                        missing *= 1.0 - less;
                    }
                    _ => {}
                }
                let charge_ah = (capacity_ah - missing).clamp(0.0, capacity_ah);
                Cell { capacity_ah, charge_ah, resistance_ohm: 0.0008 * 100.0 / spec.capacity_ah.max(1.0) }
            })
            .collect();
        let mut pack = Self::with_cells(cells, 25.0, spec.capacity_ah);
        pack.millivolt_readings = true;
        pack
    }

    /// `cells` at `temperature_c`, the balancer and trip as documented, float readings.
    fn with_cells(cells: Vec<Cell>, temperature_c: f64, nominal_ah: f64) -> Self {
        let n = cells.len();
        Self {
            cells,
            temperature_c,
            ambient_c: temperature_c,
            current_a: 0.0,
            balance_a: 0.5,
            balance_start_v: 3.40,
            balance_diff_v: 0.005,
            ovp_trip_v: 3.65,
            tripped: false,
            millivolt_readings: false,
            nominal_ah,
            balancing: vec![false; n],
        }
    }

    /// 16 x 280 Ah nominal, capacities spread over ±2.5 %, top balanced except cell 5, which
    /// holds 0.3 % more charge; all cells at `soc` (0..1) of nominal below full.
    pub fn lifepo4_16s(soc: f64, temperature_c: f64) -> Self {
        let cells = (0..16u32)
            .map(|i| {
                let rank = f64::from((i * 7) % 16) / 15.0;
                let capacity_ah = NOMINAL_AH * (0.975 + 0.05 * rank);
                let extra = if i == 4 { 0.003 * NOMINAL_AH } else { 0.0 };
                let charge_ah = (capacity_ah - (1.0 - soc) * NOMINAL_AH + extra).max(0.0);
                Cell { capacity_ah, charge_ah, resistance_ohm: 0.0005 }
            })
            .collect();
        Self::with_cells(cells, temperature_c, NOMINAL_AH)
    }

    /// Sum of the cells' open-circuit voltages (V).
    pub fn ocv_v(&self) -> f64 {
        self.cells.iter().map(|c| ocv(c.soc())).sum()
    }

    /// Sum of the cells' resistances (Ω).
    pub fn resistance_ohm(&self) -> f64 {
        self.cells.iter().map(|c| c.resistance_ohm).sum()
    }

    /// Terminal voltage of each cell at the present current (V).
    pub fn cell_voltages(&self) -> Vec<f64> {
        self.cells.iter().map(|c| ocv(c.soc()) + self.current_a * c.resistance_ohm).collect()
    }

    /// Mean state of charge of the cells (%), as a BMS would estimate it.
    pub fn soc_percent(&self) -> f64 {
        let sum: f64 = self.cells.iter().map(|c| c.soc().clamp(0.0, 1.0)).sum();
        sum / self.cells.len() as f64 * 100.0
    }

    /// Advances `dt_s` seconds at `current_a` (no charge current while the BMS has tripped).
    pub fn step(&mut self, current_a: f64, dt_s: f64) {
        let current_a = if self.tripped { current_a.min(0.0) } else { current_a };
        self.current_a = current_a;
        let volts = self.cell_voltages();
        let highest = volts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if highest >= self.ovp_trip_v {
            self.tripped = true;
        } else if self.tripped && highest < 3.40 {
            self.tripped = false;
        }
        let lowest = volts.iter().copied().fold(f64::INFINITY, f64::min);
        for ((cell, volts), balancing) in self.cells.iter_mut().zip(&volts).zip(&mut self.balancing) {
            let balance = *volts > self.balance_start_v && *volts - lowest > self.balance_diff_v;
            *balancing = balance;
            let bleed = if balance { self.balance_a } else { 0.0 };
            cell.charge_ah += (current_a - bleed) * dt_s / 3600.0;
        }
        // 5.4 kg cells (280 Ah; scaled by capacity) at ~1 kJ/kg/K, 8 W/K to ambient.
        let heat_w = current_a * current_a * self.resistance_ohm();
        let heat_capacity = self.cells.len() as f64 * 5.4 * 1000.0 * self.nominal_ah / NOMINAL_AH;
        self.temperature_c += (heat_w - 8.0 * (self.temperature_c - self.ambient_c)) * dt_s / heat_capacity;
    }

    /// What a BMS would report now.
    pub fn reading(&self, now: Instant) -> Battery {
        let mut cells = self.cell_voltages();
        if self.millivolt_readings {
            cells.iter_mut().for_each(|v| *v = (*v * 1000.0).round() / 1000.0);
        }
        Battery {
            voltage_v: Some(cells.iter().sum()),
            current_a: Some(self.current_a),
            soc_percent: Some((self.soc_percent() * 10.0).round() / 10.0),
            full_capacity_ah: Some(self.nominal_ah),
            nominal_capacity_ah: Some(self.nominal_ah),
            cell_count: u16::try_from(self.cells.len()).ok(),
            cell_voltages_v: Some(cells),
            balancing_cells: Some(self.balancing.clone()),
            temperatures_c: Some(vec![self.temperature_c, self.temperature_c + 0.5]),
            temperature_mos_c: Some(self.temperature_c + 3.0),
            charge_fet: Some(!self.tripped),
            discharge_fet: Some(true),
            read_at: Some(now),
            ..Battery::default()
        }
    }
}

/// A Multi/MPPT following DVCC: charges to CVL within CCL, feeds loads within DCL.
#[derive(Debug, Clone, PartialEq)]
pub struct Charger {
    /// Most the charger can deliver (A); 0 = no charger.
    pub max_charge_a: f64,
    /// Time constant of the current regulation (s).
    pub lag_s: f64,
    current_a: f64,
}

impl Charger {
    /// A charger of `max_charge_a` with a 2 s regulation lag.
    pub fn new(max_charge_a: f64) -> Self {
        Self { max_charge_a, lag_s: 2.0, current_a: 0.0 }
    }

    /// Battery current (+ = charging) for the next `dt_s` seconds.
    pub fn step(&mut self, pack: &Pack, cvl_v: f64, ccl_a: f64, dcl_a: f64, load_a: f64, dt_s: f64) -> f64 {
        let headroom = (cvl_v - pack.ocv_v()) / pack.resistance_ohm();
        let charge = headroom.clamp(0.0, ccl_a.min(self.max_charge_a).max(0.0));
        let target = charge - load_a.min(dcl_a.max(0.0));
        self.current_a += (target - self.current_a) * (1.0 - (-dt_s / self.lag_s).exp());
        self.current_a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocv_has_the_knees_and_is_monotonic() {
        let mut last = 0.0;
        for i in 0..=1000 {
            let v = ocv(f64::from(i) / 1000.0);
            assert!(v >= last);
            last = v;
        }
        assert!(ocv(0.5) > 3.29 && ocv(0.5) < 3.31);
        assert!(ocv(1.0) >= 3.65 && ocv(0.0) <= 2.6);
    }

    #[test]
    fn cells_spread_and_one_starts_high() {
        let pack = Pack::lifepo4_16s(0.2, 25.0);
        let caps: Vec<f64> = pack.cells.iter().map(|c| c.capacity_ah).collect();
        let (lo, hi) = caps.iter().fold((f64::MAX, 0.0f64), |(a, b), &c| (a.min(c), b.max(c)));
        assert!(((hi - lo) / NOMINAL_AH - 0.05).abs() < 1e-9);
        // Top balanced except cell 5, which needs the least charge to be full.
        let to_full: Vec<f64> = pack.cells.iter().map(|c| c.capacity_ah - c.charge_ah).collect();
        let least = to_full.iter().copied().fold(f64::MAX, f64::min);
        assert_eq!(to_full[4], least);
    }
}
