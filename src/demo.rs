//! `bms-bridge demo`: a private D-Bus, a simulated JBD pack on a pty and the daemon, with a live
//! once-a-second view of what is published. Ctrl-C stops everything and removes what it made.

use crate::config::{Config, PortConfig, Protocol};
use crate::sim::jbd::JbdSimulator;
use crate::victron::private_bus::PrivateBus;
use crate::victron::BusAddress;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use zbus::zvariant::OwnedValue;

/// Waits for Ctrl-C or SIGTERM (how systemd and daemontools stop a service).
pub async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// A directory removed when dropped.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is harmless and there is no one left to tell.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo for `seconds` (or until Ctrl-C).
pub async fn run(seconds: Option<u64>, cells: usize) -> Result<(), String> {
    let scratch = ScratchDir(std::env::temp_dir().join(format!("bms-bridge-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;
    let simulator = JbdSimulator::spawn(cells).map_err(|e| format!("cannot start the simulator: {e}"))?;
    // A stable name for the pty, as /dev/serial/by-id gives for a real adapter.
    let link = scratch.0.join("ttyBMS0");
    std::os::unix::fs::symlink(simulator.path(), &link).map_err(|e| format!("cannot link the pty: {e}"))?;

    let mut config = Config::default();
    config.daemon.state_dir = scratch.0.join("state");
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig {
        device: link.display().to_string(),
        protocol: Protocol::Jbd,
        baud: None,
        addresses: None,
        timeout_ms: 500,
        batteries: Vec::new(),
    });
    println!("private D-Bus: {}", bus.address());
    println!("simulated {cells}-cell JBD pack on {} -> {}", link.display(), simulator.path().display());
    println!("service: com.victronenergy.battery.ttyBMS0   (Ctrl-C to stop)\n");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let daemon =
        tokio::spawn(crate::app::run(config, BusAddress::Address(bus.address().to_owned()), stop_rx));
    let viewer = view(bus.address().to_owned(), "com.victronenergy.battery.ttyBMS0".to_owned());
    let limit = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = wait_for_signal() => println!("\nstopping"),
        _ = limit => println!("\ndemo time over, stopping"),
        result = viewer => result?,
    }
    stop_tx.send_replace(true);
    // The daemon task only ends by the stop signal; a join error would mean it panicked.
    if let Err(err) = daemon.await {
        return Err(format!("daemon task failed: {err}"));
    }
    drop(simulator);
    drop(bus);
    Ok(())
}

type Items = HashMap<String, HashMap<String, OwnedValue>>;

async fn view(address: String, service: String) -> Result<(), String> {
    let conn = zbus::connection::Builder::address(address.as_str())
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| format!("viewer cannot connect: {e}"))?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let reply = conn
            .call_method(Some(service.as_str()), "/", Some("com.victronenergy.BusItem"), "GetItems", &())
            .await;
        let items: Items = match reply.and_then(|m| m.body().deserialize::<Items>().map_err(Into::into)) {
            Ok(items) => items,
            Err(_) => {
                println!("waiting for {service} ...");
                continue;
            }
        };
        println!("{}", format_line(&items));
    }
}

fn text(items: &Items, path: &str) -> String {
    items
        .get(path)
        .and_then(|item| item.get("Text"))
        .and_then(|v| String::try_from(v.clone()).ok())
        .unwrap_or_else(|| "?".to_owned())
}

fn format_line(items: &Items) -> String {
    let t = |p: &str| text(items, p);
    format!(
        "{} | {} | SoC {} | cells {}..{} | CVL {} CCL {} DCL {} | state {} | connected {}",
        t("/Dc/0/Voltage"),
        t("/Dc/0/Current"),
        t("/Soc"),
        t("/System/MinCellVoltage"),
        t("/System/MaxCellVoltage"),
        t("/Info/MaxChargeVoltage"),
        t("/Info/MaxChargeCurrent"),
        t("/Info/MaxDischargeCurrent"),
        t("/State"),
        t("/Connected"),
    )
}

/// `bms-bridge sim`: a simulated BMS on a pty behind a symlink, until Ctrl-C.
pub async fn run_simulator(
    protocol: String,
    link: PathBuf,
    cells: usize,
    addresses: Vec<u8>,
) -> Result<(), String> {
    let make_link = |target: &std::path::Path| {
        // A leftover link from an earlier run is replaced; anything else at that path is not.
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&link).map_err(|e| format!("cannot replace {}: {e}", link.display()))?;
        }
        std::os::unix::fs::symlink(target, &link)
            .map_err(|e| format!("cannot create {}: {e}", link.display()))
    };
    let _keep: Box<dyn std::any::Any> = match protocol.as_str() {
        "jbd" => {
            let sim = JbdSimulator::spawn(cells).map_err(|e| e.to_string())?;
            make_link(sim.path())?;
            Box::new(sim)
        }
        "jbd_up16s" => {
            let sim = crate::sim::jbd_up16s::Up16sBusSimulator::spawn(&addresses, cells)
                .map_err(|e| e.to_string())?;
            make_link(sim.path())?;
            Box::new(sim)
        }
        other => return Err(format!("no simulator for {other:?} (jbd, jbd_up16s)")),
    };
    println!("simulated {protocol} BMS at {} (Ctrl-C to stop)", link.display());
    wait_for_signal().await;
    // Best effort: the link is ours and dangling once we exit.
    let _ = std::fs::remove_file(&link);
    Ok(())
}
