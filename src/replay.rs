//! `bms-bridge replay --can FILE`: a `candump -L` log through the whole pipeline (decode ->
//! monitor/charge control -> stdout, or -> D-Bus with `--bus`), for support cases and tests.
//!
//! Stdout: one JSON line per poll interval of log time (fast, deterministic: log timestamps are
//! the clock). D-Bus: the frames are played in real time onto an in-memory CAN bus that the
//! daemon listens on, exactly as it would on `can0`.

use crate::app;
use crate::bms::victron_can::listen::Assembler;
use crate::config::{Config, PortConfig};
use crate::control::bms_limits::BmsLimits;
use crate::control::ChargeController;
use crate::driver::can::CanSettings;
use crate::monitor::Monitor;
use crate::protocol::json::{round, to_json};
use crate::protocol::Decoded;
use crate::transport::can::{CanFrame, CanLink, MemoryCanBus};
use crate::victron::BusAddress;
use serde_json::json;
use std::time::{Duration, Instant};

/// One logged frame: seconds (log clock), interface, frame.
pub type Logged = (f64, String, CanFrame);

/// Parses one `candump -L` line: `(1700000000.123456) can0 351#2E02040B040BB001`. Remote and
/// CAN FD frames, comments and blank lines give `None`.
pub fn parse_line(line: &str) -> Option<Result<Logged, String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (time, interface, frame) = (parts.next()?, parts.next()?, parts.next()?);
    let parsed = (|| {
        let t: f64 = time.trim_matches(|c| c == '(' || c == ')').parse().map_err(|_| "bad timestamp")?;
        let (id, data) = frame.split_once('#').ok_or("no '#' between id and data")?;
        if data.starts_with('#') || data.starts_with('R') {
            return Ok(None);
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| "bad CAN id")?;
        let data = crate::protocol::parse_hex(data)?;
        if data.len() > 8 {
            return Err("more than 8 data bytes".to_owned());
        }
        Ok(Some((t, interface.to_owned(), CanFrame { id, data })))
    })();
    match parsed {
        Ok(Some(logged)) => Some(Ok(logged)),
        Ok(None) => None,
        Err(why) => Some(Err(format!("{why}: {line:?}"))),
    }
}

/// Every frame of a log; a bad line is an error naming its line number.
pub fn parse_log(text: &str) -> Result<Vec<Logged>, String> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(l).map(|r| r.map_err(|e| format!("line {}: {e}", i + 1))))
        .collect()
}

/// The config a replay runs with: the given one, else defaults with one CAN port.
fn can_port(config: &Config) -> PortConfig {
    config.ports.iter().find(|p| p.protocol.is_can()).cloned().unwrap_or_else(|| PortConfig::can("replay0"))
}

/// Decode and control with the log's clock; one JSON line per poll interval to `out`.
pub fn to_stdout(frames: &[Logged], config: &Config, mut out: impl std::io::Write) -> std::io::Result<()> {
    let port = can_port(config);
    let mut settings: CanSettings = app::can_settings(&port, config);
    settings.keepalive = None;
    let mut options = port.battery(None);
    options.use_bms_limits.get_or_insert(BmsLimits::Cap);
    let start = Instant::now();
    let t0 = frames.first().map_or(0.0, |f| f.0);
    let at = |t: f64| start + Duration::from_secs_f64((t - t0).max(0.0));
    let stale = crate::task::stale_after(config);
    let mut monitor = Monitor::new(start, options, stale, ChargeController::new(config.charge.clone()));
    let mut assembler = Assembler::default();
    let listen = settings.listen(vec![(None, port.battery(None).cell_count)]);
    let decode = crate::bms::victron_can::codec::Options { voltage_scale_v: settings.voltage_scale_v };
    let step = settings.publish_every.as_secs_f64();
    let mut next = t0 + step;
    let last = frames.last().map_or(t0, |f| f.0);
    let mut frames = frames.iter().peekable();
    // Past the end of the log by the grace period, so the fail-safe shows.
    while next <= last + config.daemon.stale_after_s + step {
        while let Some((t, _, frame)) = frames.next_if(|f| f.0 <= next) {
            // Frames the dialect cannot decode are skipped, as the daemon does.
            let _ = assembler.feed(at(*t), frame.id, &frame.data, &decode);
        }
        let now = at(next);
        match assembler.reading(now, &listen) {
            Ok(battery) => {
                // A rejected reading shows as the InternalFailure alarm in the replay's output.
                let _ = monitor.handle_reading(now, battery);
            }
            Err(why) => {
                monitor.handle_failure(why.to_string());
            }
        }
        let o = monitor.output(now);
        let l = &o.limits;
        let battery = to_json(&Decoded { battery: o.battery.clone(), ..Decoded::default() });
        let line = json!({
            "t": round(next - t0, 3),
            "connected": o.connected,
            "battery": battery,
            "limits": {
                "cvl_v": l.charge_voltage_v.map(|v| round(v, 2)),
                "ccl_a": l.charge_current_a.map(|v| round(v, 1)),
                "dcl_a": l.discharge_current_a.map(|v| round(v, 1)),
                "charge_mode": l.charge_mode,
                "charge_limitation": l.charge_limitation,
            },
        });
        writeln!(out, "{line}")?;
        next += step;
    }
    Ok(())
}

/// Plays the log in real time onto an in-memory bus and runs the daemon on it, publishing on `bus`.
pub async fn to_dbus(frames: Vec<Logged>, mut config: Config, bus: BusAddress) -> Result<(), String> {
    let port = can_port(&config);
    config.ports = vec![port.clone()];
    let can = MemoryCanBus::new();
    let buses = app::MemoryCanBuses::from([(port.device.clone(), can.clone())]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(app::run_with_can(config, bus, stop_rx, buses));
    let mut player = can.connect();
    let t0 = frames.first().map_or(0.0, |f| f.0);
    let start = tokio::time::Instant::now();
    for (t, _, frame) in &frames {
        tokio::time::sleep_until(start + Duration::from_secs_f64((t - t0).max(0.0))).await;
        player.send(frame).await.map_err(|e| e.to_string())?;
    }
    // Long enough after the last frame for the fail-safe to show.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        _ = crate::demo::wait_for_signal() => {}
    }
    stop_tx.send_replace(true);
    daemon.await.map_err(|e| format!("daemon task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candump_lines() {
        let (t, i, f) = parse_line("(1700000000.250000) can0 351#2E02040B040BB001").unwrap().unwrap();
        assert_eq!((t, i.as_str(), f.id, f.data.len()), (1_700_000_000.25, "can0", 0x351, 8));
        assert!(parse_line("(1.0) can0 351#R").is_none());
        assert!(parse_line("").is_none());
        assert!(parse_line("(x) can0 351#00").unwrap().is_err());
    }
}
