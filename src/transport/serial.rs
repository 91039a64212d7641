//! Serial ports (USB adapters, RS485 dongles, ptys in tests) opened with tokio-serial.

use super::framed::FramedLink;
use super::stream::ByteStream;
use super::tty::TtyStream;
use std::time::Duration;
use tokio_serial::SerialStream;

/// A request/response link on an open serial port, or on a CAN bus carrying sentences.
pub type SerialLink = FramedLink<ByteStream>;

/// Opens `device` at `baud`, 8N1, no flow control.
pub async fn open(device: &str, baud: u32) -> Result<SerialLink, tokio_serial::Error> {
    let mut link = FramedLink::new(ByteStream::Tty(open_tty(device, baud).await?));
    link.set_baud(baud);
    Ok(link)
}

/// The bare stream of [`open`], for links that do their own framing (tokio-modbus).
///
/// The open itself (the kernel's tty open and the termios set-up) runs on tokio's blocking pool:
/// a dead or re-enumerating USB adapter can block it for seconds, and on the runtime that would
/// stall every other battery and the D-Bus services. Only the registration with the reactor
/// happens on the runtime.
pub async fn open_stream(device: &str, baud: u32) -> Result<SerialStream, tokio_serial::Error> {
    let port = SerialStream::try_from(open_native(device, baud).await?)?;
    lock_exclusive(&port, device)?;
    Ok(port)
}

/// [`open_stream`] for the framed links: the port as a [`TtyStream`] (read by timers, out of the
/// reactor), locked like it.
pub async fn open_tty(device: &str, baud: u32) -> Result<TtyStream, tokio_serial::Error> {
    let port = TtyStream::new(open_native(device, baud).await?, baud)?;
    lock_exclusive(&port, device)?;
    Ok(port)
}

/// Opens `device` at `baud` off the runtime, not exclusive: an exclusive flag (TIOCEXCL) left on
/// a tty that another process keeps open would make our own reopen after a fault fail with
/// EBUSY. The callers take an advisory lock instead.
async fn open_native(device: &str, baud: u32) -> Result<serialport::TTYPort, tokio_serial::Error> {
    off_runtime(device, move |path| {
        let mut native = settings(path, baud).open_native().map_err(|err| busy_error(err, path))?;
        native.set_exclusive(false)?;
        Ok(native)
    })
    .await
}

/// Runs `open` (the kernel's open of `device` and the termios set-up) on tokio's blocking pool.
async fn off_runtime<T: Send + 'static>(
    device: &str,
    open: impl FnOnce(&str) -> Result<T, tokio_serial::Error> + Send + 'static,
) -> Result<T, tokio_serial::Error> {
    let path = device.to_owned();
    tokio::task::spawn_blocking(move || {
        #[cfg(test)]
        tests::blocking_open(&path);
        open(&path)
    })
    .await
    .map_err(|join| {
        tokio_serial::Error::new(tokio_serial::ErrorKind::Unknown, format!("opening {device}: {join}"))
    })?
}

/// `device` at `baud`, 8N1, no flow control.
fn settings(device: &str, baud: u32) -> tokio_serial::SerialPortBuilder {
    tokio_serial::new(device, baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .timeout(Duration::from_millis(100))
}

/// serialport's own open takes an exclusive flock first and fails without saying who holds it.
fn busy_error(err: tokio_serial::Error, device: &str) -> tokio_serial::Error {
    if err.description.contains("lock") {
        in_use(device)
    } else {
        err
    }
}

fn in_use(device: &str) -> tokio_serial::Error {
    let holder = lock_holder(device)
        .map_or_else(|| "another process".to_owned(), |(pid, cmdline)| format!("process {pid} ({cmdline})"));
    tokio_serial::Error::new(
        tokio_serial::ErrorKind::Io(std::io::ErrorKind::ResourceBusy),
        format!("{device} is in use by {holder}: two masters on one bus would garble each other's frames"),
    )
}

/// Upgrades serialport's shared flock to `flock(LOCK_EX | LOCK_NB)` on the open device, so that two bms-bridge instances (or
/// any other flock-aware tool) never interleave frames on one RS485 bus. The lock belongs to this
/// open file: it goes away when the port is closed or the process dies, so no stale lock can
/// remain. A port held by someone else is an error naming the holder (from `/proc/locks`).
fn lock_exclusive(port: &impl std::os::fd::AsRawFd, device: &str) -> Result<(), tokio_serial::Error> {
    #[allow(deprecated)] // nix's `Flock` wrapper wants to own the fd, which the stream owns.
    let locked = nix::fcntl::flock(port.as_raw_fd(), nix::fcntl::FlockArg::LockExclusiveNonblock);
    match locked {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EWOULDBLOCK) => Err(in_use(device)),
        // A device without flock support (some USB serial drivers): work unlocked.
        Err(err) => {
            tracing::debug!(device, error = %err, "cannot lock the serial device; continuing unlocked");
            Ok(())
        }
    }
}

/// The pid and command line of a process holding a flock on `device` (symlinks followed).
fn lock_holder(device: &str) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(device).ok()?;
    let (inode, dev) = (meta.ino(), meta.dev());
    let (major, minor) =
        (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff), (dev & 0xff) | ((dev >> 12) & !0xff));
    let wanted = format!("{major:02x}:{minor:02x}:{inode}");
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // `1: FLOCK  ADVISORY  WRITE 1234 00:05:3 0 EOF`
    let pid: u32 = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_it = fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str());
        is_it.then(|| fields.get(4).and_then(|p| p.parse().ok())).flatten()
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_owned();
    Some((pid, if cmdline.is_empty() { "?".to_owned() } else { cmdline }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Devices whose open blocks, and for how long: a dead or re-enumerating USB adapter,
    /// for `driver/tests.rs` (the kernel's open cannot be made to block on a pty).
    static BLOCKING_OPENS: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

    /// Makes every open of `device` block for `how_long`, as the kernel's would.
    pub(crate) fn make_open_block(device: &str, how_long: Duration) {
        if let Ok(mut list) = BLOCKING_OPENS.lock() {
            list.push((device.to_owned(), how_long));
        }
    }

    pub(super) fn blocking_open(device: &str) {
        let delay =
            BLOCKING_OPENS.lock().ok().and_then(|l| l.iter().find(|(d, _)| d == device).map(|(_, t)| *t));
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
    }

    #[tokio::test]
    async fn a_second_open_of_a_locked_port_names_the_holder() {
        let sim = crate::sim::spawn(crate::config::Protocol::Jbd, &[], 4).unwrap();
        let device = sim.path().to_string_lossy().into_owned();
        let first = open_stream(&device, 9600).await.unwrap();
        let err = open_stream(&device, 9600).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("in use by process") && text.contains(&std::process::id().to_string()),
            "{text}"
        );
        drop(first);
        assert!(open_stream(&device, 9600).await.is_ok(), "closing the port releases the lock");
    }
}
