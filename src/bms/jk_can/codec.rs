//! JK BMS CAN (JK's own broadcast protocol, 250 kbit/s, little-endian): the BMS sends these
//! frames on its own, nothing is requested. The BMS's DIP address `n` (0..=15) is added to every
//! id (`0x02F4 + n`, `0x18F128F4 + n`), so several packs share one bus (study 2.7).
//!
//! | id (address 0) | content |
//! |---|---|
//! | 0x02F4 BATT_ST1 | u16 pack voltage 0.1 V, u16 current `raw/10 - 400` A (+ = charge), u8 SoC % |
//! | 0x04F4 CELL_VOLT | u16 max cell mV, u8 its number, u16 min cell mV, u8 its number |
//! | 0x05F4 CELL_TEMP | u8 max temperature (-50 °C), u8 its sensor, u8 min (-50 °C), u8 its sensor |
//! | 0x07F4 ALM_INFO | 2 bits per alarm (level 0 = none, 1 = warning, 2-3 = alarm) |
//! | 0x18F128F4 BATT_ST2 | u16 remaining 0.1 Ah, u16 full 0.1 Ah, u16 cycle capacity 0.1 Ah, u16 cycles |
//! | 0x18F228F4 ALL_TEMP | u8 sensor mask/count, T1, T2, MOS, T4, T5 (u8 -50 °C, 0 = absent) |
//! | 0x18F528F4 BMS_SW_STA | bit 0 charge FET, bit 1 discharge FET, bit 2 balancing |
//! | 0x18E028F4 + k<<16 | cells 4k+1 .. 4k+4, u16 mV each (0 = no such cell), k = 0..=7 |
//!
//! The 0x18F128F4 layout is confirmed by a capture correlated with the same pack's RS485 data
//! (full 280 Ah, 35 cycles: `tests/vectors/jk_can.json`).

use crate::battery::{AlarmLevel, Alarms};
use crate::protocol::{field, Decoded, FrameError};
use serde_json::json;

/// Pack voltage, current, SoC.
pub const BATT_ST1: u32 = 0x02F4;
/// Highest and lowest cell.
pub const CELL_VOLT: u32 = 0x04F4;
/// Highest and lowest temperature.
pub const CELL_TEMP: u32 = 0x05F4;
/// Alarm levels.
pub const ALM_INFO: u32 = 0x07F4;
/// Capacities and cycles.
pub const BATT_ST2: u32 = 0x18F1_28F4;
/// Every temperature sensor.
pub const ALL_TEMP: u32 = 0x18F2_28F4;
/// FET and balancer state.
pub const BMS_SW_STA: u32 = 0x18F5_28F4;
/// First cell frame (cells 1-4); frame k is `CELLS + (k << 16)`.
pub const CELLS: u32 = 0x18E0_28F4;
/// Cell frames (8 x 4 = 32 cells).
pub const CELL_FRAMES: u32 = 8;
/// Frames JK sends whose layout no public source documents: accepted, shown raw.
const UNDOCUMENTED: [u32; 3] = [0x18F3_28F4, 0x18F4_28F4, 0x1806_E5F4];
/// Highest DIP address.
pub const MAX_ADDRESS: u8 = 15;
/// Temperature offset: raw 50 = 0 °C.
const TEMP_OFFSET: i64 = 50;

const EXPECTED: &str = "0x02F4, 0x04F4, 0x05F4, 0x07F4, 0x18F128F4, 0x18F228F4, 0x18F528F4, 0x18E028F4.. \
                        0x18E728F4 (+ the BMS address 0..15)";

/// A frame's kind: its id at address 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A documented frame (its address-0 id).
    Frame(u32),
    /// Cell frame k (cells 4k+1 ..= 4k+4).
    Cells(u32),
    /// Sent by JK, layout unknown.
    Undocumented(u32),
}

/// The kind and BMS address of frame `id`, or a precise error for an id JK does not send.
pub fn classify(id: u32) -> Result<(Kind, u8), FrameError> {
    let documented = [BATT_ST1, CELL_VOLT, CELL_TEMP, ALM_INFO, BATT_ST2, ALL_TEMP, BMS_SW_STA];
    for address in 0..=MAX_ADDRESS {
        let Some(base) = id.checked_sub(u32::from(address)) else { break };
        if documented.contains(&base) {
            return Ok((Kind::Frame(base), address));
        }
        if UNDOCUMENTED.contains(&base) {
            return Ok((Kind::Undocumented(base), address));
        }
        if base & 0xFFF0_FFFF == CELLS & 0xFFF0_FFFF && (base >> 16 & 0xF) < CELL_FRAMES {
            return Ok((Kind::Cells(base >> 16 & 0xF), address));
        }
    }
    Err(FrameError::UnknownCanId { id, dialect: "jk_can", expected: EXPECTED })
}

/// Bytes each documented frame must carry.
fn needed(kind: Kind) -> usize {
    match kind {
        Kind::Frame(BATT_ST1) => 5,
        Kind::Frame(CELL_VOLT) => 6,
        Kind::Frame(CELL_TEMP) | Kind::Frame(ALM_INFO) => 4,
        Kind::Frame(BATT_ST2) => 8,
        Kind::Frame(ALL_TEMP) => 6,
        Kind::Frame(BMS_SW_STA) => 1,
        // A frame with the last cells of a pack may be short: at least one cell.
        Kind::Cells(_) => 2,
        Kind::Frame(_) | Kind::Undocumented(_) => 0,
    }
}

fn celsius(raw: u8) -> f64 {
    field::scale(raw.into(), TEMP_OFFSET, 1)
}

/// Decodes one frame; the address is in `extra["bms_address"]`.
pub fn decode(id: u32, data: &[u8]) -> Result<Decoded, FrameError> {
    let (kind, address) = classify(id)?;
    if data.len() > 8 {
        return Err(FrameError::LengthMismatch { declared: 8, actual: data.len() });
    }
    let need = needed(kind);
    if data.len() < need {
        return Err(FrameError::TooShort { need, got: data.len() });
    }
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let word = |i: usize| field::le_u16_at(data, i).unwrap_or(0);
    let mut d = Decoded::default();
    d.extra.insert("bms_address", json!(address));
    let b = &mut d.battery;
    match kind {
        Kind::Frame(BATT_ST1) => {
            b.voltage_v = Some(field::scale(word(0).into(), 0, 10));
            // 0.1 A with a 400 A offset: raw 4000 = 0 A.
            b.current_a = Some(field::scale(word(2).into(), 4000, 10));
            b.soc_percent = Some(f64::from(byte(4)));
            d.extra.insert("current_raw", json!(word(2)));
            if data.len() >= 7 {
                d.extra.insert("time_to_go_raw", json!(word(5)));
            }
        }
        Kind::Frame(CELL_VOLT) => {
            b.max_cell_voltage_v = Some(field::scale(word(0).into(), 0, 1000));
            b.min_cell_voltage_v = Some(field::scale(word(3).into(), 0, 1000));
            d.extra.insert("max_cell_no", json!(byte(2)));
            d.extra.insert("min_cell_no", json!(byte(5)));
        }
        Kind::Frame(CELL_TEMP) => {
            d.extra.insert("max_temp_c", json!(celsius(byte(0))));
            d.extra.insert("max_temp_sensor", json!(byte(1)));
            d.extra.insert("min_temp_c", json!(celsius(byte(2))));
            d.extra.insert("min_temp_sensor", json!(byte(3)));
        }
        Kind::Frame(ALM_INFO) => {
            let bits = field::le_u32_at(data, 0).unwrap_or(0);
            d.extra.insert("alarm_bits", json!(format!("0x{bits:08X}")));
            alarms(bits, &mut b.alarms);
        }
        Kind::Frame(BATT_ST2) => {
            b.remaining_capacity_ah = Some(field::scale(word(0).into(), 0, 10));
            b.full_capacity_ah = Some(field::scale(word(2).into(), 0, 10)).filter(|ah| *ah > 0.0);
            b.cycles = Some(word(6).into());
            d.extra.insert("cycle_capacity_ah", json!(field::scale(word(4).into(), 0, 10)));
        }
        Kind::Frame(ALL_TEMP) => {
            let present = |i: usize| Some(byte(i)).filter(|raw| *raw != 0).map(celsius);
            b.temperatures_c = Some([1, 2, 4, 5].into_iter().filter_map(present).collect());
            b.temperature_mos_c = present(3);
            d.extra.insert("sensor_byte", json!(byte(0)));
        }
        Kind::Frame(BMS_SW_STA) => {
            let bits = byte(0);
            b.charge_fet = Some(bits & 1 != 0);
            b.discharge_fet = Some(bits & 2 != 0);
            d.extra.insert("balancing", json!(bits & 4 != 0));
        }
        Kind::Cells(k) => {
            let first = 4 * k as usize + 1;
            d.extra.insert("first_cell", json!(first));
            d.extra.insert("cells_v", json!(cell_values(data)));
        }
        Kind::Frame(_) | Kind::Undocumented(_) => {
            let hex: Vec<String> = data.iter().map(|b| format!("{b:02X}")).collect();
            d.extra.insert("undocumented", json!(true));
            d.extra.insert("data_hex", json!(hex.join(" ")));
        }
    }
    Ok(d)
}

/// The cell voltages (V) of cell frame `k`: 0 mV means "no such cell" and ends the list.
pub fn cell_values(data: &[u8]) -> Vec<f64> {
    field::chunks(data)
        .map(u16::from_le_bytes)
        .take_while(|mv| *mv != 0)
        .map(|mv| field::scale(mv.into(), 0, 1000))
        .collect()
}

/// Where one alarm item goes in the model.
type Slot = fn(&mut Alarms) -> &mut Option<AlarmLevel>;

/// ALM_INFO: 2 bits per item, level 0 none, 1 warning, 2 and 3 alarm. Every item raises its
/// alarm (the incumbent overwrote the high-temperature and internal-failure slots with later
/// items, study 2.7; here the worst level wins).
fn alarms(bits: u32, a: &mut Alarms) {
    let level = |slot: u32| match bits >> (2 * slot) & 0b11 {
        0 => AlarmLevel::Ok,
        1 => AlarmLevel::Warning,
        _ => AlarmLevel::Alarm,
    };
    let targets: [&[Slot]; 11] = [
        &[|a| &mut a.high_cell_voltage],
        &[|a| &mut a.low_cell_voltage],
        &[|a| &mut a.high_voltage],
        &[|a| &mut a.low_voltage],
        &[|a| &mut a.cell_imbalance],
        &[|a| &mut a.high_discharge_current],
        &[|a| &mut a.high_charge_current],
        &[|a| &mut a.high_temperature, |a| &mut a.high_charge_temperature],
        &[|a| &mut a.low_temperature, |a| &mut a.low_charge_temperature],
        &[|a| &mut a.high_internal_temperature],
        &[|a| &mut a.low_soc],
    ];
    for (slot, fields) in (0u32..).zip(targets) {
        for target in fields {
            Alarms::raise(target(a), level(slot));
        }
    }
    // Slots 11..=14: internal failures of several kinds, one alarm.
    for slot in 11..=14 {
        Alarms::raise(&mut a.internal_failure, level(slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_taken_from_the_id() {
        assert_eq!(classify(0x02F4), Ok((Kind::Frame(BATT_ST1), 0)));
        assert_eq!(classify(0x02F7), Ok((Kind::Frame(BATT_ST1), 3)));
        assert_eq!(classify(0x18F1_28F5), Ok((Kind::Frame(BATT_ST2), 1)));
        assert_eq!(classify(0x18E3_28F4), Ok((Kind::Cells(3), 0)));
        assert_eq!(classify(0x18E7_28FF), Ok((Kind::Cells(7), 11)));
        for bad in [0x351, 0x02F3, 0x0304 + 1, 0x18E8_28F4, 0x1890_4001] {
            assert!(matches!(classify(bad), Err(FrameError::UnknownCanId { .. })), "0x{bad:X}");
        }
    }

    #[test]
    fn alarm_levels_keep_the_worst() {
        let mut a = Alarms::default();
        // Slot 7 (high temperature) warning, slot 9 (MOS high temperature) alarm, slot 12 alarm.
        alarms(0b01 << 14 | 0b10 << 18 | 0b11 << 24, &mut a);
        assert_eq!(a.high_temperature, Some(AlarmLevel::Warning));
        assert_eq!(a.high_internal_temperature, Some(AlarmLevel::Alarm));
        assert_eq!(a.internal_failure, Some(AlarmLevel::Alarm));
        assert_eq!(a.high_cell_voltage, Some(AlarmLevel::Ok));
    }

    #[test]
    fn short_frames_are_refused() {
        assert_eq!(decode(BATT_ST1, &[1, 2, 3, 4]), Err(FrameError::TooShort { need: 5, got: 4 }));
        assert_eq!(decode(BATT_ST2, &[0; 7]), Err(FrameError::TooShort { need: 8, got: 7 }));
        assert!(matches!(decode(CELLS, &[0; 9]), Err(FrameError::LengthMismatch { .. })));
    }
}
