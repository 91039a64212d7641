//! `bms-bridge demo --protocol victron_can`: the simulated BMS broadcasts on an in-memory CAN
//! bus (`simcan0`) that the daemon listens on instead of SocketCAN; the rest is the real path.

use super::{view, ScratchDir};
use crate::config::{Config, PortConfig};
use crate::victron::private_bus::PrivateBus;
use crate::victron::BusAddress;

/// Runs the CAN demo for `seconds` (or until Ctrl-C).
pub async fn run(seconds: Option<u64>, cells: usize) -> Result<(), String> {
    let scratch = ScratchDir(std::env::temp_dir().join(format!("bms-bridge-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;
    let simulator = crate::bms::victron_can::sim::spawn(cells);
    simulator.packs.configure_all(super::demo_pack);
    let interface = "simcan0".to_owned();
    let mut config = Config::default();
    config.daemon.state_dir = scratch.0.join("state");
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig::can(&interface));
    println!("private D-Bus: {}", bus.address());
    crate::demo::status_page(&mut config);
    println!("simulated {cells}-cell victron_can BMS on in-memory CAN bus {interface}   (Ctrl-C to stop)");
    println!("{}\n", super::time_lapse_note());
    let buses = crate::app::MemoryCanBuses::from([(interface, simulator.bus.clone())]);
    let address = BusAddress::Address(bus.address().to_owned());
    super::run_with_viewer(
        seconds,
        |stop| crate::app::run_with_can(config, address, stop, buses),
        view(bus.address().to_owned()),
    )
    .await?;
    println!("keep-alive frames the simulated BMS received: {}", simulator.control.requests());
    drop(simulator);
    drop(bus);
    Ok(())
}
