//! A timer that wakes its task at its deadline and at no other moment: a `timerfd` of its own
//! in the reactor.
//!
//! Why not `tokio::time`: its wheel wakes the thread at the start of the wheel slot a deadline
//! lies in, and only then at the deadline itself. A sleep that crosses a 64 ms boundary (a
//! reply's wire time of 40-60 ms, most of the time) or lies further out (a 1 s poll tick) costs
//! two wake-ups, a tick across a 4.096 s boundary three; and arming a deadline earlier than
//! the wheel's next one writes to the runtime's eventfd (its way to wake a thread parked
//! elsewhere: here the thread is the one arming), which costs that write and an `epoll_wait`
//! more. On a port polled once a second that was half of all the daemon's wake-ups
//! (`docs/performance.md`, "Timer wake-ups"). A timerfd is armed by one system call (and not read: each
//! expiry is a new edge), and the thread wakes once, when the deadline has come.
//!
//! For a reply's wire time, a read's deadline on a tty (armed anyway for the wait before it,
//! so it costs no registration of its own, where a tokio timeout per read was a wheel insert
//! and, often, an eventfd write) and a port's poll tick. Deadlines re-armed on every reading
//! that seldom come (a battery task's tick and stale deadline) stay with tokio. Real time only: tokio's paused test clock does not move a timerfd, so links tested in
//! virtual time keep tokio's sleeps (`transport/framed.rs`).

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

/// The timerfd, as the reactor takes it.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

enum Clock {
    Fd {
        fd: AsyncFd<Timer>,
        /// The deadline the timerfd is armed for.
        armed: Option<Instant>,
    },
    /// tokio's timer: where no timerfd can be had (out of descriptors), or it failed once.
    Tokio(Option<Pin<Box<Sleep>>>),
}

/// A one-shot timer, re-armed for each deadline it is asked to wait for.
pub struct Alarm {
    clock: Clock,
}

impl std::fmt::Debug for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.clock {
            Clock::Fd { armed, .. } => format!("timerfd, armed for {armed:?}"),
            Clock::Tokio(_) => "tokio".to_owned(),
        };
        f.debug_struct("Alarm").field("clock", &kind).finish()
    }
}

/// `AsyncFd::new` is deprecated because it cannot know that the fd outlives the registration;
/// here it does: the `AsyncFd` owns the `Timer` that owns the fd (as `transport::tty` does).
#[allow(deprecated)]
fn timerfd() -> io::Result<AsyncFd<Timer>> {
    let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
    AsyncFd::new(Timer(fd))
}

impl Alarm {
    /// A timer on a timerfd of its own; tokio's timer if none can be had. Must be called on
    /// the runtime (the timerfd goes into its reactor).
    pub fn new() -> Self {
        let clock = match timerfd() {
            Ok(fd) => Clock::Fd { fd, armed: None },
            Err(err) => {
                tracing::debug!("no timerfd ({err}); tokio's timer instead");
                Clock::Tokio(None)
            }
        };
        Self { clock }
    }

    /// tokio's timer only (the fallback, for its tests).
    #[cfg(test)]
    fn tokio() -> Self {
        Self { clock: Clock::Tokio(None) }
    }

    /// Whether this alarm has a timerfd (false: tokio's timer).
    #[cfg(test)]
    fn is_timerfd(&self) -> bool {
        matches!(self.clock, Clock::Fd { .. })
    }

    /// Waits until `deadline` (at once if it has passed).
    pub async fn sleep_until(&mut self, deadline: Instant) {
        poll_fn(|cx| self.poll_until(cx, deadline)).await;
    }

    /// Ready once `deadline` has passed; until then the task is woken when it comes (and, on
    /// tokio's timer, at the wheel's own moments). A new deadline re-arms the timer.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        loop {
            let now = Instant::now();
            match &mut self.clock {
                Clock::Fd { fd, armed } => {
                    if deadline <= now {
                        // Armed for a deadline that passed: it fired or is about to; either way
                        // the next arming resets it (timerfd_settime clears the count).
                        return Poll::Ready(());
                    }
                    if *armed != Some(deadline) {
                        let at = TimeSpec::from_duration(monotonic_ms_after(deadline));
                        let absolute = TimerSetTimeFlags::TFD_TIMER_ABSTIME;
                        if let Err(err) = fd.get_ref().0.set(Expiration::OneShot(at), absolute) {
                            self.fall_back(err.into());
                            continue;
                        }
                        *armed = Some(deadline);
                    }
                    match ready!(fd.poll_read_ready(cx)) {
                        // The timer fired, for this arming or an abandoned earlier one. Its count
                        // is not read (a system call per tick): re-arming resets it, and each
                        // expiry is a new edge for the reactor. The clock, checked above on the
                        // next pass, tells which arming it was.
                        Ok(mut guard) => guard.clear_ready(),
                        Err(err) => self.fall_back(err),
                    }
                }
                Clock::Tokio(sleep) => {
                    let deadline = tokio::time::Instant::from_std(deadline);
                    match sleep {
                        Some(sleep) if sleep.deadline() == deadline => {}
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => *sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    if let Some(sleep) = sleep {
                        return sleep.as_mut().poll(cx);
                    }
                }
            }
        }
    }

    fn fall_back(&mut self, err: io::Error) {
        tracing::warn!("the timerfd failed ({err}); using tokio's timer from now on");
        self.clock = Clock::Tokio(None);
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Self::new()
    }
}

/// The monotonic clock's reading (what `Instant` counts) at an `Instant`.
struct Epoch {
    instant: Instant,
    monotonic: Duration,
}

fn epoch() -> &'static Epoch {
    static EPOCH: std::sync::OnceLock<Epoch> = std::sync::OnceLock::new();
    EPOCH.get_or_init(|| {
        // The clock read after the instant: any error makes timers late, never early.
        let instant = Instant::now();
        let monotonic = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map_or(Duration::ZERO, Duration::from);
        Epoch { instant, monotonic }
    })
}

/// `deadline` on the monotonic clock, rounded up to a whole millisecond: timers of several
/// ports due within the same millisecond (ports polled in step) then expire together and wake
/// the thread once, as tokio's millisecond wheel did; one timer per port, each exact to the
/// nanosecond, woke it once for each.
fn monotonic_ms_after(deadline: Instant) -> Duration {
    let epoch = epoch();
    let at = epoch.monotonic + deadline.saturating_duration_since(epoch.instant);
    let millis = at.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// A poll tick: due at `next`, then every `period` after the last due time; a tick more than
/// 5 ms late starts the count again from when it was taken (tokio's `MissedTickBehavior::Delay`,
/// which the port loop used: a slow cycle does not make the next ones come back to back).
#[derive(Debug)]
pub struct Ticker {
    alarm: Alarm,
    next: Instant,
    period: Duration,
}

impl Ticker {
    /// First tick at once.
    pub fn new(period: Duration) -> Self {
        Self { alarm: Alarm::new(), next: Instant::now(), period }
    }

    /// Waits for the next tick. Cancel-safe: a tick not waited out stays due.
    pub async fn tick(&mut self) -> Instant {
        let due = self.next;
        self.alarm.sleep_until(due).await;
        let now = Instant::now();
        self.next = next_due(due, now, self.period);
        due
    }
}

/// When the tick after the one `due` at `due` and taken at `now` comes.
fn next_due(due: Instant, now: Instant, period: Duration) -> Instant {
    if now > due + Duration::from_millis(5) {
        now + period
    } else {
        due + period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_tick_delays_the_next_one_and_a_timely_one_keeps_the_beat() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        // On time (or within 5 ms): the beat is kept, no drift.
        assert_eq!(next_due(t0, t0 + Duration::from_millis(3), second), t0 + second);
        // 300 ms late: the next comes a whole period after it was taken, not 700 ms later.
        let late = t0 + Duration::from_millis(300);
        assert_eq!(next_due(t0, late, second), late + second);
    }

    /// The oracle is the monotonic clock: an alarm never returns before its deadline, and
    /// returns soon after it, on a timerfd and on tokio's timer alike.
    #[tokio::test]
    async fn an_alarm_returns_at_its_deadline_not_before() {
        for mut alarm in [Alarm::new(), Alarm::tokio()] {
            let timerfd = alarm.is_timerfd();
            for wait_ms in [0u64, 1, 7, 30, 70] {
                let start = Instant::now();
                let deadline = start + Duration::from_millis(wait_ms);
                alarm.sleep_until(deadline).await;
                let woke = Instant::now();
                assert!(woke >= deadline, "timerfd {timerfd}: woke {:?} early", deadline - woke);
                // Generous: a loaded CI host; the point is that it does return.
                assert!(
                    woke - deadline < Duration::from_millis(500),
                    "timerfd {timerfd}: {:?} late",
                    woke - deadline
                );
            }
        }
    }

    /// Re-arming for a later deadline before the first fires: the first does not end the wait;
    /// re-arming for an earlier one: that one does. A deadline that passed returns at once.
    #[tokio::test]
    async fn a_new_deadline_replaces_the_old_one() {
        let mut alarm = Alarm::new();
        assert!(alarm.is_timerfd(), "this host has timerfd");
        let start = Instant::now();
        let near = start + Duration::from_millis(20);
        let far = start + Duration::from_millis(60);
        // Armed for `near`, then abandoned (a select! that another branch won).
        let abandoned = tokio::time::timeout(Duration::from_millis(5), alarm.sleep_until(near)).await;
        assert!(abandoned.is_err());
        alarm.sleep_until(far).await;
        assert!(Instant::now() >= far, "the abandoned deadline ended the new wait");
        // Now armed for nothing pending; an earlier deadline after a later one.
        let start = Instant::now();
        let later = start + Duration::from_millis(200);
        let sooner = start + Duration::from_millis(15);
        let _ = tokio::time::timeout(Duration::from_millis(2), alarm.sleep_until(later)).await;
        alarm.sleep_until(sooner).await;
        let woke = Instant::now();
        assert!(woke >= sooner && woke < later, "woke at {:?}", woke - start);
        let before = Instant::now();
        alarm.sleep_until(start).await;
        assert!(before.elapsed() < Duration::from_millis(50));
    }

    /// The oracle is the monotonic clock read around an `Instant`: the timer's absolute
    /// setting is the deadline's first whole millisecond, never before the deadline.
    #[test]
    fn a_deadline_is_armed_for_its_next_whole_millisecond() {
        let monotonic =
            || Duration::from(nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap());
        epoch();
        for micros in [0u64, 1, 999, 1000, 1001, 2500, 123_456] {
            let before = monotonic();
            let base = Instant::now();
            let after = monotonic();
            let wait = Duration::from_micros(micros);
            let at = monotonic_ms_after(base + wait);
            assert_eq!(at.subsec_nanos() % 1_000_000, 0, "{at:?} is not a whole millisecond");
            assert!(
                at >= before + wait,
                "{micros} µs: armed for {at:?}, before the deadline {:?}",
                before + wait
            );
            assert!(
                at <= after + wait + Duration::from_millis(1),
                "{micros} µs: armed for {at:?}, over a millisecond late"
            );
        }
    }

    #[tokio::test]
    async fn a_ticker_ticks_at_its_period() {
        let period = Duration::from_millis(25);
        let mut ticker = Ticker::new(period);
        let first = ticker.tick().await;
        for n in 1..=4u32 {
            let due = ticker.tick().await;
            assert_eq!(due, first + period * n, "tick {n} off the beat");
            assert!(Instant::now() >= due);
        }
    }
}
