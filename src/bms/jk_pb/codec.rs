//! JK PB / inverter BMS on RS485 (incumbent study 2.6, vectors `jk_pb.json`): 115200 8N1, DIP
//! addresses 1..=15 (0 makes a pack the bus master). Notes: `docs/protocols/jk_pb.md`.
//!
//! Request: a Modbus FC16 write of 0 to a trigger register (0x1620 status, 0x161E settings,
//! 0x161C about). Reply: a 300-byte `55 AA EB 90 type ...` frame (little-endian fields, byte 299 =
//! sum of bytes 0..=298), optional `00` padding, then the 8-byte FC16 acknowledgement. The frame
//! has no address: only the acknowledgement says who sent it, so [`decode_reply`] rejects a frame
//! whose acknowledgement is missing or names another address or register.

use crate::battery::AlarmLevel;
use crate::protocol::field::{self, AlarmSlot, Flag};
use crate::protocol::{checksum, modbus, Decoded, FrameError, Scan};
use serde_json::json;
use std::time::Duration;

mod encode;
pub use encode::{About, Settings, Status};

/// Line speed.
pub const BAUD: u32 = 115_200;
/// Frame length.
pub const FRAME_LEN: usize = 300;
/// Frame start.
pub const HEADER: [u8; 4] = [0x55, 0xAA, 0xEB, 0x90];
/// Trigger for the about frame (type 3).
pub const REG_ABOUT: u16 = 0x161C;
/// Trigger for the settings frame (type 1).
pub const REG_SETTINGS: u16 = 0x161E;
/// Trigger for the status frame (type 2).
pub const REG_STATUS: u16 = 0x1620;
/// Least time between two commands on the bus.
pub const COMMAND_GAP: Duration = Duration::from_millis(120);
/// FC16 acknowledgement length.
pub const ACK_LEN: usize = 8;
/// Padding bytes tolerated between frame and acknowledgement.
const MAX_PAD: usize = 4;

/// Trigger request, e.g. `01 10 16 20 00 01 02 00 00 D6 F1`.
pub fn request(address: u8, register: u16) -> Vec<u8> {
    modbus::write_request(address, register, &[0])
}

/// A whole frame; every field offset below lies inside it.
type Frame = [u8; FRAME_LEN];

fn le16(f: &Frame, at: usize) -> u16 {
    field::le_u16_at(f, at).unwrap_or_default()
}
fn le32(f: &Frame, at: usize) -> u32 {
    field::le_u32_at(f, at).unwrap_or_default()
}
fn i16le(f: &Frame, at: usize) -> f64 {
    field::scale(i64::from(le16(f, at) as i16), 0, 10)
}

/// (carried, computed) checksum of a frame.
fn sums(f: &Frame) -> (u8, u8) {
    (f[FRAME_LEN - 1], checksum::sum8(&f[..FRAME_LEN - 1]))
}

/// `00` bytes between a frame and its acknowledgement.
fn padding(after_frame: &[u8]) -> usize {
    after_frame.iter().take(MAX_PAD).take_while(|&&b| b == 0).count()
}

/// Finds a 300-byte frame with a good checksum at the start of `buf`.
pub fn scan(buf: &[u8]) -> Scan {
    if !buf.iter().zip(HEADER).all(|(&b, h)| b == h) {
        let next = buf.iter().skip(1).position(|&b| b == HEADER[0]).map_or(buf.len(), |p| p + 1);
        return Scan::Garbage { skip: next.max(1) };
    }
    match buf.first_chunk() {
        None => Scan::Incomplete,
        Some(frame) => match sums(frame) {
            (carried, computed) if carried == computed => Scan::Frame { len: FRAME_LEN },
            _ => Scan::Garbage { skip: 1 },
        },
    }
}

/// Finds a whole reply at the start of `buf`: frame, padding, 8 acknowledgement bytes (checked
/// by [`decode_reply`], so that a wrong acknowledgement gets a precise error).
pub fn scan_reply(buf: &[u8]) -> Scan {
    match scan(buf) {
        Scan::Frame { len } => {
            let rest = buf.get(len..).unwrap_or_default();
            let pad = padding(rest);
            if rest.len() == pad && pad < MAX_PAD {
                Scan::Incomplete
            } else if rest.len() >= pad + ACK_LEN {
                Scan::Frame { len: len + pad + ACK_LEN }
            } else {
                Scan::Incomplete
            }
        }
        other => other,
    }
}

/// Decodes a reply (frame + acknowledgement) to the trigger of `register` sent to `address`.
pub fn decode_reply(reply: &[u8], address: u8, register: u16) -> Result<Decoded, FrameError> {
    let (frame, rest) = reply
        .split_at_checked(FRAME_LEN)
        .ok_or(FrameError::TooShort { need: FRAME_LEN, got: reply.len() })?;
    let mut decoded = decode(frame)?;
    let pad = padding(rest);
    let ack = rest.get(pad..pad + ACK_LEN).ok_or(FrameError::MissingAck)?;
    let (from, acked, _) = modbus::parse_write_ack(ack)?;
    if from != address {
        return Err(FrameError::UnexpectedAddress { expected: address, found: from });
    }
    if acked != register {
        return Err(FrameError::UnexpectedRegister { expected: register, found: acked });
    }
    decoded.extra.insert("address", json!(from));
    Ok(decoded)
}

/// Decodes one 300-byte frame (type 1 settings, 2 status, 3 about).
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let got = frame.len();
    if got > FRAME_LEN {
        return Err(FrameError::LengthMismatch { declared: FRAME_LEN, actual: got });
    }
    let frame: &Frame = frame.try_into().map_err(|_| FrameError::TooShort { need: FRAME_LEN, got })?;
    if frame[..4] != HEADER {
        return Err(FrameError::BadStart { expected: HEADER[0], found: frame[0] });
    }
    let (carried, computed) = sums(frame);
    if computed != carried {
        return Err(FrameError::BadChecksum { expected: carried.into(), computed: computed.into() });
    }
    let mut d = match frame[4] {
        1 => settings(frame),
        2 => status(frame),
        3 => about(frame),
        _ => return Err(FrameError::InvalidField { field: "frame_type" }),
    };
    d.extra.insert("frame_type", json!(frame[4]));
    Ok(d)
}

const fn alarm(bit: u8, slot: AlarmSlot) -> Flag {
    Flag::new(bit, slot, AlarmLevel::Alarm)
}

/// Alarm word (u32 at 166), bit by bit (study 2.6 bit table).
const ALARMS: &[Flag] = &[
    Flag::new(0, |a| &mut a.internal_failure, AlarmLevel::Warning), // balance wire resistance
    alarm(1, |a| &mut a.high_internal_temperature),                 // MOS over-temperature
    alarm(2, |a| &mut a.internal_failure),                          // cell quantity
    alarm(3, |a| &mut a.internal_failure),                          // current sensor
    alarm(4, |a| &mut a.high_cell_voltage),
    alarm(5, |a| &mut a.high_voltage),
    alarm(6, |a| &mut a.high_charge_current),
    alarm(7, |a| &mut a.high_charge_current), // charge short circuit
    alarm(8, |a| &mut a.high_charge_temperature),
    alarm(9, |a| &mut a.low_charge_temperature),
    alarm(10, |a| &mut a.internal_failure), // CPU aux communication
    alarm(11, |a| &mut a.low_cell_voltage),
    alarm(12, |a| &mut a.low_voltage),
    alarm(13, |a| &mut a.high_discharge_current),
    alarm(14, |a| &mut a.high_discharge_current), // discharge short circuit
    alarm(15, |a| &mut a.high_temperature),       // discharge over-temperature
    alarm(16, |a| &mut a.internal_failure),       // charge MOS
    alarm(17, |a| &mut a.internal_failure),       // discharge MOS
    alarm(20, |a| &mut a.internal_failure),       // discharge switch-on failed
    alarm(21, |a| &mut a.high_temperature),       // battery over-temperature
    alarm(22, |a| &mut a.internal_failure),       // temperature sensor anomaly
];

/// Temperature sensors: (offset, presence bit) for T1..T4.
const SENSORS: [(usize, u8); 4] = [(162, 0x02), (164, 0x04), (256, 0x10), (258, 0x20)];

fn status(f: &Frame) -> Decoded {
    let mut d = Decoded::default();
    let mask = le32(f, 70);
    let present: Vec<usize> = (0..32).filter(|i| mask & (1 << i) != 0).collect();
    let cells: Vec<f64> = present.iter().map(|i| field::scale(le16(f, 6 + 2 * i).into(), 0, 1000)).collect();
    let sensors = f[214];
    let temps: Vec<f64> = SENSORS
        .iter()
        .filter(|(_, bit)| sensors == 0 || sensors & bit != 0)
        .map(|(at, _)| i16le(f, *at))
        .collect();
    let alarms = le32(f, 166);
    let milli = |raw: i64| field::scale(raw, 0, 1000);
    let b = &mut d.battery;
    b.voltage_v = Some(milli(le32(f, 150).into()));
    b.current_a = Some(milli((le32(f, 158) as i32).into()));
    b.soc_percent = Some(f[173].into());
    b.soh_percent = Some(f[190].into());
    b.remaining_capacity_ah = Some(milli((le32(f, 174) as i32).into()));
    b.nominal_capacity_ah = Some(milli(le32(f, 178).into()));
    b.cycles = Some(le32(f, 182));
    b.cell_count = u16::try_from(cells.len()).ok();
    b.cell_voltages_v = Some(cells.clone());
    b.temperature_mos_c = Some(i16le(f, 144));
    b.temperatures_c = Some(temps);
    b.charge_fet = Some(f[198] != 0);
    b.discharge_fet = Some(f[199] != 0);
    field::apply_flags(alarms, ALARMS, &mut b.alarms);
    let e = &mut d.extra;
    let (max_i, min_i) = (usize::from(f[78]), usize::from(f[79]));
    let cell_at = |i: usize| milli(le16(f, 6 + 2 * i.min(31)).into());
    e.insert("cell_count_from_enable_mask", json!(cells.len()));
    e.insert("cells_v", json!(cells));
    e.insert("cell_present_mask", json!(mask));
    e.insert("max_cell_index_1based", json!(max_i + 1));
    e.insert("min_cell_index_1based", json!(min_i + 1));
    e.insert("max_cell_v", json!(cell_at(max_i)));
    e.insert("min_cell_v", json!(cell_at(min_i)));
    e.insert("avg_cell_v", json!(milli(le16(f, 74).into())));
    let spread = cells.iter().fold(None, |acc: Option<(f64, f64)>, &v| {
        Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
    });
    e.insert(
        "delta_cell_v",
        json!(spread.map_or(0.0, |(lo, hi)| milli(((hi - lo) * 1000.0).round() as i64))),
    );
    e.insert("delta_cell_v_bms", json!(milli(le16(f, 76).into())));
    let keys = ["temperature_1_c", "temperature_2_c", "temperature_3_c", "temperature_4_c"];
    for (key, (at, _)) in keys.into_iter().zip(SENSORS) {
        e.insert(key, json!(i16le(f, at)));
    }
    e.insert("temp_sensor_presence_mask", json!(sensors));
    e.insert("alarm_u32_raw_at_offset_166", json!(alarms));
    e.insert("balancing", json!(f[172] != 0));
    e.insert("balance_current_a", json!(milli((le16(f, 170) as i16).into())));
    e.insert("heating", json!(f[215] != 0));
    d.battery.heater.heating = Some(f[215] != 0);
    d.battery.heater.current_a = Some(milli(le16(f, 236).into()));
    e.insert("design_capacity_ah_int", json!(le32(f, 178) / 1000));
    e.insert("total_runtime_s", json!(le32(f, 194)));
    e.insert("power_w", json!(milli(le32(f, 154).into())));
    d
}

fn settings(f: &Frame) -> Decoded {
    let mut d = Decoded::default();
    let mv = |at| field::scale(le32(f, at).into(), 0, 1000);
    let b = &mut d.battery;
    b.charge_current_limit_a = Some(mv(50));
    b.discharge_current_limit_a = Some(mv(62));
    b.cell_count = u16::try_from(le32(f, 114)).ok();
    b.balancer_enabled = Some(le32(f, 126) != 0);
    b.nominal_capacity_ah = Some(mv(130));
    let e = &mut d.extra;
    e.insert("cell_uvp_v", json!(mv(10)));
    e.insert("cell_ovp_v", json!(mv(18)));
    e.insert("request_charge_voltage_v", json!(mv(38)));
    e.insert("float_voltage_v", json!(mv(42)));
    e.insert("max_charge_current_a", json!(mv(50)));
    e.insert("max_discharge_current_a", json!(mv(62)));
    e.insert("capacity_ah", json!(mv(130)));
    e.insert("charge_enabled", json!(le32(f, 118) != 0));
    e.insert("discharge_enabled", json!(le32(f, 122) != 0));
    e.insert("heater_enabled", json!(le16(f, 282) & 1 != 0));
    d.battery.heater.enabled = Some(le16(f, 282) & 1 != 0);
    e.insert("device_address", json!(le32(f, 270)));
    d
}

fn about(f: &Frame) -> Decoded {
    let mut d = Decoded::default();
    let text = field::text;
    let (vendor, hw, sw, serial) = (text(&f[6..22]), text(&f[22..30]), text(&f[30..38]), text(&f[46..62]));
    let b = &mut d.battery;
    b.model = Some(vendor.clone()).filter(|s| !s.is_empty());
    b.hardware_version = Some(hw.clone()).filter(|s| !s.is_empty());
    b.firmware_version = Some(sw.clone()).filter(|s| !s.is_empty());
    b.serial = Some(serial).filter(|s| !s.is_empty());
    let e = &mut d.extra;
    e.insert("vendor_id", json!(vendor));
    e.insert("hw_version", json!(hw));
    e.insert("sw_version", json!(sw));
    e.insert("odd_runtime_s", json!(le32(f, 38)));
    e.insert("power_on_times", json!(le32(f, 42)));
    d
}

/// `decode` command: a frame (with or without its acknowledgement), an acknowledgement alone
/// or a trigger request.
pub fn decode_any(bytes: &[u8]) -> Result<Decoded, FrameError> {
    if let Some((frame, next)) = crate::protocol::find_frame(bytes, scan) {
        let mut d = decode(frame)?;
        let rest = bytes.get(next..).unwrap_or_default();
        let pad = padding(rest);
        if let Some(ack) = rest.get(pad..pad + ACK_LEN) {
            let (address, register, _) = modbus::parse_write_ack(ack)?;
            d.extra.insert("address", json!(address));
            d.extra.insert("register", json!(register));
        }
        return Ok(d);
    }
    if bytes.first().is_some_and(|&b| b == HEADER[0]) {
        return decode(bytes);
    }
    let mut d = Decoded::default();
    if bytes.len() == ACK_LEN {
        let (address, register, quantity) = modbus::parse_write_ack(bytes)?;
        d.extra.insert("address", json!(address));
        d.extra.insert("register", json!(register));
        d.extra.insert("quantity", json!(quantity));
    } else {
        let r = modbus::parse_request(bytes)?;
        d.extra.insert("address", json!(r.address));
        d.extra.insert("register", json!(r.start));
        d.extra.insert("quantity", json!(r.count));
        d.extra.insert("byte_count", json!(r.values.len() * 2));
        d.extra.insert("value", json!(r.values.first().copied().unwrap_or(0)));
    }
    d.extra.insert("function", json!(modbus::FC_WRITE_MULTIPLE));
    Ok(d)
}
