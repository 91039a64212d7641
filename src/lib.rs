//! bms-bridge: lithium BMS data to Victron Venus OS.
//!
//! Layers, each usable alone (see `docs/architecture.md`):
//! - [`protocol`]: what the codecs share (scan results, frame errors, checksums, field tables).
//! - [`bms`]: one folder per BMS (spec, pure codec, sans-IO poll plan, simulator) and the
//!   registry `ALL`.
//! - [`transport`]: serial request/response over any byte stream, Modbus, CAN.
//! - [`driver`]: one poll loop per port and the one executor of the BMSes' poll plans.
//! - [`battery`]: the normalised model every driver fills; [`plausibility`] checks each reading
//!   before [`monitor`] and charge control use it.
//! - [`control`]: CVL/CCL/DCL, pure, time passed in.
//! - [`victron`]: the `com.victronenergy.battery.*` D-Bus service; [`mqtt_output`] beside it
//!   (`[mqtt_publish]`: JSON states and Home Assistant discovery).
//! - [`config`]: the TOML file, validated with file:line:column errors.
//! - [`sim`]: BMS simulators shared by tests and the demo.
//! - [`task`]: the battery and bank tasks behind the D-Bus services.
//! - [`web`]: the read-only status page (`[web]`), fed the MQTT output's state documents.
//! - [`app`]: wiring of the above; owns shutdown.
//! - [`doctor`], [`import`]: `bms-bridge doctor` and `import-serialbattery`.

#![warn(missing_debug_implementations)]
// Data from the wire, files and the bus must never panic the daemon (docs/reliability.md): no
// unwrap, expect, index or slice that could fail, anywhere outside unit tests. `.ci/run` runs
// clippy with -D warnings, so a new one fails CI.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod app;
pub mod bank;
pub mod battery;
pub mod bms;
pub mod config;
pub mod control;
pub mod current_sign;
pub mod demo;
pub mod doctor;
pub mod driver;
pub mod import;
pub mod monitor;
pub mod mqtt_output;
pub mod plausibility;
pub mod probe;
pub mod probe_can;
pub mod protocol;
pub mod replay;
pub mod sim;
pub mod state_doc;
pub mod task;
pub mod transport;
pub mod victron;
pub mod web;
