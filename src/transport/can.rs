//! CAN links: a real SocketCAN interface (`can0`, `vecan1`, `vcan0`) or an in-memory bus for the
//! simulator, the demo, `replay` and tests. Both behave like SocketCAN with its defaults: a node
//! receives every frame on the bus except the ones it sent itself.

use std::future::Future;
use std::io;
use tokio::sync::broadcast;

/// One classic CAN frame: an 11-bit (or 29-bit) id and 0..=8 data bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanFrame {
    /// Identifier, without flags.
    pub id: u32,
    /// Data bytes (the DLC is their number).
    pub data: Vec<u8>,
}

/// A node on a CAN bus.
pub trait CanLink: Send {
    /// The next frame from the bus (data frames only).
    fn recv(&mut self) -> impl Future<Output = io::Result<CanFrame>> + Send;
    /// Puts a frame on the bus.
    fn send(&mut self, frame: &CanFrame) -> impl Future<Output = io::Result<()>> + Send;
}

/// A SocketCAN raw socket on a kernel CAN interface.
#[derive(Debug)]
pub struct SocketCanLink {
    socket: socketcan::tokio::CanSocket,
}

impl SocketCanLink {
    /// Opens the interface (it must exist and be up: `ip link set can0 up type can bitrate 500000`).
    pub fn open(interface: &str) -> io::Result<Self> {
        Ok(Self { socket: socketcan::tokio::CanSocket::open(interface)? })
    }
}

impl CanLink for SocketCanLink {
    async fn recv(&mut self) -> io::Result<CanFrame> {
        use socketcan::{EmbeddedFrame, Frame};
        loop {
            match self.socket.read_frame().await? {
                socketcan::CanFrame::Data(frame) => {
                    return Ok(CanFrame { id: frame.raw_id(), data: frame.data().to_vec() })
                }
                // Remote and error frames carry no battery data.
                socketcan::CanFrame::Remote(_) | socketcan::CanFrame::Error(_) => continue,
            }
        }
    }

    async fn send(&mut self, frame: &CanFrame) -> io::Result<()> {
        use socketcan::Frame;
        let out = socketcan::CanFrame::from_raw_id(frame.id, &frame.data).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("not a CAN frame: id 0x{:X}", frame.id))
        })?;
        self.socket.write_frame(out).await
    }
}

/// An in-memory CAN bus; [`MemoryCanBus::connect`] adds a node.
#[derive(Debug, Clone)]
pub struct MemoryCanBus {
    tx: broadcast::Sender<(u64, CanFrame)>,
    next_node: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for MemoryCanBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCanBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self { tx, next_node: Default::default() }
    }

    /// A new node: it sees every frame sent after this call by the other nodes.
    pub fn connect(&self) -> MemoryCanLink {
        let node = self.next_node.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        MemoryCanLink { node, tx: self.tx.clone(), rx: self.tx.subscribe() }
    }
}

/// A node on a [`MemoryCanBus`].
#[derive(Debug)]
pub struct MemoryCanLink {
    node: u64,
    tx: broadcast::Sender<(u64, CanFrame)>,
    rx: broadcast::Receiver<(u64, CanFrame)>,
}

impl CanLink for MemoryCanLink {
    async fn recv(&mut self) -> io::Result<CanFrame> {
        loop {
            match self.rx.recv().await {
                Ok((from, frame)) if from != self.node => return Ok(frame),
                Ok(_) => continue,
                // A slow reader loses the oldest frames, as a full socket buffer would.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "CAN bus closed"))
                }
            }
        }
    }

    async fn send(&mut self, frame: &CanFrame) -> io::Result<()> {
        if frame.data.len() > 8 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "more than 8 data bytes"));
        }
        // No receiver is not an error: frames on an idle bus are simply not seen.
        let _ = self.tx.send((self.node, frame.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nodes_see_each_other_but_not_themselves() {
        let bus = MemoryCanBus::new();
        let mut a = bus.connect();
        let mut b = bus.connect();
        a.send(&CanFrame { id: 0x351, data: vec![1, 2] }).await.unwrap();
        b.send(&CanFrame { id: 0x35E, data: vec![3] }).await.unwrap();
        assert_eq!(b.recv().await.unwrap().id, 0x351);
        assert_eq!(a.recv().await.unwrap().id, 0x35E);
    }
}
