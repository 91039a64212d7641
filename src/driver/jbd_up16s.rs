//! JBD UP-series on RS485: pack status every poll, model and serial once per connection.

use super::PollError;
use crate::battery::Battery;
use crate::protocol::jbd_up16s;
use crate::transport::framed::FramedLink;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// One poll of the UP-series BMS at `address`.
pub(super) async fn poll<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let frame = link.request(&jbd_up16s::request_pack_status(address), jbd_up16s::scan, timeout).await?;
    let mut battery = jbd_up16s::decode(&frame, Some(address))?.battery;
    if need_identity {
        let frame = link.request(&jbd_up16s::request_pack_params1(address), jbd_up16s::scan, timeout).await?;
        battery.merge(&jbd_up16s::decode(&frame, Some(address))?.battery);
    }
    Ok(battery)
}
