//! EG4-LL poll: the status block every poll, the hardware and config blocks once per
//! connection.

use super::codec as eg4_ll;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one EG4-LL poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &IDENTITY, as_read)
}

/// Steps by index into [`eg4_ll::BLOCKS`] (status, hardware, config).
const EVERY_POLL: [Step; 1] = [block("EG4-LL status block", 0)];
const IDENTITY: [Step; 2] = [block("EG4-LL hardware block", 1), block("EG4-LL config block", 2)];

const fn block(what: &'static str, index: u16) -> Step {
    Step { what, param: index, request, apply }
}

fn request(address: u8, index: u16) -> Request {
    let block = eg4_ll::BLOCKS.get(usize::from(index)).copied().unwrap_or(eg4_ll::STATUS);
    Request::Registers { address, start: block.start, count: block.count }
}

fn apply(_: u8, index: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    let block = eg4_ll::BLOCKS.get(usize::from(index)).copied().unwrap_or(eg4_ll::STATUS);
    battery.merge(&eg4_ll::decode_registers(block, reply.registers()?)?.battery);
    Ok(())
}
