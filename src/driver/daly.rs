//! Daly UART/RS485: seven short exchanges per poll (0x90 SoC, 0x93 MOS, 0x94 status, 0x95 cells,
//! 0x96 temperatures, 0x97 balance, 0x98 alarms), rated capacity and battery code once.
//!
//! A sleeping pack does not answer at all: the first exchange times out and the poll ends there,
//! one timeout per cycle with the same message, so the monitor reports the pack offline once
//! instead of a storm of errors (`docs/protocols/daly.md`).

use super::PollError;
use crate::battery::Battery;
use crate::bms::daly::codec::{self as daly, FRAME_LEN};
use crate::protocol::FrameError;
use crate::transport::framed::FramedLink;
use crate::transport::LinkError;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// One poll of the Daly BMS at host address `address`.
pub(super) async fn poll<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let mut b = decode(&one(link, address, daly::CMD_SOC, timeout).await?)?;
    b.merge(&decode(&one(link, address, daly::CMD_MOS, timeout).await?)?);
    let status = one(link, address, daly::CMD_STATUS, timeout).await?;
    b.merge(&decode(&status)?);
    let cells = usize::from(status.get(4).copied().unwrap_or(0));
    let sensors = usize::from(status.get(5).copied().unwrap_or(0));
    if cells == 0 || cells > 48 {
        return Err(FrameError::InvalidField { field: "cell_count" }.into());
    }
    let frames = several(link, address, daly::CMD_CELL_VOLTAGES, cells.div_ceil(3), timeout).await?;
    b.cell_voltages_v = Some(daly::cells(&refs(&frames), cells)?);
    if sensors > 0 {
        let frames = several(link, address, daly::CMD_TEMPERATURES, sensors.div_ceil(7), timeout).await?;
        b.temperatures_c = Some(daly::temperatures(&refs(&frames), sensors)?);
    }
    let balance = decode(&one(link, address, daly::CMD_BALANCE, timeout).await?)?;
    b.balancing_cells = balance.balancing_cells.map(|flags| flags.into_iter().take(cells).collect());
    b.merge(&decode(&one(link, address, daly::CMD_FAILURES, timeout).await?)?);
    if need_identity {
        identity(link, address, timeout, &mut b).await;
    }
    Ok(b)
}

/// Rated capacity, production date and battery code; a BMS without them is still usable.
async fn identity<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    timeout: Duration,
    b: &mut Battery,
) {
    for command in [daly::CMD_RATED, daly::CMD_PRODUCTION] {
        match one(link, address, command, timeout).await.map(|f| decode(&f)) {
            Ok(Ok(decoded)) => b.merge(&decoded),
            Ok(Err(err)) => tracing::debug!(address, command, error = %err, "identity reply not decoded"),
            Err(err) => tracing::debug!(address, command, error = %err, "no identity reply"),
        }
    }
    match several(link, address, daly::CMD_BATTERY_CODE, 5, timeout).await {
        Ok(frames) => b.serial = daly::battery_code(&refs(&frames)),
        Err(err) => tracing::debug!(address, error = %err, "no battery code (0x57)"),
    }
}

fn refs(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    frames.iter().map(Vec::as_slice).collect()
}

fn decode(frame: &[u8]) -> Result<Battery, PollError> {
    Ok(daly::decode(frame)?.battery)
}

async fn one<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    command: u8,
    timeout: Duration,
) -> Result<Vec<u8>, PollError> {
    let mut frames = several(link, address, command, 1, timeout).await?;
    frames.pop().ok_or(PollError::Frame(FrameError::TooShort { need: FRAME_LEN, got: 0 }))
}

/// Sends `command` and collects `count` reply sentences for it. Sentences for other commands
/// (the tail of an earlier multi-sentence reply, an echo of the request) are skipped.
async fn several<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut FramedLink<S>,
    address: u8,
    command: u8,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, PollError> {
    let deadline = Instant::now() + timeout;
    let mut frame = link.request(&daly::request(address, command), daly::scan, timeout).await?;
    let mut frames = Vec::with_capacity(count);
    loop {
        let is_echo = frame.get(1) == Some(&address);
        match daly::check_reply(&frame, address, command) {
            Ok(_) => frames.push(frame),
            Err(FrameError::UnexpectedCommand { .. }) => {}
            Err(_) if is_echo => {}
            Err(err) => return Err(err.into()),
        }
        if frames.len() >= count {
            return Ok(frames);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        frame = match link.read_frame(daly::scan, left).await {
            Ok(frame) => frame,
            Err(LinkError::Timeout { .. }) if !frames.is_empty() => {
                return Err(FrameError::InvalidField { field: "missing_sentence" }.into())
            }
            Err(err) => return Err(err.into()),
        };
    }
}
