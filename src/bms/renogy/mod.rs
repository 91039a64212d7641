//! Renogy smart batteries, Modbus RTU 9600, registers 5000+. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Link, Spec, Writes};
use crate::protocol::{first_frame, modbus};

/// The `renogy` spec.
pub const SPEC: Spec = Spec {
    name: "renogy",
    link: Link::Modbus,
    default_baud: 9600,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(0x30),
    probe_addresses: &[Some(0x30), Some(0xF7)],
    serialbattery_classes: &["Renogy"],
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
    decode_at_register: Some(|bytes, register| {
        codec::decode_at(first_frame(bytes, modbus::scan_response), None, register)
    }),
    manufacturer: "Renogy",
    listener: None,
};
