use super::*;

fn pack(current: f64, capacity: f64) -> PackLimitInput {
    PackLimitInput {
        online: true,
        current_a: Some(current),
        capacity_ah: Some(capacity),
        charge_limit_a: 50.0,
        discharge_limit_a: 60.0,
        charge_blocked: false,
        discharge_blocked: false,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn equal_packs_add_up() {
    let packs = [pack(20.0, 100.0), pack(20.0, 100.0)];
    let l = bank_limits(Topology::Parallel, &packs);
    assert!(close(l.charge.amps, 100.0), "{l:?}");
    // Charging now: for discharge the capacity shares stand in.
    assert!(close(l.discharge.amps, 120.0), "{l:?}");
}

#[test]
fn an_uneven_split_is_limited_by_the_pack_that_takes_most() {
    // A low-resistance 280 Ah pack takes 30 A of 50; the 100 Ah packs 10 A each.
    let packs = [pack(10.0, 100.0), pack(30.0, 280.0), pack(10.0, 100.0)];
    let l = bank_limits(Topology::Parallel, &packs);
    assert!(close(l.charge.amps, 50.0 / 0.6), "{l:?}");
    assert_eq!(l.charge.by, Some(1));
    // Discharge with capacity shares: 280/480 of the current on pack 2.
    assert!(close(l.discharge.amps, 60.0 / (280.0 / 480.0)), "{l:?}");
}

#[test]
fn a_pack_resting_now_still_counts_half_its_capacity_share() {
    // Pack 2 takes nothing now; its floor is 0.5 x 0.5 = 0.25 of the bank current.
    let mut packs = [pack(20.0, 100.0), pack(0.0, 100.0)];
    packs[1].charge_limit_a = 5.0;
    let l = bank_limits(Topology::Parallel, &packs);
    assert!(close(l.charge.amps, 20.0), "{l:?}");
    assert_eq!(l.charge.by, Some(1));
}

#[test]
fn a_blocking_pack_removes_its_share() {
    let mut packs = [pack(15.0, 100.0), pack(15.0, 200.0), pack(10.0, 100.0)];
    packs[1].charge_blocked = true;
    let l = bank_limits(Topology::Parallel, &packs);
    // Pack 2 is out: packs 1 and 3 split 15:10.
    assert!(close(l.charge.amps, 50.0 / 0.6), "{l:?}");
    assert_eq!(l.charge.by, Some(0));
    // Discharging is not blocked: all three count (capacity shares while charging).
    assert!(close(l.discharge.amps, 60.0 / 0.5), "{l:?}");
    for p in &mut packs {
        p.charge_blocked = true;
    }
    let l = bank_limits(Topology::Parallel, &packs);
    assert_eq!(l.charge, Limit { amps: 0.0, by: None });
}

#[test]
fn a_pack_at_zero_that_still_conducts_stops_the_bank() {
    // Its FET is on (it takes current) but its own limit is 0: nothing may flow.
    let mut packs = [pack(15.0, 100.0), pack(15.0, 100.0)];
    packs[0].charge_limit_a = 0.0;
    assert_eq!(bank_limits(Topology::Parallel, &packs).charge, Limit { amps: 0.0, by: Some(0) });
}

#[test]
fn a_missing_pack_is_never_counted_and_the_limit_shrinks() {
    let packs = [pack(10.0, 100.0), pack(10.0, 100.0), pack(20.0, 100.0), pack(5.0, 100.0)];
    let all = bank_limits(Topology::Parallel, &packs).charge.amps;
    let mut lost = packs;
    lost[3].online = false;
    lost[3].current_a = None;
    let fewer = bank_limits(Topology::Parallel, &lost).charge.amps;
    assert!(close(all, 50.0 / (20.0 / 45.0)), "{all}");
    assert!(close(fewer, 100.0), "{fewer}");
    assert!(fewer < all);
    for p in &mut lost {
        p.online = false;
    }
    let none = bank_limits(Topology::Parallel, &lost);
    assert_eq!(none.charge.amps, 0.0);
    assert_eq!(none.discharge.amps, 0.0);
}

#[test]
fn near_zero_current_uses_capacity_shares_and_unknown_capacity_equal_shares() {
    let packs = [pack(0.5, 100.0), pack(1.0, 300.0)];
    let l = bank_limits(Topology::Parallel, &packs);
    assert!(close(l.charge.amps, 50.0 / 0.75), "{l:?}");
    let unknown = [PackLimitInput { capacity_ah: None, ..pack(0.0, 1.0) }, pack(0.0, 300.0)];
    assert!(close(bank_limits(Topology::Parallel, &unknown).charge.amps, 100.0));
}

#[test]
fn a_pack_that_reverses_counts_as_resting_not_negative() {
    // Pack 2 discharges into pack 1 while the bank charges 10 A: pack 1 takes 14 A.
    let packs = [pack(14.0, 100.0), pack(-4.0, 100.0)];
    let l = bank_limits(Topology::Parallel, &packs);
    let s = shares(&[&packs[0], &packs[1]], 1.0);
    assert!(close(s[0], 1.0) && close(s[1], 0.25), "{s:?}");
    assert!(close(l.charge.amps, 50.0), "{l:?}");
}

#[test]
fn series_takes_the_smallest_limit_and_stops_charging_without_a_pack() {
    let mut packs = [pack(10.0, 100.0), pack(10.0, 100.0)];
    packs[1].charge_limit_a = 30.0;
    let l = bank_limits(Topology::Series, &packs);
    assert_eq!(l.charge, Limit { amps: 30.0, by: Some(1) });
    assert_eq!(l.discharge.amps, 60.0);
    packs[0].online = false;
    let l = bank_limits(Topology::Series, &packs);
    assert_eq!(l.charge, Limit { amps: 0.0, by: Some(0) });
    assert_eq!(l.discharge.amps, 60.0);
    packs[1].discharge_blocked = true;
    assert_eq!(bank_limits(Topology::Series, &packs).discharge.amps, 0.0);
}
