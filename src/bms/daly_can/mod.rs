//! Daly over CAN (250 kbit/s, 29-bit ids), request/response by CAN address: the UART protocol's
//! sentences carried in CAN frames, so the Daly poll plan and decoders run unchanged over a
//! [`CanBridge`](crate::transport::can_bridge::CanBridge). `device` is the interface (`can0`),
//! `addresses` the packs' CAN addresses (board n = n, default 1).

pub mod codec;
pub mod sim;

use super::plan::{PollPlan, PollTarget};
use super::{Codec, Link, Spec, Writes};
use crate::bms::daly::codec as daly;
use crate::transport::can_bridge::CanBridge;

/// The `daly_can` spec.
pub const SPEC: Spec = Spec {
    name: "daly_can",
    link: Link::Can,
    default_baud: 0,
    addressable: true,
    one_battery_per_port: false,
    default_address: Some(1),
    probe_addresses: &[Some(1)],
    serialbattery_classes: &["Daly_Can"],
    address_problem,
    writes: Writes::NONE,
    codec: Codec::Can { decode: codec::decode },
    poll: Some(plan),
    command_gap: None,
    simulator: None,
    cells_per_pack: None,
    can_bridge: Some(BRIDGE),
    decode_at_register: None,
    manufacturer: "Daly",
    listener: None,
};

/// The host's side: request sentences out as frames, reply frames in as sentences.
pub const BRIDGE: CanBridge =
    CanBridge { scan: daly::scan, to_frame: codec::request_frame, from_frame: codec::reply_sentence };

/// One poll of the pack at CAN address n: the Daly plan for board n (host address 0x3F + n).
fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    crate::bms::daly::plan::plan_at(0x3F_u8.saturating_add(target.address()), target.need_identity)
}

/// Daly CAN addresses: 1 ..= 0x3E (board number).
fn address_problem(address: u8) -> Option<String> {
    (address == 0 || address > codec::MAX_ADDRESS)
        .then(|| format!("{address} is not a Daly CAN address (1 ..= 62: the board number, 1 by default)"))
}
