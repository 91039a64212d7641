//! `SetValue` return codes (velib `VeDbusItemExport`, `victron-dbus.md` §2.4).
//!
//! Their own module because both sides of a write use them: `bus_item` answers the client with
//! them, `writable` decides them for the `/Settings/*` paths. Neither imports the other for them.

/// Accepted (also when unchanged).
pub const ACCEPTED: i32 = 0;
/// Path not writable, or wrong type.
pub const NOT_WRITABLE: i32 = 1;
/// Refused by the service (name too long, setting out of range, BMS writes backed up).
pub const REJECTED: i32 = 2;

/// Why a write was refused, typed until the handler answers the client with its [`code`](Refused::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a writable path, or a value of the wrong type ([`NOT_WRITABLE`]).
    NotWritable,
    /// Out of range, or the BMS write queue is full ([`REJECTED`]).
    Rejected,
}

impl Refused {
    /// The velib return code.
    pub const fn code(self) -> i32 {
        match self {
            Refused::NotWritable => NOT_WRITABLE,
            Refused::Rejected => REJECTED,
        }
    }
}
