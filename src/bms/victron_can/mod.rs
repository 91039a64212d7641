//! The CAN "Victron/Pylontech dialect" over SocketCAN; the port's `device` is the interface (`can0`).

pub mod codec;
pub mod listen;
pub mod sim;

use super::{any_address, Codec, Link, Spec, Writes};

/// The `victron_can` spec.
pub const SPEC: Spec = Spec {
    name: "victron_can",
    link: Link::Can,
    // Unused: a CAN interface has its bit rate set on the interface.
    default_baud: 0,
    addressable: false,
    one_battery_per_port: false,
    default_address: None,
    probe_addresses: &[None],
    serialbattery_classes: &[],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Can { decode: |id, data| codec::decode(id, data, &codec::Options::default()) },
    poll: None,
    command_gap: None,
    simulator: None,
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "(CAN-bus BMS)",
    listener: Some(listen::listener),
};
