//! The state document of one battery: the Generic MQTT schema's names for what is known, then
//! the limits and the charge phase. The MQTT output publishes it; the status page shows it.
//! Here, not in either of them, so that both use it and neither depends on the other.

use crate::monitor::Output;
use serde_json::{json, Map, Value};
use std::time::Instant;

/// Rounds to `places` decimals (3.4250000000000003 prints as 3.425).
fn round(v: f64, places: i32) -> f64 {
    crate::protocol::json::round(v, places)
}

/// A known, finite value rounded as the document gives it (`None`: the key is left out). The
/// rounding can still overflow a huge value to infinity, which the document shows as null.
pub fn rounded(v: Option<f64>, places: i32) -> Option<f64> {
    v.filter(|v| v.is_finite()).map(|v| round(v, places))
}

/// The state document of `out`: the input schema's names for what is known (absent is absent,
/// never zero), then the limits and the charge phase. `timestamp` is when the values were read.
pub fn state_json(out: &Output, unix_now: f64) -> Value {
    state_json_at(out, unix_now, Instant::now())
}

/// [`state_json`] as it was at `now` (`unix_now` on the wall clock): the status page renders a
/// state offered earlier.
pub fn state_json_at(out: &Output, unix_now: f64, now: Instant) -> Value {
    let b = &out.battery;
    let l = &out.limits;
    let mut m = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            m.insert(key.to_owned(), v);
        }
    };
    let num = |v: Option<f64>, places: i32| rounded(v, places).map(|v| json!(v));
    let cells = b.cell_voltages_v.as_ref();
    put("cell_count", b.cells_in_series().map(|n| json!(n)));
    put("capacity", num(b.nominal_capacity_ah.or(b.full_capacity_ah), 3));
    put("serial_number", b.serial.as_ref().map(|s| json!(s)));
    put("voltage", num(b.voltage_v, 3));
    put("current", num(b.current_a, 3));
    put("soc", num(b.soc_percent, 2));
    if let Some(temps) = &b.temperatures_c {
        for (i, t) in temps.iter().take(4).enumerate() {
            put(&format!("temperature_{}", i + 1), num(Some(*t), 2));
        }
    }
    put("temperature_mos", num(b.temperature_mos_c, 2));
    put("charge_fet", b.charge_fet.map(|v| json!(v)));
    put("discharge_fet", b.discharge_fet.map(|v| json!(v)));
    put("balance_fet", b.balancer_enabled.map(|v| json!(v)));
    put(
        "cells",
        cells.map(|cells| {
            let balancing = b.balancing_cells.as_ref();
            let list: Vec<Value> = cells
                .iter()
                .enumerate()
                .map(|(i, v)| match balancing.and_then(|flags| flags.get(i)) {
                    Some(on) => json!({ "voltage": round(*v, 4), "balance": on }),
                    None => json!({ "voltage": round(*v, 4) }),
                })
                .collect();
            Value::Array(list)
        }),
    );
    put("capacity_remain", num(b.remaining_capacity_ah, 3));
    put("soh", num(b.soh_percent, 2));
    put("hardware_version", b.hardware_version.as_ref().map(|s| json!(s)));
    put("production", b.production_date.as_ref().map(|s| json!(s)));
    put("max_battery_charge_current", num(b.charge_current_limit_a, 2));
    put("max_battery_discharge_current", num(b.discharge_current_limit_a, 2));
    put("max_battery_voltage_bms", num(b.charge_voltage_limit_v, 3));
    put("min_battery_voltage_bms", num(b.discharge_voltage_limit_v, 3));
    put("history", b.cycles.map(|c| json!({ "charge_cycles": c })));
    let protection: Map<String, Value> = b
        .alarms
        .entries()
        .iter()
        .filter(|(name, _, _)| *name != "bms_cable")
        .filter_map(|(name, _, level)| level.map(|l| ((*name).to_owned(), json!(l.as_i32()))))
        .collect();
    if !protection.is_empty() {
        put("protection", Some(Value::Object(protection)));
    }
    // Derived values for dashboards (Home Assistant): power and the cell spread.
    put("power", num(b.power_w(), 1));
    if let (Some((_, lo)), Some((_, hi))) = (b.min_cell(), b.max_cell()) {
        put("cell_min", num(Some(lo), 4));
        put("cell_max", num(Some(hi), 4));
        put("cell_delta", num(Some(hi - lo), 4));
    }
    // What bms-bridge publishes to the inverters.
    put("connected", Some(json!(out.connected)));
    put("cvl", num(l.charge_voltage_v, 3));
    put("ccl", num(l.charge_current_a, 2));
    put("dcl", num(l.discharge_current_a, 2));
    put("charge_phase", Some(json!(l.charge_mode)));
    put("charge_limitation", Some(json!(l.charge_limitation)));
    put("discharge_limitation", Some(json!(l.discharge_limitation)));
    let read_at = b.read_at.map(|t| unix_now - now.saturating_duration_since(t).as_secs_f64());
    put("timestamp", num(read_at.or(Some(unix_now)), 3));
    Value::Object(m)
}
