//! The fault matrix of `docs/reliability.md`: each fault against the real daemon binary, a
//! simulator on a pty and a private dbus-daemon, with the outcome the document promises.
//! (BMS silent and the serial device vanishing are in `tests/daemon_e2e.rs`; `check-config` in
//! `tests/cli.rs`.)

mod support;

use bms_bridge::config::Protocol;
use bms_bridge::sim::{self, PtySimulator, SimControl};
use bms_bridge::victron::private_bus::PrivateBus;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::daemon::*;

const LOST: Duration = Duration::from_secs(15);
const BACK: Duration = Duration::from_secs(20);

/// A config like the e2e one: poll 250 ms, reply timeout 200 ms, stale after 2 s.
fn write_config(
    dir: &Path,
    bus: &str,
    device: &Path,
    protocol: Protocol,
    port_extra: &str,
    state_dir: &Path,
) -> PathBuf {
    let config = dir.join("bms-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\npoll_interval_ms = 250\nstale_after_s = 2.0\nstate_dir = \"{}\"\n\n[dbus]\nbus = \"{bus}\"\ndevice_instance = 7\n\n[[port]]\ndevice = \"{}\"\nprotocol = \"{}\"\ntimeout_ms = 200\n{port_extra}",
            state_dir.display(),
            device.display(),
            protocol.name(),
        ),
    )
    .unwrap();
    config
}

struct Rig {
    dir: PathBuf,
    bus: PrivateBus,
    sim: PtySimulator,
    link: PathBuf,
    config: PathBuf,
    daemon: Daemon,
    conn: zbus::Connection,
}

impl Rig {
    /// Simulator of `sim_protocol` with packs at `sim_addresses`; the daemon polls `protocol`.
    async fn start(
        name: &str,
        sim_protocol: Protocol,
        sim_addresses: &[u8],
        protocol: Protocol,
        port_extra: &str,
    ) -> Rig {
        let dir = scratch_dir(&format!("fault-{name}"));
        let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
        let sim = sim::spawn(sim_protocol, sim_addresses, 16).unwrap();
        let link = dir.join("ttyBMS0");
        link_pty(&link, sim.path());
        let config = write_config(&dir, bus.address(), &link, protocol, port_extra, &dir.join("state"));
        let daemon = spawn_daemon(&dir, &config);
        let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
        Rig { dir, bus, sim, link, config, daemon, conn }
    }

    fn control(&self) -> &SimControl {
        self.sim.control()
    }

    fn assert_running(&mut self) {
        let status = self.daemon.0.try_wait().unwrap();
        assert!(status.is_none(), "the daemon exited: {status:?}\n{}", daemon_log(&self.dir));
    }

    async fn wait_connected(&self, what: &str) -> Items {
        wait_for(&self.conn, BACK, what, connected).await
    }

    /// Lost: /Connected 0, values invalid, CCL 0, the cable alarm; the daemon still runs.
    async fn expect_lost(&mut self, what: &str) -> Items {
        let items = wait_for(&self.conn, LOST, what, |i| !connected(i)).await;
        assert!(is_invalid(value(&items, "/Dc/0/Voltage")), "{what}: no frozen voltage");
        assert!(is_invalid(value(&items, "/Soc")), "{what}: no frozen SoC");
        assert_eq!(f64_of(value(&items, "/Info/MaxChargeCurrent")), Some(0.0), "{what}: CCL 0");
        assert_eq!(i32_of(value(&items, "/Alarms/BmsCable")), Some(2), "{what}: cable alarm");
        self.assert_running();
        items
    }

    /// SIGTERM; the exit status and how long the exit took.
    fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let pid = self.daemon.0.id().to_string();
        let start = Instant::now();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        loop {
            if let Some(status) = self.daemon.0.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no exit 10 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn restart_daemon(&mut self) {
        self.daemon = spawn_daemon(&self.dir, &self.config);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = daemon_log(&self.dir);
            let tail: Vec<&str> = log.lines().rev().take(400).collect();
            eprintln!("daemon log (last lines, newest first):\n{}", tail.join("\n"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fault that makes every poll fail: the BMS is declared lost (no frozen values, CCL 0), the
/// daemon keeps running, and the values come back by themselves once the fault clears.
async fn fault_then_recover(
    name: &str,
    protocol: Protocol,
    addresses: &[u8],
    fault: impl Fn(&SimControl, bool),
) {
    let extra = if addresses.is_empty() { String::new() } else { format!("addresses = {addresses:?}\n") };
    let mut rig = Rig::start(name, protocol, addresses, protocol, &extra).await;
    rig.wait_connected("first connection").await;
    fault(rig.control(), true);
    rig.expect_lost(name).await;
    fault(rig.control(), false);
    let items = rig.wait_connected("recovery").await;
    assert!(!is_invalid(value(&items, "/Dc/0/Voltage")));
    assert_eq!(i32_of(value(&items, "/Alarms/BmsCable")), Some(0));
    rig.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replies_framed_link() {
    fault_then_recover("garbage-jbd", Protocol::Jbd, &[], |c, on| c.set_garbage(on)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replies_modbus_link() {
    fault_then_recover("garbage-eg4", Protocol::Eg4Ll, &[], |c, on| c.set_garbage(on)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_framed_link() {
    fault_then_recover("partial-up16s", Protocol::JbdUp16s, &[], |c, on| c.set_partial(on)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_modbus_link() {
    fault_then_recover("partial-renogy", Protocol::Renogy, &[], |c, on| c.set_partial(on)).await;
}

/// Replies after the 200 ms timeout: lost; the late bytes must not be taken for the answer to a
/// later request once replies are on time again (recovery with correct values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_slower_than_the_timeout() {
    fault_then_recover("slow-jbd", Protocol::Jbd, &[], |c, on| c.set_delay_ms(if on { 450 } else { 0 }))
        .await;
}

/// Modbus RTU has no transaction id: a late reply that arrives while an identical request waits
/// is that request's answer (values at most one cycle old), so the battery may stay connected.
/// What must hold: no crash, and no backlog of old replies once the BMS is fast again (stale input
/// is dropped before every request), so a change shows within a few cycles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_slower_than_the_timeout_modbus() {
    let mut rig = Rig::start("slow-eg4", Protocol::Eg4Ll, &[], Protocol::Eg4Ll, "").await;
    rig.wait_connected("first connection").await;
    rig.control().set_delay_ms(450);
    let until = Instant::now() + Duration::from_secs(6);
    let mut lost = false;
    while Instant::now() < until {
        if let Ok(items) = get_items(&rig.conn).await {
            lost |= !connected(&items);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("modbus replies 450 ms late (timeout 200 ms): battery lost at some point: {lost}");
    rig.assert_running();
    rig.control().set_delay_ms(0);
    rig.control().set_charge_fet_off(true);
    wait_for(&rig.conn, Duration::from_secs(4), "a fresh value right after the delay ends", |i| {
        connected(i) && i32_of(value(i, "/Io/AllowToCharge")) == Some(0)
    })
    .await;
}

/// Cross-talk: the daemon polls address 1, pack 2 answers. Pack 2's values are never published
/// as pack 1's; the battery is lost until its own replies come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_from_another_address() {
    // The port's default address is 1; pack 2 shares the bus.
    let mut rig = Rig::start("crosstalk", Protocol::Eg4Ll, &[1, 2], Protocol::Eg4Ll, "").await;
    rig.control().set_frozen(true);
    let items = rig.wait_connected("first connection").await;
    let own_soc = f64_of(value(&items, "/Soc")).unwrap();
    let other_soc = rig.sim.pack(Some(2)).unwrap().soc_percent.round();
    assert_ne!(own_soc, other_soc, "the test needs packs that differ");
    rig.control().set_cross_talk(true);
    let deadline = Instant::now() + LOST;
    loop {
        let items = get_items(&rig.conn).await.unwrap();
        let soc = f64_of(value(&items, "/Soc"));
        assert_ne!(soc, Some(other_soc), "pack 2's SoC published for pack 1");
        if !connected(&items) {
            break;
        }
        assert!(Instant::now() < deadline, "cross-talk did not make the battery lost");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rig.expect_lost("cross-talk").await;
    rig.control().set_cross_talk(false);
    let items = rig.wait_connected("own replies again").await;
    assert_eq!(f64_of(value(&items, "/Soc")), Some(own_soc));
}

/// The port holds another BMS type: the service exists with /Connected 0 and the daemon waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bms_type_on_the_port() {
    let mut rig = Rig::start("wrongtype", Protocol::Daly, &[], Protocol::Jbd, "").await;
    let items =
        wait_for(&rig.conn, BACK, "the service (not connected)", |i| i.contains_key("/Connected")).await;
    assert!(!connected(&items));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let items = get_items(&rig.conn).await.unwrap();
    assert!(!connected(&items), "a Daly must never pass as a JBD");
    assert!(is_invalid(value(&items, "/Dc/0/Voltage")));
    assert_eq!(f64_of(value(&items, "/Info/MaxChargeCurrent")), Some(0.0));
    rig.assert_running();
    assert!(rig.control().requests() == 0, "the Daly simulator saw no valid Daly request");
}

/// dbus-daemon restarted under the daemon: it reconnects, re-registers every path, same instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbus_daemon_restarted_under_the_daemon() {
    let mut rig = Rig::start("dbusrestart", Protocol::Jbd, &[], Protocol::Jbd, "").await;
    let before = rig.wait_connected("first connection").await;
    rig.bus.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.bus.restart().unwrap();
    rig.conn = zbus::connection::Builder::address(rig.bus.address()).unwrap().build().await.unwrap();
    let after = rig.wait_connected("re-registration on the new bus").await;
    assert_eq!(i32_of(value(&after, "/DeviceInstance")), Some(7));
    let (mut a, mut b): (Vec<_>, Vec<_>) = (before.keys().collect(), after.keys().collect());
    a.sort();
    b.sort();
    assert_eq!(a, b, "every path is back");
    rig.assert_running();
}

/// localsettings absent at start: the configured fallback instance. It appears later: the service
/// keeps its instance until bms-bridge restarts (Venus applies instance changes at restart too);
/// after a restart the instance comes from localsettings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localsettings_absent_then_appearing() {
    let mut rig = Rig::start("settingslater", Protocol::Jbd, &[], Protocol::Jbd, "").await;
    let items = rig.wait_connected("first connection").await;
    assert_eq!(i32_of(value(&items, "/DeviceInstance")), Some(7), "fallback instance");
    let _settings = zbus::connection::Builder::address(rig.bus.address())
        .unwrap()
        .serve_at("/", support::settings::FakeSettings { stored: "" })
        .unwrap()
        .name("com.victronenergy.settings")
        .unwrap()
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let items = rig.wait_connected("still connected").await;
    assert_eq!(i32_of(value(&items, "/DeviceInstance")), Some(7), "instance kept until restart");
    rig.assert_running();
    let (status, _) = rig.terminate();
    assert!(status.success());
    rig.restart_daemon();
    let items = rig.wait_connected("after restart").await;
    assert_eq!(i32_of(value(&items, "/DeviceInstance")), Some(3), "instance from localsettings");
}

fn run_with(config: &str) -> (i32, String) {
    let dir = scratch_dir("fault-config");
    let file = dir.join("bms-bridge.toml");
    std::fs::write(&file, config).unwrap();
    let start = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bms-bridge"))
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "refusing must be immediate");
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// An invalid config: `run` refuses to start (exit 1) and lists every error, not only the first.
#[test]
fn invalid_config_refuses_to_start_listing_every_error() {
    let (code, stderr) = run_with(
        "[daemon]\npoll_interval_ms = 5\ncolour = \"red\"\n\n[[port]]\ndevice = \"/dev/ttyUSB0\"\nprotocol = \"jbd\"\nbaud = 1234\n\n[[port]]\ndevice = \"/dev/ttyUSB1\"\nprotocol = \"jbd_up16s\"\naddresses = [1, 1]\n",
    );
    assert_eq!(code, 1, "{stderr}");
    for needle in ["daemon.poll_interval_ms", "daemon.colour", "port[1].baud", "port[2]"] {
        assert!(stderr.contains(needle), "{needle} not listed:\n{stderr}");
    }
    assert!(stderr.contains("problem(s) in the config; not starting"), "{stderr}");
}

/// A config valid except one battery section: the documented choice is to refuse to start (a
/// half-configured system is not what the user asked for), naming the section.
#[test]
fn one_bad_battery_section_refuses_to_start() {
    let (code, stderr) = run_with(
        "[[port]]\ndevice = \"/dev/ttyUSB0\"\nprotocol = \"jbd\"\n\n[[port]]\ndevice = \"/dev/ttyUSB1\"\nprotocol = \"jbd_up16s\"\naddresses = [1, 2]\n\n[[port.battery]]\naddress = 2\ncapacity_ah = -5.0\n",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("port[2].battery.capacity_ah"), "the bad section is named:\n{stderr}");
    assert!(stderr.contains("1 problem(s)"), "only that section is wrong:\n{stderr}");
}

/// The saved state of every battery in `dir`.
fn state_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map_or_else(|_| Vec::new(), |d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
}

/// SIGTERM while polls are in flight (replies take 150 ms of the 250 ms cycle): a clean exit
/// within 2 s, with the charge state saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_poll_exits_cleanly_with_state_saved() {
    let mut rig = Rig::start("sigterm", Protocol::Jbd, &[], Protocol::Jbd, "").await;
    rig.wait_connected("first connection").await;
    rig.control().set_delay_ms(150);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let state_dir = rig.dir.join("state");
    for f in state_files(&state_dir) {
        std::fs::remove_file(f).unwrap();
    }
    let (status, took) = rig.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", daemon_log(&rig.dir));
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let files = state_files(&state_dir);
    assert_eq!(files.len(), 1, "one state file: {files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).expect("the saved state is whole JSON");
}

/// A corrupt state file: start with defaults, warn, keep running; the next save replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_file_starts_with_defaults() {
    let mut rig = Rig::start("statecorrupt", Protocol::Jbd, &[], Protocol::Jbd, "").await;
    rig.wait_connected("first connection").await;
    assert!(rig.terminate().0.success());
    let files = state_files(&rig.dir.join("state"));
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::write(&files[0], b"{\"phase\": \x00\xFF garbage").unwrap();
    rig.restart_daemon();
    rig.wait_connected("connected despite the corrupt state").await;
    assert!(daemon_log(&rig.dir).contains("cannot read the saved charge state"), "a warning names it");
    rig.assert_running();
    assert!(rig.terminate().0.success());
    let text = std::fs::read_to_string(&files[0]).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).expect("replaced by a good state");
}

/// An unwritable state directory (its parent is a regular file, so even root cannot create it):
/// the daemon runs, warns, and still exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_state_dir_keeps_running() {
    let dir = scratch_dir("fault-stateunwritable");
    std::fs::write(dir.join("blocker"), b"not a directory").unwrap();
    let bus = PrivateBus::start().unwrap();
    let sim = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    let link = dir.join("ttyBMS0");
    link_pty(&link, sim.path());
    let config = write_config(&dir, bus.address(), &link, Protocol::Jbd, "", &dir.join("blocker/state"));
    let daemon = spawn_daemon(&dir, &config);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let conn2 = conn.clone();
    let mut rig = Rig { dir: dir.clone(), bus, sim, link, config, daemon, conn };
    wait_for(&conn2, BACK, "connection", connected).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.assert_running();
    let (status, took) = rig.terminate();
    assert!(status.success() && took < Duration::from_secs(2), "{status:?} after {took:?}");
    assert!(daemon_log(&dir).contains("cannot save the charge state"), "{}", daemon_log(&dir));
}

/// Two daemons on one serial device: the second never opens it and names the holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_port_names_the_holder() {
    let rig = Rig::start("lock", Protocol::Jbd, &[], Protocol::Jbd, "").await;
    rig.wait_connected("first connection").await;
    let dir2 = scratch_dir("fault-lock2");
    let bus2 = PrivateBus::start().unwrap();
    let config2 = write_config(&dir2, bus2.address(), &rig.link, Protocol::Jbd, "", &dir2.join("state"));
    let mut second = spawn_daemon(&dir2, &config2);
    let holder = format!("in use by process {}", rig.daemon.0.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon_log(&dir2).contains(&holder) {
        assert!(Instant::now() < deadline, "no lock error naming the holder:\n{}", daemon_log(&dir2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(second.0.try_wait().unwrap().is_none(), "the second daemon waits, it does not crash");
    rig.wait_connected("the first daemon is undisturbed").await;
    drop(second);
    let _ = std::fs::remove_dir_all(&dir2);
}
