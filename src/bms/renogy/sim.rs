//! A simulated Renogy battery: registers 5000..5140 of a moving pack, served by the Modbus
//! simulator (a real tokio-modbus RTU server).

use crate::bms::renogy::codec::{Snapshot, CELLS};
use crate::sim::model::SimPack;
use crate::sim::serve::SimControl;

/// Register map of the pack at `address`: (5000, registers 5000..).
pub fn registers(address: u8, pack: &SimPack, control: &SimControl) -> (u16, Vec<u16>) {
    let snapshot = Snapshot {
        cells_v: pack.cell_voltages_mv().iter().map(|&mv| f64::from(mv) / 1000.0).collect(),
        temperatures_c: pack.temperatures_c.clone(),
        current_a: pack.current_a,
        voltage_v: pack.voltage_v(),
        remaining_ah: pack.remaining_ah(),
        full_ah: pack.capacity_ah,
        cycles: u16::try_from(pack.cycles).unwrap_or(u16::MAX),
        charge_fet: !control.charge_fet_off(),
        serial: format!("SIMRNG{address:03}"),
        model: "RBT100LFP12-SIM".to_owned(),
    };
    (CELLS.start, snapshot.registers())
}
