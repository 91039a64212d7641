//! Byte transports: request/response exchanges over serial ports or any async byte stream.
//!
//! Framing knowledge comes from the protocol's `scan` function; this layer only moves bytes,
//! waits, resynchronises and reports what went wrong.

pub mod alarm;
pub mod ble;
pub mod can;
pub mod can_bridge;
pub mod framed;
pub mod modbus;
pub mod mqtt;
pub mod serial;
pub mod stream;
pub mod tty;

use std::time::Duration;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No complete frame within the timeout.
    #[error("no complete reply within {waited:?} ({received} bytes received)")]
    Timeout {
        /// How long we waited.
        waited: Duration,
        /// Bytes received (incomplete or garbage).
        received: usize,
    },
    /// Too many bytes that never formed a frame.
    #[error("no frame in {dropped} bytes of garbage")]
    Garbage {
        /// Bytes dropped.
        dropped: usize,
    },
    /// The device or stream failed (unplugged adapter, closed pty ...).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The stream was closed by the other side.
    #[error("stream closed")]
    Closed,
    /// A reply arrived that does not belong to the request (another address or function,
    /// undecodable after resynchronising).
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

impl LinkError {
    /// True when the port itself is broken and must be reopened (as opposed to a silent BMS).
    pub fn port_is_broken(&self) -> bool {
        matches!(self, LinkError::Io(_) | LinkError::Closed)
    }
}
