//! The one poll executor: runs any BMS's poll plan (`bms/NAME/plan.rs`) over its open link.

use super::PortLink;
use crate::battery::Battery;
use crate::bms::plan::{Next, PollError, PollPlan, Reply, Request};
use crate::protocol::FrameError;
use std::time::Duration;
use tokio::time::Instant;

/// Runs `plan` to its end over `link`, each exchange within `timeout` (the sentences of one
/// multi-sentence reply share the timeout of its request).
pub async fn run(
    plan: &mut dyn PollPlan,
    link: &mut PortLink,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let mut deadline = Instant::now() + timeout;
    loop {
        let request = match plan.next() {
            Next::Done(result) => return result.map(|battery| *battery),
            Next::Skipped { what, error } => {
                tracing::debug!(%error, "{what} unread");
                continue;
            }
            Next::Send(request) => request,
        };
        let reply = match request {
            Request::Frame { bytes, scan } => {
                deadline = Instant::now() + timeout;
                match link.framed() {
                    Ok(framed) => {
                        framed.request(&bytes, scan, timeout).await.map(Reply::Frame).map_err(PollError::from)
                    }
                    Err(err) => Err(err),
                }
            }
            Request::MoreFrames { scan } => {
                let left = deadline.saturating_duration_since(Instant::now());
                match link.framed() {
                    Ok(framed) => {
                        framed.read_frame(scan, left).await.map(Reply::Frame).map_err(PollError::from)
                    }
                    Err(err) => Err(err),
                }
            }
            Request::Registers { address, start, count } => match link.modbus() {
                Ok(modbus) => match modbus.read_holding(address, start, count, timeout).await {
                    Ok(Ok(registers)) => Ok(Reply::Registers(registers)),
                    Ok(Err(code)) => Err(FrameError::Exception { code }.into()),
                    Err(err) => Err(err.into()),
                },
                Err(err) => Err(err),
            },
        };
        plan.handle(reply);
    }
}
