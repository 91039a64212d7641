//! A simulated Daly BMS behind BLE: the status block from a moving pack.

use super::codec::{self as daly_ble, Block};
use crate::protocol::modbus;
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// The reply to a request, `None` for anything but the status read.
pub fn respond(request: &[u8], pack: &SimPack, control: &SimControl) -> Option<Vec<u8>> {
    let r = modbus::parse_request(request).ok()?;
    if r.address != daly_ble::UNIT || r.function != modbus::FC_READ_HOLDING || r.count != daly_ble::REGISTERS
    {
        return None;
    }
    Some(
        Block {
            cells_mv: pack.cell_voltages_mv(),
            temps_c: pack.temperatures_c.clone(),
            voltage_v: pack.voltage_v(),
            current_a: pack.current_a,
            soc_percent: pack.soc_percent,
            remaining_ah: pack.remaining_ah(),
            cycles: u16::try_from(pack.cycles).unwrap_or(u16::MAX),
            charge_fet: !control.charge_fet_off(),
            discharge_fet: !control.discharge_fet_off(),
        }
        .encode(),
    )
}

/// Serves requests on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, modbus::scan_request, control, move |request| {
        packs.with(None, &c, Instant::now(), |pack| respond(request, pack, &c)).flatten()
    })
    .await;
}
