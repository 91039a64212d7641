//! EG4-LL / LL-S v2, Modbus RTU 9600, DIP addresses. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Link, Spec, Writes};
use crate::protocol::{first_frame, modbus};

/// The `eg4_ll` spec.
pub const SPEC: Spec = Spec {
    name: "eg4_ll",
    link: Link::Modbus,
    default_baud: 9600,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    serialbattery_classes: &["EG4_LL"],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Bytes {
        scan: modbus::scan_response,
        decode: |bytes| codec::decode(first_frame(bytes, modbus::scan_response), None),
    },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| {
        crate::sim::serve::start(crate::sim::modbus::serve(stream, packs, control, sim::registers))
    }),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "EG4",
    listener: None,
};
