//! The GATT layout of a Bluetooth LE BMS: shared by the BMS specs (`bms/NAME/mod.rs`) and the
//! BlueZ transport (`transport/ble.rs`), which must not import `bms/` (`tests/architecture.rs`).

/// Where a BLE BMS talks: its GATT service and characteristics (16-bit UUIDs, as the sources
/// name them), and how `scan-ble` recognises it among nearby devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gatt {
    /// The primary service (`0xFFE0` JK).
    pub service: u16,
    /// The characteristic whose notifications carry the replies.
    pub notify: u16,
    /// The characteristic the requests are written to (may be `notify`: JK has one for both).
    pub write: u16,
    /// Advertised name prefixes of this BMS family (`scan-ble`), e.g. `JK-`.
    pub name_prefixes: &'static [&'static str],
}

impl Gatt {
    /// The full 128-bit form of a 16-bit UUID, as BlueZ reports it.
    pub fn uuid128(short: u16) -> String {
        format!("0000{short:04x}-0000-1000-8000-00805f9b34fb")
    }
}
