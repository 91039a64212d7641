//! Frames a BMS of this dialect broadcasts, built from a [`Battery`] (for the simulator and
//! tests). Standard layout and scales, 8 bytes each.

use super::{
    ALARMS, CELLS, INSTALLED_CAPACITY, LIMITS, MANUFACTURER, MEASUREMENTS, MODULES, REQUESTS, SERIAL_1,
    SERIAL_2, SOC,
};
use crate::battery::{AlarmLevel, Battery};

fn words(values: [u16; 4]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn scaled(value: Option<f64>, factor: f64) -> u16 {
    // Saturating float-to-int casts; the wire holds two's complement for signed fields.
    value.map_or(0, |v| {
        let raw = (v * factor).round();
        if raw < 0.0 {
            (raw as i16) as u16
        } else {
            raw as u16
        }
    })
}

fn pair(level: Option<AlarmLevel>) -> (u8, u8) {
    match level {
        None => (0b00, 0b00),
        Some(AlarmLevel::Ok) => (0b10, 0b10),
        Some(AlarmLevel::Warning) => (0b10, 0b01),
        Some(AlarmLevel::Alarm) => (0b01, 0b10),
    }
}

/// The 8 data bytes of frame `id` for `b`, or `None` for ids this encoder does not build.
pub fn frame(id: u32, b: &Battery) -> Option<Vec<u8>> {
    Some(match id {
        LIMITS => words([
            scaled(b.charge_voltage_limit_v, 10.0),
            scaled(b.charge_current_limit_a, 10.0),
            scaled(b.discharge_current_limit_a, 10.0),
            scaled(b.discharge_voltage_limit_v, 10.0),
        ]),
        SOC => {
            words([scaled(b.soc_percent, 1.0), scaled(b.soh_percent, 1.0), scaled(b.soc_percent, 100.0), 0])
        }
        MEASUREMENTS => words([
            scaled(b.voltage_v, 100.0),
            scaled(b.current_a, 10.0),
            scaled(b.temperatures_c.as_ref().and_then(|t| t.first().copied()), 10.0),
            0,
        ]),
        ALARMS => {
            let a = &b.alarms;
            let items = [
                None,
                a.high_voltage,
                a.low_voltage,
                a.high_temperature,
                a.low_temperature,
                a.high_charge_temperature,
                a.low_charge_temperature,
                a.high_discharge_current,
                a.high_charge_current,
                None,
                None,
                a.internal_failure,
                a.cell_imbalance,
            ];
            // Four 2-bit items a byte: the alarm slots in bytes 0-3, the warnings in bytes 4-7.
            let mut out = [0u8; 8];
            for (item, level) in items.iter().enumerate() {
                let (alarm, warning) = pair(*level);
                let shift = (item % 4) * 2;
                if let Some(byte) = out.get_mut(item / 4) {
                    *byte |= alarm << shift;
                }
                if let Some(byte) = out.get_mut(4 + item / 4) {
                    *byte |= warning << shift;
                }
            }
            out.to_vec()
        }
        REQUESTS => {
            let mut flags = 0u8;
            if b.charge_fet != Some(false) {
                flags |= 0x80;
            }
            if b.discharge_fet != Some(false) {
                flags |= 0x40;
            }
            vec![flags, 0, 0, 0, 0, 0, 0, 0]
        }
        MANUFACTURER => {
            let mut out: Vec<u8> = b.model.as_deref().unwrap_or("").bytes().take(8).collect();
            out.resize(8, b' ');
            out
        }
        MODULES => words([b.modules_online.unwrap_or(1) as u16, 0, 0, b.modules_offline.unwrap_or(0) as u16]),
        CELLS => {
            let (lo_t, hi_t) = match b.temperature_extremes() {
                Some(((_, lo), (_, hi))) => (lo, hi),
                None => (25.0, 25.0),
            };
            words([
                scaled(b.min_cell().map(|(_, v)| v), 1000.0),
                scaled(b.max_cell().map(|(_, v)| v), 1000.0),
                scaled(Some(lo_t + 273.15), 1.0),
                scaled(Some(hi_t + 273.15), 1.0),
            ])
        }
        INSTALLED_CAPACITY => words([scaled(b.nominal_capacity_ah, 1.0), 0, 0, 0]),
        // JBD's extension: the serial in two halves, only when there is one.
        SERIAL_1 | SERIAL_2 => {
            let serial = b.serial.as_deref()?;
            let skip = if id == SERIAL_1 { 0 } else { 8 };
            let mut out: Vec<u8> = serial.bytes().skip(skip).take(8).collect();
            out.resize(8, 0);
            out
        }
        _ => return None,
    })
}

/// Every frame a full broadcast cycle sends, in the order a BMS sends them.
pub fn cycle(b: &Battery) -> Vec<(u32, Vec<u8>)> {
    [
        LIMITS,
        SOC,
        MEASUREMENTS,
        ALARMS,
        REQUESTS,
        MANUFACTURER,
        MODULES,
        CELLS,
        INSTALLED_CAPACITY,
        SERIAL_1,
        SERIAL_2,
    ]
    .iter()
    .filter_map(|&id| frame(id, b).map(|data| (id, data)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{assemble, Options};
    use super::*;
    use crate::battery::Alarms;

    #[test]
    fn a_cycle_decodes_back() {
        let b = Battery {
            voltage_v: Some(53.12),
            current_a: Some(-12.3),
            soc_percent: Some(77.0),
            soh_percent: Some(99.0),
            cell_voltages_v: Some(vec![3.31, 3.33, 3.32]),
            temperatures_c: Some(vec![21.0, 24.0]),
            charge_voltage_limit_v: Some(55.2),
            charge_current_limit_a: Some(100.0),
            discharge_current_limit_a: Some(150.0),
            discharge_voltage_limit_v: Some(48.0),
            nominal_capacity_ah: Some(280.0),
            charge_fet: Some(false),
            model: Some("SIMCAN".into()),
            alarms: Alarms { high_voltage: Some(AlarmLevel::Warning), ..Alarms::default() },
            ..Battery::default()
        };
        let frames = cycle(&b);
        let refs: Vec<(u32, &[u8])> = frames.iter().map(|(id, d)| (*id, d.as_slice())).collect();
        let back = assemble(&refs, &Options::default());
        assert_eq!(back.voltage_v, Some(53.12));
        assert_eq!(back.current_a, Some(-12.3));
        assert_eq!(back.soc_percent, Some(77.0));
        assert_eq!(back.min_cell_voltage_v, Some(3.31));
        assert_eq!(back.max_cell_voltage_v, Some(3.33));
        // 0x373 carries whole kelvins.
        assert_eq!(back.temperatures_c, Some(vec![20.85, 23.85]));
        assert_eq!(back.charge_current_limit_a, Some(100.0));
        assert_eq!(back.charge_fet, Some(false));
        assert_eq!(back.discharge_fet, Some(true));
        assert_eq!(back.model.as_deref(), Some("SIMCAN"));
        assert_eq!(back.nominal_capacity_ah, Some(280.0));
        assert_eq!(back.alarms.high_voltage, Some(AlarmLevel::Warning));
        assert_eq!(back.alarms.low_voltage, None);
        assert_eq!(back.cell_voltages_v, None, "no per-cell values on this dialect");
    }
}
