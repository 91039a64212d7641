//! JBD UP-series RS485 (addressable, CRC-16/MODBUS): SetSoc writes.

pub mod codec;
pub mod plan;
pub mod sim;

use super::{any_address, Codec, Link, Spec, Writes};
use crate::protocol::first_frame;
use crate::protocol::writes::{self, WriteSupport};

/// The JBD UP16S spec.
pub const SPEC: Spec = Spec {
    name: "jbd_up16s",
    link: Link::Serial,
    default_baud: 9600,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    serialbattery_classes: &["LltJbd_Up16s"],
    address_problem: any_address,
    writes: Writes {
        support: WriteSupport { mosfet: false, soc: true },
        request: writes::jbd_up16s_request,
        check_ack: writes::jbd_up16s_check_ack,
        ack_scan: codec::scan,
    },
    codec: Codec::Bytes {
        scan: codec::scan,
        decode: |bytes| codec::decode(first_frame(bytes, codec::scan), None),
    },
    poll: Some(plan::plan),
    command_gap: None,
    simulator: Some(|stream, packs, control| crate::sim::serve::start(sim::serve(stream, packs, control))),
    cells_per_pack: None,
    can_bridge: None,
    decode_at_register: None,
    manufacturer: "JBD",
    listener: None,
};
