//! A simulated MQTT publisher (an ESP32 BMS bridge): the model pack as a Generic MQTT document,
//! published on a topic every period. Used by `demo --protocol mqtt`.

use super::model::SimPack;
use serde_json::{json, Value};

/// The Generic MQTT document of `pack` now (`unix_now`: the `timestamp` field).
pub fn message(pack: &SimPack, serial: &str, unix_now: f64) -> Value {
    let cells: Vec<Value> = pack
        .cell_voltages_v()
        .iter()
        .zip(pack.balancing())
        .map(|(v, on)| json!({ "voltage": (v * 1000.0).round() / 1000.0, "balance": on }))
        .collect();
    let mut doc = json!({
        "cell_count": pack.cells,
        "capacity": pack.capacity_ah,
        "capacity_remain": (pack.remaining_ah() * 100.0).round() / 100.0,
        "serial_number": serial,
        "voltage": (pack.voltage_v() * 100.0).round() / 100.0,
        "current": pack.current_a,
        "soc": (pack.soc_percent * 10.0).round() / 10.0,
        "charge_fet": true,
        "discharge_fet": true,
        "temperature_mos": (pack.temperature_mos_c * 10.0).round() / 10.0,
        "cells": cells,
        "history": { "charge_cycles": pack.cycles },
        "timestamp": unix_now.floor(),
    });
    if let Some(obj) = doc.as_object_mut() {
        for (i, t) in pack.temperatures_c.iter().take(4).enumerate() {
            obj.insert(format!("temperature_{}", i + 1), json!((t * 10.0).round() / 10.0));
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_document_is_valid_input() {
        let pack = SimPack::new(16);
        let doc = message(&pack, "SIM1", 1_700_000_000.0);
        let m = crate::bms::mqtt::decode(doc.to_string().as_bytes()).unwrap();
        assert_eq!(m.battery.cell_count, Some(16));
        assert_eq!(m.battery.temperatures_c.map(|t| t.len()), Some(3));
        assert_eq!(m.timestamp_s, Some(1_700_000_000.0));
    }
}
