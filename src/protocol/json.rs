//! The JSON form of a decoded frame, printed by `bms-bridge decode`.
//!
//! Key names match the `expected` names of the shared test vectors, so one vocabulary serves the
//! CLI, the tests and the docs. Only values the frame carries are printed.

use super::Decoded;
use serde_json::{json, Map, Value};

/// Rounds to `places` decimals so that 3.4250000000000003 prints as 3.425.
pub fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

/// Builds the JSON object for a decoded frame.
pub fn to_json(decoded: &Decoded) -> Value {
    let b = &decoded.battery;
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_owned(), value);
        }
    };
    let num = |v: Option<f64>, places: i32| v.map(|v| json!(round(v, places)));
    put("voltage_v", num(b.voltage_v, 3));
    put("current_a", num(b.current_a, 3));
    put("soc_percent", num(b.soc_percent, 2));
    put("soh_percent", num(b.soh_percent, 2));
    put("remaining_capacity_ah", num(b.remaining_capacity_ah, 3));
    put("nominal_capacity_ah", num(b.nominal_capacity_ah, 3));
    put("full_capacity_ah", num(b.full_capacity_ah, 3));
    put("cycles", b.cycles.map(|v| json!(v)));
    put("cell_count", b.cell_count.map(|v| json!(v)));
    put(
        "cells_v",
        b.cell_voltages_v
            .as_ref()
            .map(|cells| json!(cells.iter().map(|v| round(*v, 4)).collect::<Vec<_>>())),
    );
    put("min_cell_v", num(b.min_cell_voltage_v, 4));
    put("max_cell_v", num(b.max_cell_voltage_v, 4));
    put(
        "temperatures_c",
        b.temperatures_c
            .as_ref()
            .map(|t| json!(t.iter().map(|v| round(*v, 2)).collect::<Vec<_>>())),
    );
    put("temperature_mos_c", num(b.temperature_mos_c, 2));
    put("charge_fet", b.charge_fet.map(|v| json!(v)));
    put("discharge_fet", b.discharge_fet.map(|v| json!(v)));
    put(
        "balancing_cells",
        b.balancing_cell_numbers().map(|v| json!(v)),
    );
    put("charge_voltage_limit_v", num(b.charge_voltage_limit_v, 3));
    put("charge_current_limit_a", num(b.charge_current_limit_a, 3));
    put(
        "discharge_current_limit_a",
        num(b.discharge_current_limit_a, 3),
    );
    put(
        "discharge_voltage_limit_v",
        num(b.discharge_voltage_limit_v, 3),
    );
    let alarms: Map<String, Value> = b
        .alarms
        .entries()
        .iter()
        .filter_map(|(name, _, level)| level.map(|l| ((*name).to_owned(), json!(l.as_i32()))))
        .collect();
    if !alarms.is_empty() {
        put("alarms", Some(Value::Object(alarms)));
    }
    let mut extra: Map<String, Value> = decoded
        .extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    for (key, value) in [
        ("device_model", &b.model),
        ("serial_number", &b.serial),
        ("firmware_version", &b.firmware_version),
        ("hardware_version", &b.hardware_version),
        ("production_date", &b.production_date),
    ] {
        if let Some(text) = value {
            extra.insert(key.to_owned(), json!(text));
        }
    }
    if let Some(on) = b.balancer_enabled {
        extra.insert("balancer_enabled".to_owned(), json!(on));
    }
    if !extra.is_empty() {
        out.insert("extra".to_owned(), Value::Object(extra));
    }
    Value::Object(out)
}
