//! Wiring: config -> one poll task per port -> one task per battery (monitor, charge control,
//! D-Bus service). Owns the shutdown signal. A failure in one battery never stops the others.

use crate::bank::{self, task::BankPack};
use crate::config::{BatteryConfig, Config, PortConfig};
use crate::control::ChargeController;
use crate::control::{persist, ChargeLimits, ControlState};
use crate::driver::{self, PollUpdate, Subscriber};
use crate::monitor::{Monitor, Output};
use crate::victron::{self, BatteryService, BmsWrites, BusAddress, Identity, Snapshot};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

mod can;
mod mqtt;
pub mod publish;
pub use can::{settings as can_settings, MemoryCanBuses, VENUS_CHECK_EVERY};

/// How often a battery whose D-Bus service could not start tries again.
const SERVICE_RETRY: Duration = Duration::from_secs(5);

/// `[daemon] stale_after_s` as a duration. Validation keeps it within 60 s (or three poll
/// intervals); a value that slipped past it (a config built in code) still never panics and
/// falls back to the default rather than to "never stale".
pub(crate) fn stale_after(config: &Config) -> Duration {
    Duration::try_from_secs_f64(config.daemon.stale_after_s)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
        .unwrap_or(Duration::from_secs(10))
}

/// The bus named by the config (`[dbus] bus`).
pub fn bus_address(config: &Config) -> BusAddress {
    match config.dbus.bus.as_str() {
        "system" => BusAddress::System,
        "session" => BusAddress::Session,
        other => BusAddress::Address(other.to_owned()),
    }
}

/// Everything one battery task needs to know about its battery.
#[derive(Debug, Clone)]
pub(crate) struct BatterySlot {
    pub(crate) port: PortConfig,
    pub(crate) address: Option<u8>,
    pub(crate) options: BatteryConfig,
    /// Writable `/Settings/*` paths and where their commands go (`allow_writes`).
    pub(crate) writes: Option<BmsWrites>,
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
    // `[mqtt_publish]`: states to a broker; a battery task's offer never waits (app/publish.rs).
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
    // Packs of a [[bank]] go to their bank's task instead of a battery task of their own.
    let resolved = bank::config::resolve_all(&config);
    let mut bank_packs: Vec<Vec<Option<BankPack>>> =
        resolved.iter().map(|packs| packs.iter().map(|_| None).collect()).collect();
    for (port_index, port) in config.ports.iter().enumerate() {
        if port.protocol.is_can() {
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
            tasks.spawn(battery_task(slot, config.clone(), bus.clone(), rx, shutdown.clone(), ids, publisher.clone()));
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
            tasks.spawn(battery_task(slot, config.clone(), bus.clone(), rx, shutdown.clone(), ids, publisher.clone()));
        }
        tasks.spawn(driver::run_port_with_commands(
            port.clone(),
            interval,
            subscribers,
            commands,
            shutdown.clone(),
        ));
    }
    for (bank, packs) in config.banks.iter().zip(bank_packs) {
        let packs = packs.into_iter().flatten().collect();
        let ids = identities.clone();
        tasks.spawn(bank::task::run(
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

pub(crate) fn identity(slot: &BatterySlot, config: &Config, battery: &crate::battery::Battery) -> Identity {
    let port_name = if slot.port.protocol.is_mqtt() {
        mqtt::port_name(&slot.port.device).unwrap_or_else(|| "mqtt".to_owned())
    } else {
        Path::new(&slot.port.device)
            .file_name()
            .map_or_else(|| slot.port.device.clone(), |n| n.to_string_lossy().into_owned())
    };
    let suffix = victron::safe_suffix(&port_name, slot.address);
    let protocol = slot.port.protocol.name();
    // The BMS serial survives a USB renumbering; the port name is the fallback. Packs on one
    // bus may share a serial (two UP16S in the capture both say JBD48100000), so the bus
    // address is part of the id.
    let unique_id = match battery.serial.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(serial) => match slot.address {
            Some(address) => format!("{serial}_a{address}"),
            None => serial.to_owned(),
        },
        None => format!("{protocol}_{suffix}"),
    };
    // `identity = "..."` in [[port.battery]]: the user's choice (packs with the same serial).
    let unique_id = slot.options.identity.clone().unwrap_or(unique_id);
    let model = battery.model.clone().unwrap_or_else(|| protocol.to_uppercase());
    let at = slot.address.map_or(String::new(), |a| format!(" address {a}"));
    let kind = if slot.port.protocol.is_can() {
        "CAN"
    } else if slot.port.protocol.is_mqtt() {
        "MQTT"
    } else {
        "Serial"
    };
    Identity {
        service_suffix: suffix,
        unique_id: unique_id.clone(),
        product_name: format!("{model} (bms-bridge)"),
        connection: match crate::transport::mqtt::BrokerUrl::parse(&slot.port.device) {
            // Only the parsed URL: never a password someone put in a malformed one.
            Ok(url) if slot.port.protocol.is_mqtt() => format!("{kind} {url}"),
            _ => format!("{kind} {}{at}", slot.port.device),
        },
        custom_name: slot.options.name.clone().unwrap_or_default(),
        firmware_version: battery.firmware_version.clone().unwrap_or_default(),
        hardware_version: battery
            .hardware_version
            .clone()
            .or_else(|| battery.model.clone())
            .unwrap_or_default(),
        // /Serial is a generic path every device has; a BMS without a serial gets its unique id.
        serial: battery.serial.clone().unwrap_or_else(|| unique_id.clone()),
        fallback_device_instance: config.dbus.device_instance,
        max_cells: usize::from(slot.options.cell_count.or(battery.cells_in_series()).unwrap_or(16)),
    }
}

/// Tells the battery task that its driver cannot run (the reason is its `/ErrorCode` text).
pub(crate) fn driver_failed(sub: &Subscriber, why: String) {
    sub.tx.send_replace(Some(PollUpdate { at: Instant::now(), result: Err(why), device_gone: true }));
}

pub(crate) fn snapshot(out: &Output) -> Snapshot<'_> {
    Snapshot {
        battery: &out.battery,
        limits: &out.limits,
        connected: out.connected,
        state: out.state,
        error_code: out.error_code,
        history: Some(&out.history),
    }
}

/// The charge-control state file of one battery: `<state_dir>/<unique id>.json`.
pub(crate) fn state_file(config: &Config, unique_id: &str) -> PathBuf {
    let safe: String = unique_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    config.daemon.state_dir.join(format!("{safe}.json"))
}

/// Loads a saved control state; a missing file is a fresh start, a bad one is logged and ignored
/// (the control then starts in bulk, which is safe: CVL is still capped per cell).
pub(crate) fn restore_state(monitor: &mut Monitor, path: &Path, label: &str) {
    match persist::load_state_file(path) {
        Ok(Some(state)) => {
            let offline = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            monitor.restore_control_state(&state, Instant::now(), offline);
            tracing::info!(battery = %label, file = %path.display(), offline_s = offline.as_secs(), "charge state restored");
        }
        Ok(None) => {
            tracing::info!(battery = %label, file = %path.display(), "no saved charge state; starting fresh")
        }
        Err(err) => {
            tracing::warn!(battery = %label, file = %path.display(), error = %err, "cannot read the saved charge state; starting fresh")
        }
    }
}

/// Writes the state off the async thread (fsync can take a while on flash).
pub(crate) async fn save_state(path: PathBuf, state: ControlState, label: &str) {
    let result = tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        persist::save_state_file(&path, &state)
    })
    .await;
    match result {
        Ok(Ok(())) => tracing::debug!(battery = %label, "charge state saved"),
        Ok(Err(err)) => tracing::warn!(battery = %label, error = %err, "cannot save the charge state"),
        Err(err) => tracing::warn!(battery = %label, error = %err, "charge state save task failed"),
    }
}

async fn battery_task(
    slot: BatterySlot,
    config: Config,
    bus: BusAddress,
    mut updates: watch::Receiver<Option<PollUpdate>>,
    mut shutdown: watch::Receiver<bool>,
    identities: std::sync::Arc<bank::identity::Registry>,
    publisher: publish::Publisher,
) {
    let stale_after = stale_after(&config);
    // The tick only watches for a silent BMS (and paces a lost one's updates): a quarter of the
    // grace period, at most a second, is fine grain, and a 100 ms poll interval would otherwise
    // wake each battery task ten times a second for nothing.
    let interval = Duration::from_millis(config.daemon.poll_interval_ms)
        .max(Duration::from_secs(1).min(stale_after / 4));
    let controller = ChargeController::new(slot.options.charge_config(&config.charge));
    let mut monitor = Monitor::new(Instant::now(), slot.options.clone(), stale_after, controller);
    let label = format!("{}{}", slot.port.device, slot.address.map_or(String::new(), |a| format!("#{a}")));

    // The service's unique id (and so its device instance) comes from the BMS serial where it
    // has one: wait up to the grace period for a first good reading before registering.
    let first_deadline = tokio::time::Instant::now() + stale_after;
    while monitor.latest().read_at.is_none() {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() { return; }
                take_update(&mut monitor, &updates, &label);
            }
            _ = tokio::time::sleep_until(first_deadline) => break,
            _ = shutdown.changed() => if *shutdown.borrow() { return; },
        }
    }

    let claimed = identities.claim(identity(&slot, &config, monitor.latest()), &label);
    let state_path = state_file(&config, &claimed.unique_id);
    restore_state(&mut monitor, &state_path, &label);

    let mut service: Option<BatteryService> = None;
    let mut next_attempt = tokio::time::Instant::now();
    let mut last_limits: Option<ChargeLimits> = None;
    let mut publish_failed = false;
    let mut was_connected = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        let out = monitor.output(now);
        publisher.offer(&claimed, &out);
        log_connection_change(&label, &mut was_connected, &out, stale_after);
        log_limit_change(&label, &mut last_limits, &out);
        if let Some(state) = monitor.take_state_to_save() {
            save_state(state_path.clone(), state, &label).await;
        }
        match service.as_mut() {
            Some(svc) => match svc.publish(&snapshot(&out)).await {
                Ok(()) => {
                    if publish_failed {
                        tracing::info!(battery = %label, "D-Bus publishing works again");
                    }
                    publish_failed = false;
                }
                Err(err) => {
                    if !publish_failed {
                        tracing::warn!(battery = %label, error = %err, "D-Bus publish failed; retrying every cycle");
                    }
                    publish_failed = true;
                }
            },
            None if tokio::time::Instant::now() >= next_attempt => {
                let ident = identities.claim(identity(&slot, &config, monitor.latest()), &label);
                match BatteryService::start_with_writes(&bus, ident, &snapshot(&out), slot.writes.clone())
                    .await
                {
                    Ok(mut svc) => {
                        svc.set_properties_changed(config.dbus.properties_changed);
                        tracing::info!(battery = %label, service = svc.service_name(), instance = svc.device_instance(), "D-Bus service registered");
                        service = Some(svc);
                    }
                    Err(err) => {
                        tracing::warn!(battery = %label, error = %err, "cannot register the D-Bus service; retrying in 5 s");
                        next_attempt = tokio::time::Instant::now() + SERVICE_RETRY;
                    }
                }
            }
            None => {}
        }
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() { return; }
                take_update(&mut monitor, &updates, &label);
                // A reading publishes now; the tick only has to notice a BMS that falls silent,
                // so it waits 1.5 intervals from here: the next reading (one interval, give or
                // take the poll's jitter) comes first, and a cycle gives one publish, one signal.
                ticker.reset_after(interval + interval / 2);
            }
            _ = due_tick(&mut ticker, &monitor, service.is_some()) => {}
            // Loss is a deadline at exactly last good reading + stale_after_s, whatever the poll
            // interval: armed only while online, so it fires once per silent stretch.
            () = stale_deadline(&monitor) => {}
            _ = shutdown.changed() => if *shutdown.borrow() {
                save_state(state_path.clone(), monitor.control_state(), &label).await;
                return;
            },
        }
    }
}

/// Returns when the latest good reading turns stale; never while the BMS is already lost.
async fn stale_deadline(monitor: &Monitor) {
    let now = Instant::now();
    match monitor.next_deadline().filter(|_| monitor.is_online(now)) {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

/// Waits for the next tick with something to do. Readings publish by themselves, so while the BMS
/// answers and the service is up a tick only watches for the BMS falling silent: publishing on
/// it too would send a second `ItemsChanged` per cycle (time-driven values move), and one every
/// poll interval on a shared bus whose cycle takes longer than the interval.
async fn due_tick(ticker: &mut tokio::time::Interval, monitor: &Monitor, registered: bool) {
    loop {
        ticker.tick().await;
        if !registered || !monitor.is_online(Instant::now()) {
            return;
        }
    }
}

pub(crate) fn take_update(monitor: &mut Monitor, updates: &watch::Receiver<Option<PollUpdate>>, label: &str) {
    let update = updates.borrow().clone();
    let Some(update) = update else { return };
    let was_online = monitor.is_online(update.at);
    match update.result {
        Ok(battery) => match monitor.handle_reading(update.at, battery) {
            None if !was_online => tracing::info!(battery = %label, "BMS answering"),
            None => {}
            Some(rejected) if rejected.log => tracing::warn!(
                battery = %label,
                reason = %rejected.reason,
                "BMS reading rejected: not used for the limits; charging stops if no good reading \
                 comes within the grace period (said at most once a minute)"
            ),
            Some(_) => {}
        },
        Err(error) => {
            if monitor.handle_failure(error.clone()) {
                tracing::warn!(battery = %label, %error, "poll failed");
            }
        }
    }
}

/// One line when a battery goes from connected to lost (the matching "BMS answering" line is
/// logged when a reading arrives); the fail-safe limits that follow get their own limits line.
fn log_connection_change(label: &str, was_connected: &mut bool, out: &Output, stale_after: Duration) {
    if *was_connected && !out.connected {
        let cvl = match out.limits.charge_voltage_v {
            Some(v) => format!("CVL {v:.2} V (float)"),
            None => "no CVL (the cell count is not known)".to_owned(),
        };
        tracing::warn!(
            battery = %label,
            "BMS lost: no good reading for {} s; measurements invalid, /Connected 0, fail-safe \
             limits: CCL 0 A, {cvl}",
            stale_after.as_secs_f64()
        );
    }
    *was_connected = out.connected;
}

/// `55.20 V`, `50.0 A`, or `none` for a limit that is not published.
fn shown(value: Option<f64>, unit: &str) -> String {
    match value {
        Some(v) if unit == "V" => format!("{v:.2} V"),
        Some(v) => format!("{v:.1} {unit}"),
        None => "none".to_owned(),
    }
}

/// One INFO line when the limits change in a way worth telling: plain `key=value` words, the
/// same texts as `/Info/ChargeMode`, `/Info/ChargeLimitation` and `/Info/DischargeLimitation`.
pub(crate) fn log_limit_change(label: &str, last: &mut Option<ChargeLimits>, out: &Output) {
    let l = &out.limits;
    // `notable` is control's verdict (control::LimitLog): reason flaps within the recovery hold
    // are not changes.
    if last.is_none() || l.notable {
        tracing::info!(
            battery = %label,
            cvl = %shown(l.charge_voltage_v, "V"),
            ccl = %shown(l.charge_current_a, "A"),
            dcl = %shown(l.discharge_current_a, "A"),
            mode = %l.charge_mode,
            charge_reason = %l.charge_limitation,
            discharge_reason = %l.discharge_limitation,
            "limits changed"
        );
        *last = Some(l.clone());
    }
}
