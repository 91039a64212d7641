//! Writes to the BMSes of one port, sent by the poll loop between polls.
//!
//! Accepted D-Bus writes arrive as [`BmsCommand`]s on one channel per battery. Each becomes a
//! pending [`Write`] (a newer write of the same kind for the same BMS replaces an older one); the
//! loop sends it at the start of the next cycle, checks the acknowledgement and logs one line with
//! the outcome. A write that fails is tried again on the next cycles, at most [`MAX_RETRIES`]
//! more times.

use super::{PollError, PortLink};
use crate::config::Protocol;
use crate::protocol::writes::{BmsCommand, FetRequest, Write};
use std::time::Duration;
use tokio::sync::mpsc;

/// Retries after a failed write (so at most 1 + 3 attempts).
pub const MAX_RETRIES: u32 = 3;

/// Where one battery's commands come from: its bus address and the channel.
pub type CommandSource = (Option<u8>, mpsc::Receiver<BmsCommand>);

#[derive(Debug)]
struct Pending {
    address: Option<u8>,
    write: Write,
    attempts: u32,
}

/// The write state of one port: command channels, requested FET state per BMS, pending writes.
#[derive(Debug)]
pub(super) struct Writer {
    sources: Vec<CommandSource>,
    fets: Vec<(Option<u8>, FetRequest)>,
    pending: Vec<Pending>,
}

impl Writer {
    pub(super) fn new(sources: Vec<CommandSource>) -> Self {
        Self { sources, fets: Vec::new(), pending: Vec::new() }
    }

    /// Takes every command received so far and turns it into a pending write.
    fn collect(&mut self) {
        let mut received = Vec::new();
        for (address, rx) in &mut self.sources {
            while let Ok(command) = rx.try_recv() {
                received.push((*address, command));
            }
        }
        for (address, command) in received {
            self.push(address, command);
        }
    }

    fn push(&mut self, address: Option<u8>, command: BmsCommand) {
        if !self.fets.iter().any(|(a, _)| *a == address) {
            self.fets.push((address, FetRequest::default()));
        }
        let Some((_, fets)) = self.fets.iter_mut().find(|(a, _)| *a == address) else { return };
        let write = fets.apply(command);
        self.pending.retain(|p| !(p.address == address && p.write.same_kind(&write)));
        self.pending.push(Pending { address, write, attempts: 0 });
    }

    /// Sends every pending write once; keeps the failed ones that have retries left.
    pub(super) async fn run(
        &mut self,
        protocol: Protocol,
        link: &mut PortLink,
        device: &str,
        timeout: Duration,
    ) {
        self.collect();
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.pending) {
            p.attempts += 1;
            let at = p.address.map_or(String::new(), |a| format!(" address {a}"));
            match send(protocol, link, p.address, p.write, timeout).await {
                Ok(()) => tracing::info!(port = %device, "BMS write{at}: {} acknowledged", p.write),
                Err(err) if p.attempts <= MAX_RETRIES => {
                    tracing::warn!(port = %device, error = %err, attempt = p.attempts, "BMS write{at}: {} failed; retrying next cycle", p.write);
                    still.push(p);
                }
                Err(err) => {
                    tracing::warn!(port = %device, error = %err, attempts = p.attempts, "BMS write{at}: {} failed; giving up", p.write)
                }
            }
        }
        self.pending = still;
    }
}

/// Sends `write` to the BMS at `address` and checks its acknowledgement.
pub async fn send(
    protocol: Protocol,
    link: &mut PortLink,
    address: Option<u8>,
    write: Write,
    timeout: Duration,
) -> Result<(), PollError> {
    let address = address.or(protocol.default_address()).unwrap_or(1);
    let Some(request) = protocol.write_request(address, write) else {
        return Err(crate::protocol::FrameError::InvalidField { field: "write_not_supported" }.into());
    };
    let scan = protocol.ack_scan();
    let link = link.framed()?;
    let mut frame = link.request(&request, scan, timeout).await?;
    // An RS485 adapter may echo the request; the acknowledgement follows it.
    if frame == request {
        frame = link.read_frame(scan, timeout).await?;
    }
    protocol.check_ack(address, &frame)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_commands_replace_older_ones_of_the_same_kind() {
        let (tx, rx) = mpsc::channel(8);
        let mut writer = Writer::new(vec![(Some(1), rx)]);
        tx.try_send(BmsCommand::SetChargeFet(false)).unwrap();
        tx.try_send(BmsCommand::SetDischargeFet(false)).unwrap();
        tx.try_send(BmsCommand::SetSoc(50.0)).unwrap();
        writer.collect();
        let writes: Vec<Write> = writer.pending.iter().map(|p| p.write).collect();
        let both_off = FetRequest { charge_on: false, discharge_on: false };
        assert_eq!(writes, vec![Write::Mosfets(both_off), Write::Soc(50.0)]);
        tx.try_send(BmsCommand::SetChargeFet(true)).unwrap();
        writer.collect();
        let last = writer.pending.last().map(|p| p.write);
        assert_eq!(last, Some(Write::Mosfets(FetRequest { charge_on: true, discharge_on: false })));
        assert_eq!(writer.pending.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_at_most_three_times() {
        let simulator = crate::sim::spawn(Protocol::Jbd, &[], 4).unwrap();
        simulator.control().set_silent(true);
        let mut link =
            super::super::open(Protocol::Jbd, &simulator.path().to_string_lossy(), 9600).await.unwrap();
        let (tx, rx) = mpsc::channel(8);
        let mut writer = Writer::new(vec![(None, rx)]);
        tx.try_send(BmsCommand::SetChargeFet(false)).unwrap();
        let timeout = Duration::from_millis(30);
        for attempt in 1..=MAX_RETRIES {
            writer.run(Protocol::Jbd, &mut link, "pty", timeout).await;
            assert_eq!(writer.pending.first().map(|p| p.attempts), Some(attempt));
        }
        writer.run(Protocol::Jbd, &mut link, "pty", timeout).await;
        assert!(writer.pending.is_empty(), "given up after 1 + {MAX_RETRIES} attempts");
        assert!(!simulator.control().charge_fet_off());

        simulator.control().set_silent(false);
        tx.try_send(BmsCommand::SetDischargeFet(false)).unwrap();
        writer.run(Protocol::Jbd, &mut link, "pty", Duration::from_millis(300)).await;
        assert!(writer.pending.is_empty());
        // The requested state of both FETs goes out: charge off (still requested), discharge off.
        assert!(simulator.control().charge_fet_off() && simulator.control().discharge_fet_off());
        assert_eq!(simulator.control().writes(), 1);
    }
}
