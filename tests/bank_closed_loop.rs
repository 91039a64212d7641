//! Issue 17, invariant over random banks in simulated time: the bank's split estimate and limits
//! (`bank::limits`, the bank's rate limiter `control::current::RampLimiter`) in a closed loop with
//! `sim::bank`'s physics. Random banks of 2..5 packs (capacity, internal resistance, ratings,
//! small SoC differences), ports read every 1, 2 or 5 s each at its own phase (up to 0.8 s apart), a
//! charger/load whose demand jumps between charge, discharge and rest. The oracle is the
//! simulated pack currents: no pack more than 5 % over its rating for more than 2 s, no BMS trip.

use bms_bridge::bank::config::Topology;
use bms_bridge::bank::limits::{bank_limits, PackLimitInput, SplitEstimator};
use bms_bridge::control::current::RampLimiter;
use bms_bridge::control::ChargeConfig;
use bms_bridge::sim::bank::{BankModel, BankPack, Rng, Wiring};
use std::time::{Duration, Instant};

/// What one pack's port last reported.
#[derive(Clone, Copy)]
struct Reading {
    current_a: f64,
    at: Instant,
}

/// Runs one random bank for `seconds` of simulated time; returns (worst longest-over stretch s,
/// worst peak ratio, trips).
fn run_case(seed: u64, seconds: f64) -> (f64, f64, usize) {
    let mut rng = Rng(seed);
    let n = 2 + (rng.unit() * 4.0) as usize;
    let packs: Vec<BankPack> = (0..n)
        .map(|_| {
            let charge = rng.range(10.0, 120.0);
            let mut p = BankPack::new(rng.range(50.0, 300.0), rng.range(0.005, 0.040), charge, 2.0 * charge);
            p.soc_percent = rng.range(45.0, 55.0);
            p
        })
        .collect();
    let mut model = BankModel::new(Wiring::Parallel, packs);
    let poll_s = [1.0, 2.0, 5.0][(rng.unit() * 3.0) as usize % 3];
    // Ports out of phase by up to 0.8 s: some banks can never compare their readings.
    let phases: Vec<f64> = (0..n).map(|_| rng.range(0.0, 0.8)).collect();
    let cfg = ChargeConfig::default();
    let (max_c, max_d): (f64, f64) = (
        model.packs.iter().map(|p| p.charge_rating_a).sum(),
        model.packs.iter().map(|p| p.discharge_rating_a).sum(),
    );
    let t0 = Instant::now();
    let at = |t: f64| t0 + Duration::from_secs_f64(t);
    let mut split = SplitEstimator::new(n);
    let (mut ccl_limiter, mut dcl_limiter) = (RampLimiter::default(), RampLimiter::default());
    let mut readings: Vec<Option<Reading>> = vec![None; n];
    let (mut ccl, mut dcl) = (0.0, 0.0);
    let dt = 0.05;
    let mut t = 0.0;
    let mut demand = 0.0;
    let mut next_demand = 0.0;
    while t < seconds {
        if t >= next_demand {
            demand = match (rng.unit() * 3.0) as u32 {
                0 => rng.range(50.0, 2.0 * max_c),
                1 => -rng.range(50.0, 2.0 * max_d),
                _ => 0.0,
            };
            next_demand = t + rng.range(10.0, 60.0);
        }
        model.step(dt, demand, ccl, dcl, 40.0);
        t += dt;
        // Each port reads its pack once per poll at its own phase; each reading runs a bank cycle.
        for i in 0..n {
            let due = readings[i].is_none_or(|r| at(t) >= r.at + Duration::from_secs_f64(poll_s - dt));
            let phase_ok = (t - phases[i]).rem_euclid(poll_s) < dt;
            if !(due && phase_ok) {
                continue;
            }
            let current = (model.packs[i].current_a * 100.0).round() / 100.0;
            readings[i] = Some(Reading { current_a: current, at: at(t) });
            let inputs: Vec<PackLimitInput> = model
                .packs
                .iter()
                .zip(&readings)
                .map(|(p, r)| PackLimitInput {
                    online: r.is_some(),
                    current_a: r.map(|r| r.current_a),
                    read_at: r.map(|r| r.at),
                    charge_limit_a: p.charge_rating_a,
                    discharge_limit_a: p.discharge_rating_a,
                    charge_blocked: false,
                    discharge_blocked: false,
                })
                .collect();
            let (c, d) = split.update(at(t), &inputs);
            let limits = bank_limits(Topology::Parallel, &inputs, &c, &d, split.trusted_up_to());
            // As the bank task does: the split limit is the bank's "BMS limit", rate-limited.
            ccl = ccl_limiter.apply(at(t), limits.charge.amps.min(max_c), max_c, &cfg).0;
            dcl = dcl_limiter.apply(at(t), limits.discharge.amps.min(max_d), max_d, &cfg).0;
        }
    }
    let longest = model.packs.iter().map(|p| p.record.longest_over_s).fold(0.0, f64::max);
    let peak = model.packs.iter().map(|p| p.record.peak_ratio).fold(0.0, f64::max);
    let trips = model.packs.iter().filter(|p| p.record.tripped_at_s.is_some()).count();
    (longest, peak, trips)
}

const CASES: u64 = 300;

#[test]
fn random_banks_in_closed_loop_keep_every_pack_in_its_rating() {
    let mut worst = (0.0f64, 0.0f64);
    for case in 0..CASES {
        let (longest, peak, trips) = run_case(0x9e37_79b9_7f4a_7c15 ^ (case * 7919 + 1), 600.0);
        worst = (worst.0.max(longest), worst.1.max(peak));
        assert_eq!(trips, 0, "case {case}: a BMS tripped (peak {:.0} %)", peak * 100.0);
        assert!(
            longest <= 2.0,
            "case {case}: a pack over 105 % for {longest:.2} s (peak {:.0} %)",
            peak * 100.0
        );
    }
    println!(
        "{CASES} random banks x 600 s: longest over 105 %: {:.2} s, peak {:.1} %",
        worst.0,
        worst.1 * 100.0
    );
}
