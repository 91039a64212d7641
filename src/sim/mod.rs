//! Simulators shared by the tests and `bms-bridge demo`.
//!
//! - [`jbd`], [`jbd_up16s`]: BMS protocol simulators on ptys ([`pty`]), driven by [`model`].
//! - [`pack`]: a 16S LiFePO4 pack and a Victron-like charger for charge-control scenarios.
//! - [`closed_loop`]: charge-control scenarios on the simulated pack, CSV output.
//! - [`plot`]: PNG plot of a scenario run.

pub mod closed_loop;
pub mod jbd;
pub mod jbd_up16s;
pub mod model;
pub mod pack;
pub mod plot;
pub mod pty;
