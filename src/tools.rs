//! The `doctor` and `import-serialbattery` subcommands (argument handling only; the work is in
//! `bms_bridge::doctor` and `bms_bridge::import`).

use bms_bridge::{doctor, import};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Configuration file (default: /data/bms-bridge/bms-bridge.toml, else /etc/bms-bridge/bms-bridge.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// D-Bus to inspect: system, session, or an address (default: the config's).
    #[arg(long)]
    bus: Option<String>,
    /// Do not probe the serial ports.
    #[arg(long)]
    no_probe: bool,
    /// Probe a port even when another process holds it open (may disturb that process).
    #[arg(long)]
    probe_busy: bool,
    /// Reply timeout per probe request (ms).
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// dbus-serialbattery's config.ini.
    config_ini: PathBuf,
    /// Its config.default.ini (default: next to config.ini if there, else the built-in copy).
    #[arg(long)]
    defaults: Option<PathBuf>,
    /// Write the bms-bridge.toml here (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Serial device for the [[port]] (dbus-serialbattery took it from serial-starter).
    #[arg(long)]
    port: Option<String>,
    /// Protocol, when BMS_TYPE does not name one (jbd, daly, ...).
    #[arg(long)]
    protocol: Option<String>,
}

pub fn doctor(args: DoctorArgs) -> ExitCode {
    let options = doctor::Options {
        config: args.config,
        bus: args.bus,
        no_probe: args.no_probe,
        probe_busy: args.probe_busy,
        probe_timeout: Duration::from_millis(args.timeout_ms),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(doctor::run(&options));
    print!("{}", report.render());
    if report.count(doctor::Status::Fail) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn import(args: ImportArgs) -> ExitCode {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    let config = match read(&args.config_ini) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let defaults_path = args.defaults.clone().or_else(|| {
        let beside = args.config_ini.with_file_name("config.default.ini");
        beside.exists().then_some(beside)
    });
    let defaults =
        match defaults_path.as_ref().map(|p| read(p).map(|t| (t, p.display().to_string()))).transpose() {
            Ok(d) => d,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        };
    let options = import::Options { port: args.port, protocol: args.protocol };
    let name = args.config_ini.display().to_string();
    let outcome = match import::convert(
        (&config, &name),
        defaults.as_ref().map(|(t, n)| (t.as_str(), n.as_str())),
        &options,
    ) {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(errors) = bms_bridge::config::parse(&outcome.toml, "(imported)") {
        for e in errors {
            eprintln!("internal error, the imported config does not parse: {e}");
        }
        return ExitCode::FAILURE;
    }
    let source =
        defaults_path.map_or("built-in dbus-serialbattery defaults".to_owned(), |p| p.display().to_string());
    let mut report = format!("read {name} over {source}: {} key(s) mapped\n", outcome.mapped.len());
    for (from, to) in &outcome.mapped {
        report.push_str(&format!("  mapped   {from} -> {to}\n"));
    }
    for u in &outcome.unmapped {
        report.push_str(&format!("  NOT MAPPED {} = {} ({}): {}\n", u.key, u.value, u.place, u.reason));
    }
    if !outcome.unmapped_defaults.is_empty() {
        report.push_str(&format!(
            "  {} more key(s) at dbus-serialbattery's defaults have no equivalent (nothing to do): {}\n",
            outcome.unmapped_defaults.len(),
            outcome.unmapped_defaults.join(", ")
        ));
    }
    match &args.out {
        Some(path) => {
            if let Err(err) = std::fs::write(path, &outcome.toml) {
                eprintln!("{}: cannot write: {err}", path.display());
                return ExitCode::FAILURE;
            }
            print!("{report}");
            println!(
                "wrote {}; check the [[port]] device, then: bms-bridge check-config {}",
                path.display(),
                path.display()
            );
        }
        None => {
            print!("{}", outcome.toml);
            eprint!("{report}");
        }
    }
    ExitCode::SUCCESS
}
