//! One battery's task: its monitor, charge control and D-Bus service, fed by the port's poll
//! loop.

use super::{
    identity, log_limit_change, restore_state, save_state, snapshot, stale_after, state_file, take_update,
    BatterySlot, ServiceSlot,
};
use crate::config::Config;
use crate::control::ChargeController;
use crate::control::ChargeLimits;
use crate::driver::PollUpdate;
use crate::monitor::{Monitor, Output};
use crate::victron::BusAddress;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(crate) async fn battery_task(
    slot: BatterySlot,
    config: Config,
    bus: BusAddress,
    mut updates: watch::Receiver<Option<PollUpdate>>,
    mut shutdown: watch::Receiver<bool>,
    identities: std::sync::Arc<crate::bank::identity::Registry>,
    publisher: crate::mqtt_output::Publisher,
) {
    let stale_after = stale_after(&config);
    // The tick only watches for a silent BMS (and paces a lost one's updates): a quarter of the
    // grace period, at most a second, is fine grain, and a 100 ms poll interval would otherwise
    // wake each battery task ten times a second for nothing.
    let interval = Duration::from_millis(config.daemon.poll_interval_ms)
        .max(Duration::from_secs(1).min(stale_after / 4));
    let charge = slot.options.charge_config(&config.charge);
    let cell_window_v = Some((charge.min_cell_voltage, charge.max_cell_voltage));
    let controller = ChargeController::new(charge);
    let mut monitor = Monitor::new(Instant::now(), slot.options.clone(), stale_after, controller);
    let label = format!("{}{}", slot.port.device, slot.address.map_or(String::new(), |a| format!("#{a}")));
    let mut sign = super::ModelStep::new(&slot, &bus, interval, &label, shutdown.clone());

    // The service's unique id (and so its device instance) comes from the BMS serial where it
    // has one: wait up to the grace period for a first good reading before registering.
    let first_deadline = tokio::time::Instant::now() + stale_after;
    while monitor.latest().read_at.is_none() {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() { return; }
                take_update(&mut monitor, &updates, &label, &mut sign);
            }
            _ = tokio::time::sleep_until(first_deadline) => break,
            _ = shutdown.changed() => if *shutdown.borrow() { return; },
        }
    }

    let claimed = identities.claim(identity(&slot, &config, monitor.latest()), &label);
    let state_path = state_file(&config, &claimed.unique_id);
    restore_state(&mut monitor, &state_path, &label);

    let mut service = ServiceSlot::new(label.clone(), slot.writes.clone(), config.dbus.properties_changed);
    let mut last_limits: Option<ChargeLimits> = None;
    let mut was_connected = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        if service.take_history_clear() {
            super::clear_history(&mut monitor, &state_path, &label).await;
        }
        let out = monitor.output(now);
        let link = Some(crate::web::Link::of(&monitor, now));
        publisher.offer_with(
            &claimed,
            &out,
            crate::web::Extra { kind: "battery", link, cell_window_v, packs: Vec::new() },
        );
        log_connection_change(&label, &mut was_connected, &out, stale_after);
        log_limit_change(&label, &mut last_limits, &out);
        if let Some(state) = monitor.take_state_to_save() {
            save_state(state_path.clone(), state, &label).await;
        }
        service
            .publish(
                &bus,
                || identities.claim(identity(&slot, &config, monitor.latest()), &label),
                &snapshot(&out),
            )
            .await;
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() { return; }
                take_update(&mut monitor, &updates, &label, &mut sign);
                // A reading publishes now; the tick only has to notice a BMS that falls silent,
                // so it waits 1.5 intervals from here: the next reading (one interval, give or
                // take the poll's jitter) comes first, and a cycle gives one publish, one signal.
                ticker.reset_after(interval + interval / 2);
            }
            _ = due_tick(&mut ticker, &monitor, service.is_registered()) => {}
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
