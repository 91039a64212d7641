//! JK BMS over Bluetooth LE (service FFE0, characteristic FFE1 for notifications and writes).
//! Notes and sources: `docs/protocols/jk_ble.md`.
//!
//! Commands are 20 bytes, `AA 55 90 EB cmd len value[4] 00.. sum8`: 0x97 device info, 0x96
//! cell info (the BMS answers with its settings frame, then streams cell-info frames). Replies
//! are the 300-byte `55 AA EB 90 type counter ... sum8` frames of the JK PB RS485 protocol, over
//! 15 or more notifications: type 1 settings, 2 cell info, 3 device info. Two cell-info layouts
//! exist: JK02_32S (hardware 11 and newer) is byte for byte the JK PB status frame and is decoded
//! by the JK PB decoder; JK02_24S (older firmware: 24 cells, every field after the cell block 16
//! or 32 bytes earlier) is moved into the 32S places first ([`widen_24s`]) and decoded by the
//! same decoder: one decoder for both, no copy of its field table.

use crate::bms::jk_pb::codec as jk_pb;
use crate::protocol::{checksum, find_frame, Decoded, FrameError, Scan};
use serde_json::json;

/// Command length.
pub const COMMAND_LEN: usize = 20;
/// Command start.
pub const COMMAND_HEADER: [u8; 4] = [0xAA, 0x55, 0x90, 0xEB];
/// Device info request (answered by a type 3 frame).
pub const CMD_DEVICE_INFO: u8 = 0x97;
/// Cell info request (answered by a type 1 settings frame, then type 2 cell-info frames).
pub const CMD_CELL_INFO: u8 = 0x96;
/// Frame types.
pub const TYPE_SETTINGS: u8 = 1;
/// Cell info.
pub const TYPE_CELL_INFO: u8 = 2;
/// Device info.
pub const TYPE_DEVICE_INFO: u8 = 3;
/// Frame length (the frame scanner is JK PB's: header, 300 bytes, sum8).
pub const FRAME_LEN: usize = jk_pb::FRAME_LEN;

/// The cell-info layout of a BMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Up to 24 cells, hardware before 11.
    Jk02_24s,
    /// Up to 32 cells, hardware 11 and newer (the JK PB layout).
    Jk02_32s,
}

impl Layout {
    /// The layout of a BMS by its hardware version (`"11.XW"`, `"10.xw"`), as esphome-jk-bms
    /// tells its users to choose (JK02_24S below hardware 11, JK02_32S from 11), else by its
    /// software version (`"11.26"`: the majors go together in every report); neither readable:
    /// 32S, what JK boards sold since 2022 run.
    pub fn for_versions(hardware: Option<&str>, software: Option<&str>) -> Layout {
        let major = |version: &str| {
            let digits: String = version
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u32>().ok()
        };
        match hardware.and_then(major).or_else(|| software.and_then(major)) {
            Some(major) if major < 11 => Layout::Jk02_24s,
            _ => Layout::Jk02_32s,
        }
    }

    /// The layout a device-info frame's battery says.
    pub fn of(info: &crate::battery::Battery) -> Layout {
        Layout::for_versions(info.hardware_version.as_deref(), info.firmware_version.as_deref())
    }

    /// Its name in the sources (esphome-jk-bms `protocol_version`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Jk02_24s => "JK02_24S",
            Layout::Jk02_32s => "JK02_32S",
        }
    }
}

/// The 20-byte command `cmd` (no value).
pub fn command(cmd: u8) -> Vec<u8> {
    let mut out = vec![0u8; COMMAND_LEN];
    if let Some(head) = out.get_mut(..4) {
        head.copy_from_slice(&COMMAND_HEADER);
    }
    if let Some(slot) = out.get_mut(4) {
        *slot = cmd;
    }
    let sum = checksum::sum8(out.get(..COMMAND_LEN - 1).unwrap_or_default());
    if let Some(last) = out.last_mut() {
        *last = sum;
    }
    out
}

/// Finds a 300-byte frame with a good checksum at the start of `buf` (the JK PB scanner).
pub fn scan(buf: &[u8]) -> Scan {
    jk_pb::scan(buf)
}

/// Finds a 20-byte command at the start of `buf` (the simulator's side).
pub fn scan_command(buf: &[u8]) -> Scan {
    if !buf.iter().zip(COMMAND_HEADER).all(|(&b, h)| b == h) {
        let next = buf.iter().skip(1).position(|&b| b == COMMAND_HEADER[0]).map_or(buf.len(), |p| p + 1);
        return Scan::Garbage { skip: next.max(1) };
    }
    match buf.get(..COMMAND_LEN) {
        None => Scan::Incomplete,
        Some(cmd)
            if cmd.last().copied()
                == Some(checksum::sum8(cmd.get(..COMMAND_LEN - 1).unwrap_or_default())) =>
        {
            Scan::Frame { len: COMMAND_LEN }
        }
        Some(_) => Scan::Garbage { skip: 1 },
    }
}

/// The frame type (byte 4) of a frame.
pub fn frame_type(frame: &[u8]) -> Option<u8> {
    frame.get(4).copied()
}

/// A JK02_24S cell-info frame rewritten in the JK02_32S places: cells 1..24 stay at 6..54, the
/// block from the enable mask to the last cell resistance (54..112) moves 16 bytes up (70..128),
/// everything from the MOS temperature on (112..268) 32 bytes up (144..300); the alarm word
/// (24S: 136) goes to the 32S alarm word (166), the sensor presence byte is set to T1 and T2
/// (a 24S BMS has two sensors), the checksum is recomputed. Bytes with no 24S source stay 0.
pub fn widen_24s(frame: &[u8]) -> Result<Vec<u8>, FrameError> {
    let got = frame.len();
    if got < FRAME_LEN {
        return Err(FrameError::TooShort { need: FRAME_LEN, got });
    }
    let part = |from: usize, to: usize| frame.get(from..to).ok_or(FrameError::TooShort { need: to, got });
    let mut out = vec![0u8; FRAME_LEN];
    let put = |out: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        if let Some(slot) = out.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    let out_ = &mut out;
    let mut put = |at: usize, bytes: &[u8]| put(out_, at, bytes);
    put(0, part(0, 54)?);
    put(70, part(54, 112)?);
    put(144, part(112, 268)?);
    let alarms = part(136, 138)?.to_vec();
    put(166, &[0, 0, 0, 0]);
    put(166, &alarms);
    put(214, &[0x06]);
    let sum = checksum::sum8(out.get(..FRAME_LEN - 1).unwrap_or_default());
    if let Some(last) = out.last_mut() {
        *last = sum;
    }
    Ok(out)
}

/// Decodes one frame; a cell-info frame in `layout`.
pub fn decode_frame(frame: &[u8], layout: Layout) -> Result<Decoded, FrameError> {
    let frame = frame.get(..FRAME_LEN).ok_or(FrameError::TooShort { need: FRAME_LEN, got: frame.len() })?;
    let mut decoded = match (frame_type(frame), layout) {
        (Some(TYPE_CELL_INFO), Layout::Jk02_24s) => {
            // The checksum is checked on the frame as received, before it is moved.
            jk_pb::decode(frame)?;
            jk_pb::decode(&widen_24s(frame)?)?
        }
        _ => jk_pb::decode(frame)?,
    };
    if frame_type(frame) == Some(TYPE_CELL_INFO) {
        decoded.extra.insert("layout", json!(layout.name()));
    }
    Ok(decoded)
}

/// `decode` command: the frames (or their notifications, in order) of one exchange; the
/// device-info frame, when given, picks the cell-info layout (else JK02_32S), and every frame
/// found is decoded and merged. A command alone is described.
pub fn decode_all(bytes: &[u8]) -> Result<Decoded, FrameError> {
    let mut frames: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    while let Some((frame, next)) = find_frame(bytes.get(at..).unwrap_or_default(), scan) {
        frames.push(frame);
        at += next;
    }
    if frames.is_empty() {
        if let Some((cmd, _)) = find_frame(bytes, scan_command) {
            let mut d = Decoded::default();
            d.extra.insert("command", json!(cmd.get(4).copied().unwrap_or(0)));
            return Ok(d);
        }
        // The decoder's own error for what is there.
        return jk_pb::decode(bytes);
    }
    let layout = frames
        .iter()
        .filter(|f| frame_type(f) == Some(TYPE_DEVICE_INFO))
        .find_map(|f| Some(Layout::of(&jk_pb::decode(f).ok()?.battery)))
        .unwrap_or(Layout::Jk02_32s);
    let mut merged = Decoded::default();
    for frame in frames {
        let d = decode_frame(frame, layout)?;
        merged.battery.merge(&d.battery);
        merged.extra.extend(d.extra);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bms::jk_pb::codec::Status;

    #[test]
    fn commands_match_the_documented_bytes() {
        let info = command(CMD_DEVICE_INFO);
        assert_eq!(info.len(), 20);
        assert_eq!(&info[..6], &[0xAA, 0x55, 0x90, 0xEB, 0x97, 0x00]);
        // sum8 of AA 55 90 EB 97 = 0x311 -> 0x11.
        assert_eq!(info[19], 0x11);
        assert_eq!(command(CMD_CELL_INFO)[19], 0x10);
        assert_eq!(scan_command(&info), Scan::Frame { len: 20 });
    }

    #[test]
    fn the_layout_follows_the_hardware_major_then_the_software_major() {
        // Boards from esphome-jk-bms's list: B1A20S15P hw 10.xw sw 10.10 used JK02_24S, B1A8S10P
        // hw 11.XW sw 11.261 JK02_32S.
        assert_eq!(Layout::for_versions(Some("10.xw"), Some("10.10")), Layout::Jk02_24s);
        assert_eq!(Layout::for_versions(Some("11.XW"), Some("11.261")), Layout::Jk02_32s);
        assert_eq!(Layout::for_versions(Some("V10.XW"), None), Layout::Jk02_24s);
        assert_eq!(Layout::for_versions(Some("?"), Some("10.09")), Layout::Jk02_24s);
        assert_eq!(Layout::for_versions(None, Some("15.41")), Layout::Jk02_32s);
        assert_eq!(Layout::for_versions(None, None), Layout::Jk02_32s);
    }

    /// A JK02_24S cell-info frame built from the esphome-jk-bms offsets (the oracle is the
    /// table in docs/protocols/jk_ble.md, not the code under test): 4 cells of 3.301..3.304 V,
    /// mask 0x0F at 54, 13.210 V at 118, -2.500 A at 126, T1 21.5 °C at 130, T2 22.0 °C at 132,
    /// alarm bit 4 (cell overvoltage in the JK PB table) at 136, SoC 77 at 141, 123.456 Ah
    /// remaining at 142, 280 Ah nominal at 146, 42 cycles at 150, charge MOS on (166), discharge
    /// off (167).
    fn frame_24s() -> Vec<u8> {
        let mut f = vec![0u8; FRAME_LEN];
        f[..4].copy_from_slice(&jk_pb::HEADER);
        f[4] = TYPE_CELL_INFO;
        for (i, mv) in [3301u16, 3302, 3303, 3304].iter().enumerate() {
            f[6 + 2 * i..8 + 2 * i].copy_from_slice(&mv.to_le_bytes());
        }
        f[54..58].copy_from_slice(&0x0Fu32.to_le_bytes());
        f[118..122].copy_from_slice(&13_210u32.to_le_bytes());
        f[126..130].copy_from_slice(&(-2500i32).to_le_bytes());
        f[130..132].copy_from_slice(&215i16.to_le_bytes());
        f[132..134].copy_from_slice(&220i16.to_le_bytes());
        f[136..138].copy_from_slice(&0x0010u16.to_le_bytes());
        f[141] = 77;
        f[142..146].copy_from_slice(&123_456u32.to_le_bytes());
        f[146..150].copy_from_slice(&280_000u32.to_le_bytes());
        f[150..154].copy_from_slice(&42u32.to_le_bytes());
        f[166] = 1;
        f[167] = 0;
        f[299] = checksum::sum8(&f[..299]);
        f
    }

    #[test]
    fn a_24s_frame_decodes_at_the_24s_offsets() {
        let d = decode_frame(&frame_24s(), Layout::Jk02_24s).unwrap();
        let b = &d.battery;
        assert_eq!(b.cell_voltages_v, Some(vec![3.301, 3.302, 3.303, 3.304]));
        assert_eq!(b.voltage_v, Some(13.21));
        assert_eq!(b.current_a, Some(-2.5));
        assert_eq!(b.temperatures_c, Some(vec![21.5, 22.0]));
        assert_eq!(b.soc_percent, Some(77.0));
        assert_eq!(b.remaining_capacity_ah, Some(123.456));
        assert_eq!(b.nominal_capacity_ah, Some(280.0));
        assert_eq!(b.cycles, Some(42));
        assert_eq!((b.charge_fet, b.discharge_fet), (Some(true), Some(false)));
        assert!(b.alarms.high_cell_voltage.is_some());
        assert_eq!(d.extra.get("layout"), Some(&json!("JK02_24S")));
    }

    #[test]
    fn a_32s_frame_is_the_jk_pb_status_frame() {
        let status = Status { cells_mv: vec![3300; 16], voltage_mv: 52_800, soc: 50, ..Status::default() };
        let d = decode_frame(&status.encode(), Layout::Jk02_32s).unwrap();
        assert_eq!(d.battery.cell_count, Some(16));
        assert_eq!(d.battery.voltage_v, Some(52.8));
        // The same bytes read as 24S are something else: the layout matters.
        let wrong = decode_frame(&status.encode(), Layout::Jk02_24s).unwrap();
        assert_ne!(wrong.battery.voltage_v, Some(52.8));
    }

    #[test]
    fn a_bad_checksum_is_refused_in_either_layout() {
        let mut f = frame_24s();
        f[120] ^= 0xFF;
        for layout in [Layout::Jk02_24s, Layout::Jk02_32s] {
            assert!(matches!(decode_frame(&f, layout), Err(FrameError::BadChecksum { .. })));
        }
    }
}
