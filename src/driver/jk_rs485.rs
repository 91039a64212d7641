//! JK BMS older RS485/TTL: one "read all" request per poll carries everything, identity included.

use super::PollError;
use crate::battery::Battery;
use crate::bms::jk_rs485::codec as jk_rs485;
use crate::protocol::FrameError;
use crate::transport::framed::FramedLink;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// One poll of a JK BMS.
pub(super) async fn poll<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let frame = link.request(&jk_rs485::request_read_all(), jk_rs485::scan, timeout).await?;
    // A request echoed by the adapter scans as a frame too: only a reply carries values.
    let command = frame.get(8).copied().unwrap_or_default();
    if command != jk_rs485::CMD_READ_ALL || frame.get(10) == Some(&jk_rs485::TRANSPORT_REQUEST) {
        return Err(FrameError::UnexpectedCommand { expected: jk_rs485::CMD_READ_ALL, found: command }.into());
    }
    let battery = jk_rs485::decode(&frame)?.battery;
    if battery.voltage_v.is_none() || battery.cell_voltages_v.is_none() {
        return Err(FrameError::InvalidField { field: "voltage" }.into());
    }
    Ok(battery)
}
