//! Simulated Daly packs on an in-memory CAN bus: the Daly UART simulator (`bms/daly/sim.rs`)
//! behind the same bridge the host uses, the other way round (request frames in as sentences,
//! reply sentences out as frames). Pack n of the bus answers CAN address n.

use super::codec;
use crate::bms::daly::codec as daly;
use crate::sim::serve::{Packs, SimControl, SimTask};
use crate::transport::can::{CanLink, MemoryCanBus};
use crate::transport::can_bridge::{self, CanBridge};
use std::sync::Arc;

/// The packs' side of the bridge.
const SIM_BRIDGE: CanBridge =
    CanBridge { scan: daly::scan, to_frame: codec::reply_frame, from_frame: codec::request_sentence };

/// Simulated packs at CAN `addresses` (1 if empty) on `bus`, each with `cells` cells.
#[derive(Debug)]
pub struct DalyCanSim {
    /// The packs, by UART host address (0x3F + CAN address).
    pub packs: Packs,
    /// The knobs (silent, frozen, ...), shared by every pack of the bus.
    pub control: Arc<SimControl>,
    /// The serving task.
    pub task: SimTask,
}

/// Starts the packs on `bus` (needs a tokio runtime).
pub fn spawn(bus: &MemoryCanBus, addresses: &[u8], cells: usize) -> DalyCanSim {
    spawn_on(bus.connect(), addresses, cells)
}

/// [`spawn`] on any CAN link (a SocketCAN socket on vcan0 in the VM test).
pub fn spawn_on<L: CanLink + 'static>(link: L, addresses: &[u8], cells: usize) -> DalyCanSim {
    let hosts: Vec<Option<u8>> = if addresses.is_empty() {
        vec![Some(0x40)]
    } else {
        addresses.iter().map(|a| Some(0x3F_u8.saturating_add(*a))).collect()
    };
    let packs = Packs::new(&hosts, cells);
    let control = Arc::new(SimControl::default());
    let stream = can_bridge::spawn(link, SIM_BRIDGE);
    let task = tokio::spawn(crate::bms::daly::sim::serve(stream, packs.clone(), Arc::clone(&control)));
    DalyCanSim { packs, control, task }
}
