//! JBD UP-series on RS485: pack status every poll, model and serial once per connection.

use super::PollError;
use crate::battery::Battery;
use crate::bms::jbd_up16s::codec as jbd_up16s;
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
        // PackParams1 (model + serial) is missing on some firmware: without it the pack is
        // still fully usable, so its failure only costs the identity.
        let identity =
            match link.request(&jbd_up16s::request_pack_params1(address), jbd_up16s::scan, timeout).await {
                Ok(frame) => jbd_up16s::decode(&frame, Some(address)).map_err(PollError::from),
                Err(err) => Err(err.into()),
            };
        match identity {
            Ok(decoded) => battery.merge(&decoded.battery),
            Err(err) => tracing::debug!(address, error = %err, "no PackParams1 (model/serial)"),
        }
    }
    Ok(battery)
}
