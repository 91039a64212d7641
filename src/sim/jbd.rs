//! A simulated JBD BMS on a pty: answers basic info (0x03), cells (0x04) and hardware name (0x05)
//! from a moving [`SimPack`], tolerates malformed requests (garbage is skipped, bad frames get
//! no answer, unknown registers an error status), and can be told to fall silent.

use super::model::SimPack;
use super::pty::{Pty, PtyGuard};
use crate::protocol::{jbd, Scan};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Name the simulated BMS reports on register 0x05.
pub const SIM_MODEL: &str = "JBD-SP16S020-SIM";

/// Knobs a test or the demo can turn while the simulator runs.
#[derive(Debug, Default)]
pub struct SimControl {
    silent: AtomicBool,
    frozen: AtomicBool,
    charge_fet_off: AtomicBool,
    requests: AtomicU64,
}

impl SimControl {
    /// Stop (true) or resume (false) answering.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// Hold the pack still (true): values stop moving, so a test can compare them exactly.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Report the charge MOSFET as off (a BMS protection).
    pub fn set_charge_fet_off(&self, off: bool) {
        self.charge_fet_off.store(off, Ordering::SeqCst);
    }

    /// Valid requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Builds replies from the pack state.
#[derive(Debug)]
pub struct JbdResponder {
    /// The simulated pack, shared with whoever wants to read the truth (tests, demo).
    pub pack: Arc<Mutex<SimPack>>,
}

impl JbdResponder {
    /// The reply to one request frame at `now`, or `None` for a frame that gets no answer.
    pub fn respond(&mut self, request: &[u8], now: Instant, control: &SimControl) -> Option<Vec<u8>> {
        if request.get(1) != Some(&jbd::OP_READ) {
            return None;
        }
        control.requests.fetch_add(1, Ordering::SeqCst);
        let mut pack = self.pack.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !control.frozen.load(Ordering::SeqCst) {
            pack.step(now);
        }
        let p = &*pack;
        match request.get(2).copied()? {
            jbd::REG_BASIC_INFO => {
                let balance_bits = p.balancing().iter().enumerate().fold(0u32, |bits, (i, on)| {
                    if *on && i < 32 {
                        bits | 1 << i
                    } else {
                        bits
                    }
                });
                let to_0p1k =
                    |c: f64| (c * 10.0 + jbd::NTC_ZERO_0P1K as f64).round().clamp(0.0, 65535.0) as u16;
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
                    charge_fet: !control.charge_fet_off.load(Ordering::SeqCst),
                    discharge_fet: true,
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
}

/// Serves JBD requests arriving on `stream` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut responder: JbdResponder,
    control: Arc<SimControl>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match jbd::scan(&buf) {
                Scan::Frame { len } => {
                    let request: Vec<u8> = buf.drain(..len).collect();
                    if control.silent.load(Ordering::SeqCst) {
                        continue;
                    }
                    if let Some(reply) = responder.respond(&request, Instant::now(), &control) {
                        if stream.write_all(&reply).await.is_err() {
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
        if buf.len() > 1024 {
            buf.clear();
        }
    }
}

/// A JBD simulator running on its own pty.
#[derive(Debug)]
pub struct JbdSimulator {
    path: PathBuf,
    control: Arc<SimControl>,
    pack: Arc<Mutex<SimPack>>,
    task: JoinHandle<()>,
    _guard: PtyGuard,
}

impl JbdSimulator {
    /// Starts a simulated pack of `cells` cells on a new pty (needs a tokio runtime).
    pub fn spawn(cells: usize) -> std::io::Result<Self> {
        let (master, guard, path) = Pty::open()?.into_parts();
        let control = Arc::new(SimControl::default());
        let pack = Arc::new(Mutex::new(SimPack::new(cells)));
        let responder = JbdResponder { pack: Arc::clone(&pack) };
        let task = tokio::spawn(serve(master, responder, Arc::clone(&control)));
        Ok(Self { path, control, pack, task, _guard: guard })
    }

    /// The pty path to open as the serial device.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the pack as it is now.
    pub fn pack(&self) -> SimPack {
        self.pack.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The simulator's knobs.
    pub fn control(&self) -> &SimControl {
        &self.control
    }
}

impl Drop for JbdSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
