//! Checks a BMS reading before charge control sees it (`docs/safety.md`).
//!
//! A decoder tells what the bytes say; this step decides whether the reading can be believed. A
//! reading that fails is not used at all: no new CVL is computed from it, the last good reading
//! ages as if the BMS were silent (so CCL drops to 0 after the grace period), and the battery
//! shows an internal-failure alarm until a good reading arrives. Values a BMS uses for "not
//! reported" (0xFFFF, 0x7FFF in its own units) are removed, not rejected. Pure: no clock, no I/O.

use crate::battery::Battery;
use std::fmt;

/// Lowest and highest cell voltage a working cell of any lithium chemistry can show (V). Outside
/// it the number is a broken sense lead or a decoding fault, not a cell.
pub const CELL_VOLTAGE_V: (f64, f64) = (0.5, 5.0);
/// Plausible temperature sensor range (°C).
pub const TEMPERATURE_C: (f64, f64) = (-40.0, 120.0);
/// Plausible state of charge (%).
pub const SOC_PERCENT: (f64, f64) = (0.0, 100.0);
/// The largest BMS-reported charge voltage limit taken as a real value (V).
pub const MAX_BMS_VOLTAGE_LIMIT_V: f64 = 1000.0;
/// The largest BMS-reported current limit taken as a real value (A).
pub const MAX_BMS_CURRENT_LIMIT_A: f64 = 10_000.0;

/// Why a reading was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum Implausible {
    /// The BMS reports another series cell count than configured (or than first seen).
    CellCount {
        /// The count in force (config, or the first reading's).
        expected: u16,
        /// The count in this reading.
        reported: u16,
    },
    /// The reading has no cell voltage at all (an empty cell list, or cell count 0).
    NoCells,
    /// A cell voltage outside [`CELL_VOLTAGE_V`] (1-based cell number, `None` for min/max only).
    CellVoltage {
        /// Cell number.
        cell: Option<usize>,
        /// Volts reported.
        volts: f64,
    },
    /// A temperature outside [`TEMPERATURE_C`] (1-based sensor number, `None` for the MOSFET).
    Temperature {
        /// Sensor number.
        sensor: Option<usize>,
        /// °C reported.
        celsius: f64,
    },
    /// A state of charge outside [`SOC_PERCENT`].
    Soc(f64),
    /// A pack voltage or current that is not a number.
    NotANumber(&'static str),
}

impl fmt::Display for Implausible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Implausible::CellCount { expected, reported } => write!(
                f,
                "the BMS reports {reported} cells in series, {expected} expected (set cell_count in \
                 [[port.battery]] if the pack really changed)"
            ),
            Implausible::NoCells => write!(f, "the reading has no cell voltages"),
            Implausible::CellVoltage { cell: Some(n), volts } => {
                write!(
                    f,
                    "cell {n} at {volts:.3} V is outside {} to {} V",
                    CELL_VOLTAGE_V.0, CELL_VOLTAGE_V.1
                )
            }
            Implausible::CellVoltage { cell: None, volts } => {
                write!(f, "a cell at {volts:.3} V is outside {} to {} V", CELL_VOLTAGE_V.0, CELL_VOLTAGE_V.1)
            }
            Implausible::Temperature { sensor: Some(n), celsius } => write!(
                f,
                "temperature sensor {n} at {celsius:.1} °C is outside {} to {} °C",
                TEMPERATURE_C.0, TEMPERATURE_C.1
            ),
            Implausible::Temperature { sensor: None, celsius } => write!(
                f,
                "MOSFET temperature {celsius:.1} °C is outside {} to {} °C",
                TEMPERATURE_C.0, TEMPERATURE_C.1
            ),
            Implausible::Soc(soc) => write!(f, "state of charge {soc:.1} % is outside 0 to 100 %"),
            Implausible::NotANumber(what) => write!(f, "{what} is not a number"),
        }
    }
}

fn inside(value: f64, (lo, hi): (f64, f64)) -> bool {
    value.is_finite() && (lo..=hi).contains(&value)
}

/// "Not reported" encodings of BMS limits, as the decoders scale them: 0xFFFF and 0x7FFF in 0.1
/// and 0.01 units (UP16S, CAN 0x351), and non-numbers. Anything beyond `max` is no limit either.
fn reported_limit(value: Option<f64>, max: f64) -> Option<f64> {
    const SENTINELS: [f64; 6] = [6553.5, 655.35, 3276.7, 327.67, 65535.0, 32767.0];
    value.filter(|v| v.is_finite() && *v >= 0.0 && *v <= max && !SENTINELS.contains(v))
}

/// Removes "not reported" BMS limits from `reading` (they are absent, not limits).
pub fn drop_unreported_limits(reading: &mut Battery) {
    reading.charge_voltage_limit_v = reported_limit(reading.charge_voltage_limit_v, MAX_BMS_VOLTAGE_LIMIT_V);
    reading.discharge_voltage_limit_v =
        reported_limit(reading.discharge_voltage_limit_v, MAX_BMS_VOLTAGE_LIMIT_V);
    reading.charge_current_limit_a = reported_limit(reading.charge_current_limit_a, MAX_BMS_CURRENT_LIMIT_A);
    reading.discharge_current_limit_a =
        reported_limit(reading.discharge_current_limit_a, MAX_BMS_CURRENT_LIMIT_A);
}

/// Whether `reading` can be believed, given the series cell count in force (`expected`: the
/// configured one, else the first one seen). The first problem found is returned.
pub fn check(reading: &Battery, expected: Option<u16>) -> Result<(), Implausible> {
    if reading.cell_count == Some(0) || reading.cell_voltages_v.as_ref().is_some_and(Vec::is_empty) {
        return Err(Implausible::NoCells);
    }
    let has_cells = reading.cell_voltages_v.is_some()
        || reading.min_cell_voltage_v.is_some()
        || reading.max_cell_voltage_v.is_some();
    if !has_cells {
        return Err(Implausible::NoCells);
    }
    if let (Some(expected), Some(reported)) = (expected, reading.cells_in_series()) {
        if expected != reported {
            return Err(Implausible::CellCount { expected, reported });
        }
    }
    if let Some(cells) = &reading.cell_voltages_v {
        if let Some((index, &volts)) = cells.iter().enumerate().find(|(_, v)| !inside(**v, CELL_VOLTAGE_V)) {
            return Err(Implausible::CellVoltage { cell: Some(index + 1), volts });
        }
    }
    for volts in [reading.min_cell_voltage_v, reading.max_cell_voltage_v].into_iter().flatten() {
        if !inside(volts, CELL_VOLTAGE_V) {
            return Err(Implausible::CellVoltage { cell: None, volts });
        }
    }
    if let Some(temps) = &reading.temperatures_c {
        if let Some((index, &celsius)) = temps.iter().enumerate().find(|(_, t)| !inside(**t, TEMPERATURE_C)) {
            return Err(Implausible::Temperature { sensor: Some(index + 1), celsius });
        }
    }
    if let Some(celsius) = reading.temperature_mos_c.filter(|t| !inside(*t, TEMPERATURE_C)) {
        return Err(Implausible::Temperature { sensor: None, celsius });
    }
    if let Some(soc) = reading.soc_percent.filter(|s| !inside(*s, SOC_PERCENT)) {
        return Err(Implausible::Soc(soc));
    }
    if reading.voltage_v.is_some_and(|v| !v.is_finite()) {
        return Err(Implausible::NotANumber("the pack voltage"));
    }
    if reading.current_a.is_some_and(|a| !a.is_finite()) {
        return Err(Implausible::NotANumber("the current"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Battery {
        Battery {
            voltage_v: Some(53.0),
            current_a: Some(-4.0),
            soc_percent: Some(60.0),
            cell_voltages_v: Some(vec![3.31; 16]),
            temperatures_c: Some(vec![21.0, 22.5]),
            temperature_mos_c: Some(30.0),
            ..Battery::default()
        }
    }

    #[test]
    fn a_good_reading_passes_with_or_without_an_expected_count() {
        assert_eq!(check(&good(), None), Ok(()));
        assert_eq!(check(&good(), Some(16)), Ok(()));
    }

    #[test]
    fn the_cell_count_in_force_wins_over_the_bms() {
        let more = Battery { cell_voltages_v: Some(vec![3.31; 24]), ..good() };
        assert_eq!(check(&more, Some(16)), Err(Implausible::CellCount { expected: 16, reported: 24 }));
        let said = Battery { cell_count: Some(24), ..good() };
        assert_eq!(check(&said, Some(16)), Err(Implausible::CellCount { expected: 16, reported: 24 }));
    }

    #[test]
    fn no_cells_is_a_bad_reading() {
        let empty = Battery { cell_voltages_v: Some(vec![]), ..good() };
        assert_eq!(check(&empty, None), Err(Implausible::NoCells));
        let zero = Battery { cell_count: Some(0), ..good() };
        assert_eq!(check(&zero, None), Err(Implausible::NoCells));
        let none = Battery { cell_voltages_v: None, ..good() };
        assert_eq!(check(&none, None), Err(Implausible::NoCells));
        let min_max = Battery { cell_voltages_v: None, min_cell_voltage_v: Some(3.3), ..good() };
        assert_eq!(check(&min_max, None), Ok(()), "min/max only (CAN 0x373) is a reading");
    }

    #[test]
    fn values_outside_physics_are_rejected_at_the_boundaries() {
        let cells = |v: f64| {
            let mut c = vec![3.3; 16];
            c[4] = v;
            Battery { cell_voltages_v: Some(c), ..good() }
        };
        assert_eq!(check(&cells(0.5), None), Ok(()));
        assert_eq!(check(&cells(5.0), None), Ok(()));
        assert_eq!(check(&cells(0.49), None), Err(Implausible::CellVoltage { cell: Some(5), volts: 0.49 }));
        assert_eq!(check(&cells(5.01), None), Err(Implausible::CellVoltage { cell: Some(5), volts: 5.01 }));
        assert!(check(&cells(f64::NAN), None).is_err());
        let t = |c: f64| Battery { temperatures_c: Some(vec![20.0, c]), ..good() };
        assert_eq!(check(&t(-40.0), None), Ok(()));
        assert_eq!(check(&t(120.0), None), Ok(()));
        assert_eq!(check(&t(-40.1), None), Err(Implausible::Temperature { sensor: Some(2), celsius: -40.1 }));
        assert_eq!(check(&t(120.1), None), Err(Implausible::Temperature { sensor: Some(2), celsius: 120.1 }));
        let mos = Battery { temperature_mos_c: Some(-273.1), ..good() };
        assert!(matches!(check(&mos, None), Err(Implausible::Temperature { sensor: None, .. })));
        assert_eq!(check(&Battery { soc_percent: Some(100.0), ..good() }, None), Ok(()));
        assert_eq!(
            check(&Battery { soc_percent: Some(100.5), ..good() }, None),
            Err(Implausible::Soc(100.5))
        );
        assert_eq!(check(&Battery { soc_percent: Some(-1.0), ..good() }, None), Err(Implausible::Soc(-1.0)));
        let max = Battery { max_cell_voltage_v: Some(6553.5), ..good() };
        assert!(check(&max, None).is_err());
    }

    #[test]
    fn not_reported_limits_are_removed_and_real_ones_kept() {
        let mut b = Battery {
            charge_voltage_limit_v: Some(6553.5),
            charge_current_limit_a: Some(3276.7),
            discharge_current_limit_a: Some(f64::NAN),
            discharge_voltage_limit_v: Some(48.0),
            ..good()
        };
        drop_unreported_limits(&mut b);
        assert_eq!(b.charge_voltage_limit_v, None);
        assert_eq!(b.charge_current_limit_a, None);
        assert_eq!(b.discharge_current_limit_a, None);
        assert_eq!(b.discharge_voltage_limit_v, Some(48.0));
        let mut real =
            Battery { charge_voltage_limit_v: Some(55.2), charge_current_limit_a: Some(100.0), ..good() };
        drop_unreported_limits(&mut real);
        assert_eq!(real.charge_voltage_limit_v, Some(55.2));
        assert_eq!(real.charge_current_limit_a, Some(100.0));
    }
}
