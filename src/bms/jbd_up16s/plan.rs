//! JBD UP16S poll: pack status every poll, PackParams1 (model, serial) once per connection.

use super::codec as up16s;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one UP16S poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &IDENTITY, as_read)
}

const EVERY_POLL: [Step; 1] = [Step {
    what: "pack status",
    param: 0,
    request: |address, _| Request::Frame { bytes: up16s::request_pack_status(address), scan: up16s::scan },
    apply,
}];
const IDENTITY: [Step; 1] = [Step {
    what: "PackParams1 (model/serial)",
    param: 0,
    request: |address, _| Request::Frame { bytes: up16s::request_pack_params1(address), scan: up16s::scan },
    apply,
}];

fn apply(address: u8, _: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    battery.merge(&up16s::decode(reply.frame()?, Some(address))?.battery);
    Ok(())
}
