//! A serial port as the framed links read it: in the reactor only while nothing is there to
//! read, and read by timers while a reply crosses the wire.
//!
//! Why: a tty in the reactor's epoll set wakes the daemon's thread for every byte the adapter
//! delivers (at 9600 baud a byte or two per USB transfer, one a millisecond), whatever the reader
//! waits for. tokio-serial's stream reports it readable each time; registered for reading only
//! with termios VMIN set, the kernel still woke the thread per byte to find the tty not yet
//! readable (21 context switches per reply, measured: `docs/performance.md`, "Serial
//! wake-ups"). So: a read that finds nothing registers the tty and waits for its first byte;
//! the read that gets bytes takes the tty out of the reactor again; the link then says how many
//! bytes the frame still lacks ([`ReadThreshold`]) and the stream sleeps until they can have
//! crossed the wire at the port's speed, then reads without blocking what is there. The waits and
//! the read's deadline are timed on a timerfd of the stream's own ([`Alarm`]), which wakes the
//! thread once, at the moment, where tokio's timer woke it at its wheel's slot start first. The flush
//! before a request reads without entering the reactor ([`TtyStream::read_now`]), and a
//! threshold takes the tty out of it: from the end of one reply to the first look at the next
//! the tty wakes nobody. A reply costs two or three wake-ups whether the adapter delivers it
//! byte by byte or at once (`tests/wire_limit.rs` counts them). Writes go
//! straight to the tty; a request is far smaller than its output buffer, and the rare full
//! buffer is retried after 1 ms.
//!
//! [`ReadThreshold`]: super::framed::ReadThreshold

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::time::Sleep;

use super::alarm::Alarm;

/// Retry delay when the tty's output buffer is full (never seen with request-sized writes).
const WRITE_RETRY: Duration = Duration::from_millis(1);

/// The port, in the reactor or out of it.
#[derive(Debug)]
enum Port {
    Plain(mio_serial::SerialStream),
    Registered(AsyncFd<mio_serial::SerialStream>),
    /// Only while switching (a failed registration drops the port: the link reopens it).
    Gone,
}

impl Port {
    fn stream(&self) -> Option<&mio_serial::SerialStream> {
        match self {
            Port::Plain(port) => Some(port),
            Port::Registered(fd) => Some(fd.get_ref()),
            Port::Gone => None,
        }
    }
}

/// An open serial port, non-blocking, read when its bytes can have arrived.
#[derive(Debug)]
pub struct TtyStream {
    port: Port,
    /// One byte's time on the wire (10 bits at the port's speed).
    byte_time: Duration,
    /// No read before this (the bytes the link waits for are still on the wire).
    wait: Option<Instant>,
    /// Reads end with `TimedOut` from this moment (the link's deadline for the read).
    deadline: Option<Instant>,
    /// Wakes the reader when `wait` or `deadline` has come (made on first use: it goes into the reactor, and
    /// a port may be opened off the runtime).
    alarm: Option<Alarm>,
    write_retry: Option<Pin<Box<Sleep>>>,
    /// `read` system calls over the stream's life (for measurements and tests).
    pub read_calls: u64,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the serial port could not be registered")
}

/// `AsyncFd::with_interest` is deprecated because it cannot know that the fd outlives the
/// registration; here it does: the `AsyncFd` owns the `mio_serial::SerialStream` that owns the
/// fd. Its replacement is `unsafe` for that same promise; the crate's one `unsafe` block is
/// zbus's raw-body builder (`victron::bus_item::send_signal`), whose contract its tests check.
#[allow(deprecated)]
fn register(port: mio_serial::SerialStream) -> io::Result<AsyncFd<mio_serial::SerialStream>> {
    AsyncFd::with_interest(port, Interest::READABLE)
}

impl TtyStream {
    /// Takes an open port (serialport's native port, configured for `baud`, non-blocking).
    pub fn new<P>(port: P, baud: u32) -> io::Result<Self>
    where
        mio_serial::SerialStream: TryFrom<P, Error = mio_serial::Error>,
    {
        let port = mio_serial::SerialStream::try_from(port).map_err(io::Error::other)?;
        let byte_time = super::framed::byte_time(baud.max(1)).unwrap_or_default();
        Ok(Self {
            port: Port::Plain(port),
            byte_time,
            wait: None,
            deadline: None,
            alarm: None,
            write_retry: None,
            read_calls: 0,
        })
    }

    /// The next read waits until `bytes` more can have arrived; 1: read at once. While it
    /// waits the tty is out of the reactor (the bytes it waits for would wake it one by one).
    pub fn set_read_threshold(&mut self, bytes: usize) -> bool {
        let wire = super::framed::wire_time(self.byte_time, bytes);
        self.wait = (bytes > 1).then(|| Instant::now() + wire);
        if bytes > 1 {
            self.unregister();
        }
        true
    }

    /// Reads end with `ErrorKind::TimedOut` once `deadline` has passed (`None`: they wait for
    /// bytes as long as it takes). Timed on the stream's own alarm, which also paces the reads.
    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) -> bool {
        self.deadline = deadline;
        true
    }

    /// Reads what is there without waiting and without going into the reactor (`None`: nothing).
    pub fn read_now(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            self.read_calls += 1;
            let mut port = self.port.stream().ok_or_else(gone)?;
            match port.read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Out of the reactor (bytes are coming: no wake-up for each).
    fn unregister(&mut self) {
        if let Port::Registered(_) = self.port {
            if let Port::Registered(fd) = std::mem::replace(&mut self.port, Port::Gone) {
                self.port = Port::Plain(fd.into_inner());
            }
        }
    }

    /// Into the reactor (nothing to read: wake on the first byte).
    fn registered(&mut self) -> io::Result<&AsyncFd<mio_serial::SerialStream>> {
        if let Port::Plain(_) = self.port {
            if let Port::Plain(port) = std::mem::replace(&mut self.port, Port::Gone) {
                self.port = Port::Registered(register(port)?);
            }
        }
        match &self.port {
            Port::Registered(fd) => Ok(fd),
            _ => Err(gone()),
        }
    }
}

impl std::os::fd::AsRawFd for TtyStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.port.stream().map_or(-1, |port| port.as_raw_fd())
    }
}

impl AsyncRead for TtyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(wait) = self.wait {
                // Waiting for bytes on the wire, but never past the read's deadline.
                let until = self.deadline.map_or(wait, |deadline| deadline.min(wait));
                ready!(self.alarm.get_or_insert_with(Alarm::new).poll_until(cx, until));
                self.wait = None;
                if self.deadline.is_some_and(|deadline| deadline < wait) {
                    // The deadline came first: this read is over (what came is read next time).
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
            }
            match self.read_now(buf.initialize_unfilled()) {
                Ok(Some(n)) => {
                    if n > 0 {
                        self.unregister();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(None) => {
                    let fd = match self.registered() {
                        Ok(fd) => fd,
                        Err(err) => return Poll::Ready(Err(err)),
                    };
                    // Readiness from before this read is stale: clear it and wait for an edge.
                    if let Poll::Ready(guard) = fd.poll_read_ready(cx) {
                        guard?.clear_ready();
                        continue;
                    }
                    // No byte yet: pending until one comes or the deadline does.
                    if let Some(deadline) = self.deadline {
                        ready!(self.alarm.get_or_insert_with(Alarm::new).poll_until(cx, deadline));
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                    return Poll::Pending;
                }
                Err(err) => return Poll::Ready(Err(err)),
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
            match self.port.stream().ok_or_else(gone).and_then(|mut port| port.write(data)) {
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
