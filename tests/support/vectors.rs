//! Loads the shared test vectors (`tests/vectors/<file>.json`, the repository's copy of the shared vectors)
//! and compares decoded values with a case's `expected`.

#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

/// One vector case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Case name.
    pub name: String,
    /// `request`, `response` or `can`.
    pub direction: String,
    /// The frame bytes.
    pub bytes: Vec<u8>,
    /// The `expected` object.
    pub expected: Value,
    /// `corrupt: true`.
    pub corrupt: bool,
}

/// Parses space-separated hex.
pub fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("bad hex byte {b:?}")))
        .collect()
}

/// Every case of `tests/vectors/<file>.json`; panics with the path if it is missing.
pub fn load(file: &str) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("test vector file {} is missing or unreadable: {e}", path.display()));
    let cases: Vec<Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a JSON array of cases: {e}", path.display()));
    cases
        .into_iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("case without name").to_owned(),
            direction: c["direction"].as_str().unwrap_or("").to_owned(),
            bytes: hex(c["hex"].as_str().expect("case without hex")),
            expected: c["expected"].clone(),
            corrupt: c["corrupt"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// The case called `name`.
pub fn case<'a>(cases: &'a [Case], name: &str) -> &'a Case {
    cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no vector case {name:?}"))
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Deep comparison; numbers within 1e-6 after rounding to 6 decimals.
pub fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => match (e.as_f64(), a.as_f64()) {
            (Some(e), Some(a)) => (round6(e) - round6(a)).abs() < 1e-6,
            _ => false,
        },
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(e, a)| same(e, a)),
        _ => expected == actual,
    }
}

/// Compares every key of `case.expected` with `json` (the `protocol::json::to_json` output):
/// first the top level, then `extra`, then `derived(key, expected_value)` for keys that need
/// translation.
/// Keys in `ignore` are descriptive text. A key with no counterpart fails the test, so no
/// expected value goes unchecked.
pub fn check_expected(
    case: &Case,
    json: &Value,
    ignore: &[&str],
    derived: impl Fn(&str, &Value) -> Option<Value>,
) {
    let Some(expected) = case.expected.as_object() else {
        panic!("{}: expected is not an object", case.name)
    };
    for (key, want) in expected {
        if ignore.contains(&key.as_str()) {
            continue;
        }
        let got = json
            .get(key)
            .or_else(|| json.get("extra").and_then(|e| e.get(key)))
            .cloned()
            .or_else(|| derived(key, want));
        let Some(got) = got else {
            panic!("{}: expected key {key:?} has no decoded counterpart in {json}", case.name)
        };
        assert!(same(want, &got), "{}: {key}: expected {want}, decoded {got}", case.name);
    }
}

/// Cell statistics the vector files list under their own names (the model computes them from
/// the cell voltages): min/max cell voltage and 1-based index, spread, average.
pub fn cell_stat(battery: &bms_bridge::battery::Battery, key: &str) -> Option<Value> {
    use serde_json::json;
    let (min, max) = (battery.min_cell(), battery.max_cell());
    match key {
        "min_cell_v" => min.map(|(_, v)| json!(v)),
        "max_cell_v" => max.map(|(_, v)| json!(v)),
        "min_cell_index_1based" => min?.0.map(|i| json!(i)),
        "max_cell_index_1based" => max?.0.map(|i| json!(i)),
        "delta_v" => Some(json!(max?.1 - min?.1)),
        "average_cell_v" => {
            let cells = battery.cell_voltages_v.as_ref()?;
            Some(json!(cells.iter().sum::<f64>() / cells.len() as f64))
        }
        _ => None,
    }
}
