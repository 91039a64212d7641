use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

/// The per-protocol answers as the `match`es of `config.rs` gave them before the registry
/// (commit 0043a11), written out here: the move to specs must not change one of them.
#[test]
fn specs_answer_what_the_old_matches_answered() {
    type Row = (Protocol, &'static str, u32, bool, bool, Option<u8>, &'static [Option<u8>]);
    let before: [Row; 18] = [
        (Protocol::Jbd, "jbd", 9600, false, false, None, &[None]),
        (Protocol::JbdUp16s, "jbd_up16s", 9600, true, false, Some(1), &[Some(1)]),
        (Protocol::JkPb, "jk_pb", 115_200, true, false, Some(1), &[Some(1)]),
        (Protocol::Renogy, "renogy", 9600, true, false, Some(0x30), &[Some(0x30), Some(0xF7)]),
        (Protocol::Eg4Ll, "eg4_ll", 9600, true, false, Some(1), &[Some(1)]),
        (Protocol::Foxess, "foxess", 115_200, true, true, Some(1), &[Some(1)]),
        (Protocol::JkRs485, "jk_rs485", 115_200, false, false, None, &[None]),
        (Protocol::Daly, "daly", 9600, true, false, Some(0x40), &[Some(0x40), Some(0x80)]),
        (Protocol::Eg4Lifepower, "eg4_lifepower", 9600, true, false, Some(1), &[Some(1)]),
        (Protocol::VictronCan, "victron_can", 0, false, false, None, &[None]),
        // Added with issues 20 and 22, not in the old matches.
        (Protocol::DalyCan, "daly_can", 0, true, false, Some(1), &[Some(1)]),
        (Protocol::JkCan, "jk_can", 0, true, false, Some(0), &[Some(0)]),
        (Protocol::Mqtt, "mqtt", 0, false, false, None, &[None]),
        // Added with issue 23.
        (Protocol::Eg4Lifepower4, "eg4_lifepower4", 9600, true, false, Some(1), &[Some(1)]),
        (Protocol::Daren485, "daren_485", 19_200, true, false, Some(1), &[Some(1)]),
        // Added with issue 21.
        (Protocol::JbdBle, "jbd_ble", 0, false, false, None, &[None]),
        (Protocol::JkBle, "jk_ble", 0, false, false, None, &[None]),
        (Protocol::DalyBle, "daly_ble", 0, false, false, None, &[None]),
    ];
    // A protocol added later needs no row here: the rows pin what the existing ones answer.
    for (p, name, baud, addressable, one_per_port, default, probe) in before {
        assert_eq!(p.name(), name);
        assert_eq!(Protocol::from_name(name), Some(p));
        assert_eq!(p.default_baud(), baud, "{name}");
        assert_eq!(p.addressable(), addressable, "{name}");
        assert_eq!(p.one_battery_per_port(), one_per_port, "{name}");
        assert_eq!(p.default_address(), default, "{name}");
        assert_eq!(p.probe_addresses(), probe.to_vec(), "{name}");
        assert_eq!(p.is_can(), Protocol::CAN.contains(&p), "{name}");
        assert_eq!(p.is_mqtt(), p == Protocol::Mqtt, "{name}");
    }
    let serial: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
    // The protocols of the old matches keep their probe order, first; later ones follow.
    let old =
        ["jbd", "jbd_up16s", "jk_pb", "renogy", "eg4_ll", "foxess", "jk_rs485", "daly", "eg4_lifepower"];
    assert!(serial.starts_with(&old), "probe order: {serial:?}");
    assert_eq!(Protocol::CAN, &[Protocol::VictronCan, Protocol::DalyCan, Protocol::JkCan]);
    assert_eq!(Protocol::MQTT, &[Protocol::Mqtt]);
    assert_eq!(Protocol::BLE, &[Protocol::JbdBle, Protocol::JkBle, Protocol::DalyBle]);
    assert_eq!(Protocol::from_name("nope"), None);
    assert!(Protocol::names().starts_with("jbd, jbd_up16s, jk_pb, renogy"));
}

#[test]
fn every_key_has_its_own_spec_in_all() {
    for (key, spec) in KEYS.iter().zip(ALL) {
        assert!(std::ptr::eq(key.spec(), *spec), "{} is keyed to another spec", spec.name);
    }
    let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL.len(), "two specs share a name");
    // ALL, CAN, MQTT and BLE partition the keys by link.
    let mut split: Vec<Protocol> = Protocol::ALL
        .iter()
        .chain(Protocol::CAN)
        .chain(Protocol::MQTT)
        .chain(Protocol::BLE)
        .copied()
        .collect();
    split.sort_by_key(|p| p.name());
    let mut every: Vec<Protocol> = Protocol::every().collect();
    every.sort_by_key(|p| p.name());
    assert_eq!(split, every);
    assert!(Protocol::ALL.iter().all(|p| !p.is_can() && !p.is_mqtt()));
    assert!(Protocol::CAN.iter().all(|p| p.is_can()) && Protocol::MQTT.iter().all(|p| p.is_mqtt()));
    assert!(Protocol::ALL.iter().chain(Protocol::CAN).chain(Protocol::MQTT).all(|p| p.ble().is_none()));
    assert!(Protocol::BLE.iter().all(|p| p.ble().is_some()));
}

#[test]
fn an_address_without_addressing_is_never_the_default() {
    for spec in ALL {
        assert_eq!(spec.addressable, spec.default_address.is_some(), "{}", spec.name);
        if let Some(address) = spec.default_address {
            assert_eq!((spec.address_problem)(address), None, "{}: default refused", spec.name);
            assert_eq!(spec.probe_addresses.first(), Some(&Some(address)), "{}", spec.name);
        }
    }
}

#[test]
fn address_rules() {
    assert!(Protocol::Daly.address_problem(0x3F).unwrap().contains("not a Daly host address"));
    assert_eq!(Protocol::Daly.address_problem(0x40), None);
    assert_eq!(Protocol::Daly.address_problem(0x80), None);
    assert!(Protocol::Eg4Lifepower.address_problem(0).unwrap().contains("1..=15"));
    assert!(Protocol::Eg4Lifepower.address_problem(16).is_some());
    assert_eq!(Protocol::Eg4Lifepower.address_problem(15), None);
    assert!(Protocol::JkPb.address_problem(0).unwrap().contains("bus master"));
    assert_eq!(Protocol::JkPb.address_problem(16).as_deref(), Some("JK PB addresses are 1..=15"));
    assert_eq!(Protocol::JkPb.address_problem(15), None);
    assert_eq!(Protocol::Renogy.address_problem(0xF7), None);
}

#[test]
fn support_per_protocol() {
    assert_eq!(Protocol::Jbd.writes(), WriteSupport { mosfet: true, soc: false });
    assert_eq!(Protocol::JbdUp16s.writes(), WriteSupport { mosfet: false, soc: true });
    for p in Protocol::every().filter(|p| !matches!(p, Protocol::Jbd | Protocol::JbdUp16s)) {
        assert!(!p.writes().any(), "{}", p.name());
    }
}

#[test]
fn writes_go_through_the_spec() {
    use crate::protocol::writes::FetRequest;
    let charge_off = Write::Mosfets(FetRequest { charge_on: false, discharge_on: true });
    assert_eq!(Protocol::Jbd.write_request(1, charge_off), Some(hex("DD 5A E1 02 00 01 FF 1C 77")));
    let soc = Protocol::JbdUp16s.write_request(1, Write::Soc(98.0));
    assert_eq!(soc, Some(hex("01 79 20 06 20 08 00 06 11 4A 42 44 26 48 42 10")));
    assert_eq!(Protocol::Jbd.write_request(1, Write::Soc(50.0)), None);
    assert_eq!(Protocol::Daly.write_request(0x40, Write::Mosfets(FetRequest::default())), None);
    assert_eq!(Protocol::Jbd.check_ack(1, &hex("DD E1 00 00 00 00 77")), Ok(()));
    assert_eq!(Protocol::JbdUp16s.check_ack(1, &hex("01 79 20 06 20 08 00 00 6C 62")), Ok(()));
    assert!(Protocol::JbdUp16s.check_ack(2, &hex("01 79 20 06 20 08 00 00 6C 62")).is_err());
    let ack = hex("DD E1 00 00 00 00 77");
    assert!(Protocol::Renogy.check_ack(1, &ack).is_err(), "no writes, no acknowledgement");
    assert_eq!((Protocol::Jbd.ack_scan())(&ack), Scan::Frame { len: ack.len() });
    let up = hex("01 79 20 06 20 08 00 00 6C 62");
    assert_eq!((Protocol::JbdUp16s.ack_scan())(&up), Scan::Frame { len: up.len() });
}

#[test]
fn config_names_parse_and_unknown_names_list_the_registry() {
    #[derive(Debug, Deserialize)]
    struct Port {
        protocol: Protocol,
    }
    let port: Port = toml::from_str("protocol = \"eg4_lifepower\"").unwrap();
    assert_eq!(port.protocol, Protocol::Eg4Lifepower);
    let error = toml::from_str::<Port>("protocol = \"jbd2\"").unwrap_err().to_string();
    assert!(error.contains("unknown variant `jbd2`, expected one of `jbd`, `jbd_up16s`"), "{error}");
    assert!(error.contains("`victron_can`"), "{error}");
}

#[test]
fn tools_reach_the_codec_by_name() {
    let unknown = decode_named("nope", &[]).unwrap_err().to_string();
    assert!(unknown.starts_with("unknown protocol \"nope\" (known: jbd, jbd_up16s"), "{unknown}");
    let can = decode_named("victron_can", &[0; 8]).unwrap_err().to_string();
    assert_eq!(can, "victron_can frames need their CAN id (--can-id 0x351)");
    let not_can = decode_can_named("jbd", 0x351, &[0; 8]).unwrap_err().to_string();
    assert!(not_can.starts_with("\"jbd\" is not a CAN protocol (CAN: victron_can"), "{not_can}");
    assert!(scan_named("victron_can").is_none() && scan_named("nope").is_none());
    for p in Protocol::ALL {
        assert!(scan_named(p.name()).is_some(), "{}: no scanner", p.name());
    }
    // Vector `sp04s034_basic_jbdtool` of tests/vectors/jbd.json (15.6 V, 100 %), behind two
    // garbage bytes: the spec's decoder finds the frame first.
    let reply = hex(
        "00 77 DD 03 00 1D 06 18 00 00 01 F2 01 F4 00 00 2C 7C 00 00 00 00 00 00 80 64 03 04 03 0B 8C 0B \
         8A 0B 84 FA 8C 77",
    );
    let decoded = decode_named("jbd", &reply).unwrap();
    assert_eq!(decoded.battery.voltage_v, Some(15.6));
    assert_eq!(decoded.battery.soc_percent, Some(100.0));
}

#[test]
fn serialbattery_classes_map_as_before() {
    // The table `import/keys.rs` held before the registry (commit 0043a11).
    let before = [
        ("LltJbd", "jbd"),
        ("LltJbd_Up16s", "jbd_up16s"),
        ("Jkbms", "jk_rs485"),
        ("Jkbms_pb", "jk_pb"),
        ("Daly", "daly"),
        ("EG4_Lifepower", "eg4_lifepower"),
        ("EG4_LL", "eg4_ll"),
        ("Renogy", "renogy"),
        // Added with issue 22.
        ("Daly_Can", "daly_can"),
        ("Jkbms_Can", "jk_can"),
        // Added with issue 23.
        ("Daren485", "daren_485"),
    ];
    for (class, name) in before {
        assert_eq!(Protocol::for_serialbattery_class(class).map(Protocol::name), Some(name), "{class}");
    }
    assert_eq!(Protocol::for_serialbattery_class(" Daly "), Some(Protocol::Daly));
    assert_eq!(Protocol::for_serialbattery_class("Lipro"), None);
}

#[test]
fn can_protocols_say_how_they_are_read() {
    // What app.rs and config/can.rs decide by, instead of naming protocols.
    let kinds: Vec<(&str, bool, bool, bool)> = Protocol::CAN
        .iter()
        .map(|p| (p.name(), p.is_polled_can(), p.listens_per_bus(), p.listens_per_address()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("victron_can", false, true, false),
            ("daly_can", true, false, false),
            ("jk_can", false, false, true)
        ]
    );
    assert!(Protocol::every()
        .filter(|p| !p.is_can())
        .all(|p| !p.listens_per_bus() && !p.listens_per_address()));
}
