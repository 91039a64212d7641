//! Modbus RTU client over a serial stream, through tokio-modbus: framing, CRC and the
//! address/function check of every reply are tokio-modbus's; this layer adds the timeout and
//! keeps "the device answered with an exception" apart from "the link failed".

use super::LinkError;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

/// A Modbus RTU master on one bus; the slave address is chosen per request.
pub struct ModbusLink {
    ctx: Context,
    /// Set before each request: input already waiting (a late reply to a timed-out request) is
    /// dropped before the request goes out, as `FramedLink` does.
    flush: Arc<AtomicBool>,
}

/// The stream under tokio-modbus, dropping stale input before a request is written. Without it a
/// reply that missed its timeout would be read as the answer to the next request, and a BMS slower
/// than the poll cycle would leave a growing backlog of ever older replies.
struct Flushing<S> {
    inner: S,
    flush: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Flushing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Flushing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.flush.swap(false, Ordering::SeqCst) {
            let mut chunk = [0u8; 256];
            // Read whatever is already there; stop at the first Pending (nothing waited for).
            for _ in 0..64 {
                let mut stale = ReadBuf::new(&mut chunk);
                match Pin::new(&mut self.inner).poll_read(cx, &mut stale) {
                    Poll::Ready(Ok(())) if !stale.filled().is_empty() => {
                        tracing::debug!(bytes = stale.filled().len(), "stale Modbus input dropped");
                    }
                    _ => break,
                }
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for ModbusLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModbusLink")
    }
}

/// What a register read gave when the link itself worked.
pub type Answer = Result<Vec<u16>, u8>;

impl ModbusLink {
    /// Wraps a connected stream (a serial port, a pty, a duplex pipe in tests).
    pub fn new<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) -> Self {
        let flush = Arc::new(AtomicBool::new(false));
        let stream = Flushing { inner: stream, flush: Arc::clone(&flush) };
        Self { ctx: tokio_modbus::client::rtu::attach_slave(stream, Slave(1)), flush }
    }

    /// Reads `count` holding registers from `start` at `address`. Outer error: the link
    /// (timeout, I/O, a reply that is not ours); inner `Err(code)`: a Modbus exception reply.
    pub async fn read_holding(
        &mut self,
        address: u8,
        start: u16,
        count: u16,
        timeout: Duration,
    ) -> Result<Answer, LinkError> {
        self.ctx.set_slave(Slave(address));
        self.flush.store(true, Ordering::SeqCst);
        // `Client::call`, not `Reader::read_holding_registers`: the latter `debug_assert`s that the
        // reply has `count` registers, so in a debug build a stale reply to another block (wire
        // data) panicked the port task (found by tests/fault_matrix.rs). The count is checked here.
        let request = tokio_modbus::Request::ReadHoldingRegisters(start, count);
        let reply = tokio::time::timeout(timeout, self.ctx.call(request)).await;
        match reply {
            Err(_) => Err(LinkError::Timeout { waited: timeout, received: 0 }),
            Ok(Ok(Ok(tokio_modbus::Response::ReadHoldingRegisters(registers)))) => {
                if registers.len() == usize::from(count) {
                    Ok(Ok(registers))
                } else {
                    Err(LinkError::Protocol(format!(
                        "reply carries {} registers, {count} requested (a reply to another request)",
                        registers.len()
                    )))
                }
            }
            Ok(Ok(Ok(other))) => Err(LinkError::Protocol(format!("reply to another function: {other:?}"))),
            Ok(Ok(Err(exception))) => Ok(Err(u8::from(exception))),
            Ok(Err(tokio_modbus::Error::Protocol(err))) => Err(LinkError::Protocol(err.to_string())),
            Ok(Err(tokio_modbus::Error::Transport(err))) => Err(match err.kind() {
                std::io::ErrorKind::InvalidData => LinkError::Protocol(err.to_string()),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof => LinkError::Closed,
                _ => LinkError::Io(err),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
        let crc = crate::protocol::checksum::crc16_modbus(&frame);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame
    }

    /// Regression (fault matrix, stale replies): a reply with fewer registers than requested is a
    /// link error, never a panic (tokio-modbus's reader `debug_assert`s the count).
    #[tokio::test]
    async fn a_reply_with_another_register_count_is_an_error() {
        let (client, mut device) = tokio::io::duplex(256);
        let mut link = ModbusLink::new(client);
        let device = tokio::spawn(async move {
            let mut request = [0u8; 8];
            device.read_exact(&mut request).await.unwrap();
            device.write_all(&with_crc(vec![1, 3, 2, 0, 7])).await.unwrap();
            device
        });
        let result = link.read_holding(1, 0, 2, Duration::from_secs(2)).await;
        assert!(
            matches!(result, Err(LinkError::Protocol(ref text)) if text.contains("1 registers, 2 requested")),
            "{result:?}"
        );
        drop(device.await);
    }

    /// Input waiting before a request (a late reply) is dropped, not read as the answer.
    #[tokio::test]
    async fn stale_input_is_dropped_before_a_request() {
        let (client, mut device) = tokio::io::duplex(256);
        let mut link = ModbusLink::new(client);
        device.write_all(&with_crc(vec![1, 3, 2, 0, 9])).await.unwrap();
        tokio::task::yield_now().await;
        let device = tokio::spawn(async move {
            let mut request = [0u8; 8];
            device.read_exact(&mut request).await.unwrap();
            device.write_all(&with_crc(vec![1, 3, 2, 0, 5])).await.unwrap();
            device
        });
        let result = link.read_holding(1, 0, 1, Duration::from_secs(2)).await.unwrap();
        assert_eq!(result, Ok(vec![5]));
        drop(device.await);
    }
}
