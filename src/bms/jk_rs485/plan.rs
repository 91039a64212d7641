//! JK RS485 poll: one "read all" frame; the command byte is checked and a frame without pack
//! voltage or cells is no reading.

use super::codec as jk_rs485;
use crate::battery::Battery;
use crate::bms::plan::{PollPlan, PollTarget, Request, Sequence, Step};
use crate::protocol::FrameError;

/// The plan of one JK RS485 poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Sequence::boxed(target, &EVERY_POLL, &[], complete)
}

const EVERY_POLL: [Step; 1] = [Step {
    what: "read all",
    param: 0,
    request: |_, _| Request::Frame { bytes: jk_rs485::request_read_all(), scan: jk_rs485::scan },
    apply: |_, _, battery, reply| {
        let frame = reply.frame()?;
        let command = frame.get(8).copied().unwrap_or_default();
        // A request echoed back by the bus (transport byte "request") is no answer.
        if command != jk_rs485::CMD_READ_ALL || frame.get(10) == Some(&jk_rs485::TRANSPORT_REQUEST) {
            return Err(FrameError::UnexpectedCommand { expected: jk_rs485::CMD_READ_ALL, found: command });
        }
        *battery = jk_rs485::decode(frame)?.battery;
        Ok(())
    },
}];

fn complete(battery: Battery) -> Result<Battery, FrameError> {
    if battery.voltage_v.is_none() || battery.cell_voltages_v.is_none() {
        return Err(FrameError::InvalidField { field: "voltage" });
    }
    Ok(battery)
}
