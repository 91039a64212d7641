//! JK BMS over Bluetooth LE (service FFE0, characteristic FFE1): `AA 55 90 EB` commands,
//! 300-byte `55 AA EB 90` frames, JK02_24S and JK02_32S cell-info layouts. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{Codec, Gatt, Spec};

/// The GATT layout (esphome-jk-bms `jk_bms_ble`, aiobmsble `jikong_bms`).
pub const GATT: Gatt =
    Gatt { service: 0xFFE0, notify: 0xFFE1, write: 0xFFE1, name_prefixes: &["JK-", "JK_", "JK"] };

/// The `jk_ble` spec.
pub const SPEC: Spec = super::ble_spec(
    "jk_ble",
    "JK",
    GATT,
    Codec::Bytes { scan: codec::scan, decode: codec::decode_all },
    plan::plan,
    |stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control)),
);
