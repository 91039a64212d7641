use super::*;

fn pack(voltage: f64, current: f64, soc: f64, capacity: f64, cells: Vec<f64>) -> Battery {
    Battery {
        voltage_v: Some(voltage),
        current_a: Some(current),
        soc_percent: Some(soc),
        remaining_capacity_ah: Some(capacity * soc / 100.0),
        nominal_capacity_ah: Some(capacity),
        cell_count: Some(u16::try_from(cells.len()).unwrap_or(0)),
        cell_voltages_v: Some(cells),
        temperatures_c: Some(vec![20.0, 22.0]),
        charge_fet: Some(true),
        discharge_fet: Some(true),
        alarms: Alarms { bms_cable: Some(AlarmLevel::Ok), ..Alarms::default() },
        ..Battery::default()
    }
}

fn views(packs: &[Battery], online: &[bool]) -> Vec<PackView<'static>> {
    let leaked: &'static [Battery] = Box::leak(packs.to_vec().into_boxed_slice());
    leaked.iter().zip(online).map(|(battery, &online)| PackView { battery, online }).collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

fn three() -> Vec<Battery> {
    let mut p3 = pack(13.3, 5.0, 90.0, 280.0, vec![3.32, 3.33, 3.34, 3.31]);
    p3.temperatures_c = Some(vec![25.0, 31.0]);
    p3.alarms.low_soc = Some(AlarmLevel::Warning);
    vec![
        pack(13.2, 10.0, 50.0, 100.0, vec![3.30, 3.29, 3.31, 3.30]),
        pack(13.4, 30.0, 70.0, 200.0, vec![3.35, 3.36, 3.28, 3.41]),
        p3,
    ]
}

#[test]
fn parallel_bank_sums_currents_and_weights_soc_by_capacity() {
    let packs = three();
    let bank = aggregate(Topology::Parallel, &views(&packs, &[true, true, true]));
    assert!(close(bank.current_a, 45.0));
    assert!(close(bank.voltage_v, 13.3));
    assert!(close(bank.nominal_capacity_ah, 580.0));
    assert!(close(bank.remaining_capacity_ah, 50.0 + 140.0 + 252.0));
    assert!(close(bank.soc_percent, (50.0 * 100.0 + 70.0 * 200.0 + 90.0 * 280.0) / 580.0));
    assert_eq!(bank.cell_count, Some(4));
    assert_eq!(bank.cell_voltages_v, None, "parallel packs have no single cell list");
    assert_eq!(bank.max_cell(), Some((None, 3.41)));
    assert_eq!(bank.min_cell(), Some((None, 3.28)));
    let ids = bank.extreme_ids.clone().unwrap_or_default();
    assert_eq!(ids.max_cell.as_deref(), Some("P2C4"));
    assert_eq!(ids.min_cell.as_deref(), Some("P2C3"));
    assert_eq!(ids.max_temperature.as_deref(), Some("P3T2"));
    assert_eq!(ids.min_temperature.as_deref(), Some("P1T1"));
    assert_eq!(bank.temperature_extremes().map(|(lo, hi)| (lo.1, hi.1)), Some((20.0, 31.0)));
    assert_eq!(bank.alarms.low_soc, Some(AlarmLevel::Warning), "worst level of any pack");
    assert_eq!(bank.alarms.bms_cable, Some(AlarmLevel::Ok));
    assert_eq!((bank.modules_online, bank.modules_offline), (Some(3), Some(0)));
    assert_eq!(bank.modules_blocking_charge, Some(0));
    assert_eq!(bank.charge_current_limit_a, None, "limits come from bank::limits");
}

#[test]
fn a_pack_offline_leaves_the_others_and_raises_a_cable_warning() {
    let mut packs = three();
    // What the monitor shows for a lost pack: identity and cell count, no measurements.
    packs[1] = Battery {
        cell_count: Some(4),
        alarms: Alarms { bms_cable: Some(AlarmLevel::Alarm), ..Alarms::default() },
        ..Battery::default()
    };
    let bank = aggregate(Topology::Parallel, &views(&packs, &[true, false, true]));
    assert!(close(bank.current_a, 15.0));
    assert!(close(bank.voltage_v, 13.25));
    assert!(close(bank.nominal_capacity_ah, 380.0));
    assert_eq!(bank.extreme_ids.as_ref().and_then(|i| i.max_cell.clone()).as_deref(), Some("P3C3"));
    assert_eq!(bank.alarms.bms_cable, Some(AlarmLevel::Warning));
    assert_eq!((bank.modules_online, bank.modules_offline), (Some(2), Some(1)));
}

#[test]
fn blocking_packs_are_counted_and_the_fet_is_on_while_any_pack_conducts() {
    let mut packs = three();
    packs[0].charge_fet = Some(false);
    let bank = aggregate(Topology::Parallel, &views(&packs, &[true, true, true]));
    assert_eq!(bank.modules_blocking_charge, Some(1));
    assert_eq!(bank.charge_fet, Some(true));
    for p in &mut packs {
        p.charge_fet = Some(false);
    }
    let bank = aggregate(Topology::Parallel, &views(&packs, &[true, true, true]));
    assert_eq!((bank.modules_blocking_charge, bank.charge_fet), (Some(3), Some(false)));
}

#[test]
fn packs_with_different_cell_counts_take_the_smaller_and_raise_an_alarm() {
    let mut packs = three();
    packs[2].cell_voltages_v = Some(vec![3.3; 3]);
    packs[2].cell_count = Some(3);
    let bank = aggregate(Topology::Parallel, &views(&packs, &[true, true, true]));
    assert_eq!(bank.cell_count, Some(3));
    assert_eq!(bank.alarms.internal_failure, Some(AlarmLevel::Alarm));
}

#[test]
fn series_bank_adds_voltages_and_concatenates_cells() {
    let packs = vec![
        pack(13.2, 10.0, 50.0, 100.0, vec![3.30, 3.29, 3.31, 3.30]),
        pack(13.4, 10.2, 70.0, 100.0, vec![3.35, 3.36, 3.28, 3.41]),
    ];
    let bank = aggregate(Topology::Series, &views(&packs, &[true, true]));
    assert!(close(bank.voltage_v, 26.6));
    assert!(close(bank.current_a, 10.1));
    assert_eq!(bank.cell_count, Some(8));
    assert_eq!(bank.cell_voltages_v.as_ref().map(Vec::len), Some(8));
    assert!(close(bank.soc_percent, 50.0), "the weakest pack");
    assert_eq!(bank.extreme_ids.as_ref().and_then(|i| i.max_cell.clone()).as_deref(), Some("P2C4"));
    let partial = aggregate(Topology::Series, &views(&packs, &[true, false]));
    assert_eq!(partial.voltage_v, None, "no partial sum");
    assert_eq!(partial.cell_voltages_v, None);
    assert_eq!(partial.cell_count, Some(8));
    assert_eq!(partial.alarms.bms_cable, Some(AlarmLevel::Warning));
}
