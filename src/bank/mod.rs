//! Several packs as one battery (`docs/multi-battery.md`).
//!
//! - [`config`]: `[[bank]]` tables and how pack references resolve to (port, address).
//! - [`aggregate`]: the bank's measurements from its online packs (pure).
//! - [`limits`]: the bank's CCL/DCL from each pack's own limit and its share of the current (pure).
//! - [`explain`]: the bank's limitation texts name the pack and rule that set CCL/DCL (pure).
//! - [`task`]: the bank task: one monitor per pack, one for the bank, their D-Bus services.
//!
//! Venus OS takes one battery as the controlling BMS: only the bank's service carries `/Info/*`
//! limits; pack services (for visibility) publish them invalid.

pub mod aggregate;
pub mod config;
pub mod explain;
pub mod limits;
pub mod task;

pub use config::{BankConfig, PackRef, Publish, Topology};
