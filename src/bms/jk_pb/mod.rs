//! JK PB inverter BMS, RS485 115200: FC16 trigger, 300-byte `55 AA EB 90` reply + ACK. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{Codec, Link, Spec, Writes};

/// The `jk_pb` spec.
pub const SPEC: Spec = Spec {
    name: "jk_pb",
    link: Link::Serial,
    default_baud: 115_200,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    serialbattery_classes: &["Jkbms_pb"],
    address_problem,
    writes: Writes::NONE,
    codec: Codec::Bytes { scan: codec::scan_reply, decode: codec::decode_any },
    poll: Some(plan::plan),
    command_gap: Some(codec::COMMAND_GAP),
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "JK",
    listener: None,
};

/// JK PB DIP addresses are 1..=15; 0 is the master that polls the other packs.
fn address_problem(address: u8) -> Option<String> {
    match address {
        0 => Some(
            "JK PB address 0 is the bus master (it polls the other packs itself); set the DIP \
             switches to 1..=15"
                .into(),
        ),
        1..=15 => None,
        _ => Some("JK PB addresses are 1..=15".into()),
    }
}
