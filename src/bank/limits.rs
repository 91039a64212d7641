//! The bank's charge and discharge current limits from its packs' own limits and the way the
//! bank current splits between them. Pure (time passed in). Formula and a worked example:
//! `docs/multi-battery.md` "Limits".
//!
//! Parallel packs do not share a bank current equally: a pack with lower internal resistance
//! takes more, whatever its capacity. The bank may carry `I` only while every pack `i` carries
//! `share_i x I <= limit_i`, so the bank limit is `min(limit_i / share_i)` over the packs that can
//! take current in that direction (online, FET on). `limit_i` is the pack's effective limit: its
//! own rating (`max_charge_current` / `max_discharge_current` of its `[[port.battery]]`, default
//! `[charge]`) lowered by its BMS's reported limit and by its own cell-voltage, temperature, MOSFET
//! and SoC tables and FET state.
//!
//! `share_i` comes from the packs' own current readings ([`SplitEstimator`]), measured while the
//! net bank current in that direction is at least [`SPLIT_MIN_CURRENT_A`], hardly any current
//! flows the other way inside the bank (one pack charging another), and the packs' readings were
//! taken within [`SPLIT_MAX_SPREAD`] of each other (one pack's new reading beside the others' old
//! ones is no split: the bank runs a cycle on every pack's reading). `measured_i = I_i / I_bank`
//! (net), so a pack being charged by another makes the others' shares larger, never smaller.
//!
//! - a smaller share is believed from steady readings only (every pack within [`STEADY_CHANGE`]
//!   of its previous reading), smoothed over [`SHARE_TAU_S`];
//! - a larger share counts at once beyond [`SHARE_JUMP`] (steady) or [`SHARE_JUMP_CHANGING`]
//!   (current changing: readings a moment apart disagree by what changed in between), else it is
//!   smoothed in;
//! - a split measured at `I` is trusted up to `(1 + SPLIT_EXTRAPOLATION) x I`
//!   ([`SplitEstimator::trusted_up_to`]): packs at different open-circuit voltages carry a
//!   circulating part (`I_i = a_i x I + c_i`), so the split shifts with the current; the bank
//!   limit never exceeds that, or the worst-case limit (the smallest pack limit), whichever is
//!   larger;
//! - while nothing is measured (at rest, just started, a pack back or its FET on again), a pack
//!   without a remembered share counts with share 1: the worst plausible split is that it takes
//!   all of it (a capacity-proportional guess is what overloads a small pack with low
//!   resistance); current flowing for [`SPLIT_MAX_UNCONFIRMED`] without comparable readings drops
//!   the remembered split;
//! - when a pack leaves (lost, FET off), readings taken before that cycle are not compared with
//!   later ones (they may show the old split); the others carry its part: their
//!   remembered shares are scaled up to add up to 1 (parallel resistances keep their ratios); so are they while a pack
//!   that came back is not measured yet (it may take nothing); shares never count as less than
//!   [`SHARE_FLOOR_OF_EQUAL`] of an equal share.
//!
//! Series packs carry one current: the bank limit is the smallest pack limit (a series bank with
//! a pack missing is lost as a whole, see `task.rs`).

use super::config::Topology;
use crate::battery::Battery;
use crate::control::current::{charge_target, discharge_target, CurrentInputs, LimitReason};
use crate::control::ChargeConfig;
use std::time::{Duration, Instant};

/// Below this bank current (A) in a direction the split is not measured (noise, circulating
/// currents between packs).
pub const SPLIT_MIN_CURRENT_A: f64 = 3.0;

/// The split is only measured while the current flowing the other way inside the bank (one pack
/// charging another) is at most this fraction of the bank current.
pub const SPLIT_MAX_COUNTERFLOW: f64 = 0.2;

/// Readings further apart than this are not compared.
pub const SPLIT_MAX_SPREAD: Duration = Duration::from_millis(500);

/// Smoothing of the measured share while the current is steady (s).
pub const SHARE_TAU_S: f64 = 5.0;

/// A measured share this much (relative) above the remembered one counts at once.
pub const SHARE_JUMP: f64 = 0.02;

/// While the current changes, a measured share this much (relative) above the remembered one
/// counts at once (a smaller rise is smoothed).
pub const SHARE_JUMP_CHANGING: f64 = 0.05;

/// A remembered split is trusted up to this much (relative) above the bank current it was
/// measured at (see [`SplitEstimator::trusted_up_to`]).
pub const SPLIT_EXTRAPOLATION: f64 = 0.4;

/// Current flowing this long without comparable readings drops the remembered split (s): the
/// worst plausible split stands in until the readings can be compared again.
pub const SPLIT_MAX_UNCONFIRMED: Duration = Duration::from_secs(20);

/// A pack's current is steady when its reading moved by at most this fraction (or
/// [`STEADY_MIN_A`]) since its previous reading.
pub const STEADY_CHANGE: f64 = 0.03;

/// See [`STEADY_CHANGE`] (A).
pub const STEADY_MIN_A: f64 = 0.5;

/// A pack's share never counts as less than this fraction of an equal share (1 / packs able).
pub const SHARE_FLOOR_OF_EQUAL: f64 = 0.25;

/// One pack's part in the bank limits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PackLimitInput {
    /// The pack is a member of the bank now (answers; see `health.rs`).
    pub online: bool,
    /// Pack current, + = charging.
    pub current_a: Option<f64>,
    /// When that current was read (tells a new reading from the same one seen again).
    pub read_at: Option<Instant>,
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
    /// That pack's share of the bank current used (1 for series).
    pub share: f64,
    /// The split's own limit before [`SplitEstimator::trusted_up_to`] (equal to `amps` unless
    /// the split is not trusted that far; for the limitation text).
    pub untrusted_amps: f64,
}

impl Limit {
    const NONE: Limit = Limit { amps: 0.0, by: None, share: 0.0, untrusted_amps: 0.0 };
}

/// The bank's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BankLimits {
    /// Charge current limit.
    pub charge: Limit,
    /// Discharge current limit.
    pub discharge: Limit,
}

/// A pack's own limit in one direction and the rules that set it.
#[derive(Debug, Clone, PartialEq)]
pub struct PackTarget {
    /// Amps.
    pub amps: f64,
    /// The rules giving that value.
    pub reasons: Vec<LimitReason>,
}

/// A pack's own charge and discharge limits now: the charge-control rules (its rating as the
/// maximum, its BMS's limit, cell voltage, temperature, MOSFET, SoC tables, FET state) on its
/// reading, without the rate limiter (the bank's limiter smooths the bank's result).
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
    let (c, c_why) = charge_target(cfg, &inputs);
    let (d, d_why) = discharge_target(cfg, &inputs);
    (PackTarget { amps: c, reasons: c_why }, PackTarget { amps: d, reasons: d_why })
}

/// Remembers each pack's share of the bank current, per direction (see the module doc).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitEstimator {
    charge: Direction,
    discharge: Direction,
    /// Per pack: the latest reading seen (time, current) and the current of the one before.
    readings: Vec<PackReadings>,
    last: Option<Instant>,
}

/// What the estimator remembers for one direction.
#[derive(Debug, Clone, Default, PartialEq)]
struct Direction {
    /// Each pack's share, once measured.
    memory: Vec<Option<f64>>,
    /// Since when current flows in this direction without a measurement (readings never
    /// comparable): after [`SPLIT_MAX_UNCONFIRMED`] the remembered split is dropped.
    unconfirmed_since: Option<Instant>,
    /// The bank current (A, in this direction) of the last measurement.
    measured_at_a: Option<f64>,
    /// Which packs took current in this direction at the previous cycle.
    able_before: Vec<bool>,
    /// When a pack last left: readings taken before then saw the old split (the pack still
    /// carried its part) and are never compared with readings taken after.
    able_since: Option<Instant>,
}

/// One pack's latest reading seen (time, current) and the current of the reading before.
type PackReadings = (Option<(Instant, f64)>, Option<f64>);

/// The shares in force for one direction, per pack (`None`: the pack takes no current).
pub type Shares = Vec<Option<f64>>;

impl SplitEstimator {
    /// An estimator that has measured nothing.
    pub fn new(packs: usize) -> Self {
        let none = Direction {
            memory: vec![None; packs],
            unconfirmed_since: None,
            measured_at_a: None,
            able_before: Vec::new(),
            able_since: None,
        };
        Self { charge: none.clone(), discharge: none, readings: vec![(None, None); packs], last: None }
    }

    /// Takes the packs' readings at `now` and gives the shares for (charge, discharge).
    pub fn update(&mut self, now: Instant, packs: &[PackLimitInput]) -> (Shares, Shares) {
        let dt = self.last.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last = Some(now);
        let follow = 1.0 - (-dt / SHARE_TAU_S).exp();
        self.charge.memory.resize(packs.len(), None);
        self.discharge.memory.resize(packs.len(), None);
        self.readings.resize(packs.len(), (None, None));
        for (slot, pack) in self.readings.iter_mut().zip(packs) {
            if let (Some(at), Some(a)) = (pack.read_at, pack.current_a) {
                if slot.0.is_none_or(|(seen, _)| seen != at) {
                    *slot = (Some((at, a)), slot.0.map(|(_, before)| before));
                }
            }
        }
        let steady = |able: &[bool]| {
            self.readings.iter().zip(able).filter(|(_, ok)| **ok).all(|((latest, before), _)| {
                match (latest, before) {
                    (Some((_, a)), Some(b)) => (a - b).abs() <= (STEADY_CHANGE * a.abs()).max(STEADY_MIN_A),
                    _ => false,
                }
            })
        };
        let coherent = |able: &[bool]| {
            let times: Vec<Instant> =
                packs.iter().zip(able).filter(|(_, ok)| **ok).filter_map(|(p, _)| p.read_at).collect();
            match (times.iter().min(), times.iter().max()) {
                (Some(first), Some(last)) => last.saturating_duration_since(*first) <= SPLIT_MAX_SPREAD,
                _ => false,
            }
        };
        let able_charge: Vec<bool> = packs.iter().map(|p| p.online && !p.charge_blocked).collect();
        let able_discharge: Vec<bool> = packs.iter().map(|p| p.online && !p.discharge_blocked).collect();
        let measure_charge =
            Measure { comparable: coherent(&able_charge), steady: steady(&able_charge), follow };
        let measure_discharge =
            Measure { comparable: coherent(&able_discharge), steady: steady(&able_discharge), follow };
        let charge = direction_shares(now, packs, &able_charge, &mut self.charge, 1.0, measure_charge);
        let discharge =
            direction_shares(now, packs, &able_discharge, &mut self.discharge, -1.0, measure_discharge);
        (charge, discharge)
    }

    /// The largest (charge, discharge) bank current the remembered split may be trusted for: a
    /// split measured at `I` holds near `I` only (packs at different open-circuit voltages shift
    /// it with the current), so a limit may reach at most [`SPLIT_EXTRAPOLATION`] above the
    /// current of the last measurement (or the worst-case limit, whichever is larger).
    pub fn trusted_up_to(&self) -> (Option<f64>, Option<f64>) {
        let cap = |d: &Direction| d.measured_at_a.map(|a| a * (1.0 + SPLIT_EXTRAPOLATION));
        (cap(&self.charge), cap(&self.discharge))
    }

    /// The remembered (charge, discharge) share of `pack`, if measured.
    pub fn remembered(&self, pack: usize) -> (Option<f64>, Option<f64>) {
        let of = |d: &Direction| d.memory.get(pack).copied().flatten();
        (of(&self.charge), of(&self.discharge))
    }
}

/// Whether this cycle's readings can be compared, and how.
#[derive(Debug, Clone, Copy)]
struct Measure {
    /// Taken within [`SPLIT_MAX_SPREAD`] of each other.
    comparable: bool,
    /// Each within [`STEADY_CHANGE`] of its previous reading.
    steady: bool,
    /// How far a remembered share moves towards the measured one now (smoothing).
    follow: f64,
}

/// Updates `state` from the packs' currents in `direction` and gives the shares in force.
fn direction_shares(
    now: Instant,
    packs: &[PackLimitInput],
    able: &[bool],
    state: &mut Direction,
    direction: f64,
    measure: Measure,
) -> Shares {
    // A pack left: the split changed when it went (before we noticed), and another pack's reading
    // taken before now may still show the old split. Mixed with a new reading it understates a
    // pack's share (the bank limit would stay high until the next comparable cycle), so only
    // readings taken after this cycle are compared. A pack that joins needs no such rule: it
    // joined physically before it counts, and without a remembered share it is only measured
    // from steady readings.
    let left = state.able_before.iter().zip(able).any(|(was, is)| *was && !*is);
    if left {
        state.able_since = Some(now);
    }
    if state.able_before.as_slice() != able {
        state.able_before = able.to_vec();
    }
    let since_change = state.able_since;
    let after_change = packs
        .iter()
        .zip(able)
        .filter(|(_, ok)| **ok)
        .all(|(p, _)| since_change.is_none_or(|since| p.read_at.is_some_and(|at| at >= since)));
    let memory = &mut state.memory;
    // A pack that takes no current now starts from the worst case when it takes current again.
    for (slot, ok) in memory.iter_mut().zip(able) {
        if !ok {
            *slot = None;
        }
    }
    if memory.iter().zip(able).all(|(m, ok)| !ok || m.is_none()) {
        state.measured_at_a = None;
    }
    let flows: Option<Vec<f64>> = packs
        .iter()
        .zip(able)
        .filter(|(_, ok)| **ok)
        .map(|(p, _)| p.current_a.filter(|a| a.is_finite()).map(|a| a * direction))
        .collect();
    let flows = flows.filter(|f| !f.is_empty()).unwrap_or_default();
    // The share of the bank current: against the net current, so that a pack charged by another
    // (counterflow) makes the others' shares larger, never smaller.
    let net: f64 = flows.iter().sum();
    let backward: f64 = flows.iter().map(|a| (-a).max(0.0)).sum();
    let flowing = net >= SPLIT_MIN_CURRENT_A;
    if flowing && measure.comparable && after_change && backward <= SPLIT_MAX_COUNTERFLOW * net {
        state.unconfirmed_since = None;
        state.measured_at_a = Some(net);
        let able_memory = memory.iter_mut().zip(able).filter(|(_, ok)| **ok).map(|(m, _)| m);
        for (slot, flow) in able_memory.zip(&flows) {
            let measured = flow.max(0.0) / net;
            *slot = match *slot {
                // Nothing known yet: only a steady split is a measurement.
                None if !measure.steady => None,
                None => Some(measured),
                Some(old) if measured < old => {
                    // Smaller: believed from steady readings only, smoothed.
                    Some(if measure.steady { old + measure.follow * (measured - old) } else { old })
                }
                Some(old) => {
                    // Larger: at once beyond the jump (2 % steady, 5 % while the current changes:
                    // readings a moment apart disagree by what changed in between), else smoothed.
                    let jump = if measure.steady { SHARE_JUMP } else { SHARE_JUMP_CHANGING };
                    Some(if measured > old * (1.0 + jump) {
                        measured
                    } else {
                        old + measure.follow * (measured - old)
                    })
                }
            };
        }
    } else if flowing {
        // Current flows but the readings say nothing: the remembered split ages out.
        let since = *state.unconfirmed_since.get_or_insert(now);
        if now.saturating_duration_since(since) > SPLIT_MAX_UNCONFIRMED {
            memory.iter_mut().for_each(|m| *m = None);
            state.measured_at_a = None;
        }
    }
    let n = able.iter().filter(|ok| **ok).count().max(1) as f64;
    let known: Vec<f64> = memory.iter().zip(able).filter(|(_, ok)| **ok).filter_map(|(m, _)| *m).collect();
    let total: f64 = known.iter().sum();
    // Packs missing from the remembered split (left, or back but not measured yet and perhaps
    // taking nothing): the measured ones carry their part, in proportion.
    let scale = if total > 0.0 && total < 1.0 { 1.0 / total } else { 1.0 };
    memory
        .iter()
        .zip(able)
        .map(|(m, ok)| ok.then(|| m.map_or(1.0, |s| (s * scale).clamp(SHARE_FLOOR_OF_EQUAL / n, 1.0))))
        .collect()
}

/// Computes the bank limits from the packs and the shares of [`SplitEstimator::update`];
/// `trusted_up_to` from [`SplitEstimator::trusted_up_to`] (charge, discharge).
pub fn bank_limits(
    topology: Topology,
    packs: &[PackLimitInput],
    charge_shares: &[Option<f64>],
    discharge_shares: &[Option<f64>],
    trusted_up_to: (Option<f64>, Option<f64>),
) -> BankLimits {
    match topology {
        Topology::Parallel => BankLimits {
            charge: parallel(packs, charge_shares, trusted_up_to.0, |p| p.charge_limit_a),
            discharge: parallel(packs, discharge_shares, trusted_up_to.1, |p| p.discharge_limit_a),
        },
        Topology::Series => BankLimits {
            charge: series(packs, |p| p.charge_limit_a, |p| p.charge_blocked),
            discharge: series(packs, |p| p.discharge_limit_a, |p| p.discharge_blocked),
        },
    }
}

fn parallel(
    packs: &[PackLimitInput],
    shares: &[Option<f64>],
    trusted_up_to: Option<f64>,
    limit: fn(&PackLimitInput) -> f64,
) -> Limit {
    let mut best = Limit::NONE;
    // The worst case (any pack may take it all) is safe whatever the split.
    let mut worst_case: Option<Limit> = None;
    for (i, (pack, share)) in packs.iter().zip(shares).enumerate() {
        let Some(share) = share.filter(|s| *s > 0.0) else { continue };
        let own = limit(pack).max(0.0);
        let amps = own / share;
        if best.by.is_none() || amps < best.amps {
            best = Limit { amps, by: Some(i), share, untrusted_amps: amps };
        }
        if worst_case.is_none_or(|w| own < w.amps) {
            worst_case = Some(Limit { amps: own, by: Some(i), share: 1.0, untrusted_amps: own });
        }
    }
    match (trusted_up_to, worst_case) {
        // Beyond what the split was measured for: only as far as it can be trusted, and never
        // below the worst case.
        (Some(cap), Some(worst)) if best.amps > cap => {
            if cap > worst.amps {
                Limit { amps: cap, ..best }
            } else {
                Limit { amps: worst.amps.min(best.amps), untrusted_amps: best.amps, ..worst }
            }
        }
        _ => best,
    }
}

fn series(
    packs: &[PackLimitInput],
    limit: fn(&PackLimitInput) -> f64,
    blocked: fn(&PackLimitInput) -> bool,
) -> Limit {
    let mut best: Option<Limit> = None;
    for (i, p) in packs.iter().enumerate() {
        let amps = if !p.online || blocked(p) { 0.0 } else { limit(p).max(0.0) };
        if best.is_none_or(|b| amps < b.amps) {
            best = Some(Limit { amps, by: Some(i), share: 1.0, untrusted_amps: amps });
        }
    }
    best.unwrap_or(Limit::NONE)
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
