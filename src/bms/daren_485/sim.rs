//! Simulated Daren packs on one RS485 bus: each address answers realtime data (0x42),
//! manufacturer info (0x51), system parameters (0x47), the protocol version (0x4F) and the 0xB0
//! modules 3 and 4 from its own moving pack; other addresses, versions and commands get no
//! answer, as on a real bus.

use super::codec::{self as daren, Manufacturer, Realtime};
use crate::protocol::yd1363;
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// The simulated pack serial at `address`.
pub fn serial(address: u8) -> String {
    format!("SIMDAREN{address:02}")
}

/// The realtime reading of a pack.
pub fn realtime(pack: &SimPack, control: &SimControl) -> Realtime {
    let word = |v: f64| v.round().clamp(0.0, 65535.0) as u16;
    let deci = |c: f64| (c * 10.0).round().clamp(-500.0, 1500.0) as i16;
    let balancing = pack.balancing_mask();
    Realtime {
        data_flag: 0,
        soc_centi: word(pack.soc_percent * 100.0),
        voltage_10mv: word(pack.voltage_v() * 100.0),
        cells_mv: pack.cell_voltages_mv(),
        environment_dc: 220,
        pack_dc: deci(pack.temperatures_c.first().copied().unwrap_or(25.0)),
        mosfet_dc: deci(pack.temperature_mos_c),
        cell_temps_dc: (0..4)
            .map(|i| deci(pack.temperatures_c.get(i % 3).copied().unwrap_or(25.0)))
            .collect(),
        current_10ma: (pack.current_a * 100.0).round().clamp(-32768.0, 32767.0) as i16,
        resistance: 0,
        soh_percent: 100,
        user_defined: 1,
        full_10mah: word(pack.capacity_ah * 100.0),
        remaining_10mah: word(pack.remaining_ah() * 100.0),
        cycles: u16::try_from(pack.cycles).unwrap_or(u16::MAX),
        voltage_status: 0,
        current_status: 0,
        temperature_status: 0,
        alarm_status: 0,
        fet_status: u16::from(!control.charge_fet_off()) | u16::from(!control.discharge_fet_off()) << 1,
        cell_words: Some([0, 0, 0, 0, balancing as u16, (balancing >> 16) as u16, 0, 0, 0, 0]),
        machine_io: Some((0x04, 0)),
    }
}

fn manufacturer() -> Manufacturer {
    Manufacturer {
        hardware_type: "SIM_G".into(),
        product_code: "SIMDR".into(),
        project_code: "16S100A".into(),
        software: [1, 0, 2],
        boot: [1, 1],
    }
}

fn module(address: u8, module: u8, pack: &SimPack) -> Vec<u8> {
    let mut info = vec![daren::CID2_PARAMS, address, 0x01, module, 0xFF];
    let cah = |ah: f64| ((ah * 100.0).round().clamp(0.0, 65535.0) as u16).to_be_bytes();
    if module == daren::MODULE_MFG {
        info.push(113);
        let mut text = |t: &str, len: usize| {
            let mut bytes: Vec<u8> = t.bytes().take(len).collect();
            bytes.resize(len, 0xFF);
            info.extend(bytes);
        };
        text(&serial(address), 30);
        text("", 30);
        text("", 30);
        text("", 3);
        text("", 19);
        info.push(0);
    } else {
        info.push(0);
        info.extend(cah(pack.remaining_ah()));
        info.extend(cah(pack.capacity_ah));
        info.extend(cah(pack.capacity_ah));
        info.extend([0; 12]);
    }
    info
}

fn system_params(address: u8, pack: &SimPack) -> Vec<u8> {
    let words: [u16; 12] = [3650, 2500, 115, 45, 12000, 3650, 2500, pack.cells as u16, 12000, 8000, 1440, 0];
    let mut info = vec![0];
    words.iter().for_each(|w| info.extend(w.to_be_bytes()));
    info.extend([0xFF; 20]);
    let mut barcode: Vec<u8> = format!("SIMBMS{address:02}").into_bytes();
    barcode.resize(20, b' ');
    info.extend(barcode);
    info
}

/// Serves Daren requests on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, daren::scan, control, move |request| {
        let frame = yd1363::parse(request).ok()?;
        if frame.ver != daren::VER || frame.cid1 != daren::CID1 {
            return None;
        }
        let (address, info) = (frame.adr, frame.info().ok()?);
        let info = packs
            .with(Some(address), &c, Instant::now(), |pack| match (frame.cid2, info.as_slice()) {
                (daren::CID2_REALTIME, [group]) if *group == address => Some(realtime(pack, &c).encode()),
                (daren::CID2_SYSTEM_PARAMS, [group]) if *group == address => {
                    Some(system_params(address, pack))
                }
                (daren::CID2_PROTOCOL_VERSION, []) => Some(vec![0xC8]),
                (daren::CID2_MANUFACTURER, []) => Some(manufacturer().encode()),
                (daren::CID2_PARAMS, [group, 0x01, m, 0xFF, 0x00])
                    if *group == address && (*m == daren::MODULE_MFG || *m == daren::MODULE_CAP) =>
                {
                    Some(module(address, *m, pack))
                }
                _ => None,
            })
            .flatten()?;
        Some(daren::encode_reply(address, &info))
    })
    .await;
}
