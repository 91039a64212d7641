//! Daly over Bluetooth LE (service FFF0, notify FFF1, write FFF2): one Modbus-style read of the
//! 124-byte status block. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Gatt, Link, Spec, Writes};

/// The GATT layout (aiobmsble `daly_bms`).
pub const GATT: Gatt = Gatt { service: 0xFFF0, notify: 0xFFF1, write: 0xFFF2, name_prefixes: &["DL-"] };

/// The `daly_ble` spec.
pub const SPEC: Spec = Spec {
    name: "daly_ble",
    link: Link::Ble(GATT),
    default_baud: 0,
    addressable: false,
    one_battery_per_port: false,
    default_address: None,
    probe_addresses: &[None],
    serialbattery_classes: &[],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Bytes { scan: codec::scan, decode: codec::decode_any },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
};
