//! The physics of a parallel bank for the bank scenario tests (`tests/bank_scenarios.rs`): packs
//! of different capacity, internal resistance and rating on one DC bus, a charger or load that
//! obeys the published CCL/DCL, and an overload recorder per pack (the tests' oracle).
//!
//! Parallel ([`Wiring::Parallel`]): every pack on the bus sees the bus voltage `V`; pack `i` carries `(V - OCV_i) / R_i`, and the
//! currents add up to the bank current: `V = (I + sum OCV_i / R_i) / sum 1 / R_i`. A pack off the
//! bus (switched off, its BMS tripped) carries nothing. Series: one current through every pack,
//! none while any pack is open. A BMS trips when its pack carries more
//! than [`TRIP_RATIO`] of its rating for [`TRIP_AFTER_S`]: it leaves the bus, and the recorder
//! says so.

use super::model::ocv;

/// A BMS opens its FETs beyond this multiple of the pack's rating ...
pub const TRIP_RATIO: f64 = 1.2;
/// ... held for this long (s).
pub const TRIP_AFTER_S: f64 = 1.0;
/// The oracle's tolerance: a pack more than this multiple of its rating counts as over.
pub const OVER_RATIO: f64 = 1.05;

/// One pack of the bank.
#[derive(Debug, Clone, PartialEq)]
pub struct BankPack {
    /// Series cells.
    pub cells: usize,
    /// Capacity (Ah).
    pub capacity_ah: f64,
    /// Internal resistance of the whole pack (ohm).
    pub resistance_ohm: f64,
    /// State of charge (%).
    pub soc_percent: f64,
    /// Continuous charge rating (A).
    pub charge_rating_a: f64,
    /// Continuous discharge rating (A).
    pub discharge_rating_a: f64,
    /// Connected to the DC bus.
    pub on_bus: bool,
    /// Current now (A, + = charging).
    pub current_a: f64,
    /// What the recorder saw.
    pub record: Overload,
}

/// The oracle's record of one pack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overload {
    /// Highest current as a fraction of the rating in its direction.
    pub peak_ratio: f64,
    /// Longest stretch above [`OVER_RATIO`] of its rating (s).
    pub longest_over_s: f64,
    /// The BMS tripped (time, s).
    pub tripped_at_s: Option<f64>,
    over_since: Option<f64>,
    trip_since: Option<f64>,
}

impl BankPack {
    /// A 16S LiFePO4 pack.
    pub fn new(capacity_ah: f64, resistance_ohm: f64, charge_rating_a: f64, discharge_rating_a: f64) -> Self {
        Self {
            cells: 16,
            capacity_ah,
            resistance_ohm,
            soc_percent: 50.0,
            charge_rating_a,
            discharge_rating_a,
            on_bus: true,
            current_a: 0.0,
            record: Overload::default(),
        }
    }

    /// Open-circuit voltage now.
    pub fn ocv_v(&self) -> f64 {
        ocv(self.soc_percent) * self.cells as f64
    }

    /// Current as a fraction of the rating in its direction.
    pub fn load_ratio(&self) -> f64 {
        let rating = if self.current_a >= 0.0 { self.charge_rating_a } else { self.discharge_rating_a };
        self.current_a.abs() / rating.max(1e-9)
    }

    fn record(&mut self, now_s: f64) {
        let ratio = self.load_ratio();
        let r = &mut self.record;
        r.peak_ratio = r.peak_ratio.max(ratio);
        // An overload lasts until the first record that sees it gone (an upper bound).
        if let Some(since) = r.over_since {
            r.longest_over_s = r.longest_over_s.max(now_s - since);
        }
        if ratio > OVER_RATIO {
            r.over_since.get_or_insert(now_s);
        } else {
            r.over_since = None;
        }
        if ratio > TRIP_RATIO {
            let since = *r.trip_since.get_or_insert(now_s);
            if now_s - since >= TRIP_AFTER_S && r.tripped_at_s.is_none() {
                r.tripped_at_s = Some(now_s);
                self.on_bus = false;
            }
        } else {
            r.trip_since = None;
        }
    }
}

/// How the packs of a [`BankModel`] are wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// Side by side on one DC bus: the current splits by resistance.
    Parallel,
    /// One string: one current through every pack, none while any pack is open.
    Series,
}

/// Packs, a charger/load and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct BankModel {
    /// How the packs are wired.
    pub wiring: Wiring,
    /// The packs.
    pub packs: Vec<BankPack>,
    /// The bank current now (A, + = charging).
    pub bank_current_a: f64,
    /// Simulated time (s).
    pub time_s: f64,
}

impl BankModel {
    /// A bank of `packs` wired so, at rest.
    pub fn new(wiring: Wiring, packs: Vec<BankPack>) -> Self {
        Self { wiring, packs, bank_current_a: 0.0, time_s: 0.0 }
    }

    /// Whether current can flow: a pack on the bus (parallel), every pack in the string (series).
    pub fn closed(&self) -> bool {
        match self.wiring {
            Wiring::Parallel => self.packs.iter().any(|p| p.on_bus),
            Wiring::Series => self.packs.iter().all(|p| p.on_bus),
        }
    }

    /// Each pack's current when the bank carries `bank_a` (0 for packs off the bus; all 0 when
    /// no current can flow).
    pub fn split(&self, bank_a: f64) -> Vec<f64> {
        if !self.closed() {
            return vec![0.0; self.packs.len()];
        }
        if self.wiring == Wiring::Series {
            return vec![bank_a; self.packs.len()];
        }
        let on: Vec<&BankPack> = self.packs.iter().filter(|p| p.on_bus).collect();
        let g: f64 = on.iter().map(|p| 1.0 / p.resistance_ohm).sum();
        let bus_v = (bank_a + on.iter().map(|p| p.ocv_v() / p.resistance_ohm).sum::<f64>()) / g;
        self.packs
            .iter()
            .map(|p| if p.on_bus { (bus_v - p.ocv_v()) / p.resistance_ohm } else { 0.0 })
            .collect()
    }

    /// Advances `dt_s`: the charger/load wants `demand_a` (+ charge, - discharge) and obeys the
    /// published limits: a lower limit at once, a rise at `slew_a_per_s` at most (a real charger
    /// ramps). The packs' currents, SoCs and the oracle's records follow.
    pub fn step(&mut self, dt_s: f64, demand_a: f64, ccl_a: f64, dcl_a: f64, slew_a_per_s: f64) {
        self.time_s += dt_s;
        let allowed = demand_a.clamp(-dcl_a.max(0.0), ccl_a.max(0.0));
        let target = if self.closed() { allowed } else { 0.0 };
        self.bank_current_a = follow(self.bank_current_a, target, slew_a_per_s * dt_s);
        let currents = self.split(self.bank_current_a);
        let now = self.time_s;
        for (pack, current) in self.packs.iter_mut().zip(currents) {
            pack.current_a = current;
            pack.soc_percent =
                (pack.soc_percent + current * dt_s / 3600.0 / pack.capacity_ah * 100.0).clamp(0.0, 100.0);
            pack.record(now);
        }
    }
}

/// A charger/load current moving from `from` towards `target`: a cut at once, a rise by `step`
/// at most, a reversal through zero.
fn follow(from: f64, target: f64, step: f64) -> f64 {
    if target * from < 0.0 {
        step.min(target.abs()) * target.signum()
    } else if target.abs() <= from.abs() {
        target
    } else {
        from + (target - from).clamp(-step, step)
    }
}

/// A small deterministic generator (xorshift) for random banks in tests, without an extra
/// dependency.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number in 0..1.
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next number in `lo..hi`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue_bank() -> BankModel {
        // The issue's bank: 100/100/50 Ah, the 50 Ah pack with the lowest resistance.
        BankModel::new(
            Wiring::Parallel,
            vec![
                BankPack::new(100.0, 0.020, 50.0, 100.0),
                BankPack::new(100.0, 0.020, 50.0, 100.0),
                BankPack::new(50.0, 0.0144, 25.0, 50.0),
            ],
        )
    }

    #[test]
    fn currents_add_up_and_split_by_resistance() {
        let bank = issue_bank();
        let split = bank.split(100.0);
        assert!((split.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        assert!((split[2] / 100.0 - 0.41).abs() < 0.001, "{split:?}");
        assert!((split[0] - split[1]).abs() < 1e-9);
    }

    #[test]
    fn the_charger_obeys_the_limits_and_an_overload_trips_the_bms() {
        let mut bank = issue_bank();
        for _ in 0..100 {
            bank.step(0.1, 200.0, 61.0, 100.0, 10.0);
        }
        assert!((bank.bank_current_a - 61.0).abs() < 1e-9, "ramped up to the CCL");
        assert!(bank.packs.iter().all(|p| p.record.tripped_at_s.is_none()));
        assert!(bank.packs[2].record.peak_ratio < 1.01);
        // A 100 Ah pack leaves: the 50 Ah pack takes 58 % of 61 A = 142 % of its rating.
        bank.packs[0].on_bus = false;
        for _ in 0..15 {
            bank.step(0.1, 200.0, 61.0, 100.0, 10.0);
        }
        let small = &bank.packs[2];
        assert!(small.record.peak_ratio > 1.4, "{}", small.record.peak_ratio);
        assert!(small.record.tripped_at_s.is_some(), "tripped after 1 s");
        assert!(!small.on_bus);
        // The limit drops: the charger follows at once.
        bank.step(0.1, 200.0, 20.0, 100.0, 10.0);
        assert_eq!(bank.bank_current_a, 20.0);
    }

    #[test]
    fn a_series_string_carries_one_current_and_none_when_open() {
        let packs = vec![BankPack::new(100.0, 0.02, 50.0, 100.0), BankPack::new(100.0, 0.02, 50.0, 100.0)];
        let mut bank = BankModel::new(Wiring::Series, packs);
        bank.step(1.0, 30.0, 50.0, 50.0, 100.0);
        assert!(bank.packs.iter().all(|p| p.current_a == 30.0));
        bank.packs[1].on_bus = false;
        bank.step(0.1, 30.0, 50.0, 50.0, 100.0);
        assert!(bank.packs.iter().all(|p| p.current_a == 0.0));
    }
}
