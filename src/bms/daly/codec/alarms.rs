//! The 0x98 alarm map, per Daly's "RS485+UART protocol" as transcribed in python-daly-bms
//! `error_codes.py` (study 2.8): bit 0 first, "L1" a warning, "L2" an alarm. Cell bits and pack
//! bits go to their own alarms (the incumbent mixed them).

use crate::battery::AlarmLevel;
use crate::protocol::field::{self, AlarmSlot, Flag};
use crate::protocol::Decoded;
use serde_json::json;

const fn warn(bit: u8, slot: AlarmSlot) -> Flag {
    Flag::new(bit, slot, AlarmLevel::Warning)
}

const fn alarm(bit: u8, slot: AlarmSlot) -> Flag {
    Flag::new(bit, slot, AlarmLevel::Alarm)
}

/// Bytes 0-3 as one word: byte n bit b is bit 8n + b.
const LIMITS: &[Flag] = &[
    warn(0, |a| &mut a.high_cell_voltage),
    alarm(1, |a| &mut a.high_cell_voltage),
    warn(2, |a| &mut a.low_cell_voltage),
    alarm(3, |a| &mut a.low_cell_voltage),
    warn(4, |a| &mut a.high_voltage),
    alarm(5, |a| &mut a.high_voltage),
    warn(6, |a| &mut a.low_voltage),
    alarm(7, |a| &mut a.low_voltage),
    warn(8, |a| &mut a.high_charge_temperature),
    alarm(9, |a| &mut a.high_charge_temperature),
    warn(10, |a| &mut a.low_charge_temperature),
    alarm(11, |a| &mut a.low_charge_temperature),
    warn(12, |a| &mut a.high_temperature),
    alarm(13, |a| &mut a.high_temperature),
    warn(14, |a| &mut a.low_temperature),
    alarm(15, |a| &mut a.low_temperature),
    warn(16, |a| &mut a.high_charge_current),
    alarm(17, |a| &mut a.high_charge_current),
    warn(18, |a| &mut a.high_discharge_current),
    alarm(19, |a| &mut a.high_discharge_current),
    // 20/21: SoC too high L1/L2 has no Victron alarm; kept in `failure_bytes_hex`.
    warn(22, |a| &mut a.low_soc),
    alarm(23, |a| &mut a.low_soc),
    warn(24, |a| &mut a.cell_imbalance),
    alarm(25, |a| &mut a.cell_imbalance),
    // 26/27: temperature difference L1/L2 has no Victron alarm either.
];

/// Bytes 4-6 as one word: MOSFET temperatures, then every hardware fault.
const FAULTS: &[Flag] = &[
    alarm(0, |a| &mut a.high_internal_temperature), // charge MOS over-temperature
    alarm(1, |a| &mut a.high_internal_temperature), // discharge MOS over-temperature
    alarm(2, |a| &mut a.internal_failure),          // charge MOS sensor fault
    alarm(3, |a| &mut a.internal_failure),          // discharge MOS sensor fault
    alarm(4, |a| &mut a.internal_failure),          // charge MOS stuck (adhesion)
    alarm(5, |a| &mut a.internal_failure),          // discharge MOS stuck
    alarm(6, |a| &mut a.internal_failure),          // charge MOS open circuit
    alarm(7, |a| &mut a.internal_failure),          // discharge MOS open circuit
    alarm(8, |a| &mut a.internal_failure),          // AFE chip fault
    alarm(9, |a| &mut a.internal_failure),          // cell sampling line dropped
    alarm(10, |a| &mut a.internal_failure),         // cell temperature sensor fault
    alarm(11, |a| &mut a.internal_failure),         // EEPROM fault
    alarm(12, |a| &mut a.internal_failure),         // RTC fault
    alarm(13, |a| &mut a.internal_failure),         // precharge failure
    alarm(14, |a| &mut a.internal_failure),         // vehicle communication fault
    alarm(15, |a| &mut a.internal_failure),         // internal communication fault
    alarm(16, |a| &mut a.internal_failure),         // current module fault
    alarm(17, |a| &mut a.internal_failure),         // pack voltage detection fault
    alarm(18, |a| &mut a.internal_failure),         // short-circuit protection fault
    alarm(19, |a| &mut a.internal_failure),         // low-voltage charge inhibit
];

/// Applies the eight 0x98 bytes to `d`'s alarms; the raw bytes and fault code go to `extra`.
pub(super) fn apply(p: &[u8], d: &mut Decoded) {
    let word = |range: std::ops::Range<usize>| {
        p.get(range)
            .map_or(0, |bytes| bytes.iter().enumerate().fold(0u32, |w, (i, b)| w | u32::from(*b) << (8 * i)))
    };
    field::apply_flags(word(0..4), LIMITS, &mut d.battery.alarms);
    field::apply_flags(word(4..7), FAULTS, &mut d.battery.alarms);
    let hex: Vec<String> = p.iter().map(|b| format!("{b:02X}")).collect();
    d.extra.insert("failure_bytes_hex", json!(hex.join(" ")));
    d.extra.insert("fault_code", json!(p.get(7).copied().unwrap_or(0)));
}
