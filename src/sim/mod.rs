//! Simulators shared by the tests and `bms-bridge demo`.
//!
//! - [`spawn`] starts the simulator of any protocol on a pty: a [`PtySimulator`] with one moving
//!   [`model::SimPack`] per bus address and [`SimControl`] knobs (silent, frozen, FET off; the
//!   JBD simulator's FETs also follow register 0xE1 writes, the UP16S's SoC follows SetSoc).
//! - [`serve`]: what the per-BMS simulators (`bms/NAME/sim.rs`) share: knobs, packs, the
//!   request/response loop; [`modbus`]: the Modbus RTU slave of the Modbus BMSes.
//! - [`pack`], [`closed_loop`], [`plot`]: the charge-control scenarios on a 16S pack model.
//! - [`bank`]: a parallel bank's physics (current split by resistance, a charger obeying CCL/DCL,
//!   an overload recorder per pack) for the bank scenarios.

pub mod bank;
pub mod bluez;
pub mod closed_loop;
pub mod modbus;
pub mod model;
pub mod mqtt;
pub mod pack;
#[cfg(feature = "plots")]
pub mod plot;
pub mod pty;
pub mod serve;

pub use serve::{drop_pending, serve_requests, AddressedPack, Exchange, Packs, SimControl, WireTiming};

use crate::config::Protocol;
use model::SimPack;
use pty::{Pty, PtyGuard};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A simulator serving one pty.
#[derive(Debug)]
pub struct PtySimulator {
    path: PathBuf,
    control: Arc<SimControl>,
    packs: Packs,
    task: JoinHandle<()>,
    _guard: PtyGuard,
}

impl PtySimulator {
    /// The pty path to open as the serial device.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The knobs.
    pub fn control(&self) -> &SimControl {
        &self.control
    }

    /// The knobs, shared (for a test that turns them from another thread).
    pub fn control_handle(&self) -> Arc<SimControl> {
        Arc::clone(&self.control)
    }

    /// A copy of the pack at `address` as it is now.
    pub fn pack(&self, address: Option<u8>) -> Option<SimPack> {
        self.packs.get(address)
    }

    /// Changes every pack of this simulator.
    pub fn configure_all(&self, f: impl FnMut(&mut SimPack)) {
        self.packs.configure_all(f);
    }

    /// Changes the pack at `address` (capacity, resistance, current ...); false if there is none.
    pub fn configure(&self, address: Option<u8>, f: impl FnOnce(&mut SimPack)) -> bool {
        let mut packs = self.packs.lock();
        match packs.iter_mut().find(|(a, _)| *a == address) {
            Some((_, pack)) => {
                f(pack);
                true
            }
            None => false,
        }
    }
}

impl Drop for PtySimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the simulator of `protocol` on a new pty with one pack per address (needs a tokio
/// runtime). `addresses` empty: the protocol's default address.
pub fn spawn(protocol: Protocol, addresses: &[u8], cells: usize) -> std::io::Result<PtySimulator> {
    let (master, guard, path) = Pty::open()?.into_parts();
    let addresses: Vec<Option<u8>> = if protocol.addressable() {
        if addresses.is_empty() {
            vec![protocol.default_address()]
        } else {
            addresses.iter().map(|a| Some(*a)).collect()
        }
    } else {
        vec![None]
    };
    let control = Arc::new(SimControl::default());
    // A FoxESS HV2600 pack always has 18 cells (`cells_per_pack`).
    let spec = protocol.spec();
    let cells = spec.cells_per_pack.unwrap_or(cells);
    let Some(simulator) = spec.simulator else {
        return Err(std::io::Error::other(format!(
            "{} has no serial simulator (CAN: bms::victron_can::sim::spawn)",
            spec.name
        )));
    };
    let packs = Packs::new(&addresses, cells);
    let task = simulator(master, packs.clone(), Arc::clone(&control));
    Ok(PtySimulator { path, control, packs, task, _guard: guard })
}
