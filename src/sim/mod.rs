//! Simulators shared by tests and the demo.
//!
//! - [`pack`]: a 16S LiFePO4 pack and a Victron-like charger.
//! - [`closed_loop`]: charge-control scenarios on the simulated pack, CSV output.
//! - [`plot`]: PNG plot of a scenario run.

pub mod closed_loop;
pub mod pack;
pub mod plot;
