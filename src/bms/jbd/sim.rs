//! A simulated JBD BMS: answers basic info (0x03), cells (0x04) and hardware name (0x05) from a
//! moving pack and obeys MOSFET control writes (0xE1); malformed requests get no answer, unknown
//! registers an error status.

use crate::bms::jbd::codec as jbd;
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Name the simulated BMS reports on register 0x05.
pub const SIM_MODEL: &str = "JBD-SP16S020-SIM";

/// The reply to one JBD request, or `None` for a frame that gets no answer.
pub fn respond(request: &[u8], pack: &SimPack, control: &SimControl) -> Option<Vec<u8>> {
    if request.get(1) == Some(&jbd::OP_WRITE) {
        return write(request, control);
    }
    if request.get(1) != Some(&jbd::OP_READ) {
        return None;
    }
    let p = pack;
    match request.get(2).copied()? {
        jbd::REG_BASIC_INFO => {
            let balance_bits =
                p.balancing()
                    .iter()
                    .enumerate()
                    .fold(0u32, |bits, (i, on)| if *on && i < 32 { bits | 1 << i } else { bits });
            let to_0p1k = |c: f64| (c * 10.0 + jbd::NTC_ZERO_0P1K as f64).round().clamp(0.0, 65535.0) as u16;
            let info = jbd::BasicInfo {
                voltage_10mv: (p.voltage_v() * 100.0).round().clamp(0.0, 65535.0) as u16,
                current: (p.current_a * 100.0).round().clamp(-32768.0, 32767.0) as i16,
                remaining_capacity: (p.remaining_ah() * 100.0).round().clamp(0.0, 65535.0) as u16,
                nominal_capacity: (p.capacity_ah * 100.0).round().clamp(0.0, 65535.0) as u16,
                cycles: u16::try_from(p.cycles).unwrap_or(u16::MAX),
                production_date: jbd::pack_production_date(2024, 5, 17),
                balance_bits,
                protection_bits: 0,
                software_version: 0x80,
                rsoc: p.soc_percent.round().clamp(0.0, 100.0) as u8,
                charge_fet: !control.charge_fet_off(),
                discharge_fet: !control.discharge_fet_off(),
                cell_count: u8::try_from(p.cells).unwrap_or(u8::MAX),
                ntc_0p1k: p.temperatures_c.iter().map(|t| to_0p1k(*t)).collect(),
                high_current_units: false,
            };
            Some(info.encode())
        }
        jbd::REG_CELLS => Some(jbd::encode_cells(&p.cell_voltages_mv())),
        jbd::REG_HARDWARE => Some(jbd::encode_hardware(SIM_MODEL)),
        register => Some(jbd::encode_response(register, 0x80, &[])),
    }
}

/// A write: MOSFET control (0xE1, data `00 bb`, bit 0 charge off, bit 1 discharge off) is applied
/// and acknowledged like the real BMS (`DD E1 00 00 00 00 77`); other registers get an error status.
fn write(request: &[u8], control: &SimControl) -> Option<Vec<u8>> {
    let register = *request.get(2)?;
    match (register, request.get(3..6)) {
        (jbd::REG_MOS_CONTROL, Some(&[2, 0, bits])) => {
            control.set_charge_fet_off(bits & 1 != 0);
            control.set_discharge_fet_off(bits & 2 != 0);
            control.count_write();
            Some(jbd::encode_response(register, 0, &[]))
        }
        _ => Some(jbd::encode_response(register, 0x80, &[])),
    }
}

/// Serves JBD requests on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, jbd::scan, control, move |request| {
        packs.with(None, &c, Instant::now(), |pack| respond(request, pack, &c)).flatten()
    })
    .await;
}
