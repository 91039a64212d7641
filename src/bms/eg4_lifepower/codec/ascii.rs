//! LifePower4 v2 ASCII frames (YD/T 1363, `~...\r`), seen on the same bus as the binary
//! protocol. They are the `eg4_lifepower4` protocol's: framing in `protocol::yd1363`, the analog
//! and alarm readings in `bms::eg4_lifepower4::codec`; this decoder reads them too, so that one
//! `decode` on a LifePower bus understands everything on it.

pub use crate::bms::eg4_lifepower4::codec::{decode, request, CID1_EG4, CID2_ALARM, CID2_ANALOG};
pub use crate::protocol::yd1363::{checksum, encode, length_field, scan, END, MAX_FRAME, MIN_FRAME, START};
