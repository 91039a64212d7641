//! EG4 LifePower4 v2 firmware: YD/T 1363 ASCII frames (`~20 ADR 4A ...`), RS485 9600, addresses
//! 1-15. No writes.
//!
//! A protocol of its own rather than a second mode of `eg4_lifepower`: the frames, requests,
//! poll plan and `probe` identity differ, and a spec has one poll plan; the two share only the
//! bus and the DIP addresses. `eg4_lifepower`'s decoder still reads these frames (same bus).

pub mod codec;
pub mod plan;
pub mod sim;

use super::{Codec, Link, Spec, Writes};
use crate::protocol::first_frame;

/// The `eg4_lifepower4` spec.
pub const SPEC: Spec = Spec {
    name: "eg4_lifepower4",
    link: Link::Serial,
    default_baud: codec::BAUD,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    // dbus-serialbattery has no driver for these frames (its EG4_Lifepower reads the binary ones).
    serialbattery_classes: &[],
    address_problem,
    writes: Writes::NONE,
    codec: Codec::Bytes { scan: codec::scan, decode: |bytes| codec::decode(first_frame(bytes, codec::scan)) },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "EG4",
    listener: None,
};

/// The DIP-switch addresses are 1..=15.
fn address_problem(address: u8) -> Option<String> {
    (!(1..=codec::MAX_ADDRESS).contains(&address))
        .then(|| format!("{address} is outside the EG4 LifePower4 addresses 1..={}", codec::MAX_ADDRESS))
}
