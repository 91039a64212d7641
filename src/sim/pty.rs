//! Pseudo-terminals for simulators: the simulator serves the master side, the daemon opens the
//! slave path like any serial device.

use std::io;
use std::path::{Path, PathBuf};
use tokio_serial::{SerialPort, SerialStream};

/// A pty pair. The slave is held open here too, so the pty survives the daemon closing and
/// reopening its side (as it does after an error).
#[derive(Debug)]
pub struct Pty {
    /// The simulator's end.
    pub master: SerialStream,
    slave: SerialStream,
    path: PathBuf,
}

impl Pty {
    /// Opens a new pty pair.
    pub fn open() -> io::Result<Self> {
        let (master, slave) = SerialStream::pair().map_err(io::Error::other)?;
        let path =
            slave.name().map(PathBuf::from).ok_or_else(|| io::Error::other("pty slave has no name"))?;
        Ok(Self { master, slave, path })
    }

    /// The path the daemon opens (`/dev/pts/N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Splits into the master stream and a guard that keeps the slave open.
    pub fn into_parts(self) -> (SerialStream, PtyGuard, PathBuf) {
        (self.master, PtyGuard { _slave: self.slave }, self.path)
    }
}

/// Keeps a pty's slave side open while alive.
#[derive(Debug)]
pub struct PtyGuard {
    _slave: SerialStream,
}
