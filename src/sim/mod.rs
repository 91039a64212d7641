//! BMS simulators shared by the tests and `bms-bridge demo`.

pub mod jbd;
pub mod model;
pub mod pty;
