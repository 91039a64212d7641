//! The Venus OS side: each battery as a `com.victronenergy.battery.<suffix>` D-Bus service,
//! following `reference/victron-dbus.md`.
//!
//! - [`value`]: one value (`d`/`i`/`s`/invalid = empty `ai`) and its text with unit.
//! - [`paths`]: the table from a [`Snapshot`] to every published path.
//! - [`diff`]: which paths changed since the last cycle (pure).
//! - `bus_item`: the `com.victronenergy.BusItem` objects (items, tree nodes, root).
//! - [`service`]: [`BatteryService`]: start-up order, publish, reconnect after a D-Bus restart.
//! - [`settings`]: device instance and custom name from `com.victronenergy.settings`.
//! - [`private_bus`]: a private `dbus-daemon` for tests and the demo.
//! - [`writable`]: the `/Settings/*` paths that command BMS writes (only with `allow_writes`).

mod bus_item;
pub mod diff;
pub mod marshal;
pub mod paths;
pub mod private_bus;
pub mod service;
pub mod set_value;
pub mod settings;
pub mod value;
pub mod writable;

pub use bus_item::{set_value_without_bus, BUS_ITEM, MAX_CUSTOM_NAME_CHARS};
pub use paths::{Identity, Snapshot, PRODUCT_ID};
pub use private_bus::{PrivateBus, PrivateBusError};
pub use service::BatteryService;
pub use value::{Unit, Value};
pub use writable::BmsWrites;

/// Prefix of every battery service name.
pub const SERVICE_PREFIX: &str = "com.victronenergy.battery.";

/// Which bus to publish on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus, as on a GX. zbus honours `DBUS_SYSTEM_BUS_ADDRESS`, else
    /// `unix:path=/var/run/dbus/system_bus_socket`.
    System,
    /// The session bus (`DBUS_SESSION_BUS_ADDRESS`); only when asked for, never as a fallback.
    Session,
    /// An explicit address such as `unix:path=/tmp/x/bus.sock`.
    Address(String),
}

impl std::fmt::Display for BusAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusAddress::System => write!(
                f,
                "system bus at {}",
                std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                    .unwrap_or_else(|_| "unix:path=/var/run/dbus/system_bus_socket".to_owned())
            ),
            BusAddress::Session => f.write_str("session bus"),
            BusAddress::Address(address) => write!(f, "bus at {address}"),
        }
    }
}

impl BusAddress {
    /// A connection builder for this bus (no well-known name: §4 claims it last).
    pub fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        match self {
            BusAddress::System => zbus::connection::Builder::system(),
            BusAddress::Session => zbus::connection::Builder::session(),
            BusAddress::Address(address) => zbus::connection::Builder::address(address.as_str()),
        }
    }
}

/// Errors of the D-Bus service.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    /// The service suffix is not a valid last element of a bus name.
    #[error("service suffix {0:?} is not D-Bus safe (use victron::safe_suffix)")]
    BadSuffix(String),
    /// Connecting to the bus failed.
    #[error(
        "cannot connect to the {bus}: {source} (is dbus-daemon running? `bms-bridge doctor` checks \
         the bus; `--bus session` or [dbus] bus = \"unix:path=...\" picks another)"
    )]
    Connect {
        /// The bus.
        bus: BusAddress,
        /// Why.
        #[source]
        source: zbus::Error,
    },
    /// Registering an object failed.
    #[error("cannot register object {path}")]
    Register {
        /// Object path.
        path: String,
        /// Why.
        #[source]
        source: zbus::Error,
    },
    /// Another connection owns the service name.
    #[error("bus name {0} is already taken (another bms-bridge or driver for the same port?)")]
    NameTaken(String),
    /// `RequestName` failed.
    #[error("cannot request bus name {name}")]
    RequestName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: zbus::Error,
    },
    /// Sending the changes failed; the connection is dropped and the next publish reconnects.
    #[error("cannot send changes of {name}; will reconnect")]
    Signal {
        /// The service name.
        name: String,
        /// Why.
        #[source]
        source: zbus::Error,
    },
}

/// The names on the bus; `None` when the bus cannot be asked.
pub async fn bus_names(conn: &zbus::Connection) -> Option<Vec<String>> {
    let names = zbus::fdo::DBusProxy::new(conn).await.ok()?.list_names().await.ok()?;
    Some(names.into_iter().map(|name| name.to_string()).collect())
}

/// A D-Bus-safe service suffix: the port's base name, plus `_<address>` when several BMSes share
/// the port. Characters outside `[A-Za-z0-9_]` become `_`; a leading digit (or an empty name) gets
/// a `_` in front. `("ttyUSB0", None)` → `ttyUSB0`, `("ttyUSB0", Some(2))` → `ttyUSB0_2`.
pub fn safe_suffix(port_basename: &str, address: Option<u8>) -> String {
    let mut suffix: String =
        port_basename.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if let Some(address) = address {
        suffix.push_str(&format!("_{address}"));
    }
    if suffix.is_empty() || suffix.starts_with(|c: char| c.is_ascii_digit()) {
        suffix.insert(0, '_');
    }
    suffix
}

/// Whether `suffix` is what [`safe_suffix`] would produce.
pub fn is_safe_suffix(suffix: &str) -> bool {
    !suffix.is_empty()
        && !suffix.starts_with(|c: char| c.is_ascii_digit())
        && suffix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(safe_suffix("ttyUSB0", None), "ttyUSB0");
        assert_eq!(safe_suffix("ttyUSB0", Some(2)), "ttyUSB0_2");
        assert_eq!(safe_suffix("usb-FTDI.1:0", None), "usb_FTDI_1_0");
        assert_eq!(safe_suffix("0", None), "_0");
        assert_eq!(safe_suffix("", Some(1)), "_1");
        assert!(is_safe_suffix(&safe_suffix("tty-ACM0", Some(255))));
        assert!(!is_safe_suffix("1abc"));
        assert!(!is_safe_suffix("a.b"));
    }

    /// The connect error names the bus address, the reason and the next step.
    #[tokio::test]
    async fn a_connect_error_says_where_why_and_what_next() {
        let bus = BusAddress::Address("unix:path=/nonexistent/bms-bridge-bus".to_owned());
        let Err(source) = async { bus.builder()?.build().await }.await else {
            panic!("connected to nothing")
        };
        let text = DbusError::Connect { bus, source }.to_string();
        assert!(text.contains("unix:path=/nonexistent/bms-bridge-bus"), "{text}");
        assert!(text.contains("No such file") || text.contains("os error"), "{text}");
        assert!(text.contains("bms-bridge doctor"), "{text}");
        let system = BusAddress::System.to_string();
        assert!(
            system.starts_with("system bus at unix:") || system.starts_with("system bus at "),
            "{system}"
        );
    }
}
