//! EG4 LifePower (TianPower/Narada `7E ... 0D`), addresses 1-15. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{Codec, Link, Spec, Writes};
use crate::protocol::first_frame;

/// The `eg4_lifepower` spec.
pub const SPEC: Spec = Spec {
    name: "eg4_lifepower",
    link: Link::Serial,
    default_baud: 9600,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    serialbattery_classes: &["EG4_Lifepower"],
    address_problem,
    writes: Writes::NONE,
    codec: Codec::Bytes {
        scan: codec::scan,
        decode: |bytes| codec::decode(first_frame(bytes, codec::scan), None),
    },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "EG4",
    listener: None,
};

/// EG4 LifePower addresses are 1..=15.
fn address_problem(address: u8) -> Option<String> {
    (!(1..=15).contains(&address)).then(|| format!("{address} is outside the EG4 LifePower addresses 1..=15"))
}
