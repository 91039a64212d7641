//! The byte streams a framed link runs on: a serial port, a CAN bus carrying the protocol's
//! sentences ([`super::can_bridge`]), or a BLE device ([`super::ble`]). One type, so the one poll executor drives either.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio_serial::SerialStream;

/// An open byte stream.
#[derive(Debug)]
pub enum ByteStream {
    /// A serial port (USB adapter, RS485 dongle, pty).
    Serial(SerialStream),
    /// Sentences carried as CAN frames by a bridge task.
    Can(DuplexStream),
    /// A BLE device's notifications and writes through BlueZ.
    Ble(super::ble::BleStream),
}

impl ByteStream {
    /// The lock the stream's polls take turns on (BLE: one per adapter), if any.
    pub fn turn(&self) -> Option<std::sync::Arc<tokio::sync::Mutex<()>>> {
        match self {
            ByteStream::Ble(s) => Some(s.turn()),
            ByteStream::Serial(_) | ByteStream::Can(_) => None,
        }
    }
}

impl AsyncRead for ByteStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Serial(s) => Pin::new(s).poll_read(cx, buf),
            ByteStream::Can(s) => Pin::new(s).poll_read(cx, buf),
            ByteStream::Ble(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ByteStream::Serial(s) => Pin::new(s).poll_write(cx, buf),
            ByteStream::Can(s) => Pin::new(s).poll_write(cx, buf),
            ByteStream::Ble(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Serial(s) => Pin::new(s).poll_flush(cx),
            ByteStream::Can(s) => Pin::new(s).poll_flush(cx),
            ByteStream::Ble(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Serial(s) => Pin::new(s).poll_shutdown(cx),
            ByteStream::Can(s) => Pin::new(s).poll_shutdown(cx),
            ByteStream::Ble(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
