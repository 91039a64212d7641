//! A simulated EG4-LL pack: registers 0x0000..0x0087 (status, configuration, hardware) of a
//! moving pack, served by the Modbus simulator (a real tokio-modbus RTU server).

use crate::bms::eg4_ll::codec::CHARGE_BLOCKING;
use crate::protocol::modbus::put_text;
use crate::sim::model::SimPack;
use crate::sim::serve::SimControl;

/// Register map of the pack at `address`: (0, registers 0..).
pub fn registers(address: u8, pack: &SimPack, control: &SimControl) -> (u16, Vec<u16>) {
    // A fixed-size array: every index below is a constant the compiler checks.
    let mut r = [0u16; 136];
    let cells = pack.cell_voltages_mv();
    let n = cells.len().min(16);
    let temp = |c: f64| c.round().clamp(-128.0, 127.0) as i8 as u8;
    r[0] = (pack.voltage_v() * 100.0).round().clamp(0.0, 65535.0) as u16;
    r[1] = (pack.current_a * 100.0).round().clamp(-32768.0, 32767.0) as i16 as u16;
    for (register, cell) in r.iter_mut().skip(2).zip(cells.iter().take(n)) {
        *register = *cell;
    }
    r[18] = pack.temperature_mos_c.round() as i16 as u16;
    r[19] = pack.temperatures_c.iter().copied().fold(f64::MIN, f64::max).round() as i16 as u16;
    r[20] = r[19];
    r[21] = pack.soc_percent.round() as u16;
    r[22] = 100;
    r[23] = 100;
    r[24] = pack.soc_percent.round() as u16;
    r[25] = if pack.current_a > 0.0 { 1 } else { 0 };
    r[27] = if control.charge_fet_off() { CHARGE_BLOCKING & 0x0002 } else { 0 };
    r[30] = u16::try_from(pack.cycles).unwrap_or(u16::MAX);
    let mas = (pack.capacity_ah * 3_600_000.0).round() as u32;
    [r[31], r[32]] = [(mas >> 16) as u16, mas as u16];
    let t = |i: usize| temp(pack.temperatures_c.get(i).copied().unwrap_or(25.0));
    [r[33], r[34]] = [u16::from_be_bytes([t(0), t(1)]), u16::from_be_bytes([t(2), t(3)])];
    r[36] = n as u16;
    r[37] = (pack.capacity_ah * 10.0).round() as u16;
    // configuration block at 0x2D: cell limits (mV), current limits
    [r[0x2D + 11], r[0x2D + 12], r[0x2D + 16], r[0x2D + 17]] = [3400, 30, 2900, 2700];
    [r[0x2D + 22], r[0x2D + 23], r[0x2D + 35], r[0x2D + 36]] = [3600, 3650, 10000, 10000];
    for (registers, text) in [
        (105..117, "LFP-51.2V100Ah-SIM".to_owned()),
        (117..120, "Z02T04".to_owned()),
        (120..128, format!("SIMEG4{address:02}")),
    ] {
        if let Some(registers) = r.get_mut(registers) {
            put_text(registers, &text);
        }
    }
    (0, r.to_vec())
}
