//! BMS simulators shared by the tests and `bms-bridge demo`.

pub mod jbd;
pub mod jbd_up16s;
pub mod model;
pub mod pty;
