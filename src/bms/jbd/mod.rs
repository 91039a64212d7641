//! JBD / LLT / Overkill classic (`DD A5 ...`): one BMS per port, MOSFET writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Link, Spec, Writes};
use crate::protocol::first_frame;
use crate::protocol::writes::{self, WriteSupport};

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
        ack_scan: codec::scan,
    },
    codec: Codec::Bytes { scan: codec::scan, decode: |bytes| codec::decode(first_frame(bytes, codec::scan)) },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "JBD",
    listener: None,
};
