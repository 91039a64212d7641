//! A simulated JK BMS behind BLE: 0x97 answered with the device-info frame, 0x96 with the
//! settings frame and a cell-info frame (JK02_32S: hardware 15A, software 11.26). The frames are the JK PB
//! simulator's: the 32S layout is the JK PB one.

use super::codec as jk_ble;
use crate::bms::jk_pb::codec as jk_pb;
use crate::bms::jk_pb::sim::frame;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Firmware the simulated BMS reports (11 and newer: JK02_32S).
pub const SIM_SOFTWARE: &str = "11.26";

/// The reply to one command.
pub fn respond(command: &[u8], pack: &crate::sim::model::SimPack, control: &SimControl) -> Option<Vec<u8>> {
    match command.get(4).copied()? {
        jk_ble::CMD_DEVICE_INFO => {
            let mut about = frame(1, jk_pb::REG_ABOUT, pack, control)?;
            // Software version at 30..38, then the checksum again.
            let mut software = [0u8; 8];
            software.iter_mut().zip(SIM_SOFTWARE.bytes()).for_each(|(slot, b)| *slot = b);
            about.get_mut(30..38)?.copy_from_slice(&software);
            let sum = crate::protocol::checksum::sum8(about.get(..jk_ble::FRAME_LEN - 1)?);
            *about.get_mut(jk_ble::FRAME_LEN - 1)? = sum;
            Some(about)
        }
        jk_ble::CMD_CELL_INFO => {
            let mut reply = frame(1, jk_pb::REG_SETTINGS, pack, control)?;
            reply.extend(frame(1, jk_pb::REG_STATUS, pack, control)?);
            Some(reply)
        }
        _ => None,
    }
}

/// Serves commands on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, jk_ble::scan_command, control, move |command| {
        packs.with(None, &c, Instant::now(), |pack| respond(command, pack, &c)).flatten()
    })
    .await;
}
