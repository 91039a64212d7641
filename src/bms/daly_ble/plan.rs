//! Daly BLE poll: the one register block, every poll.

use super::codec as daly_ble;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one Daly BLE poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &[], as_read)
}

const EVERY_POLL: [Step; 1] = [Step { what: "status block", param: 0, request, apply }];

fn request(_: u8, _: u16) -> Request {
    Request::Frame { bytes: daly_ble::request(), scan: daly_ble::scan }
}

fn apply(_: u8, _: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    battery.merge(&daly_ble::decode(reply.frame()?)?.battery);
    Ok(())
}
