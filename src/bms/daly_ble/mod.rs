//! Daly over Bluetooth LE (service FFF0, notify FFF1, write FFF2): one Modbus-style read of the
//! 124-byte status block. No writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{Codec, Gatt, Spec};

/// The GATT layout (aiobmsble `daly_bms`).
pub const GATT: Gatt = Gatt { service: 0xFFF0, notify: 0xFFF1, write: 0xFFF2, name_prefixes: &["DL-"] };

/// The `daly_ble` spec.
pub const SPEC: Spec = super::ble_spec(
    "daly_ble",
    "Daly",
    GATT,
    Codec::Bytes { scan: codec::scan, decode: codec::decode_any },
    plan::plan,
    |stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control)),
);
