//! EG4 LifePower: the status group reply every poll, the firmware text once per connection.

use super::PollError;
use crate::battery::Battery;
use crate::bms::eg4_lifepower::codec as eg4;
use crate::protocol::FrameError;
use crate::transport::framed::FramedLink;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// One poll of the LifePower pack at `address`.
pub(super) async fn poll<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let mut battery = read(link, address, eg4::CMD_STATUS, timeout).await?;
    if need_identity {
        match read(link, address, eg4::CMD_FIRMWARE, timeout).await {
            Ok(version) => battery.merge(&version),
            Err(err) => tracing::debug!(address, error = %err, "no firmware version (command 0x33)"),
        }
    }
    Ok(battery)
}

async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    command: u8,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let frame = link.request(&eg4::request(address, command), eg4::scan, timeout).await?;
    let found = frame.get(2).copied().unwrap_or_default();
    // An empty frame is the request itself (local echo) or a reply without data.
    if found != command || frame.get(3) == Some(&0) {
        return Err(FrameError::UnexpectedCommand { expected: command, found }.into());
    }
    Ok(eg4::decode(&frame, Some(address))?.battery)
}
