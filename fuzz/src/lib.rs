//! What the fuzz targets run. Each function must never panic, whatever the bytes; the asserts are
//! the invariants the daemon relies on (a scanner's lengths fit the buffer, chunked feeding equals
//! whole feeding, accepted D-Bus writes are in range).
//!
//! `tests/fuzz_regressions.rs` includes this file too, so the normal (stable) test suite runs the
//! same checks on the seeds, on saved crash inputs and on a fixed set of mutations.

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
    let scan = protocol::scan_named(name).expect("a byte-stream protocol");
    let _ = protocol::decode_named(name, data);
    let _ = protocol::scan_resync(data, scan);
    if let Some((frame, next)) = find_frame(data, scan) {
        assert!(next <= data.len());
        let _ = protocol::decode_named(name, frame);
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
        let _ = protocol::decode_named(name, frame);
    }

    let address = data.get(1).copied();
    match name {
        "jbd" => {
            let _ = protocol::jbd::decode(data);
            let _ = protocol::jbd::decode_basic_info(data);
            let _ = protocol::jbd::decode_cells(data);
            let _ = protocol::jbd::decode_hardware(data);
        }
        "jbd_up16s" => {
            let _ = protocol::jbd_up16s::decode(data, None);
            let _ = protocol::jbd_up16s::decode(data, address);
        }
        "jk_pb" => {
            let _ = protocol::jk_pb::decode(data);
            let _ = protocol::jk_pb::decode_any(data);
            let _ = protocol::jk_pb::scan(data);
            let _ = protocol::jk_pb::decode_reply(data, address.unwrap_or(1), 0x161E);
        }
        "renogy" => {
            let _ = protocol::renogy::decode(data, None);
            let _ = protocol::renogy::decode(data, address);
            let _ = protocol::modbus::scan_request(data);
        }
        "eg4_ll" => {
            let _ = protocol::eg4_ll::decode(data, None);
            let _ = protocol::eg4_ll::decode(data, address);
        }
        "foxess" => {
            let _ = protocol::foxess::decode_any(data);
            let _ = protocol::foxess::scan_request(data);
        }
        "jk_rs485" => {
            let _ = protocol::jk_rs485::decode(data);
        }
        "daly" => {
            let _ = protocol::daly::decode(data);
            let _ = protocol::daly::decode_all(data);
        }
        "eg4_lifepower" => {
            let _ = protocol::eg4_lifepower::decode(data, None);
            let _ = protocol::eg4_lifepower::decode(data, address);
        }
        _ => {}
    }
    // Write acknowledgements are wire data too.
    if let Some(p) = Protocol::from_name(name) {
        let _ = writes::check_ack(p, address.unwrap_or(1), data);
    }
}

/// A CAN protocol: the first two bytes are the 11-bit id (big endian), the rest the data.
pub fn can(name: &str, data: &[u8]) {
    let id = match data {
        [hi, lo, ..] => u32::from(u16::from_be_bytes([*hi, *lo]) & 0x7FF),
        _ => return,
    };
    let payload = data.get(2..).unwrap_or_default();
    let _ = protocol::decode_can_named(name, id, payload);
    let _ = protocol::decode_can_named(name, id, payload.get(..8.min(payload.len())).unwrap_or_default());
}

/// The config parser (and its validation) on any text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = bms_bridge::config::parse(text, "fuzz.toml") {
        assert!(!errors.is_empty(), "a refused config names at least one error");
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
            Err(code) => assert!(code == set_value::NOT_WRITABLE || code == set_value::REJECTED),
        }
    }
    true
}
