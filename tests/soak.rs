//! Soak: the real daemon against simulated packs at a fast poll rate, sampling its RSS and open
//! file descriptors; and 24 simulated hours of charge control (no drift, no unbounded state).
//!
//! - `soak_short` runs in the normal suite (`BMS_BRIDGE_SOAK_S`, default 60 s).
//! - `soak_10_minutes` is `#[ignore]`d: `cargo test --test soak -- --ignored --nocapture`.
//!
//! Figures are in `docs/reliability.md`.

mod support;

use bms_bridge::config::{BatteryConfig, Protocol};
use bms_bridge::control::{ChargeController, ControlState};
use bms_bridge::monitor::Monitor;
use bms_bridge::sim::pack::{Charger, Pack};
use bms_bridge::sim::{self, PtySimulator};
use bms_bridge::victron::private_bus::PrivateBus;
use std::path::Path;
use std::time::{Duration, Instant};
use support::daemon::*;

/// (seconds since start, RSS in KiB, open fds).
type Sample = (f64, u64, usize);

fn sample(pid: u32, t0: Instant) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((t0.elapsed().as_secs_f64(), rss, fds))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Least-squares slope of RSS (KiB per second).
fn slope(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    let (mt, mr) = samples.iter().fold((0.0, 0.0), |(a, b), s| (a + s.0 / n, b + s.1 as f64 / n));
    let (num, den) = samples
        .iter()
        .fold((0.0, 0.0), |(a, b), s| (a + (s.0 - mt) * (s.1 as f64 - mr), b + (s.0 - mt).powi(2)));
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

fn soak_config(dir: &Path, bus: &str, ports: &[(&Path, Protocol, &str)]) -> std::path::PathBuf {
    let mut text = format!(
        "[daemon]\npoll_interval_ms = 100\nstale_after_s = 2.0\nstate_dir = \"{}\"\n\n[dbus]\nbus = \"{bus}\"\ndevice_instance = 7\n",
        dir.join("state").display()
    );
    for (device, protocol, extra) in ports {
        text.push_str(&format!(
            "\n[[port]]\ndevice = \"{}\"\nprotocol = \"{}\"\ntimeout_ms = 150\n{extra}",
            device.display(),
            protocol.name()
        ));
    }
    let path = dir.join("bms-bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the daemon for `duration` on four packs (JBD, two UP16S on one bus, EG4-LL over Modbus)
/// polled every 100 ms, with a D-Bus client reading everything each second and one BMS going
/// silent for 3 s every 30 s (error paths leak too). Fails on fd growth or RSS growth > noise.
async fn soak(duration: Duration) {
    let dir = scratch_dir(&format!("soak-{}", duration.as_secs()));
    let bus = PrivateBus::start().expect("dbus-daemon");
    let sims: Vec<(PtySimulator, &str)> = vec![
        (sim::spawn(Protocol::Jbd, &[], 16).unwrap(), "ttyBMS0"),
        (sim::spawn(Protocol::JbdUp16s, &[1, 2], 16).unwrap(), "ttyBMS1"),
        (sim::spawn(Protocol::Eg4Ll, &[], 16).unwrap(), "ttyBMS2"),
    ];
    let links: Vec<_> = sims
        .iter()
        .map(|(s, name)| {
            let link = dir.join(name);
            link_pty(&link, s.path());
            link
        })
        .collect();
    let config = soak_config(
        &dir,
        bus.address(),
        &[
            (&links[0], Protocol::Jbd, ""),
            (&links[1], Protocol::JbdUp16s, "addresses = [1, 2]\n"),
            (&links[2], Protocol::Eg4Ll, ""),
        ],
    );
    let mut daemon = spawn_daemon(&dir, &config);
    let pid = daemon.0.id();
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    wait_for(&conn, Duration::from_secs(20), "the first battery", connected).await;

    // Warm-up: allocator pools, D-Bus match rules, the first state saves.
    let warmup = (duration / 5).min(Duration::from_secs(60));
    let t0 = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = t0 + warmup;
    let mut polls = 0u64;
    while t0.elapsed() < duration {
        let secs = t0.elapsed().as_secs();
        sims[0].0.control().set_silent(secs % 30 >= 27);
        let _ = get_items(&conn).await;
        polls += 1;
        if Instant::now() >= next_sample {
            samples.push(sample(pid, t0).expect("the daemon is running"));
            next_sample += Duration::from_secs(3);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon exited:\n{}", daemon_log(&dir));
    let requests: u64 = sims.iter().map(|(s, _)| s.control().requests()).sum();

    let q = (samples.len() / 4).max(1);
    let first = median(samples[..q].iter().map(|s| s.1).collect());
    let last = median(samples[samples.len() - q..].iter().map(|s| s.1).collect());
    let kib_per_hour = slope(&samples) * 3600.0;
    let fds: Vec<usize> = samples.iter().map(|s| s.2).collect();
    let (fd_min, fd_max) = (*fds.iter().min().unwrap(), *fds.iter().max().unwrap());
    eprintln!(
        "soak {} s: {} samples, {requests} BMS requests answered, {polls} GetItems; RSS {first} -> {last} KiB \
         (median of first/last quarter), slope {kib_per_hour:.0} KiB/h; fds {fd_min}..{fd_max}",
        duration.as_secs(),
        samples.len()
    );
    assert!(fd_max - fd_min <= 2, "open fds grew: {fds:?}");
    // Noise: a few hundred KiB of allocator churn; a leak of 1 KiB per poll would be ~36 MiB/h.
    assert!(last <= first + 512, "RSS grew from {first} to {last} KiB: {samples:?}");
    // The trend over the sampled window (an hourly extrapolation of a 1-minute run is noise).
    let window_s = samples.last().unwrap().0 - samples[0].0;
    let trend_kib = slope(&samples) * window_s;
    assert!(trend_kib < 512.0, "RSS trend +{trend_kib:.0} KiB over {window_s:.0} s: {samples:?}");
    drop(daemon);
    drop(sims);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_short() {
    let secs = std::env::var("BMS_BRIDGE_SOAK_S").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    soak(Duration::from_secs(secs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10 minutes: run by hand, figures in docs/reliability.md"]
async fn soak_10_minutes() {
    soak(Duration::from_secs(600)).await;
}

/// 24 simulated hours at 1 s steps: a solar day (6 h of charging, loads the rest), the BMS silent
/// for 60 s every 2 h, a daemon restart through the state file every 6 h. The history counters
/// follow the pack without drift, the limits stay sane, and nothing the monitor keeps grows.
#[test]
fn twenty_four_simulated_hours_of_control() {
    let t0 = Instant::now();
    let stale = Duration::from_secs(10);
    let options = BatteryConfig { capacity_ah: Some(280.0), ..Default::default() };
    let config = bms_bridge::sim::closed_loop::scenario_config("full-charge").unwrap();
    let new_monitor = |now| Monitor::new(now, options.clone(), stale, ChargeController::new(config.clone()));
    let mut monitor = new_monitor(t0);
    let mut pack = Pack::lifepo4_16s(0.5, 25.0);
    let mut charger = Charger::new(100.0);
    let (mut charged_ah, mut drawn_ah) = (0.0f64, 0.0f64);
    let mut sizes: Vec<(u64, usize, usize)> = Vec::new();
    let mut phases = std::collections::BTreeSet::new();
    let mut restarts = 0;
    for second in 0..24 * 3600u64 {
        let now = t0 + Duration::from_secs(second);
        let hour = second / 3600;
        let silent = second % 7200 >= 7140;
        if silent {
            monitor.handle_failure("timeout".into());
        } else {
            monitor.handle_reading(now, pack.reading(now));
        }
        let out = monitor.output(now);
        let l = &out.limits;
        let cvl = l.charge_voltage_v.unwrap_or(0.0);
        let (ccl, dcl) = (l.charge_current_a.unwrap_or(0.0), l.discharge_current_a.unwrap_or(0.0));
        // The configured ceiling, not the chemistry's: 16 x max_cell_voltage.
        assert!(
            cvl.is_finite()
                && cvl <= 16.0 * config.max_cell_voltage + 1e-9
                && ccl.is_finite()
                && (0.0..=config.max_charge_current).contains(&ccl)
                && (0.0..=config.max_discharge_current).contains(&dcl),
            "{l:?}"
        );
        if out.connected {
            phases.insert(format!("{:?}", l.mode.phase));
        } else {
            assert_eq!(ccl, 0.0, "no charging while the BMS is lost");
        }
        let _ = monitor.take_state_to_save();
        // Daytime 08-14 h: a charger; otherwise a 10 A load.
        let (charge_a, load_a) = if (8..14).contains(&(hour % 24)) { (100.0, 0.0) } else { (0.0, 10.0) };
        charger.max_charge_a = charge_a;
        let current = charger.step(&pack, cvl, ccl, dcl, load_a, 1.0);
        pack.step(current, 1.0);
        // Physics, not the controller: no simulated cell ever runs past max + 0.05 V (where a
        // BMS trips and where the CCL table must have reached 0).
        if let Some((_, high)) = pack.reading(now).max_cell() {
            assert!(high <= config.max_cell_voltage + 0.05, "a cell reached {high:.3} V at {second} s");
        }
        if current > 0.0 {
            charged_ah += current / 3600.0;
        } else {
            drawn_ah -= current / 3600.0;
        }
        if second % 3600 == 0 {
            let state = serde_json::to_string(&monitor.control_state()).unwrap();
            sizes.push((hour, state.len(), format!("{monitor:?}").len()));
        }
        if second > 0 && second % (6 * 3600) == 0 {
            let state: ControlState =
                serde_json::from_str(&serde_json::to_string(&monitor.control_state()).unwrap()).unwrap();
            monitor = new_monitor(now);
            monitor.restore_control_state(&state, now, Duration::ZERO);
            restarts += 1;
        }
    }
    let history = monitor.output(t0 + Duration::from_secs(24 * 3600)).history;
    eprintln!(
        "24 h: drawn {drawn_ah:.1} Ah (history says {:.1}), charged {charged_ah:.1} Ah, cycles {:.3}, phases {phases:?}, \
         {restarts} restarts; state JSON / monitor sizes by hour {sizes:?}",
        history.total_ah_drawn, history.charge_cycles
    );
    for phase in ["Bulk", "Absorption", "Float"] {
        assert!(phases.contains(phase), "the day reaches {phase}: {phases:?}");
    }
    assert!(drawn_ah > 100.0, "the load drew charge");
    // History counts what the BMS reported (the 60 s gaps are not counted): within 2 %.
    let err = (history.total_ah_drawn - drawn_ah).abs() / drawn_ah;
    assert!(err < 0.02, "drawn Ah drifted: history {} vs pack {drawn_ah}", history.total_ah_drawn);
    let max_state = sizes.iter().map(|s| s.1).max().unwrap();
    let max_monitor = sizes.iter().map(|s| s.2).max().unwrap();
    let (first_state, first_monitor) = (sizes[1].1, sizes[1].2);
    // Bounded, not constant: the over-voltage controller and top balancing add their fields
    // (about 110 bytes of JSON) while they are active.
    assert!(max_state <= first_state + 192, "the saved state grows: {sizes:?}");
    assert!(max_monitor <= first_monitor + 512, "the monitor's state grows: {sizes:?}");
}
