//! The fuzz targets' checks (`fuzz/src/lib.rs`, included as is) in the normal suite, on stable:
//! every seed from `tests/vectors`, every saved crash input in `fuzz/regressions/<target>/`,
//! and a fixed pseudo-random set of mutations of each seed (a small, deterministic fuzz run).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_common;

mod support {
    pub mod vectors;
}

use bms_bridge::config::Protocol;
use std::path::PathBuf;

/// Deterministic xorshift.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// libFuzzer-like mutations: flip, set, insert, delete, duplicate a range, splice two inputs.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0x00, 0xFF, 0x7F, 0x80, 0x01][rng.below(5)];
            }
            2 => {
                let i = rng.below(out.len() + 1);
                out.insert(i, rng.next() as u8);
            }
            3 if !out.is_empty() => {
                let i = rng.below(out.len());
                let n = rng.below(out.len() - i + 1);
                out.drain(i..i + n);
            }
            4 if !out.is_empty() => {
                let i = rng.below(out.len());
                let n = rng.below((out.len() - i).min(16) + 1);
                let piece = out[i..i + n].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, piece);
            }
            _ => {
                let cut = rng.below(out.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[rng.below(other.len() + 1)..]);
            }
        }
    }
    out
}

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| std::fs::read(e.path()).ok()).collect())
        .unwrap_or_default()
}

/// CAN cases as the fuzz target sees them: the id (2 bytes, big endian), then the data.
fn can_seeds(name: &str) -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/vectors/{name}.json"));
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cases
        .iter()
        .map(|c| {
            let id = u32::from_str_radix(c["can_id"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            // 11-bit ids in two bytes, 29-bit ones in four with the top bit set (fuzz `can`).
            let mut seed = match u16::try_from(id).ok().filter(|id| *id <= 0x7FF) {
                Some(short) => short.to_be_bytes().to_vec(),
                None => (0x8000_0000 | id).to_be_bytes().to_vec(),
            };
            seed.extend(support::vectors::hex(c["hex"].as_str().unwrap()));
            seed
        })
        .collect()
}

const MUTATIONS: usize = 3000;

/// Protocols whose replies are another protocol's frames, so their seeds are that protocol's
/// vectors (fuzz/seed.sh seeds them the same way): JBD's and JK PB's UART frames over BLE.
const SAME_FRAMES: [(&str, &str); 2] = [("jbd_ble", "jbd"), ("jk_ble", "jk_pb")];

/// The vector file a protocol's seeds come from.
fn vector_file(name: &str) -> String {
    let source = SAME_FRAMES.iter().find(|(p, _)| *p == name).map_or(name, |(_, frames)| frames);
    format!("{source}.json")
}

#[test]
fn decoders_on_seeds_regressions_and_mutations() {
    // Every byte-stream and CAN protocol of the registry (MQTT has its own test below).
    for p in Protocol::every().filter(|p| !p.is_mqtt()) {
        let name = p.name();
        let can = p.is_can();
        let seeds: Vec<Vec<u8>> = if can {
            can_seeds(name)
        } else {
            support::vectors::load(&vector_file(name)).into_iter().map(|c| c.bytes).collect()
        };
        let run = |input: &[u8]| {
            if can {
                fuzz_common::can(name, input)
            } else {
                fuzz_common::protocol(name, input)
            }
        };
        for input in seeds.iter().chain(&regressions(&format!("decode_{name}"))) {
            run(input);
        }
        let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ name.len() as u64);
        for _ in 0..MUTATIONS {
            let input = &seeds[rng.below(seeds.len())];
            let other = &seeds[rng.below(seeds.len())];
            run(&mutate(&mut rng, input, other));
        }
    }
}

#[test]
fn config_parser_on_the_example_regressions_and_mutations() {
    let example = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/config/bms-bridge.toml")).unwrap();
    fuzz_common::config(&example);
    for input in regressions("config_parse") {
        fuzz_common::config(&input);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..MUTATIONS {
        fuzz_common::config(&mutate(&mut rng, &example, &example));
    }
}

#[test]
fn set_value_conversion_on_regressions_and_mutations() {
    // D-Bus variants, little endian: signature length, signature, NUL, padding to 8, value.
    let variant = |sig: &str, body: &[u8]| {
        let mut v = vec![sig.len() as u8];
        v.extend_from_slice(sig.as_bytes());
        v.push(0);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v.extend_from_slice(body);
        v
    };
    let seeds = [
        variant("i", &1i32.to_le_bytes()),
        variant("i", &7i32.to_le_bytes()),
        variant("d", &50.0f64.to_le_bytes()),
        variant("d", &f64::NAN.to_le_bytes()),
        variant("d", &f64::INFINITY.to_le_bytes()),
        variant("d", &(-0.0f64).to_le_bytes()),
        variant("b", &1u32.to_le_bytes()),
        variant("t", &u64::MAX.to_le_bytes()),
        variant("s", b"\x03\x00\x00\x00abc\x00"),
        variant("ai", &0u32.to_le_bytes()),
    ];
    for seed in &seeds {
        assert!(fuzz_common::set_value(seed), "seed {seed:02X?} is not a D-Bus variant");
    }
    for input in regressions("set_value") {
        fuzz_common::set_value(&input);
    }
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..MUTATIONS {
        let (a, b) = (&seeds[rng.below(seeds.len())], &seeds[rng.below(seeds.len())]);
        fuzz_common::set_value(&mutate(&mut rng, a, b));
    }
}

#[test]
fn mqtt_json_codec_on_the_schema_examples_and_mutations() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mqtt");
    let seeds: Vec<Vec<u8>> =
        ["minimal.json", "full.json"].iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    for input in seeds.iter().chain(&regressions("decode_mqtt")) {
        fuzz_common::mqtt_json(input);
    }
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    for _ in 0..MUTATIONS {
        let (a, b) = (&seeds[rng.below(seeds.len())], &seeds[rng.below(seeds.len())]);
        fuzz_common::mqtt_json(&mutate(&mut rng, a, b));
    }
}

/// Every protocol of the registry has its fuzz target, its `[[bin]]`, its place in `run.sh` and
/// (byte-stream protocols) its seeds in `seed.sh`: a new BMS that forgets one fails here instead
/// of silently going unfuzzed.
#[test]
fn every_registered_protocol_is_fuzzed() {
    // `decode_registry` fuzzes every spec of `bms::ALL` (picked by name or by the first byte) and
    // seed.sh seeds it from every vector file, so a new protocol is fuzzed without a target of
    // its own. The per-protocol targets that exist run deeper (their corpus, their extra entry
    // points) and stay in fuzz/run.sh.
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let read = |name: &str| std::fs::read_to_string(fuzz.join(name)).unwrap();
    let (cargo, run, seed, lib) = (read("Cargo.toml"), read("run.sh"), read("seed.sh"), read("src/lib.rs"));
    assert!(fuzz.join("fuzz_targets/decode_registry.rs").exists());
    assert!(cargo.contains("name = \"decode_registry\"") && run.contains("decode_registry"));
    assert!(seed.contains("glob(\"*.json\")") && lib.contains("bms::ALL.iter().find"));
    let mut missing = Vec::new();
    for spec in bms_bridge::bms::ALL {
        let vectors = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors")
            .join(vector_file(spec.name));
        if !vectors.exists() && !matches!(spec.codec, bms_bridge::bms::Codec::Json { .. }) {
            missing.push(format!("tests/vectors/{}.json (the registry target's seeds)", spec.name));
        }
        let target = format!("decode_{}", spec.name);
        if fuzz.join("fuzz_targets").join(format!("{target}.rs")).exists() && !run.contains(&target) {
            missing.push(format!("{target} in fuzz/run.sh"));
        }
    }
    assert!(missing.is_empty(), "protocols without fuzz seeds:\n{}", missing.join("\n"));
    // The registry entry point on a seed of every vector file.
    for spec in bms_bridge::bms::ALL {
        fuzz_common::registry(format!("{}\0", spec.name).as_bytes());
    }
    fuzz_common::registry(&[7, 0xDD, 0x03]);
}
