//! JK PB: status and settings (the BMS limits, which a user may change) every poll; about
//! (serial) once per connection. Every reply must carry the FC16 acknowledgement of the polled address; the
//! link keeps 120 ms between commands (set when the port is opened).

use super::PollError;
use crate::battery::Battery;
use crate::bms::jk_pb::codec as jk_pb;
use crate::transport::framed::FramedLink;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    register: u16,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let reply = link.request(&jk_pb::request(address, register), jk_pb::scan_reply, timeout).await?;
    Ok(jk_pb::decode_reply(&reply, address, register)?.battery)
}

/// One poll of the JK PB at `address`.
pub(super) async fn poll<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let mut battery = read(link, address, jk_pb::REG_STATUS, timeout).await?;
    let settings = read(link, address, jk_pb::REG_SETTINGS, timeout).await?;
    // The status frame's cell count (from the present mask) wins over the configured one.
    battery.merge(&Battery { cell_count: battery.cell_count, ..settings });
    if need_identity {
        match read(link, address, jk_pb::REG_ABOUT, timeout).await {
            Ok(about) => battery.merge(&about),
            Err(err) => tracing::debug!(address, error = %err, "JK PB about frame unread"),
        }
    }
    Ok(battery)
}
