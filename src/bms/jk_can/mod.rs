//! JK BMS CAN: JK's own broadcast protocol, listened to (nothing is sent). `device` is the
//! interface (`can0`), `addresses` the packs' DIP addresses (0..=15, added to every frame id;
//! default 0).

pub mod assemble;
pub mod codec;
pub mod listen;
pub mod sim;

use super::{Codec, Link, Spec, Writes};

/// The `jk_can` spec.
pub const SPEC: Spec = Spec {
    name: "jk_can",
    link: Link::Can,
    default_baud: 0,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(0),
    probe_addresses: &[Some(0)],
    serialbattery_classes: &["Jkbms_Can"],
    address_problem,
    writes: Writes::NONE,
    codec: Codec::Can { decode: codec::decode },
    poll: None,
    command_gap: None,
    simulator: None,
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "JK",
    listener: Some(listen::listener),
};

/// JK CAN addresses: the DIP switch, 0..=15.
fn address_problem(address: u8) -> Option<String> {
    (address > codec::MAX_ADDRESS)
        .then(|| format!("{address} is not a JK CAN address (the DIP switch: 0 ..= 15)"))
}
