//! Simulated JK PB packs on one RS485 bus: each address answers the FC16 triggers with the
//! 300-byte frame, one `00` and the FC16 acknowledgement, as the LA1010 capture shows.

use crate::bms::jk_pb::codec::{self as jk_pb, About, Settings, Status};
use crate::protocol::modbus;
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// The frame answering the trigger of `register`, or `None` for an unknown register.
pub fn frame(address: u8, register: u16, pack: &SimPack, control: &SimControl) -> Option<Vec<u8>> {
    let temp = |c: f64| (c * 10.0).round().clamp(-32768.0, 32767.0) as i16;
    let t = |i: usize| temp(pack.temperatures_c.get(i).copied().unwrap_or(25.0));
    Some(match register {
        jk_pb::REG_STATUS => Status {
            cells_mv: pack.cell_voltages_mv(),
            voltage_mv: (pack.voltage_v() * 1000.0).round() as u32,
            current_ma: (pack.current_a * 1000.0).round() as i32,
            mos_temp_0p1c: temp(pack.temperature_mos_c),
            temps_0p1c: [t(0), t(1), t(0), t(1)],
            alarms: 0,
            soc: pack.soc_percent.round().clamp(0.0, 100.0) as u8,
            remaining_mah: (pack.remaining_ah() * 1000.0).round() as i32,
            full_mah: (pack.capacity_ah * 1000.0).round() as u32,
            cycles: pack.cycles,
            charge_fet: !control.charge_fet_off(),
            discharge_fet: true,
        }
        .encode(),
        jk_pb::REG_SETTINGS => Settings {
            cells: pack.cells as u32,
            charge_ocp_ma: 100_000,
            discharge_ocp_ma: 150_000,
            capacity_mah: (pack.capacity_ah * 1000.0).round() as u32,
            address,
        }
        .encode(),
        jk_pb::REG_ABOUT => About {
            vendor: "JK_PB2A16S20P".into(),
            hardware: "15A".into(),
            software: "15.41".into(),
            serial: format!("SIMJKPB{address:02}"),
        }
        .encode(),
        _ => return None,
    })
}

/// Serves triggers on `stream` until it closes; other addresses get no answer.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, modbus::scan_request, control, move |request| {
        let req = modbus::parse_request(request).ok()?;
        if req.function != modbus::FC_WRITE_MULTIPLE {
            return None;
        }
        let address = req.address;
        let mut reply =
            packs.with(Some(address), &c, Instant::now(), |p| frame(address, req.start, p, &c))??;
        reply.push(0x00);
        reply.extend_from_slice(&modbus::write_ack(address, req.start, req.count));
        Some(reply)
    })
    .await;
}
