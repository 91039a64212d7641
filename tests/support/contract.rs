//! Contract checks every frame protocol must pass, run on every vector of its file: truncation,
//! byte flips, chunked feeding, trailing bytes.

#![allow(dead_code)]

use bms_bridge::protocol::{find_frame, Decoded, FrameError, Scan};

/// What a transport does: append `chunk`, then take every complete frame, dropping garbage.
pub fn feed(buf: &mut Vec<u8>, chunk: &[u8], scan: &dyn Fn(&[u8]) -> Scan) -> Vec<Vec<u8>> {
    buf.extend_from_slice(chunk);
    let mut frames = Vec::new();
    loop {
        match scan(buf) {
            Scan::Frame { len } => {
                assert!(len > 0 && len <= buf.len(), "Frame {{ len: {len} }} beyond buffer");
                frames.push(buf.drain(..len).collect());
            }
            Scan::Garbage { skip } => {
                assert!(skip > 0 && skip <= buf.len(), "Garbage {{ skip: {skip} }} out of range");
                buf.drain(..skip);
            }
            Scan::Incomplete => return frames,
        }
    }
}

/// A vector cut at every shorter length never scans as a frame and never decodes.
pub fn truncation(
    bytes: &[u8],
    scan: &dyn Fn(&[u8]) -> Scan,
    decode: &dyn Fn(&[u8]) -> Result<Decoded, FrameError>,
) {
    for n in 0..bytes.len() {
        let part = &bytes[..n];
        assert!(!matches!(scan(part), Scan::Frame { .. }), "prefix of {n} bytes scanned as frame");
        assert!(find_frame(part, scan).is_none(), "prefix of {n} bytes yielded a frame");
        assert!(decode(part).is_err(), "prefix of {n} bytes decoded");
    }
}

/// Every byte flipped (three patterns): no panic, and a reported frame fits the buffer.
pub fn byte_flips(
    bytes: &[u8],
    scan: &dyn Fn(&[u8]) -> Scan,
    decode: &dyn Fn(&[u8]) -> Result<Decoded, FrameError>,
) {
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= mask;
            if let Scan::Frame { len } = scan(&flipped) {
                assert!(len <= flipped.len());
            }
            let _ = decode(&flipped);
            let mut buf = Vec::new();
            let _ = feed(&mut buf, &flipped, scan);
        }
    }
}

/// Feeding the bytes split at every index (and byte by byte) gives the same frames as whole.
pub fn chunked_equals_whole(bytes: &[u8], scan: &dyn Fn(&[u8]) -> Scan) -> Vec<Vec<u8>> {
    let mut whole_buf = Vec::new();
    let whole = feed(&mut whole_buf, bytes, scan);
    for split in 0..=bytes.len() {
        let mut buf = Vec::new();
        let mut frames = feed(&mut buf, &bytes[..split], scan);
        frames.extend(feed(&mut buf, &bytes[split..], scan));
        assert_eq!(frames, whole, "split at {split} differs from whole");
        assert_eq!(buf, whole_buf, "split at {split} leaves other bytes");
    }
    let mut buf = Vec::new();
    let singles: Vec<Vec<u8>> = bytes.iter().flat_map(|b| feed(&mut buf, &[*b], scan)).collect();
    assert_eq!(singles, whole, "byte-by-byte feeding differs from whole");
    whole
}

/// A frame followed by `trailing` scans as exactly the frame; the trailing bytes stay.
pub fn trailing_bytes_stay(frame: &[u8], trailing: &[u8], scan: &dyn Fn(&[u8]) -> Scan) {
    let mut stream = frame.to_vec();
    stream.extend_from_slice(trailing);
    assert_eq!(scan(&stream), Scan::Frame { len: frame.len() });
    let (found, next) = find_frame(&stream, scan).expect("frame followed by trailing bytes");
    assert_eq!(found, frame);
    assert_eq!(&stream[next..], trailing);
}
