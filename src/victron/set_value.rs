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
