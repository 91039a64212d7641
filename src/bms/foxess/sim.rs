//! Simulated FoxESS HV2600 packs (18 cells each) on one bus: FC03 replies with the `0D 0A`
//! trailer from registers 0x0000..0x0026 of each moving pack.

use crate::bms::foxess::codec as foxess;
use crate::protocol::modbus;
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Registers 0x0000..0x0026 of the pack at `address`.
pub fn registers(address: u8, pack: &SimPack) -> Vec<u16> {
    let mut r = [0u16; 0x27];
    let cells = pack.cell_voltages_mv();
    let n = cells.len().min(foxess::CELLS_PER_PACK);
    for (register, cell) in r.iter_mut().skip(0x08).zip(cells.iter().take(n)) {
        *register = *cell;
    }
    r[4] = cells.iter().copied().max().unwrap_or(0);
    r[5] = cells.iter().copied().min().unwrap_or(0);
    let soc = pack.soc_percent.round().clamp(0.0, 100.0) as u16;
    r[0x23] = u16::from(address) << 8;
    r[0x24] = soc << 8 | 0x33;
    r[0x25] = u16::try_from(pack.cycles).unwrap_or(u16::MAX);
    r[0x26] = 0x2082;
    r.to_vec()
}

/// Serves FC03 requests on `stream`; other addresses and the BMS broadcast get no answer.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, foxess::scan_request, control, move |request| {
        // A pack answers only complete FoxESS requests (with their trailer).
        let body = request.strip_suffix(&foxess::TRAILER)?;
        let req = modbus::parse_request(body).ok()?;
        let map = packs.with(Some(req.address), &c, Instant::now(), |p| registers(req.address, p))?;
        let (start, end) = (usize::from(req.start), usize::from(req.start) + usize::from(req.count));
        let mut reply = modbus::read_response(req.address, map.get(start..end)?);
        reply.extend_from_slice(&foxess::TRAILER);
        Some(reply)
    })
    .await;
}
