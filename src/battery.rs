//! The normalised battery model: every driver fills a [`Battery`], every consumer reads one.
//!
//! Every field is an `Option`: `None` means "this BMS did not tell us", never zero. Units are in the
//! field names. Current is positive while charging (Victron's convention).

use std::time::Instant;

/// Victron's alarm levels, as published on `/Alarms/*` (0 ok, 1 warning, 2 alarm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum AlarmLevel {
    /// No problem.
    #[default]
    Ok = 0,
    /// Warning: the BMS is close to a limit.
    Warning = 1,
    /// Alarm: a protection tripped.
    Alarm = 2,
}

impl AlarmLevel {
    /// The Victron D-Bus value.
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

macro_rules! alarms {
    ($( $(#[$doc:meta])* $field:ident => $path:literal ),* $(,)?) => {
        /// Alarms in Victron's vocabulary. `None`: this BMS does not report that condition.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Alarms {
            $( $(#[$doc])* pub $field: Option<AlarmLevel>, )*
        }

        impl Alarms {
            /// Every alarm's D-Bus path (`/Alarms/` and its leaf), in [`Alarms::entries`] order.
            pub const PATHS: [&'static str; alarms!(@count $($field)*)] = [ $( concat!("/Alarms/", $path), )* ];

            /// Every alarm as (snake_case name, Victron path leaf, level).
            pub fn entries(&self) -> [(&'static str, &'static str, Option<AlarmLevel>); alarms!(@count $($field)*)] {
                [ $( (stringify!($field), $path, self.$field), )* ]
            }

            /// Takes every alarm that `newer` reports.
            pub fn merge(&mut self, newer: &Alarms) {
                $( if newer.$field.is_some() { self.$field = newer.$field; } )*
            }

            /// Raises every alarm to at least the level `other` reports (the worst of both).
            pub fn raise_all(&mut self, other: &Alarms) {
                $( if let Some(level) = other.$field { Self::raise(&mut self.$field, level); } )*
            }

            /// Raises `field` to at least `level` (alarms from several sources keep the worst).
            pub fn raise(slot: &mut Option<AlarmLevel>, level: AlarmLevel) {
                *slot = Some(slot.map_or(level, |old| old.max(level)));
            }
        }
    };
    (@count $($t:ident)*) => { 0 $(+ alarms!(@one $t))* };
    (@one $t:ident) => { 1 };
}

alarms! {
    /// Pack voltage too low.
    low_voltage => "LowVoltage",
    /// Pack voltage too high.
    high_voltage => "HighVoltage",
    /// A cell is below its minimum.
    low_cell_voltage => "LowCellVoltage",
    /// A cell is above its maximum.
    high_cell_voltage => "HighCellVoltage",
    /// State of charge is low.
    low_soc => "LowSoc",
    /// Charge over-current.
    high_charge_current => "HighChargeCurrent",
    /// Discharge over-current (includes short circuit).
    high_discharge_current => "HighDischargeCurrent",
    /// Cells out of balance.
    cell_imbalance => "CellImbalance",
    /// BMS internal failure (front end, MOSFET lock, EEPROM ...).
    internal_failure => "InternalFailure",
    /// Too hot to charge.
    high_charge_temperature => "HighChargeTemperature",
    /// Too cold to charge.
    low_charge_temperature => "LowChargeTemperature",
    /// Too hot (discharge / general).
    high_temperature => "HighTemperature",
    /// Too cold (discharge / general).
    low_temperature => "LowTemperature",
    /// MOSFET / internal temperature too high.
    high_internal_temperature => "HighInternalTemperature",
    /// Fuse blown.
    fuse_blown => "FuseBlown",
    /// Communication with the BMS lost (set by the daemon, not by a BMS).
    bms_cable => "BmsCable",
}

/// Labels of the lowest/highest cell and temperature sensor, e.g. `P2C5` (`/System/*Id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtremeIds {
    /// Lowest cell.
    pub min_cell: Option<String>,
    /// Highest cell.
    pub max_cell: Option<String>,
    /// Coldest sensor.
    pub min_temperature: Option<String>,
    /// Hottest sensor.
    pub max_temperature: Option<String>,
}

/// One battery as the daemon knows it. Built up from one or more decoded frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Battery {
    /// Pack voltage.
    pub voltage_v: Option<f64>,
    /// Pack current, positive = charging.
    pub current_a: Option<f64>,
    /// State of charge, 0..100.
    pub soc_percent: Option<f64>,
    /// State of health, 0..100.
    pub soh_percent: Option<f64>,
    /// Charge left in the pack.
    pub remaining_capacity_ah: Option<f64>,
    /// Capacity the pack holds when full now (learned by the BMS).
    pub full_capacity_ah: Option<f64>,
    /// Rated (design) capacity.
    pub nominal_capacity_ah: Option<f64>,
    /// Charge cycles counted by the BMS.
    pub cycles: Option<u32>,
    /// Number of series cells the BMS reports.
    pub cell_count: Option<u16>,
    /// Cell voltages, cell 1 first.
    pub cell_voltages_v: Option<Vec<f64>>,
    /// Balancing flag per cell, cell 1 first.
    pub balancing_cells: Option<Vec<bool>>,
    /// Lowest cell voltage, where the BMS reports it without the cell list (CAN).
    pub min_cell_voltage_v: Option<f64>,
    /// Highest cell voltage, where the BMS reports it without the cell list (CAN).
    pub max_cell_voltage_v: Option<f64>,
    /// Cell / pack temperature sensors.
    pub temperatures_c: Option<Vec<f64>>,
    /// MOSFET (power stage) temperature.
    pub temperature_mos_c: Option<f64>,
    /// Charge MOSFET on.
    pub charge_fet: Option<bool>,
    /// Discharge MOSFET on.
    pub discharge_fet: Option<bool>,
    /// Balancer enabled.
    pub balancer_enabled: Option<bool>,
    /// The pack heater, where the BMS has one (JK PB, the MQTT schema's heater fields).
    pub heater: Heater,
    /// Alarms in Victron's vocabulary.
    pub alarms: Alarms,
    /// Charge voltage limit the BMS asks for.
    pub charge_voltage_limit_v: Option<f64>,
    /// Charge current limit the BMS asks for.
    pub charge_current_limit_a: Option<f64>,
    /// Discharge current limit the BMS asks for.
    pub discharge_current_limit_a: Option<f64>,
    /// Lowest pack voltage the BMS allows.
    pub discharge_voltage_limit_v: Option<f64>,
    /// BMS model / hardware name.
    pub model: Option<String>,
    /// Serial number (used as the unique id where present).
    pub serial: Option<String>,
    /// Firmware (software) version text.
    pub firmware_version: Option<String>,
    /// Hardware version text.
    pub hardware_version: Option<String>,
    /// Production date, ISO `YYYY-MM-DD`.
    pub production_date: Option<String>,
    /// Modules (packs) of this battery that answered (FoxESS stacks).
    pub modules_online: Option<u32>,
    /// Configured modules that did not answer.
    pub modules_offline: Option<u32>,
    /// Modules whose BMS blocks charging (a bank of packs); else the charge FET decides.
    pub modules_blocking_charge: Option<u32>,
    /// Modules whose BMS blocks discharging (a bank of packs); else the discharge FET decides.
    pub modules_blocking_discharge: Option<u32>,
    /// Labels of the extreme cells and sensors where "C<n>" / "T<n>" is not enough (a bank of
    /// packs: "P2C5" is cell 5 of pack 2).
    pub extreme_ids: Option<ExtremeIds>,
    /// When the driver finished the reading this data comes from.
    pub read_at: Option<Instant>,
    /// Which way the BMS itself says the current flows (Daly 0x93 state), independent of the
    /// current's sign: the check of that sign (`current_sign.rs`).
    pub current_flow: Option<CurrentFlow>,
}

macro_rules! merge_fields {
    ($self:ident, $newer:ident; $($field:ident),*) => {
        $( if $newer.$field.is_some() { $self.$field = $newer.$field.clone(); } )*
    };
}

/// A pack heater as the BMS reports it; every field `None` where the BMS has none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heater {
    /// The heater is heating now (`/Heating`).
    pub heating: Option<bool>,
    /// The BMS lets the heater run (its heater switch or MOSFET; `/Io/AllowToHeat`).
    pub enabled: Option<bool>,
    /// Heater current, A.
    pub current_a: Option<f64>,
    /// Heater power, W.
    pub power_w: Option<f64>,
    /// The temperature below which it starts heating, °C.
    pub start_c: Option<f64>,
    /// The temperature at which it stops heating, °C.
    pub stop_c: Option<f64>,
}

impl Heater {
    /// Takes every value `newer` carries (as [`Battery::merge`]).
    pub fn merge(&mut self, newer: &Heater) {
        merge_fields!(self, newer; heating, enabled, current_a, power_w, start_c, stop_c);
    }
}

/// A BMS's own statement of the current's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentFlow {
    /// Neither charging nor discharging.
    Idle,
    /// Charging.
    Charging,
    /// Discharging.
    Discharging,
}

impl Battery {
    /// Takes every value that `newer` carries, keeping ours where it has none. A poll cycle reads
    /// several frames (basic info, cells, name); each decodes into a partial `Battery`.
    pub fn merge(&mut self, newer: &Battery) {
        merge_fields!(self, newer; voltage_v, current_a, soc_percent, soh_percent,
            remaining_capacity_ah, full_capacity_ah, nominal_capacity_ah, cycles, cell_count,
            cell_voltages_v, balancing_cells, min_cell_voltage_v, max_cell_voltage_v,
            temperatures_c, temperature_mos_c, charge_fet, discharge_fet, balancer_enabled,
            charge_voltage_limit_v, charge_current_limit_a, discharge_current_limit_a,
            discharge_voltage_limit_v, model, serial, firmware_version, hardware_version,
            production_date, modules_online, modules_offline, modules_blocking_charge,
            modules_blocking_discharge, extreme_ids, read_at, current_flow);
        self.alarms.merge(&newer.alarms);
        self.heater.merge(&newer.heater);
    }

    /// Lowest cell: (1-based cell number, volts). From the cell list, else the BMS summary.
    pub fn min_cell(&self) -> Option<(Option<usize>, f64)> {
        self.extreme_cell(|a, b| a < b).or_else(|| self.min_cell_voltage_v.map(|v| (None, v)))
    }

    /// Highest cell: (1-based cell number, volts). From the cell list, else the BMS summary.
    pub fn max_cell(&self) -> Option<(Option<usize>, f64)> {
        self.extreme_cell(|a, b| a > b).or_else(|| self.max_cell_voltage_v.map(|v| (None, v)))
    }

    fn extreme_cell(&self, better: impl Fn(f64, f64) -> bool) -> Option<(Option<usize>, f64)> {
        let cells = self.cell_voltages_v.as_ref()?;
        let mut best: Option<(usize, f64)> = None;
        for (index, &volts) in cells.iter().enumerate() {
            if best.is_none_or(|(_, b)| better(volts, b)) {
                best = Some((index, volts));
            }
        }
        best.map(|(index, volts)| (Some(index + 1), volts))
    }

    /// Series cell count: what the BMS says, else the length of the cell list.
    pub fn cells_in_series(&self) -> Option<u16> {
        self.cell_count.or_else(|| {
            self.cell_voltages_v.as_ref().and_then(|cells| u16::try_from(cells.len()).ok()).filter(|&n| n > 0)
        })
    }

    /// Pack power, V x I, positive while charging.
    pub fn power_w(&self) -> Option<f64> {
        Some(self.voltage_v? * self.current_a?)
    }

    /// Lowest and highest temperature sensor: ((1-based sensor, °C), (1-based sensor, °C)).
    pub fn temperature_extremes(&self) -> Option<((usize, f64), (usize, f64))> {
        let temps = self.temperatures_c.as_ref()?;
        let mut iter = temps.iter().copied().enumerate();
        let (first_index, first) = iter.next()?;
        let mut low = (first_index + 1, first);
        let mut high = low;
        for (index, t) in iter {
            if t < low.1 {
                low = (index + 1, t);
            }
            if t > high.1 {
                high = (index + 1, t);
            }
        }
        Some((low, high))
    }

    /// The 1-based numbers of the cells that are balancing now.
    pub fn balancing_cell_numbers(&self) -> Option<Vec<usize>> {
        let flags = self.balancing_cells.as_ref()?;
        Some(flags.iter().enumerate().filter(|(_, on)| **on).map(|(i, _)| i + 1).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_old_values_where_the_new_frame_has_none() {
        let mut battery = Battery { voltage_v: Some(52.1), soc_percent: Some(80.0), ..Default::default() };
        let cells =
            Battery { cell_voltages_v: Some(vec![3.3, 3.31]), soc_percent: Some(81.0), ..Default::default() };
        battery.merge(&cells);
        assert_eq!(battery.voltage_v, Some(52.1));
        assert_eq!(battery.soc_percent, Some(81.0));
        assert_eq!(battery.cell_voltages_v, Some(vec![3.3, 3.31]));
    }

    #[test]
    fn min_and_max_cell_come_with_their_numbers() {
        let battery = Battery { cell_voltages_v: Some(vec![3.30, 3.28, 3.35, 3.31]), ..Default::default() };
        assert_eq!(battery.min_cell(), Some((Some(2), 3.28)));
        assert_eq!(battery.max_cell(), Some((Some(3), 3.35)));
        assert_eq!(battery.cells_in_series(), Some(4));
    }

    #[test]
    fn summary_cells_are_used_without_a_cell_list() {
        let battery =
            Battery { min_cell_voltage_v: Some(3.2), max_cell_voltage_v: Some(3.3), ..Default::default() };
        assert_eq!(battery.min_cell(), Some((None, 3.2)));
        assert_eq!(battery.max_cell(), Some((None, 3.3)));
    }

    #[test]
    fn raise_keeps_the_worst_level() {
        let mut slot = Some(AlarmLevel::Alarm);
        Alarms::raise(&mut slot, AlarmLevel::Warning);
        assert_eq!(slot, Some(AlarmLevel::Alarm));
        let mut empty = None;
        Alarms::raise(&mut empty, AlarmLevel::Warning);
        assert_eq!(empty, Some(AlarmLevel::Warning));
    }
}
