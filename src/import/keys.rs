//! dbus-serialbattery's config keys: their defaults (`config.default.ini`, as studied in
//! `docs/reference/incumbent-study.md` §5) and, for the keys bms-bridge has no equivalent
//! for, why.

/// `(key, default)`: used when no `config.default.ini` is given or found.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("LOGGING", "INFO"),
    ("MAX_BATTERY_CHARGE_CURRENT", "50.0"),
    ("MAX_BATTERY_DISCHARGE_CURRENT", "60.0"),
    ("MIN_CELL_VOLTAGE", "2.900"),
    ("MAX_CELL_VOLTAGE", "3.450"),
    ("FLOAT_CELL_VOLTAGE", "3.375"),
    ("SOC_RESET_CELL_VOLTAGE", "3.650"),
    ("SOC_RESET_AFTER_DAYS", ""),
    ("SOC_CALCULATION", "False"),
    ("CURRENT_REPORTED_BY_BMS", "-300, 300"),
    ("CURRENT_MEASURED_BY_USER", "-300, 300"),
    ("BLOCK_ON_DISCONNECT", "False"),
    ("BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES", "30"),
    ("BLOCK_ON_DISCONNECT_VOLTAGE_MIN", "3.225"),
    ("BLOCK_ON_DISCONNECT_VOLTAGE_MAX", "3.375"),
    ("CHARGE_MODE", "1"),
    ("CVL_RECOVERY_HOLD_SEC", "60"),
    ("CVL_RECOVERY_RATE_V_PER_SEC", "0.001"),
    ("CVCM_ENABLE", "True"),
    ("SWITCH_TO_FLOAT_WAIT_FOR_SEC", "900"),
    ("SWITCH_TO_FLOAT_CELL_VOLTAGE_DIFF", "0.010"),
    ("SWITCH_TO_FLOAT_CELL_VOLTAGE_DEVIATION", "0.003"),
    ("SWITCH_TO_BULK_SOC_THRESHOLD", "80"),
    ("SWITCH_TO_BULK_CELL_VOLTAGE_DIFF", "0.080"),
    ("CVL_CONTROLLER_MODE", "1"),
    ("CVL_ICONTROLLER_FACTOR", "0.2"),
    ("CCCM_CV_ENABLE", "True"),
    ("DCCM_CV_ENABLE", "True"),
    ("CELL_VOLTAGES_WHILE_CHARGING", "3.500, 3.450, 3.425, 3.400, 3.375"),
    ("MAX_CHARGE_CURRENT_CV_FRACTION", "0.000, 0.005, 0.050, 0.250, 1.000"),
    ("CELL_VOLTAGES_WHILE_DISCHARGING", "2.800, 2.900, 3.000, 3.100, 3.190"),
    ("MAX_DISCHARGE_CURRENT_CV_FRACTION", "0.000, 0.005, 0.050, 0.250, 1.000"),
    ("CCCM_T_ENABLE", "True"),
    ("DCCM_T_ENABLE", "True"),
    ("TEMPERATURES_WHILE_CHARGING", "0, 2, 5, 10, 40, 45, 50, 55"),
    ("MAX_CHARGE_CURRENT_T_FRACTION", "0, 0.25, 0.5, 1, 1, 0.5, 0.25, 0"),
    ("TEMPERATURES_WHILE_DISCHARGING", "-10, 0, 5, 10, 40, 45, 50, 55"),
    ("MAX_DISCHARGE_CURRENT_T_FRACTION", "0, 0.25, 0.5, 1, 1, 0.5, 0.25, 0"),
    ("CCCM_T_MOSFET_ENABLE", "True"),
    ("DCCM_T_MOSFET_ENABLE", "True"),
    ("MOSFET_TEMPERATURES_WHILE_CHARGING", "70, 80, 90"),
    ("MAX_CHARGE_CURRENT_T_MOSFET_FRACTION", "1.00, 0.25, 0.00"),
    ("MOSFET_TEMPERATURES_WHILE_DISCHARGING", "70, 80, 90"),
    ("MAX_DISCHARGE_CURRENT_T_MOSFET_FRACTION", "1.00, 0.25, 0.00"),
    ("CCCM_SOC_ENABLE", "False"),
    ("DCCM_SOC_ENABLE", "False"),
    ("SOC_WHILE_CHARGING", "98, 95, 90, 85"),
    ("MAX_CHARGE_CURRENT_SOC_FRACTION", "0.10, 0.20, 0.50, 1.00"),
    ("SOC_WHILE_DISCHARGING", "5, 10, 15, 20"),
    ("MAX_DISCHARGE_CURRENT_SOC_FRACTION", "0.10, 0.20, 0.50, 1.00"),
    ("CHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT", "0.015"),
    ("DISCHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT", "0.015"),
    ("CCL_RECOVERY_HOLD_SEC", "30"),
    ("DCL_RECOVERY_HOLD_SEC", "30"),
    ("CCL_RECOVERY_RATE_A_PER_SEC", "5"),
    ("DCL_RECOVERY_RATE_A_PER_SEC", "5"),
    ("BMS_TYPE", ""),
    ("BATTERY_ADDRESSES", ""),
    ("POLL_INTERVAL", ""),
    ("BATTERY_CAPACITY", "99"),
    ("SOC_LOW_WARNING", "20"),
    ("INVERT_CURRENT_MEASUREMENT", "1"),
    ("TELEMETRY", "True"),
];

/// Why a key has no bms-bridge equivalent; `None` for keys the importer maps (or does not know).
pub fn unmapped_reason(key: &str) -> Option<&'static str> {
    let prefixed = |p: &str| key.starts_with(p);
    Some(match key {
        "LOGGING" => "not a config key in bms-bridge: use --log-level (on Venus OS: /data/bms-bridge/log-level)",
        "SOC_RESET_CELL_VOLTAGE" => {
            "bms-bridge never charges cells above max_cell_voltage; full_charge_every_days forces a regular full charge to it instead"
        }
        "CURRENT_REPORTED_BY_BMS" | "CURRENT_MEASURED_BY_USER" => {
            "no current correction map in bms-bridge (only invert_current); calibrate the BMS's current sensor instead"
        }
        "BLOCK_ON_DISCONNECT" => {
            "bms-bridge never exits on BMS loss: CCL goes to 0 and CVL to float at once, DCL after lost_discharge_timeout_s (docs/charge-control.md)"
        }
        "BLOCK_ON_DISCONNECT_VOLTAGE_MAX" => "not needed: CCL is 0 as soon as the BMS is lost",
        "BMS_CABLE_ALARM" => "always on: /Alarms/BmsCable = 2 while the BMS is lost",
        "CVCM_ENABLE" => "bms-bridge always manages CVL (bulk, absorption, float); set max and float voltages to taste",
        "CVL_CONTROLLER_MODE" | "CVL_ICONTROLLER_FACTOR" => {
            "bms-bridge has one cell over-voltage controller whose gain is per second, not per poll (cvl_controller_gain_per_s); its default is kept"
        }
        "CVL_RECALCULATION_EVERY" | "CVL_RECALCULATION_ON_MAX_PERCENTAGE_CHANGE" => {
            "bms-bridge recalculates every poll: cuts apply at once, rises wait current_recovery_hold_s"
        }
        "CCCM_CV_ENABLE" | "DCCM_CV_ENABLE" | "CCCM_T_ENABLE" | "DCCM_T_ENABLE" | "CCCM_T_MOSFET_ENABLE"
        | "DCCM_T_MOSFET_ENABLE" => {
            "cell-voltage and temperature limits are always on in bms-bridge (safety); flatten the table ([[x, 1.0]]) to neutralise one"
        }
        "MOSFET_TEMPERATURES_WHILE_DISCHARGING" | "MAX_DISCHARGE_CURRENT_T_MOSFET_FRACTION" => {
            "bms-bridge has one MOSFET table for CCL and DCL (mosfet_temperature_table, from the charging one)"
        }
        "DISCHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT" | "DCL_RECOVERY_HOLD_SEC" | "DCL_RECOVERY_RATE_A_PER_SEC" => {
            "bms-bridge uses one recovery setting for CCL and DCL (from the CCL/charge key)"
        }
        "BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES" | "BLOCK_ON_DISCONNECT_VOLTAGE_MIN" => return None,
        "TIME_TO_GO_ENABLE" => "/TimeToGo is always published",
        "SOC_LOW_ALARM" => "no software low-SoC alarm; the BMS's own alarms are published",
        "EXCLUDED_DEVICES" => "bms-bridge polls only the ports listed in its config (and keeps serial-starter off them)",
        "SERIAL_STARTER_ENABLED" => "bms-bridge runs as its own service, not under serial-starter",
        "USE_PORT_AS_UNIQUE_ID" => "the unique id is the BMS serial, else protocol and port (docs/dbus.md)",
        "AUTO_RESET_SOC" => "bms-bridge never writes to a BMS",
        "USE_BMS_DVCC_VALUES" => "limits always come from bms-bridge's charge control",
        "TELEMETRY" => "bms-bridge sends no telemetry",
        "HISTORY_ENABLE" => "history is always kept",
        "VOLTAGE_DROP" => "no cable-drop compensation; DVCC's own voltage sense does it better",
        "MIDPOINT_ENABLE" => "no simulated midpoint",
        "BATTERY_CELL_DATA_FORMAT" => "cells are always published as /Voltages/CellN and /Balances/CellN",
        "TEMPERATURE_SOURCE_BATTERY" => "all sensors are used: /Dc/0/Temperature is their mean, limits use the coldest and hottest",
        "UP16S_REQUIRE_DIRECT_CONNECTION" => "UP-series packs are polled by address on a shared bus",
        "CAN_PORT" => "CAN is not configured here (see docs for CAN support)",
        _ if prefixed("TEMPERATURE_") && (key.ends_with("_NAME") || key.ends_with("_ADJUST")) => {
            "no temperature names or offsets; sensors are T1..Tn as the BMS reports them"
        }
        _ if prefixed("TIME_TO_SOC") => "no /TimeToSoC paths (only /TimeToGo)",
        _ if prefixed("BLUETOOTH_") => "no Bluetooth BMS support",
        _ if prefixed("MQTT_") => "no MQTT ingest",
        _ if prefixed("EXTERNAL_SENSOR_") => "no external current/SoC sensor: Venus' own battery monitor selection covers it",
        _ if prefixed("GUI_") => "bms-bridge does not modify the Venus GUI",
        _ if prefixed("PUBLISH_") => "no /Info/Config or /JsonData paths",
        _ if prefixed("BMS_CAPTURE_RAW_DATA") => "no raw capture (use --log-level debug)",
        _ if prefixed("LIPRO_") || prefixed("GREENMETER_") || prefixed("UBMS_") => "BMS not supported by bms-bridge",
        _ => return None,
    })
}

/// bms-bridge protocol for a dbus-serialbattery BMS class name (each spec lists the classes it
/// replaces, `bms::Spec::serialbattery_classes`).
pub fn protocol_for_class(class: &str) -> Option<&'static str> {
    crate::bms::Protocol::for_serialbattery_class(class).map(|p| p.name())
}
