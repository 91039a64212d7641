//! Simulated EG4 LifePower4 packs on one RS485 bus: each address answers the analog (0x42) and
//! alarm (0x44) requests from its own moving pack; other addresses, versions and commands get
//! no answer, as on a real bus.

use super::codec::{self as lp4, deci_kelvin, AlarmInfo, Analog};
use crate::protocol::yd1363;
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// The analog reading of a pack.
pub fn analog(address: u8, pack: &SimPack) -> Analog {
    let word = |v: f64| v.round().clamp(0.0, 65535.0) as u16;
    let cells = pack.cell_voltages_mv();
    let (max, min) = (cells.iter().copied().max().unwrap_or(0), cells.iter().copied().min().unwrap_or(0));
    let temps: Vec<u16> =
        (0..4).map(|i| deci_kelvin(pack.temperatures_c.get(i % 3).copied().unwrap_or(25.0))).collect();
    Analog {
        data_flag: 0,
        pack_group: address,
        max_cell_mv: max,
        min_cell_mv: min,
        cell_diff_mv: max - min,
        max_temp_dk: temps.iter().copied().max().unwrap_or(0),
        min_temp_dk: temps.iter().copied().min().unwrap_or(0),
        cells_mv: cells,
        cell_temps_dk: temps,
        environment_dk: deci_kelvin(22.0),
        mosfet_dk: deci_kelvin(pack.temperature_mos_c),
        current_10ma: (pack.current_a * 100.0).round().clamp(-32768.0, 32767.0) as i16,
        voltage_10mv: word(pack.voltage_v() * 100.0),
        remaining_10mah: word(pack.remaining_ah() * 100.0),
        full_10mah: word(pack.capacity_ah * 100.0),
        cycles: u16::try_from(pack.cycles).unwrap_or(u16::MAX),
        user_defined: 0x0F,
        soc_percent: word(pack.soc_percent),
        soh_percent: 100,
        cumulative: [0; 6],
        times: [0; 2],
    }
}

/// The alarm reading of a pack: nothing raised, the MOSFETs as the control says.
pub fn alarm(address: u8, pack: &SimPack, control: &SimControl) -> AlarmInfo {
    let balance_status = pack.balancing_mask();
    let discharging = if pack.current_a < 0.0 { 0x01 } else { 0x02 };
    AlarmInfo {
        pack_group: address,
        cell_states: vec![0; pack.cells.min(32)],
        temperature_states: vec![0; 6],
        fet_status: u8::from(!control.discharge_fet_off()) | u8::from(!control.charge_fet_off()) << 1,
        system_status: if pack.current_a == 0.0 { 0x08 } else { discharging },
        balance_status,
        ..AlarmInfo::default()
    }
}

/// Serves LifePower4 requests on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, lp4::scan, control, move |request| {
        let frame = yd1363::parse(request).ok()?;
        if frame.ver != lp4::VER || frame.cid1 != lp4::CID1_EG4 || !frame.info_chars.is_empty() {
            return None;
        }
        let address = frame.adr;
        packs
            .with(Some(address), &c, Instant::now(), |pack| match frame.cid2 {
                lp4::CID2_ANALOG => Some(lp4::encode_reply(address, &analog(address, pack).encode())),
                lp4::CID2_ALARM => Some(lp4::encode_reply(address, &alarm(address, pack, &c).encode())),
                _ => None,
            })
            .flatten()
    })
    .await;
}
