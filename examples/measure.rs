//! Measures a BMS daemon on simulated packs: CPU, memory, D-Bus traffic and poll timing.
//!
//! ```text
//! cargo build --release && cargo run --release --example measure -- --packs 4 --window 60
//! cargo run --release --example measure -- --packs 16 --layout bus --poll-ms 100 --window 30
//! cargo run --release --example measure -- --packs 4 --command 'other-daemon --ports {ports}'
//! ```
//!
//! It starts a private dbus-daemon, the simulated packs on ptys (`--layout ports`: one JBD pack
//! per pty, `ttyBMS0..`; `--layout bus`: one JBD UP16S bus with addresses 1..=N, `ttyBUS0`), with
//! real serial timing unless `--no-wire-timing`, then the daemon under test (the release
//! `bms-bridge` next to this example, or `--command`). After `--warmup` seconds it measures for
//! `--window` seconds (`--repeat` times): CPU seconds per minute of the daemon's process tree
//! (utime + stime from `/proc/<pid>/stat`), RSS and peak RSS (`VmRSS`, `VmHWM` from
//! `/proc/<pid>/status`, summed over the tree), the D-Bus signals it sends per second (a match
//! rule on the private bus), and the achieved poll period and wire-time ratio per pack (from the
//! simulators' request timestamps). The time from a BMS's first answer to its service appearing on
//! the bus is taken during the warm-up.
//!
//! `--command` runs through `sh -c` with these placeholders (also set as environment variables):
//! `{bus}` / `BMS_BUS` (the private bus address; `DBUS_SYSTEM_BUS_ADDRESS` is set to it too),
//! `{ports}` / `BMS_PORTS` (the pty links, space separated), `{port0}`, `{port1}`, ...,
//! `{config}` / `BMS_CONFIG` (a bms-bridge config for the same packs), `{dir}` / `BMS_DIR` (a
//! scratch directory).

use bms_bridge::bms::jbd::codec as jbd;
use bms_bridge::bms::jbd_up16s::codec as jbd_up16s;
use bms_bridge::config::Protocol;
use bms_bridge::sim::{self, Exchange, PtySimulator, WireTiming};
use bms_bridge::victron::private_bus::PrivateBus;
use clap::Parser;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Measure a BMS daemon on simulated packs (CPU, RSS, D-Bus signals, poll timing)")]
struct Args {
    /// Number of simulated packs.
    #[arg(long, default_value_t = 4)]
    packs: usize,
    /// `ports`: one JBD pack per pty; `bus`: one JBD UP16S RS485 bus, addresses 1..=packs.
    #[arg(long, default_value = "ports")]
    layout: String,
    /// Seconds before measuring (start-up, registration).
    #[arg(long, default_value_t = 15)]
    warmup: u64,
    /// Seconds of one measurement window.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// Measurement windows, back to back (the figures are noisy on a shared machine).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// `[daemon] poll_interval_ms` of the generated config.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Line speed the simulators honour.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Simulated BMS reply delay (ms) after the request.
    #[arg(long, default_value_t = 10)]
    reply_delay_ms: u64,
    /// Answer at pty speed instead of honouring serial timing.
    #[arg(long)]
    no_wire_timing: bool,
    /// Deliver each reply a byte at a time at wire speed (as USB serial adapters do at 9600
    /// baud) instead of all at once when its last byte would have arrived.
    #[arg(long)]
    byte_by_byte: bool,
    /// Cells per pack.
    #[arg(long, default_value_t = 16)]
    cells: usize,
    /// The bms-bridge binary (default: `bms-bridge` in the directory above this example).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Another daemon to measure instead (`sh -c`, placeholders as in the module doc).
    #[arg(long)]
    command: Option<String>,
    /// Name of the measured daemon in the report.
    #[arg(long)]
    label: Option<String>,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Ctrl-C or SIGTERM drops `run`, whose guard stops the daemon.
    let result = runtime.block_on(async {
        tokio::select! {
            result = run(args) => result,
            _ = bms_bridge::demo::wait_for_signal() => Err("interrupted".to_owned()),
        }
    });
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// One simulator and the batteries it serves (bus address or `None`).
struct Simulated {
    sim: PtySimulator,
    link: PathBuf,
}

#[derive(Debug, Default)]
struct Signals {
    by_member: BTreeMap<String, u64>,
    /// First time each battery service name got an owner.
    appeared: BTreeMap<String, Instant>,
}

impl Signals {
    fn total(&self) -> u64 {
        self.by_member.values().sum()
    }
    fn member(&self, name: &str) -> u64 {
        self.by_member.get(name).copied().unwrap_or(0)
    }
}

async fn run(args: Args) -> Result<(), String> {
    let bus_layout = match args.layout.as_str() {
        "ports" => false,
        "bus" => true,
        other => return Err(format!("--layout {other}: use ports or bus")),
    };
    if args.packs == 0 || (bus_layout && args.packs > 247) {
        return Err("--packs must be 1.. (bus: at most 247)".into());
    }
    let wire = (!args.no_wire_timing).then(|| WireTiming {
        baud: args.baud,
        reply_delay: Duration::from_millis(args.reply_delay_ms),
        byte_by_byte: args.byte_by_byte,
    });
    let dir = std::env::temp_dir().join(format!("bms-measure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;

    // The packs.
    let mut sims = Vec::new();
    if bus_layout {
        let addresses: Vec<u8> = (1..=args.packs as u8).collect();
        let sim = sim::spawn(Protocol::JbdUp16s, &addresses, args.cells).map_err(|e| e.to_string())?;
        sims.push(Simulated { sim, link: dir.join("ttyBUS0") });
    } else {
        for i in 0..args.packs {
            let sim = sim::spawn(Protocol::Jbd, &[], args.cells).map_err(|e| e.to_string())?;
            sims.push(Simulated { sim, link: dir.join(format!("ttyBMS{i}")) });
        }
    }
    for s in &sims {
        std::os::unix::fs::symlink(s.sim.path(), &s.link).map_err(|e| e.to_string())?;
        s.sim.control().set_wire_timing(wire);
        s.sim.control().start_log();
    }
    let config = dir.join("bms-bridge.toml");
    std::fs::write(&config, config_text(&args, &dir, bus.address(), &sims, bus_layout))
        .map_err(|e| e.to_string())?;

    // Count every signal on the bus, and when each battery service appears.
    let conn = zbus::connection::Builder::address(bus.address())
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let rule = zbus::MatchRule::builder().msg_type(zbus::message::Type::Signal).build();
    let mut stream =
        zbus::MessageStream::for_match_rule(rule, &conn, Some(4096)).await.map_err(|e| e.to_string())?;
    let signals = Arc::new(Mutex::new(Signals::default()));
    let counter = Arc::clone(&signals);
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let header = msg.header();
            let member = header.member().map_or(String::new(), |m| m.to_string());
            let from_bus = header.sender().is_some_and(|s| s.as_str() == "org.freedesktop.DBus");
            let mut counts = counter.lock().unwrap();
            if !from_bus {
                *counts.by_member.entry(member).or_default() += 1;
            } else if member == "NameOwnerChanged" {
                if let Ok((name, _old, new)) = msg.body().deserialize::<(String, String, String)>() {
                    if name.starts_with("com.victronenergy.battery.") && !new.is_empty() {
                        counts.appeared.entry(name).or_insert_with(Instant::now);
                    }
                }
            }
        }
    });

    // The daemon under test.
    let started = Instant::now();
    let mut guard = Guard(spawn_daemon(&args, &dir, bus.address(), &sims, &config)?);
    let daemon = &mut guard.0;
    let label = args.label.clone().unwrap_or_else(|| match &args.command {
        Some(_) => "command".into(),
        None => "bms-bridge".into(),
    });
    println!(
        "measuring {label} (pid {}): {} pack(s), layout {}, poll {} ms, wire timing {}",
        daemon.id(),
        args.packs,
        args.layout,
        args.poll_ms,
        wire.map_or("off".into(), |w| format!(
            "{} baud + {:?} reply delay{}",
            w.baud,
            w.reply_delay,
            if w.byte_by_byte { ", byte by byte" } else { "" }
        ))
    );
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    if let Ok(Some(status)) = daemon.try_wait() {
        return Err(format!(
            "the daemon exited during the warm-up ({status}); see {}/daemon.log",
            dir.display()
        ));
    }

    // First values: a BMS's first answer -> its battery service on the bus.
    let warmup_logs: Vec<Vec<Exchange>> = sims.iter().map(|s| s.sim.control().take_log()).collect();
    let mut first_answers: Vec<Instant> = warmup_logs
        .iter()
        .flat_map(|log| {
            let mut first: HashMap<u8, Instant> = HashMap::new();
            for e in log {
                if let (Some(at), Some(key)) = (e.replied, poll_key(e, bus_layout)) {
                    first.entry(key).or_insert(at);
                }
            }
            first.into_values()
        })
        .collect();
    first_answers.sort();
    let mut appeared: Vec<Instant> = signals.lock().unwrap().appeared.values().copied().collect();
    appeared.sort();
    let latencies: Vec<f64> = first_answers
        .iter()
        .zip(&appeared)
        .map(|(a, s)| s.saturating_duration_since(*a).as_secs_f64())
        .collect();
    let start_to_all = appeared.last().map(|t| t.duration_since(started).as_secs_f64());
    println!(
        "services on the bus: {}/{}; first BMS answer -> service: max {} s, median {} s; daemon start -> all values: {} s",
        appeared.len(),
        args.packs,
        fmt_opt(latencies.iter().copied().reduce(f64::max), 3),
        fmt_opt(median(&latencies), 3),
        fmt_opt(start_to_all, 2),
    );

    let tck = clock_ticks();
    let bus_pid = child_named(std::process::id(), "dbus-daemon");
    let mut rows = Vec::new();
    for round in 0..args.repeat {
        let pids = tree(daemon.id());
        let (ticks0, ns0) = cpu(&pids);
        let bus_ticks0 = bus_pid.map_or(0, |p| cpu(&[p]).0);
        let signals0 = signals.lock().unwrap().by_member.clone();
        for s in &sims {
            s.sim.control().take_log();
        }
        let t0 = Instant::now();
        let mut rss_max = 0u64;
        let mut rss_sum = 0u64;
        let mut samples = 0u64;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        while t0.elapsed() < Duration::from_secs(args.window) {
            ticker.tick().await;
            let rss = memory(&tree(daemon.id())).0;
            rss_max = rss_max.max(rss);
            rss_sum += rss;
            samples += 1;
        }
        let pids = tree(daemon.id());
        let (ticks1, ns1) = cpu(&pids);
        let bus_ticks1 = bus_pid.map_or(0, |p| cpu(&[p]).0);
        let elapsed = t0.elapsed().as_secs_f64();
        let (_, hwm) = memory(&pids);
        let logs: Vec<Vec<Exchange>> = sims.iter().map(|s| s.sim.control().take_log()).collect();
        let window_signals = {
            let now = signals.lock().unwrap();
            let mut diff = Signals::default();
            for (member, n) in &now.by_member {
                diff.by_member.insert(member.clone(), n - signals0.get(member).copied().unwrap_or(0));
            }
            diff
        };
        let cpu_s = ticks1.saturating_sub(ticks0) as f64 / tck;
        let timing = poll_timing(&logs, bus_layout, wire);
        let row = Row {
            label: label.clone(),
            packs: args.packs,
            layout: args.layout.clone(),
            poll_ms: args.poll_ms,
            window_s: elapsed,
            cpu_s_per_min: cpu_s / elapsed * 60.0,
            cpu_sched_s_per_min: ns1.saturating_sub(ns0) as f64 / 1e9 / elapsed * 60.0,
            bus_cpu_s_per_min: bus_pid
                .map(|_| bus_ticks1.saturating_sub(bus_ticks0) as f64 / tck / elapsed * 60.0),
            rss_mb: rss_sum as f64 / samples.max(1) as f64 / 1024.0,
            rss_max_mb: rss_max as f64 / 1024.0,
            hwm_mb: hwm as f64 / 1024.0,
            signals_per_s: window_signals.total() as f64 / elapsed,
            items_changed_per_s: window_signals.member("ItemsChanged") as f64 / elapsed,
            properties_changed_per_s: window_signals.member("PropertiesChanged") as f64 / elapsed,
            timing,
        };
        println!("\nwindow {}/{}:", round + 1, args.repeat);
        row.print();
        rows.push(row);
        if let Ok(Some(status)) = daemon.try_wait() {
            return Err(format!("the daemon exited ({status}); see {}/daemon.log", dir.display()));
        }
    }

    println!("\n| daemon | packs | layout | poll ms | window s | CPU-s/min | % of a core | RSS MB | peak RSS MB | signals/s | per battery | ItemsChanged/s | poll period s (mean / max) | poll ÷ wire (daemon only) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        row.markdown();
    }
    drop(guard);
    drop(sims);
    drop(bus);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn config_text(args: &Args, dir: &Path, bus: &str, sims: &[Simulated], bus_layout: bool) -> String {
    let mut text = format!(
        "[daemon]\npoll_interval_ms = {}\nstale_after_s = 10.0\nstate_dir = \"{}\"\n\n[dbus]\nbus = \"{bus}\"\n",
        args.poll_ms,
        dir.join("state").display()
    );
    for s in sims {
        let protocol = if bus_layout { "jbd_up16s" } else { "jbd" };
        text.push_str(&format!("\n[[port]]\ndevice = \"{}\"\nprotocol = \"{protocol}\"\n", s.link.display()));
        if bus_layout {
            let addresses: Vec<usize> = (1..=args.packs).collect();
            text.push_str(&format!("addresses = {addresses:?}\n"));
        }
    }
    text
}

fn spawn_daemon(
    args: &Args,
    dir: &Path,
    bus: &str,
    sims: &[Simulated],
    config: &Path,
) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let ports: Vec<String> = sims.iter().map(|s| s.link.display().to_string()).collect();
    let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = match &args.command {
        Some(template) => {
            let mut text = template
                .replace("{bus}", bus)
                .replace("{ports}", &ports.join(" "))
                .replace("{config}", &config.display().to_string())
                .replace("{dir}", &dir.display().to_string());
            for (i, port) in ports.iter().enumerate() {
                text = text.replace(&format!("{{port{i}}}"), port);
            }
            let mut c = Command::new("sh");
            c.arg("-c").arg(text);
            c
        }
        None => {
            let daemon = match &args.daemon {
                Some(path) => path.clone(),
                None => {
                    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                    exe.parent().and_then(Path::parent).map(|d| d.join("bms-bridge")).ok_or("no exe dir")?
                }
            };
            if !daemon.exists() {
                return Err(format!(
                    "{} not found: build it first (`cargo build --release`) or pass --daemon",
                    daemon.display()
                ));
            }
            let mut c = Command::new(daemon);
            c.arg("run").arg("--config").arg(config);
            c
        }
    };
    command
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("BMS_BUS", bus)
        .env("BMS_PORTS", ports.join(" "))
        .env("BMS_CONFIG", config)
        .env("BMS_DIR", dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))
}

/// Stops the daemon when dropped, however the measurement ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// SIGTERM to the daemon's process group, then SIGKILL after 3 s.
fn stop(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-s", "TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// The request that starts one pack's poll, and which pack it is for.
fn poll_key(e: &Exchange, bus_layout: bool) -> Option<u8> {
    if bus_layout {
        let is_status =
            e.request.get(1) == Some(&jbd_up16s::FUNC_READ) && e.request.get(2..4) == Some(&[0x10, 0x00]);
        is_status.then(|| e.request[0])
    } else {
        (e.request.get(2) == Some(&jbd::REG_BASIC_INFO)).then_some(0)
    }
}

#[derive(Debug, Default)]
struct Timing {
    /// Per pack: mean and max time between the starts of two polls (s).
    period_mean_s: Vec<f64>,
    period_max_s: Vec<f64>,
    /// Full poll of one pack (first request in -> last reply out, or start to start on a shared
    /// bus) divided by wire time + reply delays.
    ratio: Vec<f64>,
    /// The same without the reply delays: (poll - delays) / wire time.
    ratio_wire_only: Vec<f64>,
    /// Counting only the daemon's idle line: (wire + delays + idle line) / (wire + delays), i.e.
    /// without the simulator's own lateness (tokio's timer rounds its sleeps up to 1 ms ticks).
    ratio_daemon: Vec<f64>,
    /// Idle line between a reply and the next request within a cycle (s).
    gaps_s: Vec<f64>,
    /// Idle line between the last reply of a cycle and the first request of the next (s).
    cycle_gaps_s: Vec<f64>,
}

fn poll_timing(logs: &[Vec<Exchange>], bus_layout: bool, wire: Option<WireTiming>) -> Timing {
    let mut t = Timing::default();
    let mut starts: BTreeMap<(usize, u8), Vec<Instant>> = BTreeMap::new();
    for (i, log) in logs.iter().enumerate() {
        for e in log {
            if let Some(key) = poll_key(e, bus_layout) {
                starts.entry((i, key)).or_default().push(e.received);
            }
        }
        for pair in log.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let Some(replied) = a.replied else { continue };
            let gap = b.received.saturating_duration_since(replied).as_secs_f64();
            let (poll, expected, delays) = if bus_layout {
                let same_cycle = b.request.first() > a.request.first();
                if !same_cycle {
                    t.cycle_gaps_s.push(gap);
                    continue;
                }
                t.gaps_s.push(gap);
                let Some(w) = wire else { continue };
                (
                    b.received.duration_since(a.received),
                    w.exchange(a.request.len(), a.reply_len),
                    w.reply_delay,
                )
            } else {
                // JBD: basic info (0x03) then cells (0x04) make one poll.
                if poll_key(a, false).is_none() || b.request.get(2) != Some(&jbd::REG_CELLS) {
                    continue;
                }
                t.gaps_s.push(gap);
                let (Some(w), Some(b_replied)) = (wire, b.replied) else { continue };
                (
                    b_replied.duration_since(a.received),
                    w.exchange(a.request.len(), a.reply_len) + w.exchange(b.request.len(), b.reply_len),
                    w.reply_delay * 2,
                )
            };
            t.ratio.push(poll.as_secs_f64() / expected.as_secs_f64());
            t.ratio_daemon.push((expected.as_secs_f64() + gap) / expected.as_secs_f64());
            t.ratio_wire_only.push(
                poll.saturating_sub(delays).as_secs_f64() / expected.saturating_sub(delays).as_secs_f64(),
            );
        }
    }
    for times in starts.values() {
        let periods: Vec<f64> = times.windows(2).map(|w| w[1].duration_since(w[0]).as_secs_f64()).collect();
        if let Some(max) = periods.iter().copied().reduce(f64::max) {
            t.period_mean_s.push(periods.iter().sum::<f64>() / periods.len() as f64);
            t.period_max_s.push(max);
        }
    }
    t
}

struct Row {
    label: String,
    packs: usize,
    layout: String,
    poll_ms: u64,
    window_s: f64,
    cpu_s_per_min: f64,
    cpu_sched_s_per_min: f64,
    bus_cpu_s_per_min: Option<f64>,
    rss_mb: f64,
    rss_max_mb: f64,
    hwm_mb: f64,
    signals_per_s: f64,
    items_changed_per_s: f64,
    properties_changed_per_s: f64,
    timing: Timing,
}

impl Row {
    fn print(&self) {
        let t = &self.timing;
        println!(
            "  CPU: {:.3} CPU-s/min = {:.3} % of one core (stat ticks; schedstat: {:.4} CPU-s/min); dbus-daemon {} CPU-s/min",
            self.cpu_s_per_min,
            self.cpu_s_per_min / 60.0 * 100.0,
            self.cpu_sched_s_per_min,
            fmt_opt(self.bus_cpu_s_per_min, 3)
        );
        println!(
            "  memory: RSS {:.2} MB (mean; max {:.2} MB), peak RSS (VmHWM) {:.2} MB",
            self.rss_mb, self.rss_max_mb, self.hwm_mb
        );
        println!(
            "  D-Bus: {:.2} signals/s ({:.2} per battery): ItemsChanged {:.2}/s, PropertiesChanged {:.2}/s",
            self.signals_per_s,
            self.signals_per_s / self.packs as f64,
            self.items_changed_per_s,
            self.properties_changed_per_s
        );
        println!(
            "  poll period per pack: mean {} s (packs: {} .. {}), max {} s",
            fmt_opt(mean(&t.period_mean_s), 3),
            fmt_opt(t.period_mean_s.iter().copied().reduce(f64::min), 3),
            fmt_opt(t.period_mean_s.iter().copied().reduce(f64::max), 3),
            fmt_opt(t.period_max_s.iter().copied().reduce(f64::max), 3),
        );
        println!(
            "  full poll / (wire + reply delay): median {}, p95 {}, max {} ({} polls); without the delays: median {}, max {}",
            fmt_opt(median(&t.ratio), 3),
            fmt_opt(percentile(&t.ratio, 0.95), 3),
            fmt_opt(t.ratio.iter().copied().reduce(f64::max), 3),
            t.ratio.len(),
            fmt_opt(median(&t.ratio_wire_only), 3),
            fmt_opt(t.ratio_wire_only.iter().copied().reduce(f64::max), 3),
        );
        println!(
            "  counting only the daemon's idle line (not the simulator's timer lateness): median {}, p95 {}",
            fmt_opt(median(&t.ratio_daemon), 3),
            fmt_opt(percentile(&t.ratio_daemon, 0.95), 3),
        );
        println!(
            "  idle line reply -> next request: median {} ms, p95 {} ms, max {} ms; between cycles: median {} ms",
            fmt_opt(median(&t.gaps_s).map(|s| s * 1e3), 2),
            fmt_opt(percentile(&t.gaps_s, 0.95).map(|s| s * 1e3), 2),
            fmt_opt(t.gaps_s.iter().copied().reduce(f64::max).map(|s| s * 1e3), 2),
            fmt_opt(median(&t.cycle_gaps_s).map(|s| s * 1e3), 1),
        );
    }

    fn markdown(&self) {
        let t = &self.timing;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} / {} | {} ({}) |",
            self.label,
            self.packs,
            self.layout,
            self.poll_ms,
            self.window_s,
            self.cpu_s_per_min,
            self.cpu_s_per_min / 60.0 * 100.0,
            self.rss_mb,
            self.hwm_mb,
            self.signals_per_s,
            self.signals_per_s / self.packs as f64,
            self.items_changed_per_s,
            fmt_opt(mean(&t.period_mean_s), 3),
            fmt_opt(t.period_max_s.iter().copied().reduce(f64::max), 3),
            fmt_opt(median(&t.ratio), 3),
            fmt_opt(median(&t.ratio_daemon), 3),
        );
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

fn median(v: &[f64]) -> Option<f64> {
    percentile(v, 0.5)
}

/// `root` and every process below it.
fn tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(fields) = stat_fields(pid) {
                if let Some(ppid) = fields.get(1).and_then(|f| f.parse().ok()) {
                    parents.push((pid, ppid));
                }
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found
}

fn child_named(parent: u32, name: &str) -> Option<u32> {
    tree(parent)
        .into_iter()
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
}

/// Fields of `/proc/<pid>/stat` after the command name: [0] state, [1] ppid, [11] utime, [12] stime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime in clock ticks, and on-CPU nanoseconds from the threads' schedstat.
fn cpu(pids: &[u32]) -> (u64, u64) {
    let mut ticks = 0;
    let mut ns = 0;
    for pid in pids {
        if let Some(f) = stat_fields(*pid) {
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            ticks += field(11) + field(12);
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
                ns += stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    (ticks, ns)
}

/// VmRSS and VmHWM in kB, summed.
fn memory(pids: &[u32]) -> (u64, u64) {
    let mut rss = 0;
    let mut hwm = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for line in status.lines() {
            let kb = || line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            if line.starts_with("VmRSS:") {
                rss += kb();
            } else if line.starts_with("VmHWM:") {
                hwm += kb();
            }
        }
    }
    (rss, hwm)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
