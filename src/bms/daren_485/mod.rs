//! Daren / BASEN BMS (DR-JC03, DR48100JC-03-V2), YD/T 1363 ASCII frames (`~22 ADR 4A ...`),
//! RS485 19200, DIP addresses 0-15, several packs on one bus. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{Codec, Link, Spec, Writes};
use crate::protocol::first_frame;

/// The `daren_485` spec.
pub const SPEC: Spec = Spec {
    name: "daren_485",
    link: Link::Serial,
    default_baud: codec::BAUD,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    serialbattery_classes: &["Daren485"],
    address_problem,
    writes: Writes::NONE,
    codec: Codec::Bytes { scan: codec::scan, decode: |bytes| codec::decode(first_frame(bytes, codec::scan)) },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "Daren",
    listener: None,
};

/// The four DIP switches give 0..=15 (README: "0-15 is valid").
fn address_problem(address: u8) -> Option<String> {
    (address > codec::MAX_ADDRESS)
        .then(|| format!("{address} is outside the Daren addresses 0..={}", codec::MAX_ADDRESS))
}
