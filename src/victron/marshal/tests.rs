//! The oracle is zvariant: the same items, serialized by zvariant in the same order, must give
//! the same bytes, and zvariant must decode them back to the items.

use super::*;
use crate::victron::value::Unit;
use proptest::prelude::*;
use std::collections::HashMap;
use zbus::zvariant::{self, serialized::Context, serialized::Data, Endian, OwnedValue, LE};

/// zvariant's bytes for the same items: a dict entry marshals as a struct of its key and value
/// (both 8-aligned, fields in order), so `a(sa(sv))` gives the bytes of `a{sa{sv}}` in the
/// order the items come in.
fn oracle(changes: &[(String, Item)]) -> Vec<u8> {
    let body: Vec<(&str, Vec<(&str, zvariant::Value<'static>)>)> = changes
        .iter()
        .map(|(path, item)| {
            let text = zvariant::Value::from(item.text().replace('\0', ""));
            let value = match &item.value {
                Value::Text(t) => zvariant::Value::from(t.replace('\0', "")),
                other => other.to_variant(),
            };
            (path.as_str(), vec![("Value", value), ("Text", text)])
        })
        .collect();
    let ctx = Context::new_dbus(LE, 0);
    zvariant::to_bytes(ctx, &body).expect("zvariant serializes it").to_vec()
}

fn decode(bytes: Vec<u8>) -> HashMap<String, HashMap<String, OwnedValue>> {
    let data = Data::new(bytes, Context::new_dbus(Endian::Little, 0));
    let (decoded, used): (HashMap<String, HashMap<String, OwnedValue>>, usize) =
        data.deserialize_for_signature(ITEMS_CHANGED_SIGNATURE).expect("a valid a{sa{sv}}");
    assert_eq!(used, data.len(), "the whole body is the dict");
    decoded
}

fn item(value: Value, unit: Unit) -> Item {
    Item { value, unit }
}

#[test]
fn every_kind_of_value_decodes_to_its_value_and_text() {
    let changes = vec![
        ("/Dc/0/Voltage".to_owned(), item(Value::F64(52.123), Unit::Volt)),
        ("/ProductId".to_owned(), item(Value::I32(0xBB01), Unit::Hex)),
        ("/Serial".to_owned(), item(Value::Text("JBD-Ä1".into()), Unit::Plain)),
        ("/TimeToGo".to_owned(), item(Value::Invalid, Unit::Second)),
        ("/Dc/0/Temperature".to_owned(), item(Value::F64(25.0), Unit::Celsius)),
    ];
    let bytes = items_changed(changes.iter().map(|(p, i)| (p.as_str(), i)));
    assert_eq!(bytes, oracle(&changes));
    let decoded = decode(bytes);
    assert_eq!(decoded.len(), 5);
    let voltage = &decoded["/Dc/0/Voltage"];
    assert_eq!(f64::try_from(&voltage["Value"]).unwrap(), 52.123);
    assert_eq!(<&str>::try_from(&voltage["Text"]).unwrap(), "52.12 V");
    assert_eq!(i32::try_from(&decoded["/ProductId"]["Value"]).unwrap(), 0xBB01);
    assert_eq!(<&str>::try_from(&decoded["/ProductId"]["Text"]).unwrap(), "0xBB01");
    assert_eq!(<&str>::try_from(&decoded["/Serial"]["Value"]).unwrap(), "JBD-Ä1");
    // Invalid is an empty `ai` (victron-dbus.md §2.2) with the text "---".
    let invalid = &decoded["/TimeToGo"];
    assert_eq!(invalid["Value"].value_signature().to_string(), "ai");
    assert_eq!(<Vec<i32>>::try_from(invalid["Value"].try_clone().unwrap()).unwrap(), Vec::<i32>::new());
    assert_eq!(<&str>::try_from(&invalid["Text"]).unwrap(), "---");
    assert_eq!(<&str>::try_from(&decoded["/Dc/0/Temperature"]["Text"]).unwrap(), "25.0 °C");
}

#[test]
fn a_nul_in_a_text_is_left_out_and_an_empty_batch_is_an_empty_dict() {
    let changes = [("/Serial".to_owned(), item(Value::Text("AB\0C".into()), Unit::Plain))];
    let decoded = decode(items_changed(changes.iter().map(|(p, i)| (p.as_str(), i))));
    assert_eq!(<&str>::try_from(&decoded["/Serial"]["Value"]).unwrap(), "ABC");
    // Length 0, then the padding to the (absent) first entry's 8-alignment.
    assert_eq!(items_changed(std::iter::empty()), vec![0; 8]);
    assert_eq!(oracle(&[]), vec![0; 8]);
}

#[test]
fn properties_changed_is_the_entry_of_one_item() {
    let one = item(Value::F64(-3.5), Unit::Amp);
    let bytes = properties_changed(&one);
    let want = zvariant::to_bytes(
        Context::new_dbus(LE, 0),
        &vec![("Value", zvariant::Value::F64(-3.5)), ("Text", zvariant::Value::from("-3.50 A"))],
    )
    .unwrap();
    assert_eq!(bytes, want.to_vec());
    let data = Data::new(bytes, Context::new_dbus(Endian::Little, 0));
    let (decoded, _): (HashMap<String, OwnedValue>, usize) =
        data.deserialize_for_signature(PROPERTIES_CHANGED_SIGNATURE).unwrap();
    assert_eq!(<&str>::try_from(&decoded["Text"]).unwrap(), "-3.50 A");
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>().prop_map(Value::F64),
        any::<i32>().prop_map(Value::I32),
        ".{0,40}".prop_map(Value::Text),
        "[a-z\0]{0,8}".prop_map(Value::Text),
        Just(Value::Invalid),
    ]
}

fn any_unit() -> impl Strategy<Value = Unit> {
    use Unit::*;
    prop_oneof![
        Just(Plain),
        Just(Volt),
        Just(CellVolt),
        Just(Amp),
        Just(Watt),
        Just(Celsius),
        Just(Percent),
        Just(AmpHour),
        Just(Second),
        Just(Hex),
    ]
}

proptest! {
    /// Any batch marshals to zvariant's bytes for it, whatever the values, texts and lengths
    /// (the alignment padding depends on every length before it).
    #[test]
    fn any_batch_is_what_zvariant_marshals(
        changes in proptest::collection::vec(("/[A-Za-z0-9/]{0,30}", any_value(), any_unit()), 0..40)
    ) {
        let changes: Vec<(String, Item)> =
            changes.into_iter().map(|(p, value, unit)| (p, Item { value, unit })).collect();
        let bytes = items_changed(changes.iter().map(|(p, i)| (p.as_str(), i)));
        prop_assert_eq!(&bytes, &oracle(&changes));
        let decoded = decode(bytes);
        for (path, _) in &changes {
            let text = <&str>::try_from(&decoded[path]["Text"]).unwrap().to_owned();
            // A path may repeat; the last one's entry is the one a dict keeps.
            let last = changes.iter().rev().find(|(p, _)| p == path).map(|(_, i)| i).unwrap();
            prop_assert_eq!(text, last.text().replace('\0', ""));
        }
    }
}
