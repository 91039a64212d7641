//! Daren poll: realtime data (0x42) every poll; manufacturer info (0x51), the pack serial
//! (0xB0 module 3) and the design capacity (0xB0 module 4) once per connection.

use super::codec as daren;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one Daren poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &IDENTITY, as_read)
}

const REALTIME: u16 = 0;
const MANUFACTURER: u16 = 1;
const MFG_MODULE: u16 = 2;
const CAP_MODULE: u16 = 3;

const EVERY_POLL: [Step; 1] = [Step { what: "realtime data (0x42)", param: REALTIME, request, apply }];
const IDENTITY: [Step; 3] = [
    Step { what: "manufacturer info (0x51)", param: MANUFACTURER, request, apply },
    Step { what: "pack serial (0xB0 module 3)", param: MFG_MODULE, request, apply },
    Step { what: "capacities (0xB0 module 4)", param: CAP_MODULE, request, apply },
];

fn request(address: u8, param: u16) -> Request {
    let bytes = match param {
        MANUFACTURER => daren::request_manufacturer(address),
        MFG_MODULE => daren::request_module(address, daren::MODULE_MFG),
        CAP_MODULE => daren::request_module(address, daren::MODULE_CAP),
        _ => daren::request_realtime(address),
    };
    Request::Frame { bytes, scan: daren::scan }
}

fn apply(address: u8, param: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    let layout = match param {
        MANUFACTURER => daren::manufacturer,
        MFG_MODULE => daren::module_mfg,
        CAP_MODULE => daren::module_cap,
        _ => daren::realtime,
    };
    battery.merge(&daren::decode_with(reply.frame()?, address, layout)?);
    Ok(())
}
