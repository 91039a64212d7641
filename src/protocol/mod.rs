//! Pure codecs, one file per BMS: build requests, find frames in a byte stream, decode responses.
//!
//! Nothing here does I/O, reads a clock or logs: bytes in, typed values or a precise
//! [`FrameError`] out. `tests/architecture.rs` enforces that.

pub mod checksum;
pub mod field;
pub mod gatt;
pub mod json;
pub mod modbus;
pub mod writes;
pub mod yd1363;

use crate::battery::Battery;
use std::collections::BTreeMap;

/// What a scanner found at the start of a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A complete, checked frame occupies `buf[..len]`.
    Frame {
        /// Length of the frame in bytes.
        len: usize,
    },
    /// The buffer starts like a frame but more bytes are needed.
    Incomplete,
    /// The first `skip` bytes cannot start a valid frame; drop them and scan again.
    Garbage {
        /// How many bytes to drop.
        skip: usize,
    },
}

/// Why a broadcast BMS (CAN) has no reading now: the frames it must have sent lately.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no fresh {} within {within:?}", frames.join(", "))]
pub struct MissingFrames {
    /// The frames missing (their ids, or which cell frame).
    pub frames: Vec<String>,
    /// How recent they must be.
    pub within: std::time::Duration,
}

/// Why a frame was rejected. Each variant carries what a person needs to see the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the frame needs.
    #[error("frame too short: need {need} bytes, got {got}")]
    TooShort {
        /// Bytes the frame needs.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// The first byte is not the protocol's start byte.
    #[error("bad start byte 0x{found:02X} (expected 0x{expected:02X})")]
    BadStart {
        /// Expected start byte.
        expected: u8,
        /// Byte found.
        found: u8,
    },
    /// The last byte is not the protocol's end byte.
    #[error("bad end byte 0x{found:02X} (expected 0x{expected:02X})")]
    BadEnd {
        /// Expected end byte.
        expected: u8,
        /// Byte found.
        found: u8,
    },
    /// The checksum or CRC does not match.
    #[error("checksum mismatch: frame says 0x{expected:04X}, computed 0x{computed:04X}")]
    BadChecksum {
        /// Checksum carried by the frame.
        expected: u32,
        /// Checksum computed over the frame.
        computed: u32,
    },
    /// The length field disagrees with the bytes present.
    #[error("length mismatch: header says {declared} data bytes, frame has {actual}")]
    LengthMismatch {
        /// Length the header declares.
        declared: usize,
        /// Length present.
        actual: usize,
    },
    /// The BMS answered with an error status.
    #[error("BMS rejected the request: status 0x{status:02X}")]
    Status {
        /// Status byte.
        status: u8,
    },
    /// The reply is for another command/register than the one decoded.
    #[error("unexpected command 0x{found:02X} (expected 0x{expected:02X})")]
    UnexpectedCommand {
        /// Command expected.
        expected: u8,
        /// Command found.
        found: u8,
    },
    /// The reply comes from another bus address.
    #[error("reply from address 0x{found:02X}, expected 0x{expected:02X}")]
    UnexpectedAddress {
        /// Address expected.
        expected: u8,
        /// Address found.
        found: u8,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid value in field {field}")]
    InvalidField {
        /// Name of the field.
        field: &'static str,
    },
    /// An acknowledgement for another register than the one written.
    #[error("acknowledgement for register 0x{found:04X}, expected 0x{expected:04X}")]
    UnexpectedRegister {
        /// Register written.
        expected: u16,
        /// Register acknowledged.
        found: u16,
    },
    /// A reply without the acknowledgement that names its sender.
    #[error("no FC16 acknowledgement after the frame: the sender is unknown")]
    MissingAck,
    /// A CAN frame whose id the dialect does not define.
    #[error("CAN id 0x{id:X} is not a {dialect} frame ({expected})")]
    UnknownCanId {
        /// The frame's id.
        id: u32,
        /// The dialect decoding it.
        dialect: &'static str,
        /// The ids the dialect has.
        expected: &'static str,
    },
    /// A Modbus exception reply.
    #[error("Modbus exception code 0x{code:02X}")]
    Exception {
        /// Exception code.
        code: u8,
    },
}

/// A decoded frame: what it says about the battery, plus protocol details that have no place in
/// the model (bitmasks, dates, counters), kept for `bms-bridge decode` and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// The battery values this frame carries.
    pub battery: Battery,
    /// Other fields by name.
    pub extra: BTreeMap<&'static str, serde_json::Value>,
}

/// Like `scan`, but when the buffer only looks like the start of a long frame, a complete frame
/// further on wins: a stray start byte with a large length field must not hide a real frame
/// behind it (resynchronisation). Returns `Garbage` up to that frame.
pub fn scan_resync(buf: &[u8], scan: impl Fn(&[u8]) -> Scan) -> Scan {
    match scan(buf) {
        Scan::Incomplete => (1..buf.len())
            .find(|&i| buf.get(i..).is_some_and(|rest| matches!(scan(rest), Scan::Frame { .. })))
            .map_or(Scan::Incomplete, |skip| Scan::Garbage { skip }),
        other => other,
    }
}

/// Finds the first frame in `buf` using `scan`, skipping garbage. Returns the frame and the byte
/// offset after it, or `None` when no complete frame is present.
pub fn find_frame(buf: &[u8], scan: impl Fn(&[u8]) -> Scan) -> Option<(&[u8], usize)> {
    let mut start = 0;
    while let Some(rest) = buf.get(start..).filter(|rest| !rest.is_empty()) {
        match scan_resync(rest, &scan) {
            Scan::Frame { len } => return rest.get(..len).map(|frame| (frame, start + len)),
            Scan::Incomplete => return None,
            Scan::Garbage { skip } => start += skip.max(1),
        }
    }
    None
}

/// Parses hex bytes written as `DD 03 00`, `DD0300`, `0xDD,0x03` or a mix.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .map(|t| t.trim_start_matches("0x").trim_start_matches("0X"))
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    // By bytes, not `&str` ranges: a two-byte cut through a non-ASCII character must be an error.
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = String::from_utf8_lossy(pair);
            u8::from_str_radix(&pair, 16).map_err(|_| format!("not a hex byte: {pair:?}"))
        })
        .collect()
}

/// The first frame `scan` finds in `bytes`, or all of `bytes` when there is none (the decoder
/// then says what is wrong with them).
pub fn first_frame(bytes: &[u8], scan: fn(&[u8]) -> Scan) -> &[u8] {
    find_frame(bytes, scan).map_or(bytes, |(frame, _)| frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_in_the_usual_spellings() {
        assert_eq!(parse_hex("DD 03 00"), Ok(vec![0xDD, 3, 0]));
        assert_eq!(parse_hex("dd0300"), Ok(vec![0xDD, 3, 0]));
        assert_eq!(parse_hex("0xDD,0x03"), Ok(vec![0xDD, 3]));
        assert!(parse_hex("DD 0").is_err());
        assert!(parse_hex("ZZ").is_err());
        assert!(parse_hex("aé1").is_err());
    }
}
