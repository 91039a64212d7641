//! The decoder contract over every protocol in `Protocol::ALL`, through the same entry points the
//! daemon and the fuzz targets use (`bms::decode_named`, `bms::scan_named`): every
//! vector truncated at each length and with each byte flipped gives an error or a valid decode,
//! never a panic; fed in two chunks split at every index (and byte by byte) it gives the same
//! frames as fed whole. A protocol added to `Protocol::ALL` without vectors or a scanner fails here.

mod support {
    pub mod contract;
    pub mod vectors;
}

use bms_bridge::bms::{decode_can_named, decode_named, scan_named, DecodeError};
use bms_bridge::config::Protocol;
use bms_bridge::protocol::json;
use support::contract;
use support::vectors;

/// An `Ok` decode must be a usable reading: every number finite.
fn check_valid(protocol: &str, what: &str, bytes: &[u8]) {
    if let Ok(decoded) = decode_named(protocol, bytes) {
        // Debug prints a non-finite f64 as `NaN`, `inf` or `-inf`.
        let text = format!("{:?}", decoded.battery);
        let bad = text.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| t == "NaN" || t == "inf");
        assert!(!bad, "{protocol} {what}: non-finite value in {text}");
        let _ = json::to_json(&decoded);
    }
}

/// The byte-stream protocols (CAN ones are checked frame by frame below).
fn streams() -> impl Iterator<Item = &'static Protocol> {
    Protocol::ALL.iter().filter(|p| !Protocol::CAN.contains(p))
}

/// `(id, data)` of every case of a CAN protocol's vectors.
fn can_cases(name: &str) -> Vec<(String, u32, Vec<u8>)> {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/vectors/{name}.json"));
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cases
        .iter()
        .map(|c| {
            let id = c["can_id"].as_str().expect("can_id");
            let id = u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap();
            (c["name"].as_str().unwrap().to_owned(), id, vectors::hex(c["hex"].as_str().unwrap()))
        })
        .collect()
}

/// CAN: every frame's data truncated and flipped, and every id: an error or a finite decode.
#[test]
fn can_frames_truncated_and_flipped_never_panic() {
    for p in Protocol::CAN {
        let name = p.name();
        let cases = can_cases(name);
        assert!(!cases.is_empty(), "{name}: no vectors");
        let unknown = matches!(decode_can_named(name, 0, &[]), Err(DecodeError::NotCan { .. }));
        assert!(!unknown, "{name} is not known to bms::decode_can_named");
        for (case, id, data) in cases {
            let check = |what: String, id: u32, bytes: &[u8]| {
                if let Ok(decoded) = decode_can_named(name, id, bytes) {
                    let text = format!("{:?}", decoded.battery);
                    let bad =
                        text.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| t == "NaN" || t == "inf");
                    assert!(!bad, "{name} {case} {what}: non-finite value in {text}");
                }
            };
            for n in 0..=data.len() {
                check(format!("cut to {n}"), id, &data[..n]);
            }
            for i in 0..data.len() {
                for mask in [0x01u8, 0x80, 0xFF] {
                    let mut flipped = data.clone();
                    flipped[i] ^= mask;
                    check(format!("byte {i} ^ {mask:02X}"), id, &flipped);
                }
            }
            for other in (0..0x800).step_by(7).chain([id ^ 1, id + 1]) {
                check(format!("as id {other:#x}"), other, &data);
            }
        }
    }
}

#[test]
fn every_protocol_has_vectors_and_a_scanner() {
    for p in streams() {
        let name = p.name();
        assert!(scan_named(name).is_some(), "{name}: no scanner in bms::scan_named");
        assert!(!vectors::load(&format!("{name}.json")).is_empty(), "{name}: no vectors");
        assert!(
            decode_named(name, &[]).is_err_and(|e| !matches!(e, DecodeError::UnknownProtocol { .. })),
            "{name}: not known to bms::decode_named"
        );
    }
}

#[test]
fn truncation_and_flips_never_panic_on_any_protocol() {
    for p in streams() {
        let name = p.name();
        for case in vectors::load(&format!("{name}.json")) {
            for n in 0..=case.bytes.len() {
                check_valid(name, &format!("{} cut to {n}", case.name), &case.bytes[..n]);
            }
            for i in 0..case.bytes.len() {
                for mask in [0x01u8, 0x80, 0xFF] {
                    let mut flipped = case.bytes.clone();
                    flipped[i] ^= mask;
                    check_valid(name, &format!("{} byte {i} ^ {mask:02X}", case.name), &flipped);
                }
            }
        }
    }
}

#[test]
fn chunked_feeding_equals_whole_on_any_protocol() {
    for p in streams() {
        let name = p.name();
        let scan = scan_named(name).unwrap();
        let cases = vectors::load(&format!("{name}.json"));
        let mut stream = Vec::new();
        for case in cases.iter().filter(|c| c.direction == "response") {
            contract::chunked_equals_whole(&case.bytes, &scan);
            stream.extend_from_slice(&case.bytes);
        }
        // All responses back to back, with garbage between: still the same whole or split.
        stream.extend_from_slice(&[0x00, 0xFF, 0x55]);
        contract::chunked_equals_whole(&stream, &scan);
    }
}

/// The repository's copy of the vectors (`tests/vectors/`) must equal the shared source folder
/// byte for byte wherever that folder sits beside the checkout (the team's workspace and CI); a
/// fresh clone has no such folder and checks nothing here: its copy is then the source.
#[test]
fn vector_copy_equals_the_shared_source_where_present() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // .ci/run tests a clone in an empty directory and points here at the workspace's folder.
    let shared = std::env::var_os("BMS_BRIDGE_SHARED_VECTORS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/vectors"));
    let Ok(entries) = std::fs::read_dir(&shared) else { return };
    let mut compared = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = std::fs::read(root.join("tests/vectors").join(&name))
            .unwrap_or_else(|e| panic!("tests/vectors/{name:?} missing ({e}): copy it from {shared:?}"));
        let theirs = std::fs::read(entry.path()).unwrap();
        assert!(
            ours == theirs,
            "tests/vectors/{name:?} differs from {:?}: never edit a vector",
            entry.path()
        );
        compared += 1;
    }
    assert!(compared >= 11, "only {compared} vector files in {shared:?}");
}
