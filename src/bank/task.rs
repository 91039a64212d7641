//! The bank task: every pack's monitor (online/lost, its own limits), the bank's monitor on the
//! aggregated battery (charge control on the bank's cells, CCL/DCL capped by [`super::limits`]),
//! and their D-Bus services. One task per bank, woken by any pack's reading and by the poll
//! interval; a pack that falls silent costs nothing but its own freshness.

use super::aggregate::{aggregate, pack_capacity_ah, PackView, BANK_MODEL};
use super::config::{BankConfig, Topology};
use super::limits::{bank_limits, pack_targets, PackLimitInput};
use crate::app::{self, BatterySlot};
use crate::battery::AlarmLevel;
use crate::config::{BatteryConfig, Config};
use crate::control::{ChargeConfig, ChargeController, ChargeLimits};
use crate::driver::PollUpdate;
use crate::monitor::{Monitor, Output};
use crate::victron::{BatteryService, BusAddress, Identity, Snapshot};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// How often a service that could not start tries again.
const SERVICE_RETRY: Duration = Duration::from_secs(5);

/// One pack of the bank as the task gets it from `app::run`.
#[derive(Debug)]
pub struct BankPack {
    /// Port, address and options of the pack.
    pub(crate) slot: BatterySlot,
    /// The pack's poll results.
    pub updates: watch::Receiver<Option<PollUpdate>>,
}

impl BankPack {
    /// A pack at `address` of `port` (the address as `app::run` normalises it).
    pub(crate) fn new(slot: BatterySlot, updates: watch::Receiver<Option<PollUpdate>>) -> Self {
        Self { slot, updates }
    }
}

/// A D-Bus service that is started on first use and retried while it cannot start.
#[derive(Debug)]
struct ServiceSlot {
    label: String,
    service: Option<BatteryService>,
    next_attempt: tokio::time::Instant,
    failing: bool,
}

impl ServiceSlot {
    fn new(label: String) -> Self {
        Self { label, service: None, next_attempt: tokio::time::Instant::now(), failing: false }
    }

    async fn publish(&mut self, bus: &BusAddress, identity: impl FnOnce() -> Identity, snap: &Snapshot<'_>) {
        let label = &self.label;
        match self.service.as_mut() {
            Some(svc) => match svc.publish(snap).await {
                Ok(()) if self.failing => {
                    tracing::info!(battery = %label, "D-Bus publishing works again");
                    self.failing = false;
                }
                Ok(()) => {}
                Err(err) if !self.failing => {
                    tracing::warn!(battery = %label, error = %err, "D-Bus publish failed; retrying every cycle");
                    self.failing = true;
                }
                Err(_) => {}
            },
            None if tokio::time::Instant::now() >= self.next_attempt => {
                match BatteryService::start(bus, identity(), snap).await {
                    Ok(svc) => {
                        tracing::info!(battery = %label, service = svc.service_name(), instance = svc.device_instance(), "D-Bus service registered");
                        self.service = Some(svc);
                    }
                    Err(err) => {
                        tracing::warn!(battery = %label, error = %err, "cannot register the D-Bus service; retrying in 5 s");
                        self.next_attempt = tokio::time::Instant::now() + SERVICE_RETRY;
                    }
                }
            }
            None => {}
        }
    }
}

struct PackState {
    slot: BatterySlot,
    label: String,
    updates: watch::Receiver<Option<PollUpdate>>,
    monitor: Monitor,
    service: ServiceSlot,
    was_online: bool,
}

/// The bank's charge config: the `[charge]` maxima are per pack; parallel packs add up.
pub fn bank_charge_config(charge: &ChargeConfig, topology: Topology, packs: usize) -> ChargeConfig {
    let mut cfg = charge.clone();
    if topology == Topology::Parallel {
        let n = packs.max(1) as f64;
        cfg.max_charge_current *= n;
        cfg.max_discharge_current *= n;
        cfg.capacity_ah = cfg.capacity_ah.map(|c| c * n);
    }
    cfg
}

/// What a pack service shows: its measurements, cells and alarms, no `/Info/*` limits (so
/// systemcalc sees one BMS, the bank), and a lost pack as a warning (the bank carries on).
pub fn pack_output(out: &Output) -> Output {
    let mut shown = out.clone();
    shown.limits = ChargeLimits {
        charge_voltage_v: None,
        charge_current_a: None,
        discharge_current_a: None,
        low_voltage_v: None,
        ..out.limits.clone()
    };
    if shown.battery.alarms.bms_cable == Some(AlarmLevel::Alarm) {
        shown.battery.alarms.bms_cable = Some(AlarmLevel::Warning);
    }
    shown
}

/// Everything one cycle of the bank computes, from the packs' outputs at `now` (pure but for
/// the monitors it feeds).
pub fn bank_cycle(
    topology: Topology,
    charge: &ChargeConfig,
    bank: &mut Monitor,
    pack_outputs: &[Output],
    now: Instant,
) -> Output {
    let views: Vec<PackView<'_>> =
        pack_outputs.iter().map(|o| PackView { battery: &o.battery, online: o.connected }).collect();
    let mut battery = aggregate(topology, &views);
    let targets: Vec<_> =
        pack_outputs.iter().map(|o| pack_targets(charge, &o.battery, o.limits.soc_percent)).collect();
    let inputs: Vec<PackLimitInput> = pack_outputs
        .iter()
        .zip(&targets)
        .map(|(o, (charge_target, discharge_target))| PackLimitInput {
            online: o.connected,
            current_a: o.battery.current_a,
            capacity_ah: pack_capacity_ah(&o.battery),
            charge_limit_a: charge_target.0,
            discharge_limit_a: discharge_target.0,
            charge_blocked: o.battery.charge_fet == Some(false),
            discharge_blocked: o.battery.discharge_fet == Some(false),
        })
        .collect();
    let split = bank_limits(topology, &inputs);
    battery.charge_current_limit_a = Some(split.charge.amps);
    battery.discharge_current_limit_a = Some(split.discharge.amps);
    // The bank is fresh as long as its freshest pack: when the last pack is lost, so is the
    // bank, and the single-battery fail-safe (CCL 0, DCL per rule) takes over.
    match battery.read_at.filter(|_| pack_outputs.iter().any(|o| o.connected)) {
        Some(at) => {
            // A rejected aggregate counts as a failed reading inside the monitor.
            let _ = bank.handle_reading(at, battery);
        }
        None => {
            bank.handle_failure("no pack of the bank answers".to_owned());
        }
    }
    let mut out = bank.output(now);
    super::explain::name_the_packs(&mut out.limits, &split, &targets);
    let online = pack_outputs.iter().filter(|o| o.connected).count();
    out.battery.modules_online = u32::try_from(online).ok();
    out.battery.modules_offline = u32::try_from(pack_outputs.len() - online).ok();
    out
}

fn bank_identity(bank: &BankConfig, config: &Config) -> Identity {
    let unique_id = format!("bank_{}", crate::victron::safe_suffix(bank.name.trim(), None));
    let topology = match bank.topology {
        Topology::Parallel => "parallel",
        Topology::Series => "series",
    };
    Identity {
        service_suffix: bank.service_suffix(),
        unique_id: unique_id.clone(),
        product_name: format!("{BANK_MODEL} (bms-bridge)"),
        connection: format!("Bank of {} packs in {topology}", bank.packs.len()),
        custom_name: bank.name.trim().to_owned(),
        firmware_version: env!("CARGO_PKG_VERSION").to_owned(),
        hardware_version: String::new(),
        serial: unique_id,
        fallback_device_instance: config.dbus.device_instance,
        max_cells: 0,
    }
}

/// Runs one bank until `shutdown` turns true.
pub async fn run(
    bank: BankConfig,
    packs: Vec<BankPack>,
    config: Config,
    bus: BusAddress,
    mut shutdown: watch::Receiver<bool>,
) {
    let stale_after = crate::app::stale_after(&config);
    let interval = Duration::from_millis(config.daemon.poll_interval_ms);
    let start = Instant::now();
    let ready_at = start + Duration::try_from_secs_f64(bank.startup_wait_s).unwrap_or(Duration::ZERO);
    let label = format!("bank {}", bank.name.trim());
    let mut packs: Vec<PackState> = packs
        .into_iter()
        .map(|p| {
            let at = p.slot.address.map_or(String::new(), |a| format!("#{a}"));
            let label = format!("{} pack {}{at}", label, p.slot.port.device);
            let controller = ChargeController::new(config.charge.clone());
            PackState {
                monitor: Monitor::new(start, p.slot.options.clone(), stale_after, controller),
                service: ServiceSlot::new(label.clone()),
                slot: p.slot,
                label,
                updates: p.updates,
                was_online: false,
            }
        })
        .collect();
    let controller = ChargeController::new(bank_charge_config(&config.charge, bank.topology, packs.len()));
    let mut monitor = Monitor::new(start, BatteryConfig::default(), stale_after, controller);
    let identity = bank_identity(&bank, &config);
    let state_path = app::state_file(&config, &identity.unique_id);
    app::restore_state(&mut monitor, &state_path, &label);
    let mut service = ServiceSlot::new(label.clone());
    let mut last_limits = None;
    let mut announced = false;

    // Any pack's reading wakes the task at once (the watch receivers stay with the task).
    let wake = std::sync::Arc::new(Notify::new());
    let mut forwarders = JoinSet::new();
    for pack in &packs {
        let (mut rx, wake) = (pack.updates.clone(), wake.clone());
        forwarders.spawn(async move {
            while rx.changed().await.is_ok() {
                wake.notify_one();
            }
        });
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        for pack in &mut packs {
            if pack.updates.has_changed().unwrap_or(false) {
                pack.updates.borrow_and_update();
                app::take_update(&mut pack.monitor, &pack.updates, &pack.label);
            }
        }
        let now = Instant::now();
        let outputs: Vec<Output> = packs.iter_mut().map(|p| p.monitor.output(now)).collect();
        for (pack, out) in packs.iter_mut().zip(&outputs) {
            if pack.was_online && !out.connected {
                tracing::warn!(battery = %pack.label, "pack lost; the bank carries on without it");
            }
            pack.was_online = out.connected;
        }
        let all_seen = packs.iter().all(|p| p.monitor.latest().read_at.is_some());
        let ready = all_seen || now >= ready_at;
        if !ready {
            // Start-up: wait for every pack (bounded). Running the bank's control before would
            // start its limiter from a partial bank (or the lost state), held for a while.
            if wait(&wake, &mut ticker, &mut shutdown).await {
                return;
            }
            continue;
        }
        let out = bank_cycle(bank.topology, &config.charge, &mut monitor, &outputs, now);
        app::log_limit_change(&label, &mut last_limits, &out);
        if let Some(state) = monitor.take_state_to_save() {
            app::save_state(state_path.clone(), state, &label).await;
        }
        if !announced {
            announced = true;
            let present = packs.iter().filter(|p| p.monitor.latest().read_at.is_some()).count();
            tracing::info!(battery = %label, present, configured = packs.len(), "bank running");
        }
        if bank.publishes_aggregate() {
            service.publish(&bus, || identity.clone(), &app::snapshot(&out)).await;
        }
        if bank.publishes_packs() {
            for (pack, out) in packs.iter_mut().zip(&outputs) {
                let shown = pack_output(out);
                let ident = || app::identity(&pack.slot, &config, pack.monitor.latest());
                pack.service.publish(&bus, ident, &app::snapshot(&shown)).await;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = ticker.tick() => {}
            _ = shutdown.changed() => if *shutdown.borrow() {
                app::save_state(state_path.clone(), monitor.control_state(), &label).await;
                return;
            },
        }
    }
}

/// Waits for a reading or the next tick; true when shutting down.
async fn wait(
    wake: &Notify,
    ticker: &mut tokio::time::Interval,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = wake.notified() => false,
        _ = ticker.tick() => false,
        _ = shutdown.changed() => *shutdown.borrow(),
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
