//! JBD classic poll: basic info and cell voltages every poll, the hardware name once per
//! connection (a BMS that does not answer 0x05 is still fully usable).

use super::codec as jbd;
use crate::battery::Battery;
use crate::bms::plan::{as_read, PollPlan, PollTarget, Reply, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one JBD poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &IDENTITY, as_read)
}

const EVERY_POLL: [Step; 2] = [read("basic info", jbd::REG_BASIC_INFO), read("cells", jbd::REG_CELLS)];
const IDENTITY: [Step; 1] = [read("hardware name (register 0x05)", jbd::REG_HARDWARE)];

const fn read(what: &'static str, register: u8) -> Step {
    Step { what, param: register as u16, request, apply }
}

fn register(param: u16) -> u8 {
    u8::try_from(param).unwrap_or_default()
}

fn request(_: u8, param: u16) -> Request {
    Request::Frame { bytes: jbd::request_read(register(param)).to_vec(), scan: jbd::scan }
}

/// The register echo is checked: a late reply to another request must not be decoded as this
/// one.
fn apply(_: u8, param: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
    let frame = reply.frame()?;
    let register = register(param);
    let echoed = frame.get(1).copied().unwrap_or_default();
    if echoed != register {
        return Err(FrameError::UnexpectedCommand { expected: register, found: echoed });
    }
    battery.merge(&jbd::decode(frame)?.battery);
    Ok(())
}
