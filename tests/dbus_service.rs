//! The battery service on a private `dbus-daemon`, checked with a plain zbus client the way Venus
//! consumers see it (`reference/victron-dbus.md` §2): paths, encoding, SetValue, signals.

mod support;

use bms_bridge::control::ChargeLimits;
use bms_bridge::victron::{set_value, PrivateBus, BUS_ITEM};
use std::collections::HashMap;
use support::*;
use zbus::message::Type;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{MatchRule, MessageStream};

/// GetItems on `/` lists the mandatory paths with valid values, measurements, and invalid values
/// as empty `ai` arrays; items, tree nodes and `/` answer GetValue/GetText; a missing path is
/// UnknownObject; without a settings service the fallback instance is used.
#[tokio::test]
async fn paths_values_and_encoding() {
    let bus = PrivateBus::start().unwrap();
    let service = start(&bus, "ttyUSB0").await;
    assert_eq!(service.service_name(), "com.victronenergy.battery.ttyUSB0");
    assert_eq!(service.device_instance(), 7, "fallback without com.victronenergy.settings");
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
    assert!(is_invalid(&get_value(&client, name, "/Dc/0/Temperature").await.into()));
    let text: String =
        call(&client, name, "/Dc/0/Power", "GetText").await.unwrap().body().deserialize().unwrap();
    assert_eq!(text, "521 W");

    let root: HashMap<String, OwnedValue> = get_value(&client, name, "/").await.try_into().unwrap();
    assert_eq!(*root["Dc/0/Voltage"], Value::F64(52.1), "root GetValue keys are relative");
    let node: HashMap<String, OwnedValue> = get_value(&client, name, "/Dc/0").await.try_into().unwrap();
    assert_eq!(*node["Voltage"], Value::F64(52.1));
    assert!(node.contains_key("Power"));
    let texts: OwnedValue =
        call(&client, name, "/Dc", "GetText").await.unwrap().body().deserialize().unwrap();
    let texts: HashMap<String, String> = texts.try_into().unwrap();
    assert_eq!(texts["0/Voltage"], "52.10 V");

    let missing = call(&client, name, "/No/Such/Path", "GetValue").await.unwrap_err();
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

    assert_eq!(set(&client, name, "/CustomName", Value::from("Bank A")).await, set_value::ACCEPTED);
    within("name change", names.changed()).await.unwrap();
    assert_eq!(*names.borrow(), "Bank A");
    assert_eq!(*get_value(&client, name, "/CustomName").await, Value::from("Bank A"));
    assert_eq!(set(&client, name, "/Dc/0/Voltage", Value::F64(1.0)).await, set_value::NOT_WRITABLE);
    assert_eq!(set(&client, name, "/CustomName", Value::I32(3)).await, set_value::NOT_WRITABLE);
    let long = "x".repeat(65);
    assert_eq!(set(&client, name, "/CustomName", Value::from(long.as_str())).await, set_value::REJECTED);
    assert_eq!(service.custom_name(), "Bank A");

    // A flood of names (a misbehaving client): the channel to the persister keeps only the
    // latest (bounded, issue 26), and that latest one is what the service ends with.
    for i in 0..300 {
        assert_eq!(
            set(&client, name, "/CustomName", Value::from(format!("n{i}").as_str())).await,
            set_value::ACCEPTED
        );
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while service.custom_name() != "n299" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(service.custom_name(), "n299");
}

/// A publish that changes only the voltage sends exactly one ItemsChanged holding only the
/// voltage and the power (V×I), plus PropertiesChanged on the item's own path, both from the
/// connection that owns the name (the match rules filter on its unique name).
#[tokio::test]
async fn publish_sends_one_items_changed_with_only_the_changes() {
    let bus = PrivateBus::start().unwrap();
    let mut service = start(&bus, "ttyUSB2").await;
    let client = client(&bus).await;
    let owner = within("owner", zbus::fdo::DBusProxy::new(&client)).await.unwrap();
    let owner = within("GetNameOwner", owner.get_name_owner(service.service_name().try_into().unwrap()))
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
    let mut stream = within("subscribe", MessageStream::for_match_rule(rule, &client, None)).await.unwrap();
    let per_path = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(owner.as_str())
        .unwrap()
        .interface(BUS_ITEM)
        .unwrap()
        .member("PropertiesChanged")
        .unwrap()
        .path("/Dc/0/Voltage")
        .unwrap()
        .build();
    let mut voltage_changes =
        within("subscribe", MessageStream::for_match_rule(per_path, &client, None)).await.unwrap();

    let limits = ChargeLimits::default();
    let changed = battery(52.3, 80.0);
    within("publish", service.publish(&snapshot(&changed, &limits))).await.unwrap();
    let soc = battery(52.3, 81.0);
    within("publish", service.publish(&snapshot(&soc, &limits))).await.unwrap();

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

    let properties = next(&mut voltage_changes).await;
    let body: HashMap<String, OwnedValue> = properties.body().deserialize().unwrap();
    assert_eq!(*body["Value"], Value::F64(52.3));
    assert_eq!(*body["Text"], Value::from("52.30 V"));
}

/// Every object the service exports answers `Introspect` with XML that a real XML parser accepts
/// (python-dbus tools on Venus parse it: a `---` in an interface doc once became a `--` inside an
/// XML comment, "not well-formed" for every object), and the tree it describes reaches every path.
#[tokio::test]
async fn introspection_of_every_object_is_well_formed_xml() {
    let bus = PrivateBus::start().unwrap();
    let service = start(&bus, "ttyUSB0").await;
    let client = client(&bus).await;
    let name = service.service_name();
    let reply = call(&client, name, "/", "GetItems").await.unwrap();
    let items: HashMap<String, HashMap<String, OwnedValue>> = reply.body().deserialize().unwrap();

    let mut pending = vec!["/".to_owned()];
    let mut visited = Vec::new();
    while let Some(path) = pending.pop() {
        let introspect = client.call_method(
            Some(name),
            path.as_str(),
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            &(),
        );
        let xml: String = within("Introspect", introspect).await.unwrap().body().deserialize().unwrap();
        // D-Bus introspection starts with its DOCTYPE line.
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
        let doc = roxmltree::Document::parse_with_options(&xml, options)
            .unwrap_or_else(|e| panic!("Introspect of {path} is not well-formed XML: {e}\n{xml}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "node", "{path}");
        let interfaces: Vec<&str> = root
            .children()
            .filter(|n| n.has_tag_name("interface"))
            .filter_map(|n| n.attribute("name"))
            .collect();
        if path != "/" && items.contains_key(&path) {
            assert!(interfaces.contains(&BUS_ITEM), "{path} has no BusItem interface: {interfaces:?}");
        }
        for child in root.children().filter(|n| n.has_tag_name("node")) {
            let Some(child) = child.attribute("name") else { continue };
            pending.push(if path == "/" { format!("/{child}") } else { format!("{path}/{child}") });
        }
        visited.push(path);
    }
    for path in items.keys() {
        assert!(visited.contains(path), "{path} is not reachable through Introspect");
    }
    assert!(visited.len() > items.len(), "the tree nodes are objects too: {} visited", visited.len());
}
