//! The Generic MQTT JSON codec: one message in, a complete [`Battery`] or a [`MessageError`]
//! naming the field and the reason out. Pure: no clock (the optional `timestamp` is handed to
//! the caller, which knows the time), no I/O.
//!
//! Every reading is built from this message alone: an optional field the message lacks is
//! `None`, never a value left over from an earlier message (the incumbent's "partial message
//! keeps old values" weakness).

use crate::battery::{AlarmLevel, Alarms, Battery, Heater};
use crate::protocol::Decoded;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Cell voltages a message may carry (V); outside is a wrong message, not a cell.
pub const CELL_VOLTAGE_V: (f64, f64) = (0.5, 5.0);
/// Most series cells a message may announce (a 48 V x 3 stack of LFP has 48).
pub const MAX_CELLS: u64 = 64;

/// Why a message was rejected: the field (dotted path, `cells[3].voltage`) and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct MessageError {
    /// The field at fault (`(message)` for the document as a whole).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl MessageError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self { field: field.to_owned(), reason: reason.into() }
    }
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The battery as this message describes it.
    pub battery: Battery,
    /// The optional `timestamp` (Unix seconds) the publisher says the values are from.
    pub timestamp_s: Option<f64>,
    /// Fields without a place in the battery model (history, custom_field; the heater fields too), by name.
    pub extra: BTreeMap<&'static str, Value>,
}

impl Message {
    /// As the other codecs' output (`bms-bridge decode`, contract tests).
    pub fn into_decoded(self) -> Decoded {
        let mut extra = self.extra;
        if let Some(t) = self.timestamp_s {
            extra.insert("timestamp", Value::from(t));
        }
        Decoded { battery: self.battery, extra }
    }
}

/// What kind of JSON value this is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to one JSON object, with the path for messages.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> MessageError {
        MessageError::new(&self.name(key), format!("expected {expected}, got {}", kind(found)))
    }

    /// `Ok(None)` for an absent key (a JSON `null` counts as absent: "not known").
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn number(&self, key: &str) -> Result<Option<f64>, MessageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64().filter(|v| v.is_finite()) {
                Some(v) => Ok(Some(v)),
                None => Err(MessageError::new(&self.name(key), "not a finite number")),
            },
            Some(other) => Err(self.wrong(key, "a number", other)),
        }
    }

    /// A number within `range` (inclusive).
    fn within(&self, key: &str, range: (f64, f64), unit: &str) -> Result<Option<f64>, MessageError> {
        match self.number(key)? {
            Some(v) if v < range.0 || v > range.1 => Err(MessageError::new(
                &self.name(key),
                format!("{v} {unit} is outside {} ..= {} {unit}", range.0, range.1),
            )),
            other => Ok(other),
        }
    }

    fn integer(&self, key: &str) -> Result<Option<u64>, MessageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 4.0e9).map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| {
                    MessageError::new(&self.name(key), format!("expected a whole number >= 0, got {n}"))
                }),
            Some(other) => Err(self.wrong(key, "a whole number", other)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, MessageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    fn text(&self, key: &str) -> Result<Option<String>, MessageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, MessageError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.wrong(key, "an object", other)),
        }
    }
}

/// A mandatory field: absent is an error.
fn required<T>(fields: &Fields<'_>, key: &str, value: Option<T>) -> Result<T, MessageError> {
    value.ok_or_else(|| MessageError::new(&fields.name(key), "mandatory field missing"))
}

/// Pack voltages a message may carry (V).
const PACK_VOLTAGE_V: (f64, f64) = (0.0, 1000.0);
/// Currents a message may carry (A), either sign.
const CURRENT_A: (f64, f64) = (-10_000.0, 10_000.0);
/// Temperatures a message may carry (°C).
const TEMPERATURE_C: (f64, f64) = (-60.0, 150.0);
/// Percentages (SoC, SoH).
const PERCENT: (f64, f64) = (0.0, 100.0);
/// Capacities (Ah).
const CAPACITY_AH: (f64, f64) = (0.0, 100_000.0);

/// The `protection` keys, in the schema's names; each is also the [`Alarms`] field name.
fn alarm_slot<'a>(alarms: &'a mut Alarms, key: &str) -> Option<&'a mut Option<AlarmLevel>> {
    Some(match key {
        "high_voltage" => &mut alarms.high_voltage,
        "high_cell_voltage" => &mut alarms.high_cell_voltage,
        "low_voltage" => &mut alarms.low_voltage,
        "low_cell_voltage" => &mut alarms.low_cell_voltage,
        "low_soc" => &mut alarms.low_soc,
        "high_charge_current" => &mut alarms.high_charge_current,
        "high_discharge_current" => &mut alarms.high_discharge_current,
        "cell_imbalance" => &mut alarms.cell_imbalance,
        "internal_failure" => &mut alarms.internal_failure,
        "high_charge_temperature" => &mut alarms.high_charge_temperature,
        "low_charge_temperature" => &mut alarms.low_charge_temperature,
        "high_temperature" => &mut alarms.high_temperature,
        "low_temperature" => &mut alarms.low_temperature,
        "high_internal_temperature" => &mut alarms.high_internal_temperature,
        "fuse_blown" => &mut alarms.fuse_blown,
        _ => return None,
    })
}

/// The schema's heater fields, kept in `extra` as well (the decoder's JSON) beside the model's
/// `heater`.
const EXTRA_NUMBERS: [&str; 4] =
    ["heater_current", "heater_power", "heater_temperature_start", "heater_temperature_stop"];
const EXTRA_BOOLS: [&str; 2] = ["heater_fet", "heating"];
/// The `history` keys and their names in `extra`.
const HISTORY: [(&str, &str); 17] = [
    ("deepest_discharge", "history.deepest_discharge"),
    ("last_discharge", "history.last_discharge"),
    ("average_discharge", "history.average_discharge"),
    ("total_ah_drawn", "history.total_ah_drawn"),
    ("charge_cycles", "history.charge_cycles"),
    ("timestamp_last_full_charge", "history.timestamp_last_full_charge"),
    ("full_discharges", "history.full_discharges"),
    ("minimum_voltage", "history.minimum_voltage"),
    ("maximum_voltage", "history.maximum_voltage"),
    ("minimum_cell_voltage", "history.minimum_cell_voltage"),
    ("maximum_cell_voltage", "history.maximum_cell_voltage"),
    ("low_voltage_alarms", "history.low_voltage_alarms"),
    ("high_voltage_alarms", "history.high_voltage_alarms"),
    ("minimum_temperature", "history.minimum_temperature"),
    ("maximum_temperature", "history.maximum_temperature"),
    ("discharged_energy", "history.discharged_energy"),
    ("charged_energy", "history.charged_energy"),
];

/// Decodes one message (UTF-8 JSON object).
pub fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| MessageError::new("(message)", format!("not JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(MessageError::new("(message)", format!("expected a JSON object, got {}", kind(&value))));
    };
    let f = Fields { map, path: "" };
    let mut b = Battery::default();
    let mut extra = BTreeMap::new();

    let cell_count = required(&f, "cell_count", f.integer("cell_count")?)?;
    if cell_count == 0 || cell_count > MAX_CELLS {
        return Err(MessageError::new("cell_count", format!("{cell_count} is outside 1 ..= {MAX_CELLS}")));
    }
    let capacity = required(&f, "capacity", f.within("capacity", CAPACITY_AH, "Ah")?)?;
    if capacity <= 0.0 {
        return Err(MessageError::new("capacity", "must be above 0 Ah"));
    }
    b.nominal_capacity_ah = Some(capacity);
    b.serial = Some(required(&f, "serial_number", f.text("serial_number")?)?);
    b.voltage_v = Some(required(&f, "voltage", f.within("voltage", PACK_VOLTAGE_V, "V")?)?);
    b.current_a = Some(required(&f, "current", f.within("current", CURRENT_A, "A")?)?);
    b.soc_percent = Some(required(&f, "soc", f.within("soc", PERCENT, "%")?)?);
    let t1 = required(&f, "temperature_1", f.within("temperature_1", TEMPERATURE_C, "°C")?)?;
    b.charge_fet = Some(required(&f, "charge_fet", f.boolean("charge_fet")?)?);
    b.discharge_fet = Some(required(&f, "discharge_fet", f.boolean("discharge_fet")?)?);

    let cells = match f.get("cells") {
        Some(Value::Array(cells)) => cells,
        Some(other) => return Err(f.wrong("cells", "an array", other)),
        None => return Err(MessageError::new("cells", "mandatory field missing")),
    };
    if cells.len() as u64 != cell_count {
        return Err(MessageError::new(
            "cells",
            format!("{} cells listed but cell_count is {cell_count}", cells.len()),
        ));
    }
    let mut volts = Vec::with_capacity(cells.len());
    let mut balancing = Vec::with_capacity(cells.len());
    let mut every_balance_given = true;
    for (index, cell) in cells.iter().enumerate() {
        let path = format!("cells[{index}]");
        let Value::Object(cell) = cell else {
            return Err(MessageError::new(&path, format!("expected an object, got {}", kind(cell))));
        };
        let cf = Fields { map: cell, path: &path };
        volts.push(required(&cf, "voltage", cf.within("voltage", CELL_VOLTAGE_V, "V")?)?);
        match cf.boolean("balance")? {
            Some(on) => balancing.push(on),
            None => every_balance_given = false,
        }
    }
    b.cell_count = u16::try_from(cell_count).ok();
    b.cell_voltages_v = Some(volts);
    // Balance flags for some cells only would shift every flag after a gap: all or none.
    b.balancing_cells = every_balance_given.then_some(balancing);

    let mut temperatures = vec![t1];
    for key in ["temperature_2", "temperature_3", "temperature_4"] {
        match f.within(key, TEMPERATURE_C, "°C")? {
            Some(t) => temperatures.push(t),
            // Sensors are numbered: a later one without the earlier would be mislabelled.
            None => break,
        }
    }
    b.temperatures_c = Some(temperatures);
    b.temperature_mos_c = f.within("temperature_mos", TEMPERATURE_C, "°C")?;
    b.soh_percent = f.within("soh", PERCENT, "%")?;
    b.remaining_capacity_ah = f.within("capacity_remain", CAPACITY_AH, "Ah")?;
    b.balancer_enabled = f.boolean("balance_fet")?;
    b.heater = Heater {
        heating: f.boolean("heating")?,
        enabled: f.boolean("heater_fet")?,
        current_a: f.within("heater_current", (0.0, CURRENT_A.1), "A")?,
        power_w: f.within("heater_power", (0.0, 100_000.0), "W")?,
        start_c: f.within("heater_temperature_start", TEMPERATURE_C, "°C")?,
        stop_c: f.within("heater_temperature_stop", TEMPERATURE_C, "°C")?,
    };
    b.charge_current_limit_a = f.within("max_battery_charge_current", (0.0, CURRENT_A.1), "A")?;
    b.discharge_current_limit_a = f.within("max_battery_discharge_current", (0.0, CURRENT_A.1), "A")?;
    b.charge_voltage_limit_v = f.within("max_battery_voltage_bms", PACK_VOLTAGE_V, "V")?;
    b.discharge_voltage_limit_v = f.within("min_battery_voltage_bms", PACK_VOLTAGE_V, "V")?;
    b.hardware_version = f.text("hardware_version")?;
    b.production_date = f.text("production")?;

    for key in EXTRA_NUMBERS {
        if let Some(v) = f.number(key)? {
            extra.insert(key, Value::from(v));
        }
    }
    for key in EXTRA_BOOLS {
        if let Some(v) = f.boolean(key)? {
            extra.insert(key, Value::from(v));
        }
    }
    if let Some(text) = f.text("custom_field")? {
        extra.insert("custom_field", Value::from(text));
    }

    if let Some(history) = f.object("history")? {
        let hf = Fields { map: history, path: "history" };
        for (key, name) in HISTORY {
            if let Some(v) = hf.number(key)? {
                extra.insert(name, Value::from(v));
            }
        }
        b.cycles = hf.integer("charge_cycles")?.and_then(|c| u32::try_from(c).ok());
    }

    if let Some(protection) = f.object("protection")? {
        let pf = Fields { map: protection, path: "protection" };
        for key in protection.keys() {
            let Some(slot) = alarm_slot(&mut b.alarms, key) else { continue };
            *slot = match pf.integer(key)? {
                None => None,
                Some(0) => Some(AlarmLevel::Ok),
                Some(1) => Some(AlarmLevel::Warning),
                Some(2) => Some(AlarmLevel::Alarm),
                Some(other) => {
                    return Err(MessageError::new(
                        &pf.name(key),
                        format!("{other} is not a level (0, 1 or 2)"),
                    ))
                }
            };
        }
    }

    let timestamp_s = f.number("timestamp")?;
    if timestamp_s.is_some_and(|t| t < 0.0) {
        return Err(MessageError::new("timestamp", "must be Unix seconds (>= 0)"));
    }
    Ok(Message { battery: b, timestamp_s, extra })
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
