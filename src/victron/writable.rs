//! The writable `/Settings/*` paths (`docs/dbus.md` "Writable paths"): present only when the
//! battery's config allows writes (`allow_writes = true`) and its protocol offers them, fixed at
//! registration. An accepted write becomes a [`BmsCommand`] for the port's poll loop; the paths
//! show what was requested, the real FET state keeps coming from the BMS (`/Io/AllowToCharge`).

pub use super::paths::HISTORY_CLEAR;
use super::paths::{Item, Items, CUSTOM_NAME};
use super::set_value::Refused;
use super::value::{Unit, Value};
use crate::protocol::writes::{BmsCommand, WriteSupport};
use tokio::sync::mpsc;
use zbus::zvariant;

/// 1 while the service offers any setting (the GUI then shows the settings page). Read-only.
pub const HAS_SETTINGS: &str = "/Settings/HasSettings";
/// 0/1: 1 forces the charge MOSFET off.
pub const FORCE_CHARGING_OFF: &str = "/Settings/ForceChargingOff";
/// 0/1: 1 forces the discharge MOSFET off.
pub const FORCE_DISCHARGING_OFF: &str = "/Settings/ForceDischargingOff";
/// 0..100 %: the SoC that [`RESET_SOC_TO_APPLY`] writes to the BMS.
pub const RESET_SOC_TO: &str = "/Settings/ResetSocTo";
/// Writing 1 sets the BMS's SoC to [`RESET_SOC_TO`]; reads 0.
pub const RESET_SOC_TO_APPLY: &str = "/Settings/ResetSocToApply";

/// Default of [`RESET_SOC_TO`].
pub const DEFAULT_RESET_SOC: f64 = 100.0;

/// What the battery task hands the service when writes are on.
#[derive(Debug, Clone)]
pub struct BmsWrites {
    /// The writes the protocol offers (decides which paths exist).
    pub support: WriteSupport,
    /// Where accepted writes go (the port's poll loop).
    pub commands: mpsc::Sender<BmsCommand>,
}

/// Whether a client may write `path` with `SetValue`: `/CustomName`, and the `/Settings/*` ones
/// (they exist only when the battery allows BMS writes).
pub fn is_writable(path: &str) -> bool {
    path == CUSTOM_NAME || path == HISTORY_CLEAR || is_writable_setting(path)
}

/// Validates a write of `/History/Clear`: `Ok(true)` clears (1), `Ok(false)` does nothing (0);
/// `Err`: not a number, or another number.
pub fn check_history_clear(value: &zvariant::Value<'_>) -> Result<bool, Refused> {
    match integer(value) {
        None => Err(Refused::NotWritable),
        Some(v @ (0 | 1)) => Ok(v == 1),
        Some(_) => Err(Refused::Rejected),
    }
}

/// Whether `path` is one of the writable settings (not `/Settings/HasSettings`).
pub fn is_writable_setting(path: &str) -> bool {
    [FORCE_CHARGING_OFF, FORCE_DISCHARGING_OFF, RESET_SOC_TO, RESET_SOC_TO_APPLY].contains(&path)
}

/// The settings paths for `support`, with their start values (nothing forced).
pub fn initial_items(support: WriteSupport) -> Items {
    let mut items = Items::new();
    let mut put = |path: &str, value: Value| {
        items.insert(path.to_owned(), Item { value, unit: Unit::Plain });
    };
    if !support.any() {
        return items;
    }
    put(HAS_SETTINGS, Value::I32(1));
    if support.mosfet {
        put(FORCE_CHARGING_OFF, Value::I32(0));
        put(FORCE_DISCHARGING_OFF, Value::I32(0));
    }
    if support.soc {
        put(RESET_SOC_TO, Value::F64(DEFAULT_RESET_SOC));
        put(RESET_SOC_TO_APPLY, Value::I32(0));
    }
    items
}

/// An integer from any D-Bus integer type (or a whole `d`, as some clients send numbers).
fn integer(value: &zvariant::Value<'_>) -> Option<i64> {
    match value {
        zvariant::Value::U8(v) => Some((*v).into()),
        zvariant::Value::Bool(v) => Some((*v).into()),
        zvariant::Value::I16(v) => Some((*v).into()),
        zvariant::Value::U16(v) => Some((*v).into()),
        zvariant::Value::I32(v) => Some((*v).into()),
        zvariant::Value::U32(v) => Some((*v).into()),
        zvariant::Value::I64(v) => Some(*v),
        zvariant::Value::U64(v) => i64::try_from(*v).ok(),
        zvariant::Value::F64(v) if v.fract() == 0.0 && v.abs() < 1e15 => Some(*v as i64),
        zvariant::Value::Value(inner) => integer(inner),
        _ => None,
    }
}

fn number(value: &zvariant::Value<'_>) -> Option<f64> {
    match value {
        zvariant::Value::F64(v) => Some(*v),
        zvariant::Value::Value(inner) => number(inner),
        other => integer(other).map(|i| i as f64),
    }
}

/// The outcome of a valid write: the path's new value (`None`: unchanged) and the command.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// New value of the written path.
    pub value: Option<Value>,
    /// The command for the BMS, if the write asks for one.
    pub command: Option<BmsCommand>,
}

/// Validates a `SetValue` on a settings path. `Err`: wrong type or not writable, or out of range.
pub fn check(items: &Items, path: &str, value: &zvariant::Value<'_>) -> Result<Accepted, Refused> {
    let flag = || match integer(value) {
        None => Err(Refused::NotWritable),
        Some(v @ (0 | 1)) => Ok(v == 1),
        Some(_) => Err(Refused::Rejected),
    };
    match path {
        FORCE_CHARGING_OFF | FORCE_DISCHARGING_OFF => {
            let off = flag()?;
            let command = if path == FORCE_CHARGING_OFF {
                BmsCommand::SetChargeFet(!off)
            } else {
                BmsCommand::SetDischargeFet(!off)
            };
            Ok(Accepted { value: Some(Value::I32(i32::from(off))), command: Some(command) })
        }
        RESET_SOC_TO => match number(value) {
            None => Err(Refused::NotWritable),
            Some(soc) if soc.is_finite() && (0.0..=100.0).contains(&soc) => {
                Ok(Accepted { value: Some(Value::F64(soc)), command: None })
            }
            Some(_) => Err(Refused::Rejected),
        },
        RESET_SOC_TO_APPLY => {
            if !flag()? {
                return Ok(Accepted { value: None, command: None });
            }
            match items.get(RESET_SOC_TO).map(|i| &i.value) {
                Some(Value::F64(soc)) => {
                    Ok(Accepted { value: None, command: Some(BmsCommand::SetSoc(*soc)) })
                }
                _ => Err(Refused::Rejected),
            }
        }
        _ => Err(Refused::NotWritable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::victron::set_value::Refused::{NotWritable as NOT_WRITABLE, Rejected as REJECTED};

    fn both() -> Items {
        initial_items(WriteSupport { mosfet: true, soc: true })
    }

    #[test]
    fn only_custom_name_and_the_settings_are_writable() {
        assert!(is_writable("/CustomName"));
        assert!(is_writable(FORCE_CHARGING_OFF) && is_writable(RESET_SOC_TO_APPLY));
        assert!(!is_writable(HAS_SETTINGS));
        assert!(is_writable(HISTORY_CLEAR));
        assert_eq!(check_history_clear(&zvariant::Value::I32(1)), Ok(true));
        assert_eq!(check_history_clear(&zvariant::Value::U8(0)), Ok(false));
        assert_eq!(check_history_clear(&zvariant::Value::I32(2)), Err(REJECTED));
        assert_eq!(check_history_clear(&zvariant::Value::from("1")), Err(NOT_WRITABLE));
        assert!(!is_writable("/Dc/0/Voltage"));
    }

    #[test]
    fn paths_follow_the_support() {
        assert!(initial_items(WriteSupport::NONE).is_empty());
        let mos: Vec<String> = initial_items(WriteSupport { mosfet: true, soc: false }).into_keys().collect();
        assert_eq!(mos, [FORCE_CHARGING_OFF, FORCE_DISCHARGING_OFF, HAS_SETTINGS]);
        let soc = initial_items(WriteSupport { mosfet: false, soc: true });
        assert_eq!(soc[RESET_SOC_TO].value, Value::F64(100.0));
        assert_eq!(soc[HAS_SETTINGS].value, Value::I32(1));
        assert!(!soc.contains_key(FORCE_CHARGING_OFF));
        assert!(!is_writable_setting(HAS_SETTINGS) && is_writable_setting(RESET_SOC_TO_APPLY));
    }

    #[test]
    fn fet_flags_are_validated_and_mapped() {
        let items = both();
        let one = check(&items, FORCE_CHARGING_OFF, &zvariant::Value::I32(1)).unwrap();
        assert_eq!(one.value, Some(Value::I32(1)));
        assert_eq!(one.command, Some(BmsCommand::SetChargeFet(false)));
        let zero = check(&items, FORCE_DISCHARGING_OFF, &zvariant::Value::U8(0)).unwrap();
        assert_eq!(zero.command, Some(BmsCommand::SetDischargeFet(true)));
        let off = check(&items, FORCE_DISCHARGING_OFF, &zvariant::Value::I64(1)).unwrap();
        assert_eq!(off.command, Some(BmsCommand::SetDischargeFet(false)));
        assert_eq!(check(&items, FORCE_CHARGING_OFF, &zvariant::Value::I32(2)), Err(REJECTED));
        assert_eq!(check(&items, FORCE_CHARGING_OFF, &zvariant::Value::I32(-1)), Err(REJECTED));
        assert_eq!(check(&items, FORCE_CHARGING_OFF, &zvariant::Value::F64(0.5)), Err(NOT_WRITABLE));
        assert_eq!(check(&items, FORCE_CHARGING_OFF, &zvariant::Value::from("1")), Err(NOT_WRITABLE));
        assert_eq!(check(&items, HAS_SETTINGS, &zvariant::Value::I32(0)), Err(NOT_WRITABLE));
    }

    #[test]
    fn soc_is_staged_then_applied() {
        let mut items = both();
        assert_eq!(check(&items, RESET_SOC_TO, &zvariant::Value::F64(100.5)), Err(REJECTED));
        assert_eq!(check(&items, RESET_SOC_TO, &zvariant::Value::F64(f64::NAN)), Err(REJECTED));
        let staged = check(&items, RESET_SOC_TO, &zvariant::Value::I32(80)).unwrap();
        assert_eq!(staged, Accepted { value: Some(Value::F64(80.0)), command: None });
        items.insert(RESET_SOC_TO.into(), Item { value: Value::F64(80.0), unit: Unit::Plain });
        let apply = check(&items, RESET_SOC_TO_APPLY, &zvariant::Value::I32(1)).unwrap();
        assert_eq!(apply, Accepted { value: None, command: Some(BmsCommand::SetSoc(80.0)) });
        let idle = check(&items, RESET_SOC_TO_APPLY, &zvariant::Value::I32(0)).unwrap();
        assert_eq!(idle.command, None);
        assert_eq!(check(&items, RESET_SOC_TO_APPLY, &zvariant::Value::I32(7)), Err(REJECTED));
    }
}
