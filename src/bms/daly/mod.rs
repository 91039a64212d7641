//! Daly UART/RS485 (`A5 ...` sentences), addressable (0x40 + board - 1). No writes: the sources disagree on the MOS data byte (`docs/protocols/daly.md`).

pub mod codec;
pub mod plan;
pub mod sim;

use super::{Codec, Link, Spec, Writes};

/// The `daly` spec.
pub const SPEC: Spec = Spec {
    name: "daly",
    link: Link::Serial,
    default_baud: 9600,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(0x40),
    probe_addresses: &[Some(0x40), Some(0x80)],
    serialbattery_classes: &["Daly"],
    address_problem,
    writes: Writes::NONE,
    // Daly replies come in several sentences: every sentence given is decoded and merged.
    codec: Codec::Bytes { scan: codec::scan, decode: codec::decode_all },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "Daly",
    listener: None,
};

/// Daly host addresses: 0x40 + board - 1, or 0x80.
fn address_problem(address: u8) -> Option<String> {
    (address < 0x40).then(|| {
        format!("{address} is not a Daly host address (0x40 = board 1, 0x41 = board 2 ..., or 0x80)")
    })
}
