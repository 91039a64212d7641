//! FoxESS HV2600 stack: bms-bridge plays the FoxESS BMS and polls every pack (status, stats,
//! cells, temperatures), then merges the packs into one series battery. A silent pack only
//! lowers `/System/NrOfModulesOnline`; the port is broken only when the link itself fails.
//!
//! Framing is our own scan over `FramedLink`, not tokio-modbus: requests must carry the `0D 0A`
//! trailer the packs expect, and tokio-modbus can neither send it nor skip it (or the BMS
//! broadcast with function 0x8C) in replies without treating them as corrupt frames.

use super::{PollError, PortLink};
use crate::battery::Battery;
use crate::bms::foxess::codec::{self as foxess, Block};
use crate::protocol::FrameError;
use crate::transport::serial::SerialLink;
use std::time::Duration;

async fn block(
    link: &mut SerialLink,
    address: u8,
    block: Block,
    timeout: Duration,
) -> Result<Vec<u16>, PollError> {
    let reply = link.request(&foxess::request(address, block), foxess::scan_response, timeout).await?;
    let registers = foxess::parse_response(&reply, Some(address))?;
    foxess::decode_registers(block, &registers)?;
    Ok(registers)
}

async fn pack(link: &mut SerialLink, address: u8, timeout: Duration) -> Result<Battery, PollError> {
    let mut read = Vec::with_capacity(foxess::BLOCKS.len());
    for b in foxess::BLOCKS {
        read.push(block(link, address, b, timeout).await?);
    }
    // BLOCKS order: status, stats, cells high, cells low, temperatures.
    let [status, stats, cells_high, cells_low, temperatures] = read.as_slice() else {
        return Err(FrameError::InvalidField { field: "blocks" }.into());
    };
    let battery = foxess::pack(stats, cells_low, cells_high)?;
    tracing::trace!(address, ?status, ?temperatures, "FoxESS raw registers");
    Ok(battery)
}

/// Polls the packs at `addresses` (series order) and returns the stack.
pub(super) async fn poll_stack(
    link: &mut PortLink,
    addresses: &[u8],
    _need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let link = link.framed()?;
    let mut packs = Vec::with_capacity(addresses.len());
    let mut last_error = None;
    for &address in addresses {
        match pack(link, address, timeout).await {
            Ok(battery) => packs.push(Some(battery)),
            Err(PollError::Link(err)) if err.port_is_broken() => return Err(err.into()),
            Err(err) => {
                tracing::debug!(address, error = %err, "FoxESS pack did not answer");
                last_error = Some(err);
                packs.push(None);
            }
        }
    }
    match last_error {
        Some(err) if packs.iter().all(Option::is_none) => Err(err),
        _ => Ok(foxess::stack(&packs)),
    }
}
