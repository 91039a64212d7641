//! The bank as one battery: measurements of the online packs combined. Pure.
//!
//! Parallel: current = sum, voltage = mean, capacities = sums, SoC and SoH capacity-weighted.
//! Series: voltage = sum and cells concatenated (only while every pack answers: a partial sum would
//! be wrong), current = the common current (mean of the packs' readings), capacity and SoC = the
//! weakest pack's. Both: lowest/highest cell and sensor across all online packs, labelled `P2C5`
//! (pack 2, cell 5) / `P1T2`; every alarm at the worst level of any online pack; a pack that does not
//! answer raises `/Alarms/BmsCable` to warning; modules online/offline/blocking counted.
//!
//! Limits (`charge_current_limit_a`, `discharge_current_limit_a`) are left unset here: they come
//! from [`super::limits`].

use super::config::Topology;
use crate::battery::{AlarmLevel, Alarms, Battery, ExtremeIds};

/// One pack as its monitor publishes it.
#[derive(Debug, Clone, Copy)]
pub struct PackView<'a> {
    /// The pack's published view (measurements unset while it is lost).
    pub battery: &'a Battery,
    /// Whether its BMS answers.
    pub online: bool,
}

/// Product name of a bank.
pub const BANK_MODEL: &str = "Battery bank";

fn sum(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.flatten().fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let known: Vec<f64> = values.flatten().collect();
    (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
}

fn extreme(values: impl Iterator<Item = Option<f64>>, higher: bool) -> Option<f64> {
    values.flatten().reduce(|a, b| if (b > a) == higher { b } else { a })
}

/// Capacity a pack holds when full: learned, else rated.
pub fn pack_capacity_ah(b: &Battery) -> Option<f64> {
    b.full_capacity_ah.or(b.nominal_capacity_ah).filter(|c| *c > 0.0)
}

/// Mean of `value` weighted by each pack's capacity; the plain mean when a capacity is unknown.
fn weighted(packs: &[&Battery], value: fn(&Battery) -> Option<f64>) -> Option<f64> {
    let pairs: Vec<(f64, Option<f64>)> =
        packs.iter().filter_map(|b| value(b).map(|v| (v, pack_capacity_ah(b)))).collect();
    let total: f64 = pairs.iter().filter_map(|(_, c)| *c).sum();
    if !pairs.is_empty() && pairs.iter().all(|(_, c)| c.is_some()) && total > 0.0 {
        Some(pairs.iter().map(|(v, c)| v * c.unwrap_or(0.0)).sum::<f64>() / total)
    } else {
        mean(pairs.iter().map(|(v, _)| Some(*v)))
    }
}

/// A label and a value, the better of two kept.
type Labelled = Option<(String, f64)>;

fn keep(slot: &mut Labelled, label: String, value: f64, higher: bool) {
    if slot.as_ref().is_none_or(|(_, best)| (value > *best) == higher && value != *best) {
        *slot = Some((label, value));
    }
}

/// Lowest and highest cell and sensor across the online packs, with `P<n>C<m>` / `P<n>T<m>` labels.
fn extremes(packs: &[(usize, &Battery)]) -> (Labelled, Labelled, Labelled, Labelled) {
    let (mut low, mut high, mut cold, mut hot) = (None, None, None, None);
    for (number, b) in packs {
        let label = |prefix: &str, index: Option<usize>| match index {
            Some(i) => format!("P{number}{prefix}{i}"),
            None => format!("P{number}"),
        };
        if let Some((index, v)) = b.min_cell() {
            keep(&mut low, label("C", index), v, false);
        }
        if let Some((index, v)) = b.max_cell() {
            keep(&mut high, label("C", index), v, true);
        }
        if let Some(((lo_i, lo), (hi_i, hi))) = b.temperature_extremes() {
            keep(&mut cold, label("T", Some(lo_i)), lo, false);
            keep(&mut hot, label("T", Some(hi_i)), hi, true);
        }
    }
    (low, high, cold, hot)
}

/// Some(true) when any pack has the FET on, Some(false) when all known ones are off.
fn any_on(packs: &[&Battery], fet: fn(&Battery) -> Option<bool>) -> Option<bool> {
    packs.iter().filter_map(|b| fet(b)).reduce(|a, b| a || b)
}

fn count(n: usize) -> Option<u32> {
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The bank's battery from its packs (in config order: pack 1 first).
pub fn aggregate(topology: Topology, packs: &[PackView<'_>]) -> Battery {
    let numbered: Vec<(usize, &Battery)> =
        packs.iter().enumerate().filter(|(_, p)| p.online).map(|(i, p)| (i + 1, p.battery)).collect();
    let online: Vec<&Battery> = numbered.iter().map(|(_, b)| *b).collect();
    let all_online = online.len() == packs.len();
    let mut bank = Battery { model: Some(BANK_MODEL.to_owned()), ..Battery::default() };
    let cells_each: Vec<Option<u16>> = packs.iter().map(|p| p.battery.cells_in_series()).collect();
    match topology {
        Topology::Parallel => {
            bank.voltage_v = mean(online.iter().map(|b| b.voltage_v));
            bank.current_a = sum(online.iter().map(|b| b.current_a));
            bank.remaining_capacity_ah = sum(online.iter().map(|b| b.remaining_capacity_ah));
            bank.full_capacity_ah = sum(online.iter().map(|b| b.full_capacity_ah));
            bank.nominal_capacity_ah = sum(online.iter().map(|b| b.nominal_capacity_ah));
            bank.soc_percent = weighted(&online, |b| b.soc_percent);
            bank.soh_percent = weighted(&online, |b| b.soh_percent);
            // CVL is cells x max cell voltage: with packs that disagree, the smaller count is safe.
            let known: Vec<u16> = cells_each.iter().flatten().copied().collect();
            bank.cell_count = known.iter().min().copied();
            if known.iter().any(|n| Some(n) != known.first()) {
                Alarms::raise(&mut bank.alarms.internal_failure, AlarmLevel::Alarm);
            }
        }
        Topology::Series => {
            if all_online {
                bank.voltage_v = online.iter().map(|b| b.voltage_v).sum();
                bank.cell_voltages_v = online
                    .iter()
                    .map(|b| b.cell_voltages_v.clone())
                    .collect::<Option<Vec<Vec<f64>>>>()
                    .map(|v| v.concat());
                bank.balancing_cells = online
                    .iter()
                    .map(|b| b.balancing_cells.clone())
                    .collect::<Option<Vec<Vec<bool>>>>()
                    .map(|v| v.concat());
            }
            bank.current_a = mean(online.iter().map(|b| b.current_a));
            bank.remaining_capacity_ah = extreme(online.iter().map(|b| b.remaining_capacity_ah), false);
            bank.full_capacity_ah = extreme(online.iter().map(|b| b.full_capacity_ah), false);
            bank.nominal_capacity_ah = extreme(online.iter().map(|b| b.nominal_capacity_ah), false);
            bank.soc_percent = extreme(online.iter().map(|b| b.soc_percent), false);
            bank.soh_percent = extreme(online.iter().map(|b| b.soh_percent), false);
            bank.cell_count = cells_each.iter().copied().sum();
        }
    }
    bank.cycles = online.iter().filter_map(|b| b.cycles).max();
    let (low, high, cold, hot) = extremes(&numbered);
    bank.min_cell_voltage_v = low.as_ref().map(|l| l.1);
    bank.max_cell_voltage_v = high.as_ref().map(|h| h.1);
    let temps: Vec<f64> = online.iter().filter_map(|b| b.temperatures_c.clone()).flatten().collect();
    bank.temperatures_c = (!temps.is_empty()).then_some(temps);
    bank.extreme_ids = Some(ExtremeIds {
        min_cell: low.map(|l| l.0),
        max_cell: high.map(|h| h.0),
        min_temperature: cold.map(|c| c.0),
        max_temperature: hot.map(|h| h.0),
    });
    bank.temperature_mos_c = extreme(online.iter().map(|b| b.temperature_mos_c), true);
    bank.charge_fet = any_on(&online, |b| b.charge_fet);
    bank.discharge_fet = any_on(&online, |b| b.discharge_fet);
    bank.balancer_enabled = any_on(&online, |b| b.balancer_enabled);
    // A bank heats while any of its packs does; its heater figures are per pack (on their
    // own services).
    bank.heater.heating = any_on(&online, |b| b.heater.heating);
    bank.heater.enabled = any_on(&online, |b| b.heater.enabled);
    bank.charge_voltage_limit_v = extreme(online.iter().map(|b| b.charge_voltage_limit_v), false);
    bank.discharge_voltage_limit_v = extreme(online.iter().map(|b| b.discharge_voltage_limit_v), true);
    bank.modules_online = count(online.len());
    bank.modules_offline = count(packs.len() - online.len());
    bank.modules_blocking_charge = count(online.iter().filter(|b| b.charge_fet == Some(false)).count());
    bank.modules_blocking_discharge = count(online.iter().filter(|b| b.discharge_fet == Some(false)).count());
    for b in &online {
        // A pack's own cable state is the daemon's, not its BMS's: the bank sets its own below.
        bank.alarms.raise_all(&Alarms { bms_cable: None, ..b.alarms.clone() });
    }
    let cable = if all_online { AlarmLevel::Ok } else { AlarmLevel::Warning };
    Alarms::raise(&mut bank.alarms.bms_cable, cable);
    bank.read_at = online.iter().filter_map(|b| b.read_at).max();
    bank
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
