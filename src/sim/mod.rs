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
pub mod closed_loop;
pub mod modbus;
pub mod mqtt;
pub mod model;
pub mod pack;
#[cfg(feature = "plots")]
pub mod plot;
pub mod pty;
pub mod serve;

pub use serve::{drop_pending, serve_requests, AddressedPack, Exchange, Packs, SimControl, WireTiming};

use crate::bms;
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
    // An HV2600 pack always has 18 cells.
    let cells = if protocol == Protocol::Foxess { bms::foxess::codec::CELLS_PER_PACK } else { cells };
    let packs = Packs::new(&addresses, cells);
    let (c, p) = (Arc::clone(&control), packs.clone());
    let task = match protocol {
        Protocol::Jbd => tokio::spawn(bms::jbd::sim::serve(master, p, c)),
        Protocol::JbdUp16s => tokio::spawn(bms::jbd_up16s::sim::serve(master, p, c)),
        Protocol::JkPb => tokio::spawn(bms::jk_pb::sim::serve(master, p, c)),
        Protocol::Renogy => tokio::spawn(modbus::serve(master, p, c, bms::renogy::sim::registers)),
        Protocol::Eg4Ll => tokio::spawn(modbus::serve(master, p, c, bms::eg4_ll::sim::registers)),
        Protocol::Foxess => tokio::spawn(bms::foxess::sim::serve(master, p, c)),
        Protocol::JkRs485 => tokio::spawn(bms::jk_rs485::sim::serve(master, p, c)),
        Protocol::Daly => tokio::spawn(bms::daly::sim::serve(master, p, c)),
        Protocol::Eg4Lifepower => tokio::spawn(bms::eg4_lifepower::sim::serve(master, p, c)),
        Protocol::VictronCan => {
            return Err(std::io::Error::other(
                "victron_can runs on a CAN bus: use bms::victron_can::sim::spawn",
            ))
        }
        Protocol::Mqtt => {
            return Err(std::io::Error::other("mqtt runs on a broker: publish JSON messages (tests/mqtt_broker.rs)"))
        }
    };
    Ok(PtySimulator { path, control, packs, task, _guard: guard })
}
