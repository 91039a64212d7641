//! Renogy poll: summary, cells and status blocks every poll, the serial/model block once per
//! connection; the SoC is derived from the capacities last.

use super::codec as renogy;
use crate::battery::Battery;
use crate::bms::plan::{PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one Renogy poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &IDENTITY, |mut battery| {
        renogy::derive_soc(&mut battery);
        Ok(battery)
    })
}

/// Steps by index into [`renogy::BLOCKS`] (summary, cells, status, info).
const EVERY_POLL: [Step; 3] = [block("summary", 0), block("cells", 1), block("status", 2)];
const IDENTITY: [Step; 1] = [block("serial/model block", 3)];

const fn block(what: &'static str, index: u16) -> Step {
    Step { what, param: index, request, apply }
}

fn request(address: u8, index: u16) -> Request {
    let block = renogy::BLOCKS.get(usize::from(index)).copied().unwrap_or(renogy::SUMMARY);
    Request::Registers { address, start: block.start, count: block.count }
}

fn apply(_: u8, index: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    let block = renogy::BLOCKS.get(usize::from(index)).copied().unwrap_or(renogy::SUMMARY);
    battery.merge(&renogy::decode_registers(block, reply.registers()?)?.battery);
    Ok(())
}
