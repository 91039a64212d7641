//! Simulated JBD UP-series packs sharing one RS485 bus (one pty): each address answers
//! PackStatus from its own moving [`SimPack`]; other addresses and commands get no answer, as on
//! a real bus.

use super::model::SimPack;
use super::pty::{Pty, PtyGuard};
use crate::protocol::jbd_up16s::{self, PackStatus};
use crate::protocol::Scan;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Builds a PackStatus reply for `address` from a pack.
pub fn pack_status(address: u8, pack: &SimPack) -> Vec<u8> {
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
        charge_fet: true,
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

/// Several UP-series packs on one simulated bus.
#[derive(Debug)]
pub struct Up16sBusSimulator {
    path: PathBuf,
    silent: Arc<AtomicBool>,
    task: JoinHandle<()>,
    _guard: PtyGuard,
}

impl Up16sBusSimulator {
    /// One pack of `cells` cells per address, on a new pty (needs a tokio runtime).
    pub fn spawn(addresses: &[u8], cells: usize) -> std::io::Result<Self> {
        let (mut master, guard, path) = Pty::open()?.into_parts();
        let silent = Arc::new(AtomicBool::new(false));
        let quiet = Arc::clone(&silent);
        let mut packs: Vec<(u8, SimPack)> = addresses
            .iter()
            .map(|a| {
                let mut pack = SimPack::new(cells);
                pack.soc_percent = 50.0 + f64::from(*a) * 5.0;
                (*a, pack)
            })
            .collect();
        let task = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64);
            let mut chunk = [0u8; 128];
            loop {
                let n = match master.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match jbd_up16s::scan(&buf) {
                        Scan::Frame { len } => {
                            let request: Vec<u8> = buf.drain(..len).collect();
                            let is_status = request.get(1) == Some(&jbd_up16s::FUNC_READ)
                                && request.get(2..4) == Some(&[0x10, 0x00]);
                            let pack = packs.iter_mut().find(|(a, _)| request.first() == Some(a));
                            if let (true, false, Some((address, pack))) =
                                (is_status, quiet.load(Ordering::SeqCst), pack)
                            {
                                pack.step(Instant::now());
                                if master.write_all(&pack_status(*address, pack)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Scan::Garbage { skip } => {
                            buf.drain(..skip.clamp(1, buf.len()));
                        }
                        Scan::Incomplete => break,
                    }
                    if buf.is_empty() {
                        break;
                    }
                }
            }
        });
        Ok(Self { path, silent, task, _guard: guard })
    }

    /// The pty path (the bus).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop or resume answering on the whole bus.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }
}

impl Drop for Up16sBusSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
