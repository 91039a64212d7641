//! Poll plans: what one poll of a BMS sends and what each reply means, without doing I/O
//! (sans-IO, as quinn-proto's `poll_transmit`/`handle_*`). `driver::poll` runs any plan over
//! its link: it asks [`PollPlan::next`] for a request, does the exchange, and hands the reply
//! (or the link's failure) to [`PollPlan::handle`], until the plan says the poll is done.

use crate::battery::Battery;
use crate::protocol::{FrameError, Scan};
use crate::transport::LinkError;
use std::fmt::Debug;

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The exchange failed (timeout, garbage, I/O).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A reply arrived but was not a valid frame.
    #[error("bad reply: {0}")]
    Frame(#[from] FrameError),
}

/// One exchange the plan wants.
#[derive(Debug, Clone)]
pub enum Request {
    /// Send `bytes` on a framed link and wait for the first frame `scan` finds.
    Frame {
        /// The request frame.
        bytes: Vec<u8>,
        /// The scanner of the reply.
        scan: fn(&[u8]) -> Scan,
    },
    /// Read one more frame of a multi-sentence reply, within what is left of the timeout of
    /// the last [`Request::Frame`].
    MoreFrames {
        /// The scanner of the reply.
        scan: fn(&[u8]) -> Scan,
    },
    /// Modbus RTU "read holding registers" (function 3); an exception reply is a
    /// [`FrameError::Exception`].
    Registers {
        /// Slave address.
        address: u8,
        /// First register.
        start: u16,
        /// Number of registers.
        count: u16,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A frame found by the request's scanner.
    Frame(Vec<u8>),
    /// The registers read.
    Registers(Vec<u16>),
}

impl Reply {
    /// The frame of a framed exchange.
    pub fn frame(&self) -> Result<&[u8], FrameError> {
        match self {
            Reply::Frame(frame) => Ok(frame),
            Reply::Registers(_) => Err(FrameError::InvalidField { field: "registers_for_a_frame_request" }),
        }
    }

    /// The registers of a Modbus exchange.
    pub fn registers(&self) -> Result<&[u16], FrameError> {
        match self {
            Reply::Registers(registers) => Ok(registers),
            Reply::Frame(_) => Err(FrameError::InvalidField { field: "frame_for_a_register_request" }),
        }
    }
}

/// What the plan wants next.
#[derive(Debug)]
pub enum Next {
    /// This exchange.
    Send(Request),
    /// An optional reading (identity, a second block) failed and was left out; the poll goes
    /// on. The executor logs it (at debug level).
    Skipped {
        /// What was left out.
        what: &'static str,
        /// Why.
        error: PollError,
    },
    /// The poll is over.
    Done(Result<Box<Battery>, PollError>),
}

/// One poll of one BMS (or, for protocols with `one_battery_per_port`, of one stack).
pub trait PollPlan: Debug + Send {
    /// The next exchange, a skipped optional reading, or the result.
    fn next(&mut self) -> Next;
    /// The answer to the request [`PollPlan::next`] returned last, or why there is none.
    fn handle(&mut self, reply: Result<Reply, PollError>);
}

/// What a poll plan is built for.
#[derive(Debug, Clone, Copy)]
pub struct PollTarget<'a> {
    /// Bus addresses: one for a BMS; every pack of the stack for `one_battery_per_port`.
    pub addresses: &'a [u8],
    /// Read the identity (model, serial, firmware) too: once per connection.
    pub need_identity: bool,
}

impl PollTarget<'_> {
    /// The (first) address.
    pub fn address(&self) -> u8 {
        self.addresses.first().copied().unwrap_or(1)
    }
}

/// One exchange of a [`Sequence`]: the request for an address, and what its reply adds to the
/// reading.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// What the step reads (for the log when an optional step fails).
    pub what: &'static str,
    /// The register, command or block the step reads, passed to `request` and `apply`.
    pub param: u16,
    /// The request to the BMS at an address.
    pub request: fn(u8, u16) -> Request,
    /// Adds the reply of the BMS at an address to the reading (protocol checks included:
    /// a register echo, a command byte).
    pub apply: fn(u8, u16, &mut Battery, &Reply) -> Result<(), FrameError>,
}

/// The plan of most protocols: fixed steps every poll (each must succeed), then optional
/// identity steps (a failure is skipped), then a last check or derivation.
#[derive(Debug)]
pub struct Sequence {
    address: u8,
    steps: &'static [Step],
    identity: &'static [Step],
    finish: fn(Battery) -> Result<Battery, FrameError>,
    at: usize,
    battery: Battery,
    failed: Option<PollError>,
    skipped: Option<(&'static str, PollError)>,
}

impl Sequence {
    /// A plan of `steps`, then `identity` when the target needs it, then `finish`.
    pub fn new(
        target: PollTarget<'_>,
        steps: &'static [Step],
        identity: &'static [Step],
        finish: fn(Battery) -> Result<Battery, FrameError>,
    ) -> Sequence {
        Sequence {
            address: target.address(),
            steps,
            identity: if target.need_identity { identity } else { &[] },
            finish,
            at: 0,
            battery: Battery::default(),
            failed: None,
            skipped: None,
        }
    }

    /// A boxed plan (for a spec's plan constructor).
    pub fn boxed(
        target: PollTarget<'_>,
        steps: &'static [Step],
        identity: &'static [Step],
        finish: fn(Battery) -> Result<Battery, FrameError>,
    ) -> Box<dyn PollPlan> {
        Box::new(Sequence::new(target, steps, identity, finish))
    }

    fn step(&self, at: usize) -> Option<&'static Step> {
        let steps: &'static [Step] = self.steps;
        let identity: &'static [Step] = self.identity;
        steps.get(at).or_else(|| identity.get(at.checked_sub(steps.len())?))
    }
}

impl PollPlan for Sequence {
    fn next(&mut self) -> Next {
        if let Some(error) = self.failed.take() {
            return Next::Done(Err(error));
        }
        if let Some((what, error)) = self.skipped.take() {
            return Next::Skipped { what, error };
        }
        match self.step(self.at) {
            Some(step) => Next::Send((step.request)(self.address, step.param)),
            None => Next::Done(
                (self.finish)(std::mem::take(&mut self.battery)).map(Box::new).map_err(PollError::from),
            ),
        }
    }

    fn handle(&mut self, reply: Result<Reply, PollError>) {
        let Some(step) = self.step(self.at) else { return };
        let required = self.at < self.steps.len();
        self.at += 1;
        let applied =
            reply.and_then(|reply| Ok((step.apply)(self.address, step.param, &mut self.battery, &reply)?));
        if let Err(error) = applied {
            if required {
                self.failed = Some(error);
            } else {
                self.skipped = Some((step.what, error));
            }
        }
    }
}

/// A `finish` that keeps the reading as it is.
pub fn as_read(battery: Battery) -> Result<Battery, FrameError> {
    Ok(battery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request(address: u8, param: u16) -> Request {
        Request::Registers { address, start: param, count: 1 }
    }

    /// Register `param` holds the pack voltage in 0.1 V.
    fn apply(_: u8, _: u16, battery: &mut Battery, reply: &Reply) -> Result<(), FrameError> {
        let register = reply.registers()?.first().copied().ok_or(FrameError::TooShort { need: 1, got: 0 })?;
        battery.voltage_v = Some(f64::from(register) / 10.0);
        Ok(())
    }

    const STEPS: [Step; 2] =
        [Step { what: "a", param: 10, request, apply }, Step { what: "b", param: 20, request, apply }];
    const IDENTITY: [Step; 1] = [Step { what: "identity", param: 30, request, apply }];

    fn timeout() -> PollError {
        PollError::Link(LinkError::Timeout { waited: Duration::from_millis(5), received: 0 })
    }

    #[test]
    fn a_required_step_that_fails_ends_the_poll_with_its_error() {
        let mut plan =
            Sequence::new(PollTarget { addresses: &[7], need_identity: true }, &STEPS, &IDENTITY, as_read);
        assert!(matches!(plan.next(), Next::Send(Request::Registers { address: 7, start: 10, count: 1 })));
        plan.handle(Err(timeout()));
        assert!(matches!(plan.next(), Next::Done(Err(PollError::Link(LinkError::Timeout { .. })))));
    }

    #[test]
    fn an_identity_step_that_fails_is_skipped_and_the_reading_stands() {
        let mut plan =
            Sequence::new(PollTarget { addresses: &[7], need_identity: true }, &STEPS, &IDENTITY, as_read);
        for (start, value) in [(10, 520), (20, 530)] {
            assert!(matches!(plan.next(), Next::Send(Request::Registers { start: s, .. }) if s == start));
            plan.handle(Ok(Reply::Registers(vec![value])));
        }
        assert!(matches!(plan.next(), Next::Send(Request::Registers { start: 30, .. })));
        // A frame where registers were asked for is a typed error, not a panic.
        plan.handle(Ok(Reply::Frame(vec![1, 2, 3])));
        assert!(matches!(plan.next(), Next::Skipped { what: "identity", error: PollError::Frame(_) }));
        match plan.next() {
            Next::Done(Ok(battery)) => assert_eq!(battery.voltage_v, Some(53.0)),
            other => panic!("expected the reading, got {other:?}"),
        }
    }

    #[test]
    fn without_need_identity_the_identity_steps_are_not_sent() {
        let mut plan =
            Sequence::new(PollTarget { addresses: &[7], need_identity: false }, &STEPS, &IDENTITY, as_read);
        for _ in 0..2 {
            assert!(matches!(plan.next(), Next::Send(_)));
            plan.handle(Ok(Reply::Registers(vec![520])));
        }
        assert!(matches!(plan.next(), Next::Done(Ok(_))));
    }
}
