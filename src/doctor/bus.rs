//! D-Bus checks: reachable, localsettings, every battery service with its device instance and the
//! limits it publishes (CVL/CCL/DCL) together with the rule that set each one.

use super::{Report, Status};
use crate::config::Config;
use crate::victron::settings::SETTINGS_SERVICE;
use crate::victron::{BusAddress, SERVICE_PREFIX};
use std::collections::HashMap;
use std::time::Duration;
use zbus::zvariant::OwnedValue;

type Items = HashMap<String, HashMap<String, OwnedValue>>;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

async fn call<R>(fut: impl std::future::Future<Output = zbus::Result<R>>) -> Result<R, String> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

pub(super) async fn check_bus(report: &mut Report, address: &BusAddress, cfg: &Config) {
    report.section(&format!("D-Bus ({address})"));
    let connection = match address.builder() {
        Ok(builder) => call(builder.build()).await,
        Err(err) => Err(err.to_string()),
    };
    let connection = match connection {
        Ok(c) => c,
        Err(err) => {
            report.add(
                Status::Fail,
                format!("cannot connect to the {address}: {err}\n(is dbus running? on a plain host the daemon needs the system bus or [dbus] bus = \"session\")"),
            );
            return;
        }
    };
    report.add(Status::Ok, format!("connected to the {address}"));
    let dbus = match zbus::fdo::DBusProxy::new(&connection).await {
        Ok(proxy) => proxy,
        Err(err) => {
            report.add(Status::Fail, format!("cannot talk to the bus daemon: {err}"));
            return;
        }
    };
    let names: Vec<String> = match call(async { dbus.list_names().await.map_err(zbus::Error::from) }).await {
        Ok(names) => names.into_iter().map(|n| n.to_string()).collect(),
        Err(err) => {
            report.add(Status::Fail, format!("ListNames failed: {err}"));
            return;
        }
    };
    if names.iter().any(|n| n == SETTINGS_SERVICE) {
        report.add(Status::Ok, format!("{SETTINGS_SERVICE} (localsettings) present: device instances and custom names are stored there"));
    } else {
        report.add(
            Status::Info,
            format!(
                "{SETTINGS_SERVICE} (localsettings) absent: normal on a plain Linux host; every battery uses [dbus] device_instance = {}",
                cfg.dbus.device_instance
            ),
        );
    }
    if names.iter().any(|n| n == "com.victronenergy.system") {
        let active = get_text(&connection, "com.victronenergy.system", "/ActiveBmsService").await;
        report.add(
            Status::Info,
            format!(
                "systemcalc: active BMS service = {}",
                active.unwrap_or_else(|e| format!("unknown ({e})"))
            ),
        );
    }

    let mut services: Vec<&String> = names.iter().filter(|n| n.starts_with(SERVICE_PREFIX)).collect();
    services.sort();
    if services.is_empty() {
        report.add(Status::Fail, "no com.victronenergy.battery.* service on the bus: is the daemon running?");
    }
    let mut instances: HashMap<i64, Vec<String>> = HashMap::new();
    let mut serials: HashMap<String, Vec<String>> = HashMap::new();
    let mut connections = Vec::new();
    for name in services {
        let items = match call(get_items(&connection, name)).await {
            Ok(items) => items,
            Err(err) => {
                report.add(Status::Warn, format!("{name}: GetItems failed: {err}"));
                continue;
            }
        };
        let instance = number(&items, "/DeviceInstance").map(|v| v as i64);
        if let Some(i) = instance {
            instances.entry(i).or_default().push(name.clone());
        }
        let process = text(&items, "/Mgmt/ProcessName");
        let ours = process == "bms-bridge";
        if ours {
            serials.entry(text(&items, "/Serial")).or_default().push(name.clone());
        }
        connections.push(text(&items, "/Mgmt/Connection"));
        describe_battery(report, name, &items, ours);
    }
    for (instance, names) in instances.iter().filter(|(_, n)| n.len() > 1) {
        report.add(
            Status::Warn,
            format!("device instance {instance} is used by {}: VRM and the GUI mix them up; change one in Settings > Devices", names.join(", ")),
        );
    }
    // Packs that report the same serial (JBD UP16S ship so) are kept apart by the daemon; say so.
    for (serial, names) in serials.iter().filter(|(s, n)| n.len() > 1 && !s.is_empty() && s.as_str() != "---")
    {
        report.add(
            Status::Warn,
            format!(
                "{} report the same BMS serial {serial}: each keeps its own identity (serial + port + address: state file, device instance); set identity = \"...\" in [[port.battery]] to name them",
                names.join(", ")
            ),
        );
    }
    for port in &cfg.ports {
        if !connections.iter().any(|c| c.starts_with(&format!("Serial {}", port.device))) {
            report.add(
                Status::Fail,
                format!("no battery service for {}: daemon not running, or the BMS has not answered yet (a service appears after the first reading or after stale_after_s)", port.device),
            );
        }
    }
}

fn describe_battery(report: &mut Report, name: &str, items: &Items, ours: bool) {
    let connected = number(items, "/Connected") == Some(1.0);
    let owner = if ours { String::new() } else { format!(" [{}]", text(items, "/Mgmt/ProcessName")) };
    let custom = text(items, "/CustomName");
    let label = if custom.is_empty() || custom == "---" { text(items, "/ProductName") } else { custom };
    let status = if connected { Status::Ok } else { Status::Fail };
    let mut lines = vec![format!(
        "{name}{owner}: \"{label}\", device instance {}, {}, {}",
        text(items, "/DeviceInstance"),
        text(items, "/Mgmt/Connection"),
        if connected { "connected" } else { "NOT connected (BMS lost: CCL 0, CVL float, DCL held then 0)" }
    )];
    lines.push(format!(
        "{}, {}, SoC {}, cells {} .. {} (spread {}), state {}, alarm {}",
        text(items, "/Dc/0/Voltage"),
        text(items, "/Dc/0/Current"),
        text(items, "/Soc"),
        text(items, "/System/MinCellVoltage"),
        text(items, "/System/MaxCellVoltage"),
        text(items, "/Voltages/Diff"),
        text(items, "/State"),
        text(items, "/Alarms/Alarm"),
    ));
    lines.push(format!(
        "CVL {}  set by: {}",
        text(items, "/Info/MaxChargeVoltage"),
        reason(items, "/Info/ChargeMode")
    ));
    lines.push(format!(
        "CCL {}  set by: {}",
        text(items, "/Info/MaxChargeCurrent"),
        reason(items, "/Info/ChargeLimitation")
    ));
    lines.push(format!(
        "DCL {}  set by: {}",
        text(items, "/Info/MaxDischargeCurrent"),
        reason(items, "/Info/DischargeLimitation")
    ));
    report.add(status, lines.join("\n"));
}

fn reason(items: &Items, path: &str) -> String {
    let t = text(items, path);
    if t.is_empty() || t == "---" {
        format!("(not published: {path} is empty)")
    } else {
        format!("{t} ({path})")
    }
}

async fn get_items(connection: &zbus::Connection, name: &str) -> zbus::Result<Items> {
    let reply =
        connection.call_method(Some(name), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await?;
    reply.body().deserialize::<Items>()
}

async fn get_text(connection: &zbus::Connection, name: &str, path: &str) -> Result<String, String> {
    let reply =
        call(connection.call_method(Some(name), path, Some("com.victronenergy.BusItem"), "GetText", &()))
            .await?;
    reply.body().deserialize::<String>().map_err(|e| e.to_string())
}

/// The `Text` of a path (velib's display form with unit), else its value, else "---".
fn text(items: &Items, path: &str) -> String {
    let Some(item) = items.get(path) else { return "---".into() };
    if let Some(t) = item.get("Text").and_then(|v| String::try_from(v.clone()).ok()) {
        return t;
    }
    match item.get("Value") {
        Some(v) => String::try_from(v.clone())
            .ok()
            .or_else(|| as_f64(v).map(|n| n.to_string()))
            .unwrap_or_else(|| "---".into()),
        None => "---".into(),
    }
}

fn number(items: &Items, path: &str) -> Option<f64> {
    items.get(path).and_then(|i| i.get("Value")).and_then(as_f64)
}

fn as_f64(v: &OwnedValue) -> Option<f64> {
    f64::try_from(v.clone())
        .ok()
        .or_else(|| i32::try_from(v.clone()).ok().map(f64::from))
        .or_else(|| u32::try_from(v.clone()).ok().map(f64::from))
        .or_else(|| i64::try_from(v.clone()).ok().map(|n| n as f64))
        .or_else(|| u8::try_from(v.clone()).ok().map(f64::from))
}
