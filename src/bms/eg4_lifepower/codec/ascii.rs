//! LifePower4 v2 ASCII frames (Pylontech / YD-T1363 style), seen on the same bus as the binary
//! protocol: `~ VER ADR CID1 CID2 LENGTH INFO CHKSUM \r`, every field as uppercase hex text.
//! LENGTH = 4-bit LCHKSUM + 12-bit INFO length in characters; CHKSUM = two's complement (mod
//! 65536) of the sum of the characters between `~` and CHKSUM (vectors README). In a reply CID2
//! is the return code (0 = ok). The analog reply (0x42) is decoded as far as a third-party decoder
//! confirmed it: flag, address, cell count and cell voltages (vector `lp4_resp_analog_0x42_addr1_16s`).

use crate::protocol::field;
use crate::protocol::{Decoded, FrameError, Scan};
use serde_json::json;

/// `~`.
pub const START: u8 = 0x7E;
/// `\r`.
pub const END: u8 = 0x0D;
/// `~`, VER, ADR, CID1, CID2 (2 chars each), LENGTH (4), CHKSUM (4), `\r`.
pub const MIN_FRAME: usize = 18;
/// Longest frame accepted.
pub const MAX_FRAME: usize = 4096 + MIN_FRAME;
/// EG4's CID1 (Pylontech uses 0x46).
pub const CID1_EG4: u8 = 0x4A;
/// CID2: get analog values.
pub const CID2_ANALOG: u8 = 0x42;
/// CID2: get alarm information.
pub const CID2_ALARM: u8 = 0x44;

/// Two's complement of the character sum (the frame checksum).
pub fn checksum(chars: &[u8]) -> u16 {
    let sum = chars.iter().fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)));
    (!sum).wrapping_add(1)
}

/// LENGTH field for an INFO of `len` characters: LCHKSUM nibble + 12-bit length.
pub fn length_field(len: u16) -> u16 {
    let len = len & 0x0FFF;
    let nibbles = (len & 0xF) + ((len >> 4) & 0xF) + ((len >> 8) & 0xF);
    let lchk = (!nibbles).wrapping_add(1) & 0xF;
    lchk << 12 | len
}

/// A frame from its fields; `info` is hex text.
pub fn encode(ver: u8, adr: u8, cid1: u8, cid2: u8, info: &str) -> Vec<u8> {
    let info_len = u16::try_from(info.len()).unwrap_or(0x0FFF).min(0x0FFF);
    let body = format!(
        "{ver:02X}{adr:02X}{cid1:02X}{cid2:02X}{:04X}{}",
        length_field(info_len),
        info.get(..usize::from(info_len)).unwrap_or(info)
    );
    let mut out = vec![START];
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(format!("{:04X}", checksum(body.as_bytes())).as_bytes());
    out.push(END);
    out
}

/// A request: `~20014A420000FDA2\r` for analog values of address 1.
pub fn request(adr: u8, cid2: u8) -> Vec<u8> {
    encode(0x20, adr, CID1_EG4, cid2, "")
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// Finds an ASCII frame at the start of `buf` (which starts with `~`).
pub fn scan(buf: &[u8]) -> Scan {
    for (i, &b) in buf.iter().enumerate().skip(1).take(MAX_FRAME) {
        if b == END {
            return match buf.get(..=i) {
                Some(frame) if check(frame).is_ok() => Scan::Frame { len: i + 1 },
                _ => Scan::Garbage { skip: 1 },
            };
        }
        if !is_hex(b) {
            return Scan::Garbage { skip: 1 };
        }
    }
    if buf.len() > MAX_FRAME {
        Scan::Garbage { skip: 1 }
    } else {
        Scan::Incomplete
    }
}

fn hex_value(chars: &[u8]) -> Result<u16, FrameError> {
    let text = std::str::from_utf8(chars).map_err(|_| FrameError::InvalidField { field: "hex" })?;
    u16::from_str_radix(text, 16).map_err(|_| FrameError::InvalidField { field: "hex" })
}

/// The character fields of a checked frame.
struct Parts<'a> {
    /// VER, ADR, CID1, CID2, LENGTH.
    header: &'a [u8; 12],
    /// INFO.
    info: &'a [u8],
    /// CHKSUM.
    checksum_chars: &'a [u8; 4],
}

fn check(frame: &[u8]) -> Result<Parts<'_>, FrameError> {
    let got = frame.len();
    let too_short = FrameError::TooShort { need: MIN_FRAME, got };
    if got < MIN_FRAME {
        return Err(too_short);
    }
    let (&[start], chars, &[end]) = field::frame_parts::<1, 1>(frame).ok_or(too_short)?;
    if start != START {
        return Err(FrameError::BadStart { expected: START, found: start });
    }
    if end != END {
        return Err(FrameError::BadEnd { expected: END, found: end });
    }
    let (body, checksum_chars) = chars.split_last_chunk().ok_or(too_short)?;
    if !chars.iter().all(|b| is_hex(*b)) {
        return Err(FrameError::InvalidField { field: "hex" });
    }
    let carried = hex_value(checksum_chars)?;
    let computed = checksum(body);
    if carried != computed {
        return Err(FrameError::BadChecksum { expected: carried.into(), computed: computed.into() });
    }
    let (header, info) = body.split_first_chunk::<12>().ok_or(too_short)?;
    let length = hex_value(&header[8..12])?;
    let declared = usize::from(length & 0x0FFF);
    if info.len() != declared {
        return Err(FrameError::LengthMismatch { declared, actual: info.len() });
    }
    if length_field(length & 0x0FFF) != length {
        return Err(FrameError::InvalidField { field: "lchksum" });
    }
    Ok(Parts { header, info, checksum_chars })
}

/// Decodes an ASCII frame: header fields, and the cells of an analog reply.
pub fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    let Parts { header, info, checksum_chars } = check(frame)?;
    let byte = |chars: &[u8]| hex_value(chars).map(|v| v as u8);
    let (ver, adr, cid1, cid2) =
        (byte(&header[0..2])?, byte(&header[2..4])?, byte(&header[4..6])?, byte(&header[6..8])?);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut d = Decoded::default();
    let e = &mut d.extra;
    e.insert("ascii", json!(text(frame.strip_suffix(&[END]).unwrap_or(frame))));
    e.insert("ascii_header", json!(text(header)));
    e.insert("ver", json!(ver));
    e.insert("adr", json!(adr));
    e.insert("cid1", json!(cid1));
    e.insert("length_field_hex", json!(text(&header[8..12])));
    e.insert("lchksum_nibble", json!(text(&header[8..9])));
    e.insert("info_len_chars", json!(info.len()));
    e.insert("info_len_matches", json!(true));
    e.insert("checksum_hex", json!(text(checksum_chars)));
    e.insert("checksum_valid_pylontech_style", json!(true));
    if info.is_empty() {
        e.insert("cid2", json!(cid2));
        return Ok(d);
    }
    e.insert("rtn", json!(cid2));
    if let Some(first) = info.first_chunk::<6>() {
        e.insert("info_first_bytes", json!({ "flag": text(&first[0..2]), "adr": text(&first[2..4]) }));
    }
    if cid2 == 0 {
        if let Some(cells) = analog_cells(info) {
            d.battery.cell_count = u16::try_from(cells.len()).ok();
            d.battery.cell_voltages_v = Some(cells);
        }
    }
    Ok(d)
}

/// Cells of an analog reply: flag, address, count, count x mV. `None` unless every cell is a
/// plausible voltage (an alarm reply has the same start but 2-character entries).
fn analog_cells(info: &[u8]) -> Option<Vec<f64>> {
    let count = usize::from(hex_value(info.get(4..6)?).ok()?);
    if count == 0 || count > 32 {
        return None;
    }
    let cells: Option<Vec<u16>> =
        (0..count).map(|i| info.get(6 + 4 * i..10 + 4 * i).and_then(|c| hex_value(c).ok())).collect();
    let cells = cells?;
    cells
        .iter()
        .all(|mv| (1000..=5000).contains(mv))
        .then(|| cells.iter().map(|mv| f64::from(*mv) / 1000.0).collect())
}
