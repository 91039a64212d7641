//! Daly "Smart BMS" over UART or RS485 (`A5 ...`, 9600 8N1).
//!
//! Every message is one 13-byte sentence: `A5 | address | command | 08 | data[8] | sum8`, the
//! checksum the low byte of the sum of bytes 0..=11 (study 2.8, vectors `daly.json`). Requests
//! carry the host address (0x40 on UART/RS485, 0x80 seen too, board n on a shared bus at
//! 0x3F + n); replies carry the board number (1 for a request to 0x40 or 0x80). Unused request
//! bytes are `AA`, not `00`: Daly's UART resynchronises on edges (study 2.8).
//!
//! Cell voltages (0x95), temperatures (0x96) and the battery code (0x57) come as several
//! sentences, each with its frame number in data byte 0. [`decode`] checks length, start, length
//! byte, then checksum. Current: `(30000 - raw) / 10` A, positive = charging, as dbus-serialbattery
//! reads it and five real polls with their 0x93 state confirm; Daly's document and other packs
//! pair them the other way, which the sign check finds per battery (`docs/protocols/daly.md`).

use crate::battery::CurrentFlow;
use crate::protocol::checksum;
use crate::protocol::field;
use crate::protocol::{find_frame, Decoded, FrameError, Scan};
use serde_json::json;

mod alarms;

/// Serial speed (study 2.8).
pub const BAUD: u32 = 9600;
/// Sentence start byte.
pub const START: u8 = 0xA5;
/// Data length byte: always 8.
pub const DATA_LEN: u8 = 8;
/// Bytes in one sentence.
pub const FRAME_LEN: usize = 13;
/// Filler for unused request bytes.
pub const FILL: u8 = 0xAA;
/// Host address on UART / RS485 (board 1).
pub const HOST_UART: u8 = 0x40;
/// Host address variant (mpp-solar, Bluetooth adapters).
pub const HOST_ALT: u8 = 0x80;
/// Pack voltage, current, SoC.
pub const CMD_SOC: u8 = 0x90;
/// Highest and lowest cell.
pub const CMD_CELL_MINMAX: u8 = 0x91;
/// Highest and lowest temperature.
pub const CMD_TEMP_MINMAX: u8 = 0x92;
/// State, MOSFETs, remaining capacity.
pub const CMD_MOS: u8 = 0x93;
/// Cell and sensor counts, charger/load, cycles.
pub const CMD_STATUS: u8 = 0x94;
/// Cell voltages, three per sentence.
pub const CMD_CELL_VOLTAGES: u8 = 0x95;
/// Temperatures, seven per sentence.
pub const CMD_TEMPERATURES: u8 = 0x96;
/// Balancing bits, byte 0 bit 0 = cell 1.
pub const CMD_BALANCE: u8 = 0x97;
/// Alarm and failure bits.
pub const CMD_FAILURES: u8 = 0x98;
/// Rated capacity and nominal cell voltage.
pub const CMD_RATED: u8 = 0x50;
/// Production date.
pub const CMD_PRODUCTION: u8 = 0x53;
/// Battery code (ASCII, several sentences).
pub const CMD_BATTERY_CODE: u8 = 0x57;
/// Write: set SoC (`YY MM DD hh mm ss SoC*10`).
pub const CMD_SET_SOC: u8 = 0x21;
/// Write: discharge MOSFET (data byte disputed, see [`request_mos`]).
pub const CMD_DISCHARGE_MOS: u8 = 0xD9;
/// Write: charge MOSFET (data byte disputed, see [`request_mos`]).
pub const CMD_CHARGE_MOS: u8 = 0xDA;
/// Current zero point, 0.1 A units.
pub const CURRENT_ZERO: i64 = 30_000;
/// Temperature offset: raw 40 = 0 °C.
pub const TEMP_OFFSET: i64 = 40;

/// The current of the BLE register block's raw current word: `(raw - 30000) / 10` A, positive =
/// charging (aiobmsble's fixture: raw 30030 while charging is +3.0 A). The UART 0x90 sentence
/// pairs them the other way round by default (`decode_data`, `daly_polls.json`).
pub fn current_a(raw: i64) -> f64 {
    field::scale(raw, CURRENT_ZERO, 10)
}

/// A temperature of a raw Daly temperature: `raw - 40` °C.
pub fn temperature_c(raw: i64) -> f64 {
    field::scale(raw, TEMP_OFFSET, 1)
}
/// Cells per 0x95 sentence.
pub const CELLS_PER_SENTENCE: usize = 3;
/// Temperatures per 0x96 sentence.
pub const TEMPS_PER_SENTENCE: usize = 7;

/// A sentence with `data`; the checksum is filled in.
pub fn sentence(address: u8, command: u8, data: [u8; 8]) -> [u8; FRAME_LEN] {
    let mut out = [0u8; FRAME_LEN];
    out[..4].copy_from_slice(&[START, address, command, DATA_LEN]);
    out[4..12].copy_from_slice(&data);
    out[12] = checksum::sum8(&out[..12]);
    out
}

/// A read request to `address` with the `AA` filler, e.g. `A5 40 90 08 AA.. CD`.
pub fn request(address: u8, command: u8) -> [u8; FRAME_LEN] {
    sentence(address, command, [FILL; 8])
}

/// The board number a reply to `address` carries: 0x40 + n - 1 -> n, 0x80 + n - 1 -> n.
pub fn reply_id(address: u8) -> u8 {
    if address >= HOST_ALT {
        address - 0x7F
    } else {
        address.wrapping_sub(0x3F)
    }
}

/// Finds a sentence at the start of `buf`.
pub fn scan(buf: &[u8]) -> Scan {
    match buf.first() {
        None => return Scan::Incomplete,
        Some(&START) => {}
        Some(_) => {
            let skip = buf.iter().position(|&b| b == START).unwrap_or(buf.len());
            return Scan::Garbage { skip };
        }
    }
    match buf.get(..FRAME_LEN) {
        None if buf.get(3).is_some_and(|&l| l != DATA_LEN) => Scan::Garbage { skip: 1 },
        None => Scan::Incomplete,
        Some(frame) if check(frame).is_ok() => Scan::Frame { len: FRAME_LEN },
        Some(_) => Scan::Garbage { skip: 1 },
    }
}

/// The eight data bytes of a sentence.
pub type Data = [u8; DATA_LEN as usize];

/// Checks one sentence; returns (address/id, command, data).
pub fn check(frame: &[u8]) -> Result<(u8, u8, &Data), FrameError> {
    let got = frame.len();
    if got > FRAME_LEN {
        return Err(FrameError::LengthMismatch { declared: DATA_LEN.into(), actual: got - 5 });
    }
    let sentence: &[u8; FRAME_LEN] =
        frame.try_into().map_err(|_| FrameError::TooShort { need: FRAME_LEN, got })?;
    let [start, address, command, len, ref data @ .., sum] = *sentence;
    if start != START {
        return Err(FrameError::BadStart { expected: START, found: start });
    }
    if len != DATA_LEN {
        return Err(FrameError::LengthMismatch { declared: len.into(), actual: DATA_LEN.into() });
    }
    let computed = checksum::sum8(&sentence[..12]);
    if sum != computed {
        return Err(FrameError::BadChecksum { expected: sum.into(), computed: computed.into() });
    }
    Ok((address, command, data))
}

/// Checks a reply to a request sent to `address` for `command`.
pub fn check_reply(frame: &[u8], address: u8, command: u8) -> Result<&[u8], FrameError> {
    let (id, found, data) = check(frame)?;
    if found != command {
        return Err(FrameError::UnexpectedCommand { expected: command, found });
    }
    let expected = reply_id(address);
    if id != expected {
        return Err(FrameError::UnexpectedAddress { expected, found: id });
    }
    Ok(data)
}

/// Decodes one sentence, dispatching on the command byte. A request (address 0x40 and up)
/// gives only its header.
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let (id, command, data) = check(frame)?;
    if id >= HOST_UART {
        // A request (host address): nothing about the battery.
        let mut d = Decoded::default();
        d.extra.insert("host_address", json!(id));
        d.extra.insert("command", json!(command));
        d.extra.insert("length", json!(DATA_LEN));
        return Ok(d);
    }
    let mut d = decode_data(command, data);
    d.extra.insert("command", json!(command));
    d.extra.insert("bms_address", json!(id));
    Ok(d)
}

/// Decodes every sentence in `bytes` (a multi-sentence reply, or a capture of several) into one
/// result: cell voltages and temperatures are assembled by frame number.
pub fn decode_all(bytes: &[u8]) -> Result<Decoded, FrameError> {
    let mut sentences = Vec::new();
    let mut rest = bytes;
    while let Some((frame, next)) = find_frame(rest, scan) {
        sentences.push(frame);
        rest = rest.get(next..).unwrap_or_default();
    }
    let Some((first, others)) = sentences.split_first() else {
        return decode(bytes);
    };
    let mut merged = decode(first)?;
    for s in others {
        let d = decode(s)?;
        merged.battery.merge(&d.battery);
    }
    let cell_frames: Vec<&[u8]> =
        sentences.iter().copied().filter(|s| s.get(2) == Some(&CMD_CELL_VOLTAGES)).collect();
    if !cell_frames.is_empty() {
        merged.battery.cell_voltages_v = Some(cells(&cell_frames, cell_frames.len() * CELLS_PER_SENTENCE)?);
    }
    let temp_frames: Vec<&[u8]> =
        sentences.iter().copied().filter(|s| s.get(2) == Some(&CMD_TEMPERATURES)).collect();
    if !temp_frames.is_empty() {
        merged.battery.temperatures_c =
            Some(temperatures(&temp_frames, temp_frames.len() * TEMPS_PER_SENTENCE)?);
    }
    merged.extra.insert("frame_count", json!(sentences.len()));
    Ok(merged)
}

/// Cell voltages (V) for `count` cells from 0x95 sentences, placed by frame number.
pub fn cells(sentences: &[&[u8]], count: usize) -> Result<Vec<f64>, FrameError> {
    let raw = by_frame_number(sentences, CMD_CELL_VOLTAGES, count, CELLS_PER_SENTENCE, |d, k| {
        field::u16_at(d, 1 + 2 * k).map(i64::from)
    })?;
    Ok(raw.into_iter().map(|mv| field::scale(mv, 0, 1000)).collect())
}

/// Temperatures (°C) for `count` sensors from 0x96 sentences, placed by frame number.
pub fn temperatures(sentences: &[&[u8]], count: usize) -> Result<Vec<f64>, FrameError> {
    let raw = by_frame_number(sentences, CMD_TEMPERATURES, count, TEMPS_PER_SENTENCE, |d, k| {
        field::u8_at(d, 1 + k).map(i64::from)
    })?;
    Ok(raw.into_iter().map(temperature_c).collect())
}

/// Values `1..=count` from multi-sentence replies: sentence with frame number f (1-based)
/// carries values (f-1)*per .. f*per. A missing sentence is an error, never a zero.
fn by_frame_number(
    sentences: &[&[u8]],
    command: u8,
    count: usize,
    per: usize,
    value: impl Fn(&[u8], usize) -> Option<i64>,
) -> Result<Vec<i64>, FrameError> {
    let mut out: Vec<Option<i64>> = vec![None; count];
    for s in sentences {
        let (_, found, data) = check(s)?;
        if found != command {
            return Err(FrameError::UnexpectedCommand { expected: command, found });
        }
        let number = usize::from(data[0]);
        if number == 0 {
            return Err(FrameError::InvalidField { field: "frame_number" });
        }
        for k in 0..per {
            let index = (number - 1) * per + k;
            if let Some(slot) = out.get_mut(index) {
                *slot = value(data, k);
            }
        }
    }
    out.into_iter().map(|v| v.ok_or(FrameError::InvalidField { field: "missing_sentence" })).collect()
}

fn decode_data(command: u8, p: &Data) -> Decoded {
    let mut d = Decoded::default();
    let word = |offset| i64::from(field::u16_at(p, offset).unwrap_or(0));
    let b = &mut d.battery;
    let e = &mut d.extra;
    match command {
        CMD_SOC => {
            let current = word(4);
            b.voltage_v = Some(field::scale(word(0), 0, 10));
            // dbus-serialbattery's convention, (30000 - raw) / 10 A, which five real polls with
            // their 0x93 state confirm (`daly_polls.json`); packs that pair them the other way
            // are found by the sign check (`current_sign.rs`) from the 0x93 state.
            b.current_a = Some(field::scale(CURRENT_ZERO, current, 10));
            b.soc_percent = Some(field::scale(word(6), 0, 10));
            e.insert("total_voltage_v", json!(field::scale(word(0), 0, 10)));
            e.insert("acquisition_voltage_v", json!(field::scale(word(2), 0, 10)));
            e.insert("current_raw", json!(current));
        }
        CMD_CELL_MINMAX => {
            b.max_cell_voltage_v = Some(field::scale(word(0), 0, 1000));
            b.min_cell_voltage_v = Some(field::scale(word(3), 0, 1000));
            e.insert("max_cell_no", json!(p[2]));
            e.insert("min_cell_no", json!(p[5]));
        }
        CMD_TEMP_MINMAX => {
            let t = |raw: u8| temperature_c(raw.into());
            e.insert("max_temp_c", json!(t(p[0])));
            e.insert("max_temp_sensor", json!(p[1]));
            e.insert("min_temp_c", json!(t(p[2])));
            e.insert("min_temp_sensor", json!(p[3]));
        }
        CMD_MOS => {
            let remaining = field::u32_at(p, 4).unwrap_or(0);
            b.charge_fet = Some(p[1] != 0);
            b.discharge_fet = Some(p[2] != 0);
            b.current_flow = match p[0] {
                0 => Some(CurrentFlow::Idle),
                1 => Some(CurrentFlow::Charging),
                2 => Some(CurrentFlow::Discharging),
                _ => None,
            };
            b.remaining_capacity_ah = Some(field::scale(remaining.into(), 0, 1000));
            let text = ["stationary", "charging", "discharging"].get(usize::from(p[0])).unwrap_or(&"unknown");
            e.insert("state", json!(p[0]));
            e.insert("state_text", json!(text));
            e.insert("charge_mos", json!(p[1] != 0));
            e.insert("discharge_mos", json!(p[2] != 0));
            e.insert("bms_life_cycles", json!(p[3]));
            e.insert("residual_capacity_ah", json!(field::scale(remaining.into(), 0, 1000)));
        }
        CMD_STATUS => {
            b.cell_count = Some(p[0].into());
            b.cycles = Some(word(5) as u32);
            e.insert("temperature_sensor_count", json!(p[1]));
            e.insert("charger_connected", json!(p[2] != 0));
            e.insert("load_connected", json!(p[3] != 0));
            e.insert("state_bits", json!(p[4]));
        }
        CMD_CELL_VOLTAGES => {
            e.insert("frame_no", json!(p[0]));
            e.insert("cells_mv", json!([word(1), word(3), word(5)]));
        }
        CMD_TEMPERATURES => {
            e.insert("frame_no", json!(p[0]));
            e.insert("temperatures_raw", json!(p[1..8]));
        }
        CMD_BALANCE => {
            let mask = balance_mask(p);
            b.balancing_cells = Some(field::bit_flags(mask, 48));
            e.insert("balance_bitmask", json!(mask));
        }
        CMD_FAILURES => alarms::apply(p, &mut d),
        CMD_RATED => {
            let mah = field::u32_at(p, 0).unwrap_or(0);
            b.nominal_capacity_ah = Some(field::scale(mah.into(), 0, 1000));
            e.insert(
                "nominal_cell_voltage_v",
                json!(field::scale(field::u32_at(p, 4).unwrap_or(0).into(), 0, 1000)),
            );
        }
        CMD_PRODUCTION => {
            let (year, month, day) = (2000 + u16::from(p[2]), p[3], p[4]);
            b.production_date = ((1..=12).contains(&month) && (1..=31).contains(&day))
                .then(|| format!("{year:04}-{month:02}-{day:02}"));
        }
        CMD_BATTERY_CODE => {
            e.insert("frame_no", json!(p[0]));
            e.insert("text", json!(String::from_utf8_lossy(&p[1..8])));
        }
        _ => {
            let hex: Vec<String> = p.iter().map(|b| format!("{b:02X}")).collect();
            e.insert("data_hex", json!(hex.join(" ")));
        }
    }
    d
}

/// The 0x97 bytes as a mask with bit 0 = cell 1: byte 0 bit 0 is cell 1, byte 1 bit 0 cell 9.
pub fn balance_mask(data: &[u8]) -> u64 {
    data.iter().take(8).enumerate().fold(0u64, |mask, (i, byte)| mask | u64::from(*byte) << (8 * i))
}

/// The battery code from 0x57 sentences, in frame-number order (NULs and padding trimmed).
pub fn battery_code(sentences: &[&[u8]]) -> Option<String> {
    let mut parts: Vec<(u8, &[u8])> =
        sentences.iter().filter_map(|s| check(s).ok()).map(|(_, _, d)| (d[0], &d[1..8])).collect();
    parts.sort_by_key(|(n, _)| *n);
    let bytes: Vec<u8> = parts.iter().flat_map(|(_, t)| t.iter().copied()).collect();
    Some(field::text(&bytes)).filter(|code| !code.is_empty())
}

/// Charge (`CMD_CHARGE_MOS`) or discharge (`CMD_DISCHARGE_MOS`) MOSFET: data[0] `01` = off,
/// `00` = on, per Daly's protocol explanation (dbus-serialbattery uses the opposite: see
/// `docs/protocols/daly.md`; not sent by the driver).
pub fn request_mos(address: u8, command: u8, off: bool) -> [u8; FRAME_LEN] {
    let mut data = [0u8; 8];
    data[0] = u8::from(off);
    sentence(address, command, data)
}
