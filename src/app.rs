//! Wiring: config -> one poll task per port -> one task per battery (monitor, charge control,
//! D-Bus service). Owns the shutdown signal. A failure in one battery never stops the others.

use crate::bank;
use crate::config::Config;
use crate::driver::{self, Subscriber};
use crate::task::bank::BankPack;
use crate::task::battery::battery_task;
use crate::task::BatterySlot;
use crate::victron::{BmsWrites, BusAddress};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

mod can;
mod mqtt;
pub use can::{settings as can_settings, MemoryCanBuses, VENUS_CHECK_EVERY};

/// The bus named by the config (`[dbus] bus`).
pub fn bus_address(config: &Config) -> BusAddress {
    match config.dbus.bus.as_str() {
        "system" => BusAddress::System,
        "session" => BusAddress::Session,
        other => BusAddress::Address(other.to_owned()),
    }
}

/// Queued writes per battery; a client writing faster than the BMS answers is refused.
const WRITE_QUEUE: usize = 8;

/// Runs until `shutdown` turns true.
pub async fn run(config: Config, bus: BusAddress, shutdown: watch::Receiver<bool>) {
    run_with_can(config, bus, shutdown, can::MemoryCanBuses::new()).await;
}

/// [`run`], with CAN ports whose interface is in `can_buses` on those in-memory buses instead of
/// SocketCAN (demo, `replay`, tests).
pub async fn run_with_can(
    config: Config,
    bus: BusAddress,
    mut shutdown: watch::Receiver<bool>,
    can_buses: can::MemoryCanBuses,
) {
    let interval = Duration::from_millis(config.daemon.poll_interval_ms);
    let mut tasks = JoinSet::new();
    // Batteries that report the same serial are kept apart (bank/identity.rs).
    let identities = std::sync::Arc::new(bank::identity::Registry::default());
    // One connection per MQTT broker and credentials, shared by its batteries.
    let hub = crate::transport::mqtt::Hub::new(shutdown.clone());
    // `[mqtt_publish]`: states to a broker; a battery task's offer never waits (mqtt_output.rs).
    use crate::mqtt_output as publish;
    let publisher = match config.mqtt_publish.as_ref().map(publish::PublishSettings::from_config) {
        None => publish::Publisher::disabled(),
        Some(Ok(settings)) => match publish::start(settings, shutdown.clone()) {
            Ok((publisher, task)) => {
                tasks.spawn(task);
                publisher
            }
            Err(why) => {
                tracing::error!(error = %why, "MQTT output cannot start; batteries are served without it");
                publish::Publisher::disabled()
            }
        },
        Some(Err(why)) => {
            tracing::error!(error = %why, "MQTT output cannot start; batteries are served without it");
            publish::Publisher::disabled()
        }
    };
    // `[web]`: the status page reads what the publisher is offered (web/mod.rs).
    let publisher = match config.web.address(crate::config::is_venus_os()) {
        None => publisher,
        Some(listen) => {
            let settings = crate::web::Settings {
                listen,
                poll_interval: interval,
                stale_after: crate::task::stale_after(&config),
            };
            let board = crate::web::Board::default();
            match crate::web::start(settings, board.clone(), shutdown.clone()).await {
                Ok((bound, task)) => {
                    tracing::info!(address = %bound, "status page on http://{bound}/ (read-only)");
                    tasks.spawn(task);
                    publisher.with_web(board)
                }
                Err(err) => {
                    tracing::error!(address = %listen, error = %err, "status page cannot listen; batteries are served without it ([web] listen)");
                    publisher
                }
            }
        }
    };
    // Packs of a [[bank]] go to their bank's task instead of a battery task of their own.
    let resolved = bank::config::resolve_all(&config);
    let mut bank_packs: Vec<Vec<Option<BankPack>>> =
        resolved.iter().map(|packs| packs.iter().map(|_| None).collect()).collect();
    for (port_index, port) in config.ports.iter().enumerate() {
        if port.protocol.listens_per_address() {
            // One listener for the bus, one battery (or bank pack) per address (JK CAN's DIP
            // switches).
            let memory = can_buses.get(&port.device).cloned();
            let several = port.poll_addresses().len() > 1;
            let mut subs = Vec::new();
            let mut in_bank = false;
            for address in port.poll_addresses() {
                let (tx, rx) = watch::channel(None);
                subs.push(Subscriber { address, tx });
                let slot = BatterySlot {
                    port: port.clone(),
                    address: if several || port.addresses.is_some() { address } else { None },
                    options: can::options_at(port, address),
                    writes: None,
                };
                if let Some((b, p)) = bank::config::bank_of(&resolved, port_index, address) {
                    if let Some(pack) = bank_packs.get_mut(b).and_then(|bank| bank.get_mut(p)) {
                        *pack = Some(BankPack::new(slot, rx));
                    }
                    in_bank = true;
                    continue;
                }
                tasks.spawn(battery_task(
                    slot,
                    config.clone(),
                    bus.clone(),
                    rx,
                    shutdown.clone(),
                    identities.clone(),
                    publisher.clone(),
                ));
            }
            tasks.spawn(can::per_address_listener(port, &config, memory, subs, in_bank, shutdown.clone()));
            continue;
        }
        if port.protocol.is_can() && !port.protocol.is_polled_can() {
            // CAN batteries broadcast: a listener instead of a poll loop (app/can.rs), feeding a
            // battery task of their own or their bank (docs/multi-battery.md).
            let memory = can_buses.get(&port.device).cloned();
            if let Some((b, p)) = bank::config::bank_of(&resolved, port_index, None) {
                let (slot, rx, listener) = can::bank_member(port, &config, memory, shutdown.clone());
                if let Some(pack) = bank_packs.get_mut(b).and_then(|bank| bank.get_mut(p)) {
                    *pack = Some(BankPack::new(slot, rx));
                }
                tasks.spawn(listener);
                continue;
            }
            let ids = identities.clone();
            tasks.spawn(can::run_port(
                port.clone(),
                config.clone(),
                bus.clone(),
                memory,
                shutdown.clone(),
                ids,
                publisher.clone(),
            ));
            continue;
        }
        if port.protocol.is_mqtt() {
            // MQTT batteries publish: a listener on the topic instead of a poll loop (app/mqtt.rs).
            let (slot, rx, listener) = mqtt::battery(port, &config, &hub, shutdown.clone());
            tasks.spawn(listener);
            if let Some((b, p)) = bank::config::bank_of(&resolved, port_index, None) {
                if let Some(pack) = bank_packs.get_mut(b).and_then(|bank| bank.get_mut(p)) {
                    *pack = Some(BankPack::new(slot, rx));
                }
                continue;
            }
            let ids = identities.clone();
            tasks.spawn(battery_task(
                slot,
                config.clone(),
                bus.clone(),
                rx,
                shutdown.clone(),
                ids,
                publisher.clone(),
            ));
            continue;
        }
        let several = port.poll_addresses().len() > 1 && !port.protocol.one_battery_per_port();
        let mut subscribers = Vec::new();
        let mut commands = Vec::new();
        // FoxESS: the packs in series are one battery, polled together.
        let batteries = if port.protocol.one_battery_per_port() { vec![None] } else { port.poll_addresses() };
        for address in batteries {
            let (tx, rx) = watch::channel(None);
            subscribers.push(Subscriber { address, tx });
            let options = port.battery(address);
            let support = port.protocol.writes();
            let writes = (options.allow_writes && support.any()).then(|| {
                let (command_tx, command_rx) = mpsc::channel(WRITE_QUEUE);
                commands.push((address, command_rx));
                tracing::info!(
                    port = %port.device,
                    address = %address.map_or("-".to_owned(), |a| a.to_string()),
                    writes = %support,
                    "BMS writes allowed"
                );
                BmsWrites { support, commands: command_tx }
            });
            let slot = BatterySlot {
                port: port.clone(),
                address: if several || (port.addresses.is_some() && address.is_some()) {
                    address
                } else {
                    None
                },
                options,
                writes,
            };
            if let Some((b, p)) = bank::config::bank_of(&resolved, port_index, address) {
                if let Some(pack) = bank_packs.get_mut(b).and_then(|bank| bank.get_mut(p)) {
                    *pack = Some(BankPack::new(slot, rx));
                }
                continue;
            }
            let ids = identities.clone();
            tasks.spawn(battery_task(
                slot,
                config.clone(),
                bus.clone(),
                rx,
                shutdown.clone(),
                ids,
                publisher.clone(),
            ));
        }
        // A polled CAN port (Daly CAN) is polled like a serial bus, over its interface.
        tasks.spawn(driver::run_port_on(
            port.clone(),
            interval,
            subscribers,
            commands,
            can_buses.get(&port.device).cloned(),
            shutdown.clone(),
        ));
    }
    for (bank, packs) in config.banks.iter().zip(bank_packs) {
        let packs = packs.into_iter().flatten().collect();
        let ids = identities.clone();
        tasks.spawn(crate::task::bank::run(
            bank.clone(),
            packs,
            config.clone(),
            bus.clone(),
            shutdown.clone(),
            ids,
            publisher.clone(),
        ));
    }
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                // Only a CAN port that leaves its battery to Venus ends on its own. Exiting would
                // make the service manager restart us into the same state every few seconds.
                None => {
                    tracing::warn!("no battery left to serve (see the warnings above); idle until stopped");
                    let _ = shutdown.wait_for(|stop| *stop).await;
                    return;
                }
                Some(Err(err)) => tracing::error!(error = %err, "a task ended unexpectedly"),
                Some(Ok(())) => {}
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    // Give tasks a moment to leave the bus cleanly, then stop the rest.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while tasks.join_next().await.is_some() {}
                    }).await;
                    tasks.abort_all();
                    return;
                }
            }
        }
    }
}
