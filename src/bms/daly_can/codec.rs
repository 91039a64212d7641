//! Daly over CAN (250 kbit/s, 29-bit ids): the data of the UART protocol's sentences in CAN
//! frames. A request to the pack at CAN address `BB` is `0x18 CC BB 40` (data id `CC`, the
//! destination, then the host 0x40 as source), its reply `0x18 CC 40 BB`, 8 data bytes laid out
//! exactly as in the UART sentence `A5 BB CC 08 <data> sum` (study 2.9; Daly's CAN protocol
//! document V1.2). Multi-part replies (0x95 cells, 0x96 temperatures) come as several frames with
//! the same id and their frame number in data byte 0, as on the UART.
//!
//! So a frame is turned into the sentence it carries and the Daly UART decoder reads it
//! ([`crate::bms::daly::codec`]): current with the 30000 offset, the same sign rule, the same
//! cell and temperature assembly. CAN address n is board n: the UART's host address 0x3F + n.

use crate::bms::daly::codec as daly;
use crate::protocol::{Decoded, FrameError};
use serde_json::json;

/// The priority byte every Daly CAN id starts with.
pub const PRIORITY: u32 = 0x18;
/// The host's address on the bus.
pub const HOST: u8 = 0x40;
/// The data ids Daly documents for reads, and the few we know the layout of besides.
pub const DATA_IDS: [u8; 12] = [
    daly::CMD_SOC,
    daly::CMD_CELL_MINMAX,
    daly::CMD_TEMP_MINMAX,
    daly::CMD_MOS,
    daly::CMD_STATUS,
    daly::CMD_CELL_VOLTAGES,
    daly::CMD_TEMPERATURES,
    daly::CMD_BALANCE,
    daly::CMD_FAILURES,
    daly::CMD_RATED,
    daly::CMD_PRODUCTION,
    daly::CMD_BATTERY_CODE,
];
/// For messages: what a Daly CAN id looks like.
const EXPECTED: &str = "0x18 <data id 0x50..0x98> 40 <BMS> for replies, 0x18 <data id> <BMS> 40 for requests";

/// Highest board (CAN) address: its UART host address 0x3F + n must stay below 0x80.
pub const MAX_ADDRESS: u8 = 0x3E;

/// The id of a request for `data_id` to the pack at CAN address `bms`.
pub fn request_id(data_id: u8, bms: u8) -> u32 {
    PRIORITY << 24 | u32::from(data_id) << 16 | u32::from(bms) << 8 | u32::from(HOST)
}

/// The id of the reply of the pack at `bms` to `data_id`.
pub fn reply_id(data_id: u8, bms: u8) -> u32 {
    PRIORITY << 24 | u32::from(data_id) << 16 | u32::from(HOST) << 8 | u32::from(bms)
}

/// A frame's id split up: (data id, destination, source), when it is a Daly id at all.
fn parts(id: u32) -> Option<(u8, u8, u8)> {
    let [priority, data_id, destination, source] = id.to_be_bytes();
    (u32::from(priority) == PRIORITY && DATA_IDS.contains(&data_id)).then_some((data_id, destination, source))
}

/// What a frame is: a reply from a pack or a request to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the pack at this CAN address to the host.
    Reply(u8),
    /// From the host to the pack at this CAN address.
    Request(u8),
}

/// The data id and direction of `id`, or a precise error for an id Daly does not use.
pub fn classify(id: u32) -> Result<(u8, Direction), FrameError> {
    let unknown = FrameError::UnknownCanId { id, dialect: "daly_can", expected: EXPECTED };
    match parts(id) {
        Some((data_id, HOST, bms)) if bms != HOST && bms != 0 => Ok((data_id, Direction::Reply(bms))),
        Some((data_id, bms, HOST)) if bms != HOST && bms != 0 => Ok((data_id, Direction::Request(bms))),
        _ => Err(unknown),
    }
}

/// Decodes one frame: a reply's data as the Daly UART decoder reads it, plus the ids' parts.
pub fn decode(id: u32, data: &[u8]) -> Result<Decoded, FrameError> {
    let (data_id, direction) = classify(id)?;
    let bytes: [u8; 8] =
        data.try_into().map_err(|_| FrameError::LengthMismatch { declared: 8, actual: data.len() })?;
    let mut decoded = match direction {
        Direction::Reply(bms) => daly::decode(&daly::sentence(bms, data_id, bytes))?,
        Direction::Request(bms) => {
            let mut d = Decoded::default();
            d.extra.insert("request_to", json!(bms));
            d
        }
    };
    let (key, bms) = match direction {
        Direction::Reply(bms) => ("reply", bms),
        Direction::Request(bms) => ("request", bms),
    };
    decoded.extra.insert("direction", json!(key));
    decoded.extra.insert("bms_address", json!(bms));
    decoded.extra.insert("data_id", json!(format!("0x{data_id:02X}")));
    // The sentence's own header fields mean nothing on CAN.
    decoded.extra.remove("command");
    Ok(decoded)
}

/// The frame that carries a request sentence `A5 <host address> CC 08 ...` (host address 0x3F + n
/// for CAN address n); `None` for anything else.
pub fn request_frame(sentence: &[u8]) -> Option<(u32, Vec<u8>)> {
    let (address, data_id, data) = daly::check(sentence).ok()?;
    let bms = address.checked_sub(0x3F).filter(|b| (1..=MAX_ADDRESS).contains(b))?;
    Some((request_id(data_id, bms), data.to_vec()))
}

/// The sentence a reply frame carries (`A5 <board> CC 08 <data> sum`); `None` for other frames
/// (requests of another master, other dialects, short frames).
pub fn reply_sentence(id: u32, data: &[u8]) -> Option<Vec<u8>> {
    let (data_id, Direction::Reply(bms)) = classify(id).ok()? else { return None };
    Some(daly::sentence(bms, data_id, data.try_into().ok()?).to_vec())
}

/// The simulator's side: the request sentence a request frame carries.
pub fn request_sentence(id: u32, data: &[u8]) -> Option<Vec<u8>> {
    let (data_id, Direction::Request(bms)) = classify(id).ok()? else { return None };
    Some(daly::sentence(0x3F + bms, data_id, data.try_into().ok()?).to_vec())
}

/// The simulator's side: the frame that carries a reply sentence.
pub fn reply_frame(sentence: &[u8]) -> Option<(u32, Vec<u8>)> {
    let (bms, data_id, data) = daly::check(sentence).ok()?;
    (bms < HOST).then(|| (reply_id(data_id, bms), data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_documented_scheme() {
        // Study 2.9: request 0x18 CC <bms> 40, reply 0x18 CC 40 <bms>.
        assert_eq!(request_id(0x90, 0x01), 0x1890_0140);
        assert_eq!(reply_id(0x90, 0x01), 0x1890_4001);
        assert_eq!(classify(0x1890_4001), Ok((0x90, Direction::Reply(1))));
        assert_eq!(classify(0x1895_0340), Ok((0x95, Direction::Request(3))));
        for bad in [0x351, 0x1890_4040, 0x1990_4001, 0x1812_4001, 0x1890_0102] {
            assert!(matches!(classify(bad), Err(FrameError::UnknownCanId { .. })), "0x{bad:X}");
        }
    }

    #[test]
    fn a_request_sentence_and_its_frame_round_trip() {
        let sentence = daly::request(0x41, daly::CMD_SOC);
        let (id, data) = request_frame(&sentence).unwrap();
        assert_eq!(id, 0x1890_0240);
        assert_eq!(request_sentence(id, &data).unwrap(), sentence.to_vec());
        // Not a request: a reply sentence is not sent by the host.
        assert_eq!(request_frame(&daly::sentence(2, 0x90, [0; 8])), None);
    }

    #[test]
    fn short_and_long_frames_are_refused() {
        for len in [0usize, 7, 9] {
            let data = vec![0u8; len];
            assert_eq!(
                decode(0x1890_4001, &data),
                Err(FrameError::LengthMismatch { declared: 8, actual: len })
            );
            assert_eq!(reply_sentence(0x1890_4001, &data), None);
        }
    }
}
