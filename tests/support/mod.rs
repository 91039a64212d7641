//! Shared by the D-Bus integration tests: fixtures, a client, calls and signals with timeouts.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod daemon;
pub mod settings;

use bms_bridge::battery::Battery;
use bms_bridge::control::ChargeLimits;
use bms_bridge::victron::{BatteryService, Identity, PrivateBus, Snapshot, BUS_ITEM};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use zbus::export::futures_core::Stream;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, Message, MessageStream};

/// Longest wait for any one bus operation.
pub const WAIT: Duration = Duration::from_secs(5);

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

pub fn identity(suffix: &str) -> Identity {
    Identity {
        service_suffix: suffix.into(),
        unique_id: format!("test_{suffix}"),
        product_name: "JBD BMS".into(),
        connection: "Serial ttyUSB0".into(),
        custom_name: String::new(),
        firmware_version: "4.1".into(),
        hardware_version: "SP04S034".into(),
        serial: "123456".into(),
        fallback_device_instance: 7,
        max_cells: 4,
        manufacturer: String::new(),
        connection_information: String::new(),
    }
}

pub fn battery(voltage: f64, soc: f64) -> Battery {
    Battery {
        voltage_v: Some(voltage),
        current_a: Some(10.0),
        soc_percent: Some(soc),
        cell_voltages_v: Some(vec![3.30, 3.28, 3.35, 3.31]),
        ..Default::default()
    }
}

pub fn snapshot<'a>(battery: &'a Battery, limits: &'a ChargeLimits) -> Snapshot<'a> {
    Snapshot { battery, limits, connected: true, state: 9, error_code: 0, history: None }
}

pub async fn start(bus: &PrivateBus, suffix: &str) -> BatteryService {
    let (b, limits) = (battery(52.1, 80.0), ChargeLimits::default());
    within("start", BatteryService::start(&bus.bus_address(), identity(suffix), &snapshot(&b, &limits)))
        .await
        .unwrap()
}

pub async fn client(bus: &PrivateBus) -> Connection {
    within("client", zbus::connection::Builder::address(bus.address()).unwrap().build()).await.unwrap()
}

pub async fn call(client: &Connection, name: &str, path: &str, method: &str) -> zbus::Result<Message> {
    within(method, client.call_method(Some(name), path, Some(BUS_ITEM), method, &())).await
}

pub async fn get_value(client: &Connection, name: &str, path: &str) -> OwnedValue {
    call(client, name, path, "GetValue").await.unwrap().body().deserialize().unwrap()
}

pub async fn set(client: &Connection, name: &str, path: &str, value: Value<'_>) -> i32 {
    let body = (value,);
    let call = client.call_method(Some(name), path, Some(BUS_ITEM), "SetValue", &body);
    within("SetValue", call).await.unwrap().body().deserialize().unwrap()
}

pub fn is_invalid(value: &Value<'_>) -> bool {
    matches!(value, Value::Array(a) if a.is_empty() && a.element_signature().to_string() == "i")
}

pub async fn next(stream: &mut MessageStream) -> Message {
    let message = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx));
    within("signal", message).await.expect("stream ended").unwrap()
}
