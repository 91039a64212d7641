use super::*;
use crate::battery::Battery;

fn reading(current: f64, capacity: f64, top_cell: f64) -> Battery {
    let mut cells = vec![3.30; 16];
    cells[4] = top_cell;
    Battery {
        voltage_v: Some(cells.iter().sum()),
        current_a: Some(current),
        soc_percent: Some(60.0),
        nominal_capacity_ah: Some(capacity),
        remaining_capacity_ah: Some(capacity * 0.6),
        cell_voltages_v: Some(cells),
        charge_fet: Some(true),
        discharge_fet: Some(true),
        ..Battery::default()
    }
}

fn monitor(t0: Instant, charge: ChargeConfig) -> Monitor {
    Monitor::new(t0, BatteryConfig::default(), Duration::from_secs(10), ChargeController::new(charge))
}

struct Bank {
    packs: Vec<Monitor>,
    bank: Monitor,
}

impl Bank {
    fn new(t0: Instant, n: usize) -> Self {
        let charge = ChargeConfig::default();
        Self {
            packs: (0..n).map(|_| monitor(t0, charge.clone())).collect(),
            bank: monitor(t0, bank_charge_config(&charge, Topology::Parallel, n)),
        }
    }

    fn cycle(&mut self, now: Instant) -> (Vec<Output>, Output) {
        let outputs: Vec<Output> = self.packs.iter_mut().map(|m| m.output(now)).collect();
        let out = bank_cycle(Topology::Parallel, &ChargeConfig::default(), &mut self.bank, &outputs, now);
        (outputs, out)
    }
}

#[test]
fn the_bank_publishes_sums_and_the_split_limit_and_pack_services_no_limits() {
    let t0 = Instant::now();
    let mut bank = Bank::new(t0, 3);
    // Unequal packs: 100, 200 and 280 Ah; the 280 Ah pack has the lowest resistance.
    for (m, (i, c)) in bank.packs.iter_mut().zip([(10.0, 100.0), (15.0, 200.0), (25.0, 280.0)]) {
        m.handle_reading(t0, reading(i, c, 3.31));
    }
    let (packs, out) = bank.cycle(t0);
    assert!(out.connected);
    assert_eq!(out.battery.current_a, Some(50.0));
    assert_eq!(out.battery.nominal_capacity_ah, Some(580.0));
    // 25 A of 50 on pack 3, whose own limit is 50 A: the bank may take 100 A.
    assert_eq!(out.limits.charge_current_a, Some(100.0));
    assert!((out.limits.charge_voltage_v.unwrap_or(0.0) - 55.2).abs() < 1e-9);
    let shown = pack_output(&packs[0]);
    assert_eq!(shown.limits.charge_voltage_v, None);
    assert_eq!(shown.limits.charge_current_a, None);
    assert_eq!(shown.battery.current_a, Some(10.0));
}

#[test]
fn the_highest_cell_of_any_pack_governs_the_bank() {
    let t0 = Instant::now();
    let mut bank = Bank::new(t0, 2);
    bank.packs[0].handle_reading(t0, reading(10.0, 100.0, 3.31));
    bank.packs[1].handle_reading(t0, reading(10.0, 100.0, 3.44));
    let (_, out) = bank.cycle(t0);
    // Pack 2's own CCL drops with its high cell (derived taper, that cell 140 mV ahead: 0.24 x
    // 50 A at 3.44 V); it takes half the current, so the bank may take twice that.
    let ccl = out.limits.charge_current_a.unwrap_or(0.0);
    assert!((ccl - 24.0).abs() < 1e-6, "{ccl}");
    assert_eq!(out.battery.extreme_ids.and_then(|i| i.max_cell).as_deref(), Some("P2C5"));
}

#[test]
fn a_lost_pack_shrinks_the_limits_and_all_lost_is_the_single_battery_fail_safe() {
    let t0 = Instant::now();
    let mut bank = Bank::new(t0, 2);
    for m in &mut bank.packs {
        m.handle_reading(t0, reading(10.0, 100.0, 3.31));
    }
    let (_, out) = bank.cycle(t0);
    assert_eq!(out.limits.charge_current_a, Some(100.0));
    let t1 = t0 + Duration::from_secs(11);
    bank.packs[0].handle_reading(t1, reading(10.0, 100.0, 3.31));
    let (packs, out) = bank.cycle(t1);
    assert!(!packs[1].connected);
    assert!(out.connected, "the bank stays");
    assert_eq!(out.limits.charge_current_a, Some(50.0));
    assert_eq!(out.battery.alarms.bms_cable, Some(AlarmLevel::Warning));
    assert_eq!((out.battery.modules_online, out.battery.modules_offline), (Some(1), Some(1)));
    assert_eq!(pack_output(&packs[1]).battery.alarms.bms_cable, Some(AlarmLevel::Warning));
    let t2 = t1 + Duration::from_secs(10);
    let (_, out) = bank.cycle(t2);
    assert!(!out.connected);
    assert_eq!(out.limits.charge_current_a, Some(0.0));
    assert_eq!(out.battery.voltage_v, None, "never frozen");
    assert_eq!(out.battery.alarms.bms_cable, Some(AlarmLevel::Alarm));
    assert_eq!((out.battery.modules_online, out.battery.modules_offline), (Some(0), Some(2)));
}

#[test]
fn a_pack_blocking_charge_removes_its_share_and_all_blocking_is_ccl_zero() {
    let t0 = Instant::now();
    let mut bank = Bank::new(t0, 2);
    bank.packs[0].handle_reading(t0, Battery { charge_fet: Some(false), ..reading(10.0, 100.0, 3.31) });
    bank.packs[1].handle_reading(t0, reading(10.0, 100.0, 3.31));
    let (_, out) = bank.cycle(t0);
    assert_eq!(out.limits.charge_current_a, Some(50.0));
    assert_eq!(out.battery.modules_blocking_charge, Some(1));
    bank.packs[1].handle_reading(t0, Battery { charge_fet: Some(false), ..reading(10.0, 100.0, 3.31) });
    let (_, out) = bank.cycle(t0);
    assert_eq!(out.limits.charge_current_a, Some(0.0));
    assert_eq!(out.limits.discharge_current_a, Some(120.0));
}
