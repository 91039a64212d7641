//! Port checks: the device exists, its stable /dev/serial/by-id name, who else holds it open, and
//! which BMS answers (read requests only, never while another process uses the port).

use super::{Options, Report, Status};
use crate::config::PortConfig;
use crate::driver::{open, poll_once};
use std::path::{Path, PathBuf};

pub(super) async fn check_port(report: &mut Report, index: usize, port: &PortConfig, options: &Options) {
    report.section(&format!("port[{}] {} ({})", index + 1, port.device, port.protocol.name()));
    if port.protocol.is_mqtt() {
        check_broker(report, port, options).await;
        return;
    }
    if port.protocol.is_can() {
        check_can(report, port, options).await;
        return;
    }
    let device = Path::new(&port.device);
    let Ok(real) = std::fs::canonicalize(device) else {
        report.add(
            Status::Fail,
            format!(
                "{} does not exist: adapter unplugged, or another name after a reboot? Serial devices now: {}",
                port.device,
                list_serial_devices()
            ),
        );
        return;
    };
    if real.as_path() == device {
        report.add(Status::Ok, format!("{} exists", port.device));
    } else {
        report.add(Status::Ok, format!("{} exists (-> {})", port.device, real.display()));
    }
    let by_id = by_id_names(&real);
    if port.device.starts_with("/dev/serial/by-id/") {
        report.add(Status::Ok, "named by /dev/serial/by-id: stable across reboots and re-plugging");
    } else if let Some(name) = by_id.first() {
        report.add(
            Status::Warn,
            format!(
                "{} can change between boots; use its stable name in the config:\n  device = \"{}\"",
                port.device,
                name.display()
            ),
        );
    } else {
        report.add(Status::Info, "no /dev/serial/by-id name for this device (built-in port or pty)");
    }

    let holders = holders(&real);
    if !holders.is_empty() {
        let list: Vec<String> = holders.iter().map(|(pid, name)| format!("{name} (pid {pid})")).collect();
        let ours = holders.iter().all(|(_, name)| name == "bms-bridge");
        // `bms-bridge sim` or `demo` hold a pty too; only `bms-bridge run` is the daemon.
        let daemon = ours && holders.iter().all(|(pid, _)| subcommand(*pid).as_deref() == Some("run"));
        let status = if ours { Status::Info } else { Status::Fail };
        let why = if daemon {
            "the running daemon uses it, so the probe is skipped (stop the daemon to probe: svc -d /service/bms-bridge or systemctl stop bms-bridge)"
        } else if ours {
            "another bms-bridge command (a simulator or the demo, not the daemon) uses it, so the probe is skipped"
        } else {
            "another program uses this port: two programs on one serial port garble each other's replies (on Venus OS: serial-starter services such as vedirect or gps; install.sh --boot releases the port)"
        };
        report.add(status, format!("held open by {}: {why}", list.join(", ")));
        if !options.probe_busy {
            return;
        }
    } else {
        report.add(Status::Ok, "not held by another process");
    }
    if options.no_probe {
        return;
    }
    probe(report, port, options).await;
}

/// An MQTT port: the URL, the password file, and whether the broker's TCP port answers. No
/// credential is shown (the URL cannot carry a password; the file's content is never printed).
async fn check_broker(report: &mut Report, port: &PortConfig, options: &Options) {
    let url = match crate::transport::mqtt::BrokerUrl::parse(&port.device) {
        Ok(url) => url,
        Err(why) => {
            report.add(Status::Fail, format!("not a broker URL: {why}"));
            return;
        }
    };
    if let Some(path) = &port.mqtt.password_file {
        match crate::transport::mqtt::read_password_file(path) {
            Ok(_) => report.add(Status::Ok, format!("password file {} readable", path.display())),
            Err(why) => report.add(Status::Fail, why),
        }
    }
    if options.no_probe {
        return;
    }
    let connect = tokio::net::TcpStream::connect((url.host.as_str(), url.port));
    match tokio::time::timeout(options.probe_timeout.max(std::time::Duration::from_secs(2)), connect).await {
        Ok(Ok(_)) => report
            .add(Status::Ok, format!("broker {} accepts connections (topic {})", url.broker(), url.topic)),
        Ok(Err(err)) => report.add(Status::Fail, format!("broker {} unreachable: {err}", url.broker())),
        Err(_) => report.add(Status::Fail, format!("broker {} does not answer", url.broker())),
    }
}

/// A CAN port: the interface exists and is up; a listened dialect is heard for 2 s (nothing is
/// sent), a polled one (Daly CAN) is asked like a serial BMS.
async fn check_can(report: &mut Report, port: &PortConfig, options: &Options) {
    let sys = Path::new("/sys/class/net").join(&port.device);
    if !sys.exists() {
        report.add(
            Status::Fail,
            format!(
                "no network interface {}: CAN adapter missing, or another name (ip -details link show)",
                port.device
            ),
        );
        return;
    }
    let state = std::fs::read_to_string(sys.join("operstate")).unwrap_or_default();
    let flags = std::fs::read_to_string(sys.join("flags")).unwrap_or_default();
    // IFF_UP is bit 0 of the flags; a vcan's operstate stays "unknown" while up.
    let up = state.trim() == "up"
        || u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).is_ok_and(|f| f & 1 != 0);
    if up {
        report.add(Status::Ok, format!("{} is up", port.device));
    } else {
        report.add(
            Status::Fail,
            format!(
                "{} is down: ip link set {} up type can bitrate 250000 (500000 for victron_can)",
                port.device, port.device
            ),
        );
        return;
    }
    if options.no_probe {
        return;
    }
    if port.protocol.is_polled_can() {
        probe(report, port, options).await;
        return;
    }
    let link = match crate::transport::can::SocketCanLink::open(&port.device) {
        Ok(link) => link,
        Err(err) => {
            report.add(Status::Fail, format!("cannot open {}: {err}", port.device));
            return;
        }
    };
    match crate::probe_can::probe(link, std::time::Duration::from_secs(2), false).await {
        Ok(heard) => {
            let ours = heard.batteries.keys().any(|(dialect, _)| *dialect == port.protocol.name());
            let status = if ours { Status::Ok } else { Status::Fail };
            for line in heard.lines() {
                report.add(status, line);
            }
        }
        Err(err) => report.add(Status::Fail, format!("{}: {err}", port.device)),
    }
}

async fn probe(report: &mut Report, port: &PortConfig, options: &Options) {
    let timeout = options.probe_timeout;
    let mut answered = 0;
    for address in port.poll_addresses() {
        let at = address.map_or(String::new(), |a| format!(" address {a}"));
        let result = match open(port.protocol, &port.device, port.baud()).await {
            Err(err) => Err(format!("cannot open: {err}")),
            Ok(mut link) => {
                poll_once(port.protocol, &mut link, address, true, timeout).await.map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(b) => {
                answered += 1;
                report.add(
                    Status::Ok,
                    format!(
                        "{} answers at {} baud{at}: {} cells, {} V, SoC {} %, model {}, serial {}",
                        port.protocol.name(),
                        port.baud(),
                        b.cells_in_series().map_or("?".into(), |n| n.to_string()),
                        b.voltage_v.map_or("?".into(), |v| format!("{v:.2}")),
                        b.soc_percent.map_or("?".into(), |v| format!("{v:.0}")),
                        b.model.as_deref().unwrap_or("?"),
                        b.serial.as_deref().unwrap_or("?"),
                    ),
                );
            }
            Err(why) => report.add(
                Status::Fail,
                format!("no {} answer at {} baud{at}: {why}", port.protocol.name(), port.baud()),
            ),
        }
    }
    if answered > 0 {
        return;
    }
    // The configured protocol is silent: which one (if any) answers?
    let results = crate::probe::probe(&port.device, timeout).await;
    let found: Vec<String> = results
        .iter()
        .filter_map(|r| {
            let at = r.address.map_or(String::new(), |a| format!(" address {a}"));
            r.outcome
                .as_ref()
                .ok()
                .map(|summary| format!("{} at {} baud{at}: {summary}", r.protocol.name(), r.baud))
        })
        .collect();
    if found.is_empty() {
        report.add(
            Status::Fail,
            "no known BMS answers on this port (tried every protocol, read requests only): check wiring (TX/RX, A/B), the adapter, and that the BMS is awake",
        );
    } else {
        report.add(
            Status::Fail,
            format!("but another protocol answers; set protocol accordingly:\n{}", found.join("\n")),
        );
    }
}

/// `/dev/serial/by-id/*` links that resolve to `real`.
fn by_id_names(real: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/dev/serial/by-id") else { return Vec::new() };
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::canonicalize(p).is_ok_and(|target| target == real))
        .collect();
    names.sort();
    names
}

/// Processes (other than this one) with `real` open: (pid, command name).
/// The bms-bridge subcommand process `pid` runs (`run`, `sim`, `demo` ...), from its command line.
fn subcommand(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|b| *b == 0).skip(1).map(String::from_utf8_lossy);
    while let Some(arg) = args.next() {
        if arg == "--log-level" {
            args.next(); // its value
        } else if !arg.starts_with('-') && !arg.is_empty() {
            return Some(arg.into_owned());
        }
    }
    None
}

fn holders(real: &Path) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        if fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == real)) {
            let name =
                std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_owned();
            found.push((pid, name));
        }
    }
    found.sort();
    found
}

/// The serial devices present now, for "does not exist" messages.
fn list_serial_devices() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/dev/serial/by-id")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    if let Ok(dev) = std::fs::read_dir("/dev") {
        names.extend(
            dev.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ttyUSB") || n.starts_with("ttyACM"))
                .map(|n| format!("/dev/{n}")),
        );
    }
    names.sort();
    if names.is_empty() {
        "none (no USB serial adapter found)".into()
    } else {
        names.join(", ")
    }
}
