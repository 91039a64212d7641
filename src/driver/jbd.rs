//! JBD classic: basic info and cell voltages every poll, the hardware name once per connection.

use super::PollError;
use crate::battery::Battery;
use crate::bms::jbd::codec as jbd;
use crate::protocol::FrameError;
use crate::transport::framed::FramedLink;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// One poll of a JBD BMS.
pub(super) async fn poll<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let mut battery = read(link, jbd::REG_BASIC_INFO, timeout).await?;
    battery.merge(&read(link, jbd::REG_CELLS, timeout).await?);
    if need_identity {
        // The hardware name only names the product; a BMS that does not answer 0x05 is still
        // fully usable.
        match read(link, jbd::REG_HARDWARE, timeout).await {
            Ok(name) => battery.merge(&name),
            Err(err) => tracing::debug!(error = %err, "no hardware name (register 0x05)"),
        }
    }
    Ok(battery)
}

async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    register: u8,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let frame = link.request(&jbd::request_read(register), jbd::scan, timeout).await?;
    // The register echo is checked here: a late reply to another request must not be decoded
    // as this one.
    let echoed = frame.get(1).copied().unwrap_or_default();
    if echoed != register {
        return Err(FrameError::UnexpectedCommand { expected: register, found: echoed }.into());
    }
    Ok(jbd::decode(&frame)?.battery)
}
