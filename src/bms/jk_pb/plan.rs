//! JK PB poll: status and settings every poll, the "about" frame once per connection.

use super::codec as jk_pb;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one JK PB poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &IDENTITY, as_read)
}

const EVERY_POLL: [Step; 2] = [
    Step { what: "status", param: jk_pb::REG_STATUS, request, apply },
    // The settings frame's cell count is the configured one; the status frame's (cells
    // actually reporting) stays.
    Step {
        what: "settings",
        param: jk_pb::REG_SETTINGS,
        request,
        apply: |address, register, battery, reply| {
            let settings = decode(address, register, reply)?;
            battery.merge(&Battery { cell_count: battery.cell_count, ..settings });
            Ok(())
        },
    },
];
const IDENTITY: [Step; 1] = [Step { what: "JK PB about frame", param: jk_pb::REG_ABOUT, request, apply }];

fn request(address: u8, register: u16) -> Request {
    Request::Frame { bytes: jk_pb::request(address, register), scan: jk_pb::scan_reply }
}

fn decode(address: u8, register: u16, reply: &Reply) -> Result<Battery, FrameError> {
    Ok(jk_pb::decode_reply(reply.frame()?, address, register)?.battery)
}

fn apply(address: u8, register: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    battery.merge(&decode(address, register, reply)?);
    Ok(())
}
