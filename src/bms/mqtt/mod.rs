//! Generic MQTT: one JSON document per message on a topic, in dbus-serialbattery's "Generic MQTT
//! battery data structure" (`docs/protocols/mqtt.md`). The port's `device` is the broker URL with
//! the topic (`mqtt://[user@]host[:port]/topic/path`); the transport is `transport/mqtt.rs`.

pub mod codec;

use super::{any_address, Codec, Link, Spec, Writes};

pub use codec::{decode, Message, MessageError};

/// The `mqtt` spec.
pub const SPEC: Spec = Spec {
    name: "mqtt",
    link: Link::Mqtt,
    // Unused: a broker connection has no line speed.
    default_baud: 0,
    addressable: false,
    one_battery_per_port: false,
    default_address: None,
    probe_addresses: &[None],
    // The incumbent's Generic MQTT driver has no serial-port settings to import.
    serialbattery_classes: &[],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Json { decode: |bytes| decode(bytes).map(Message::into_decoded) },
    // The BMS side publishes; nothing is polled (driver/mqtt.rs listens on the topic).
    poll: None,
    command_gap: None,
    // The simulated publisher is `sim::mqtt` on a broker, not a pty simulator.
    simulator: None,
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "(MQTT publisher)",
    listener: None,
};
