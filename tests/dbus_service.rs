//! The battery service on a private `dbus-daemon`, checked with a plain zbus client the way Venus
//! consumers see it (`reference/victron-dbus.md` §2–5).

use bms_bridge::battery::Battery;
use bms_bridge::control::ChargeLimits;
use bms_bridge::victron::{
    set_value, BatteryService, DbusError, Identity, PrivateBus, Snapshot, BUS_ITEM,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use zbus::export::futures_core::Stream;
use zbus::message::Type;
use zbus::zvariant::{OwnedValue, Str, Value};
use zbus::{interface, Connection, MatchRule, Message, MessageStream};

const WAIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn identity(suffix: &str) -> Identity {
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
    }
}

fn battery(voltage: f64, soc: f64) -> Battery {
    Battery {
        voltage_v: Some(voltage),
        current_a: Some(10.0),
        soc_percent: Some(soc),
        cell_voltages_v: Some(vec![3.30, 3.28, 3.35, 3.31]),
        ..Default::default()
    }
}

fn snapshot<'a>(battery: &'a Battery, limits: &'a ChargeLimits) -> Snapshot<'a> {
    Snapshot {
        battery,
        limits,
        connected: true,
        state: 9,
        error_code: 0,
    }
}

async fn start(bus: &PrivateBus, suffix: &str) -> BatteryService {
    let (b, limits) = (battery(52.1, 80.0), ChargeLimits::default());
    within(
        "start",
        BatteryService::start(&bus.bus_address(), identity(suffix), &snapshot(&b, &limits)),
    )
    .await
    .unwrap()
}

async fn client(bus: &PrivateBus) -> Connection {
    within(
        "client",
        zbus::connection::Builder::address(bus.address())
            .unwrap()
            .build(),
    )
    .await
    .unwrap()
}

async fn call(client: &Connection, name: &str, path: &str, method: &str) -> zbus::Result<Message> {
    within(
        method,
        client.call_method(Some(name), path, Some(BUS_ITEM), method, &()),
    )
    .await
}

async fn get_value(client: &Connection, name: &str, path: &str) -> OwnedValue {
    call(client, name, path, "GetValue")
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap()
}

async fn set(client: &Connection, name: &str, path: &str, value: Value<'_>) -> i32 {
    let body = (value,);
    let call = client.call_method(Some(name), path, Some(BUS_ITEM), "SetValue", &body);
    within("SetValue", call)
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap()
}

fn is_invalid(value: &Value<'_>) -> bool {
    matches!(value, Value::Array(a) if a.is_empty() && a.element_signature().to_string() == "i")
}

async fn next(stream: &mut MessageStream) -> Message {
    let message = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx));
    within("signal", message)
        .await
        .expect("stream ended")
        .unwrap()
}

/// GetItems on `/` lists the mandatory paths with valid values, measurements, and invalid values
/// as empty `ai` arrays; items, tree nodes and `/` answer GetValue/GetText; a missing path is
/// UnknownObject; without a settings service the fallback instance is used.
#[tokio::test]
async fn paths_values_and_encoding() {
    let bus = PrivateBus::start().unwrap();
    let service = start(&bus, "ttyUSB0").await;
    assert_eq!(service.service_name(), "com.victronenergy.battery.ttyUSB0");
    assert_eq!(
        service.device_instance(),
        7,
        "fallback without com.victronenergy.settings"
    );
    let client = client(&bus).await;
    let name = service.service_name();

    let reply = call(&client, name, "/", "GetItems").await.unwrap();
    let items: HashMap<String, HashMap<String, OwnedValue>> = reply.body().deserialize().unwrap();
    for path in [
        "/Mgmt/ProcessName",
        "/Mgmt/ProcessVersion",
        "/Mgmt/Connection",
        "/DeviceInstance",
        "/ProductId",
        "/ProductName",
        "/FirmwareVersion",
        "/HardwareVersion",
        "/Connected",
        "/Serial",
    ] {
        let value = &items.get(path).unwrap_or_else(|| panic!("{path} missing"))["Value"];
        assert!(!is_invalid(value), "{path} must be valid");
    }
    assert!(items.contains_key("/CustomName"));
    assert_eq!(*items["/DeviceInstance"]["Value"], Value::I32(7));
    assert_eq!(*items["/Connected"]["Value"], Value::I32(1));
    assert_eq!(*items["/Dc/0/Voltage"]["Value"], Value::F64(52.1));
    assert_eq!(*items["/Dc/0/Voltage"]["Text"], Value::from("52.10 V"));
    assert_eq!(*items["/Voltages/Cell3"]["Value"], Value::F64(3.35));
    assert!(is_invalid(&items["/TimeToGo"]["Value"]));
    assert!(is_invalid(&items["/Info/MaxChargeVoltage"]["Value"]));

    assert_eq!(*get_value(&client, name, "/Soc").await, Value::F64(80.0));
    assert!(is_invalid(
        &get_value(&client, name, "/Dc/0/Temperature").await.into()
    ));
    let text: String = call(&client, name, "/Dc/0/Power", "GetText")
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    assert_eq!(text, "521 W");

    let root: HashMap<String, OwnedValue> = get_value(&client, name, "/").await.try_into().unwrap();
    assert_eq!(
        *root["Dc/0/Voltage"],
        Value::F64(52.1),
        "root GetValue keys are relative"
    );
    let node: HashMap<String, OwnedValue> =
        get_value(&client, name, "/Dc/0").await.try_into().unwrap();
    assert_eq!(*node["Voltage"], Value::F64(52.1));
    assert!(node.contains_key("Power"));
    let texts: OwnedValue = call(&client, name, "/Dc", "GetText")
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    let texts: HashMap<String, String> = texts.try_into().unwrap();
    assert_eq!(texts["0/Voltage"], "52.10 V");

    let missing = call(&client, name, "/No/Such/Path", "GetValue")
        .await
        .unwrap_err();
    match missing {
        zbus::Error::MethodError(error, _, _) => {
            assert_eq!(error.as_str(), "org.freedesktop.DBus.Error.UnknownObject");
        }
        other => panic!("expected UnknownObject, got {other:?}"),
    }
}

/// Only `/CustomName` is writable (0); a measurement answers 1, a too-long name 2, and an
/// accepted name reaches the caller.
#[tokio::test]
async fn set_value_codes_and_custom_name_notification() {
    let bus = PrivateBus::start().unwrap();
    let service = start(&bus, "ttyUSB1").await;
    let mut names = service.custom_name_changes();
    let client = client(&bus).await;
    let name = service.service_name();

    assert_eq!(
        set(&client, name, "/CustomName", Value::from("Bank A")).await,
        set_value::ACCEPTED
    );
    within("name change", names.changed()).await.unwrap();
    assert_eq!(*names.borrow(), "Bank A");
    assert_eq!(
        *get_value(&client, name, "/CustomName").await,
        Value::from("Bank A")
    );
    assert_eq!(
        set(&client, name, "/Dc/0/Voltage", Value::F64(1.0)).await,
        set_value::NOT_WRITABLE
    );
    assert_eq!(
        set(&client, name, "/CustomName", Value::I32(3)).await,
        set_value::NOT_WRITABLE
    );
    let long = "x".repeat(65);
    assert_eq!(
        set(&client, name, "/CustomName", Value::from(long.as_str())).await,
        set_value::REJECTED
    );
    assert_eq!(service.custom_name(), "Bank A");
}

/// A publish that changes only the voltage sends exactly one ItemsChanged holding only the
/// voltage and the power (V×I), from the connection that owns the name.
#[tokio::test]
async fn publish_sends_one_items_changed_with_only_the_changes() {
    let bus = PrivateBus::start().unwrap();
    let mut service = start(&bus, "ttyUSB2").await;
    let client = client(&bus).await;
    let owner = within("owner", zbus::fdo::DBusProxy::new(&client))
        .await
        .unwrap();
    let owner = within(
        "GetNameOwner",
        owner.get_name_owner(service.service_name().try_into().unwrap()),
    )
    .await
    .unwrap();
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(owner.as_str())
        .unwrap()
        .interface(BUS_ITEM)
        .unwrap()
        .member("ItemsChanged")
        .unwrap()
        .path("/")
        .unwrap()
        .build();
    let mut stream = within(
        "subscribe",
        MessageStream::for_match_rule(rule, &client, None),
    )
    .await
    .unwrap();

    let limits = ChargeLimits::default();
    let changed = battery(52.3, 80.0);
    within("publish", service.publish(&snapshot(&changed, &limits)))
        .await
        .unwrap();
    let soc = battery(52.3, 81.0);
    within("publish", service.publish(&snapshot(&soc, &limits)))
        .await
        .unwrap();

    let first = next(&mut stream).await;
    let batch: HashMap<String, HashMap<String, OwnedValue>> = first.body().deserialize().unwrap();
    let mut keys: Vec<_> = batch.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["/Dc/0/Power", "/Dc/0/Voltage"]);
    assert_eq!(*batch["/Dc/0/Voltage"]["Value"], Value::F64(52.3));
    assert_eq!(*batch["/Dc/0/Voltage"]["Text"], Value::from("52.30 V"));
    // Signals arrive in order: the next one belongs to the second publish, so the first publish
    // sent exactly one.
    let second = next(&mut stream).await;
    let batch: HashMap<String, HashMap<String, OwnedValue>> = second.body().deserialize().unwrap();
    assert_eq!(batch.keys().collect::<Vec<_>>(), ["/Soc"]);
}

/// Fake localsettings: `AddSettings` gives `battery:3` and an empty custom name; the custom name
/// setting records what it is set to.
struct FakeSettings;

#[interface(name = "com.victronenergy.Settings")]
impl FakeSettings {
    async fn add_settings(
        &self,
        definitions: Vec<HashMap<String, OwnedValue>>,
    ) -> Vec<HashMap<String, OwnedValue>> {
        definitions
            .iter()
            .map(|definition| {
                let path: String = definition["path"].try_clone().unwrap().try_into().unwrap();
                let value = if path.ends_with("/ClassAndVrmInstance") {
                    "battery:3"
                } else {
                    "Stored"
                };
                HashMap::from([
                    ("path".to_owned(), OwnedValue::from(Str::from(path))),
                    ("error".to_owned(), OwnedValue::from(0i32)),
                    ("value".to_owned(), OwnedValue::from(Str::from(value))),
                ])
            })
            .collect()
    }
}

struct FakeSetting {
    written: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

#[interface(name = "com.victronenergy.BusItem")]
impl FakeSetting {
    async fn set_value(&self, value: OwnedValue) -> i32 {
        self.written.lock().unwrap().push(value.try_into().unwrap());
        self.notify.notify_one();
        0
    }
}

/// With `com.victronenergy.settings` present, `/DeviceInstance` comes from `ClassAndVrmInstance`
/// (battery:3), the stored custom name is used, and a written name is stored there.
#[tokio::test]
async fn settings_service_gives_instance_and_stores_custom_name() {
    let bus = PrivateBus::start().unwrap();
    let (written, notify) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Notify::new()));
    let setting = FakeSetting {
        written: written.clone(),
        notify: notify.clone(),
    };
    let _settings = within(
        "settings",
        zbus::connection::Builder::address(bus.address())
            .unwrap()
            .serve_at("/", FakeSettings)
            .unwrap()
            .serve_at(
                "/Settings/Devices/bmsbridge_test_ttyUSB3/CustomName",
                setting,
            )
            .unwrap()
            .name("com.victronenergy.settings")
            .unwrap()
            .build(),
    )
    .await
    .unwrap();
    let service = start(&bus, "ttyUSB3").await;
    assert_eq!(service.device_instance(), 3);
    assert_eq!(service.settings_uid(), "bmsbridge_test_ttyUSB3");
    assert_eq!(service.custom_name(), "Stored");
    let client = client(&bus).await;
    let name = service.service_name();
    assert_eq!(
        *get_value(&client, name, "/DeviceInstance").await,
        Value::I32(3)
    );
    assert_eq!(
        *get_value(&client, name, "/CustomName").await,
        Value::from("Stored")
    );

    let stored = notify.notified();
    assert_eq!(
        set(&client, name, "/CustomName", Value::from("Bank B")).await,
        0
    );
    within("stored", stored).await;
    assert_eq!(*written.lock().unwrap(), ["Bank B"]);
}

/// A second service with the same name fails with NameTaken instead of queueing.
#[tokio::test]
async fn taken_name_fails_clearly() {
    let bus = PrivateBus::start().unwrap();
    let _first = start(&bus, "ttyUSB4").await;
    let (b, limits) = (battery(52.1, 80.0), ChargeLimits::default());
    let (address, first) = (bus.bus_address(), snapshot(&b, &limits));
    let second = BatteryService::start(&address, identity("ttyUSB4"), &first);
    match within("second start", second).await {
        Err(DbusError::NameTaken(name)) => assert_eq!(name, "com.victronenergy.battery.ttyUSB4"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    let bad = BatteryService::start(&address, identity("1bad.name"), &first);
    assert!(matches!(
        within("bad", bad).await,
        Err(DbusError::BadSuffix(_))
    ));
}

/// D-Bus restart: publishing on the dead bus returns an error (no panic); once a new daemon
/// listens at the same address, the next publish reconnects and re-publishes every path with the
/// latest values under the same name and instance.
#[tokio::test]
async fn survives_a_dbus_restart() {
    let mut bus = PrivateBus::start().unwrap();
    let mut service = start(&bus, "ttyUSB5").await;
    let limits = ChargeLimits::default();

    bus.stop();
    let during = battery(51.0, 70.0);
    let result = within(
        "publish on dead bus",
        service.publish(&snapshot(&during, &limits)),
    )
    .await;
    assert!(
        result.is_err(),
        "publish on a dead bus must fail, got {result:?}"
    );
    assert!(!service.is_connected());

    bus.restart().unwrap();
    let after = battery(51.5, 71.0);
    within(
        "publish after restart",
        service.publish(&snapshot(&after, &limits)),
    )
    .await
    .unwrap();
    assert!(service.is_connected());
    let client = client(&bus).await;
    let name = service.service_name();
    assert_eq!(
        *get_value(&client, name, "/Dc/0/Voltage").await,
        Value::F64(51.5)
    );
    assert_eq!(
        *get_value(&client, name, "/DeviceInstance").await,
        Value::I32(7)
    );
    assert_eq!(
        *get_value(&client, name, "/Voltages/Cell1").await,
        Value::F64(3.30)
    );
}

/// Dropping the private bus kills the daemon and removes its directory.
#[tokio::test]
async fn private_bus_cleans_up() {
    let bus = PrivateBus::start().unwrap();
    let socket = bus.address().strip_prefix("unix:path=").unwrap().to_owned();
    assert!(std::path::Path::new(&socket).exists());
    drop(bus);
    assert!(!std::path::Path::new(&socket).exists());
}
