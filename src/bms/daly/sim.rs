//! Simulated Daly packs on one bus: each host address (0x40 = board 1 ...) answers from its own
//! moving pack, built with `codec::sentence`. Like the captured BMS, the cell voltage
//! reply is always 16 sentences (48 cells), the unused ones zero.

use crate::bms::daly::codec::{self as daly, sentence};
use crate::sim::model::SimPack;
use crate::sim::serve::{serve_requests, Packs, SimControl};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// Temperature sensors the simulated BMS reports.
const SENSORS: usize = 3;

fn be16(v: f64) -> [u8; 2] {
    (v.round().clamp(0.0, 65535.0) as u16).to_be_bytes()
}

fn temp(c: f64) -> u8 {
    (c + daly::TEMP_OFFSET as f64).round().clamp(0.0, 255.0) as u8
}

/// The reply sentences (concatenated) to `command` from the pack at host address `address`.
pub fn respond(address: u8, command: u8, pack: &SimPack, control: &SimControl) -> Option<Vec<u8>> {
    let id = daly::reply_id(address);
    let one = |data: [u8; 8]| Some(sentence(id, command, data).to_vec());
    let cells = pack.cell_voltages_mv();
    match command {
        daly::CMD_SOC => {
            let [v0, v1] = be16(pack.voltage_v() * 10.0);
            // The default convention (`codec.rs`): raw below 30000 is charging; some packs send
            // the other one (`SimControl::set_current_sign_reversed`).
            let sign = if control.current_sign_reversed() { 1.0 } else { -1.0 };
            let [c0, c1] = be16(daly::CURRENT_ZERO as f64 + sign * pack.current_a * 10.0);
            let [s0, s1] = be16(pack.soc_percent * 10.0);
            one([v0, v1, 0, 0, c0, c1, s0, s1])
        }
        daly::CMD_MOS => {
            let state = if pack.current_a > 0.0 {
                1
            } else if pack.current_a < 0.0 {
                2
            } else {
                0
            };
            let mah = (pack.remaining_ah() * 1000.0).round().max(0.0) as u32;
            let [m0, m1, m2, m3] = mah.to_be_bytes();
            one([state, u8::from(!control.charge_fet_off()), 1, 0, m0, m1, m2, m3])
        }
        daly::CMD_STATUS => {
            let [y0, y1] = u16::try_from(pack.cycles).unwrap_or(u16::MAX).to_be_bytes();
            one([cells.len().min(48) as u8, SENSORS as u8, 0, 0, 0, y0, y1, 0])
        }
        daly::CMD_CELL_VOLTAGES => Some(
            (0..16)
                .flat_map(|f| {
                    let mv = |k: usize| cells.get(3 * f + k).copied().unwrap_or(0).to_be_bytes();
                    let (a, b, c) = (mv(0), mv(1), mv(2));
                    sentence(id, command, [f as u8 + 1, a[0], a[1], b[0], b[1], c[0], c[1], 0x40])
                })
                .collect(),
        ),
        daly::CMD_TEMPERATURES => {
            let t = |i: usize| pack.temperatures_c.get(i).map_or(0, |c| temp(*c));
            one([1, t(0), t(1), t(2), 0, 0, 0, 0])
        }
        daly::CMD_BALANCE => {
            let balancing = pack.balancing();
            let mut data = [0u8; 8];
            for (byte, cells) in data.iter_mut().zip(balancing.chunks(8)) {
                *byte = cells.iter().enumerate().fold(0, |bits, (bit, on)| bits | u8::from(*on) << bit);
            }
            one(data)
        }
        daly::CMD_FAILURES => one([0; 8]),
        daly::CMD_RATED => {
            let [a, b, c, d] = ((pack.capacity_ah * 1000.0).round() as u32).to_be_bytes();
            one([a, b, c, d, 0, 0, 0x0C, 0x80])
        }
        daly::CMD_PRODUCTION => one([0, 0, 24, 5, 17, 0, 0, 0]),
        daly::CMD_BATTERY_CODE => {
            let code = format!("DALY-SIM-{address:02X}");
            let mut bytes = code.into_bytes();
            bytes.resize(35, 0);
            Some(
                bytes
                    .chunks(7)
                    .enumerate()
                    .flat_map(|(f, part)| {
                        let mut data = [0u8; 8];
                        data[0] = f as u8 + 1;
                        for (byte, value) in data.iter_mut().skip(1).zip(part) {
                            *byte = *value;
                        }
                        sentence(id, command, data)
                    })
                    .collect(),
            )
        }
        daly::CMD_CELL_MINMAX | daly::CMD_TEMP_MINMAX => None,
        _ => None,
    }
}

/// Serves Daly requests on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, packs: Packs, control: Arc<SimControl>) {
    let c = Arc::clone(&control);
    serve_requests(stream, daly::scan, control, move |request| {
        let (address, command) = (*request.get(1)?, *request.get(2)?);
        packs.with(Some(address), &c, Instant::now(), |pack| respond(address, command, pack, &c)).flatten()
    })
    .await;
}
