//! Request/response over any `AsyncRead + AsyncWrite`: stale input flushed before a request,
//! reply read until the protocol's scanner finds a frame, garbage skipped, bounded by a timeout.
//!
//! On a serial port the reads are paced by the wire: once part of a reply is in, the rest is
//! read when it can have arrived (by the frame's header, or by the length of the last reply to
//! the same request while the header is not in). After a request the first look waits for the
//! request's wire time and, for a request seen before, the whole reply's: a BMS that answers at
//! once costs one read, one that waits first two. A link that delivers faster than its speed
//! (a pty, a USB device that only pretends to be serial) is found out on its first reply and
//! then looked at early again (docs/performance.md, "Serial wake-ups").

use super::LinkError;
use crate::protocol::{scan_resync, Scan};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout_at, Instant};

/// Bytes of garbage tolerated in one exchange before giving up.
const MAX_GARBAGE: usize = 4096;

/// A stream whose next read can wait for several bytes (a tty read by timers, `transport::tty`).
pub trait ReadThreshold {
    /// Makes the next read wait until `bytes` more can have arrived (1: read what comes); false:
    /// this stream cannot (it wakes for whatever arrives).
    fn set_read_threshold(&mut self, _bytes: usize) -> bool {
        false
    }

    /// Reads what is already there into `buf` without waiting and without asking to be woken:
    /// `Some(0)` the stream is closed, `None` nothing is there. `Err(Unsupported)`: this stream
    /// can only be polled.
    fn read_now(&mut self, _buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// Makes reads end with `ErrorKind::TimedOut` once `deadline` has passed (`None`: no
    /// deadline); false: this stream cannot, the link times its reads itself. (A tty times them
    /// on the timer it paces its reads with: a tokio timeout per read was a timer-wheel insert
    /// and, when earlier than the wheel's next deadline, a write to the runtime's eventfd and an
    /// `epoll_wait` more: `transport::alarm`.)
    fn set_read_deadline(&mut self, _deadline: Option<std::time::Instant>) -> bool {
        false
    }
}

#[cfg(test)]
impl ReadThreshold for tokio::io::DuplexStream {}

/// One request/response link over a byte stream.
#[derive(Debug)]
pub struct FramedLink<S> {
    stream: S,
    buf: Vec<u8>,
    /// Bytes dropped while resynchronising, over the link's life (for diagnostics).
    pub dropped_bytes: u64,
    /// Least time between the starts of two requests (JK PB needs 120 ms on its bus).
    min_gap: Duration,
    last_request: Option<Instant>,
    /// Time one byte takes on the wire (serial ports; `None`: bytes come in whole frames).
    byte_time: Option<Duration>,
    /// Wake-ups spent reading replies, over the link's life (for measurements).
    pub reads: u64,
    /// The length of the last reply to each recent request ([`MAX_REPLY_HINTS`] at most): a
    /// reply whose header is not in yet is waited for whole, not header first.
    reply_hints: Vec<(Vec<u8>, ReplyHint)>,
    /// No reply so far came faster than the wire allows (a real UART at the set speed).
    paced: bool,
}

/// Requests whose reply lengths a link remembers: two or three per BMS, 16 BMS on one bus.
const MAX_REPLY_HINTS: usize = 48;

/// What the last replies to one request were like.
#[derive(Debug, Clone, Copy)]
struct ReplyHint {
    /// The last reply's length.
    len: usize,
    /// How long the BMS waited before answering (learnt on a serial port).
    delay: Option<Duration>,
    /// First looks in a row that found the whole reply.
    complete_looks: u8,
}

/// The first look after a request comes at least this long before the request's deadline.
const LOOK_MARGIN: Duration = Duration::from_millis(5);

/// Every how many first looks in a row that find the whole reply the next comes earlier.
const PROBE_EVERY: u8 = 4;

/// Bytes waited for when a scanner cannot tell how many a frame still lacks (it ends with a
/// terminator): about 8 ms at 9600 baud.
const UNKNOWN_REMAINDER: usize = 8;

/// Added to a stage's wire time before the rest of a frame counts as late (USB adapters hold
/// received bytes for their latency timer, 1-16 ms).
const STAGE_SLACK: Duration = Duration::from_millis(20);

/// Longest remainder [`missing_bytes`] looks for.
const MAX_HINT: usize = 1024;

/// One byte's time on the wire at `baud` (10 bits: start, 8 data, stop); `None` for 0.
pub(crate) fn byte_time(baud: u32) -> Option<Duration> {
    (baud > 0).then(|| Duration::from_nanos(10_000_000_000 / u64::from(baud)))
}

/// The wire time of `bytes` bytes of `byte` each.
pub(crate) fn wire_time(byte: Duration, bytes: usize) -> Duration {
    byte.saturating_mul(u32::try_from(bytes).unwrap_or(u32::MAX))
}

/// How many more bytes the frame at the start of `buf` needs, as the scanner tells when it is
/// fed zero padding: the smallest padding that makes it stop saying `Incomplete` (a frame, or
/// garbage because the padding fails its checksum). Zeros in a length field still missing read
/// as the shortest frame, so the count is never more than the real remainder. `None`: no padding
/// up to [`MAX_HINT`] completes it (a terminator-ended frame).
pub fn missing_bytes(buf: &[u8], scan: impl Fn(&[u8]) -> Scan) -> Option<usize> {
    let mut padded = Vec::with_capacity(buf.len() + MAX_HINT);
    padded.extend_from_slice(buf);
    padded.resize(buf.len() + MAX_HINT, 0);
    let complete =
        |k: usize| !matches!(scan(padded.get(..buf.len() + k).unwrap_or(&padded)), Scan::Incomplete);
    if complete(0) {
        return Some(0);
    }
    if !complete(MAX_HINT) {
        return None;
    }
    let (mut low, mut high) = (0usize, MAX_HINT);
    // Invariant: incomplete with `low` bytes of padding, complete with `high`.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if complete(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high)
}

impl<S: AsyncRead + AsyncWrite + Unpin + ReadThreshold> FramedLink<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(512),
            dropped_bytes: 0,
            min_gap: Duration::ZERO,
            last_request: None,
            byte_time: None,
            reads: 0,
            reply_hints: Vec::new(),
            paced: true,
        }
    }

    /// What the last replies to `request` were like, if it was seen.
    fn reply_hint(&self, request: &[u8]) -> Option<ReplyHint> {
        self.reply_hints.iter().find(|(r, _)| r == request).map(|(_, hint)| *hint)
    }

    /// Learns from a reply of `len` bytes to `request`, sent at `sent` (`last`: the request's
    /// hint until now): its length, and the BMS's delay before answering, from when the reply's
    /// first data was read (`first_data`: then, and the bytes held).
    fn remember_reply(
        &mut self,
        request: &[u8],
        last: Option<ReplyHint>,
        len: usize,
        sent: Instant,
        first_data: Option<(Instant, usize)>,
    ) {
        let (delay, complete_looks) = match (self.byte_time, first_data) {
            (Some(byte), Some((seen, held))) => {
                // Bytes come at wire speed: the reply began `held` bytes' time before `seen`.
                let began = seen.checked_sub(wire_time(byte, held)).unwrap_or(sent);
                let delay = began.saturating_duration_since(sent + wire_time(byte, request.len()));
                let last_delay = last.and_then(|hint| hint.delay);
                if held >= len {
                    // Complete at the first look: the BMS answered in `delay` or less. A look that
                    // keeps finding the whole reply comes a quarter of the delay earlier every
                    // 4th time (the one after it re-measures), so a BMS that got quicker is soon
                    // not waited for.
                    let complete_looks = last.map_or(0, |hint| hint.complete_looks).wrapping_add(1);
                    let bound = last_delay.map_or(delay, |d| d.min(delay));
                    let probed = if complete_looks % PROBE_EVERY == 0 { bound * 3 / 4 } else { bound };
                    (Some(probed), complete_looks)
                } else {
                    (Some(delay), 0)
                }
            }
            _ => (None, 0),
        };
        let hint = ReplyHint { len, delay, complete_looks };
        match self.reply_hints.iter_mut().find(|(r, _)| r == request) {
            Some(slot) => slot.1 = hint,
            None => {
                if self.reply_hints.len() >= MAX_REPLY_HINTS {
                    self.reply_hints.remove(0);
                }
                self.reply_hints.push((request.to_vec(), hint));
            }
        }
    }

    /// Sets the stream's read threshold for the next read; false when the stream has none.
    fn set_threshold(&mut self, bytes: usize) -> bool {
        self.stream.set_read_threshold(bytes)
    }

    /// Reads paced by the wire at `baud` (10 bits per byte): once part of a reply is in, the rest
    /// is read when it can have arrived, not a byte at a time as USB adapters deliver it.
    pub fn set_baud(&mut self, baud: u32) {
        self.byte_time = byte_time(baud);
    }

    /// Keeps at least `gap` between the starts of two requests.
    pub fn set_min_gap(&mut self, gap: Duration) {
        self.min_gap = gap;
    }

    /// The underlying stream, to look at.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Sends `request` and returns the first complete frame found by `scan` within `timeout`.
    /// Input left over from an earlier exchange is discarded first, so a late reply to a
    /// timed-out request cannot be taken for this one's.
    pub async fn request(
        &mut self,
        request: &[u8],
        scan: impl Fn(&[u8]) -> Scan,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        if let Some(due) = self.last_request.map(|last| last + self.min_gap) {
            // Only a gap still to wait for touches the timer (a sleep costs a timer tick).
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        self.discard_pending_input().await?;
        self.last_request = Some(Instant::now());
        self.stream.write_all(request).await?;
        self.stream.flush().await?;
        // No reply byte before the request has crossed the wire: the first look waits for it
        // and a few bytes of the reply, or for the whole reply when its length is known from the
        // last exchange (a BMS that answers at once is then read in one wake-up; one that waits
        // first has the rest read when it can be in).
        let hint = self.reply_hint(request);
        if let Some(byte) = self.byte_time {
            // The BMS's delay, as bytes' time (the threshold counts bytes), rounded up: a look a
            // fraction of a byte late finds the reply whole, one early finds it a byte short.
            let delay_bytes =
                |d: Duration| usize::try_from(d.as_nanos().div_ceil(byte.as_nanos().max(1))).unwrap_or(0);
            let first_look = match hint.filter(|_| self.paced) {
                Some(hint) => hint.delay.map_or(0, delay_bytes) + hint.len.max(UNKNOWN_REMAINDER),
                None => UNKNOWN_REMAINDER,
            };
            // Never looking first after the deadline: a reply that completed just inside the
            // timeout last time (the look rounds up) must not time out for the look itself.
            let before_deadline = delay_bytes(timeout.saturating_sub(LOOK_MARGIN)).saturating_sub(1);
            self.set_threshold((request.len() + first_look).min(before_deadline.max(1)));
        }
        let sent = Instant::now();
        let (result, first_data) = self.read_reply(scan, timeout, hint.map(|h| h.len)).await;
        if let Ok(frame) = &result {
            self.remember_reply(request, hint, frame.len(), sent, first_data);
            // A UART cannot deliver a reply before it crossed the wire; a link that did (a USB
            // device that only pretends to be serial, a pty) is not kept waiting for the
            // nominal wire time of whole replies.
            if let Some(byte) = self.byte_time {
                let wire = wire_time(byte, request.len() + frame.len());
                if sent.elapsed() < wire - wire / 8 {
                    self.paced = false;
                }
            }
        }
        result
    }

    /// Reads until `scan` reports a frame, without sending anything.
    pub async fn read_frame(
        &mut self,
        scan: impl Fn(&[u8]) -> Scan,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        self.read_reply(scan, timeout, None).await.0
    }

    /// Reads a frame (`expected_len`: the last reply's length, while its header is not in), and
    /// tells when data first came and how many bytes were then in.
    async fn read_reply(
        &mut self,
        scan: impl Fn(&[u8]) -> Scan,
        timeout: Duration,
        expected_len: Option<usize>,
    ) -> (Result<Vec<u8>, LinkError>, Option<(Instant, usize)>) {
        let mut first_data = None;
        let result = self.read_frame_paced(scan, timeout, expected_len, &mut first_data).await;
        // Whatever happened, the next read (the stale-input flush first) wakes for any byte.
        self.set_threshold(1);
        (result, first_data)
    }

    async fn read_frame_paced(
        &mut self,
        scan: impl Fn(&[u8]) -> Scan,
        timeout: Duration,
        expected_len: Option<usize>,
        first_data: &mut Option<(Instant, usize)>,
    ) -> Result<Vec<u8>, LinkError> {
        let deadline = Instant::now() + timeout;
        // On a tty the stream holds the read until the rest of a frame can be in; after a stage
        // that does not complete in its wire time (a short or broken reply), timers here alone.
        let mut stream_waits = true;
        let mut garbage = 0usize;
        // A JK reply (300 bytes) fits one read.
        let mut chunk = [0u8; 1024];
        loop {
            match scan_resync(&self.buf, &scan) {
                Scan::Frame { len } if len <= self.buf.len() && len > 0 => {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return Ok(frame);
                }
                Scan::Garbage { skip } => {
                    let skip = skip.clamp(1, self.buf.len().max(1)).min(self.buf.len());
                    self.buf.drain(..skip);
                    garbage += skip;
                    self.dropped_bytes += skip as u64;
                    if garbage > MAX_GARBAGE {
                        return Err(LinkError::Garbage { dropped: garbage });
                    }
                    continue;
                }
                // Incomplete, or a scanner that returned an impossible length: wait for more.
                _ => {}
            }
            // Part of a reply is in: read the rest once it can have crossed the wire, in one go (a
            // reply costs a few wake-ups, not one per byte; `docs/performance.md`). On a tty the
            // stream waits until the bytes the frame lacks can be in; elsewhere a timer here does.
            let mut stage_end = None;
            if let (Some(byte), false) = (self.byte_time, self.buf.is_empty()) {
                // What the frame lacks by its header, or by the last reply's length while the
                // header is not in (never less than the header says).
                let by_hint = expected_len.and_then(|len| len.checked_sub(self.buf.len())).filter(|n| *n > 0);
                let known = match (missing_bytes(&self.buf, &scan), by_hint) {
                    (Some(by_header), Some(by_hint)) => Some(by_header.max(by_hint)),
                    (by_header, by_hint) => by_header.or(by_hint),
                };
                let missing = known.unwrap_or(UNKNOWN_REMAINDER).max(1);
                let wire = wire_time(byte, missing);
                // A frame that ends with a terminator does not say how much is left: that stage
                // is timed here, then whatever is in is read.
                if stream_waits && known.is_some() && self.set_threshold(missing) {
                    // Beyond this the rest is late: read what there is (a short reply, garbage).
                    stage_end = Some(Instant::now() + wire + wire / 4 + byte * 4 + STAGE_SLACK);
                } else {
                    self.set_threshold(1);
                    tokio::time::sleep_until((Instant::now() + wire).min(deadline)).await;
                }
            }
            self.reads += 1;
            let until = stage_end.map_or(deadline, |end| end.min(deadline));
            let read = if self.stream.set_read_deadline(Some(until.into_std())) {
                let read = self.stream.read(&mut chunk).await;
                self.stream.set_read_deadline(None);
                match read {
                    Err(err) if err.kind() == std::io::ErrorKind::TimedOut => Err(()),
                    read => Ok(read),
                }
            } else {
                timeout_at(until, self.stream.read(&mut chunk)).await.map_err(|_| ())
            };
            let read = match read {
                Ok(result) => result?,
                Err(()) if Instant::now() < deadline => {
                    // Threshold 1: the next read takes at once whatever is waiting.
                    stream_waits = false;
                    self.set_threshold(1);
                    continue;
                }
                Err(()) => {
                    return Err(LinkError::Timeout { waited: timeout, received: self.buf.len() + garbage })
                }
            };
            if read == 0 {
                return Err(LinkError::Closed);
            }
            self.buf.extend_from_slice(chunk.get(..read).unwrap_or_default());
            if first_data.is_none() {
                *first_data = Some((Instant::now(), self.buf.len()));
            }
        }
    }

    async fn discard_pending_input(&mut self) -> Result<(), LinkError> {
        self.dropped_bytes += self.buf.len() as u64;
        self.buf.clear();
        let mut chunk = [0u8; 256];
        // A tty is read without going into the reactor: registered from here to the reply's
        // first look, it would wake the thread for every byte of the reply.
        loop {
            match self.stream.read_now(&mut chunk) {
                Ok(Some(0)) => return Err(LinkError::Closed),
                Ok(Some(n)) => self.dropped_bytes += n as u64,
                Ok(None) => return Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::Unsupported => break,
                Err(err) => return Err(err.into()),
            }
        }
        // The stream is polled once per round: whatever is already buffered is read and dropped,
        // nothing is waited for. (A zero-length timeout did the same but waited for the timer's
        // next millisecond tick before every request: ~1 ms of idle line and a wake-up each.)
        loop {
            let polled = std::future::poll_fn(|cx| {
                let mut buf = ReadBuf::new(&mut chunk);
                Poll::Ready(match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => Some(Ok(buf.filled().len())),
                    Poll::Ready(Err(err)) => Some(Err(err)),
                    Poll::Pending => None,
                })
            })
            .await;
            match polled {
                Some(Ok(0)) => return Err(LinkError::Closed),
                Some(Ok(n)) => self.dropped_bytes += n as u64,
                Some(Err(err)) => return Err(err.into()),
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// A toy framing: frames are `AA len payload`.
    fn scan(buf: &[u8]) -> Scan {
        match buf.first() {
            None => Scan::Incomplete,
            Some(0xAA) => match buf.get(1) {
                None => Scan::Incomplete,
                Some(&len) if buf.len() >= 2 + len as usize => Scan::Frame { len: 2 + len as usize },
                Some(_) => Scan::Incomplete,
            },
            Some(_) => Scan::Garbage { skip: 1 },
        }
    }

    #[tokio::test]
    async fn reply_split_over_reads_with_leading_garbage_is_found() {
        let (client, mut bms) = duplex(64);
        let mut link = FramedLink::new(client);
        let bms_side = tokio::spawn(async move {
            let mut req = [0u8; 3];
            bms.read_exact(&mut req).await.unwrap();
            bms.write_all(&[0x01, 0x02, 0xAA]).await.unwrap();
            tokio::task::yield_now().await;
            bms.write_all(&[0x02, 0x10, 0x20, 0x99]).await.unwrap();
            bms
        });
        let frame = link.request(&[1, 2, 3], scan, Duration::from_secs(1)).await.unwrap();
        assert_eq!(frame, vec![0xAA, 0x02, 0x10, 0x20]);
        assert_eq!(link.dropped_bytes, 2);
        drop(bms_side.await.unwrap());
    }

    #[tokio::test]
    async fn a_stray_start_byte_with_a_long_length_does_not_hide_the_reply() {
        let (client, mut bms) = duplex(64);
        let mut link = FramedLink::new(client);
        let bms_side = tokio::spawn(async move {
            let mut req = [0u8; 1];
            bms.read_exact(&mut req).await.unwrap();
            // 0xAA 0x30 announces 48 bytes that never come; the real frame follows.
            bms.write_all(&[0xAA, 0x30, 0xAA, 0x01, 0x42]).await.unwrap();
            bms
        });
        let frame = link.request(&[1], scan, Duration::from_secs(1)).await.unwrap();
        assert_eq!(frame, vec![0xAA, 0x01, 0x42]);
        drop(bms_side.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (client, _bms) = duplex(64);
        let mut link = FramedLink::new(client);
        let err = link.request(&[1], scan, Duration::from_millis(500)).await.unwrap_err();
        assert!(matches!(err, LinkError::Timeout { received: 0, .. }), "{err}");
    }

    #[tokio::test]
    async fn stale_input_is_discarded_before_a_request() {
        let (client, mut bms) = duplex(64);
        bms.write_all(&[0xAA, 0x01, 0x55]).await.unwrap(); // a late reply to an old request
        let mut link = FramedLink::new(client);
        let bms_side = tokio::spawn(async move {
            let mut req = [0u8; 1];
            bms.read_exact(&mut req).await.unwrap();
            bms.write_all(&[0xAA, 0x01, 0x66]).await.unwrap();
            bms
        });
        let frame = link.request(&[7], scan, Duration::from_secs(1)).await.unwrap();
        assert_eq!(frame, vec![0xAA, 0x01, 0x66]);
        drop(bms_side.await.unwrap());
    }

    #[test]
    fn the_scanner_tells_how_many_bytes_a_frame_lacks() {
        assert_eq!(missing_bytes(&[0xAA], scan), Some(1), "the length byte, read as 0");
        assert_eq!(missing_bytes(&[0xAA, 5, 1, 2], scan), Some(3));
        assert_eq!(missing_bytes(&[0xAA, 5, 1, 2, 3, 4, 5], scan), Some(0), "complete: nothing lacks");
        // A terminator-ended framing: padding never completes it.
        let line =
            |b: &[u8]| if b.contains(&b'\n') { Scan::Frame { len: b.len() } } else { Scan::Incomplete };
        assert_eq!(missing_bytes(b"abc", line), None);
    }

    /// A reply delivered a byte at a time at 9600 baud (as a USB adapter does): read in a few
    /// wake-ups, and done when its last byte is in (virtual time: the timers are exact).
    #[tokio::test(start_paused = true)]
    async fn a_byte_by_byte_reply_costs_a_few_reads_and_no_extra_wire_time() {
        let (client, bms) = duplex(1024);
        let mut link = FramedLink::new(client);
        link.set_baud(9600);
        let byte = byte_time(9600).unwrap();
        let frame = frame_of(38);
        let bms_side = peer_at(bms, vec![(frame.clone(), Duration::ZERO)], 9600);
        let start = Instant::now();
        let got = link.request(&[1], scan, Duration::from_secs(1)).await.unwrap();
        let took = start.elapsed();
        assert_eq!(got, frame);
        assert!(link.reads <= 4, "{} reads for a 40-byte reply", link.reads);
        let wire = byte * 40;
        // The bound: the exchange within 1.15 x its wire time (the timer's 1 ms steps are
        // the rest).
        assert!(took.as_secs_f64() <= wire.as_secs_f64() * 1.15, "{took:?} for {wire:?} on the wire");
        drop(bms_side.await.unwrap());
    }

    /// Answers each of `replies` after a one-byte request, its delay after it, a byte at a time
    /// at `baud` (at absolute times, as the wire does: the timer's 1 ms steps do not add up).
    fn peer_at(
        mut bms: tokio::io::DuplexStream,
        replies: Vec<(Vec<u8>, Duration)>,
        baud: u32,
    ) -> tokio::task::JoinHandle<tokio::io::DuplexStream> {
        let byte = byte_time(baud).unwrap();
        tokio::spawn(async move {
            for (reply, delay) in replies {
                let mut req = [0u8; 1];
                bms.read_exact(&mut req).await.unwrap();
                let begin = Instant::now() + delay;
                for (n, b) in (1u32..).zip(reply) {
                    tokio::time::sleep_until(begin + byte * n).await;
                    bms.write_all(&[b]).await.unwrap();
                }
            }
            bms
        })
    }

    fn frame_of(len: u8) -> Vec<u8> {
        let mut frame = vec![0xAA, len];
        frame.extend(0..len);
        frame
    }

    /// The second reply to the same request is waited for whole: fewer wake-ups, and still done
    /// when its last byte is in. A reply shorter than the last one is found all the same.
    #[tokio::test(start_paused = true)]
    async fn a_request_seen_before_waits_for_its_whole_reply() {
        let (client, bms) = duplex(1024);
        let mut link = FramedLink::new(client);
        link.set_baud(9600);
        let byte = byte_time(9600).unwrap();
        let delay = Duration::from_millis(10);
        let replies = vec![frame_of(38), frame_of(38), frame_of(10)];
        let peer = peer_at(bms, replies.iter().map(|r| (r.clone(), delay)).collect(), 9600);
        let mut reads = Vec::new();
        for want in &replies {
            let (start, before) = (Instant::now(), link.reads);
            let got = link.request(&[1], scan, Duration::from_secs(1)).await.unwrap();
            let took = start.elapsed();
            assert_eq!(&got, want);
            reads.push(link.reads - before);
            // The request's byte, the delay, the reply: all on the wire (1 ms timer steps).
            let wire = byte * (1 + want.len() as u32) + delay;
            if want.len() == 40 {
                assert!(took.as_secs_f64() <= wire.as_secs_f64() * 1.15, "{took:?} for {wire:?}");
            } else {
                // Shorter than the last: waited for as if 40 bytes long, never longer.
                assert!(took <= byte * 41 + delay + Duration::from_millis(2), "{took:?}");
            }
        }
        assert!(reads[1] < reads[0], "reads per reply {reads:?}");
        assert!(reads[1] <= 2, "reads per reply {reads:?}");
        drop(peer.await.unwrap());
    }

    /// A stream that honours read thresholds as a tty does: the next read waits for the bytes'
    /// wire time at 9600 baud.
    struct Paced {
        inner: tokio::io::DuplexStream,
        wait: Option<Pin<Box<tokio::time::Sleep>>>,
        baud: u32,
    }

    impl ReadThreshold for Paced {
        fn set_read_threshold(&mut self, bytes: usize) -> bool {
            let wire = wire_time(byte_time(self.baud).unwrap(), bytes);
            self.wait = (bytes > 1).then(|| Box::pin(tokio::time::sleep(wire)));
            true
        }
    }

    impl AsyncRead for Paced {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(wait) = self.wait.as_mut() {
                std::task::ready!(std::future::Future::poll(wait.as_mut(), cx));
                self.wait = None;
            }
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Paced {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, data)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A link at `baud` on a [`Paced`] stream, the peer's end, and one byte's wire time.
    fn paced_link(baud: u32) -> (FramedLink<Paced>, tokio::io::DuplexStream, Duration) {
        let (client, bms) = duplex(1024);
        let mut link = FramedLink::new(Paced { inner: client, wait: None, baud });
        link.set_baud(baud);
        (link, bms, byte_time(baud).unwrap_or_default())
    }

    /// On a port that waits for read thresholds, the link learns the BMS's delay: once known, a
    /// reply costs one read and is read when its last byte is in. A BMS that gets slower costs
    /// one exchange a read or two more; one that gets quicker is waited for at most its old
    /// delay, and a few dozen exchanges later not at all.
    #[tokio::test(start_paused = true)]
    async fn the_link_learns_the_reply_delay() {
        let (mut link, bms, byte) = paced_link(9600);
        let ms = Duration::from_millis;
        let mut plan: Vec<(Vec<u8>, Duration)> = Vec::new();
        plan.extend((0..6).map(|_| (frame_of(38), ms(10))));
        plan.extend((0..3).map(|_| (frame_of(38), ms(30))));
        plan.extend((0..100).map(|_| (frame_of(38), ms(2))));
        let peer = peer_at(bms, plan.clone(), 9600);
        let mut rows = Vec::new();
        for (want, delay) in &plan {
            let (start, before) = (Instant::now(), link.reads);
            let got = link.request(&[1], scan, Duration::from_secs(1)).await.unwrap();
            assert_eq!(&got, want);
            let wire = byte * (1 + want.len() as u32);
            rows.push((*delay, link.reads - before, start.elapsed().saturating_sub(wire + *delay)));
        }
        let late = |range: std::ops::Range<usize>| rows[range].iter().map(|r| r.2).max().unwrap();
        let reads = |range: std::ops::Range<usize>| rows[range].iter().map(|r| r.1).collect::<Vec<_>>();
        // 10 ms: known after one exchange, then one read each but for the probing look, on time
        // (the timer's 1 ms steps).
        assert!(reads(1..6).iter().all(|r| *r <= 2), "{:?}", reads(0..6));
        assert!(reads(1..6).iter().filter(|r| **r == 1).count() >= 3, "{:?}", reads(0..6));
        assert!(late(0..6) <= ms(2), "{:?}", late(0..6));
        // 30 ms: the first looks too early, reads what there is; the next is on time again.
        assert!(late(6..9) <= ms(2), "{:?}", late(6..9));
        assert!(reads(7..9).iter().all(|r| *r == 1), "{:?}", reads(6..9));
        // 2 ms: waited for at most the old 30 ms, less and less, and on time within 60; then a
        // read each but for the probing look every 4th.
        assert!(late(9..109) <= ms(30), "{:?}", late(9..109));
        assert!(late(69..109) <= ms(2), "{:?}", rows[69..109].iter().map(|r| r.2).collect::<Vec<_>>());
        assert!(reads(69..109).iter().filter(|r| **r == 1).count() >= 28, "{:?}", reads(69..109));
        drop(peer.await.unwrap());
    }

    /// A reply that completes just inside the timeout keeps being read: the learnt first look,
    /// rounded up to whole bytes, never comes after the deadline. (300 baud: a byte is 33 ms,
    /// so the rounding is far above the timer's 1 ms steps.)
    #[tokio::test(start_paused = true)]
    async fn a_reply_just_inside_the_timeout_is_not_lost_to_the_first_look() {
        let (mut link, bms, byte) = paced_link(300);
        // A delay of 2.1 bytes rounds up to 3: the look comes 0.9 byte (30 ms) after the reply
        // is whole, and the timeout is 10 ms after that.
        let delay = byte * 21 / 10;
        let timeout = byte * 11 + delay + Duration::from_millis(10);
        let peer = peer_at(bms, vec![(frame_of(8), delay); 6], 300);
        for n in 0..6 {
            let got = link.request(&[1], scan, timeout).await;
            assert!(got.is_ok(), "exchange {n}: {:?}", got.err());
        }
        drop(peer.await.unwrap());
    }

    #[tokio::test]
    async fn a_closed_stream_is_reported() {
        let (client, bms) = duplex(64);
        drop(bms);
        let mut link = FramedLink::new(client);
        let err = link.request(&[1], scan, Duration::from_secs(1)).await.unwrap_err();
        assert!(err.port_is_broken(), "{err}");
    }
}
