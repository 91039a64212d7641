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

fn rated(charge: f64, discharge: f64) -> BatteryConfig {
    BatteryConfig {
        max_charge_current: Some(charge),
        max_discharge_current: Some(discharge),
        ..Default::default()
    }
}

struct Bank {
    packs: Vec<Monitor>,
    control: BankControl,
    members: Vec<bool>,
}

impl Bank {
    fn with(t0: Instant, topology: Topology, charge: ChargeConfig, options: &[BatteryConfig]) -> Self {
        let names = (1..=options.len()).map(|i| format!("/dev/ttyUSB{}", i - 1)).collect();
        Self {
            packs: options.iter().map(|o| monitor(t0, o.charge_config(&charge))).collect(),
            control: BankControl::new(topology, &charge, options, names, |c| {
                Monitor::new(t0, BatteryConfig::default(), Duration::from_secs(10), c)
            }),
            members: vec![true; options.len()],
        }
    }

    /// `n` default packs; the bank's limits follow their targets at once (no recovery hold or
    /// ramp), so a test sees the split limit itself.
    fn new(t0: Instant, n: usize) -> Self {
        let instant = ChargeConfig {
            current_recovery_hold_s: 0.0,
            current_recovery_a_per_s: 0.0,
            ..Default::default()
        };
        Self::with(t0, Topology::Parallel, instant, &vec![BatteryConfig::default(); n])
    }

    /// The packs' latest readings seen twice, a second apart (a steady current: the split is
    /// measured), the second time at `now`.
    fn cycle_steady(&mut self, now: Instant) -> (Vec<Output>, Output) {
        let readings: Vec<Battery> = self.packs.iter().map(|m| m.latest().clone()).collect();
        let before = now - Duration::from_secs(1);
        for (m, r) in self.packs.iter_mut().zip(&readings) {
            m.handle_reading(before, r.clone());
        }
        self.cycle(before);
        for (m, r) in self.packs.iter_mut().zip(readings) {
            m.handle_reading(now, r);
        }
        self.cycle(now)
    }

    fn cycle(&mut self, now: Instant) -> (Vec<Output>, Output) {
        let outputs: Vec<Output> = self.packs.iter_mut().map(|m| m.output(now)).collect();
        let out = self.control.cycle(&outputs, &self.members, now);
        (outputs, out)
    }
}

#[test]
fn the_bank_publishes_sums_and_the_split_limit_and_pack_services_no_limits() {
    let t0 = Instant::now();
    let mut bank = Bank::new(t0, 3);
    // Unequal packs: 100, 200 and 280 Ah; the 280 Ah pack has the lowest resistance.
    for (m, (i, c)) in bank.packs.iter_mut().zip([(20.0, 100.0), (30.0, 200.0), (50.0, 280.0)]) {
        m.handle_reading(t0, reading(i, c, 3.31));
    }
    let (packs, out) = bank.cycle_steady(t0);
    assert!(out.connected);
    assert_eq!(out.battery.current_a, Some(100.0));
    assert_eq!(out.battery.nominal_capacity_ah, Some(580.0));
    // 50 A of 100 on pack 3, whose own limit is 50 A: the bank may take 100 A.
    assert_eq!(out.limits.charge_current_a, Some(100.0));
    // No discharge split measured yet: any pack could take it all, 60 A.
    assert_eq!(out.limits.discharge_current_a, Some(60.0));
    assert!((out.limits.charge_voltage_v.unwrap_or(0.0) - 55.2).abs() < 1e-9);
    let shown = pack_output(&packs[0]);
    assert_eq!(shown.limits.charge_voltage_v, None);
    assert_eq!(shown.limits.charge_current_a, None);
    assert_eq!(shown.battery.current_a, Some(20.0));
}

#[test]
fn per_pack_ratings_bound_the_bank_and_the_limitation_names_the_pack() {
    // The bank: 100/100/50 Ah rated 50/50/25 A charge, 100/100/50 A discharge; the
    // 50 Ah pack takes 41 % of the current.
    let t0 = Instant::now();
    let options = [rated(50.0, 100.0), rated(50.0, 100.0), rated(25.0, 50.0)];
    let instant =
        ChargeConfig { current_recovery_hold_s: 0.0, current_recovery_a_per_s: 0.0, ..Default::default() };
    let mut bank = Bank::with(t0, Topology::Parallel, instant, &options);
    // Charging at 100 A (more than the bank may take: the charger's last setting): 29.5 / 29.5 / 41 A.
    for (m, (i, c)) in bank.packs.iter_mut().zip([(29.5, 100.0), (29.5, 100.0), (41.0, 50.0)]) {
        m.handle_reading(t0, reading(i, c, 3.31));
    }
    let (_, out) = bank.cycle_steady(t0);
    let ccl = out.limits.charge_current_a.unwrap_or(0.0);
    assert!((ccl - 25.0 / 0.41).abs() < 1e-6, "{ccl}");
    assert_eq!(
        out.limits.charge_limitation,
        "Pack 3 /dev/ttyUSB2: Config max 25.0 A at 41 % of the bank current"
    );
    // A BMS reporting a lower limit than the rating lowers the pack's limit, never raises it.
    let low = Battery { charge_current_limit_a: Some(20.0), ..reading(41.0, 50.0, 3.31) };
    bank.packs[2].handle_reading(t0 + Duration::from_secs(1), low);
    let high = Battery { charge_current_limit_a: Some(80.0), ..reading(29.5, 100.0, 3.31) };
    bank.packs[0].handle_reading(t0 + Duration::from_secs(1), high);
    let (_, out) = bank.cycle(t0 + Duration::from_secs(1));
    let ccl = out.limits.charge_current_a.unwrap_or(0.0);
    assert!((ccl - 20.0 / 0.41).abs() < 1e-6, "{ccl}");
    assert!(
        out.limits.charge_limitation.starts_with("Pack 3 /dev/ttyUSB2: BMS limit 20.0 A"),
        "{}",
        out.limits.charge_limitation
    );
}

#[test]
fn the_highest_cell_of_any_pack_governs_the_bank() {
    let t0 = Instant::now();
    let mut bank = Bank::new(t0, 2);
    bank.packs[0].handle_reading(t0, reading(10.0, 100.0, 3.31));
    bank.packs[1].handle_reading(t0, reading(10.0, 100.0, 3.44));
    let (_, out) = bank.cycle_steady(t0);
    // Pack 2's own CCL drops with its high cell (derived taper, that cell 130 mV ahead: 0.24 x
    // 50 A at 3.44 V); it takes half the current, so the bank may take twice that.
    let ccl = out.limits.charge_current_a.unwrap_or(0.0);
    assert!((ccl - 24.0).abs() < 1e-6, "{ccl}");
    assert_eq!(out.battery.extreme_ids.and_then(|i| i.max_cell).as_deref(), Some("P2C5"));
}

#[test]
fn a_pack_that_leaves_shrinks_the_limits_at_once_and_rejoins_through_the_ramp() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Default recovery: hold 30 s, then 5 A/s.
    let mut bank = Bank::with(
        t0,
        Topology::Parallel,
        ChargeConfig::default(),
        &[BatteryConfig::default(), BatteryConfig::default()],
    );
    let mut ccl = 0.0;
    for s in 0..=60 {
        for m in &mut bank.packs {
            m.handle_reading(at(s), reading(40.0, 100.0, 3.31));
        }
        ccl = bank.cycle(at(s)).1.limits.charge_current_a.unwrap_or(0.0);
    }
    assert_eq!(ccl, 100.0, "measured split 50/50: twice a pack's 50 A");
    // Pack 2 leaves (device gone) while its own grace period still runs: not counted anywhere.
    bank.members[1] = false;
    bank.packs[0].handle_reading(at(61), reading(80.0, 100.0, 3.31));
    let (_, out) = bank.cycle(at(61));
    assert!(out.connected, "the bank stays");
    assert_eq!(out.limits.charge_current_a, Some(50.0), "at once");
    assert_eq!(out.battery.current_a, Some(80.0), "the vanished pack's 40 A is not counted");
    assert_eq!(out.battery.nominal_capacity_ah, Some(100.0));
    assert_eq!(out.battery.alarms.bms_cable, Some(AlarmLevel::Warning));
    assert_eq!((out.battery.modules_online, out.battery.modules_offline), (Some(1), Some(1)));
    // Back: the limit rises along the recovery ramp, never as a step; pack 1's share falls back
    // to its half as the split is measured (smoothed, 5 s).
    bank.members[1] = true;
    let mut previous = 50.0;
    for s in 62..=200u64 {
        for m in &mut bank.packs {
            m.handle_reading(at(s), reading(40.0, 100.0, 3.31));
        }
        let (_, out) = bank.cycle(at(s));
        let ccl = out.limits.charge_current_a.unwrap_or(0.0);
        assert!(ccl - previous <= 5.0 + 1e-9, "at {s} s: {previous} -> {ccl}");
        if s < 62 + 30 {
            assert_eq!(ccl, 50.0, "held at {s} s");
        }
        previous = ccl;
    }
    assert!(previous > 99.5 && previous <= 100.0, "{previous}");
}

#[test]
fn all_packs_lost_is_the_single_battery_fail_safe() {
    let t0 = Instant::now();
    let mut bank = Bank::new(t0, 2);
    for m in &mut bank.packs {
        m.handle_reading(t0, reading(10.0, 100.0, 3.31));
    }
    bank.cycle(t0);
    let (packs, out) = bank.cycle(t0 + Duration::from_secs(11));
    assert!(!packs[1].connected);
    assert!(!out.connected);
    assert_eq!(out.limits.charge_current_a, Some(0.0));
    assert_eq!(out.battery.voltage_v, None, "never frozen");
    assert_eq!(out.battery.alarms.bms_cable, Some(AlarmLevel::Alarm));
    assert_eq!((out.battery.modules_online, out.battery.modules_offline), (Some(0), Some(2)));
    assert_eq!(pack_output(&packs[1]).battery.alarms.bms_cable, Some(AlarmLevel::Warning));
}

#[test]
fn a_series_bank_with_a_pack_missing_is_lost_at_once() {
    let t0 = Instant::now();
    let mut bank = Bank::with(
        t0,
        Topology::Series,
        ChargeConfig::default(),
        &[BatteryConfig::default(), BatteryConfig::default()],
    );
    for m in &mut bank.packs {
        m.handle_reading(t0, reading(10.0, 100.0, 3.31));
    }
    let (_, out) = bank.cycle(t0);
    assert!(out.connected);
    assert!((out.limits.charge_voltage_v.unwrap_or(0.0) - 32.0 * 3.45).abs() < 1e-9, "110.4 V bulk");
    assert_eq!(out.limits.charge_current_a, Some(50.0));
    bank.members[1] = false;
    let t1 = t0 + Duration::from_secs(1);
    let (_, out) = bank.cycle(t1);
    assert!(!out.connected, "lost at once, not after stale_after_s");
    assert_eq!(out.limits.charge_current_a, Some(0.0));
    assert!((out.limits.charge_voltage_v.unwrap_or(0.0) - 32.0 * 3.375).abs() < 1e-9, "float of the string");
    assert_eq!(out.battery.alarms.bms_cable, Some(AlarmLevel::Alarm));
    assert_eq!(out.battery.voltage_v, None);
    assert_eq!((out.battery.modules_online, out.battery.modules_offline), (Some(1), Some(1)));
    bank.members[1] = true;
    let t2 = t1 + Duration::from_secs(1);
    for m in &mut bank.packs {
        m.handle_reading(t2, reading(10.0, 100.0, 3.31));
    }
    let (_, out) = bank.cycle(t2);
    assert!(out.connected, "every pack answers again");
}

#[test]
fn a_left_pack_is_shown_disconnected_without_measurements() {
    let t0 = Instant::now();
    let mut m = monitor(t0, ChargeConfig::default());
    m.handle_reading(t0, Battery { model: Some("JBD".into()), ..reading(10.0, 100.0, 3.31) });
    let shown = left_output(&m.output(t0));
    assert!(!shown.connected);
    assert_eq!(shown.battery.current_a, None);
    assert_eq!(shown.battery.voltage_v, None);
    assert_eq!(shown.battery.model.as_deref(), Some("JBD"));
    assert_eq!(shown.battery.alarms.bms_cable, Some(AlarmLevel::Warning));
    assert_eq!(shown.limits.charge_current_a, None);
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
    assert_eq!(out.limits.discharge_current_a, Some(60.0), "no discharge split measured: worst case");
}

#[test]
fn bank_ceiling_is_the_sum_of_ratings_in_parallel_and_the_smallest_in_series() {
    let charge = ChargeConfig::default();
    let options = [rated(50.0, 100.0), rated(50.0, 100.0), rated(25.0, 50.0)];
    let p = bank_charge_config(&charge, Topology::Parallel, &options);
    assert_eq!((p.max_charge_current, p.max_discharge_current), (125.0, 250.0));
    let s = bank_charge_config(&charge, Topology::Series, &options);
    assert_eq!((s.max_charge_current, s.max_discharge_current), (25.0, 50.0));
}
