//! A serial port as the framed links read it: registered with the reactor for readability only,
//! with its termios VMIN at the bytes a frame still lacks.
//!
//! Why not tokio-serial's stream: it registers the tty for reading and writing, and a tty's poll
//! reports "writable" whenever its output buffer has room, which is always. So every byte the
//! adapter delivers (at 9600 baud, a byte or two per USB transfer) wakes the reactor, whatever
//! the reader waits for. Registered for reading only, and with VMIN set, the kernel re-checks on
//! each byte, finds the tty not yet readable, and lets the thread sleep: a reply wakes the daemon
//! once it is in (`docs/performance.md`, "Serial wake-ups"). Writes go straight to the tty; a
//! request is far smaller than its output buffer, and the rare full buffer is retried after 1 ms.

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Retry delay when the tty's output buffer is full (never seen with request-sized writes).
const WRITE_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// An open serial port, non-blocking, read through the reactor.
#[derive(Debug)]
pub struct TtyStream {
    port: AsyncFd<mio_serial::SerialStream>,
    control: Option<TtyControl>,
    write_retry: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TtyStream {
    /// Takes an open port (serialport's native port, configured) and its termios handle
    /// (`None`: reads are paced by timers only). Registers it with the reactor.
    pub fn new<P>(port: P, control: Option<TtyControl>) -> io::Result<Self>
    where
        mio_serial::SerialStream: TryFrom<P, Error = mio_serial::Error>,
    {
        let port = mio_serial::SerialStream::try_from(port).map_err(io::Error::other)?;
        Ok(Self { port: register(port)?, control, write_retry: None })
    }

    /// Reports the port readable only once `bytes` are waiting (VMIN); false without a termios
    /// handle.
    pub fn set_read_threshold(&mut self, bytes: usize) -> bool {
        self.control.as_mut().is_some_and(|c| c.set_vmin(bytes))
    }
}

/// `AsyncFd::with_interest` is deprecated because it cannot know that the fd outlives the
/// registration; here it does: the `AsyncFd` owns the `mio_serial::SerialStream` that owns the
/// fd. Its replacement is `unsafe` for that same promise, and this crate has no `unsafe`.
#[allow(deprecated)]
fn register(port: mio_serial::SerialStream) -> io::Result<AsyncFd<mio_serial::SerialStream>> {
    AsyncFd::with_interest(port, Interest::READABLE)
}

impl std::os::fd::AsRawFd for TtyStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.port.as_raw_fd()
    }
}

impl AsyncRead for TtyStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.port.poll_read_ready(cx))?;
            let room = buf.remaining();
            match guard.try_io(|port| port.get_ref().read(buf.initialize_unfilled())) {
                Ok(Ok(n)) => {
                    // Fewer bytes than asked for: the tty is drained, so the next read would
                    // only fail with EAGAIN (a system call per wake-up, six per reply). Bytes
                    // that come after this read raise a new edge in the reactor (what tokio's
                    // own sockets do).
                    if n > 0 && n < room {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for TtyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if let Some(retry) = self.write_retry.as_mut() {
                ready!(retry.as_mut().poll(cx));
                self.write_retry = None;
            }
            match self.port.get_ref().write(data) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.write_retry = Some(Box::pin(tokio::time::sleep(WRITE_RETRY)));
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here; the tty sends what it was given.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A second handle on the tty, for its termios (they are the tty's, whichever handle sets them).
#[derive(Debug)]
pub struct TtyControl {
    file: std::fs::File,
    termios: nix::sys::termios::Termios,
    vmin: u8,
}

impl TtyControl {
    /// Opens `device` again for its termios (non-blocking, not as a controlling terminal) and
    /// sets VTIME 0, VMIN 1. Blocking: call it off the runtime.
    pub fn open(device: &str) -> io::Result<Self> {
        use nix::fcntl::OFlag;
        use nix::sys::termios::SpecialCharacterIndices::{VMIN, VTIME};
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
            .open(device)?;
        let mut termios = nix::sys::termios::tcgetattr(&file)?;
        // VTIME 0, so that VMIN alone decides when the tty is readable (n_tty's poll).
        set_cc(&mut termios, VTIME as usize, 0);
        set_cc(&mut termios, VMIN as usize, 1);
        nix::sys::termios::tcsetattr(&file, nix::sys::termios::SetArg::TCSANOW, &termios)?;
        Ok(Self { file, termios, vmin: 1 })
    }

    /// Sets VMIN to `bytes` (1..=255); false when the tty refuses.
    fn set_vmin(&mut self, bytes: usize) -> bool {
        use nix::sys::termios::SpecialCharacterIndices::VMIN;
        let vmin = u8::try_from(bytes.clamp(1, 255)).unwrap_or(u8::MAX);
        if vmin == self.vmin {
            return true;
        }
        set_cc(&mut self.termios, VMIN as usize, vmin);
        // The change wakes the tty's readers: lowering VMIN below what is waiting reports the
        // port readable at once.
        match nix::sys::termios::tcsetattr(&self.file, nix::sys::termios::SetArg::TCSANOW, &self.termios) {
            Ok(()) => {
                self.vmin = vmin;
                true
            }
            Err(_) => false,
        }
    }
}

fn set_cc(termios: &mut nix::sys::termios::Termios, index: usize, value: u8) {
    if let Some(cc) = termios.control_chars.get_mut(index) {
        *cc = value;
    }
}
