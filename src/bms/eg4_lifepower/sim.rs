//! Simulated EG4 LifePower packs on one RS485 bus: each address answers the status (0x01) and
//! firmware (0x33) requests from its own moving pack; other addresses stay silent. The check byte
//! is sent as 0: its algorithm is unknown and no reader verifies it.

use crate::bms::eg4_lifepower::codec as eg4;
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Firmware text the simulated packs report.
pub const SIM_FIRMWARE: &str = "QT-YS00-16SV100A-SIM";

/// The status reply of the pack at `address`.
pub fn status(address: u8, pack: &SimPack) -> Vec<u8> {
    let word = |v: f64| v.round().clamp(0.0, 65535.0) as u16;
    let t = |c: f64| word(c + eg4::TEMP_OFFSET as f64);
    let mut temps: Vec<u16> =
        (0..4).map(|i| t(pack.temperatures_c.get(i % 3).copied().unwrap_or(25.0))).collect();
    temps.extend([t(pack.temperature_mos_c), t(24.0)]);
    let groups = vec![
        (1, pack.cell_voltages_mv()),
        (2, vec![word(eg4::CURRENT_ZERO as f64 - pack.current_a * 100.0)]),
        (3, vec![word(pack.soc_percent * 100.0)]),
        (4, vec![word(pack.capacity_ah * 100.0)]),
        (5, temps),
        (6, vec![0; 5]),
        (7, vec![u16::try_from(pack.cycles).unwrap_or(u16::MAX)]),
        (8, vec![word(pack.voltage_v() * 100.0)]),
        (9, vec![10_000]),
        (10, vec![0]),
    ];
    eg4::encode_status(address, &groups)
}

/// Serves LifePower requests on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, eg4::scan, control, move |request| {
        let (address, command) = (*request.get(1)?, *request.get(2)?);
        if request.get(3) != Some(&0) {
            return None;
        }
        packs
            .with(Some(address), &c, Instant::now(), |pack| match command {
                eg4::CMD_STATUS => Some(status(address, pack)),
                eg4::CMD_FIRMWARE => Some(eg4::encode_frame(address, command, SIM_FIRMWARE.as_bytes(), 0)),
                _ => None,
            })
            .flatten()
    })
    .await;
}
