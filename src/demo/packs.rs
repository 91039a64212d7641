//! `bms-bridge demo --packs N`: N simulated packs in one parallel bank: two JBD UP16S packs share
//! one pty bus (addresses 1 and 2), the others are JBD packs on ports of their own. Capacities
//! and current swings differ, so the current splits unevenly. After 30 s the last pack falls
//! silent for 20 s: the bank carries on with a cable warning and smaller limits, then recovers.
//! Each printed block is one bank cycle: the bank and its packs as published together.

use super::{format_line, Items, ScratchDir};
use crate::bank::BankConfig;
use crate::config::{BatteryConfig, Config, PortConfig, Protocol};
use crate::sim::{self, PtySimulator};
use crate::victron::private_bus::PrivateBus;
use crate::victron::BusAddress;
use std::path::Path;
use std::time::Duration;

/// Capacity (Ah) and relative current swing of simulated pack `i`.
fn pack_shape(i: usize) -> (f64, f64) {
    const CAPACITIES: [f64; 4] = [100.0, 150.0, 200.0, 280.0];
    let capacity = CAPACITIES.get(i % CAPACITIES.len()).copied().unwrap_or(100.0);
    (capacity, 1.0 + 0.15 * (i % 3) as f64)
}

fn port(device: &Path, protocol: Protocol, addresses: Option<Vec<u8>>, name: String) -> PortConfig {
    PortConfig {
        device: device.display().to_string(),
        protocol,
        baud: None,
        addresses,
        timeout_ms: 500,
        batteries: vec![BatteryConfig { name: Some(name), ..BatteryConfig::default() }],
        can: Default::default(),
        mqtt: Default::default(),
        adapter: None,
    }
}

/// The simulators, the config and the pack service names for `count` packs.
fn build(
    scratch: &Path,
    count: usize,
    cells: usize,
) -> Result<(Vec<PtySimulator>, Config, Vec<String>), String> {
    let mut sims = Vec::new();
    let mut config = Config::default();
    let mut refs = Vec::new();
    let mut names = Vec::new();
    let spawn = |protocol, addresses: &[u8]| {
        sim::spawn(protocol, addresses, cells).map_err(|e| format!("cannot start a simulator: {e}"))
    };
    let link = |sim: &PtySimulator, name: &str| {
        let path = scratch.join(name);
        std::os::unix::fs::symlink(sim.path(), &path).map_err(|e| format!("cannot link the pty: {e}"))?;
        Ok::<_, String>(path)
    };
    let mut next = 0;
    if count >= 2 {
        let bus = spawn(Protocol::JbdUp16s, &[1, 2])?;
        let path = link(&bus, "ttyBUS0")?;
        let mut shared = port(&path, Protocol::JbdUp16s, Some(vec![1, 2]), String::new());
        shared.batteries.clear();
        for address in [1u8, 2] {
            let (capacity, swing) = pack_shape(next);
            bus.configure(Some(address), |p| {
                super::demo_pack(p);
                p.capacity_ah = capacity;
                p.swing_a = 0.2 * capacity * swing;
            });
            refs.push(format!("{}#{address}", path.display()));
            names.push(format!("ttyBUS0_{address}"));
            next += 1;
        }
        config.ports.push(shared);
        sims.push(bus);
    }
    while next < count {
        let single = spawn(Protocol::Jbd, &[])?;
        let name = format!("ttyJBD{next}");
        let path = link(&single, &name)?;
        let (capacity, swing) = pack_shape(next);
        single.configure(None, |p| {
            super::demo_pack(p);
            p.capacity_ah = capacity;
            p.swing_a = 0.2 * capacity * swing;
            p.cell_resistance_ohm *= swing;
        });
        let pack_name = format!("Pack {}", next + 1);
        config.ports.push(port(&path, Protocol::Jbd, None, pack_name.clone()));
        refs.push(pack_name);
        names.push(name);
        sims.push(single);
        next += 1;
    }
    config.banks.push(BankConfig {
        name: "Demo".to_owned(),
        topology: crate::bank::Topology::Parallel,
        publish: None,
        packs: refs,
        startup_wait_s: 10.0,
    });
    Ok((sims, config, names))
}

/// Runs the multi-pack demo for `seconds` (or until Ctrl-C).
pub async fn run(seconds: Option<u64>, cells: usize, count: usize) -> Result<(), String> {
    let count = count.clamp(1, 16);
    let scratch = ScratchDir(std::env::temp_dir().join(format!("bms-bridge-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;
    let (sims, mut config, names) = build(&scratch.0, count, cells)?;
    config.daemon.state_dir = scratch.0.join("state");
    config.dbus.bus = bus.address().to_owned();
    let problems = crate::config::validate(&config, "", "demo");
    if let Some(problem) = problems.first() {
        return Err(format!("demo config: {problem}"));
    }
    println!("private D-Bus: {}", bus.address());
    crate::demo::status_page(&mut config);
    println!("{count} simulated packs in bank \"Demo\": {}   (Ctrl-C to stop)", names.join(", "));
    println!("{}\n", super::time_lapse_note());

    let address = BusAddress::Address(bus.address().to_owned());
    let viewer = view(bus.address().to_owned(), names, &sims);
    super::run_with_viewer(seconds, |stop| crate::app::run(config, address, stop), viewer).await?;
    drop(sims);
    drop(bus);
    Ok(())
}

async fn items(conn: &zbus::Connection, name: &str) -> Option<Items> {
    let reply = conn.call_method(Some(name), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await;
    reply.and_then(|m| m.body().deserialize::<Items>()).ok()
}

async fn view(address: String, packs: Vec<String>, sims: &[PtySimulator]) -> Result<(), String> {
    let conn = zbus::connection::Builder::address(address.as_str())
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| format!("viewer cannot connect: {e}"))?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let last = sims.last();
    for second in 0u64.. {
        ticker.tick().await;
        match second {
            30 => {
                println!("(demo) the last pack falls silent for 20 s");
                last.inspect(|s| s.control().set_silent(true));
            }
            50 => {
                println!("(demo) the last pack answers again");
                last.inspect(|s| s.control().set_silent(false));
            }
            _ => {}
        }
        println!("{}", one_cycle(&conn, &packs).await.join("\n"));
    }
    Ok(())
}

/// Most reads of the bank and its packs before the view gives up waiting for a quiet moment.
const MAX_READS: usize = 10;

/// The bank and its packs as one bank cycle published them. The bank task publishes the bank and
/// then every pack after each pack reading, so reading them one after the other can straddle two
/// cycles (a bank current that is not the sum of the packs shown under it): the view reads until
/// two reads in a row agree.
async fn one_cycle(conn: &zbus::Connection, packs: &[String]) -> Vec<String> {
    let mut before = read_all(conn, packs).await;
    for _ in 1..MAX_READS {
        let now = read_all(conn, packs).await;
        if now == before {
            break;
        }
        before = now;
    }
    before
}

/// The lines of one read of the bank service and every pack service.
async fn read_all(conn: &zbus::Connection, packs: &[String]) -> Vec<String> {
    let bank = format!("{}bank_Demo", crate::victron::SERVICE_PREFIX);
    let mut lines = Vec::new();
    match items(conn, &bank).await {
        Some(i) => {
            let t = |p: &str| super::text(&i, p);
            lines.push(format!("bank  {}", format_line(&i)));
            lines.push(format!(
                "      online {} offline {} blocking {} | cells {}..{} | cable {}",
                t("/System/NrOfModulesOnline"),
                t("/System/NrOfModulesOffline"),
                t("/System/NrOfModulesBlockingCharge"),
                t("/System/MinVoltageCellId"),
                t("/System/MaxVoltageCellId"),
                t("/Alarms/BmsCable"),
            ));
            lines.push(format!(
                "      limits: CCL {} | DCL {}",
                t("/Info/ChargeLimitation"),
                t("/Info/DischargeLimitation")
            ));
        }
        None => lines.push("waiting for the bank service ...".to_owned()),
    }
    for (n, name) in packs.iter().enumerate() {
        let service = format!("{}{name}", crate::victron::SERVICE_PREFIX);
        if let Some(i) = items(conn, &service).await {
            let t = |p: &str| super::text(&i, p);
            lines.push(format!(
                "  P{} {name:<10} {} | {} | SoC {} | connected {}",
                n + 1,
                t("/Dc/0/Voltage"),
                t("/Dc/0/Current"),
                t("/Soc"),
                t("/Connected")
            ));
        }
    }
    lines
}
