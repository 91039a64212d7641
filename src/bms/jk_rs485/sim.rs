//! A simulated JK BMS (older RS485 protocol): answers "read all" from a moving pack with the
//! protocol module's encoder; any other frame gets no answer.

use crate::bms::jk_rs485::codec::{self as jk_rs485, encode_current, encode_temperature, Status};
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Factory id the simulated BMS reports (id 0xBA), the unique id.
pub const SIM_FACTORY_ID: &str = "JK-SIM-B2A24S15P-0001";

/// The read-all reply for a pack.
pub fn read_all(pack: &SimPack, control: &SimControl) -> Vec<u8> {
    let t = |i: usize| pack.temperatures_c.get(i).copied().unwrap_or(25.0);
    let status = u16::from(!control.charge_fet_off()) | 0x02 | 0x04;
    Status {
        cells_mv: pack.cell_voltages_mv(),
        temperatures_raw: [
            encode_temperature(pack.temperature_mos_c),
            encode_temperature(t(0)),
            encode_temperature(t(1)),
        ],
        voltage_10mv: (pack.voltage_v() * 100.0).round().clamp(0.0, 65535.0) as u16,
        current_raw: encode_current(pack.current_a),
        soc_percent: pack.soc_percent.round().clamp(0.0, 100.0) as u8,
        cycles: u16::try_from(pack.cycles).unwrap_or(u16::MAX),
        warnings: 0,
        status,
        capacity_ah: pack.capacity_ah.round() as u32,
        software_version: "10.XW_S10.07___".to_owned(),
        factory_id: SIM_FACTORY_ID.to_owned(),
    }
    .encode()
}

/// Serves JK requests on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, jk_rs485::scan, control, move |request| {
        let is_read_all = request.get(8) == Some(&jk_rs485::CMD_READ_ALL)
            && request.get(10) == Some(&jk_rs485::TRANSPORT_REQUEST);
        if !is_read_all {
            return None;
        }
        packs.with(None, &c, Instant::now(), |pack| read_all(pack, &c))
    })
    .await;
}
