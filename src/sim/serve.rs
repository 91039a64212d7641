//! What every simulator shares: the knobs ([`SimControl`]), the packs behind the bus addresses
//! ([`Packs`]) and the request/response loop ([`serve_requests`]) the framed simulators run.

use super::model::SimPack;
use crate::protocol::Scan;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Knobs a test or the demo can turn while a simulator runs.
#[derive(Debug, Default)]
pub struct SimControl {
    silent: AtomicBool,
    frozen: AtomicBool,
    charge_fet_off: AtomicBool,
    discharge_fet_off: AtomicBool,
    requests: AtomicU64,
    writes: AtomicU64,
    garbage: AtomicBool,
    partial: AtomicBool,
    delay_ms: AtomicU64,
    cross_talk: AtomicBool,
    current_sign_reversed: AtomicBool,
    wire: Mutex<Option<WireTiming>>,
    log: Mutex<Option<Vec<Exchange>>>,
    last_sent: Mutex<Option<Instant>>,
}

/// Real serial timing for a simulator: before each reply it waits as long as the request and the
/// reply take on the wire (10 bits per byte: start, 8 data, stop) plus the BMS's own reply delay.
/// Off by default, so the tests run at pty speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireTiming {
    /// Line speed (bit/s).
    pub baud: u32,
    /// Time the BMS takes after the last request byte before its first reply byte.
    pub reply_delay: Duration,
    /// Deliver the reply a byte at a time at wire speed, as CH340/CP2102/FTDI adapters hand
    /// them to the host at 9600 baud (one byte every ~1 ms), instead of all at once when the
    /// last byte would have arrived.
    pub byte_by_byte: bool,
}

impl WireTiming {
    /// Time `bytes` take on the wire.
    pub fn bytes(&self, bytes: usize) -> Duration {
        Duration::from_nanos((bytes as u64 * 10 * 1_000_000_000) / u64::from(self.baud.max(1)))
    }

    /// One exchange: request on the wire, reply delay, reply on the wire.
    pub fn exchange(&self, request: usize, reply: usize) -> Duration {
        self.bytes(request + reply) + self.reply_delay
    }
}

/// Longest exchange log kept (oldest entries are not dropped: logging just stops).
const MAX_LOGGED_EXCHANGES: usize = 1_000_000;

/// One request seen by a simulator, for timing measurements ([`SimControl::start_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The request frame.
    pub request: Vec<u8>,
    /// When the complete request had been read from the pty.
    pub received: Instant,
    /// When the reply was written (after the wire time when [`WireTiming`] is on); `None`: no
    /// reply (another address, unknown command, silent).
    pub replied: Option<Instant>,
    /// Reply length in bytes (0 without a reply).
    pub reply_len: usize,
}

impl SimControl {
    /// Stop (true) or resume (false) answering.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// True while the simulator does not answer.
    pub fn is_silent(&self) -> bool {
        self.silent.load(Ordering::SeqCst)
    }

    /// Hold the packs still (true): values stop moving, so a test can compare them exactly.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    /// True while the packs are held still.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Report the charge MOSFET as off (a BMS protection).
    pub fn set_charge_fet_off(&self, off: bool) {
        self.charge_fet_off.store(off, Ordering::SeqCst);
    }

    /// True while the charge MOSFET is reported off.
    pub fn charge_fet_off(&self) -> bool {
        self.charge_fet_off.load(Ordering::SeqCst)
    }

    /// Report the discharge MOSFET as off.
    pub fn set_discharge_fet_off(&self, off: bool) {
        self.discharge_fet_off.store(off, Ordering::SeqCst);
    }

    /// True while the discharge MOSFET is reported off.
    pub fn discharge_fet_off(&self) -> bool {
        self.discharge_fet_off.load(Ordering::SeqCst)
    }

    /// Count one accepted write (MOSFET control, SoC set).
    pub fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// Writes accepted so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Count one valid request.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    /// Valid requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Note that the BMS's last byte of a reply (or a CAN cycle's last frame) went out now.
    pub fn mark_sent(&self) {
        *self.last_sent.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// When the BMS last finished sending (the oracle of the staleness-deadline tests).
    pub fn last_sent(&self) -> Option<Instant> {
        *self.last_sent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Honour real serial timing before each reply (`None`: answer at once).
    pub fn set_wire_timing(&self, timing: Option<WireTiming>) {
        *self.wire.lock().unwrap_or_else(PoisonError::into_inner) = timing;
    }

    /// The serial timing in force.
    pub fn wire_timing(&self) -> Option<WireTiming> {
        *self.wire.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start recording every request with its timing (see [`Self::take_log`]).
    pub fn start_log(&self) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.is_none() {
            *log = Some(Vec::new());
        }
    }

    /// The requests recorded since the last call (empty unless [`Self::start_log`] was called).
    pub fn take_log(&self) -> Vec<Exchange> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn record(&self, exchange: Exchange) {
        if let Some(log) = self.log.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            if log.len() < MAX_LOGGED_EXCHANGES {
                log.push(exchange);
            }
        }
    }

    /// Answer with noise of the reply's length instead of the reply (a bad cable, wrong baud).
    pub fn set_garbage(&self, on: bool) {
        self.garbage.store(on, Ordering::SeqCst);
    }

    /// Send only the first half of every reply (a BMS that stops mid-frame).
    pub fn set_partial(&self, on: bool) {
        self.partial.store(on, Ordering::SeqCst);
    }

    /// Wait `ms` before every reply (0: answer at once).
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The reply delay in ms.
    pub fn delay_ms(&self) -> u64 {
        self.delay_ms.load(Ordering::SeqCst)
    }

    /// Modbus simulators: a request for one address is answered by another pack on the bus (the
    /// next address in the simulator's list), as cross-talk on a shared RS485 line would.
    pub fn set_cross_talk(&self, on: bool) {
        self.cross_talk.store(on, Ordering::SeqCst);
    }

    /// True while requests are answered by another address.
    pub fn cross_talk(&self) -> bool {
        self.cross_talk.load(Ordering::SeqCst)
    }

    /// Daly: send the current word with the other sign convention, as some Daly models do (raw
    /// above 30000 while charging), with the 0x93 state as usual.
    pub fn set_current_sign_reversed(&self, on: bool) {
        self.current_sign_reversed.store(on, Ordering::SeqCst);
    }

    /// True while the current word uses the other sign convention.
    pub fn current_sign_reversed(&self) -> bool {
        self.current_sign_reversed.load(Ordering::SeqCst)
    }

    /// Applies the garbage / partial / delay knobs to a reply about to be sent.
    pub async fn shape_reply(&self, mut reply: Vec<u8>) -> Vec<u8> {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.garbage.load(Ordering::SeqCst) {
            // xorshift noise, different on every reply; never all-zero.
            let mut x = self.requests().wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for b in &mut reply {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = (x >> 24) as u8;
            }
        }
        if self.partial.load(Ordering::SeqCst) {
            reply.truncate(reply.len() / 2);
        }
        reply
    }
}

/// One simulated pack and its bus address (`None`: a protocol without addresses).
pub type AddressedPack = (Option<u8>, SimPack);

/// The simulated packs of one bus.
#[derive(Debug, Clone, Default)]
pub struct Packs(Arc<Mutex<Vec<AddressedPack>>>);

impl Packs {
    /// One pack of `cells` cells per address; packs start at different SoCs.
    pub fn new(addresses: &[Option<u8>], cells: usize) -> Self {
        let packs = addresses
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut pack = SimPack::new(cells);
                pack.soc_percent = 60.0 - 5.0 * i as f64;
                (*a, pack)
            })
            .collect();
        Self(Arc::new(Mutex::new(packs)))
    }

    /// Locks the packs (a poisoned lock still gives the data: the packs are plain values).
    pub fn lock(&self) -> MutexGuard<'_, Vec<AddressedPack>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the pack at `address`.
    pub fn get(&self, address: Option<u8>) -> Option<SimPack> {
        self.lock().iter().find(|(a, _)| *a == address).map(|(_, p)| p.clone())
    }

    /// Changes the pack at `address` (a write from the bus); false when there is none.
    pub fn update(&self, address: Option<u8>, f: impl FnOnce(&mut SimPack)) -> bool {
        let mut packs = self.lock();
        let Some((_, pack)) = packs.iter_mut().find(|(a, _)| *a == address) else { return false };
        f(pack);
        true
    }

    /// Changes every pack.
    pub fn configure_all(&self, mut f: impl FnMut(&mut SimPack)) {
        self.lock().iter_mut().for_each(|(_, pack)| f(pack));
    }

    /// Runs `f` on the pack at `address`, stepped to `now` unless frozen.
    pub fn with<T>(
        &self,
        address: Option<u8>,
        control: &SimControl,
        now: Instant,
        f: impl FnOnce(&SimPack) -> T,
    ) -> Option<T> {
        let mut packs = self.lock();
        let (_, pack) = packs.iter_mut().find(|(a, _)| *a == address)?;
        if !control.is_frozen() {
            pack.step(now);
        }
        Some(f(pack))
    }
}

/// Serves a request/response protocol: reads requests found by `scan`, skips garbage, answers
/// with `respond` (which may stay silent, as a BMS does for a request that is not its own).
pub async fn serve_requests<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    scan: fn(&[u8]) -> Scan,
    control: Arc<SimControl>,
    mut respond: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        while !buf.is_empty() {
            match crate::protocol::scan_resync(&buf, scan) {
                Scan::Frame { len } => {
                    let request: Vec<u8> = buf.drain(..len.min(buf.len())).collect();
                    let received = Instant::now();
                    let reply = if control.is_silent() { None } else { respond(&request) };
                    let Some(reply) = reply else {
                        control.record(Exchange { request, received, replied: None, reply_len: 0 });
                        continue;
                    };
                    control.count_request();
                    let wire = control.wire_timing();
                    if let Some(wire) = wire.filter(|w| !w.byte_by_byte) {
                        // The request had to cross the wire, the BMS thinks, then its reply
                        // crosses: the daemon sees the reply's last byte only then.
                        tokio::time::sleep_until(
                            (received + wire.exchange(request.len(), reply.len())).into(),
                        )
                        .await;
                    }
                    let reply = control.shape_reply(reply).await;
                    let sent = match wire.filter(|w| w.byte_by_byte) {
                        Some(wire) => {
                            write_at_wire_speed(&mut stream, &reply, received, request.len(), wire).await
                        }
                        None => stream.write_all(&reply).await.is_ok(),
                    };
                    if !sent {
                        return;
                    }
                    if control.delay_ms() > 0 {
                        // A busy half-duplex device ignores what it received while answering.
                        buf.clear();
                        if drop_pending(&mut stream).await.is_err() {
                            return;
                        }
                    }
                    control.mark_sent();
                    let replied = Some(Instant::now());
                    control.record(Exchange { request, received, replied, reply_len: reply.len() });
                }
                Scan::Garbage { skip } => {
                    buf.drain(..skip.clamp(1, buf.len()));
                }
                Scan::Incomplete => break,
            }
        }
        if buf.len() > 4096 {
            buf.clear();
        }
    }
}

/// Writes `reply` a byte at a time, byte n when it would have arrived on the wire: after the
/// request's wire time and the reply delay, then one byte time each.
async fn write_at_wire_speed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    reply: &[u8],
    received: Instant,
    request_len: usize,
    wire: WireTiming,
) -> bool {
    let start = received + wire.bytes(request_len) + wire.reply_delay;
    for (n, byte) in reply.iter().enumerate() {
        tokio::time::sleep_until((start + wire.bytes(n + 1)).into()).await;
        if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
            return false;
        }
    }
    true
}

/// Reads and drops whatever input is already waiting (no waiting); `Err` when the stream closed.
pub async fn drop_pending<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(), ()> {
    let mut chunk = [0u8; 256];
    loop {
        match tokio::time::timeout(std::time::Duration::ZERO, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(()),
            Ok(Ok(_)) => {}
            Err(_) => return Ok(()),
        }
    }
}

/// A running simulator task.
pub type SimTask = tokio::task::JoinHandle<()>;

/// Starts a protocol's simulator on the master side of a pty (a spec's `simulator`).
pub type Simulator = fn(tokio_serial::SerialStream, Packs, Arc<SimControl>) -> SimTask;

/// Runs a simulator's serve loop as a task (needs a tokio runtime): what every spec's
/// `simulator` does with its `serve`.
pub fn start(serve: impl std::future::Future<Output = ()> + Send + 'static) -> SimTask {
    tokio::spawn(serve)
}
