//! Several packs as one battery (`docs/multi-battery.md`).
//!
//! - [`config`]: `[[bank]]` tables and how pack references resolve to (port, address).
//! - [`aggregate`]: the bank's measurements from its online packs (pure).
//! - [`health`]: whether a pack counts in the bank now (dropouts within a poll or two, rejoin).
//! - [`identity`]: distinct identities for packs that report the same serial.
//! - [`limits`]: the bank's CCL/DCL from each pack's own limit and its share of the current (pure).
//! - [`task`]: the bank task: one monitor per pack, one for the bank, their D-Bus services.
//!
//! Venus OS takes one battery as the controlling BMS: only the bank's service carries `/Info/*`
//! limits; pack services (for visibility) publish them invalid.

pub mod aggregate;
/// The `[[bank]]` tables live with the rest of the config (`config::bank`); re-exported here.
pub use crate::config::bank as config;
pub mod health;
pub mod identity;
pub mod limits;

pub use config::{BankConfig, PackRef, Publish, Topology};
