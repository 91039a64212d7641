use super::*;
use crate::battery::Alarms;

fn identity(max_cells: usize) -> Identity {
    Identity {
        service_suffix: "ttyUSB0".into(),
        unique_id: "jbd_123".into(),
        product_name: "JBD BMS".into(),
        connection: "Serial ttyUSB0".into(),
        custom_name: String::new(),
        firmware_version: "1.0".into(),
        hardware_version: String::new(),
        serial: String::new(),
        fallback_device_instance: 7,
        max_cells,
        manufacturer: "JBD".to_owned(),
        connection_information: "JBD (jbd) on /dev/ttyUSB0".to_owned(),
    }
}

fn snapshot<'a>(battery: &'a Battery, limits: &'a ChargeLimits, connected: bool) -> Snapshot<'a> {
    Snapshot { battery, limits, connected, state: 9, error_code: 0, history: None }
}

fn items_for(battery: &Battery, limits: &ChargeLimits, max_cells: usize) -> Items {
    let identity = identity(max_cells);
    let snapshot = snapshot(battery, limits, true);
    collect(&Context { identity: &identity, device_instance: 3, custom_name: "", snapshot: &snapshot })
}

fn value(items: &Items, path: &str) -> Value {
    items.get(path).unwrap_or_else(|| panic!("{path} missing")).value.clone()
}

const MANDATORY: &[&str] = &[
    "/Mgmt/ProcessName",
    "/Mgmt/ProcessVersion",
    "/Mgmt/Connection",
    "/DeviceInstance",
    "/ProductId",
    "/ProductName",
    "/Connected",
    "/CustomName",
];

#[test]
fn an_empty_battery_publishes_invalid_never_zero() {
    let items = items_for(&Battery::default(), &ChargeLimits::default(), 4);
    for path in MANDATORY {
        assert!(value(&items, path).is_valid(), "{path} must be valid");
    }
    for (path, item) in &items {
        if MANDATORY.contains(&path.as_str())
            || ["/State", "/ErrorCode", "/FirmwareVersion"].contains(&path.as_str())
            || path.starts_with("/System/NrOfModules")
            // What the service knows of itself, not data of the battery.
            || ["/Manufacturer", "/DeviceName", "/ConnectionInformation", "/History/CanBeCleared"]
                .contains(&path.as_str())
            // A command path: reads 0 (nothing to clear is requested), whatever the data.
            || path == "/History/Clear"
            || (path.starts_with("/System/Temperature") && path.ends_with("Name"))
        {
            continue;
        }
        assert_eq!(item.value, Value::Invalid, "{path} must be invalid without data");
    }
    assert_eq!(value(&items, "/DeviceInstance"), Value::I32(3));
    assert_eq!(value(&items, "/ProductId"), Value::I32(PRODUCT_ID));
    assert_eq!(items["/ProductId"].text(), "0xBB01");
    assert_eq!(value(&items, "/HardwareVersion"), Value::Invalid);
}

#[test]
fn measurements_power_and_consumed_amphours() {
    let battery = Battery {
        voltage_v: Some(52.0),
        current_a: Some(-10.0),
        remaining_capacity_ah: Some(80.0),
        full_capacity_ah: Some(100.0),
        nominal_capacity_ah: Some(105.0),
        temperatures_c: Some(vec![20.0, 24.0, 22.0]),
        cell_voltages_v: Some(vec![3.30, 3.28, 3.35, 3.31]),
        balancing_cells: Some(vec![false, false, true, false]),
        ..Default::default()
    };
    let items = items_for(&battery, &ChargeLimits::default(), 4);
    assert_eq!(value(&items, "/Dc/0/Power"), Value::F64(-520.0));
    assert_eq!(value(&items, "/ConsumedAmphours"), Value::F64(-20.0));
    assert_eq!(value(&items, "/Capacity"), Value::F64(80.0));
    assert_eq!(value(&items, "/InstalledCapacity"), Value::F64(105.0));
    assert_eq!(value(&items, "/Dc/0/Temperature"), Value::F64(22.0));
    assert_eq!(value(&items, "/System/MinTemperatureCellId"), Value::Text("T1".into()));
    assert_eq!(value(&items, "/System/MaxTemperatureCellId"), Value::Text("T2".into()));
    assert_eq!(value(&items, "/System/MaxVoltageCellId"), Value::Text("C3".into()));
    assert_eq!(value(&items, "/System/MinVoltageCellId"), Value::Text("C2".into()));
    assert_eq!(value(&items, "/System/NrOfCellsPerBattery"), Value::I32(4));
    assert_eq!(value(&items, "/Balancing"), Value::I32(1));
    assert_eq!(value(&items, "/Balances/Cell3"), Value::I32(1));
    assert_eq!(value(&items, "/Voltages/Cell4"), Value::F64(3.31));
    assert!(matches!(value(&items, "/Voltages/Diff"), Value::F64(d) if (d - 0.07).abs() < 1e-9));
    assert_eq!(items["/Dc/0/Voltage"].text(), "52.00 V");
}

#[test]
fn consumed_amphours_is_never_positive() {
    let battery =
        Battery { remaining_capacity_ah: Some(101.0), full_capacity_ah: Some(100.0), ..Default::default() };
    let items = items_for(&battery, &ChargeLimits::default(), 0);
    assert_eq!(value(&items, "/ConsumedAmphours"), Value::F64(0.0));
}

#[test]
fn cell_paths_follow_max_cells_not_the_battery() {
    let battery = Battery { cell_voltages_v: Some(vec![3.3; 6]), ..Default::default() };
    let items = items_for(&battery, &ChargeLimits::default(), 4);
    assert!(items.contains_key("/Voltages/Cell4"));
    assert!(!items.contains_key("/Voltages/Cell5"), "extra cells are left out");
    let fewer = Battery { cell_voltages_v: Some(vec![3.3; 2]), ..Default::default() };
    let items2 = items_for(&fewer, &ChargeLimits::default(), 4);
    assert_eq!(value(&items2, "/Voltages/Cell3"), Value::Invalid);
    assert_eq!(value(&items2, "/Balances/Cell1"), Value::Invalid);
    let keys: Vec<_> = items.keys().collect();
    let keys2: Vec<_> = items2.keys().collect();
    assert_eq!(keys, keys2, "the path set never changes");
}

/// Cell paths are named once for the first 64 cells and formatted beyond: every cell of a
/// 70-cell pack has its voltage and balance path with its own value, numbered from 1.
#[test]
fn every_cell_has_its_paths_beyond_the_named_ones_too() {
    let volts: Vec<f64> = (0..70).map(|i| 3.0 + f64::from(i) / 1000.0).collect();
    let balancing: Vec<bool> = (0..70).map(|i| i % 3 == 0).collect();
    let battery = Battery {
        cell_voltages_v: Some(volts.clone()),
        balancing_cells: Some(balancing.clone()),
        ..Default::default()
    };
    let items = items_for(&battery, &ChargeLimits::default(), 70);
    for (index, (v, b)) in volts.iter().zip(&balancing).enumerate() {
        let n = index + 1;
        assert_eq!(value(&items, &format!("/Voltages/Cell{n}")), Value::F64(*v), "cell {n}");
        assert_eq!(value(&items, &format!("/Balances/Cell{n}")), Value::I32(i32::from(*b)), "cell {n}");
    }
    assert!(!items.contains_key("/Voltages/Cell71") && !items.contains_key("/Voltages/Cell0"));
    assert_eq!(items.keys().filter(|k| k.starts_with("/Voltages/Cell")).count(), 70);
    assert_eq!(value(&items, "/System/Temperature3Name"), Value::Text("Temperature 3".into()));
    assert_eq!(value(&items, "/Alarms/LowCellVoltage"), Value::Invalid);
}

#[test]
fn limits_and_flags() {
    let limits = ChargeLimits {
        charge_voltage_v: Some(55.2),
        charge_current_a: Some(0.0),
        discharge_current_a: Some(100.0),
        low_voltage_v: Some(46.4),
        charge_mode: "Bulk".into(),
        charge_limitation: String::new(),
        discharge_limitation: "Config max".into(),
        ..Default::default()
    };
    let battery = Battery { charge_fet: Some(false), discharge_fet: Some(true), ..Default::default() };
    let items = items_for(&battery, &limits, 0);
    assert_eq!(value(&items, "/Info/MaxChargeVoltage"), Value::F64(55.2));
    assert_eq!(value(&items, "/Info/MaxChargeCurrent"), Value::F64(0.0), "CCL 0 is a real 0");
    assert_eq!(value(&items, "/Info/ChargeMode"), Value::Text("Bulk".into()));
    assert_eq!(value(&items, "/Info/ChargeLimitation"), Value::Invalid);
    assert_eq!(value(&items, "/Io/AllowToCharge"), Value::I32(0));
    assert_eq!(value(&items, "/System/NrOfModulesBlockingCharge"), Value::I32(1));
    assert_eq!(value(&items, "/System/NrOfModulesBlockingDischarge"), Value::I32(0));
}

#[test]
fn alarms_and_summary() {
    let battery = Battery {
        alarms: Alarms {
            low_soc: Some(AlarmLevel::Warning),
            high_voltage: Some(AlarmLevel::Ok),
            ..Default::default()
        },
        ..Default::default()
    };
    let items = items_for(&battery, &ChargeLimits::default(), 0);
    assert_eq!(value(&items, "/Alarms/LowSoc"), Value::I32(1));
    assert_eq!(value(&items, "/Alarms/HighVoltage"), Value::I32(0));
    assert_eq!(value(&items, "/Alarms/BmsCable"), Value::Invalid);
    assert_eq!(value(&items, "/Alarms/Alarm"), Value::I32(1));
    for (_, leaf, _) in battery.alarms.entries() {
        assert!(items.contains_key(&format!("/Alarms/{leaf}")));
    }
}

#[test]
fn midpoint_temperatures_cell_cvl_and_derived_alarms() {
    // 5 cells, odd: first half = cells 1-2 + half of cell 3.
    let battery = Battery {
        cell_voltages_v: Some(vec![3.30, 3.30, 3.30, 3.32, 3.34]),
        temperatures_c: Some(vec![21.0, 22.5]),
        soc_percent: Some(15.0),
        balancing_cells: Some(vec![false; 5]),
        ..Battery::default()
    };
    let limits = ChargeLimits { charge_voltage_v: Some(17.25), ..ChargeLimits::default() };
    let items = items_for(&battery, &limits, 5);
    let f = |path: &str| match value(&items, path) {
        Value::F64(v) => v,
        other => panic!("{path}: {other:?}"),
    };
    let first = 3.30 + 3.30 + 3.30 / 2.0;
    let total = 3.30 + 3.30 + 3.30 + 3.32 + 3.34;
    assert!((f("/Dc/0/MidVoltage") - first).abs() < 1e-9);
    assert!((f("/Dc/0/MidVoltageDeviation") - ((total - first) - first).abs() / total * 100.0).abs() < 1e-9);
    assert_eq!(f("/System/Temperature2"), 22.5);
    assert_eq!(value(&items, "/System/Temperature3"), Value::Invalid);
    assert_eq!(value(&items, "/System/Temperature1Name"), Value::Text("Temperature 1".into()));
    assert!((f("/Info/MaxChargeCellVoltage") - 3.45).abs() < 1e-9, "17.25 V over 5 cells");
    // SoC 15 %: the BMS reports no low-SoC alarm, so the warning is derived; the summary stays
    // the BMS's own (none reported: invalid).
    assert_eq!(value(&items, "/Alarms/LowSoc"), Value::I32(1));
    assert_eq!(value(&items, "/Alarms/Alarm"), Value::Invalid);
    assert_eq!(value(&items, "/Io/AllowToBalance"), Value::I32(1));
}

/// A battery whose values depend on `step`: some paths change from one step to the next, some
/// stay, some turn invalid and valid again.
fn battery_at(step: u32) -> Battery {
    let cells = if step % 3 == 2 { None } else { Some(vec![3.30 + f64::from(step % 2) * 0.01; 4]) };
    Battery {
        voltage_v: Some(52.0 + f64::from(step) * 0.01),
        current_a: (step % 4 != 1).then_some(-5.0),
        soc_percent: Some(80.0),
        cell_voltages_v: cells,
        temperatures_c: Some(vec![20.0 + f64::from(step)]),
        ..Battery::default()
    }
}

#[test]
fn an_update_in_place_gives_what_collect_and_diff_give() {
    // The oracle is the rebuild the daemon used to do: collect the next items, diff them
    // against the last.
    // Twice: with the shadow kept from cycle to cycle (as the service does), and forgotten
    // before each cycle (every path looked up).
    for keep_shadow in [true, false] {
        updates_follow_collect_and_diff(keep_shadow);
    }
}

fn updates_follow_collect_and_diff(keep_shadow: bool) {
    let identity = identity(4);
    let limits = ChargeLimits::default();
    let mut live = Items::new();
    let mut last = Items::new();
    let mut shadow = Shadow::default();
    for step in 0..12 {
        let battery = battery_at(step);
        let snapshot = snapshot(&battery, &limits, step != 5);
        let context =
            Context { identity: &identity, device_instance: 3, custom_name: "", snapshot: &snapshot };
        let next = collect(&context);
        let want = crate::victron::diff::diff(&last, &next);
        if !keep_shadow {
            shadow.clear();
        }
        let got = update(&context, &mut live, &mut shadow);
        assert_eq!(got, want, "step {step}");
        assert_eq!(live, next, "step {step}");
        if step > 0 {
            assert!(got.len() < next.len(), "step {step}: only changes, not every path");
        }
        last = next;
    }
}

#[test]
fn an_update_keeps_the_clients_settings_and_drops_paths_no_longer_published() {
    let limits = ChargeLimits::default();
    let battery = battery_at(0);
    let snapshot = snapshot(&battery, &limits, true);
    let wide = identity(8);
    let mut live = Items::new();
    let mut shadow = Shadow::default();
    let wide_context = Context { identity: &wide, device_instance: 3, custom_name: "", snapshot: &snapshot };
    update(&wide_context, &mut live, &mut shadow);
    live.insert("/Settings/ForceChargingOff".into(), Item { value: Value::I32(1), unit: Unit::Plain });
    assert!(live.contains_key("/Voltages/Cell8"));
    let narrow = identity(4);
    let changes = update(
        &Context { identity: &narrow, device_instance: 3, custom_name: "", snapshot: &snapshot },
        &mut live,
        &mut shadow,
    );
    assert!(changes.is_empty(), "{changes:?}");
    assert!(!live.contains_key("/Voltages/Cell8"), "a cell the service no longer has is not kept frozen");
    assert_eq!(live["/Settings/ForceChargingOff"].value, Value::I32(1));
    let mut want =
        collect(&Context { identity: &narrow, device_instance: 3, custom_name: "", snapshot: &snapshot });
    want.insert("/Settings/ForceChargingOff".into(), Item { value: Value::I32(1), unit: Unit::Plain });
    assert_eq!(live, want);

    // A table edited from outside (a client's write) is brought back once the shadow is cleared.
    let narrow_context =
        Context { identity: &narrow, device_instance: 3, custom_name: "", snapshot: &snapshot };
    assert!(update(&narrow_context, &mut live, &mut shadow).is_empty(), "nothing changed");
    live.insert("/Dc/0/Voltage".into(), Item { value: Value::F64(1.0), unit: Unit::Volt });
    shadow.clear();
    let changes = update(&narrow_context, &mut live, &mut shadow);
    assert_eq!(changes.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["/Dc/0/Voltage"]);
    assert_eq!(live["/Dc/0/Voltage"].value, Value::F64(52.0));
}
