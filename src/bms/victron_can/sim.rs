//! A BMS broadcasting the Victron/Pylontech CAN dialect on an in-memory CAN bus: one full frame
//! cycle per second from the pack model, as a real pack does. Honours `SimControl` (silent,
//! frozen, charge FET off) and counts the host's keep-alive frames as requests.

use crate::battery::Battery;
use crate::bms::victron_can::codec::{self as victron_can, encode};
use crate::sim::serve::{Packs, SimControl};
use crate::transport::can::{CanFrame, CanLink, MemoryCanBus, MemoryCanLink};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The battery the simulated BMS reports.
pub fn battery(pack: &crate::sim::model::SimPack, control: &SimControl) -> Battery {
    let n = pack.cells as f64;
    Battery {
        voltage_v: Some(pack.voltage_v()),
        current_a: Some(pack.current_a),
        soc_percent: Some(pack.soc_percent.round()),
        soh_percent: Some(100.0),
        cell_voltages_v: Some(pack.cell_voltages_v()),
        temperatures_c: Some(pack.temperatures_c.clone()),
        charge_voltage_limit_v: Some(3.5 * n),
        charge_current_limit_a: Some(if control.charge_fet_off() { 0.0 } else { 100.0 }),
        discharge_current_limit_a: Some(150.0),
        discharge_voltage_limit_v: Some(2.9 * n),
        nominal_capacity_ah: Some(pack.capacity_ah),
        charge_fet: Some(!control.charge_fet_off()),
        discharge_fet: Some(true),
        model: Some("SIMCAN".to_owned()),
        // As a JBD UP pack sends it in 0x380/0x381.
        serial: Some("UP16S-SIM-0001".to_owned()),
        ..Battery::default()
    }
}

/// Broadcasts on `link` every `period` until aborted.
pub async fn serve(mut link: MemoryCanLink, packs: Packs, control: Arc<SimControl>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if control.is_silent() {
                    continue;
                }
                let Some(b) = packs.with(None, &control, Instant::now(), |p| battery(p, &control)) else { return };
                for (id, data) in encode::cycle(&b) {
                    if link.send(&CanFrame { id, data }).await.is_err() {
                        return;
                    }
                }
                control.mark_sent();
            }
            frame = link.recv() => match frame {
                Ok(f) if f.id == victron_can::MANUFACTURER => control.count_request(),
                Ok(_) => {}
                Err(_) => return,
            },
        }
    }
}

/// A running CAN simulator; stops when dropped.
#[derive(Debug)]
pub struct CanSimulator {
    /// The bus the simulated BMS is on.
    pub bus: MemoryCanBus,
    /// Silent / frozen / FET switches; `requests()` counts keep-alive frames received.
    pub control: Arc<SimControl>,
    /// The simulated pack.
    pub packs: Packs,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CanSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a simulated `cells`-cell CAN BMS on a new in-memory bus (needs a tokio runtime).
pub fn spawn(cells: usize) -> CanSimulator {
    let bus = MemoryCanBus::new();
    let control = Arc::new(SimControl::default());
    let packs = Packs::new(&[None], cells);
    let task =
        tokio::spawn(serve(bus.connect(), packs.clone(), Arc::clone(&control), Duration::from_secs(1)));
    CanSimulator { bus, control, packs, task }
}
