//! The bank's charge and discharge current limits from its packs' own limits. Pure.
//!
//! Parallel packs do not share a bank current equally: a pack with lower internal resistance (or
//! a different state of charge) takes more. The bank may carry `I` only while every pack `i`
//! carries `share_i x I <= limit_i`, so the bank limit is `min(limit_i / share_i)`:
//!
//! - `share_i` is the pack's observed part of the bank current in that direction, among the packs
//!   that can take current; while the bank current is below [`SPLIT_MIN_CURRENT_A`] the packs'
//!   capacity shares stand in (equal shares when a capacity is unknown);
//! - each share is clamped to at least [`SHARE_FLOOR`] x its capacity share (a pack resting now
//!   may take current later) and at most 1; shares may then add up to more than 1, which only
//!   lowers the limit;
//! - a pack that does not answer, or whose BMS blocks that direction (FET off), takes no current:
//!   it is left out and its share goes to the others; with no pack left the limit is 0.
//!
//! Series packs carry one current: the bank limit is the smallest pack limit; any pack blocking,
//! or (for charging) not answering, makes it 0.

use super::config::Topology;
use crate::battery::Battery;
use crate::control::current::{charge_target, discharge_target, CurrentInputs, LimitReason};
use crate::control::ChargeConfig;

/// Below this bank current (A) the observed split is noise: capacity shares are used.
pub const SPLIT_MIN_CURRENT_A: f64 = 2.0;

/// A pack's share never counts as less than this fraction of its capacity share.
pub const SHARE_FLOOR: f64 = 0.5;

/// One pack's part in the bank limits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PackLimitInput {
    /// The BMS answers.
    pub online: bool,
    /// Pack current, + = charging.
    pub current_a: Option<f64>,
    /// Capacity when full (Ah).
    pub capacity_ah: Option<f64>,
    /// The pack's own charge current limit (A).
    pub charge_limit_a: f64,
    /// The pack's own discharge current limit (A).
    pub discharge_limit_a: f64,
    /// Its BMS blocks charging (charge FET off).
    pub charge_blocked: bool,
    /// Its BMS blocks discharging (discharge FET off).
    pub discharge_blocked: bool,
}

/// One bank limit and the pack (0-based) that set it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Amps.
    pub amps: f64,
    /// The pack whose limit bound it; `None` when no pack can take current.
    pub by: Option<usize>,
}

/// The bank's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BankLimits {
    /// Charge current limit.
    pub charge: Limit,
    /// Discharge current limit.
    pub discharge: Limit,
}

/// One pack's own limit in one direction (A) and the rules that set it.
pub type PackTarget = (f64, Vec<LimitReason>);

/// A pack's own charge and discharge limits now: the charge-control rules (BMS limits, cell
/// voltage, temperature, MOSFET, SoC tables, FET state) on its reading, without the rate limiter
/// (the bank's limiter smooths the bank's result; a pack that comes back counts at once), each
/// with the rules that set it.
pub fn pack_targets(cfg: &ChargeConfig, b: &Battery, soc_percent: Option<f64>) -> (PackTarget, PackTarget) {
    let inputs = CurrentInputs {
        max_cell_v: b.max_cell().map(|(_, v)| v),
        min_cell_v: b.min_cell().map(|(_, v)| v),
        temperatures_c: b.temperature_extremes().map(|((_, lo), (_, hi))| (lo, hi)),
        mosfet_c: b.temperature_mos_c,
        soc_percent: soc_percent.or(b.soc_percent),
        charge_fet: b.charge_fet,
        discharge_fet: b.discharge_fet,
        bms_charge_limit_a: b.charge_current_limit_a,
        bms_discharge_limit_a: b.discharge_current_limit_a,
    };
    (charge_target(cfg, &inputs), discharge_target(cfg, &inputs))
}

/// Computes the bank limits.
pub fn bank_limits(topology: Topology, packs: &[PackLimitInput]) -> BankLimits {
    match topology {
        Topology::Parallel => BankLimits {
            charge: parallel(packs, 1.0, |p| p.charge_limit_a, |p| p.charge_blocked),
            discharge: parallel(packs, -1.0, |p| p.discharge_limit_a, |p| p.discharge_blocked),
        },
        Topology::Series => BankLimits {
            charge: series(packs, true, |p| p.charge_limit_a, |p| p.charge_blocked),
            discharge: series(packs, false, |p| p.discharge_limit_a, |p| p.discharge_blocked),
        },
    }
}

/// The share of each pack in `able` (same order), see the module doc.
pub fn shares(able: &[&PackLimitInput], direction: f64) -> Vec<f64> {
    let n = able.len() as f64;
    let caps: Option<Vec<f64>> =
        able.iter().map(|p| p.capacity_ah.filter(|c| c.is_finite() && *c > 0.0)).collect();
    let cap_shares: Vec<f64> = match caps {
        Some(caps) => {
            let total: f64 = caps.iter().sum();
            caps.iter().map(|c| c / total).collect()
        }
        None => vec![1.0 / n; able.len()],
    };
    let flowing: Option<Vec<f64>> = able
        .iter()
        .map(|p| p.current_a.filter(|a| a.is_finite()).map(|a| (a * direction).max(0.0)))
        .collect();
    let observed = flowing.and_then(|f| {
        let total: f64 = f.iter().sum();
        (total >= SPLIT_MIN_CURRENT_A).then(|| f.iter().map(|a| a / total).collect::<Vec<f64>>())
    });
    let observed = observed.unwrap_or_else(|| cap_shares.clone());
    observed.iter().zip(&cap_shares).map(|(o, c)| o.max(SHARE_FLOOR * c).min(1.0)).collect()
}

fn parallel(
    packs: &[PackLimitInput],
    direction: f64,
    limit: fn(&PackLimitInput) -> f64,
    blocked: fn(&PackLimitInput) -> bool,
) -> Limit {
    let (indexes, able): (Vec<usize>, Vec<&PackLimitInput>) =
        packs.iter().enumerate().filter(|(_, p)| p.online && !blocked(p)).unzip();
    let mut best = Limit { amps: 0.0, by: None };
    for ((&i, pack), share) in indexes.iter().zip(&able).zip(shares(&able, direction)) {
        let amps = limit(pack).max(0.0) / share;
        if best.by.is_none() || amps < best.amps {
            best = Limit { amps, by: Some(i) };
        }
    }
    best
}

fn series(
    packs: &[PackLimitInput],
    charging: bool,
    limit: fn(&PackLimitInput) -> f64,
    blocked: fn(&PackLimitInput) -> bool,
) -> Limit {
    let mut best: Option<Limit> = None;
    for (i, p) in packs.iter().enumerate() {
        if !p.online && !charging {
            continue;
        }
        let amps = if !p.online || blocked(p) { 0.0 } else { limit(p).max(0.0) };
        if best.is_none_or(|b| amps < b.amps) {
            best = Some(Limit { amps, by: Some(i) });
        }
    }
    best.unwrap_or(Limit { amps: 0.0, by: None })
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
