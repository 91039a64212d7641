//! YD/T 1363 ASCII framing, shared by the BMSes that use it (EG4 LifePower4, Daren / BASEN):
//! `~ VER ADR CID1 CID2 LENGTH INFO CHKSUM \r`, every field as uppercase hex text.
//!
//! LENGTH = 4-bit LCHKSUM + 12-bit INFO length in characters, LCHKSUM = two's complement (mod 16)
//! of the sum of the three length nibbles; CHKSUM = two's complement (mod 65536) of the sum of
//! the characters between `~` and CHKSUM (cpttinkering/daren-485 README and the BASEN document it
//! cites; every capture in `tests/vectors/eg4_lifepower*.json` and `daren_485.json` checks out).
//! In a reply CID2 is the return code RTN (0 = ok). What INFO means is each BMS's own business.

use super::field;
use super::{Decoded, FrameError, Scan};
use serde_json::json;

/// `~`.
pub const START: u8 = 0x7E;
/// `\r`.
pub const END: u8 = 0x0D;
/// `~`, VER, ADR, CID1, CID2 (2 chars each), LENGTH (4), CHKSUM (4), `\r`.
pub const MIN_FRAME: usize = 18;
/// Longest frame accepted (the 12-bit INFO length at its maximum).
pub const MAX_FRAME: usize = 4096 + MIN_FRAME;
/// RTN of a reply that carries data.
pub const RTN_OK: u8 = 0;

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

/// A frame from its fields; `info` is hex text (cut at 4095 characters).
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

/// `bytes` as uppercase hex text, for an INFO field.
pub fn hex_text(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// Finds a frame at the start of `buf`: `~`, hex characters, `\r`, and a valid frame (checksum,
/// length) between them; anything else is garbage from its first byte.
pub fn scan(buf: &[u8]) -> Scan {
    match buf.first() {
        None => return Scan::Incomplete,
        Some(&START) => {}
        Some(_) => return Scan::Garbage { skip: buf.iter().position(|&b| b == START).unwrap_or(buf.len()) },
    }
    for (i, &b) in buf.iter().enumerate().skip(1).take(MAX_FRAME) {
        if b == END {
            return match buf.get(..=i) {
                Some(frame) if parse(frame).is_ok() => Scan::Frame { len: i + 1 },
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

/// A checked frame, taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Protocol version (0x20 EG4 LifePower4, 0x22 Daren).
    pub ver: u8,
    /// Device address.
    pub adr: u8,
    /// Device type code.
    pub cid1: u8,
    /// Command in a request, return code (RTN) in a reply.
    pub cid2: u8,
    /// VER, ADR, CID1, CID2 and LENGTH as sent (12 characters).
    pub header_chars: &'a [u8; 12],
    /// INFO as sent (hex characters).
    pub info_chars: &'a [u8],
    /// CHKSUM as sent (4 characters).
    pub checksum_chars: &'a [u8; 4],
}

impl Frame<'_> {
    /// INFO as bytes (two hex characters each).
    pub fn info(&self) -> Result<Vec<u8>, FrameError> {
        if self.info_chars.len() % 2 != 0 {
            return Err(FrameError::InvalidField { field: "info_odd_length" });
        }
        self.info_chars.chunks(2).map(|pair| hex_value(pair).map(|v| v as u8)).collect()
    }
}

/// Checks a whole frame (start, end, hex text, checksum, length and its LCHKSUM).
pub fn parse(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
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
    let (body, checksum_chars) = chars.split_last_chunk::<4>().ok_or(too_short)?;
    if !chars.iter().all(|b| is_hex(*b)) {
        return Err(FrameError::InvalidField { field: "hex" });
    }
    let carried = hex_value(checksum_chars)?;
    let computed = checksum(body);
    if carried != computed {
        return Err(FrameError::BadChecksum { expected: carried.into(), computed: computed.into() });
    }
    let (header_chars, info_chars) = body.split_first_chunk::<12>().ok_or(too_short)?;
    let [v0, v1, a0, a1, c0, c1, d0, d1, l0, l1, l2, l3] = *header_chars;
    let byte = |hi: u8, lo: u8| hex_value(&[hi, lo]).map(|v| v as u8);
    let length = hex_value(&[l0, l1, l2, l3])?;
    let declared = usize::from(length & 0x0FFF);
    if info_chars.len() != declared {
        return Err(FrameError::LengthMismatch { declared, actual: info_chars.len() });
    }
    if length_field(length & 0x0FFF) != length {
        return Err(FrameError::InvalidField { field: "lchksum" });
    }
    Ok(Frame {
        ver: byte(v0, v1)?,
        adr: byte(a0, a1)?,
        cid1: byte(c0, c1)?,
        cid2: byte(d0, d1)?,
        header_chars,
        info_chars,
        checksum_chars,
    })
}

/// Checks that a reply comes from the device asked and carries data: VER, CID1, ADR (when
/// `address` is given) and RTN 0 (another RTN is the BMS's refusal, [`FrameError::Status`]).
pub fn check_reply(frame: &Frame<'_>, ver: u8, cid1: u8, address: Option<u8>) -> Result<(), FrameError> {
    if frame.ver != ver {
        return Err(FrameError::InvalidField { field: "ver" });
    }
    if frame.cid1 != cid1 {
        return Err(FrameError::InvalidField { field: "cid1" });
    }
    if let Some(expected) = address.filter(|a| *a != frame.adr) {
        return Err(FrameError::UnexpectedAddress { expected, found: frame.adr });
    }
    if frame.cid2 != RTN_OK {
        return Err(FrameError::Status { status: frame.cid2 });
    }
    Ok(())
}

/// The header of a checked frame for `bms-bridge decode` and the vectors: the text, VER, ADR,
/// CID1, the length field, the checksum, CID2, and RTN (the same field) when INFO is present.
pub fn describe(bytes: &[u8], frame: &Frame<'_>) -> Decoded {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let header = frame.header_chars;
    let mut d = Decoded::default();
    let e = &mut d.extra;
    e.insert("ascii", json!(text(bytes.strip_suffix(&[END]).unwrap_or(bytes))));
    e.insert("ascii_header", json!(text(header)));
    e.insert("ver", json!(frame.ver));
    e.insert("adr", json!(frame.adr));
    e.insert("cid1", json!(frame.cid1));
    e.insert("length_field_hex", json!(text(header.get(8..12).unwrap_or_default())));
    e.insert("lchksum_nibble", json!(text(header.get(8..9).unwrap_or_default())));
    e.insert("info_len_chars", json!(frame.info_chars.len()));
    e.insert("info_len_matches", json!(true));
    e.insert("checksum_hex", json!(text(frame.checksum_chars)));
    e.insert("checksum_valid_pylontech_style", json!(true));
    // CID2 of a request, RTN of a reply: the frame does not say which it is. A frame with INFO
    // is read as a reply (the requests of these BMSes mostly have none).
    e.insert("cid2", json!(frame.cid2));
    if !frame.info_chars.is_empty() {
        e.insert("rtn", json!(frame.cid2));
    }
    d
}

/// Reads INFO bytes front to back: the layouts of these BMSes are lists of fields whose
/// position depends on counts sent before them (cells, temperature sensors).
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first byte of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, at: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.at)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        let out = self.data.get(self.at..self.at + n).ok_or(FrameError::InvalidField { field })?;
        self.at += n;
        Ok(out)
    }

    /// The next byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        self.take(1, field).map(|b| b.first().copied().unwrap_or_default())
    }

    /// The next big-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        field::u16_at(self.take(2, field)?, 0).ok_or(FrameError::InvalidField { field })
    }

    /// The next big-endian i16.
    pub fn i16(&mut self, field: &'static str) -> Result<i16, FrameError> {
        self.u16(field).map(|v| v as i16)
    }

    /// The next big-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        field::u32_at(self.take(4, field)?, 0).ok_or(FrameError::InvalidField { field })
    }

    /// `count` big-endian u16s.
    pub fn u16s(&mut self, count: usize, field: &'static str) -> Result<Vec<u16>, FrameError> {
        (0..count).map(|_| self.u16(field)).collect()
    }

    /// Fails unless every byte was read: a layout that does not consume INFO exactly is the
    /// wrong layout (another command's reply, another firmware).
    pub fn end(&self, field: &'static str) -> Result<(), FrameError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(FrameError::InvalidField { field })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_of_the_lifepower4_document() {
        assert_eq!(encode(0x20, 1, 0x4A, 0x42, ""), b"~20014A420000FDA2\r".to_vec());
        assert_eq!(encode(0x22, 1, 0x4A, 0x42, "01"), b"~22014A42E00201FD28\r".to_vec());
    }

    #[test]
    fn cursor_reads_in_order_and_checks_the_end() {
        let data = [0x01, 0x0C, 0xE4, 0xFF, 0x38, 0, 0, 0, 9];
        let mut c = Cursor::new(&data);
        assert_eq!(c.u8("a"), Ok(1));
        assert_eq!(c.u16("b"), Ok(3300));
        assert_eq!(c.i16("c"), Ok(-200));
        assert!(c.end("more").is_err());
        assert_eq!(c.u32("d"), Ok(9));
        assert_eq!(c.end("more"), Ok(()));
        assert_eq!(c.u8("e"), Err(FrameError::InvalidField { field: "e" }));
    }

    #[test]
    fn frame_parts_and_info_bytes() {
        let frame = encode(0x22, 3, 0x4A, 0, "0A0B");
        let f = parse(&frame).unwrap();
        assert_eq!((f.ver, f.adr, f.cid1, f.cid2), (0x22, 3, 0x4A, 0));
        assert_eq!(f.info(), Ok(vec![0x0A, 0x0B]));
        assert_eq!(scan(&frame), Scan::Frame { len: frame.len() });
        let mut odd = encode(0x22, 3, 0x4A, 0, "0A0");
        assert_eq!(
            parse(&odd).map(|f| f.info()),
            Ok(Err(FrameError::InvalidField { field: "info_odd_length" }))
        );
        odd[5] = b'X';
        assert_eq!(scan(&odd), Scan::Garbage { skip: 1 });
    }

    proptest::proptest! {
        /// Any frame encodes to one that is found whole and parses back to its fields; changing
        /// any one byte of it to another value is always refused (the character-sum checksum
        /// catches every single change, the others break the structure).
        #[test]
        fn any_frame_round_trips_and_every_single_change_is_refused(
            ver: u8, adr: u8, cid1: u8, cid2: u8,
            info in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            at: proptest::sample::Index, to: u8,
        ) {
            let frame = encode(ver, adr, cid1, cid2, &hex_text(&info));
            proptest::prop_assert_eq!(scan(&frame), Scan::Frame { len: frame.len() });
            let f = parse(&frame).unwrap();
            proptest::prop_assert_eq!((f.ver, f.adr, f.cid1, f.cid2), (ver, adr, cid1, cid2));
            proptest::prop_assert_eq!(f.info().unwrap(), info);
            let i = at.index(frame.len());
            proptest::prop_assume!(frame[i] != to);
            let mut changed = frame.clone();
            changed[i] = to;
            proptest::prop_assert!(parse(&changed).is_err(), "byte {} -> {:02X} accepted", i, to);
        }
    }
}
