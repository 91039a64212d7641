//! Plain Modbus RTU frames, pure: the bytes that Renogy, EG4-LL, JK PB (trigger + ACK) and
//! FoxESS put on the wire. The daemon talks to plain Modbus BMSes through tokio-modbus; these
//! functions serve `bms-bridge decode`, the vectors, the simulators' request filter and the
//! protocols whose framing tokio-modbus cannot carry (JK PB's 300-byte reply, FoxESS's `0D 0A`).
//!
//! [`parse_read_response`] checks, in this order: length against the byte count, CRC, address,
//! function (an exception reply is reported as [`FrameError::Exception`]).

use super::checksum::crc16_modbus;
use super::field;
use super::{FrameError, Scan};

/// Read holding registers.
pub const FC_READ_HOLDING: u8 = 0x03;
/// Write multiple registers.
pub const FC_WRITE_MULTIPLE: u8 = 0x10;
/// Set on the function code of an exception reply.
pub const EXCEPTION_BIT: u8 = 0x80;
/// Largest RTU frame.
pub const MAX_FRAME: usize = 256;

/// Appends the CRC, low byte first.
pub fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
    let crc = crc16_modbus(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// FC03 request: `addr 03 start count CRC`.
pub fn read_request(address: u8, start: u16, count: u16) -> Vec<u8> {
    let [s1, s0] = start.to_be_bytes();
    let [c1, c0] = count.to_be_bytes();
    with_crc(vec![address, FC_READ_HOLDING, s1, s0, c1, c0])
}

/// FC16 request writing `values` from `start`.
pub fn write_request(address: u8, start: u16, values: &[u16]) -> Vec<u8> {
    let values = field::at_most(values, 123);
    let mut out = vec![address, FC_WRITE_MULTIPLE];
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&(values.len() as u16).to_be_bytes());
    out.push((values.len() * 2) as u8);
    values.iter().for_each(|v| out.extend_from_slice(&v.to_be_bytes()));
    with_crc(out)
}

/// FC03 response carrying `registers` (at most 125).
pub fn read_response(address: u8, registers: &[u16]) -> Vec<u8> {
    let registers = field::at_most(registers, 125);
    let mut out = vec![address, FC_READ_HOLDING, (registers.len() * 2) as u8];
    registers.iter().for_each(|r| out.extend_from_slice(&r.to_be_bytes()));
    with_crc(out)
}

/// FC16 acknowledgement: `addr 10 start count CRC`.
pub fn write_ack(address: u8, start: u16, count: u16) -> Vec<u8> {
    let mut out = vec![address, FC_WRITE_MULTIPLE];
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    with_crc(out)
}

/// Checks the trailing CRC of a whole frame.
pub fn check_crc(frame: &[u8]) -> Result<(), FrameError> {
    let too_short = FrameError::TooShort { need: 4, got: frame.len() };
    if frame.len() < 4 {
        return Err(too_short);
    }
    let (covered, crc) = frame.split_last_chunk().ok_or(too_short)?;
    let carried = u16::from_le_bytes(*crc);
    let computed = crc16_modbus(covered);
    if carried != computed {
        return Err(FrameError::BadChecksum { expected: carried.into(), computed: computed.into() });
    }
    Ok(())
}

/// Length of the response at the start of `buf` judged by its function code (FC03 reply,
/// FC16 ACK or exception), `None` when more bytes are needed, `Err` for an unknown function.
fn response_len(buf: &[u8]) -> Result<Option<usize>, ()> {
    let Some(&func) = buf.get(1) else { return Ok(None) };
    match func {
        FC_READ_HOLDING => Ok(buf.get(2).map(|&n| 5 + usize::from(n))),
        FC_WRITE_MULTIPLE => Ok(Some(8)),
        f if f & EXCEPTION_BIT != 0 && matches!(f & 0x7F, FC_READ_HOLDING | FC_WRITE_MULTIPLE) => Ok(Some(5)),
        _ => Err(()),
    }
}

/// Finds an FC03/FC16/exception response with a good CRC at the start of `buf`.
pub fn scan_response(buf: &[u8]) -> Scan {
    match response_len(buf) {
        Err(()) => Scan::Garbage { skip: 1 },
        Ok(None) => Scan::Incomplete,
        Ok(Some(len)) => match buf.get(..len) {
            None => Scan::Incomplete,
            Some(frame) if check_crc(frame).is_ok() => Scan::Frame { len },
            Some(_) => Scan::Garbage { skip: 1 },
        },
    }
}

/// Finds an FC03 or FC16 request with a good CRC at the start of `buf`.
pub fn scan_request(buf: &[u8]) -> Scan {
    let len = match buf.get(1) {
        None => return Scan::Incomplete,
        Some(&FC_READ_HOLDING) => Some(8),
        Some(&FC_WRITE_MULTIPLE) => match (field::u16_at(buf, 4), buf.get(6)) {
            // Quantity and byte count must agree before waiting for that many bytes, or a stray
            // 0x10 in garbage could hold the scanner for up to 255 bytes.
            (Some(quantity), Some(&n)) => {
                let quantity = usize::from(quantity);
                if quantity == 0 || quantity > 123 || usize::from(n) != 2 * quantity {
                    return Scan::Garbage { skip: 1 };
                }
                Some(9 + usize::from(n))
            }
            _ => None,
        },
        Some(_) => return Scan::Garbage { skip: 1 },
    };
    match len.and_then(|len| buf.get(..len)) {
        None => Scan::Incomplete,
        Some(frame) if check_crc(frame).is_ok() => Scan::Frame { len: frame.len() },
        Some(_) => Scan::Garbage { skip: 1 },
    }
}

/// A parsed request: address, function, start register, count (FC16: also the values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Bus address.
    pub address: u8,
    /// Function code.
    pub function: u8,
    /// First register.
    pub start: u16,
    /// Register count.
    pub count: u16,
    /// Values written (FC16).
    pub values: Vec<u16>,
}

/// Parses an FC03 or FC16 request (CRC checked).
pub fn parse_request(frame: &[u8]) -> Result<Request, FrameError> {
    let got = frame.len();
    let need = match frame.get(1) {
        Some(&FC_WRITE_MULTIPLE) => 9 + usize::from(frame.get(6).copied().unwrap_or(0)),
        _ => 8,
    };
    let too_short = FrameError::TooShort { need, got };
    let frame = frame.get(..need).ok_or(too_short)?;
    check_crc(frame)?;
    let (&[address, function, start_hi, start_lo, count_hi, count_lo], rest) =
        frame.split_first_chunk().ok_or(too_short)?;
    let values = match (function, rest) {
        (FC_READ_HOLDING, _) => Vec::new(),
        (FC_WRITE_MULTIPLE, [byte_count, data @ ..]) => {
            field::chunks(data).take(usize::from(*byte_count) / 2).map(u16::from_be_bytes).collect()
        }
        (found, _) => return Err(FrameError::UnexpectedCommand { expected: FC_READ_HOLDING, found }),
    };
    let (start, count) = (u16::from_be_bytes([start_hi, start_lo]), u16::from_be_bytes([count_hi, count_lo]));
    Ok(Request { address, function, start, count, values })
}

/// Parses an FC03 response: the registers. `expected_address`: the device polled.
pub fn parse_read_response(frame: &[u8], expected_address: Option<u8>) -> Result<Vec<u16>, FrameError> {
    let got = frame.len();
    let Some((exception, _)) = frame.split_first_chunk::<5>() else {
        return Err(FrameError::TooShort { need: 5, got });
    };
    let [address, func, byte_count, ..] = *exception;
    if func & EXCEPTION_BIT != 0 {
        check_crc(exception)?;
        check_address(address, expected_address)?;
        return Err(FrameError::Exception { code: byte_count });
    }
    if func != FC_READ_HOLDING {
        return Err(FrameError::UnexpectedCommand { expected: FC_READ_HOLDING, found: func });
    }
    let declared = usize::from(byte_count);
    let need = declared + 5;
    if got < need {
        return Err(FrameError::TooShort { need, got });
    }
    if got > need {
        return Err(FrameError::LengthMismatch { declared, actual: got - 5 });
    }
    if declared % 2 != 0 {
        return Err(FrameError::InvalidField { field: "byte_count" });
    }
    check_crc(frame)?;
    check_address(address, expected_address)?;
    let (_, data, _) = field::frame_parts::<3, 2>(frame).ok_or(FrameError::TooShort { need, got })?;
    Ok(field::chunks(data).map(u16::from_be_bytes).collect())
}

/// Parses an FC16 acknowledgement: (address, start register, count).
pub fn parse_write_ack(frame: &[u8]) -> Result<(u8, u16, u16), FrameError> {
    let got = frame.len();
    if got > 8 {
        return Err(FrameError::LengthMismatch { declared: 6, actual: got - 2 });
    }
    let Ok(&[address, function, start_hi, start_lo, count_hi, count_lo, _, _]) = <&[u8; 8]>::try_from(frame)
    else {
        return Err(FrameError::TooShort { need: 8, got });
    };
    check_crc(frame)?;
    if function != FC_WRITE_MULTIPLE {
        return Err(FrameError::UnexpectedCommand { expected: FC_WRITE_MULTIPLE, found: function });
    }
    Ok((address, u16::from_be_bytes([start_hi, start_lo]), u16::from_be_bytes([count_hi, count_lo])))
}

fn check_address(found: u8, expected: Option<u8>) -> Result<(), FrameError> {
    match expected {
        Some(expected) if expected != found => Err(FrameError::UnexpectedAddress { expected, found }),
        _ => Ok(()),
    }
}

/// Reads `count` bytes of text from registers (two ASCII bytes per register, high first),
/// stopping at NUL, trimmed.
pub fn registers_text(registers: &[u16]) -> String {
    let bytes: Vec<u8> = registers.iter().flat_map(|r| r.to_be_bytes()).collect();
    field::text(&bytes)
}

/// Places `text` in registers the way [`registers_text`] reads it, NUL padded.
pub fn put_text(registers: &mut [u16], text: &str) {
    let bytes = field::padded(text, registers.len() * 2);
    for (register, pair) in registers.iter_mut().zip(field::chunks(&bytes)) {
        *register = u16::from_be_bytes(pair);
    }
}

/// The header of a response under the names `decode` shows in `extra`.
pub fn header_extra(frame: &[u8]) -> impl Iterator<Item = (&'static str, serde_json::Value)> + '_ {
    ["address", "function", "byte_count"].into_iter().zip(frame).map(|(name, &byte)| (name, byte.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_match_known_frames() {
        assert_eq!(read_request(0x30, 5000, 34), vec![0x30, 0x03, 0x13, 0x88, 0x00, 0x22, 0x45, 0x5C]);
        assert_eq!(
            write_request(1, 0x1620, &[0]),
            vec![0x01, 0x10, 0x16, 0x20, 0x00, 0x01, 0x02, 0x00, 0x00, 0xD6, 0xF1]
        );
        assert_eq!(write_ack(3, 0x1620, 1), vec![0x03, 0x10, 0x16, 0x20, 0x00, 0x01, 0x05, 0xA9]);
    }

    #[test]
    fn responses_round_trip_and_exceptions_are_reported() {
        let frame = read_response(2, &[1, 0xFFFF]);
        assert_eq!(scan_response(&frame), Scan::Frame { len: frame.len() });
        assert_eq!(parse_read_response(&frame, Some(2)), Ok(vec![1, 0xFFFF]));
        assert_eq!(
            parse_read_response(&frame, Some(3)),
            Err(FrameError::UnexpectedAddress { expected: 3, found: 2 })
        );
        let exception = [0x30, 0x83, 0x02, 0x91, 0x3E];
        assert_eq!(scan_response(&exception), Scan::Frame { len: 5 });
        assert_eq!(parse_read_response(&exception, Some(0x30)), Err(FrameError::Exception { code: 2 }));
        let request = read_request(1, 0, 8);
        assert_eq!(scan_request(&request), Scan::Frame { len: 8 });
        assert_eq!(parse_request(&request).map(|r| (r.start, r.count)), Ok((0, 8)));
    }
}
