//! JBD / LLT / Overkill over Bluetooth LE: service FF00, notifications on FF01, requests written
//! to FF02. The frames are the UART ones (`DD A5 reg 00 crc 77` requests, `DD reg status len ...
//! crc 77` replies), split over notifications of at most MTU - 3 bytes: the JBD codec, poll plan
//! and simulator are used as they are, the transport reassembles (`docs/protocols/jbd_ble.md`).
//! No writes yet: JBD's MOSFET write over BLE has no end-to-end test. Not imported from
//! dbus-serialbattery's `LltJbd_Ble` (its configs name the MAC elsewhere).

use super::{jbd, Gatt, Spec};

/// The GATT layout (incumbent `lltjbd_ble.py`, aiobmsble `jbd_bms`).
pub const GATT: Gatt = Gatt {
    service: 0xFF00,
    notify: 0xFF01,
    write: 0xFF02,
    name_prefixes: &["SP", "xiaoxiang", "JBD", "DP04S", "GJ-"],
};

/// The `jbd_ble` spec: the JBD UART codec, plan and simulator on a BLE link.
pub const SPEC: Spec =
    super::ble_spec("jbd_ble", "JBD", GATT, jbd::SPEC.codec, jbd::plan::plan, |stream, packs, control| {
        crate::sim::serve::start(jbd::sim::serve(stream, packs, control))
    });
