//! `bms-bridge doctor` on the demo setup (private bus + simulated JBD pack + the running daemon)
//! and before the daemon runs (probe), and `bms-bridge import-serialbattery` on example configs.

mod support;

use bms_bridge::config::Protocol;
use bms_bridge::sim;
use bms_bridge::victron::private_bus::PrivateBus;
use std::process::Command;
use std::time::Duration;
use support::daemon::*;

fn bms_bridge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bms-bridge")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_explains_the_demo_setup() {
    let dir = scratch_dir("doctor");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let sim = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    let link = dir.join("ttyBMS0");
    link_pty(&link, sim.path());
    let config = dir.join("bms-bridge.toml");

    // Before the daemon runs: the probe finds the JBD pack, no service yet. (The simulator, this
    // test process, holds the pty open: doctor says so and probes only with --probe-busy.)
    let daemon = start_daemon(&dir, bus.address(), &link);
    drop(daemon);
    let (code, out, err) = bms_bridge(&["doctor", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL held open by doctor_import"), "{out}");
    assert!(!out.contains("answers at"), "no probe of a busy port:\n{out}");
    let (code, out, err) =
        bms_bridge(&["doctor", "--config", config.to_str().unwrap(), "--probe-busy", "--timeout-ms", "300"]);
    assert_eq!(code, 1, "no battery service yet is a problem:\n{out}{err}");
    assert!(out.contains("is valid: 1 port(s), 1 battery(ies)"), "{out}");
    assert!(out.contains(&format!("{} exists (-> /dev/pts/", link.display())), "{out}");
    assert!(out.contains("OK   jbd answers at 9600 baud: 16 cells"), "{out}");
    assert!(out.contains("localsettings) absent"), "{out}");
    assert!(out.contains(&format!("FAIL no battery service for {}", link.display())), "{out}");
    assert!(!out.contains('\x1b'), "colour-free");

    // With the daemon: the service, its instance and every limit with the rule behind it.
    let _daemon = start_daemon(&dir, bus.address(), &link);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for(&conn, Duration::from_secs(15), "the service to connect", connected).await;
    let text = |path: &str| {
        items.get(path).and_then(|i| i.get("Text")).and_then(|t| String::try_from(t.clone()).ok()).unwrap()
    };
    let (code, out, err) = bms_bridge(&["doctor", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 1, "only the simulator holding the pty is a problem:\n{out}");
    assert!(out.contains(&format!("OK   {SERVICE}: ")), "{out}");
    assert!(out.contains("device instance 7"), "{out}");
    assert!(out.contains("bms-bridge (pid"), "{out}");
    assert!(
        out.contains(&format!(
            "CVL {}  set by: {} (/Info/ChargeMode)",
            text("/Info/MaxChargeVoltage"),
            text("/Info/ChargeMode")
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "CCL {}  set by: {} (/Info/ChargeLimitation)",
            text("/Info/MaxChargeCurrent"),
            text("/Info/ChargeLimitation")
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "DCL {}  set by: {} (/Info/DischargeLimitation)",
            text("/Info/MaxDischargeCurrent"),
            text("/Info/DischargeLimitation")
        )),
        "{out}"
    );
    assert!(out.contains("Summary: 1 problem(s)"), "{out}");
    println!("{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn doctor_names_a_bad_config_and_a_missing_port() {
    let dir = scratch_dir("doctor-bad");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[daemon]\npoll_interval_ms = 5\n").unwrap();
    let (code, out, _) =
        bms_bridge(&["doctor", "--config", bad.to_str().unwrap(), "--bus", "unix:path=/nonexistent/bus"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL ")
            && out.contains("daemon.poll_interval_ms: 5 is outside the allowed range 100 to 60000 ms"),
        "{out}"
    );
    assert!(out.contains("cannot connect to the bus at unix:path=/nonexistent/bus"), "{out}");

    let missing = dir.join("missing.toml");
    std::fs::write(&missing, "[[port]]\ndevice = \"/dev/ttyNOPE7\"\nprotocol = \"daly\"\n").unwrap();
    let (code, out, _) =
        bms_bridge(&["doctor", "--config", missing.to_str().unwrap(), "--bus", "unix:path=/nonexistent/bus"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("port[1] /dev/ttyNOPE7 (daly)") && out.contains("/dev/ttyNOPE7 does not exist"),
        "{out}"
    );

    // A CAN interface that is not there and a broker that does not listen: named as such, not
    // as missing serial devices.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let other = dir.join("other.toml");
    std::fs::write(
        &other,
        format!(
            "[[port]]\ndevice = \"nocan9\"\nprotocol = \"jk_can\"\n\n\
             [[port]]\ndevice = \"mqtt://127.0.0.1:{port}/bms/1\"\nprotocol = \"mqtt\"\n"
        ),
    )
    .unwrap();
    let (code, out, _) =
        bms_bridge(&["doctor", "--config", other.to_str().unwrap(), "--bus", "unix:path=/nonexistent/bus"]);
    assert_eq!(code, 1);
    assert!(out.contains("no network interface nocan9"), "{out}");
    assert!(out.contains(&format!("broker mqtt://127.0.0.1:{port} unreachable")), "{out}");
    assert!(!out.contains("does not exist"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

const SERIALBATTERY_INI: &str = "[DEFAULT]
; a typical dbus-serialbattery config.ini
MAX_BATTERY_CHARGE_CURRENT = 100.0
MAX_CELL_VOLTAGE = 3.50
FLOAT_CELL_VOLTAGE = 3.35
BMS_TYPE = Daly
BATTERY_ADDRESSES = 0x40, 0x41
INVERT_CURRENT_MEASUREMENT = -1
CELL_VOLTAGES_WHILE_CHARGING = 3.55, 3.50, 3.45, 3.40
MAX_CHARGE_CURRENT_CV_FRACTION = 0, 0.05, 0.5, 1
BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES = 10
SOC_CALCULATION = True
POLL_INTERVAL = 2
TELEMETRY = False
CCCM_T_ENABLE = False
MY_OLD_KEY = 1
";

#[test]
fn import_serialbattery_writes_a_valid_equivalent_config() {
    let dir = scratch_dir("import");
    let ini = dir.join("config.ini");
    std::fs::write(&ini, SERIALBATTERY_INI).unwrap();
    let toml = dir.join("bms-bridge.toml");
    let (code, out, err) = bms_bridge(&[
        "import-serialbattery",
        ini.to_str().unwrap(),
        "--port",
        "/dev/serial/by-id/usb-daly",
        "-o",
        toml.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for unmapped in ["TELEMETRY", "CCCM_T_ENABLE", "MY_OLD_KEY"] {
        assert!(out.contains(&format!("NOT MAPPED {unmapped} = ")), "{unmapped} must be listed:\n{out}");
    }
    assert!(out.contains("config.ini:16): unknown to this importer"), "{out}");
    assert!(out.contains("mapped   MAX_CELL_VOLTAGE -> charge.max_cell_voltage"), "{out}");

    let cfg = bms_bridge::config::load(&toml).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(cfg.charge.max_charge_current, 100.0);
    assert_eq!(cfg.charge.max_cell_voltage, 3.5);
    assert_eq!(cfg.charge.float_cell_voltage, 3.35);
    assert_eq!(cfg.charge.lost_discharge_timeout_s, 600.0);
    assert_eq!(cfg.charge.soc_source, bms_bridge::control::SocSource::Calculated);
    assert_eq!(cfg.charge.charge_cell_voltage_table, vec![[3.4, 1.0], [3.45, 0.5], [3.5, 0.05], [3.55, 0.0]]);
    assert_eq!(cfg.charge.max_discharge_current, 60.0, "serialbattery default = ours");
    assert_eq!(cfg.daemon.poll_interval_ms, 2000);
    let port = &cfg.ports[0];
    assert_eq!(port.device, "/dev/serial/by-id/usb-daly");
    assert_eq!(port.protocol, Protocol::Daly);
    assert_eq!(port.addresses, Some(vec![0x40, 0x41]));
    assert_eq!(port.battery(Some(0x41)).invert_current, Some(true));
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("#   TELEMETRY = False"), "unmapped keys are noted in the file too:\n{text}");

    // A config.default.ini next to config.ini is read as the defaults; a change there counts.
    std::fs::write(
        dir.join("config.default.ini"),
        "[DEFAULT]\nMAX_BATTERY_DISCHARGE_CURRENT = 80.0\nLOGGING = INFO\nNEW_UPSTREAM_KEY = x\n",
    )
    .unwrap();
    let (code, out, err) = bms_bridge(&["import-serialbattery", ini.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("config.default.ini"), "{err}");
    assert!(out.contains("max_discharge_current = 80.0"), "{out}");
    assert!(err.contains("NEW_UPSTREAM_KEY"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn import_refuses_what_it_cannot_read() {
    let dir = scratch_dir("import-bad");
    let ini = dir.join("config.ini");
    std::fs::write(&ini, "[DEFAULT]\nthis line is not a key\n").unwrap();
    let (code, _, err) = bms_bridge(&["import-serialbattery", ini.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("config.ini:2: expected KEY = value"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Support logs: connect, loss and every limit change are one line each, naming the battery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_name_the_battery_for_connect_loss_and_limits() {
    let dir = scratch_dir("logs");
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let sim = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    let link = dir.join("ttyBMS0");
    link_pty(&link, sim.path());
    let daemon = start_daemon(&dir, bus.address(), &link);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    wait_for(&conn, Duration::from_secs(15), "the service to connect", connected).await;
    sim.control().set_silent(true);
    wait_for(&conn, Duration::from_secs(15), "the BMS to be lost", |items| !connected(items)).await;
    sim.control().set_silent(false);
    wait_for(&conn, Duration::from_secs(15), "the BMS to come back", connected).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(daemon);
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    let battery = format!("battery={}", link.display());
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle) && l.contains(&battery)).count();
    assert_eq!(lines("BMS answering"), 2, "first reading and recovery:\n{log}");
    assert_eq!(lines("BMS lost: no good reading for 2 s"), 1, "{log}");
    assert!(lines("limits changed") >= 3, "start, fail-safe and recovery limits:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("limits changed")
            && l.contains("ccl=0.0 A")
            && l.contains("BMS lost")
            && l.contains(&battery)),
        "{log}"
    );
    // For people: plain key=value words, no Rust debug dumps at INFO.
    for line in log.lines().filter(|l| l.contains(" INFO ")) {
        for dump in ["ChargeMode {", "Limitation {", "Some(", "None,", "reasons: ["] {
            assert!(!line.contains(dump), "debug dump {dump:?} in: {line}");
        }
    }
    assert!(!log.contains('\x1b'), "no colour codes in a log file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `bms-bridge sim` holding the port is not "the running daemon"; doctor also says whether the
/// state_dir is writable.
#[test]
fn doctor_tells_a_simulator_from_the_daemon_and_checks_the_state_dir() {
    let dir = scratch_dir("doctor-sim");
    let link = dir.join("ttySIM");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(["sim", "--protocol", "jbd", "--link"])
        .arg(&link)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !link.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = dir.join("bms-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"/proc/bms-bridge-state\"\n\n[[port]]\ndevice = \"{}\"\nprotocol = \"jbd\"\n",
            link.display()
        ),
    )
    .unwrap();
    let (_, out, err) = bms_bridge(&["doctor", "--config", config.to_str().unwrap()]);
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(
        out.contains("another bms-bridge command (a simulator or the demo, not the daemon)"),
        "{out}{err}"
    );
    assert!(!out.contains("the running daemon uses it"), "{out}");
    assert!(out.contains("FAIL state_dir: /proc/bms-bridge-state"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
