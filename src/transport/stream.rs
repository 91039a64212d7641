//! The byte streams a framed link runs on: a serial port, a CAN bus carrying the protocol's
//! sentences ([`super::can_bridge`]), or a BLE device ([`super::ble`]). One type, so the one poll executor drives either.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// An open byte stream.
#[derive(Debug)]
pub enum ByteStream {
    /// A serial port (USB adapter, RS485 dongle, pty), read by timers ([`super::tty`]).
    Tty(super::tty::TtyStream),
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
            ByteStream::Tty(_) | ByteStream::Can(_) => None,
        }
    }

    /// `read` system calls on a serial port so far (`None`: not a serial port).
    pub fn tty_read_calls(&self) -> Option<u64> {
        match self {
            ByteStream::Tty(tty) => Some(tty.read_calls),
            ByteStream::Can(_) | ByteStream::Ble(_) => None,
        }
    }
}

impl super::framed::ReadThreshold for ByteStream {
    fn set_read_threshold(&mut self, bytes: usize) -> bool {
        match self {
            ByteStream::Tty(tty) => tty.set_read_threshold(bytes),
            ByteStream::Can(_) | ByteStream::Ble(_) => false,
        }
    }

    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            ByteStream::Tty(tty) => tty.read_now(buf),
            ByteStream::Can(_) | ByteStream::Ble(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    fn set_read_deadline(&mut self, deadline: Option<std::time::Instant>) -> bool {
        match self {
            ByteStream::Tty(tty) => {
                let _ = tty;
                let _ = deadline;
                false
            }
            ByteStream::Can(_) | ByteStream::Ble(_) => false,
        }
    }
}

impl AsyncRead for ByteStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tty(s) => Pin::new(s).poll_read(cx, buf),
            ByteStream::Can(s) => Pin::new(s).poll_read(cx, buf),
            ByteStream::Ble(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ByteStream::Tty(s) => Pin::new(s).poll_write(cx, buf),
            ByteStream::Can(s) => Pin::new(s).poll_write(cx, buf),
            ByteStream::Ble(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tty(s) => Pin::new(s).poll_flush(cx),
            ByteStream::Can(s) => Pin::new(s).poll_flush(cx),
            ByteStream::Ble(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tty(s) => Pin::new(s).poll_shutdown(cx),
            ByteStream::Can(s) => Pin::new(s).poll_shutdown(cx),
            ByteStream::Ble(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
