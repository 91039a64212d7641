//! The `bms-bridge` command line: parses arguments, sets up logging, hands over to the library.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

use bms_bridge::config::{self, Config, PortConfig, Protocol};
use bms_bridge::{app, demo, protocol};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod tools;

#[derive(Debug, Parser)]
#[command(name = "bms-bridge", version, about = "Lithium BMS to Victron Venus OS D-Bus battery service")]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing filter); RUST_LOG also works.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (service mode).
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Quick start without a config file: a serial device; repeat for one battery per port.
        #[arg(long = "port")]
        ports: Vec<String>,
        /// Protocol for the --port devices.
        #[arg(long, default_value = "jbd", value_parser = protocol_names())]
        protocol: String,
        /// D-Bus to use: system, session, or an address (overrides the config).
        #[arg(long)]
        bus: Option<String>,
    },
    /// Find out which BMS answers on a serial port (read requests only).
    Probe {
        /// The serial device, or a CAN interface (`can0`: listened to, see --listen-ms).
        port: String,
        /// Reply timeout per request (ms).
        #[arg(long, default_value_t = 500)]
        timeout_ms: u64,
        /// CAN: how long to listen (ms).
        #[arg(long, default_value_t = 3000)]
        listen_ms: u64,
        /// CAN: also send one Daly request (0x90) to each address 1..=16 (Daly packs speak only
        /// when asked); without it nothing is sent.
        #[arg(long)]
        active: bool,
    },
    /// List nearby Bluetooth LE devices (name, address, RSSI, which BMS protocol they look like).
    ScanBle {
        /// The Bluetooth adapter.
        #[arg(long, default_value = "hci0")]
        adapter: String,
        /// How long to discover (s).
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    /// Validate a configuration file; prints every problem with file:line:column.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Decode one frame given as hex bytes and print it as JSON.
    Decode {
        /// Protocol of the frame (an unknown name is answered in JSON, as every outcome).
        #[arg(long, help = protocol_help("Protocol of the frame"))]
        protocol: String,
        /// CAN protocols (victron_can, daly_can, jk_can): the frame's CAN id, e.g. 0x351.
        #[arg(long, value_parser = parse_can_id)]
        can_id: Option<u32>,
        /// Modbus protocols (renogy): the first register the request read, e.g. 5122 (a Modbus
        /// reply does not say which register it answers; without it the size decides).
        #[arg(long)]
        register: Option<u16>,
        /// Bytes, e.g. `DD 03 00 1D ...` or `DD03001D...`; for mqtt a JSON file, or `-` for stdin.
        #[arg(required = true)]
        hex: Vec<String>,
    },
    /// Feed a `candump -L` log through decode and charge control; print JSON lines (or publish
    /// on D-Bus with --bus, in real time).
    Replay {
        /// The `candump -L` log.
        #[arg(long)]
        can: PathBuf,
        /// Configuration file (its first victron_can port gives the battery options).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Publish on this D-Bus (system, session, or an address) instead of printing.
        #[arg(long)]
        bus: Option<String>,
    },
    /// Run a charge-control scenario on a simulated pack (a named one, or
    /// KIND-<cells>s-<soc>[-poll<s>], KIND balanced, ahead or weak); write the time series as CSV.
    SimulateCharge {
        /// Scenario name (run without one to list them).
        #[arg(long)]
        scenario: Option<String>,
        /// CSV output file.
        #[arg(long, default_value = "run.csv")]
        out: PathBuf,
        /// Also render a PNG plot (cell voltages, CVL, CCL, current).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Run a simulated BMS on a pty, reachable through a symlink at --link (for trying the daemon).
    Sim {
        /// Protocol to simulate.
        #[arg(long, default_value = "jbd", value_parser = serial_protocol_names())]
        protocol: String,
        /// Where to create the symlink to the pty (the daemon's device path).
        #[arg(long)]
        link: PathBuf,
        /// Cells per pack.
        #[arg(long, default_value_t = 16)]
        cells: usize,
        /// Bus addresses (jbd_up16s only).
        #[arg(long, value_delimiter = ',')]
        addresses: Vec<u8>,
        /// Honour real serial timing: wait as long as request and reply take on the wire
        /// (bytes x 10 / baud) plus --reply-delay-ms before each reply.
        #[arg(long)]
        wire_timing: bool,
        /// Line speed for --wire-timing (default: the protocol's usual speed).
        #[arg(long)]
        baud: Option<u32>,
        /// The BMS's own delay before it starts replying, for --wire-timing (ms).
        #[arg(long, default_value_t = 10)]
        reply_delay_ms: u64,
    },
    /// Run a private D-Bus, a simulated 16-cell pack on a pty and the daemon; show live values.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Cells of the simulated pack.
        #[arg(long, default_value_t = 16)]
        cells: usize,
        /// Protocol of the simulated BMS.
        #[arg(long, default_value = "jbd", value_parser = protocol_names())]
        protocol: String,
        /// Simulate this many packs in one parallel bank instead (two UP16S on a shared bus,
        /// the others JBD on ports of their own).
        #[arg(long)]
        packs: Option<usize>,
    },
    /// Check config, ports, D-Bus and the published limits; explain what is wrong (for support).
    Doctor(tools::DoctorArgs),
    /// Convert a dbus-serialbattery config.ini into a bms-bridge.toml; lists what cannot be mapped.
    ImportSerialbattery(tools::ImportArgs),
}

/// Every protocol name, from the protocol list (so `--help` and errors can never miss one).
fn protocol_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Protocol::every().map(|p| p.name()))
}

/// `what`, then every protocol name, for an argument that checks the name itself.
fn protocol_help(what: &str) -> String {
    let names: Vec<&str> = Protocol::every().map(|p| p.name()).collect();
    format!("{what}: {}", names.join(", "))
}

/// The serial protocols (the `sim` command serves a pty).
fn serial_protocol_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Protocol::ALL.iter().map(|p| p.name()))
}

/// `scan-ble`: one line per device, BMS-looking ones marked with their protocol.
async fn scan_ble(adapter: String, seconds: u64) -> Result<(), String> {
    println!("discovering on {adapter} for {seconds} s ...");
    let seen = bms_bridge::transport::ble::scan(&adapter, std::time::Duration::from_secs(seconds))
        .await
        .map_err(|e| e.to_string())?;
    let mut bms = 0;
    for device in &seen {
        let protocol = bms_bridge::probe::ble_protocol_of(&device.name, &device.uuids);
        bms += usize::from(protocol.is_some());
        println!(
            "{}  {:>4} dBm  {:<20}  {}",
            device.address,
            device.rssi.map_or("?".into(), |r| r.to_string()),
            if device.name.is_empty() { "(no name)" } else { &device.name },
            protocol.map_or("-".to_owned(), |p| format!(
                "looks like {}: [[port]] protocol = \"{}\" device = \"ble:{}\"",
                p.name(),
                p.name(),
                device.address
            )),
        );
    }
    println!("{} devices, {bms} that look like a BMS (`bms-bridge probe ble:ADDR` reads one)", seen.len());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `Targets` ("info", "debug,bms_bridge::bank=trace"): RUST_LOG-style directives without
    // EnvFilter's regex engine (~0.3 MB of the GX binary; docs/performance.md).
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse().ok())
        .or_else(|| cli.log_level.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO));
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let format = tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr);
        tracing_subscriber::registry().with(format).with(filter).init();
    }

    match cli.command {
        Command::Run { config, ports, protocol, bus } => run(config, ports, &protocol, bus),
        Command::CheckConfig { file } => match config::load_for_this_host(&file) {
            Ok(cfg) => {
                let batteries: usize = cfg.ports.iter().map(|p| p.poll_addresses().len()).sum();
                println!("{}: OK ({} port(s), {batteries} battery(ies))", file.display(), cfg.ports.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for error in &errors {
                    eprintln!("{error}");
                }
                eprintln!("{} problem(s) found", errors.len());
                ExitCode::FAILURE
            }
        },
        Command::Decode { protocol: name, can_id, register, hex } => decode(&name, can_id, register, &hex),
        Command::ScanBle { adapter, seconds } => runtime_block_on(scan_ble(adapter, seconds)),
        Command::Replay { can, config, bus } => replay(&can, config.as_deref(), bus),
        Command::SimulateCharge { scenario, out, plot } => {
            simulate_charge(scenario.as_deref(), &out, plot.as_deref())
        }
        Command::Probe { port, listen_ms, active, .. } if bms_bridge::probe_can::is_can_interface(&port) => {
            runtime_block_on(async move {
                let link = bms_bridge::transport::can::SocketCanLink::open(&port).map_err(|err| {
                    format!("cannot open CAN interface {port}: {err} (is it up? ip link set {port} up type can bitrate 250000)")
                })?;
                let listen = std::time::Duration::from_millis(listen_ms);
                let heard = bms_bridge::probe_can::probe(link, listen, active)
                    .await
                    .map_err(|err| format!("CAN interface {port}: {err}"))?;
                for line in heard.lines() {
                    println!("{line}");
                }
                match heard.batteries.keys().next() {
                    Some((dialect, _)) => {
                        println!("config: [[port]] device = \"{port}\" protocol = \"{dialect}\"");
                        Ok(())
                    }
                    None if active => Err(format!("no known BMS dialect heard on {port}")),
                    None => Err(format!(
                        "no known BMS dialect heard on {port} (Daly packs answer only when asked: --active)"
                    )),
                }
            })
        }
        Command::Probe { port, timeout_ms, .. } => runtime_block_on(async move {
            let results = bms_bridge::probe::probe(&port, std::time::Duration::from_millis(timeout_ms)).await;
            let mut found = 0;
            // One line per distinct failure: a device that cannot be opened fails every attempt
            // the same way, and that is one fact, not eleven.
            let mut failures: Vec<(String, Vec<String>)> = Vec::new();
            for r in &results {
                let at = r.address.map_or(String::new(), |a| format!(" address {a}"));
                let tried = format!("{} at {} baud{at}", r.protocol.name(), r.baud);
                match &r.outcome {
                    Ok(summary) => {
                        found += 1;
                        println!("FOUND  {tried}: {summary}");
                    }
                    Err(why) => match failures.iter_mut().find(|(w, _)| w == why) {
                        Some((_, list)) => list.push(tried),
                        None => failures.push((why.clone(), vec![tried])),
                    },
                }
            }
            for (why, tried) in &failures {
                if tried.len() == results.len() {
                    println!("no     every protocol ({} attempts): {why}", tried.len());
                } else {
                    println!("no     {}: {why}", tried.join(", "));
                }
            }
            if found == 0 {
                let hint = if port.starts_with("ble:") {
                    "is the BMS in range (a few metres, no metal between), awake, and not connected to a \
                     phone app? `bms-bridge scan-ble` lists what is nearby"
                } else if failures.iter().any(|(why, _)| why.starts_with("cannot open")) {
                    "check the device path (ls /dev/serial/by-id) and that no other program holds it; \
                     `bms-bridge doctor` explains"
                } else {
                    "check the wiring (TX/RX, A/B, GND) and that the BMS is awake; `bms-bridge doctor` explains"
                };
                return Err(format!("no known BMS answered on {port}: {hint}"));
            }
            println!(
                "config: [[port]] device = \"{port}\" protocol = \"{}\"",
                results.iter().find(|r| r.outcome.is_ok()).map_or("?", |r| r.protocol.name())
            );
            Ok(())
        }),
        Command::Demo { seconds, cells, packs: Some(packs), .. } => {
            runtime_block_on(demo::packs::run(seconds, cells, packs))
        }
        Command::Demo { seconds, cells, protocol, packs: None } => match Protocol::from_name(&protocol) {
            Some(protocol) => runtime_block_on(demo::run(seconds, cells, protocol)),
            None => {
                eprintln!("unknown protocol {protocol:?} (known: {})", Protocol::names());
                ExitCode::FAILURE
            }
        },
        Command::Doctor(args) => tools::doctor(args),
        Command::ImportSerialbattery(args) => tools::import(args),
        Command::Sim { protocol, link, cells, addresses, wire_timing, baud, reply_delay_ms } => {
            match Protocol::from_name(&protocol) {
                Some(protocol) => {
                    let wire = wire_timing.then(|| bms_bridge::sim::WireTiming {
                        baud: baud.unwrap_or(protocol.default_baud()),
                        reply_delay: std::time::Duration::from_millis(reply_delay_ms),
                        byte_by_byte: false,
                    });
                    runtime_block_on(demo::run_simulator_timed(protocol, link, cells, addresses, wire))
                }
                None => {
                    eprintln!("unknown protocol {protocol:?} (known: {})", Protocol::names());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn runtime_block_on(fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    config_path: Option<PathBuf>,
    ports: Vec<String>,
    protocol_name: &str,
    bus: Option<String>,
) -> ExitCode {
    let mut cfg = match &config_path {
        Some(path) => match config::load(path) {
            Ok(cfg) => cfg,
            Err(errors) => {
                for error in &errors {
                    eprintln!("{error}");
                }
                eprintln!("{} problem(s) in the config; not starting", errors.len());
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    if !ports.is_empty() {
        let Some(protocol) = Protocol::from_name(protocol_name) else {
            eprintln!("unknown protocol {protocol_name:?} (known: {})", Protocol::names());
            return ExitCode::FAILURE;
        };
        for device in ports {
            cfg.ports.push(PortConfig {
                device,
                protocol,
                baud: None,
                addresses: None,
                timeout_ms: 500,
                batteries: Vec::new(),
                can: Default::default(),
                mqtt: Default::default(),
                adapter: None,
            });
        }
    }
    if let Some(bus) = bus {
        cfg.dbus.bus = bus;
    }
    let problems = config::validate(&cfg, "", config_path.as_ref().map_or("(command line)", |_| "(config)"));
    if !problems.is_empty() {
        for error in &problems {
            eprintln!("{error}");
        }
        return ExitCode::FAILURE;
    }
    if let Some(problem) = config::state_dir_problem(&cfg.daemon.state_dir) {
        // Not fatal: the battery is still protected, only its charge state is not kept.
        tracing::warn!("daemon.state_dir: {problem}; charge state will not survive a restart");
    }
    let bus = app::bus_address(&cfg);
    runtime_block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let daemon = tokio::spawn(app::run(cfg, bus, stop_rx));
        demo::wait_for_signal().await;
        tracing::info!("stopping");
        stop_tx.send_replace(true);
        daemon.await.map_err(|e| format!("daemon task failed: {e}"))
    })
}

fn parse_can_id(text: &str) -> Result<u32, String> {
    let digits = text.trim_start_matches("0x").trim_start_matches("0X");
    u32::from_str_radix(digits, 16).map_err(|_| format!("{text:?} is not a hex CAN id (0x351)"))
}

fn replay(log: &std::path::Path, config_path: Option<&std::path::Path>, bus: Option<String>) -> ExitCode {
    let cfg = match config_path.map(config::load) {
        Some(Ok(cfg)) => cfg,
        Some(Err(errors)) => {
            errors.iter().for_each(|e| eprintln!("{e}"));
            return ExitCode::FAILURE;
        }
        None => Config::default(),
    };
    let frames = match std::fs::read_to_string(log)
        .map_err(|e| e.to_string())
        .and_then(|t| bms_bridge::replay::parse_log(&t))
    {
        Ok(frames) => frames,
        Err(why) => {
            eprintln!("{}: {why}", log.display());
            return ExitCode::FAILURE;
        }
    };
    match bus {
        None => match bms_bridge::replay::to_stdout(&frames, &cfg, std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("cannot write: {err}");
                ExitCode::FAILURE
            }
        },
        Some(bus) => {
            let mut cfg = cfg;
            cfg.dbus.bus = bus;
            let address = app::bus_address(&cfg);
            runtime_block_on(bms_bridge::replay::to_dbus(frames, cfg, address))
        }
    }
}

fn decode(name: &str, can_id: Option<u32>, register: Option<u16>, hex: &[String]) -> ExitCode {
    // Every outcome is one JSON object on stdout, as `decode` promises.
    let bytes = if Protocol::from_name(name).is_some_and(Protocol::is_mqtt) {
        // MQTT messages are JSON documents: a file, or `-` for standard input.
        read_message(hex)
    } else {
        protocol::parse_hex(&hex.join(" "))
    };
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(message) => {
            println!("{}", serde_json::json!({ "error": message }));
            return ExitCode::FAILURE;
        }
    };
    let decoded = match (can_id, register) {
        (Some(id), _) => bms_bridge::bms::decode_can_named(name, id, &bytes),
        (None, Some(register)) => bms_bridge::bms::decode_register_named(name, register, &bytes),
        (None, None) => bms_bridge::bms::decode_named(name, &bytes),
    };
    match decoded {
        Ok(decoded) => {
            println!("{}", protocol::json::to_json(&decoded));
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{}", serde_json::json!({ "error": error.to_string() }));
            ExitCode::FAILURE
        }
    }
}

/// Renders the run as a PNG (a build without the `plots` feature, such as the GX release, says so).
#[cfg(feature = "plots")]
fn plot_png(rows: &[bms_bridge::sim::closed_loop::Row], path: &std::path::Path) -> Result<(), String> {
    bms_bridge::sim::plot::plot_png(rows, path).map_err(|err| err.to_string())
}

#[cfg(all(feature = "dev-tools", not(feature = "plots")))]
fn plot_png(_rows: &[bms_bridge::sim::closed_loop::Row], _path: &std::path::Path) -> Result<(), String> {
    Err("this build has no plotting (built without the `plots` feature; the CSV has every column)".into())
}

/// The JSON message `decode --protocol mqtt FILE|-` reads.
fn read_message(args: &[String]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    match args {
        [one] if one == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(bytes)
        }
        [path] => std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}")),
        _ => Err("mqtt: give one file with the JSON message, or - for standard input".to_owned()),
    }
}

#[cfg(not(feature = "dev-tools"))]
fn simulate_charge(_: Option<&str>, _: &std::path::Path, _: Option<&std::path::Path>) -> ExitCode {
    eprintln!(
        "simulate-charge is a developer tool this build leaves out (the GX release is built \
         without the `dev-tools` feature, for size); run it from a PC build: cargo run --release \
         -- simulate-charge"
    );
    ExitCode::FAILURE
}

#[cfg(feature = "dev-tools")]
fn simulate_charge(
    scenario: Option<&str>,
    out: &std::path::Path,
    plot: Option<&std::path::Path>,
) -> ExitCode {
    use bms_bridge::sim::closed_loop;
    let names = closed_loop::scenario_names().join(", ");
    let Some(name) = scenario else {
        println!("scenarios: {names}");
        return ExitCode::SUCCESS;
    };
    let rows = match closed_loop::run_scenario(name) {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("{err} (scenarios: {names})");
            return ExitCode::FAILURE;
        }
    };
    let written = std::fs::File::create(out)
        .map(std::io::BufWriter::new)
        .and_then(|file| closed_loop::write_csv(&rows, file));
    if let Err(err) = written {
        eprintln!("cannot write {}: {err}", out.display());
        return ExitCode::FAILURE;
    }
    println!("{}: {} rows written to {}", name, rows.len(), out.display());
    if let Some(path) = plot {
        if let Err(err) = plot_png(&rows, path) {
            eprintln!("cannot plot to {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("plot written to {}", path.display());
    }
    ExitCode::SUCCESS
}
