//! JBD / LLT / Overkill classic (`DD A5 ...`): one BMS per port, MOSFET writes.

use super::{any_address, Codec, Link, Spec, Writes};
use crate::protocol::writes::{self, WriteSupport};
use crate::protocol::{first_frame, jbd};

/// The JBD classic spec.
pub const SPEC: Spec = Spec {
    name: "jbd",
    link: Link::Serial,
    default_baud: 9600,
    addressable: false,
    one_battery_per_port: false,
    default_address: None,
    probe_addresses: &[None],
    serialbattery_classes: &["LltJbd"],
    address_problem: any_address,
    writes: Writes {
        support: WriteSupport { mosfet: true, soc: false },
        request: writes::jbd_request,
        check_ack: writes::jbd_check_ack,
        ack_scan: jbd::scan,
    },
    codec: Codec::Bytes { scan: jbd::scan, decode: |bytes| jbd::decode(first_frame(bytes, jbd::scan)) },
};
