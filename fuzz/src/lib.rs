//! What the fuzz targets run. Each function must never panic, whatever the bytes; the asserts are
//! the invariants the daemon relies on (a scanner's lengths fit the buffer, chunked feeding equals
//! whole feeding, accepted D-Bus writes are in range).
//!
//! `tests/fuzz_regressions.rs` includes this file too, so the normal (stable) test suite runs the
//! same checks on the seeds, on saved crash inputs and on a fixed set of mutations.

use bms_bridge::bms;
use bms_bridge::config::Protocol;
use bms_bridge::protocol::{self, find_frame, writes, Scan};
use bms_bridge::victron::{set_value, writable, Value};
use zbus::zvariant;

/// What a transport does with one chunk: append, then take every complete frame, drop garbage.
fn feed(buf: &mut Vec<u8>, chunk: &[u8], scan: fn(&[u8]) -> Scan) -> Vec<Vec<u8>> {
    buf.extend_from_slice(chunk);
    let mut frames = Vec::new();
    loop {
        match scan(buf) {
            Scan::Frame { len } => {
                assert!(len > 0 && len <= buf.len(), "Frame {{ len: {len} }} beyond {} bytes", buf.len());
                frames.push(buf.drain(..len).collect());
            }
            Scan::Garbage { skip } => {
                assert!(skip > 0 && skip <= buf.len(), "Garbage {{ skip: {skip} }} of {} bytes", buf.len());
                buf.drain(..skip);
            }
            Scan::Incomplete => return frames,
        }
    }
}

/// Scan, resync, split feeding and every decode function of the protocol `name`.
pub fn protocol(name: &str, data: &[u8]) {
    let scan = bms::scan_named(name).expect("a byte-stream protocol");
    let _ = bms::decode_named(name, data);
    let _ = protocol::scan_resync(data, scan);
    if let Some((frame, next)) = find_frame(data, scan) {
        assert!(next <= data.len());
        let _ = bms::decode_named(name, frame);
    }

    // Fed whole and fed in two chunks (split chosen by the first byte): the same frames.
    let mut whole_buf = Vec::new();
    let whole = feed(&mut whole_buf, data, scan);
    let split = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut buf = Vec::new();
    let mut frames = feed(&mut buf, &data[..split], scan);
    frames.extend(feed(&mut buf, &data[split..], scan));
    assert_eq!(frames, whole, "split at {split} differs from whole");
    assert_eq!(buf, whole_buf, "split at {split} leaves other bytes");
    for frame in &whole {
        let _ = bms::decode_named(name, frame);
    }

    let address = data.get(1).copied();
    // Extra entry points of a protocol's folder, beyond its spec's codec.
    match Protocol::from_name(name) {
        Some(Protocol::Jbd) => {
            let _ = bms::jbd::codec::decode(data);
            let _ = bms::jbd::codec::decode_basic_info(data);
            let _ = bms::jbd::codec::decode_cells(data);
            let _ = bms::jbd::codec::decode_hardware(data);
        }
        Some(Protocol::JbdUp16s) => {
            let _ = bms::jbd_up16s::codec::decode(data, None);
            let _ = bms::jbd_up16s::codec::decode(data, address);
        }
        Some(Protocol::JkPb) => {
            let _ = bms::jk_pb::codec::decode(data);
            let _ = bms::jk_pb::codec::decode_any(data);
            let _ = bms::jk_pb::codec::scan(data);
            let _ = bms::jk_pb::codec::decode_reply(data, address.unwrap_or(1), 0x161E);
        }
        Some(Protocol::Renogy) => {
            let _ = bms::renogy::codec::decode(data, None);
            let _ = bms::renogy::codec::decode(data, address);
            let _ = protocol::modbus::scan_request(data);
        }
        Some(Protocol::Eg4Ll) => {
            let _ = bms::eg4_ll::codec::decode(data, None);
            let _ = bms::eg4_ll::codec::decode(data, address);
        }
        Some(Protocol::Foxess) => {
            let _ = bms::foxess::codec::decode_any(data);
            let _ = bms::foxess::codec::scan_request(data);
        }
        Some(Protocol::JkRs485) => {
            let _ = bms::jk_rs485::codec::decode(data);
        }
        Some(Protocol::Daly) => {
            let _ = bms::daly::codec::decode(data);
            let _ = bms::daly::codec::decode_all(data);
        }
        Some(Protocol::Eg4Lifepower) => {
            let _ = bms::eg4_lifepower::codec::decode(data, None);
            let _ = bms::eg4_lifepower::codec::decode(data, address);
        }
        Some(Protocol::Eg4Lifepower4) => {
            let _ = bms::eg4_lifepower4::codec::decode_analog(data, address.unwrap_or(1));
            let _ = bms::eg4_lifepower4::codec::decode_alarm(data, address.unwrap_or(1));
            let _ = bms::eg4_lifepower4::codec::AlarmInfo::parse(data);
            let _ = bms::eg4_lifepower4::codec::Analog::parse(data);
        }
        Some(Protocol::Daren485) => {
            use bms::daren_485::codec as daren;
            for layout in [
                daren::realtime,
                daren::manufacturer,
                daren::system_params,
                daren::module_mfg,
                daren::module_cap,
            ] {
                let _ = daren::decode_with(data, address.unwrap_or(1), layout);
                let _ = layout(data, &mut protocol::Decoded::default());
            }
        }
        Some(Protocol::JkBle) => {
            for layout in [bms::jk_ble::codec::Layout::Jk02_24s, bms::jk_ble::codec::Layout::Jk02_32s] {
                let _ = bms::jk_ble::codec::decode_frame(data, layout);
            }
            let _ = bms::jk_ble::codec::widen_24s(data);
            let _ = bms::jk_ble::codec::decode_all(data);
            let _ = bms::jk_ble::codec::scan_command(data);
        }
        Some(Protocol::DalyBle) => {
            let _ = bms::daly_ble::codec::decode(data);
            let _ = bms::daly_ble::codec::decode_any(data);
        }
        // Every other protocol is fuzzed through its spec's codec above (`decode_named`, its
        // scanner); CAN frames by `can`, MQTT messages by `mqtt_json`. A protocol whose folder has
        // extra entry points lists them here.
        _ => {}
    }
    // Write acknowledgements are wire data too.
    if let Some(p) = Protocol::from_name(name) {
        let _ = p.check_ack(address.unwrap_or(1), data);
    }
}

/// A CAN protocol: the first two bytes are an 11-bit id (big endian), or, when the first byte's
/// top bit is set, the first four a 29-bit id; the rest is the data.
pub fn can(name: &str, data: &[u8]) {
    let (id, payload) = match data {
        [a, b, c, d, rest @ ..] if a & 0x80 != 0 => {
            (u32::from_be_bytes([*a, *b, *c, *d]) & 0x1FFF_FFFF, rest)
        }
        [hi, lo, rest @ ..] => (u32::from(u16::from_be_bytes([*hi, *lo]) & 0x7FF), rest),
        _ => return,
    };
    let _ = bms::decode_can_named(name, id, payload);
    let _ = bms::decode_can_named(name, id, payload.get(..8.min(payload.len())).unwrap_or_default());
}

/// Any protocol of the registry (`decode_registry`): the input names it (`jbd\0<bytes>`), or
/// its first byte picks one from `bms::ALL`; a protocol needs no fuzz target of its own.
pub fn registry(data: &[u8]) {
    let named = data.iter().position(|b| *b == 0).and_then(|end| {
        let name = std::str::from_utf8(data.get(..end)?).ok()?;
        let spec = bms::ALL.iter().find(|s| s.name == name)?;
        Some((*spec, data.get(end + 1..).unwrap_or_default()))
    });
    let Some((spec, rest)) = named.or_else(|| {
        let first = usize::from(*data.first()?);
        Some((*bms::ALL.get(first % bms::ALL.len())?, data.get(1..).unwrap_or_default()))
    }) else {
        return;
    };
    match spec.codec {
        bms::Codec::Bytes { .. } => protocol(spec.name, rest),
        bms::Codec::Can { .. } => can(spec.name, rest),
        bms::Codec::Json { .. } => mqtt_json(rest),
    }
}

/// The config parser (and its validation) on any text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match bms_bridge::config::parse(text, "fuzz.toml") {
        Err(errors) => assert!(!errors.is_empty(), "a refused config names at least one error"),
        Ok(config) => run_accepted(&config, data),
    }
}

/// xorshift64*: deterministic randomness from the input, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An accepted config through the control core: two simulated hours of random readings, BMS
/// silences and nonsense at a random poll step, for every battery the config names; the
/// published limits must stay finite, within the configured maxima, and CCL 0 while lost.
pub fn run_accepted(config: &bms_bridge::config::Config, data: &[u8]) {
    use bms_bridge::battery::Battery;
    use bms_bridge::control::ChargeController;
    use bms_bridge::monitor::Monitor;
    use std::time::{Duration, Instant};
    let seed =
        data.iter().fold(0x9E37_79B9_7F4A_7C15u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
    let mut rng = Rng(seed | 1);
    let cfg = &config.charge;
    let stale = Duration::try_from_secs_f64(config.daemon.stale_after_s).expect("validated stale_after_s");
    let step = Duration::from_millis(config.daemon.poll_interval_ms);
    let hours = Duration::from_secs(2 * 3600);
    let mut options: Vec<_> = config.ports.iter().flat_map(|p| p.batteries.clone()).collect();
    if options.is_empty() {
        options.push(Default::default());
    }
    for battery in options.into_iter().take(2) {
        let cells = battery.cell_count.unwrap_or(1 + (rng.next() % 24) as u16);
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, battery, stale, ChargeController::new(cfg.clone()));
        let mut last_good: Option<Instant> = None;
        let (mut now, mut elapsed) = (t0, Duration::ZERO);
        // At most 2000 steps per battery: a 100 ms poll covers the first minutes only.
        for _ in 0..2000 {
            if elapsed >= hours {
                break;
            }
            let jump = if rng.next() % 50 == 0 { stale + step } else { step };
            now += jump;
            elapsed += jump;
            let roll = rng.next() % 20;
            if roll < 15 {
                let mean = rng.range(2.4, 3.8);
                let cells_v: Vec<f64> = (0..cells).map(|_| mean + rng.range(-0.1, 0.1)).collect();
                let reading = Battery {
                    voltage_v: Some(cells_v.iter().sum()),
                    current_a: Some(rng.range(-300.0, 300.0)),
                    soc_percent: Some(rng.range(0.0, 100.0)),
                    cell_voltages_v: Some(cells_v),
                    temperatures_c: Some(vec![rng.range(-35.0, 75.0)]),
                    charge_fet: Some(roll != 0),
                    discharge_fet: Some(roll != 1),
                    charge_current_limit_a: (roll == 2).then(|| rng.range(0.0, 5000.0)),
                    charge_voltage_limit_v: (roll == 3).then(|| rng.range(0.0, 7000.0)),
                    ..Battery::default()
                };
                if monitor.handle_reading(now, reading).is_none() {
                    last_good = Some(now);
                }
            } else if roll < 17 {
                let nonsense = Battery {
                    cell_voltages_v: Some(vec![rng.range(-10.0, 80.0); cells.into()]),
                    ..Battery::default()
                };
                // Mostly outside physics; a value that happens to be plausible is a reading.
                if monitor.handle_reading(now, nonsense).is_none() {
                    last_good = Some(now);
                }
            }
            let out = monitor.output(now);
            let l = &out.limits;
            let ccl = l.charge_current_a.expect("CCL always set");
            let dcl = l.discharge_current_a.expect("DCL always set");
            assert!(ccl.is_finite() && (0.0..=cfg.max_charge_current + 1e-9).contains(&ccl), "CCL {ccl}");
            assert!(dcl.is_finite() && (0.0..=cfg.max_discharge_current + 1e-9).contains(&dcl), "DCL {dcl}");
            if let Some(cvl) = l.charge_voltage_v {
                assert!(
                    cvl.is_finite() && cvl <= cfg.max_cell_voltage * f64::from(cells) + 1e-9,
                    "CVL {cvl}"
                );
            }
            if last_good.is_none_or(|t| now.saturating_duration_since(t) >= stale) {
                assert_eq!(ccl, 0.0, "lost BMS: CCL 0");
            }
            let _ = monitor.take_state_to_save();
        }
    }
}

/// The `SetValue` conversion: the bytes as a D-Bus variant (what zbus hands the handler), then
/// every writable path and some that are not. True when the bytes were a variant.
pub fn set_value(data: &[u8]) -> bool {
    use zvariant::serialized::{Context, Data};
    let ctxt = Context::new_dbus(zvariant::LE, 0);
    let bytes = Data::new(data, ctxt);
    let Ok((value, _)) = bytes.deserialize::<zvariant::Value<'_>>() else { return false };
    let support = writes::WriteSupport { mosfet: true, soc: true };
    let items = writable::initial_items(support);
    for path in [
        writable::FORCE_CHARGING_OFF,
        writable::FORCE_DISCHARGING_OFF,
        writable::RESET_SOC_TO,
        writable::RESET_SOC_TO_APPLY,
        writable::HAS_SETTINGS,
        "/Soc",
        "/CustomName",
    ] {
        match writable::check(&items, path, &value) {
            Ok(accepted) => {
                assert!(writable::is_writable_setting(path), "{path} accepted a write");
                match accepted.value {
                    Some(Value::F64(soc)) => assert!(soc.is_finite() && (0.0..=100.0).contains(&soc)),
                    Some(Value::I32(flag)) => assert!(flag == 0 || flag == 1),
                    Some(other) => panic!("{path}: unexpected accepted value {other:?}"),
                    None => {}
                }
            }
            // Typed: only the two refusals exist; the handler below checks the codes on the wire.
            Err(set_value::Refused::NotWritable | set_value::Refused::Rejected) => {}
        }
        handler(&items, path, &value);
    }
    true
}

/// The real `SetValue` handler (`victron::set_value_without_bus`: the same `Shared::write` the
/// D-Bus method calls) on a service's item table: codes are velib's, a refused write changes
/// nothing and queues nothing, an accepted one stays in range.
fn handler(settings: &bms_bridge::victron::paths::Items, path: &str, value: &zvariant::Value<'_>) {
    use bms_bridge::victron::paths::Item;
    use bms_bridge::victron::Unit;
    let mut items = settings.clone();
    items.insert("/Soc".to_owned(), Item { value: Value::F64(55.0), unit: Unit::Percent });
    items.insert("/CustomName".to_owned(), Item { value: Value::Text("Pack".to_owned()), unit: Unit::Plain });
    let before = items.get(path).cloned();
    let (code, after, command) = bms_bridge::victron::set_value_without_bus(items, path, value);
    assert!(
        [set_value::ACCEPTED, set_value::NOT_WRITABLE, set_value::REJECTED].contains(&code),
        "{path}: code {code}"
    );
    if code != set_value::ACCEPTED {
        assert_eq!(after, before, "{path}: a refused write changed the item");
        assert!(command.is_none(), "{path}: a refused write queued {command:?}");
        return;
    }
    match (path, after.map(|item| item.value)) {
        ("/CustomName", Some(Value::Text(name))) => {
            assert!(name.chars().count() <= bms_bridge::victron::MAX_CUSTOM_NAME_CHARS)
        }
        (_, Some(Value::F64(soc))) => {
            assert!(soc.is_finite() && (0.0..=100.0).contains(&soc), "{path}: {soc}")
        }
        (_, Some(Value::I32(flag))) => assert!(flag == 0 || flag == 1, "{path}: {flag}"),
        (_, other) => assert!(writable::is_writable_setting(path), "{path} accepted, now {other:?}"),
    }
    assert!(path != "/Soc", "/Soc accepted a write");
}

/// One MQTT message: the JSON codec never panics, and what it accepts is inside its ranges.
pub fn mqtt_json(data: &[u8]) {
    if let Ok(message) = bms::mqtt::decode(data) {
        let b = &message.battery;
        let cells = b.cell_voltages_v.as_deref().unwrap_or_default();
        assert_eq!(Some(cells.len()), b.cell_count.map(usize::from));
        assert!(cells.iter().all(|v| (0.5..=5.0).contains(v)));
        assert!(b.soc_percent.is_some_and(|s| (0.0..=100.0).contains(&s)));
    }
}
