//! Serial ports (USB adapters, RS485 dongles, ptys in tests) opened with tokio-serial.

use super::framed::FramedLink;
use std::time::Duration;
use tokio_serial::{SerialPortBuilderExt, SerialStream};

/// A request/response link on an open serial port.
pub type SerialLink = FramedLink<SerialStream>;

/// Opens `device` at `baud`, 8N1, no flow control.
pub fn open(device: &str, baud: u32) -> Result<SerialLink, tokio_serial::Error> {
    open_stream(device, baud).map(FramedLink::new)
}

/// The bare stream of [`open`], for links that do their own framing (tokio-modbus).
pub fn open_stream(device: &str, baud: u32) -> Result<SerialStream, tokio_serial::Error> {
    let mut port = tokio_serial::new(device, baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .timeout(Duration::from_millis(100))
        .open_native_async()?;
    // Not exclusive: an exclusive flag left on a tty that another process keeps open would make
    // our own reopen after a fault fail with EBUSY.
    port.set_exclusive(false)?;
    Ok(port)
}
