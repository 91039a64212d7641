//! The bank task: every pack's monitor (online/lost, its own limits), the bank's monitor on the
//! aggregated battery (charge control on the bank's cells, CCL/DCL capped by [`crate::bank::limits`]),
//! and their D-Bus services. One task per bank, woken by any pack's reading and by the poll
//! interval; a pack that falls silent costs nothing but its own freshness.

use crate::bank::aggregate::{aggregate, PackView, BANK_MODEL};
use crate::bank::config::{BankConfig, Topology};
use crate::bank::health::{Change, PackHealth};
use crate::bank::limits::{bank_limits, pack_targets, Limit, PackLimitInput, PackTarget, SplitEstimator};
use crate::battery::{AlarmLevel, Battery};
use crate::config::{BatteryConfig, Config};
use crate::control::current::LimitReason;
use crate::control::{ChargeConfig, ChargeController, ChargeLimits};
use crate::driver::PollUpdate;
use crate::monitor::{Monitor, Output};
use crate::task::{self, BatterySlot, ServiceSlot};
use crate::victron::{BusAddress, Identity};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// One pack of the bank as the task gets it from `app::run`.
#[derive(Debug)]
pub struct BankPack {
    /// Port, address and options of the pack.
    pub(crate) slot: BatterySlot,
    /// The pack's poll results.
    pub updates: watch::Receiver<Option<PollUpdate>>,
}

impl BankPack {
    /// A pack at `address` of `port` (the address as `task::run` normalises it).
    pub(crate) fn new(slot: BatterySlot, updates: watch::Receiver<Option<PollUpdate>>) -> Self {
        Self { slot, updates }
    }
}

struct PackState {
    slot: BatterySlot,
    label: String,
    updates: watch::Receiver<Option<PollUpdate>>,
    monitor: Monitor,
    health: PackHealth,
    service: ServiceSlot,
    sign: task::ModelStep,
}

/// The bank's charge config: each pack's ratings (`max_charge_current` ... of its
/// `[[port.battery]]`, default `[charge]`) add up in parallel; in series the smallest counts.
/// This is the bank controller's ceiling only: the split limit ([`crate::bank::limits`]) is what keeps
/// each pack inside its rating.
pub fn bank_charge_config(
    charge: &ChargeConfig,
    topology: Topology,
    packs: &[BatteryConfig],
) -> ChargeConfig {
    let mut cfg = charge.clone();
    let each: Vec<ChargeConfig> = packs.iter().map(|p| p.charge_config(charge)).collect();
    let (charge_a, discharge_a) =
        (each.iter().map(|c| c.max_charge_current), each.iter().map(|c| c.max_discharge_current));
    match topology {
        Topology::Parallel => {
            cfg.max_charge_current = charge_a.sum();
            cfg.max_discharge_current = discharge_a.sum();
            cfg.capacity_ah = cfg.capacity_ah.map(|c| c * packs.len().max(1) as f64);
        }
        Topology::Series => {
            cfg.max_charge_current = charge_a.fold(cfg.max_charge_current, f64::min);
            cfg.max_discharge_current = discharge_a.fold(cfg.max_discharge_current, f64::min);
        }
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

/// A pack that left the bank (device gone, timeouts) while its own grace period still runs:
/// shown disconnected with every measurement unknown, as the bank counts it.
pub fn left_output(out: &Output) -> Output {
    let b = &out.battery;
    let alarms = crate::battery::Alarms { bms_cable: Some(AlarmLevel::Warning), ..Default::default() };
    let battery = Battery {
        cell_count: b.cells_in_series(),
        nominal_capacity_ah: b.nominal_capacity_ah,
        model: b.model.clone(),
        serial: b.serial.clone(),
        firmware_version: b.firmware_version.clone(),
        hardware_version: b.hardware_version.clone(),
        production_date: b.production_date.clone(),
        alarms,
        ..Battery::default()
    };
    Output {
        battery,
        connected: false,
        state: crate::monitor::state::ERROR,
        error_code: crate::monitor::ERROR_CODE_BMS_LOST,
        ..pack_output(out)
    }
}

/// The bank's control: its own monitor (charge control on the aggregated battery), each pack's
/// effective ratings and the measured split. [`BankControl::cycle`] is pure but for that state.
#[derive(Debug)]
pub struct BankControl {
    topology: Topology,
    pack_configs: Vec<ChargeConfig>,
    pack_names: Vec<String>,
    split: SplitEstimator,
    /// The bank's monitor (its charge-control state is saved and restored by the task).
    pub monitor: Monitor,
}

impl BankControl {
    /// A bank of packs with these options (in config order) and names (for the limitation text).
    pub fn new(
        topology: Topology,
        charge: &ChargeConfig,
        packs: &[BatteryConfig],
        pack_names: Vec<String>,
        monitor: impl FnOnce(ChargeController) -> Monitor,
    ) -> Self {
        let controller = ChargeController::new(bank_charge_config(charge, topology, packs));
        Self {
            topology,
            pack_configs: packs.iter().map(|p| p.charge_config(charge)).collect(),
            pack_names,
            split: SplitEstimator::new(packs.len()),
            monitor: monitor(controller),
        }
    }

    /// One cycle from the packs' outputs at `now`; `members[i]`: pack `i` counts in the bank
    /// now (`health.rs`). Packs that do not count are left out of every sum and limit.
    pub fn cycle(&mut self, pack_outputs: &[Output], members: &[bool], now: Instant) -> Output {
        let counted: Vec<bool> = pack_outputs
            .iter()
            .enumerate()
            .map(|(i, o)| o.connected && members.get(i).copied().unwrap_or(true))
            .collect();
        let views: Vec<PackView<'_>> = pack_outputs
            .iter()
            .zip(&counted)
            .map(|(o, c)| PackView { battery: &o.battery, online: *c })
            .collect();
        let mut battery = aggregate(self.topology, &views);
        let mut targets = Vec::with_capacity(pack_outputs.len());
        let inputs: Vec<PackLimitInput> = pack_outputs
            .iter()
            .zip(&counted)
            .zip(&self.pack_configs)
            .map(|((o, online), cfg)| {
                let (charge, discharge) = pack_targets(cfg, &o.battery, o.limits.soc_percent);
                let input = PackLimitInput {
                    online: *online,
                    current_a: o.battery.current_a,
                    read_at: o.battery.read_at,
                    charge_limit_a: charge.amps,
                    discharge_limit_a: discharge.amps,
                    charge_blocked: o.battery.charge_fet == Some(false),
                    discharge_blocked: o.battery.discharge_fet == Some(false),
                };
                targets.push((charge, discharge));
                input
            })
            .collect();
        let (charge_shares, discharge_shares) = self.split.update(now, &inputs);
        let trusted = self.split.trusted_up_to();
        let split = bank_limits(self.topology, &inputs, &charge_shares, &discharge_shares, trusted);
        // The split limit (held to what the measured split is trusted for) is the bank's "BMS
        // limit": the bank's rate limiter cuts to it at once and ramps up to it.
        battery.charge_current_limit_a = Some(split.charge.amps);
        battery.discharge_current_limit_a = Some(split.discharge.amps);
        let online = counted.iter().filter(|c| **c).count();
        let missing = counted.iter().position(|c| !c);
        match (self.topology, missing, battery.read_at.filter(|_| online > 0)) {
            // A series string with a pack missing has unknown cells: lost at once.
            (Topology::Series, Some(i), _) => {
                self.monitor.handle_lost(format!("pack {} of the series bank is missing", i + 1));
            }
            (_, _, Some(at)) => {
                // A rejected aggregate counts as a failed reading inside the monitor.
                let _ = self.monitor.handle_reading(at, battery);
            }
            // The bank is fresh as long as its freshest pack: when the last pack is lost, so is
            // the bank, and the single-battery fail-safe (CCL 0, DCL per rule) takes over.
            (_, _, None) => {
                self.monitor.handle_failure("no pack of the bank answers".to_owned());
            }
        }
        let mut out = self.monitor.output(now);
        out.battery.modules_online = u32::try_from(online).ok();
        out.battery.modules_offline = u32::try_from(pack_outputs.len() - online).ok();
        if out.connected {
            let names = &self.pack_names;
            let pick =
                |t: &(PackTarget, PackTarget), charge: bool| if charge { t.0.clone() } else { t.1.clone() };
            for (limit, charge) in [(split.charge, true), (split.discharge, false)] {
                let (reason, text) = if charge {
                    (&out.limits.charge_reason, &mut out.limits.charge_limitation)
                } else {
                    (&out.limits.discharge_reason, &mut out.limits.discharge_limitation)
                };
                if !reason.reasons.contains(&LimitReason::BmsLimit) {
                    continue;
                }
                let Some(i) = limit.by else { continue };
                let Some(target) = targets.get(i).map(|t| pick(t, charge)) else { continue };
                *text = limitation_text(
                    i,
                    names.get(i).map_or("", String::as_str),
                    &target,
                    limit,
                    reason.recovering,
                );
            }
        }
        out
    }
}

/// `/Info/ChargeLimitation` of a bank limited by one pack: which pack, its rule, its share.
fn limitation_text(index: usize, name: &str, target: &PackTarget, limit: Limit, recovering: bool) -> String {
    let rules = crate::control::current::Limitation { reasons: target.reasons.clone(), recovering: false };
    let share = limit.share * 100.0;
    // A pack named "Pack 2" is not "Pack 2 Pack 2".
    let number = format!("Pack {}", index + 1);
    let name = if name.is_empty() || name == number { String::new() } else { format!(" {name}") };
    let recovering = if recovering { " (recovering)" } else { "" };
    let trusted = if limit.amps < limit.untrusted_amps - 1e-6 {
        format!("; {:.1} A until the split is measured at a higher current", limit.amps)
    } else {
        String::new()
    };
    format!(
        "Pack {}{name}: {rules} {:.1} A at {share:.0} % of the bank current{trusted}{recovering}",
        index + 1,
        target.amps
    )
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
        manufacturer: "bms-bridge".into(),
        connection_information: format!("Bank {} of {} packs", bank.name.trim(), bank.packs.len()),
    }
}

/// Runs one bank until `shutdown` turns true.
pub async fn run(
    bank: BankConfig,
    packs: Vec<BankPack>,
    config: Config,
    bus: BusAddress,
    mut shutdown: watch::Receiver<bool>,
    identities: std::sync::Arc<crate::bank::identity::Registry>,
    publisher: crate::mqtt_output::Publisher,
) {
    let stale_after = task::stale_after(&config);
    let interval = Duration::from_millis(config.daemon.poll_interval_ms);
    let start = Instant::now();
    let ready_at = start + Duration::try_from_secs_f64(bank.startup_wait_s).unwrap_or(Duration::ZERO);
    let label = format!("bank {}", bank.name.trim());
    let mut packs: Vec<PackState> = packs
        .into_iter()
        .map(|p| {
            let at = p.slot.address.map_or(String::new(), |a| format!("#{a}"));
            let label = format!("{} pack {}{at}", label, p.slot.port.device);
            let controller = ChargeController::new(p.slot.options.charge_config(&config.charge));
            PackState {
                monitor: Monitor::new(start, p.slot.options.clone(), stale_after, controller),
                health: PackHealth::default(),
                service: ServiceSlot::new(label.clone(), None, config.dbus.properties_changed),
                sign: task::ModelStep::new(&p.slot, &bus, interval, &label, shutdown.clone()),
                slot: p.slot,
                label,
                updates: p.updates,
            }
        })
        .collect();
    let options: Vec<BatteryConfig> = packs.iter().map(|p| p.slot.options.clone()).collect();
    let names: Vec<String> = packs
        .iter()
        .map(|p| {
            let at = p.slot.address.map_or(String::new(), |a| format!("#{a}"));
            p.slot.options.name.clone().unwrap_or_else(|| format!("{}{at}", p.slot.port.device))
        })
        .collect();
    let mut control =
        BankControl::new(bank.topology, &config.charge, &options, names.clone(), |controller| {
            Monitor::new(start, BatteryConfig::default(), stale_after, controller)
        });
    let identity = bank_identity(&bank, &config);
    let state_path = task::state_file(&config, &identity.unique_id);
    task::restore_state(&mut control.monitor, &state_path, &label);
    let mut service = ServiceSlot::new(label.clone(), None, config.dbus.properties_changed);
    let mut last_limits = None;
    // The bank cycles on every pack's reading and on the tick; its services publish at most once
    // per poll interval, except at once when a limit falls, a pack joins or leaves, or the
    // bank's connection changes.
    let mut published: Option<Published> = None;
    let mut announced = false;
    let mut pack_identities: Option<Vec<Identity>> = None;

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
                let update = pack.updates.borrow_and_update().clone();
                task::take_update(&mut pack.monitor, &pack.updates, &pack.label, &mut pack.sign);
                if let Some(update) = update {
                    let change = match &update.result {
                        Ok(_) => pack.health.on_reading(),
                        Err(error) => pack.health.on_failure(update.device_gone, &error.to_string()),
                    };
                    log_change(&pack.label, change, &pack.health);
                }
            }
        }
        let now = Instant::now();
        let outputs: Vec<Output> = packs.iter_mut().map(|p| p.monitor.output(now)).collect();
        for (pack, out) in packs.iter_mut().zip(&outputs) {
            if !out.connected {
                let change = pack.health.leave("no good reading within stale_after_s");
                log_change(&pack.label, change, &pack.health);
            }
        }
        let members: Vec<bool> = packs.iter().map(|p| p.health.is_member()).collect();
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
        if service.take_history_clear() {
            task::clear_history(&mut control.monitor, &state_path, &label).await;
        }
        // A pack's counters live only while the daemon runs (its charge state is the bank's).
        for pack in packs.iter_mut().filter(|p| p.service.take_history_clear()) {
            pack.monitor.clear_history();
            tracing::info!(battery = %pack.label, "history cleared (/History/Clear)");
        }
        let out = control.cycle(&outputs, &members, now);
        task::log_limit_change(&label, &mut last_limits, &out);
        if let Some(state) = control.monitor.take_state_to_save() {
            task::save_state(state_path.clone(), state, &label).await;
        }
        if !announced {
            announced = true;
            let present = packs.iter().filter(|p| p.monitor.latest().read_at.is_some()).count();
            tracing::info!(battery = %label, present, configured = packs.len(), "bank running");
        }
        let shares = packs
            .iter()
            .zip(&outputs)
            .zip(&members)
            .zip(&names)
            .map(|(((p, o), member), name)| crate::web::PackShare {
                name: name.clone(),
                member: *member,
                current_a: o.battery.current_a,
                charge_rating_a: p.slot.options.max_charge_current.or(Some(config.charge.max_charge_current)),
                discharge_rating_a: p
                    .slot
                    .options
                    .max_discharge_current
                    .or(Some(config.charge.max_discharge_current)),
            })
            .collect();
        let window = Some((config.charge.min_cell_voltage, config.charge.max_cell_voltage));
        publisher.offer_with(
            &identity,
            &out,
            crate::web::Extra { kind: "bank", link: None, cell_window_v: window, packs: shares },
        );
        let clock = tokio::time::Instant::now();
        let due = published.as_ref().is_none_or(|last| last.due(clock, interval, &out, &members));
        if !due {
            // Held back, never dropped: published at the latest one interval after the last.
            let publish_at = published.as_ref().map_or(clock, |last| last.at + interval);
            tokio::select! {
                _ = wake.notified() => {}
                _ = ticker.tick() => {}
                () = tokio::time::sleep_until(publish_at) => {}
                _ = shutdown.changed() => if *shutdown.borrow() {
                    task::save_state(state_path.clone(), control.monitor.control_state(), &label).await;
                    return;
                },
            }
            continue;
        }
        published = Some(Published {
            at: clock,
            limits: out.limits.clone(),
            members: members.clone(),
            connected: out.connected,
        });
        if bank.publishes_aggregate() {
            service.publish(&bus, || identity.clone(), &task::snapshot(&out)).await;
        }
        if bank.publishes_packs() {
            let idents = pack_identities.get_or_insert_with(|| {
                let each: Vec<Identity> =
                    packs.iter().map(|p| task::identity(&p.slot, &config, p.monitor.latest())).collect();
                let each = crate::bank::identity::distinct(each, &label);
                each.into_iter().zip(&packs).map(|(ident, p)| identities.claim(ident, &p.label)).collect()
            });
            for (((pack, out), member), ident) in
                packs.iter_mut().zip(&outputs).zip(&members).zip(idents.iter())
            {
                let shown = if *member { pack_output(out) } else { left_output(out) };
                let extra = crate::web::Extra {
                    kind: "pack",
                    link: Some(crate::web::Link::of(&pack.monitor, Instant::now())),
                    cell_window_v: Some((config.charge.min_cell_voltage, config.charge.max_cell_voltage)),
                    packs: Vec::new(),
                };
                publisher.offer_with(ident, &shown, extra);
                pack.service.publish(&bus, || ident.clone(), &task::snapshot(&shown)).await;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = ticker.tick() => {}
            _ = shutdown.changed() => if *shutdown.borrow() {
                task::save_state(state_path.clone(), control.monitor.control_state(), &label).await;
                return;
            },
        }
    }
}

/// What a bank's services last published, and when.
struct Published {
    at: tokio::time::Instant,
    limits: ChargeLimits,
    members: Vec<bool>,
    connected: bool,
}

impl Published {
    /// A publish is due a poll interval after the last, or at once when a limit fell (CVL, CCL,
    /// DCL lower or no longer known), a pack joined or left, or the connection changed.
    fn due(&self, now: tokio::time::Instant, interval: Duration, out: &Output, members: &[bool]) -> bool {
        let fell = |was: Option<f64>, is: Option<f64>| match (was, is) {
            (Some(was), Some(is)) => is < was,
            (Some(_), None) => true,
            _ => false,
        };
        let l = &out.limits;
        now.saturating_duration_since(self.at) >= interval
            || fell(self.limits.charge_voltage_v, l.charge_voltage_v)
            || fell(self.limits.charge_current_a, l.charge_current_a)
            || fell(self.limits.discharge_current_a, l.discharge_current_a)
            || self.members.as_slice() != members
            || self.connected != out.connected
    }
}

fn log_change(label: &str, change: Change, health: &PackHealth) {
    match change {
        Change::Left => tracing::warn!(
            battery = %label,
            reason = health.left_because().unwrap_or(""),
            "pack left the bank; the others carry its current (limits recomputed now)"
        ),
        Change::Joined => {
            tracing::info!(battery = %label, "pack counts in the bank (limits rise through the recovery ramp)")
        }
        Change::None => {}
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
#[path = "bank_tests.rs"]
mod tests;
