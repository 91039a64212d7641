//! bms-bridge: lithium BMS data to Victron Venus OS.
//!
//! Layers, each usable alone (see `docs/architecture.md`):
//! - [`protocol`]: pure codecs per BMS (bytes in, typed values out).
//! - [`transport`]: serial request/response over any byte stream.
//! - [`driver`]: one poll loop per port, stamping readings with the clock.
//! - [`battery`]: the normalised model every driver fills.
//! - [`control`]: CVL/CCL/DCL, pure, time passed in.
//! - [`victron`]: the `com.victronenergy.battery.*` D-Bus service.
//! - [`config`]: the TOML file, validated with file:line:column errors.
//! - [`sim`]: BMS simulators shared by tests and the demo.
//! - [`app`]: wiring of the above; owns shutdown.
//! - [`doctor`], [`import`]: `bms-bridge doctor` and `import-serialbattery`.

#![warn(missing_debug_implementations)]
// Data from the wire, files and the bus must never panic the daemon (docs/reliability.md).
// Indexing is denied per module (protocol, transport, driver, control, victron, app, monitor,
// config).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod bank;
pub mod battery;
pub mod config;
pub mod control;
pub mod demo;
pub mod doctor;
pub mod driver;
pub mod import;
pub mod monitor;
pub mod probe;
pub mod protocol;
pub mod replay;
pub mod sim;
pub mod transport;
pub mod victron;
