//! JK BMS over Bluetooth LE (service FFE0, characteristic FFE1): `AA 55 90 EB` commands,
//! 300-byte `55 AA EB 90` frames, JK02_24S and JK02_32S cell-info layouts. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Gatt, Link, Spec, Writes};

/// The GATT layout (esphome-jk-bms `jk_bms_ble`, aiobmsble `jikong_bms`).
pub const GATT: Gatt = Gatt { service: 0xFFE0, notify: 0xFFE1, write: 0xFFE1, name_prefixes: &["JK-", "JK_", "JK"] };

/// The `jk_ble` spec.
pub const SPEC: Spec = Spec {
    name: "jk_ble",
    link: Link::Ble(GATT),
    default_baud: 0,
    addressable: false,
    one_battery_per_port: false,
    default_address: None,
    probe_addresses: &[None],
    // dbus-serialbattery's Jkbms_Ble configs name the MAC elsewhere: not imported (yet).
    serialbattery_classes: &[],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Bytes { scan: codec::scan, decode: codec::decode_all },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
};
