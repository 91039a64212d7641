//! One published value and its text, encoded the way Venus OS expects (`victron-dbus.md` §2.1).
//!
//! `i` for counts, enums, flags and ids, `d` for measurements, `s` for text. An unknown value is a
//! variant holding an **empty `ai` array** (velib's `VEDBUS_INVALID`), never 0: every Victron
//! consumer reads an empty array as "invalid", while a 0 would be taken as a live reading.

use zbus::zvariant::{self, OwnedValue};

/// A value of one D-Bus path.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A measurement (`d`).
    F64(f64),
    /// A count, enum, flag or id (`i`).
    I32(i32),
    /// Text (`s`).
    Text(String),
    /// Unknown: sent as an empty `ai` array.
    Invalid,
}

/// How a value is shown by `GetText` (velib's `gettextcallback`). Only used for text, never for
/// the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// No unit: the number as is (`F64` with up to the digits needed, `I32` in decimal).
    Plain,
    /// Pack volts, 2 decimals: "52.10 V".
    Volt,
    /// Cell volts, 3 decimals: "3.305 V".
    CellVolt,
    /// Amperes, 2 decimals: "-12.30 A".
    Amp,
    /// Watts, no decimals: "640 W".
    Watt,
    /// Degrees Celsius, 1 decimal: "25.0 °C".
    Celsius,
    /// Percent, 1 decimal: "85.0 %".
    Percent,
    /// Ampere-hours, 1 decimal: "100.0 Ah".
    AmpHour,
    /// Seconds, no decimals: "3600 s".
    Second,
    /// Hexadecimal, as velib shows `/ProductId`: "0xBB01".
    Hex,
}

impl Value {
    /// A measurement; `None`, NaN and infinities are invalid (a NaN would also never compare equal
    /// to itself, so the change detection would resend it every cycle).
    pub fn f64(value: Option<f64>) -> Self {
        match value {
            Some(v) if v.is_finite() => Value::F64(v),
            _ => Value::Invalid,
        }
    }

    /// A count or enum; `None` and values outside `i32` are invalid.
    pub fn int<T: TryInto<i32>>(value: Option<T>) -> Self {
        value.and_then(|v| v.try_into().ok()).map_or(Value::Invalid, Value::I32)
    }

    /// A 0/1 flag.
    pub fn flag(value: Option<bool>) -> Self {
        value.map_or(Value::Invalid, |on| Value::I32(i32::from(on)))
    }

    /// Text; `None` and the empty string are invalid.
    pub fn text(value: Option<&str>) -> Self {
        match value {
            Some(s) if !s.is_empty() => Value::Text(s.to_owned()),
            _ => Value::Invalid,
        }
    }

    /// True unless this is [`Value::Invalid`].
    pub fn is_valid(&self) -> bool {
        !matches!(self, Value::Invalid)
    }

    /// The D-Bus variant content: `d`, `i`, `s`, or an empty `ai` array when invalid.
    pub fn to_variant(&self) -> zvariant::Value<'static> {
        match self {
            Value::F64(v) => zvariant::Value::F64(*v),
            Value::I32(v) => zvariant::Value::I32(*v),
            Value::Text(s) => zvariant::Value::from(s.clone()),
            Value::Invalid => zvariant::Value::from(Vec::<i32>::new()),
        }
    }

    /// Human text with unit; `"---"` when invalid (velib's `GetText`).
    pub fn display(&self, unit: Unit) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_display(unit, &mut text);
        text
    }

    /// [`Value::display`] written into `out` (the hand-marshalled signals format it in place).
    pub fn write_display(&self, unit: Unit, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        match self {
            Value::Invalid => out.write_str("---"),
            Value::Text(s) => out.write_str(s),
            Value::I32(v) => match unit {
                Unit::Hex => write!(out, "0x{v:X}"),
                Unit::Plain => write!(out, "{v}"),
                _ => write!(out, "{v} {}", unit.symbol()),
            },
            Value::F64(v) => {
                let digits = match unit {
                    Unit::Plain => return write!(out, "{v}"),
                    Unit::Hex => return write!(out, "0x{:X}", v.round() as i64),
                    Unit::Watt | Unit::Second => 0,
                    Unit::Volt | Unit::Amp => 2,
                    Unit::CellVolt => 3,
                    Unit::Celsius | Unit::Percent | Unit::AmpHour => 1,
                };
                write!(out, "{v:.digits$} {}", unit.symbol())
            }
        }
    }
}

impl Unit {
    fn symbol(self) -> &'static str {
        match self {
            Unit::Plain | Unit::Hex => "",
            Unit::Volt | Unit::CellVolt => "V",
            Unit::Amp => "A",
            Unit::Watt => "W",
            Unit::Celsius => "°C",
            Unit::Percent => "%",
            Unit::AmpHour => "Ah",
            Unit::Second => "s",
        }
    }
}

impl TryFrom<&Value> for OwnedValue {
    type Error = zvariant::Error;

    /// Cannot fail in practice: zvariant only fails to own a value that holds a file descriptor.
    fn try_from(value: &Value) -> Result<Self, Self::Error> {
        value.to_variant().try_into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value as Z;

    #[test]
    fn invalid_is_an_empty_int32_array_not_zero() {
        let variant = Value::Invalid.to_variant();
        match &variant {
            Z::Array(array) => {
                assert!(array.is_empty());
                assert_eq!(array.element_signature().to_string(), "i");
            }
            other => panic!("invalid must be an array, got {other:?}"),
        }
        assert_eq!(variant.value_signature().to_string(), "ai");
        let owned = OwnedValue::try_from(&Value::Invalid).unwrap();
        assert_eq!(owned.value_signature().to_string(), "ai");
    }

    #[test]
    fn types_are_d_i_s() {
        assert_eq!(Value::F64(52.1).to_variant().value_signature().to_string(), "d");
        assert_eq!(Value::I32(9).to_variant().value_signature().to_string(), "i");
        assert_eq!(Value::Text("x".into()).to_variant().value_signature().to_string(), "s");
    }

    #[test]
    fn missing_and_non_finite_are_invalid() {
        assert_eq!(Value::f64(None), Value::Invalid);
        assert_eq!(Value::f64(Some(f64::NAN)), Value::Invalid);
        assert_eq!(Value::f64(Some(f64::INFINITY)), Value::Invalid);
        assert_eq!(Value::int::<u32>(None), Value::Invalid);
        assert_eq!(Value::int(Some(u32::MAX)), Value::Invalid);
        assert_eq!(Value::flag(None), Value::Invalid);
        assert_eq!(Value::flag(Some(false)), Value::I32(0));
        assert_eq!(Value::text(Some("")), Value::Invalid);
        assert_eq!(Value::f64(Some(0.0)), Value::F64(0.0));
    }

    #[test]
    fn text_has_units() {
        assert_eq!(Value::F64(52.1).display(Unit::Volt), "52.10 V");
        assert_eq!(Value::F64(3.3051).display(Unit::CellVolt), "3.305 V");
        assert_eq!(Value::F64(-12.3).display(Unit::Amp), "-12.30 A");
        assert_eq!(Value::F64(640.4).display(Unit::Watt), "640 W");
        assert_eq!(Value::F64(25.0).display(Unit::Celsius), "25.0 °C");
        assert_eq!(Value::F64(85.0).display(Unit::Percent), "85.0 %");
        assert_eq!(Value::F64(-20.0).display(Unit::AmpHour), "-20.0 Ah");
        assert_eq!(Value::I32(0xBB01).display(Unit::Hex), "0xBB01");
        assert_eq!(Value::I32(16).display(Unit::Plain), "16");
        assert_eq!(Value::Text("C3".into()).display(Unit::Plain), "C3");
        assert_eq!(Value::Invalid.display(Unit::Volt), "---");
    }
}
