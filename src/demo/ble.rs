//! `bms-bridge demo --protocol jk_ble` (`jbd_ble`, `daly_ble`): a private D-Bus with the
//! simulated BlueZ on it (`sim::bluez`, the BMS simulator behind its GATT characteristics,
//! replies in 20-byte notifications), and the daemon reading the battery over it. Every 20 s the
//! simulated device drops its link, so the reconnect shows in the log.

use super::{demo_pack, run_with_viewer, view, ScratchDir};
use crate::config::{Config, PortConfig, Protocol};
use crate::sim::bluez::SimBluez;
use crate::victron::private_bus::PrivateBus;
use crate::victron::BusAddress;
use std::time::Duration;

/// The demo device's address.
const ADDRESS: &str = "C8:47:8C:12:34:56";

/// Runs the BLE demo for `seconds` (or until Ctrl-C).
pub async fn run(seconds: Option<u64>, cells: usize, protocol: Protocol) -> Result<(), String> {
    let scratch =
        ScratchDir(std::env::temp_dir().join(format!("bms-bridge-demo-ble-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
    let bus = PrivateBus::start().map_err(|e| e.to_string())?;
    let bluez = SimBluez::start(bus.address(), "hci0").await.map_err(|e| format!("simulated BlueZ: {e}"))?;
    let device = bluez
        .add_device(protocol, ADDRESS, cells, false)
        .await
        .map_err(|e| format!("cannot start the simulated BLE BMS: {e}"))?;
    device.simulator.configure_all(demo_pack);
    crate::transport::ble::use_bus(bus.address());

    let mut config = Config::default();
    config.daemon.state_dir = scratch.0.join("state");
    config.dbus.bus = bus.address().to_owned();
    config.ports.push(PortConfig {
        timeout_ms: 2000,
        ..PortConfig { device: device.device.clone(), protocol, ..PortConfig::can(&device.device) }
    });
    println!("private D-Bus with a simulated BlueZ: {}", bus.address());
    println!(
        "simulated {cells}-cell {} BMS at {} (hci0, 20-byte notifications; it drops the link every 20 s)   (Ctrl-C to stop)\n",
        protocol.name(),
        device.device
    );
    let address = BusAddress::Address(bus.address().to_owned());
    let dropper = async {
        loop {
            tokio::time::sleep(Duration::from_secs(20)).await;
            println!("-- the simulated device drops the link --");
            if let Err(err) = device.drop_connection().await {
                println!("cannot drop the link: {err}");
            }
        }
    };
    let viewer = async {
        tokio::select! {
            result = view(bus.address().to_owned()) => result,
            () = dropper => Ok(()),
        }
    };
    run_with_viewer(seconds, |stop| crate::app::run(config, address, stop), viewer).await?;
    drop(bluez);
    drop(bus);
    Ok(())
}
