//! Daly poll: seven short exchanges (0x90 SoC, 0x93 MOS, 0x94 status, 0x95 cells, 0x96
//! temperatures, 0x97 balance, 0x98 alarms), rated capacity, production date and battery code
//! once per connection.
//!
//! A sleeping pack does not answer at all: the first exchange times out and the poll ends there,
//! one timeout per cycle with the same message, so the monitor reports the pack offline once
//! instead of a storm of errors (`docs/protocols/daly.md`). Cells and temperatures come in
//! several sentences (three cells, seven sensors each): the status reply says how many.

use super::codec as daly;
use crate::battery::Battery;
use crate::bms::plan::{Next, PollError, PollPlan, PollTarget, Reply, Request};
use crate::protocol::FrameError;
use crate::transport::LinkError;
use std::collections::VecDeque;

/// The plan of one Daly poll.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    plan_at(target.address(), target.need_identity)
}

/// The plan of one poll of the pack at host address `address` (0x3F + board): Daly CAN
/// (`bms/daly_can`) runs the same plan, its CAN address n being board n.
pub fn plan_at(address: u8, need_identity: bool) -> Box<dyn PollPlan> {
    Box::new(DalyPlan {
        address,
        need_identity,
        queue: [daly::CMD_SOC, daly::CMD_MOS, daly::CMD_STATUS].into_iter().map(Exchange::required).collect(),
        current: None,
        frames: Vec::new(),
        battery: Battery::default(),
        cells: 0,
        sensors: 0,
        failed: None,
        skipped: None,
    })
}

/// One command and the sentences its reply has.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    command: u8,
    sentences: usize,
    /// Identity: a failure is skipped, not the end of the poll.
    optional: bool,
}

impl Exchange {
    fn required(command: u8) -> Exchange {
        Exchange { command, sentences: 1, optional: false }
    }
}

#[derive(Debug)]
struct DalyPlan {
    address: u8,
    need_identity: bool,
    queue: VecDeque<Exchange>,
    /// The exchange under way (its request sent).
    current: Option<Exchange>,
    /// Its sentences so far.
    frames: Vec<Vec<u8>>,
    battery: Battery,
    cells: usize,
    sensors: usize,
    failed: Option<PollError>,
    skipped: Option<(&'static str, PollError)>,
}

impl PollPlan for DalyPlan {
    fn next(&mut self) -> Next {
        if let Some(error) = self.failed.take() {
            return Next::Done(Err(error));
        }
        if let Some((what, error)) = self.skipped.take() {
            return Next::Skipped { what, error };
        }
        if self.current.is_some() {
            return Next::Send(Request::MoreFrames { scan: daly::scan });
        }
        match self.queue.pop_front() {
            Some(exchange) => {
                self.current = Some(exchange);
                self.frames.clear();
                Next::Send(Request::Frame {
                    bytes: daly::request(self.address, exchange.command).to_vec(),
                    scan: daly::scan,
                })
            }
            None => Next::Done(Ok(Box::new(std::mem::take(&mut self.battery)))),
        }
    }

    fn handle(&mut self, reply: Result<Reply, PollError>) {
        let Some(exchange) = self.current else { return };
        match self.sentence(exchange, reply) {
            Ok(false) => {}
            Ok(true) => {
                self.current = None;
                let frames = std::mem::take(&mut self.frames);
                if let Err(error) = self.complete(exchange.command, &frames) {
                    self.fail(exchange, error.into());
                }
            }
            Err(error) => {
                self.current = None;
                self.fail(exchange, error);
            }
        }
    }
}

impl DalyPlan {
    /// Takes one sentence; true once the exchange has all its sentences. Sentences for other
    /// commands (the tail of an earlier multi-sentence reply, an echo of the request) are
    /// skipped.
    fn sentence(&mut self, exchange: Exchange, reply: Result<Reply, PollError>) -> Result<bool, PollError> {
        let frame = match reply {
            Ok(reply) => reply.frame()?.to_vec(),
            Err(PollError::Link(LinkError::Timeout { .. })) if !self.frames.is_empty() => {
                return Err(FrameError::InvalidField { field: "missing_sentence" }.into())
            }
            Err(error) => return Err(error),
        };
        let is_echo = frame.get(1) == Some(&self.address);
        match daly::check_reply(&frame, self.address, exchange.command) {
            Ok(_) => self.frames.push(frame),
            Err(FrameError::UnexpectedCommand { .. }) => {}
            Err(_) if is_echo => {}
            Err(error) => return Err(error.into()),
        }
        Ok(self.frames.len() >= exchange.sentences)
    }

    fn fail(&mut self, exchange: Exchange, error: PollError) {
        if exchange.optional {
            self.skipped = Some((identity_name(exchange.command), error));
        } else {
            self.failed = Some(error);
        }
    }

    /// What a complete reply adds to the reading.
    fn complete(&mut self, command: u8, frames: &[Vec<u8>]) -> Result<(), FrameError> {
        let sentences: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let first = sentences.first().copied().unwrap_or_default();
        match command {
            daly::CMD_CELL_VOLTAGES => {
                self.battery.cell_voltages_v = Some(daly::cells(&sentences, self.cells)?)
            }
            daly::CMD_TEMPERATURES => {
                self.battery.temperatures_c = Some(daly::temperatures(&sentences, self.sensors)?)
            }
            daly::CMD_BATTERY_CODE => self.battery.serial = daly::battery_code(&sentences),
            daly::CMD_BALANCE => {
                let balance = daly::decode(first)?.battery;
                self.battery.balancing_cells =
                    balance.balancing_cells.map(|flags| flags.into_iter().take(self.cells).collect());
            }
            daly::CMD_STATUS => {
                self.battery.merge(&daly::decode(first)?.battery);
                self.status(first)?;
            }
            _ => self.battery.merge(&daly::decode(first)?.battery),
        }
        Ok(())
    }

    /// The status reply says how many cells and sensors there are: the rest of the poll.
    fn status(&mut self, frame: &[u8]) -> Result<(), FrameError> {
        let cells = usize::from(frame.get(4).copied().unwrap_or(0));
        let sensors = usize::from(frame.get(5).copied().unwrap_or(0));
        if cells == 0 || cells > 48 {
            return Err(FrameError::InvalidField { field: "cell_count" });
        }
        self.cells = cells;
        self.sensors = sensors;
        let many = |command, sentences| Exchange { command, sentences, optional: false };
        self.queue.push_back(many(daly::CMD_CELL_VOLTAGES, cells.div_ceil(3)));
        if sensors > 0 {
            self.queue.push_back(many(daly::CMD_TEMPERATURES, sensors.div_ceil(7)));
        }
        self.queue.push_back(Exchange::required(daly::CMD_BALANCE));
        self.queue.push_back(Exchange::required(daly::CMD_FAILURES));
        if self.need_identity {
            for command in [daly::CMD_RATED, daly::CMD_PRODUCTION] {
                self.queue.push_back(Exchange { command, sentences: 1, optional: true });
            }
            self.queue.push_back(Exchange { command: daly::CMD_BATTERY_CODE, sentences: 5, optional: true });
        }
        Ok(())
    }
}

fn identity_name(command: u8) -> &'static str {
    match command {
        daly::CMD_RATED => "rated capacity (0x50)",
        daly::CMD_PRODUCTION => "production date (0x53)",
        _ => "battery code (0x57)",
    }
}
