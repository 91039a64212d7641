//! Declarative field tables shared by the protocol decoders.
//!
//! A protocol lists its numeric fields as `const` [`Field`] tables (offset, width, signedness,
//! zero point, integer divisor, destination in [`Battery`]) and its flag words as [`Flag`] tables
//! (bit, alarm slot, level). Values are `(raw - zero) / divisor` with an integer divisor: 3425 / 1000
//! gives 3.425, where 3425 * 0.001 gives 3.4250000000000003. Arrays (cells, temperatures) go through
//! [`u16_array`] / [`scaled_u16_array`]. Readers are big-endian unless named `le_` and return
//! `None` instead of panicking when the data is too short; [`frame_parts`] and [`declared_len`]
//! take frames apart the same way, so no decoder indexes bytes from the wire.

use super::FrameError;
use crate::battery::{AlarmLevel, Alarms, Battery};

/// Width and signedness of a big-endian field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// Unsigned byte.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit (two's complement).
    I16,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit (two's complement).
    I32,
}

impl Width {
    /// Bytes the field occupies.
    pub const fn bytes(self) -> usize {
        match self {
            Width::U8 => 1,
            Width::U16 | Width::I16 => 2,
            Width::U32 | Width::I32 => 4,
        }
    }
}

/// One numeric field of a payload: `value = (raw - zero) / divisor`, stored by `set`.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Name used in errors (`FrameError::InvalidField`).
    pub name: &'static str,
    /// Byte offset in the payload.
    pub offset: usize,
    /// Width and signedness.
    pub width: Width,
    /// Raw value that means zero (2731 for JBD 0.1 K, 300000 for the UP16S current).
    pub zero: i64,
    /// Integer divisor from raw units to the model's unit (100 for 10 mV -> V).
    pub divisor: u32,
    /// Stores the scaled value in the model.
    pub set: fn(&mut Battery, f64),
}

impl Field {
    /// A field with zero point 0.
    pub const fn new(
        name: &'static str,
        offset: usize,
        width: Width,
        divisor: u32,
        set: fn(&mut Battery, f64),
    ) -> Self {
        Field { name, offset, width, zero: 0, divisor, set }
    }

    /// The same field with another zero point.
    pub const fn zero(self, zero: i64) -> Self {
        Field { zero, ..self }
    }

    /// The same field with another divisor (unit switches such as JBD's 100 mA flag).
    pub const fn divisor(self, divisor: u32) -> Self {
        Field { divisor, ..self }
    }

    /// The raw integer, or `None` if `data` is too short.
    pub fn raw(&self, data: &[u8]) -> Option<i64> {
        read(data, self.offset, self.width)
    }

    /// The scaled value, or `None` if `data` is too short.
    pub fn value(&self, data: &[u8]) -> Option<f64> {
        self.raw(data).map(|raw| scale(raw, self.zero, self.divisor))
    }
}

/// Applies every field of `table` to `battery`; a field beyond the data is an `InvalidField`.
pub fn apply(table: &[Field], data: &[u8], battery: &mut Battery) -> Result<(), FrameError> {
    for field in table {
        let value = field.value(data).ok_or(FrameError::InvalidField { field: field.name })?;
        (field.set)(battery, value);
    }
    Ok(())
}

/// `(raw - zero) / divisor` with an integer divisor (a divisor of 0 is treated as 1).
pub fn scale(raw: i64, zero: i64, divisor: u32) -> f64 {
    (raw - zero) as f64 / f64::from(divisor.max(1))
}

/// Reads a big-endian integer of `width` at `offset`.
pub fn read(data: &[u8], offset: usize, width: Width) -> Option<i64> {
    Some(match width {
        Width::U8 => i64::from(u8_at(data, offset)?),
        Width::U16 => i64::from(u16_at(data, offset)?),
        Width::I16 => i64::from(u16_at(data, offset)? as i16),
        Width::U32 => i64::from(u32_at(data, offset)?),
        Width::I32 => i64::from(u32_at(data, offset)? as i32),
    })
}

/// The `N` bytes at `offset`.
pub fn array_at<const N: usize>(data: &[u8], offset: usize) -> Option<[u8; N]> {
    data.get(offset..)?.first_chunk().copied()
}

/// Byte at `offset`.
pub fn u8_at(data: &[u8], offset: usize) -> Option<u8> {
    data.get(offset).copied()
}

/// Big-endian u16 at `offset`.
pub fn u16_at(data: &[u8], offset: usize) -> Option<u16> {
    array_at(data, offset).map(u16::from_be_bytes)
}

/// Big-endian u32 at `offset`.
pub fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    array_at(data, offset).map(u32::from_be_bytes)
}

/// Little-endian u16 at `offset` (JK PB, CAN).
pub fn le_u16_at(data: &[u8], offset: usize) -> Option<u16> {
    array_at(data, offset).map(u16::from_le_bytes)
}

/// Little-endian u32 at `offset`.
pub fn le_u32_at(data: &[u8], offset: usize) -> Option<u32> {
    array_at(data, offset).map(u32::from_le_bytes)
}

/// Consecutive `N`-byte groups of `data` (words, cell records); a shorter tail is left out.
pub fn chunks<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).filter_map(|chunk| chunk.try_into().ok())
}

/// `count` big-endian u16s starting at `start` (cells, temperatures).
pub fn u16_array(data: &[u8], start: usize, count: usize) -> Option<Vec<u16>> {
    let end = start.checked_add(count.checked_mul(2)?)?;
    let bytes = data.get(start..end)?;
    Some(chunks(bytes).map(u16::from_be_bytes).collect())
}

/// `count` big-endian u16s starting at `start`, each scaled as `(raw - zero) / divisor`.
pub fn scaled_u16_array(
    data: &[u8],
    start: usize,
    count: usize,
    zero: i64,
    divisor: u32,
) -> Option<Vec<f64>> {
    let raw = u16_array(data, start, count)?;
    Some(raw.into_iter().map(|r| scale(i64::from(r), zero, divisor)).collect())
}

/// The first `max` items, or all of them when there are fewer (what a length field can carry).
pub fn at_most<T>(items: &[T], max: usize) -> &[T] {
    items.get(..max).unwrap_or(items)
}

/// Text field: bytes up to the first NUL, lossy UTF-8, surrounding whitespace trimmed.
pub fn text(data: &[u8]) -> String {
    let before_nul = data.split(|&b| b == 0).next().unwrap_or(data);
    String::from_utf8_lossy(before_nul).trim().to_owned()
}

/// `text` as exactly `len` bytes: cut, or padded with NULs.
pub fn padded(text: &str, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = text.bytes().take(len).collect();
    bytes.resize(len, 0);
    bytes
}

/// A frame of `H` header bytes, data, and `T` trailer bytes, taken apart; `None` when it is
/// shorter than `H + T`. Callers check the length first, so the parts are where the protocol
/// puts them.
pub fn frame_parts<const H: usize, const T: usize>(frame: &[u8]) -> Option<(&[u8; H], &[u8], &[u8; T])> {
    let (header, rest) = frame.split_first_chunk()?;
    let (data, trailer) = rest.split_last_chunk()?;
    Some((header, data, trailer))
}

/// The data length declared by a frame that opens with `start` and carries a one-byte length at
/// `len_at` (JBD, EG4 LifePower). Too few bytes to tell is `TooShort { need: overhead }`.
pub fn declared_len(frame: &[u8], start: u8, len_at: usize, overhead: usize) -> Result<usize, FrameError> {
    let too_short = FrameError::TooShort { need: overhead, got: frame.len() };
    match frame.first() {
        None => Err(too_short),
        Some(&found) if found != start => Err(FrameError::BadStart { expected: start, found }),
        Some(_) => frame.get(len_at).map(|&len| usize::from(len)).ok_or(too_short),
    }
}

/// The low `count` bits of `mask` as flags, bit 0 first.
pub fn bit_flags(mask: u64, count: usize) -> Vec<bool> {
    (0..count).map(|bit| bit < 64 && mask & (1u64 << bit) != 0).collect()
}

/// Points at one alarm of [`Alarms`].
pub type AlarmSlot = fn(&mut Alarms) -> &mut Option<AlarmLevel>;

/// One bit of a protection/alarm word and the alarm it raises.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Bit number, 0 = least significant.
    pub bit: u8,
    /// The alarm this bit raises.
    pub slot: AlarmSlot,
    /// Level when the bit is set.
    pub level: AlarmLevel,
}

impl Flag {
    /// A flag that raises `slot` to `level` when `bit` is set.
    pub const fn new(bit: u8, slot: AlarmSlot, level: AlarmLevel) -> Self {
        Flag { bit, slot, level }
    }
}

/// Applies a flag table: every alarm the table names is reported (at least `Ok`), set bits raise
/// their alarm to the flag's level, and several bits on one alarm keep the worst.
pub fn apply_flags(mask: u32, table: &[Flag], alarms: &mut Alarms) {
    for flag in table {
        let set = flag.bit < 32 && mask & (1u32 << flag.bit) != 0;
        let level = if set { flag.level } else { AlarmLevel::Ok };
        Alarms::raise((flag.slot)(alarms), level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Field] = &[
        Field::new("voltage", 0, Width::U16, 100, |b, v| b.voltage_v = Some(v)),
        Field::new("current", 2, Width::I16, 100, |b, v| b.current_a = Some(v)),
        Field::new("temperature", 4, Width::U16, 10, |b, v| b.temperature_mos_c = Some(v)).zero(2731),
    ];

    #[test]
    fn table_scales_with_integer_divisors() {
        let mut battery = Battery::default();
        apply(TABLE, &[0x06, 0x18, 0xFD, 0xA4, 0x0B, 0x8B], &mut battery).unwrap();
        assert_eq!(battery.voltage_v, Some(15.6));
        assert_eq!(battery.current_a, Some(-6.04));
        assert_eq!(battery.temperature_mos_c, Some(22.4));
    }

    #[test]
    fn table_beyond_the_data_names_the_field() {
        let mut battery = Battery::default();
        let err = apply(TABLE, &[0x06, 0x18, 0xFD], &mut battery).unwrap_err();
        assert_eq!(err, FrameError::InvalidField { field: "current" });
    }

    #[test]
    fn divisor_gives_exact_millivolts() {
        assert_eq!(scale(3425, 0, 1000), 3.425);
        assert_eq!(scale(300_312, 300_000, 100), 3.12);
        assert_eq!(scale(1, 0, 0), 1.0);
    }

    #[test]
    fn readers_are_big_endian_and_signed_where_asked() {
        let data = [0xFF, 0xFE, 0x00, 0x04, 0x93, 0xE0];
        assert_eq!(read(&data, 0, Width::U16), Some(65534));
        assert_eq!(read(&data, 0, Width::I16), Some(-2));
        assert_eq!(read(&data, 2, Width::U32), Some(300_000));
        assert_eq!(read(&data, 0, Width::I32), Some(-131_068));
        assert_eq!(read(&data, 5, Width::U16), None);
        assert_eq!(read(&data, usize::MAX, Width::U16), None);
        assert_eq!(u8_at(&data, 1), Some(0xFE));
        assert_eq!(u16_at(&data, 2), Some(4));
        assert_eq!(u32_at(&data, 2), Some(300_000));
        assert_eq!(u32_at(&data, 3), None);
    }

    #[test]
    fn little_endian_readers_and_groups() {
        let data = [0x34, 0x12, 0x78, 0x56, 0x9A];
        assert_eq!(le_u16_at(&data, 0), Some(0x1234));
        assert_eq!(le_u32_at(&data, 0), Some(0x5678_1234));
        assert_eq!(le_u32_at(&data, 2), None);
        assert_eq!(array_at::<2>(&data, usize::MAX), None);
        assert_eq!(chunks::<2>(&data).collect::<Vec<_>>(), vec![[0x34, 0x12], [0x78, 0x56]]);
        assert_eq!(at_most(&data, 2), &data[..2]);
        assert_eq!(at_most(&data, 9), &data);
        assert_eq!(padded("ab", 4), b"ab\0\0");
        assert_eq!(padded("abcdef", 4), b"abcd");
    }

    #[test]
    fn frames_come_apart_at_fixed_places() {
        let frame = [0xDD, 3, 0, 1, 0x42, 0xFF, 0xBA, 0x77];
        let (header, data, trailer) = frame_parts::<4, 3>(&frame).unwrap();
        assert_eq!((header, data, trailer), (&[0xDD, 3, 0, 1], &[0x42][..], &[0xFF, 0xBA, 0x77]));
        assert_eq!(frame_parts::<4, 3>(&frame[..6]), None);
        assert_eq!(declared_len(&frame, 0xDD, 3, 7), Ok(1));
        assert_eq!(declared_len(&frame[..3], 0xDD, 3, 7), Err(FrameError::TooShort { need: 7, got: 3 }));
        assert_eq!(declared_len(&[], 0xDD, 3, 7), Err(FrameError::TooShort { need: 7, got: 0 }));
        assert_eq!(
            declared_len(&[0x7E], 0xDD, 3, 7),
            Err(FrameError::BadStart { expected: 0xDD, found: 0x7E })
        );
    }

    #[test]
    fn arrays_read_cells_and_reject_short_data() {
        let data = [0x0F, 0x45, 0x0F, 0x3D, 0x0B];
        assert_eq!(u16_array(&data, 0, 2), Some(vec![3909, 3901]));
        assert_eq!(u16_array(&data, 0, 3), None);
        assert_eq!(u16_array(&data, 0, usize::MAX), None);
        assert_eq!(scaled_u16_array(&data, 0, 2, 0, 1000), Some(vec![3.909, 3.901]));
        assert_eq!(u16_array(&data, 5, 0), Some(vec![]));
    }

    #[test]
    fn text_stops_at_nul_and_trims() {
        assert_eq!(text(b"JBD48100000\0\0\0"), "JBD48100000");
        assert_eq!(text(b" JBD \0x"), "JBD");
        assert_eq!(text(&[]), "");
    }

    #[test]
    fn bit_flags_start_at_bit_zero() {
        assert_eq!(bit_flags(0b101, 4), vec![true, false, true, false]);
        assert!(bit_flags(0x8000, 16)[15]);
        assert_eq!(bit_flags(u64::MAX, 66).len(), 66);
    }

    #[test]
    fn flags_report_ok_and_keep_the_worst_level() {
        const FLAGS: &[Flag] = &[
            Flag::new(0, |a| &mut a.high_voltage, AlarmLevel::Alarm),
            Flag::new(1, |a| &mut a.high_voltage, AlarmLevel::Warning),
            Flag::new(2, |a| &mut a.low_voltage, AlarmLevel::Alarm),
        ];
        let mut alarms = Alarms::default();
        apply_flags(0b011, FLAGS, &mut alarms);
        assert_eq!(alarms.high_voltage, Some(AlarmLevel::Alarm));
        assert_eq!(alarms.low_voltage, Some(AlarmLevel::Ok));
        assert_eq!(alarms.low_soc, None);
    }
}
