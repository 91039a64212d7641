//! EG4-LL / LL-S v2, Modbus RTU 9600, DIP addresses. No writes.

use super::{any_address, Link, Spec, Writes};

/// The `eg4_ll` spec.
pub const SPEC: Spec = Spec {
    name: "eg4_ll",
    link: Link::Modbus,
    default_baud: 9600,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    address_problem: any_address,
    writes: Writes::NONE,
};
