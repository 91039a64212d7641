//! FoxESS HV2600 poll: five register blocks of every pack of the stack; the packs of one port
//! form one battery (`one_battery_per_port`). A pack that does not answer is left out of the
//! stack (and logged); the poll fails only when no pack answers or the port itself broke.

use super::codec::{self as foxess};
use crate::battery::Battery;
use crate::bms::plan::{Next, PollError, PollPlan, PollTarget, Reply, Request};
use crate::protocol::FrameError;

/// The plan of one poll of the stack at `target.addresses`.
pub fn plan(target: PollTarget<'_>) -> Box<dyn PollPlan> {
    Box::new(StackPlan {
        addresses: target.addresses.to_vec(),
        pack: 0,
        registers: Vec::with_capacity(foxess::BLOCKS.len()),
        packs: Vec::with_capacity(target.addresses.len()),
        last_error: None,
        skipped: None,
        broken: None,
    })
}

#[derive(Debug)]
struct StackPlan {
    addresses: Vec<u8>,
    /// Index of the pack being read.
    pack: usize,
    /// Its blocks so far.
    registers: Vec<Vec<u16>>,
    packs: Vec<Option<Battery>>,
    /// Why the last pack that failed did.
    last_error: Option<PollError>,
    /// An earlier pack's failure, for the log.
    skipped: Option<PollError>,
    /// The port broke: the poll ends.
    broken: Option<PollError>,
}

impl PollPlan for StackPlan {
    fn next(&mut self) -> Next {
        if let Some(error) = self.broken.take() {
            return Next::Done(Err(error));
        }
        if let Some(error) = self.skipped.take() {
            return Next::Skipped { what: "FoxESS pack (did not answer)", error };
        }
        let Some(&address) = self.addresses.get(self.pack) else {
            return match self.last_error.take() {
                Some(error) if self.packs.iter().all(Option::is_none) => Next::Done(Err(error)),
                Some(error) => Next::Skipped { what: "FoxESS pack (did not answer)", error },
                None => Next::Done(Ok(Box::new(foxess::stack(&self.packs)))),
            };
        };
        let block = foxess::BLOCKS.get(self.registers.len()).copied().unwrap_or(foxess::STATUS);
        Next::Send(Request::Frame { bytes: foxess::request(address, block), scan: foxess::scan_response })
    }

    fn handle(&mut self, reply: Result<Reply, PollError>) {
        let Some(&address) = self.addresses.get(self.pack) else { return };
        let block = foxess::BLOCKS.get(self.registers.len()).copied().unwrap_or(foxess::STATUS);
        let registers = reply.and_then(|reply| {
            let registers = foxess::parse_response(reply.frame()?, Some(address))?;
            foxess::decode_registers(block, &registers)?;
            Ok(registers)
        });
        let pack = match registers {
            Ok(registers) => {
                self.registers.push(registers);
                if self.registers.len() < foxess::BLOCKS.len() {
                    return;
                }
                pack(&self.registers).map_err(PollError::from)
            }
            Err(PollError::Link(error)) if error.port_is_broken() => {
                self.broken = Some(error.into());
                return;
            }
            Err(error) => Err(error),
        };
        match pack {
            Ok(battery) => self.packs.push(Some(battery)),
            Err(error) => {
                self.skipped = self.last_error.replace(error);
                self.packs.push(None);
            }
        }
        self.pack += 1;
        self.registers.clear();
    }
}

/// One pack from its blocks (status, stats, cells high, cells low, temperatures).
fn pack(blocks: &[Vec<u16>]) -> Result<Battery, FrameError> {
    let [_status, stats, cells_high, cells_low, _temperatures] = blocks else {
        return Err(FrameError::InvalidField { field: "blocks" });
    };
    foxess::pack(stats, cells_low, cells_high)
}
