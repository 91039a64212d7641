//! A simple moving LiFePO4 pack for the protocol simulators: values change every second so the
//! demo and the tests see live data, and they stay physically plausible.

use std::time::Instant;

/// Open-circuit voltage of a LiFePO4 cell by state of charge (%), with the knees at both ends.
const OCV_CURVE: [(f64, f64); 11] = [
    (0.0, 2.80),
    (5.0, 3.10),
    (10.0, 3.20),
    (20.0, 3.25),
    (40.0, 3.28),
    (60.0, 3.30),
    (80.0, 3.32),
    (90.0, 3.34),
    (95.0, 3.36),
    (99.0, 3.40),
    (100.0, 3.45),
];

/// Cell open-circuit voltage at `soc_percent`.
pub fn ocv(soc_percent: f64) -> f64 {
    let soc = soc_percent.clamp(0.0, 100.0);
    for (&(s0, v0), &(s1, v1)) in OCV_CURVE.iter().zip(OCV_CURVE.iter().skip(1)) {
        if soc <= s1 {
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0);
        }
    }
    let [.., (_, full)] = OCV_CURVE;
    full
}

/// State of the simulated pack.
#[derive(Debug, Clone)]
pub struct SimPack {
    /// Series cells.
    pub cells: usize,
    /// Capacity (Ah).
    pub capacity_ah: f64,
    /// State of charge (%).
    pub soc_percent: f64,
    /// Pack current now (A, + = charging).
    pub current_a: f64,
    /// Per-cell offsets from the average (V): one cell runs high, as in real packs.
    pub cell_offsets_v: Vec<f64>,
    /// Internal resistance per cell (ohm).
    pub cell_resistance_ohm: f64,
    /// Amplitude of the simulated charge/discharge swing (A); parallel packs of a bank take
    /// unequal parts of the bank current.
    pub swing_a: f64,
    /// Temperatures (°C).
    pub temperatures_c: Vec<f64>,
    /// MOSFET temperature (°C).
    pub temperature_mos_c: f64,
    /// Charge cycles.
    pub cycles: u32,
    /// Seconds since the start of the simulation (the swing's phase: 30 s starts at the peak).
    pub elapsed_s: f64,
    /// Seconds of charge moved per real second (1 = real time). The demo speeds the charge up so
    /// that SoC visibly follows the current within seconds; the current itself stays real.
    pub time_lapse: f64,
    last_step: Option<Instant>,
}

impl SimPack {
    /// A pack at 60 % with `cells` cells.
    pub fn new(cells: usize) -> Self {
        let cell_offsets_v =
            (0..cells).map(|i| if i == 4 { 0.008 } else { (i as f64 * 0.37).sin() * 0.002 }).collect();
        Self {
            cells,
            capacity_ah: 100.0,
            soc_percent: 60.0,
            current_a: 0.0,
            cell_offsets_v,
            cell_resistance_ohm: 0.0008,
            swing_a: 20.0,
            temperatures_c: vec![24.0, 24.5, 25.0],
            temperature_mos_c: 27.0,
            cycles: 42,
            elapsed_s: 0.0,
            time_lapse: 1.0,
            last_step: None,
        }
    }

    /// Advances the model to `now`: a slow charge/discharge swing of ±`swing_a` over two minutes,
    /// and the charge it moves (coulomb counting, times `time_lapse`).
    pub fn step(&mut self, now: Instant) {
        let dt = self.last_step.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last_step = Some(now);
        self.elapsed_s += dt;
        self.current_a =
            (self.swing_a * (self.elapsed_s * std::f64::consts::TAU / 120.0).sin() * 100.0).round() / 100.0;
        let charge_dt = dt * self.time_lapse.max(0.0);
        self.soc_percent = (self.soc_percent
            + self.current_a * charge_dt / 3600.0 / self.capacity_ah * 100.0)
            .clamp(0.0, 100.0);
        let warm = 25.0 + self.current_a.abs() * 0.05;
        for (i, t) in self.temperatures_c.iter_mut().enumerate() {
            *t += (warm + i as f64 * 0.5 - *t) * (dt / 60.0).min(1.0);
        }
        self.temperature_mos_c +=
            (warm + 2.0 + self.current_a.abs() * 0.1 - self.temperature_mos_c) * (dt / 30.0).min(1.0);
    }

    /// Cell voltages now (V).
    pub fn cell_voltages_v(&self) -> Vec<f64> {
        let base = ocv(self.soc_percent) + self.current_a * self.cell_resistance_ohm;
        self.cell_offsets_v.iter().map(|o| base + o).collect()
    }

    /// Cell voltages now (mV, as BMS report them).
    pub fn cell_voltages_mv(&self) -> Vec<u16> {
        self.cell_voltages_v().iter().map(|v| (v * 1000.0).round().clamp(0.0, 65535.0) as u16).collect()
    }

    /// Pack voltage: the sum of the cells.
    pub fn voltage_v(&self) -> f64 {
        self.cell_voltages_v().iter().sum()
    }

    /// Cells balancing: the high ones while charging.
    pub fn balancing(&self) -> Vec<bool> {
        let cells = self.cell_voltages_v();
        let mean = cells.iter().sum::<f64>() / cells.len().max(1) as f64;
        cells.iter().map(|v| self.current_a > 0.0 && *v > mean + 0.005 && *v > 3.35).collect()
    }

    /// [`Self::balancing`] as a bit mask, cell 1 in bit 0 (cells past 32 left out).
    pub fn balancing_mask(&self) -> u32 {
        self.balancing().iter().take(32).enumerate().fold(0, |mask, (i, on)| mask | u32::from(*on) << i)
    }

    /// Charge left (Ah).
    pub fn remaining_ah(&self) -> f64 {
        self.capacity_ah * self.soc_percent / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_pack_moves_and_stays_plausible() {
        let t0 = Instant::now();
        let mut pack = SimPack::new(16);
        pack.step(t0);
        pack.step(t0 + Duration::from_secs(30));
        assert!(pack.current_a > 19.0, "a quarter period in: {}", pack.current_a);
        assert!(pack.soc_percent > 60.0);
        let cells = pack.cell_voltages_v();
        assert_eq!(cells.len(), 16);
        assert!(cells.iter().all(|v| (3.2..3.45).contains(v)), "{cells:?}");
        assert!((pack.voltage_v() - cells.iter().sum::<f64>()).abs() < 1e-9);
    }

    #[test]
    fn soc_follows_the_charge_moved() {
        // Oracle: the charge booked is the sum of current x time (x the time lapse), per step.
        let t0 = Instant::now();
        for (start_s, lapse) in [(30.0, 1.0), (30.0, 100.0), (90.0, 100.0)] {
            let mut pack = SimPack::new(16);
            pack.elapsed_s = start_s;
            pack.time_lapse = lapse;
            pack.step(t0);
            let mut booked_ah = 0.0;
            for s in 1..=10 {
                pack.step(t0 + Duration::from_secs(s));
                booked_ah += pack.current_a * lapse / 3600.0;
            }
            let moved_ah = (pack.soc_percent - 60.0) / 100.0 * pack.capacity_ah;
            assert!((moved_ah - booked_ah).abs() < 1e-9, "start {start_s}: {moved_ah} vs {booked_ah}");
            // At the peak (30 s) it charges, at the trough (90 s) it discharges: ~20 A x 10 s.
            let expected_ah = if start_s < 60.0 { 20.0 } else { -20.0 } * 10.0 * lapse / 3600.0;
            assert!((moved_ah - expected_ah).abs() < 0.1 * expected_ah.abs(), "{moved_ah} vs {expected_ah}");
        }
    }

    #[test]
    fn ocv_has_its_knees() {
        assert_eq!(ocv(0.0), 2.80);
        assert_eq!(ocv(100.0), 3.45);
        assert!(ocv(50.0) > 3.28 && ocv(50.0) < 3.30);
    }
}
