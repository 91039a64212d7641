//! Renogy: summary, cells and status blocks every poll; serial/model/firmware once per
//! connection (a pack without that block is still usable).

use super::{read_block, PollError};
use crate::battery::Battery;
use crate::bms::renogy::codec::{self as renogy, Block};
use crate::transport::modbus::ModbusLink;
use std::time::Duration;

async fn block(
    link: &mut ModbusLink,
    address: u8,
    block: Block,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let registers = read_block(link, address, block.start, block.count, timeout).await?;
    Ok(renogy::decode_registers(block, &registers)?.battery)
}

/// One poll of the Renogy battery at `address`.
pub(super) async fn poll(
    link: &mut ModbusLink,
    address: u8,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let mut battery = block(link, address, renogy::SUMMARY, timeout).await?;
    battery.merge(&block(link, address, renogy::CELLS, timeout).await?);
    battery.merge(&block(link, address, renogy::STATUS, timeout).await?);
    if need_identity {
        match block(link, address, renogy::INFO, timeout).await {
            Ok(info) => battery.merge(&info),
            Err(err) => tracing::debug!(address, error = %err, "no serial/model block"),
        }
    }
    renogy::derive_soc(&mut battery);
    Ok(battery)
}
