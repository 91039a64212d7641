//! EG4 LifePower4 poll: status every poll, the firmware version once per connection.

use super::codec as eg4;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one LifePower4 poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &IDENTITY, as_read)
}

const EVERY_POLL: [Step; 1] = [Step { what: "status", param: eg4::CMD_STATUS as u16, request, apply }];
const IDENTITY: [Step; 1] =
    [Step { what: "firmware version (command 0x33)", param: eg4::CMD_FIRMWARE as u16, request, apply }];

fn command(param: u16) -> u8 {
    u8::try_from(param).unwrap_or_default()
}

fn request(address: u8, param: u16) -> Request {
    Request::Frame { bytes: eg4::request(address, command(param)).to_vec(), scan: eg4::scan }
}

/// The command echo is checked (and a zero length byte is no answer).
fn apply(address: u8, param: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    let frame = reply.frame()?;
    let command = command(param);
    let found = frame.get(2).copied().unwrap_or_default();
    if found != command || frame.get(3) == Some(&0) {
        return Err(FrameError::UnexpectedCommand { expected: command, found });
    }
    battery.merge(&eg4::decode(frame, Some(address))?.battery);
    Ok(())
}
