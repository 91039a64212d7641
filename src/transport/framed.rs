//! Request/response over any `AsyncRead + AsyncWrite`: stale input flushed before a request,
//! reply read until the protocol's scanner finds a frame, garbage skipped, bounded by a timeout.

use super::LinkError;
use crate::protocol::{scan_resync, Scan};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout_at, Instant};

/// Bytes of garbage tolerated in one exchange before giving up.
const MAX_GARBAGE: usize = 4096;

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
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedLink<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(512),
            dropped_bytes: 0,
            min_gap: Duration::ZERO,
            last_request: None,
        }
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
        self.read_frame(scan, timeout).await
    }

    /// Reads until `scan` reports a frame, without sending anything.
    pub async fn read_frame(
        &mut self,
        scan: impl Fn(&[u8]) -> Scan,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        let deadline = Instant::now() + timeout;
        let mut garbage = 0usize;
        let mut chunk = [0u8; 256];
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
            let read = match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(LinkError::Timeout { waited: timeout, received: self.buf.len() + garbage })
                }
            };
            if read == 0 {
                return Err(LinkError::Closed);
            }
            self.buf.extend_from_slice(chunk.get(..read).unwrap_or_default());
        }
    }

    async fn discard_pending_input(&mut self) -> Result<(), LinkError> {
        self.dropped_bytes += self.buf.len() as u64;
        self.buf.clear();
        let mut chunk = [0u8; 256];
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

    #[tokio::test]
    async fn a_closed_stream_is_reported() {
        let (client, bms) = duplex(64);
        drop(bms);
        let mut link = FramedLink::new(client);
        let err = link.request(&[1], scan, Duration::from_secs(1)).await.unwrap_err();
        assert!(err.port_is_broken(), "{err}");
    }
}
