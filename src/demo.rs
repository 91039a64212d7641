//! `bms-bridge demo`: a private D-Bus, a simulated JBD pack on a pty and the daemon, with a live
//! once-a-second view of what is published. Ctrl-C stops everything and removes what it made.

pub mod packs;

use crate::config::{Config, PortConfig, Protocol};
use crate::sim;
use crate::victron::private_bus::PrivateBus;
use crate::victron::BusAddress;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use zbus::zvariant::OwnedValue;

mod ble;
mod can;
mod mqtt;

/// Seconds of charge the demo's simulated packs move per real second: at ±20 A on 100 Ah the SoC
/// moves about 0.5 % a second, so it visibly follows the current (the current itself is real).
pub const TIME_LAPSE: f64 = 100.0;

/// The demo's packs: charge in time lapse, and the swing starting at its charging peak (a
/// quarter of its two-minute period), so the first lines already show SoC rising with the current.
pub fn demo_pack(pack: &mut sim::model::SimPack) {
    pack.time_lapse = TIME_LAPSE;
    pack.elapsed_s = 30.0;
}

/// The line that tells the viewer about the time lapse.
fn time_lapse_note() -> String {
    format!("SoC in time lapse: each second moves the charge of {TIME_LAPSE:.0} s at the current shown")
}

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

/// The demo's status page: `127.0.0.1:8088`, or a free port when that one is taken (another
/// demo, a daemon); set in `config` and printed, so the address shown is the one served.
pub(crate) fn status_page(config: &mut Config) {
    let preferred = std::net::SocketAddr::from(([127, 0, 0, 1], 8088));
    let address = std::net::TcpListener::bind(preferred)
        .or_else(|_| std::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))))
        .and_then(|l| l.local_addr());
    match address {
        Ok(address) => {
            config.web.listen = Some(address.to_string());
            println!("status page: http://{address}/");
        }
        Err(err) => println!("status page: off (no free local port: {err})"),
    }
}

/// Runs the demo for `seconds` (or until Ctrl-C).
pub async fn run(seconds: Option<u64>, cells: usize, protocol: Protocol) -> Result<(), String> {
    if protocol.is_can() {
        return can::run(seconds, cells, protocol).await;
    }
    if protocol.is_mqtt() {
        return mqtt::run(seconds, cells).await;
    }
    if protocol.ble().is_some() {
        return ble::run(seconds, cells, protocol).await;
    }
    let scratch = ScratchDir(std::env::temp_dir().join(format!("bms-bridge-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;
    let simulator =
        sim::spawn(protocol, &[], cells).map_err(|e| format!("cannot start the simulator: {e}"))?;
    simulator.configure_all(demo_pack);
    // A stable name for the pty, as /dev/serial/by-id gives for a real adapter.
    let link = scratch.0.join("ttyBMS0");
    std::os::unix::fs::symlink(simulator.path(), &link).map_err(|e| format!("cannot link the pty: {e}"))?;

    let mut config = Config::default();
    config.daemon.state_dir = scratch.0.join("state");
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig {
        device: link.display().to_string(),
        protocol,
        baud: None,
        addresses: None,
        timeout_ms: 500,
        batteries: Vec::new(),
        can: Default::default(),
        mqtt: Default::default(),
        adapter: None,
    });
    println!("private D-Bus: {}", bus.address());
    status_page(&mut config);
    println!(
        "simulated {cells}-cell {} pack on {} -> {}   (Ctrl-C to stop)",
        protocol.name(),
        link.display(),
        simulator.path().display()
    );
    println!("{}\n", time_lapse_note());

    let address = BusAddress::Address(bus.address().to_owned());
    run_with_viewer(seconds, |stop| crate::app::run(config, address, stop), view(bus.address().to_owned()))
        .await?;
    drop(simulator);
    drop(bus);
    Ok(())
}

/// Runs the daemon (started by `daemon` with its stop signal) beside a live `viewer` until Ctrl-C
/// or SIGTERM, `seconds` passing, or the viewer failing; then stops the daemon and waits for it.
pub(crate) async fn run_with_viewer<D>(
    seconds: Option<u64>,
    daemon: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> D,
    viewer: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String>
where
    D: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let daemon = tokio::spawn(daemon(stop_rx));
    let limit = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = wait_for_signal() => { println!("\nstopping"); Ok(()) }
        _ = limit => { println!("\ndemo time over, stopping"); Ok(()) }
        result = viewer => result,
    };
    stop_tx.send_replace(true);
    // The daemon task only ends by the stop signal; a join error would mean it panicked.
    daemon.await.map_err(|err| format!("daemon task failed: {err}"))?;
    outcome
}

type Items = HashMap<String, HashMap<String, OwnedValue>>;

/// The first battery service on the bus, if any.
async fn find_battery(conn: &zbus::Connection) -> Option<String> {
    crate::victron::bus_names(conn).await?.into_iter().find(|n| n.starts_with(crate::victron::SERVICE_PREFIX))
}

async fn view(address: String) -> Result<(), String> {
    let conn = zbus::connection::Builder::address(address.as_str())
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| format!("viewer cannot connect: {e}"))?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut service: Option<String> = None;
    loop {
        ticker.tick().await;
        if service.is_none() {
            service = find_battery(&conn).await;
            match &service {
                Some(name) => println!("service: {name}"),
                None => {
                    println!("waiting for the battery service ...");
                    continue;
                }
            }
        }
        let Some(name) = service.as_deref() else { continue };
        let reply =
            conn.call_method(Some(name), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await;
        match reply.and_then(|m| m.body().deserialize::<Items>()) {
            Ok(items) => println!("{}", format_line(&items)),
            Err(err) => println!("{name}: {err}"),
        }
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
    let state = match t("/State").as_str() {
        "0" => "init",
        "9" => "running",
        "10" => "LOST",
        "14" => "standby",
        _ => "?",
    };
    format!(
        "{} | {} | SoC {} | cells {}..{} | CVL {} CCL {} DCL {} | {} | {} | connected {}",
        t("/Dc/0/Voltage"),
        t("/Dc/0/Current"),
        t("/Soc"),
        t("/System/MinCellVoltage"),
        t("/System/MaxCellVoltage"),
        t("/Info/MaxChargeVoltage"),
        t("/Info/MaxChargeCurrent"),
        t("/Info/MaxDischargeCurrent"),
        t("/Info/ChargeMode"),
        state,
        t("/Connected"),
    )
}

/// `bms-bridge sim`: a simulated BMS on a pty behind a symlink, until Ctrl-C.
pub async fn run_simulator(
    protocol: Protocol,
    link: PathBuf,
    cells: usize,
    addresses: Vec<u8>,
) -> Result<(), String> {
    run_simulator_timed(protocol, link, cells, addresses, None).await
}

/// [`run_simulator`] with optional real serial timing (`bms-bridge sim --wire-timing`).
pub async fn run_simulator_timed(
    protocol: Protocol,
    link: PathBuf,
    cells: usize,
    addresses: Vec<u8>,
    wire: Option<sim::WireTiming>,
) -> Result<(), String> {
    let simulator = sim::spawn(protocol, &addresses, cells).map_err(|e| e.to_string())?;
    simulator.control().set_wire_timing(wire);
    // A leftover link from an earlier run is replaced; anything else at that path is not.
    if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&link).map_err(|e| format!("cannot replace {}: {e}", link.display()))?;
    }
    std::os::unix::fs::symlink(simulator.path(), &link)
        .map_err(|e| format!("cannot create {}: {e}", link.display()))?;
    println!("simulated {} BMS at {} (Ctrl-C to stop)", protocol.name(), link.display());
    wait_for_signal().await;
    // Best effort: the link is ours and dangling once we exit.
    let _ = std::fs::remove_file(&link);
    drop(simulator);
    Ok(())
}
