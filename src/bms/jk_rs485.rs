//! JK BMS, older RS485/TTL protocol (`4E 57 ...`), one BMS per port. No writes.

use super::{any_address, Codec, Link, Spec, Writes};
use crate::protocol::{first_frame, jk_rs485};

/// The `jk_rs485` spec.
pub const SPEC: Spec = Spec {
    name: "jk_rs485",
    link: Link::Serial,
    default_baud: 115_200,
    addressable: false,
    one_battery_per_port: false,
    default_address: None,
    probe_addresses: &[None],
    serialbattery_classes: &["Jkbms"],
    address_problem: any_address,
    writes: Writes::NONE,
    codec: Codec::Bytes {
        scan: jk_rs485::scan,
        decode: |bytes| jk_rs485::decode(first_frame(bytes, jk_rs485::scan)),
    },
};
