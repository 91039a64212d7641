//! The command line as a user runs it: `decode` and `check-config`, exit codes and output.

use std::process::Command;

fn bms_bridge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bms-bridge")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn decode_prints_one_json_object() {
    let frame = "DD 03 00 1D 06 18 00 00 01 F2 01 F4 00 00 2C 7C 00 00 00 00 00 00 80 64 03 04 03 0B 8B 0B 8A 0B 84 FA 8D 77";
    let (code, stdout, _) = bms_bridge(&["decode", "--protocol", "jbd", frame]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["voltage_v"], 15.6);
    assert_eq!(json["soc_percent"], 100.0);
    assert_eq!(json["cell_count"], 4);
    assert_eq!(json["temperatures_c"], serde_json::json!([22.4, 22.3, 21.7]));
    assert_eq!(json["charge_fet"], true);
    assert_eq!(json["extra"]["production_date"], "2022-03-28");
    assert_eq!(json["alarms"]["high_cell_voltage"], 0);
}

#[test]
fn decode_accepts_unspaced_hex_and_cells() {
    let (code, stdout, _) = bms_bridge(&["decode", "--protocol", "jbd", "DD0400080F460F3E0F380F3EFEC277"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["cells_v"], serde_json::json!([3.91, 3.902, 3.896, 3.902]));
}

#[test]
fn decode_rejects_a_bad_frame_with_exit_1() {
    let bad = "DD 03 00 1D 06 18 00 00 01 F2 01 F4 00 00 2C 7C 00 00 00 00 00 00 80 64 03 04 03 0B 8B 0B 8A 0B 84 FA 8C 77";
    let (code, stdout, _) = bms_bridge(&["decode", "--protocol", "jbd", bad]);
    assert_eq!(code, 1);
    assert!(stdout.contains("checksum"), "{stdout}");
    let (code, stdout, _) = bms_bridge(&["decode", "--protocol", "nonsense", "DD"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("unknown protocol"), "{stdout}");
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/bms-bridge.toml");
    let (code, stdout, stderr) = bms_bridge(&["check-config", example]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn check_config_lists_every_problem_with_its_place() {
    let dir = std::env::temp_dir().join(format!("bms-bridge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[daemon]\npoll_interval_ms = 5\ncolour = \"red\"\n\n[[port]]\ndevice = \"/dev/ttyUSB0\"\nprotocol = \"jbd\"\nbaud = 1234\n").unwrap();
    let (code, _, stderr) = bms_bridge(&["check-config", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    let name = file.display().to_string();
    assert!(stderr.contains(&format!("{name}:3:1: daemon.colour: unknown key `colour`")), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{name}:2:1: daemon.poll_interval_ms: 5 is outside the allowed range 100 to 60000 ms"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{name}:8:1: port[1].baud: 1234")), "{stderr}");
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_refuses_a_bad_config_and_names_it() {
    let (code, _, stderr) = bms_bridge(&["run", "--config", "/nonexistent/bms-bridge.toml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/bms-bridge.toml: (file): cannot read"), "{stderr}");
}

/// Every outcome of `decode` is JSON, also bytes that are not hex.
#[test]
fn decode_answers_json_for_bytes_that_are_not_hex() {
    let (code, stdout, _) = bms_bridge(&["decode", "--protocol", "jbd", "ZZ"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert!(json["error"].as_str().is_some_and(|e| e.contains("ZZ")), "{stdout}");
}

/// `--help` texts list the protocols from the protocol list, all of them.
#[test]
fn help_lists_every_protocol() {
    for command in ["decode", "run", "demo"] {
        let (code, stdout, _) = bms_bridge(&[command, "--help"]);
        assert_eq!(code, 0);
        for protocol in bms_bridge::config::Protocol::ALL.iter().chain(bms_bridge::config::Protocol::CAN) {
            assert!(
                stdout.contains(protocol.name()),
                "{command} --help lacks {}:\n{stdout}",
                protocol.name()
            );
        }
    }
}

/// `run` with nothing to do says what to give it.
#[test]
fn run_without_ports_says_how_to_start() {
    let (code, _, stderr) = bms_bridge(&["run"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--port /dev/ttyUSB0 --protocol jbd") && stderr.contains("probe"), "{stderr}");
}

/// A probe of a device that is not there: one line for the eleven attempts, and a next step.
#[test]
fn probe_of_a_missing_device_says_it_once() {
    let (code, stdout, stderr) = bms_bridge(&["probe", "/dev/bms-bridge-no-such-device"]);
    assert_eq!(code, 1);
    assert_eq!(stdout.lines().filter(|l| l.contains("cannot open")).count(), 1, "{stdout}");
    assert!(stderr.contains("ls /dev/serial/by-id") && stderr.contains("doctor"), "{stderr}");
}

/// An unwritable state_dir fails check-config, naming the path and the key's line.
#[test]
fn check_config_refuses_an_unwritable_state_dir() {
    let dir = std::env::temp_dir().join(format!("bms-bridge-cli-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        "[daemon]\nstate_dir = \"/proc/bms-bridge\"\n\n[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\n",
    )
    .unwrap();
    let (code, _, stderr) = bms_bridge(&["check-config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(":2:1: daemon.state_dir: /proc/bms-bridge"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- demo: what it prints must look like a battery ---

/// The number before `unit` in a ` | `-separated demo field such as `19.56 A` or `SoC 62.2 %`.
fn number(field: &str, unit: &str) -> Option<f64> {
    field.trim().trim_start_matches("SoC ").strip_suffix(unit)?.trim().parse().ok()
}

/// (current A, SoC %) of a demo line `V | A | SoC % | ...` (after any label before the voltage).
fn current_and_soc(line: &str) -> Option<(f64, f64)> {
    let fields: Vec<&str> = line.split(" | ").collect();
    Some((number(fields.get(1)?, " A")?, number(fields.get(2)?, " %")?))
}

#[test]
fn demo_soc_follows_the_current() {
    let (code, stdout, stderr) = bms_bridge(&["demo", "--seconds", "6"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("each second moves the charge of 100 s"), "{stdout}");
    let readings: Vec<(f64, f64)> =
        stdout.lines().filter(|l| l.contains(" V | ")).filter_map(current_and_soc).collect();
    assert!(readings.len() >= 3, "too few lines:\n{stdout}");
    // The simulated pack (100 Ah) charges at about 20 A; one line a second, each second moving
    // the charge of 100 s: the SoC must rise by the charge the printed currents moved.
    assert!(readings.iter().all(|(a, _)| *a > 15.0), "the demo starts charging:\n{stdout}");
    let (first, last) = (readings[0], readings[readings.len() - 1]);
    let moved_percent: f64 = readings.iter().skip(1).map(|(a, _)| a * 100.0 / 3600.0 / 100.0 * 100.0).sum();
    assert!(readings.windows(2).all(|w| w[1].1 >= w[0].1), "SoC never falls while charging:\n{stdout}");
    assert!(last.1 > first.1, "SoC rises with the current:\n{stdout}");
    // The BMS reports whole percent: the printed change is the moved charge rounded, ±1 %.
    assert!(((last.1 - first.1) - moved_percent).abs() <= 1.5, "moved {moved_percent:.2} %:\n{stdout}");
}

#[test]
fn demo_bank_blocks_are_one_instant_and_explain_the_limits() {
    let (code, stdout, stderr) = bms_bridge(&["demo", "--packs", "4", "--seconds", "6"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let mut blocks = 0;
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.starts_with("bank  ")) {
        let packs: Vec<(f64, f64)> = lines
            .iter()
            .skip(i + 1)
            .skip_while(|l| l.starts_with("      "))
            .take_while(|l| l.starts_with("  P"))
            .filter_map(|l| current_and_soc(l))
            .collect();
        let Some((bank_a, _)) = current_and_soc(line) else { continue };
        assert_eq!(packs.len(), 4, "four packs under the bank:\n{stdout}");
        // A parallel bank carries the sum of its packs' currents (each printed to 0.01 A).
        let sum: f64 = packs.iter().map(|(a, _)| a).sum();
        assert!((bank_a - sum).abs() < 0.025, "bank {bank_a} A vs packs {sum:.2} A in one block:\n{stdout}");
        let limits = lines.get(i + 2).copied().unwrap_or_default();
        // "limits: CCL Pack 4: Config max 50.0 A at 34 % of the bank current ... | DCL Pack 1 ..."
        let (ccl, _) = limits.split_once(" | DCL ").unwrap_or_default();
        let ccl = ccl.trim().strip_prefix("limits: CCL Pack ").unwrap_or_else(|| panic!("{limits}"));
        let pack: usize = ccl[..1].parse().unwrap();
        let share: f64 = ccl
            .split(" at ")
            .nth(1)
            .and_then(|s| s.split(" % of the bank current").next())
            .unwrap_or_else(|| panic!("{limits}"))
            .parse()
            .unwrap();
        // Before the split is measured each pack counts as taking it all (100 %, the worst
        // plausible split, docs/multi-battery.md); after that the printed share is that pack's
        // part of the bank current shown above it.
        if share >= 99.5 {
            continue;
        }
        let actual = packs[pack - 1].0 / bank_a * 100.0;
        assert!((share - actual).abs() <= 1.0, "pack {pack}: {share} % vs {actual:.1} %:\n{stdout}");
        if ccl.contains("Config max") {
            // Every pack has the same configured maximum: the one carrying most current binds.
            let most = packs.iter().enumerate().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)).unwrap().0;
            assert_eq!(pack, most + 1, "{limits}\n{stdout}");
        }
        blocks += 1;
    }
    assert!(blocks >= 2, "too few bank blocks with a measured split:\n{stdout}");
}
