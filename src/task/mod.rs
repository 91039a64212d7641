//! The long-running tasks behind each D-Bus service: one per battery ([`battery`]) and one per
//! bank ([`bank`]), and what they share (the battery's slot, state file, identity, the service
//! retry interval). `app` only wires them.

pub mod bank;
pub mod battery;
pub mod external;

use crate::config::{BatteryConfig, Config, PortConfig};
use crate::control::{persist, ChargeLimits, ControlState};
use crate::current_sign::CurrentSign;
use crate::driver::PollUpdate;
use crate::monitor::{Monitor, Output};
use crate::victron::{self, BatteryService, BmsWrites, BusAddress, Identity, Snapshot};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// How often a battery or bank whose D-Bus service could not start tries again.
pub(crate) const SERVICE_RETRY: Duration = Duration::from_secs(5);

/// `[daemon] stale_after_s` as a duration. Validation keeps it within 60 s (or three poll
/// intervals); a value that slipped past it (a config built in code) still never panics and
/// falls back to the default rather than to "never stale".
pub(crate) fn stale_after(config: &Config) -> Duration {
    Duration::try_from_secs_f64(config.daemon.stale_after_s)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
        .unwrap_or(Duration::from_secs(10))
}

/// One D-Bus service, for a battery, a bank or a bank's pack: started on first use, retried every
/// [`SERVICE_RETRY`] while it cannot start, one log line per change between working and failing.
/// Every service goes through it, so every one honours `[dbus] properties_changed`.
#[derive(Debug)]
pub(crate) struct ServiceSlot {
    label: String,
    service: Option<BatteryService>,
    next_attempt: tokio::time::Instant,
    failing: bool,
    writes: Option<BmsWrites>,
    properties_changed: bool,
}

impl ServiceSlot {
    /// A slot for the service of `label`, with its writable paths and `[dbus] properties_changed`.
    pub(crate) fn new(label: String, writes: Option<BmsWrites>, properties_changed: bool) -> Self {
        Self {
            label,
            service: None,
            next_attempt: tokio::time::Instant::now(),
            failing: false,
            writes,
            properties_changed,
        }
    }

    /// Whether the service is on the bus.
    pub(crate) fn is_registered(&self) -> bool {
        self.service.is_some()
    }

    /// Whether a client wrote 1 to `/History/Clear` since the last call.
    pub(crate) fn take_history_clear(&self) -> bool {
        self.service.as_ref().is_some_and(BatteryService::take_history_clear)
    }

    /// Publishes `snap`, registering the service first (with `identity()`) when it is not yet.
    pub(crate) async fn publish(
        &mut self,
        bus: &BusAddress,
        identity: impl FnOnce() -> Identity,
        snap: &Snapshot<'_>,
    ) {
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
                match BatteryService::start_with_writes(bus, identity(), snap, self.writes.clone()).await {
                    Ok(mut svc) => {
                        svc.set_properties_changed(self.properties_changed);
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

/// Everything one battery task needs to know about its battery.
#[derive(Debug, Clone)]
pub struct BatterySlot {
    pub(crate) port: PortConfig,
    pub(crate) address: Option<u8>,
    pub(crate) options: BatteryConfig,
    /// Writable `/Settings/*` paths and where their commands go (`allow_writes`).
    pub(crate) writes: Option<BmsWrites>,
}

pub(crate) fn identity(slot: &BatterySlot, config: &Config, battery: &crate::battery::Battery) -> Identity {
    let port_name = if slot.port.protocol.is_mqtt() {
        crate::transport::mqtt::port_name(&slot.port.device).unwrap_or_else(|| "mqtt".to_owned())
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
    } else if slot.port.protocol.ble().is_some() {
        "Bluetooth"
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
        manufacturer: slot.port.protocol.spec().manufacturer.to_owned(),
        connection_information: format!(
            "{} ({protocol}) on {}{at}",
            slot.port.protocol.spec().manufacturer,
            match crate::transport::mqtt::BrokerUrl::parse(&slot.port.device) {
                Ok(url) if slot.port.protocol.is_mqtt() => url.to_string(),
                _ => slot.port.device.clone(),
            }
        ),
    }
}

/// `/History/Clear`: the counters start afresh and the state file says so at once.
pub(crate) async fn clear_history(monitor: &mut Monitor, state_path: &Path, label: &str) {
    monitor.clear_history();
    tracing::info!(battery = %label, "history cleared (/History/Clear)");
    save_state(state_path.to_owned(), monitor.control_state(), label).await;
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

/// The corrections every reading of every protocol takes before the monitor sees it: the
/// current's sign (`current_sign.rs`), then an external current/SoC sensor (`external.rs`).
#[derive(Debug)]
pub(crate) struct ModelStep {
    sign: CurrentSign,
    external: Option<external::External>,
}

impl ModelStep {
    /// The step of the battery `slot` on `bus`, its sensor read every `every`.
    pub(crate) fn new(
        slot: &BatterySlot,
        bus: &crate::victron::BusAddress,
        every: std::time::Duration,
        label: &str,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let o = &slot.options;
        let external = external::start(
            bus,
            o.current_source.as_deref(),
            o.soc_source.as_deref(),
            every,
            label,
            shutdown,
        );
        Self { sign: CurrentSign::new(o.invert_current), external }
    }

    fn apply(&mut self, battery: &mut crate::battery::Battery, label: &str) {
        if let Some(said) = self.sign.apply(battery) {
            tracing::warn!(battery = %label, "{said}");
        }
        if let Some(external) = &mut self.external {
            external.apply(battery, std::time::Instant::now());
        }
    }
}

/// Hands the latest update to the monitor, after the model step.
pub(crate) fn take_update(
    monitor: &mut Monitor,
    updates: &watch::Receiver<Option<PollUpdate>>,
    label: &str,
    step: &mut ModelStep,
) {
    let update = updates.borrow().clone();
    let Some(update) = update else { return };
    let was_online = monitor.is_online(update.at);
    match update.result {
        Ok(mut battery) => {
            step.apply(&mut battery, label);
            take_reading(monitor, update.at, battery, label, was_online);
        }
        Err(error) => {
            // The monitor keeps the text: it is shown (`/ErrorCode` reason, status page).
            if monitor.handle_failure(error.to_string()) {
                tracing::warn!(battery = %label, %error, "poll failed");
            }
        }
    }
}

fn take_reading(
    monitor: &mut Monitor,
    at: std::time::Instant,
    battery: crate::battery::Battery,
    label: &str,
    was_online: bool,
) {
    {
        match monitor.handle_reading(at, battery) {
            None if !was_online => tracing::info!(battery = %label, "BMS answering"),
            None => {}
            Some(rejected) if rejected.log => tracing::warn!(
                battery = %label,
                reason = %rejected.reason,
                "BMS reading rejected: not used for the limits; charging stops if no good reading \
                 comes within the grace period (said at most once a minute)"
            ),
            Some(_) => {}
        }
    }
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
