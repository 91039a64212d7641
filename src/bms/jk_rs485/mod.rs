//! JK BMS, older RS485/TTL protocol (`4E 57 ...`), one BMS per port. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Link, Spec, Writes};
use crate::protocol::first_frame;

/// The `jk_rs485` spec.
pub const SPEC: Spec = Spec {
    name: "jk_rs485",
    link: Link::Serial,
    default_baud: 115_200,
    addressable: false,
    one_battery_per_port: false,
    default_address: None,
    probe_addresses: &[None],
    serialbattery_classes: &["Jkbms"],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Bytes { scan: codec::scan, decode: |bytes| codec::decode(first_frame(bytes, codec::scan)) },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "JK",
    listener: None,
};
