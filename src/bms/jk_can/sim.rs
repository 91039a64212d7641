//! A JK BMS broadcasting its CAN protocol on an in-memory bus: every frame of `codec.rs` once a
//! second from the pack model (JK sends BATT_ST1 every 20 ms; once a second is enough for a
//! listener and keeps tests light), ids offset by the pack's address. Honours `SimControl`
//! (silent, frozen, charge FET off).

use super::codec;
use crate::sim::model::SimPack;
use crate::sim::serve::{Packs, SimControl};
use crate::transport::can::{CanFrame, CanLink, MemoryCanBus};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn le(v: f64) -> [u8; 2] {
    (v.round().clamp(0.0, 65535.0) as u16).to_le_bytes()
}

fn temp(c: f64) -> u8 {
    (c + 50.0).round().clamp(1.0, 255.0) as u8
}

/// The frames (id at address 0, data) of one cycle of `pack`.
pub fn frames(pack: &SimPack, control: &SimControl) -> Vec<(u32, Vec<u8>)> {
    let mv = pack.cell_voltages_mv();
    let (max_i, max) = mv.iter().enumerate().max_by_key(|(_, v)| **v).map_or((0, 0), |(i, v)| (i, *v));
    let (min_i, min) = mv.iter().enumerate().min_by_key(|(_, v)| **v).map_or((0, 0), |(i, v)| (i, *v));
    let [v0, v1] = le(pack.voltage_v() * 10.0);
    let [c0, c1] = le(4000.0 + pack.current_a * 10.0);
    let soc = pack.soc_percent.round().clamp(0.0, 100.0) as u8;
    let [x0, x1] = max.to_le_bytes();
    let [n0, n1] = min.to_le_bytes();
    let t = &pack.temperatures_c;
    let (t_max, t_min) = t.iter().fold((f64::MIN, f64::MAX), |(hi, lo), c| (hi.max(*c), lo.min(*c)));
    let [r0, r1] = le(pack.remaining_ah() * 10.0);
    let [f0, f1] = le(pack.capacity_ah * 10.0);
    let [y0, y1] = u16::try_from(pack.cycles).unwrap_or(u16::MAX).to_le_bytes();
    let sensor = |i: usize| t.get(i).map_or(0, |c| temp(*c));
    let fets = u8::from(!control.charge_fet_off()) | u8::from(!control.discharge_fet_off()) << 1;
    let mut out = vec![
        (codec::BATT_ST1, vec![v0, v1, c0, c1, soc, 0, 0, 0]),
        (codec::CELL_VOLT, vec![x0, x1, max_i as u8 + 1, n0, n1, min_i as u8 + 1, 0, 0]),
        (codec::CELL_TEMP, vec![temp(t_max), 1, temp(t_min), 2, 0, 0, 0, 0]),
        (codec::ALM_INFO, vec![0; 8]),
        (codec::BATT_ST2, vec![r0, r1, f0, f1, 0, 0, y0, y1]),
        (codec::ALL_TEMP, vec![3, sensor(0), sensor(1), temp(pack.temperature_mos_c), sensor(2), 0, 0, 0]),
        (codec::BMS_SW_STA, vec![fets, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (k, chunk) in (0u32..).zip(mv.chunks(4)) {
        let mut data: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.resize(8, 0);
        out.push((codec::CELLS + (k << 16), data));
    }
    out
}

/// Broadcasts every pack of `packs` (its address added to the ids) every `period` until aborted.
pub async fn serve<L: CanLink>(mut link: L, packs: Packs, control: Arc<SimControl>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    let addresses: Vec<Option<u8>> = packs.lock().iter().map(|(a, _)| *a).collect();
    loop {
        ticker.tick().await;
        if control.is_silent() {
            continue;
        }
        for address in &addresses {
            let Some(cycle) = packs.with(*address, &control, Instant::now(), |p| frames(p, &control)) else {
                continue;
            };
            let offset = u32::from(address.unwrap_or(0));
            for (id, data) in cycle {
                if link.send(&CanFrame { id: id + offset, data }).await.is_err() {
                    return;
                }
            }
        }
        control.mark_sent();
    }
}

/// A running JK CAN simulator; stops when dropped.
#[derive(Debug)]
pub struct JkCanSimulator {
    /// The packs, by address.
    pub packs: Packs,
    /// Silent / frozen / FET switches, for every pack of this simulator.
    pub control: Arc<SimControl>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JkCanSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `cells`-cell JK packs at `addresses` (0 if empty) on `bus` (needs a tokio runtime).
pub fn spawn(bus: &MemoryCanBus, addresses: &[u8], cells: usize) -> JkCanSimulator {
    spawn_on(bus.connect(), addresses, cells)
}

/// [`spawn`] on any CAN link (a SocketCAN socket on vcan0 in the VM test).
pub fn spawn_on<L: CanLink + 'static>(link: L, addresses: &[u8], cells: usize) -> JkCanSimulator {
    let list: Vec<Option<u8>> =
        if addresses.is_empty() { vec![Some(0)] } else { addresses.iter().map(|a| Some(*a)).collect() };
    let packs = Packs::new(&list, cells);
    let control = Arc::new(SimControl::default());
    let task = tokio::spawn(serve(link, packs.clone(), Arc::clone(&control), Duration::from_secs(1)));
    JkCanSimulator { packs, control, task }
}
