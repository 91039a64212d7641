//! FoxESS HV2600 packs (V1) in series: Modbus FC03 + `0D 0A`, 115200; one battery per port. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Link, Spec, Writes};

/// The `foxess` spec.
pub const SPEC: Spec = Spec {
    name: "foxess",
    link: Link::Serial,
    default_baud: 115_200,
    addressable: true,
    one_battery_per_port: true,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    serialbattery_classes: &[],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Bytes { scan: codec::scan_response, decode: codec::decode_any },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: Some(codec::CELLS_PER_PACK),
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "FoxESS",
    listener: None,
};
