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
    assert!(stderr.contains(&format!("{name}:2:1: daemon.poll_interval_ms: 5 is outside the allowed range 100 to 60000 ms")), "{stderr}");
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
            assert!(stdout.contains(protocol.name()), "{command} --help lacks {}:\n{stdout}", protocol.name());
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
    std::fs::write(&file, "[daemon]\nstate_dir = \"/proc/bms-bridge\"\n\n[[port]]\ndevice = \"/dev/x\"\nprotocol = \"jbd\"\n").unwrap();
    let (code, _, stderr) = bms_bridge(&["check-config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(":2:1: daemon.state_dir: /proc/bms-bridge"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
