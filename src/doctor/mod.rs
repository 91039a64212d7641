//! `bms-bridge doctor`: one command that checks the installation and explains what it finds, in
//! plain, colour-free lines meant to be pasted into a support request.
//!
//! Sections: the program, the config, each configured port (exists, /dev/serial/by-id name, held by
//! another process, which BMS answers with read requests only), D-Bus (reachable, localsettings,
//! battery services, device instances, CVL/CCL/DCL with the rule behind each), and on Venus OS the
//! installation (rc.local hook, service, serial-starter exclusion).

mod bus;
mod ports;

use crate::config::{self, Config};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How sure a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Checked and fine.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Broken: the battery will not work like this.
    Fail,
    /// Just information.
    Info,
}

impl Status {
    fn tag(self) -> &'static str {
        match self {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Info => "    ",
        }
    }
}

/// Everything doctor found, in order.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(Option<Status>, String)>,
}

impl Report {
    /// Starts a section.
    pub fn section(&mut self, title: &str) {
        self.lines.push((None, title.to_owned()));
    }

    /// Adds one finding.
    pub fn add(&mut self, status: Status, text: impl Into<String>) {
        self.lines.push((Some(status), text.into()));
    }

    /// Number of findings with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.lines.iter().filter(|(s, _)| *s == Some(status)).count()
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (status, text) in &self.lines {
            match status {
                None => {
                    let _ = writeln!(out, "\n== {text}");
                }
                Some(status) => {
                    let mut lines = text.lines();
                    let _ = writeln!(out, "{} {}", status.tag(), lines.next().unwrap_or(""));
                    for more in lines {
                        let _ = writeln!(out, "     {more}");
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "\nSummary: {} problem(s), {} warning(s).",
            self.count(Status::Fail),
            self.count(Status::Warn)
        );
        out
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Config file; `None`: the first of [`default_config_paths`] that exists.
    pub config: Option<PathBuf>,
    /// Bus to inspect instead of the config's.
    pub bus: Option<String>,
    /// Skip the serial probe.
    pub no_probe: bool,
    /// Probe even a port another process holds open.
    pub probe_busy: bool,
    /// Reply timeout of one probe request.
    pub probe_timeout: Duration,
}

/// Where doctor looks for a config when none is given: Venus OS, then a plain Linux host.
pub fn default_config_paths() -> [&'static Path; 2] {
    [Path::new("/data/bms-bridge/bms-bridge.toml"), Path::new("/etc/bms-bridge/bms-bridge.toml")]
}

/// Runs every check.
pub async fn run(options: &Options) -> Report {
    let mut report = Report::default();
    report.section("bms-bridge");
    report.add(
        Status::Info,
        format!(
            "version {} for {} ({}); pid {}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            std::env::consts::OS,
            std::process::id()
        ),
    );
    if let Ok(venus) = std::fs::read_to_string("/opt/victronenergy/version") {
        report.add(Status::Info, format!("Venus OS {}", venus.lines().nth(1).unwrap_or(venus.trim())));
    }

    let config = check_config(&mut report, options);
    let mut cfg = config.unwrap_or_default();
    if let Some(bus) = &options.bus {
        cfg.dbus.bus = bus.clone();
    }
    for (index, port) in cfg.ports.iter().enumerate() {
        ports::check_port(&mut report, index, port, options).await;
    }
    let address = crate::app::bus_address(&cfg);
    bus::check_bus(&mut report, &address, &cfg).await;
    if Path::new("/opt/victronenergy").is_dir() {
        check_venus_install(&mut report, &cfg);
    }
    report
}

fn check_config(report: &mut Report, options: &Options) -> Option<Config> {
    report.section("config");
    let path = match &options.config {
        Some(path) => path.clone(),
        None => match default_config_paths().into_iter().find(|p| p.exists()) {
            Some(path) => path.to_path_buf(),
            None => {
                report.add(
                    Status::Fail,
                    format!(
                        "no config file given and none at {}; pass --config FILE",
                        default_config_paths().map(|p| p.display().to_string()).join(" or ")
                    ),
                );
                return None;
            }
        },
    };
    match config::load(&path) {
        Ok(cfg) => {
            match config::state_dir_problem(&cfg.daemon.state_dir) {
                None => report.add(Status::Ok, format!("state_dir {} is writable", cfg.daemon.state_dir.display())),
                Some(problem) => report.add(
                    Status::Fail,
                    format!("state_dir: {problem} (charge phase, timers and counted SoC would be lost at every restart)"),
                ),
            }
            let batteries: usize = cfg.ports.iter().map(|p| p.poll_addresses().len()).sum();
            report.add(
                Status::Ok,
                format!("{} is valid: {} port(s), {batteries} battery(ies)", path.display(), cfg.ports.len()),
            );
            if cfg.ports.is_empty() {
                report.add(Status::Warn, "no [[port]] configured: the daemon has nothing to poll");
            }
            report.add(
                Status::Info,
                format!(
                    "poll every {} ms, BMS lost after {} s, state in {}, bus {}",
                    cfg.daemon.poll_interval_ms,
                    cfg.daemon.stale_after_s,
                    cfg.daemon.state_dir.display(),
                    cfg.dbus.bus
                ),
            );
            Some(cfg)
        }
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            report.add(
                Status::Fail,
                format!(
                    "{} has {} problem(s); the daemon will not start:\n{}",
                    path.display(),
                    errors.len(),
                    text.join("\n")
                ),
            );
            None
        }
    }
}

/// The Venus OS pieces install.sh sets up (only looked at on a GX device).
fn check_venus_install(report: &mut Report, cfg: &Config) {
    report.section("Venus OS installation");
    let rc = std::fs::read_to_string("/data/rc.local").unwrap_or_default();
    if rc.contains("/data/bms-bridge/app/install.sh --boot") {
        report.add(Status::Ok, "/data/rc.local re-enables bms-bridge after a firmware update");
    } else {
        report.add(Status::Warn, "/data/rc.local has no bms-bridge line: after a firmware update it will not start (run /data/bms-bridge/app/install.sh again)");
    }
    if Path::new("/service/bms-bridge").exists() {
        report.add(Status::Ok, "service /service/bms-bridge present (svstat /service/bms-bridge; logs: /var/log/bms-bridge/current)");
    } else {
        report.add(Status::Warn, "no /service/bms-bridge: the daemon is not supervised (run /data/bms-bridge/app/install.sh --boot)");
    }
    let rules = std::fs::read_to_string("/run/udev/rules.d/zz-bms-bridge.rules").unwrap_or_default();
    for port in &cfg.ports {
        let name = port.device.trim_start_matches("/dev/");
        if rules.contains(&format!("\"{name}\"")) {
            report.add(Status::Ok, format!("serial-starter told to leave {} alone", port.device));
        } else {
            report.add(Status::Warn, format!("serial-starter may probe {} (its VE.Direct/GPS probes disturb the BMS): run /data/bms-bridge/app/install.sh --boot", port.device));
        }
    }
}
