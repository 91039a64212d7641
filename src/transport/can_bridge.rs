//! A byte stream over a CAN bus, for request/response protocols whose CAN frames carry the same
//! messages as their serial sentences (Daly: a CAN frame `0x18 CC 40 BB` with 8 data bytes is the
//! sentence `A5 BB CC 08 <data> sum` of its UART protocol). The protocol says how one sentence
//! becomes a frame and back ([`CanBridge`], from its spec); this task moves them, so the
//! protocol's one poll plan, its decoders and the one poll executor run unchanged over CAN.
//!
//! The stream ends (reads return 0, writes fail) when the CAN link fails: the poll loop sees a
//! broken port and reopens it, as for an unplugged serial adapter.

use super::can::{CanFrame, CanLink};
use crate::protocol::{scan_resync, Scan};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// One CAN frame as a protocol builds it: (id, data bytes).
pub type RawFrame = (u32, Vec<u8>);

/// How a protocol's sentences travel as CAN frames (a spec's `can_bridge`).
#[derive(Debug, Clone, Copy)]
pub struct CanBridge {
    /// Finds one sentence in the bytes the poll plan writes.
    pub scan: fn(&[u8]) -> Scan,
    /// The frame (id, data) that carries a sentence (`None`: not sent, e.g. not a request).
    pub to_frame: fn(&[u8]) -> Option<RawFrame>,
    /// The sentence a frame from the bus carries (`None`: not ours, dropped).
    pub from_frame: fn(u32, &[u8]) -> Option<Vec<u8>>,
}

/// Bytes the stream buffers each way (many sentences; a poll's replies fit many times over).
const BUFFER: usize = 4096;

/// Bytes written that never formed a sentence, after which they are dropped.
const MAX_PENDING: usize = 1024;

/// Starts the bridge task on `link` and returns the host's end of the stream.
pub fn spawn<L: CanLink + 'static>(link: L, bridge: CanBridge) -> DuplexStream {
    let (host, ours) = tokio::io::duplex(BUFFER);
    tokio::spawn(run(link, ours, bridge));
    host
}

/// Moves sentences written on `stream` to the bus as frames and frames from the bus to `stream`
/// as sentences, until either side closes.
pub async fn run<L: CanLink>(mut link: L, mut stream: DuplexStream, bridge: CanBridge) {
    let mut pending: Vec<u8> = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        tokio::select! {
            read = stream.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if send_sentences(&mut link, &mut pending, &bridge).await.is_err() {
                    return;
                }
            }
            frame = link.recv() => {
                let Ok(frame) = frame else { return };
                if let Some(sentence) = (bridge.from_frame)(frame.id, &frame.data) {
                    if stream.write_all(&sentence).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Sends every complete sentence of `pending` as a frame; garbage is skipped.
async fn send_sentences<L: CanLink>(
    link: &mut L,
    pending: &mut Vec<u8>,
    bridge: &CanBridge,
) -> std::io::Result<()> {
    while !pending.is_empty() {
        match scan_resync(pending, bridge.scan) {
            Scan::Frame { len } => {
                let sentence: Vec<u8> = pending.drain(..len.min(pending.len())).collect();
                if let Some((id, data)) = (bridge.to_frame)(&sentence) {
                    link.send(&CanFrame { id, data }).await?;
                }
            }
            Scan::Garbage { skip } => {
                pending.drain(..skip.clamp(1, pending.len()));
            }
            Scan::Incomplete => break,
        }
    }
    if pending.len() > MAX_PENDING {
        pending.clear();
    }
    Ok(())
}
