//! Handler methods called directly, without any bus.

use super::*;
use crate::victron::value::Unit;
use std::sync::Arc;

fn shared() -> (Arc<Shared>, watch::Receiver<Option<CustomNameWrite>>) {
    let mut items = Items::new();
    let mut put = |path: &str, value: Value, unit: Unit| {
        items.insert(path.to_owned(), Item { value, unit });
    };
    put("/Dc/0/Voltage", Value::F64(52.1), Unit::Volt);
    put("/Dc/0/Current", Value::Invalid, Unit::Amp);
    put("/Soc", Value::F64(80.0), Unit::Percent);
    put("/CustomName", Value::Text(String::new()), Unit::Plain);
    let (tx, rx) = watch::channel(None);
    (Arc::new(Shared::new(items, tx)), rx)
}

#[test]
fn item_get_value_and_text() {
    let (shared, _rx) = shared();
    let voltage = BusItem::new("/Dc/0/Voltage".into(), shared.clone());
    assert_eq!(voltage.get_value(), zvariant::Value::F64(52.1));
    assert_eq!(voltage.get_text(), "52.10 V");
    let current = BusItem::new("/Dc/0/Current".into(), shared);
    let invalid = current.get_value();
    assert_eq!(invalid.value_signature().to_string(), "ai");
    assert_eq!(current.get_text(), "---");
}

#[test]
fn writes_only_to_custom_name_with_velib_codes() {
    let (shared, _rx) = shared();
    let name = zvariant::Value::from("Bank A");
    assert_eq!(shared.write("/Dc/0/Voltage", &zvariant::Value::F64(1.0)).0, set_value::NOT_WRITABLE);
    assert_eq!(shared.write("/CustomName", &zvariant::Value::I32(1)).0, set_value::NOT_WRITABLE);
    let invalid = Value::Invalid.to_variant();
    assert_eq!(shared.write("/CustomName", &invalid).0, set_value::NOT_WRITABLE);
    let long = zvariant::Value::from("x".repeat(65));
    assert_eq!(shared.write("/CustomName", &long).0, set_value::REJECTED);
    let (code, changed) = shared.write("/CustomName", &name);
    assert_eq!(code, set_value::ACCEPTED);
    assert_eq!(changed.map(|i| i.value), Some(Value::Text("Bank A".into())));
    assert_eq!(custom_name_of(&shared.lock()), "Bank A");
    let (code, changed) = shared.write("/CustomName", &name);
    assert_eq!((code, changed), (set_value::ACCEPTED, None), "unchanged is accepted, no signal");
    let max = zvariant::Value::from("é".repeat(64));
    assert_eq!(shared.write("/CustomName", &max).0, set_value::ACCEPTED, "64 chars, not bytes");
}

#[test]
fn tree_node_and_root_use_relative_keys() {
    let (shared, _rx) = shared();
    let node = TreeNode::new("/Dc".into(), shared.clone());
    let value = node.get_value();
    assert_eq!(value.value_signature().to_string(), "a{sv}");
    let map: HashMap<String, OwnedValue> = zvariant::OwnedValue::try_from(value).unwrap().try_into().unwrap();
    assert_eq!(map.len(), 2);
    assert!(map.contains_key("0/Voltage"));
    let text = node.get_text();
    assert_eq!(text.value_signature().to_string(), "a{ss}");

    let root = Root::new(shared);
    let items = root.get_items();
    assert_eq!(items.len(), 4);
    assert_eq!(items["/Dc/0/Voltage"]["Text"], zvariant::Value::from("52.10 V"));
    let all = root.get_value();
    let map: HashMap<String, OwnedValue> = zvariant::OwnedValue::try_from(all).unwrap().try_into().unwrap();
    assert!(map.contains_key("Soc"), "root keys have no leading slash");
}

#[test]
fn tree_nodes_are_every_prefix() {
    let paths = ["/Dc/0/Voltage".to_owned(), "/Soc".to_owned(), "/Dc/0/Current".to_owned()];
    assert_eq!(tree_nodes(paths.iter()), vec!["/Dc".to_owned(), "/Dc/0".to_owned()]);
}

#[test]
fn settings_writes_become_commands() {
    use crate::protocol::writes::{BmsCommand, WriteSupport};
    use crate::victron::writable::{initial_items, FORCE_CHARGING_OFF, HAS_SETTINGS, RESET_SOC_TO};
    let (tx, _names) = watch::channel(None);
    let (commands, mut rx) = mpsc::channel(1);
    let items = initial_items(WriteSupport { mosfet: true, soc: false });
    let shared = Shared::new(items, tx).with_commands(Some(commands));
    let (code, changed) = shared.write(FORCE_CHARGING_OFF, &zvariant::Value::I32(1));
    assert_eq!(code, set_value::ACCEPTED);
    assert_eq!(changed.map(|i| i.value), Some(Value::I32(1)));
    assert_eq!(rx.try_recv().ok(), Some(BmsCommand::SetChargeFet(false)));
    assert_eq!(shared.write(FORCE_CHARGING_OFF, &zvariant::Value::I32(3)).0, set_value::REJECTED);
    assert_eq!(shared.write(HAS_SETTINGS, &zvariant::Value::I32(0)).0, set_value::NOT_WRITABLE);
    assert_eq!(
        shared.write(RESET_SOC_TO, &zvariant::Value::F64(50.0)).0,
        set_value::NOT_WRITABLE,
        "no such path"
    );
    assert!(rx.try_recv().is_err(), "refused writes send nothing");
    // A full queue refuses the write and the path keeps its value.
    assert_eq!(shared.write(FORCE_CHARGING_OFF, &zvariant::Value::I32(0)).0, set_value::ACCEPTED);
    assert_eq!(shared.write(FORCE_CHARGING_OFF, &zvariant::Value::I32(1)).0, set_value::REJECTED);
    assert_eq!(shared.lock()[FORCE_CHARGING_OFF].value, Value::I32(0));
}
