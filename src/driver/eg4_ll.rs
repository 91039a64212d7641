//! EG4-LL: status block every poll; hardware (model, serial) and configuration once per
//! connection (their failure costs only the identity).

use super::{read_block, PollError};
use crate::battery::Battery;
use crate::bms::eg4_ll::codec as eg4_ll;
use crate::transport::modbus::ModbusLink;
use std::time::Duration;

/// One poll of the EG4-LL pack at `address`.
pub(super) async fn poll(
    link: &mut ModbusLink,
    address: u8,
    need_identity: bool,
    timeout: Duration,
) -> Result<Battery, PollError> {
    let status = eg4_ll::STATUS;
    let registers = read_block(link, address, status.start, status.count, timeout).await?;
    let mut battery = eg4_ll::decode_registers(status, &registers)?.battery;
    if need_identity {
        for block in [eg4_ll::HARDWARE, eg4_ll::CONFIG] {
            let decoded = match read_block(link, address, block.start, block.count, timeout).await {
                Ok(registers) => eg4_ll::decode_registers(block, &registers).map_err(PollError::from),
                Err(err) => Err(err),
            };
            match decoded {
                Ok(d) => {
                    battery.merge(&d.battery);
                    tracing::debug!(address, block = block.name, extra = ?d.extra, "EG4-LL block");
                }
                Err(err) => tracing::debug!(address, block = block.name, error = %err, "EG4-LL block unread"),
            }
        }
    }
    Ok(battery)
}
