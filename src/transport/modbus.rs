//! Modbus RTU client over a serial stream, through tokio-modbus: framing, CRC and the
//! address/function check of every reply are tokio-modbus's; this layer adds the timeout and
//! keeps "the device answered with an exception" apart from "the link failed".

use super::LinkError;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

/// A Modbus RTU master on one bus; the slave address is chosen per request.
pub struct ModbusLink {
    ctx: Context,
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
        Self { ctx: tokio_modbus::client::rtu::attach_slave(stream, Slave(1)) }
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
        let reply = tokio::time::timeout(timeout, self.ctx.read_holding_registers(start, count)).await;
        match reply {
            Err(_) => Err(LinkError::Timeout { waited: timeout, received: 0 }),
            Ok(Ok(Ok(registers))) => Ok(Ok(registers)),
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
