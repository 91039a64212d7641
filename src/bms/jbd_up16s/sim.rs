//! Simulated JBD UP-series packs sharing one RS485 bus (one pty): each address answers
//! PackStatus from its own moving [`SimPack`] and takes SetSoc writes; other addresses and commands
//! get no answer, as on a real bus.

use crate::bms::jbd_up16s::codec::{self as jbd_up16s, PackStatus};
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Builds a PackStatus reply for `address` from a pack.
pub fn pack_status(address: u8, pack: &SimPack, control: &SimControl) -> Vec<u8> {
    let clamp16 = |v: f64| v.round().clamp(0.0, 65535.0) as u16;
    let balancing_bits =
        pack.balancing()
            .iter()
            .enumerate()
            .fold(0u16, |b, (i, on)| if *on && i < 16 { b | 1 << i } else { b });
    PackStatus {
        address,
        voltage_10mv: clamp16(pack.voltage_v() * 100.0),
        current_10ma: (pack.current_a * 100.0).round() as i32,
        soc_centi_percent: clamp16(pack.soc_percent * 100.0),
        remaining_10mah: clamp16(pack.remaining_ah() * 100.0),
        full_10mah: clamp16(pack.capacity_ah * 100.0),
        rated_10mah: clamp16(pack.capacity_ah * 100.0),
        mos_temp_0p1c: (pack.temperature_mos_c * 10.0).round() as i16,
        ambient_temp_0p1c: 220,
        soh_percent: 100,
        fault_flags: 0,
        alarm_flags: 0,
        discharge_fet: true,
        charge_fet: !control.charge_fet_off(),
        cycles: u16::try_from(pack.cycles).unwrap_or(u16::MAX),
        cvl_0p1v: clamp16(pack.cells as f64 * 3.5 * 10.0),
        ccl_0p1a: 1000,
        dvl_0p1v: clamp16(pack.cells as f64 * 2.8 * 10.0),
        dcl_0p1a: 1000,
        cells_mv: pack.cell_voltages_mv(),
        temps_0p1c: pack.temperatures_c.iter().map(|t| (t * 10.0).round() as i16).collect(),
        balancing_bits,
        firmware: 0x0C05,
        serial: format!("SIMUP16S{address:02}"),
    }
    .encode()
}

/// Serves UP-series requests on `stream` until it closes: PackStatus from the pack at the
/// request's address; other addresses and commands get no answer, as on a real bus.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, jbd_up16s::scan, control, move |request| {
        let is_status =
            request.get(1) == Some(&jbd_up16s::FUNC_READ) && request.get(2..4) == Some(&[0x10, 0x00]);
        let address = *request.first()?;
        if is_set_soc(request) {
            return set_soc(request, address, &packs, &c);
        }
        if !is_status {
            return None;
        }
        packs.with(Some(address), &c, Instant::now(), |pack| pack_status(address, pack, &c))
    })
    .await;
}

fn is_set_soc(request: &[u8]) -> bool {
    let set = jbd_up16s::SET_SOC;
    request.get(1) == Some(&set.func) && request.get(2..4) == Some(&set.start.to_be_bytes()[..])
}

/// SetSoc (0x79 at 0x2006, payload `11 4A 42 44` + u16 SoC x 100): the pack at `address` takes the
/// SoC and acknowledges with the header echoed (payload length 0); a bad payload gets no answer.
fn set_soc(request: &[u8], address: u8, packs: &Packs, control: &SimControl) -> Option<Vec<u8>> {
    let payload = request.get(8..request.len().checked_sub(2)?)?;
    let [p0, p1, p2, p3, soc_hi, soc_lo] = *payload else { return None };
    if [p0, p1, p2, p3] != jbd_up16s::SET_SOC_PREFIX {
        return None;
    }
    let percent = f64::from(u16::from_be_bytes([soc_hi, soc_lo])) / 100.0;
    if percent > 100.0 || !packs.update(Some(address), |pack| pack.soc_percent = percent) {
        return None;
    }
    control.count_write();
    Some(jbd_up16s::encode_write_ack(address, jbd_up16s::SET_SOC))
}
