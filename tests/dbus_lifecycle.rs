//! Service lifecycle on a private `dbus-daemon` (`reference/victron-dbus.md` §4, §5): device
//! instance and custom name from a fake `com.victronenergy.settings`, name conflicts, a D-Bus
//! restart, and cleanup of the private bus.

mod support;

use bms_bridge::control::ChargeLimits;
use bms_bridge::victron::{BatteryService, DbusError, PrivateBus};
use std::sync::{Arc, Mutex};
use support::*;
use tokio::sync::Notify;
use zbus::interface;
use zbus::zvariant::{OwnedValue, Value};

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
    let setting = FakeSetting { written: written.clone(), notify: notify.clone() };
    let _settings = within(
        "settings",
        zbus::connection::Builder::address(bus.address())
            .unwrap()
            .serve_at("/", settings::FakeSettings { stored: "Stored" })
            .unwrap()
            .serve_at("/Settings/Devices/bmsbridge_test_ttyUSB3/CustomName", setting)
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
    assert_eq!(*get_value(&client, name, "/DeviceInstance").await, Value::I32(3));
    assert_eq!(*get_value(&client, name, "/CustomName").await, Value::from("Stored"));

    let stored = notify.notified();
    assert_eq!(set(&client, name, "/CustomName", Value::from("Bank B")).await, 0);
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
    assert!(matches!(within("bad", bad).await, Err(DbusError::BadSuffix(_))));
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
    let result = within("publish on dead bus", service.publish(&snapshot(&during, &limits))).await;
    assert!(result.is_err(), "publish on a dead bus must fail, got {result:?}");
    assert!(!service.is_connected());

    bus.restart().unwrap();
    let after = battery(51.5, 71.0);
    within("publish after restart", service.publish(&snapshot(&after, &limits))).await.unwrap();
    assert!(service.is_connected());
    let client = client(&bus).await;
    let name = service.service_name();
    assert_eq!(*get_value(&client, name, "/Dc/0/Voltage").await, Value::F64(51.5));
    assert_eq!(*get_value(&client, name, "/DeviceInstance").await, Value::I32(7));
    assert_eq!(*get_value(&client, name, "/Voltages/Cell1").await, Value::F64(3.30));
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
