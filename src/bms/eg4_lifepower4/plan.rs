//! EG4 LifePower4 poll: analog values (0x42) and alarm information (0x44, which carries the
//! MOSFET states) every poll; the protocol has no identity command that is documented.

use super::codec as lp4;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one LifePower4 poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &[], as_read)
}

const EVERY_POLL: [Step; 2] = [
    Step { what: "analog values (0x42)", param: lp4::CID2_ANALOG as u16, request, apply: analog },
    Step { what: "alarm information (0x44)", param: lp4::CID2_ALARM as u16, request, apply: alarm },
];

fn request(address: u8, param: u16) -> Request {
    Request::Frame { bytes: lp4::request(address, u8::try_from(param).unwrap_or_default()), scan: lp4::scan }
}

fn analog(address: u8, _: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    battery.merge(&lp4::decode_analog(reply.frame()?, address)?);
    Ok(())
}

fn alarm(address: u8, _: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    battery.merge(&lp4::decode_alarm(reply.frame()?, address)?);
    Ok(())
}
