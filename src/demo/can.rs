//! `bms-bridge demo --protocol victron_can` (`daly_can`, `jk_can`): the simulated BMS is on an
//! in-memory CAN bus (`simcan0`) that the daemon uses instead of SocketCAN; the rest is the real
//! path (the Victron and JK packs broadcast, the Daly pack answers the daemon's requests).

use super::{view, ScratchDir};
use crate::config::{Config, PortConfig, Protocol};
use crate::victron::private_bus::PrivateBus;
use crate::victron::BusAddress;

/// Runs the CAN demo for `seconds` (or until Ctrl-C).
pub async fn run(seconds: Option<u64>, cells: usize, protocol: Protocol) -> Result<(), String> {
    let scratch = ScratchDir(std::env::temp_dir().join(format!("bms-bridge-demo-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;
    let simulator = crate::bms::victron_can::sim::spawn(cells);
    simulator.packs.configure_all(super::demo_pack);
    // Daly and JK packs join the same in-memory bus; the Victron one stays silent then.
    let (_daly, _jk) = match protocol {
        Protocol::DalyCan => {
            simulator.control.set_silent(true);
            let daly = crate::bms::daly_can::sim::spawn(&simulator.bus, &[1], cells);
            daly.packs.configure_all(super::demo_pack);
            (Some(daly), None)
        }
        Protocol::JkCan => {
            simulator.control.set_silent(true);
            let jk = crate::bms::jk_can::sim::spawn(&simulator.bus, &[0], cells);
            jk.packs.configure_all(super::demo_pack);
            (None, Some(jk))
        }
        _ => (None, None),
    };
    let interface = "simcan0".to_owned();
    let mut config = Config::default();
    config.daemon.state_dir = scratch.0.join("state");
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig { protocol, ..PortConfig::can(&interface) });
    println!("private D-Bus: {}", bus.address());
    crate::demo::status_page(&mut config);
    let name = protocol.name();
    println!("simulated {cells}-cell {name} BMS on in-memory CAN bus {interface}   (Ctrl-C to stop)");
    println!("{}\n", super::time_lapse_note());
    let buses = crate::app::MemoryCanBuses::from([(interface, simulator.bus.clone())]);
    let address = BusAddress::Address(bus.address().to_owned());
    super::run_with_viewer(
        seconds,
        |stop| crate::app::run_with_can(config, address, stop, buses),
        view(bus.address().to_owned()),
    )
    .await?;
    if protocol == Protocol::VictronCan {
        println!("keep-alive frames the simulated BMS received: {}", simulator.control.requests());
    }
    drop(simulator);
    drop(bus);
    Ok(())
}
