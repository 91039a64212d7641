//! Micro-benchmarks of the per-cycle work (`cargo bench --bench perf`; figures in
//! `docs/performance.md`):
//! - `decode`: every good response frame of each protocol's vector file (`tests/vectors`),
//! - `control_update`: one `ChargeController::update` of a 16-cell pack,
//! - `dbus`: the path table of a full 16-cell battery (`collect`), the diff against the previous
//!   cycle, and both together (what `BatteryService::publish` did before it sends anything), the
//!   update in place that replaced them, and the `ItemsChanged` body (by hand and by zvariant).

use bms_bridge::battery::Battery;
use bms_bridge::bms::jbd::codec as jbd;
use bms_bridge::control::{ChargeConfig, ChargeController, Link};
use bms_bridge::protocol;
use bms_bridge::sim::{model::SimPack, SimControl};
use bms_bridge::victron::diff::diff;
use bms_bridge::victron::paths::{collect, update, Context, Items, Shadow};
use bms_bridge::victron::{Identity, Snapshot};
use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use std::time::{Duration, Instant};

fn main() {
    divan::main();
}

/// Every byte-stream protocol of the registry: a new BMS is benched without being listed here.
fn protocols() -> Vec<&'static str> {
    bms_bridge::bms::ALL
        .iter()
        .filter(|spec| matches!(spec.codec, bms_bridge::bms::Codec::Bytes { .. }))
        .map(|spec| spec.name)
        .collect()
}

/// The good response frames of `protocol` that `decode_named` accepts.
fn frames(protocol: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/vectors/{protocol}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    cases
        .iter()
        .filter(|c| c["direction"] == "response" && c["corrupt"] != true)
        .filter_map(|c| protocol::parse_hex(c["hex"].as_str()?).ok())
        .filter(|bytes| bms_bridge::bms::decode_named(protocol, bytes).is_ok())
        .collect()
}

#[divan::bench(args = protocols())]
fn decode(bencher: Bencher, protocol: &str) {
    let frames = frames(protocol);
    assert!(!frames.is_empty(), "{protocol}: no decodable response frame in the vectors");
    let bytes: usize = frames.iter().map(Vec::len).sum();
    bencher.counter(ItemsCount::new(frames.len())).counter(BytesCount::new(bytes)).bench(|| {
        for frame in &frames {
            black_box(bms_bridge::bms::decode_named(protocol, black_box(frame)).ok());
        }
    });
}

/// A 16-cell battery as the JBD driver reads it (basic info + cells + name), from the simulator.
fn battery() -> Battery {
    let pack = SimPack::new(16);
    let control = SimControl::default();
    let mut battery = Battery::default();
    for register in [jbd::REG_BASIC_INFO, jbd::REG_CELLS, jbd::REG_HARDWARE] {
        let reply =
            bms_bridge::bms::jbd::sim::respond(&jbd::request_read(register), &pack, &control).unwrap();
        battery.merge(&jbd::decode(&reply).unwrap().battery);
    }
    battery.read_at = Some(Instant::now());
    battery
}

#[divan::bench]
fn control_update(bencher: Bencher) {
    let battery = battery();
    let mut controller = ChargeController::new(ChargeConfig::default());
    let mut now = Instant::now();
    bencher.bench_local(|| {
        now += Duration::from_secs(1);
        black_box(controller.update(now, black_box(&battery), Link::Online))
    });
}

fn identity() -> Identity {
    Identity {
        service_suffix: "ttyUSB0".into(),
        unique_id: "JBD48100000".into(),
        product_name: "JBD-SP16S020 (bms-bridge)".into(),
        connection: "Serial /dev/ttyUSB0".into(),
        custom_name: String::new(),
        firmware_version: "8.0".into(),
        hardware_version: "JBD-SP16S020".into(),
        serial: "JBD48100000".into(),
        fallback_device_instance: 1,
        max_cells: 16,
        manufacturer: String::new(),
        connection_information: String::new(),
    }
}

/// The published items of two consecutive cycles: current, voltage, two cells and the limits moved.
fn two_cycles() -> (Identity, Battery, Battery) {
    let first = battery();
    let mut next = first.clone();
    next.current_a = next.current_a.map(|a| a + 0.37);
    next.voltage_v = next.voltage_v.map(|v| v + 0.01);
    if let Some(cells) = next.cell_voltages_v.as_mut() {
        cells[3] += 0.001;
        cells[7] -= 0.001;
    }
    (identity(), first, next)
}

fn items(identity: &Identity, battery: &Battery, controller: &mut ChargeController, now: Instant) -> Items {
    let limits = controller.update(now, battery, Link::Online);
    let snapshot =
        Snapshot { battery, limits: &limits, connected: true, state: 9, error_code: 0, history: None };
    let ctx = Context { identity, device_instance: 1, custom_name: "", snapshot: &snapshot };
    collect(&ctx)
}

#[divan::bench]
fn dbus_collect(bencher: Bencher) {
    let (identity, battery, _) = two_cycles();
    let limits =
        ChargeController::new(ChargeConfig::default()).update(Instant::now(), &battery, Link::Online);
    let snapshot = Snapshot {
        battery: &battery,
        limits: &limits,
        connected: true,
        state: 9,
        error_code: 0,
        history: None,
    };
    let ctx = Context { identity: &identity, device_instance: 1, custom_name: "", snapshot: &snapshot };
    bencher.counter(ItemsCount::new(collect(&ctx).len())).bench_local(|| black_box(collect(black_box(&ctx))));
}

#[divan::bench]
fn dbus_diff(bencher: Bencher) {
    let (identity, first, next) = two_cycles();
    let mut controller = ChargeController::new(ChargeConfig::default());
    let now = Instant::now();
    let prev = items(&identity, &first, &mut controller, now);
    let next = items(&identity, &next, &mut controller, now + Duration::from_secs(1));
    bencher
        .counter(ItemsCount::new(next.len()))
        .bench_local(|| black_box(diff(black_box(&prev), black_box(&next))));
}

/// A publish's inputs: the last cycle's table, the next reading and its limits.
fn publish_case() -> (Identity, Items, Battery, bms_bridge::control::ChargeLimits) {
    let (identity, first, next) = two_cycles();
    let mut controller = ChargeController::new(ChargeConfig::default());
    let now = Instant::now();
    let prev = items(&identity, &first, &mut controller, now);
    let limits = controller.update(now + Duration::from_secs(1), &next, Link::Online);
    (identity, prev, next, limits)
}

/// What one publish computes: the table of the new snapshot and its diff against the last one.
#[divan::bench]
fn dbus_collect_and_diff(bencher: Bencher) {
    let (identity, prev, next, limits) = publish_case();
    let snapshot =
        Snapshot { battery: &next, limits: &limits, connected: true, state: 9, error_code: 0, history: None };
    let ctx = Context { identity: &identity, device_instance: 1, custom_name: "", snapshot: &snapshot };
    bencher.bench_local(|| {
        let next = collect(black_box(&ctx));
        black_box(diff(&prev, &next))
    });
}

/// What one publish computes now: the live table brought to the new snapshot in place, with its
/// changes (the table and the shadow of its values are set back to the last cycle's before each
/// run). `shadow`: with the last cycle's values in table order, as the service keeps them;
/// without: every path looked up in the table.
#[divan::bench(args = [true, false])]
fn dbus_update_in_place(bencher: Bencher, shadow: bool) {
    let (identity, prev, next, limits) = publish_case();
    let mut last = Shadow::default();
    if shadow {
        // The shadow of the last cycle: an update from an empty table to it.
        let mut controller = ChargeController::new(ChargeConfig::default());
        let (_, first, _) = two_cycles();
        let first_limits = controller.update(Instant::now(), &first, Link::Online);
        let snapshot = Snapshot {
            battery: &first,
            limits: &first_limits,
            connected: true,
            state: 9,
            error_code: 0,
            history: None,
        };
        let ctx = Context { identity: &identity, device_instance: 1, custom_name: "", snapshot: &snapshot };
        update(&ctx, &mut Items::new(), &mut last);
    }
    let snapshot =
        Snapshot { battery: &next, limits: &limits, connected: true, state: 9, error_code: 0, history: None };
    let ctx = Context { identity: &identity, device_instance: 1, custom_name: "", snapshot: &snapshot };
    bencher
        .with_inputs(|| (prev.clone(), last.clone()))
        .bench_local_refs(|(live, last)| black_box(update(black_box(&ctx), live, last)));
}

/// The `ItemsChanged` body of a whole 16-cell table (every path changed, the first publish's
/// worst case): marshalled by hand (`victron::marshal`, what the daemon sends), and by zvariant
/// from the `HashMap<&str, HashMap<&str, Value>>` the daemon built before.
#[divan::bench(args = ["marshal", "zvariant"])]
fn dbus_items_changed_body(bencher: Bencher, how: &str) {
    use bms_bridge::victron::marshal;
    use std::collections::HashMap;
    use zbus::zvariant;
    let (_, prev, _, _) = publish_case();
    let changes: Vec<(String, bms_bridge::victron::paths::Item)> = prev.into_iter().collect();
    bencher.counter(ItemsCount::new(changes.len())).bench_local(|| match how {
        "marshal" => black_box(marshal::items_changed(changes.iter().map(|(p, i)| (p.as_str(), i)))).len(),
        _ => {
            let batch: HashMap<&str, HashMap<&'static str, zvariant::Value<'static>>> = changes
                .iter()
                .map(|(p, i)| {
                    let entry = [("Value", i.value.to_variant()), ("Text", zvariant::Value::from(i.text()))];
                    (p.as_str(), HashMap::from(entry))
                })
                .collect();
            let ctx = zvariant::serialized::Context::new_dbus(zvariant::LE, 0);
            zvariant::to_bytes(ctx, black_box(&batch)).map_or(0, |bytes| bytes.len())
        }
    });
}
