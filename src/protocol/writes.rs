//! Writes to a BMS: which protocols document them, the command a D-Bus write becomes, and the
//! request / acknowledgement of each protocol. Pure: the driver sends, this module only builds and
//! checks bytes (`docs/dbus.md` "Writable paths", `docs/protocols/*.md` "Writes").
//!
//! Offered only where the protocol documents the write and a reply to check exists:
//! - JBD classic: MOSFET control, register 0xE1 (`jbd::request_mos_control`, ack
//!   `DD E1 00 00 00 00 77`). The register carries both FETs, so a command for one FET sends the
//!   requested state of both ([`FetRequest`]).
//! - JBD UP16S: SetSoc, function 0x79 at 0x2006 (`jbd_up16s::request_set_soc`).
//! - Daly: not offered. The sources disagree on the MOS data byte (`docs/protocols/daly.md`).
//!
//! Which protocol offers which write is its spec's (`bms::Spec::writes`), which points at the
//! functions here.

use super::{field, FrameError};
use crate::bms::jbd::codec as jbd;
use crate::bms::jbd_up16s::codec as jbd_up16s;
use std::fmt;

/// Which writes a protocol offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSupport {
    /// Charge / discharge MOSFET on-off.
    pub mosfet: bool,
    /// Setting the BMS's state of charge.
    pub soc: bool,
}

impl WriteSupport {
    /// No writes.
    pub const NONE: WriteSupport = WriteSupport { mosfet: false, soc: false };

    /// Whether any write is offered.
    pub fn any(self) -> bool {
        self.mosfet || self.soc
    }
}

/// An accepted D-Bus write, on its way to the port's poll loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BmsCommand {
    /// Charge MOSFET on (true) or forced off (false).
    SetChargeFet(bool),
    /// Discharge MOSFET on (true) or forced off (false).
    SetDischargeFet(bool),
    /// Set the BMS's SoC (%).
    SetSoc(f64),
}

impl fmt::Display for BmsCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |on: bool| if on { "on" } else { "forced off" };
        match self {
            BmsCommand::SetChargeFet(on) => write!(f, "charge MOSFET {}", on_off(*on)),
            BmsCommand::SetDischargeFet(on) => write!(f, "discharge MOSFET {}", on_off(*on)),
            BmsCommand::SetSoc(soc) => write!(f, "set SoC to {soc:.1} %"),
        }
    }
}

impl fmt::Display for WriteSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut what = Vec::new();
        if self.mosfet {
            what.push("MOSFETs on/off");
        }
        if self.soc {
            what.push("SoC");
        }
        f.write_str(if what.is_empty() { "none" } else { "" })?;
        f.write_str(&what.join(", "))
    }
}

/// What goes on the wire for one BMS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Write {
    /// Both MOSFETs as requested (JBD 0xE1 sets both at once).
    Mosfets(FetRequest),
    /// The SoC in %.
    Soc(f64),
}

impl Write {
    /// Whether `other` replaces this write (same kind: the newer request wins).
    pub fn same_kind(&self, other: &Write) -> bool {
        matches!((self, other), (Write::Mosfets(_), Write::Mosfets(_)) | (Write::Soc(_), Write::Soc(_)))
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |on: bool| if on { "on" } else { "off" };
        match self {
            Write::Mosfets(r) => {
                write!(f, "charge FET {}, discharge FET {}", on_off(r.charge_on), on_off(r.discharge_on))
            }
            Write::Soc(percent) => write!(f, "SoC {percent:.1} %"),
        }
    }
}

/// The MOSFET state requested from one BMS. Starts with both on: nothing forced until a client
/// writes, and bms-bridge never writes on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetRequest {
    /// Charge MOSFET allowed on.
    pub charge_on: bool,
    /// Discharge MOSFET allowed on.
    pub discharge_on: bool,
}

impl Default for FetRequest {
    fn default() -> Self {
        Self { charge_on: true, discharge_on: true }
    }
}

impl FetRequest {
    /// Applies `command` and returns the write that carries it.
    pub fn apply(&mut self, command: BmsCommand) -> Write {
        match command {
            BmsCommand::SetChargeFet(on) => {
                self.charge_on = on;
                Write::Mosfets(*self)
            }
            BmsCommand::SetDischargeFet(on) => {
                self.discharge_on = on;
                Write::Mosfets(*self)
            }
            BmsCommand::SetSoc(percent) => Write::Soc(percent),
        }
    }
}

/// JBD classic: the MOSFET control request (register 0xE1) for `write`; `None` for other writes.
/// The address is unused: one BMS per port.
pub fn jbd_request(_address: u8, write: Write) -> Option<Vec<u8>> {
    match write {
        Write::Mosfets(r) => Some(jbd::request_mos_control(!r.charge_on, !r.discharge_on)),
        Write::Soc(_) => None,
    }
}

/// JBD UP16S: the SetSoc request for `write` to `address`; `None` for other writes or a SoC
/// outside 0..=100 %.
pub fn jbd_up16s_request(address: u8, write: Write) -> Option<Vec<u8>> {
    match write {
        Write::Soc(percent) if (0.0..=100.0).contains(&percent) => {
            Some(jbd_up16s::request_set_soc(address, (percent * 100.0).round() as u16))
        }
        Write::Soc(_) | Write::Mosfets(_) => None,
    }
}

/// JBD classic: `frame` acknowledges the MOSFET write (valid frame, status OK, register 0xE1).
pub fn jbd_check_ack(_address: u8, frame: &[u8]) -> Result<(), FrameError> {
    jbd::decode(frame)?;
    let register = frame.get(1).copied().unwrap_or_default();
    if register != jbd::REG_MOS_CONTROL {
        return Err(FrameError::UnexpectedCommand { expected: jbd::REG_MOS_CONTROL, found: register });
    }
    Ok(())
}

/// JBD UP16S: `frame` acknowledges the SetSoc write from `address` (function 0x79, window 0x2006).
pub fn jbd_up16s_check_ack(address: u8, frame: &[u8]) -> Result<(), FrameError> {
    jbd_up16s::decode(frame, Some(address))?;
    let func = frame.get(1).copied().unwrap_or_default();
    let start = field::u16_at(frame, 2);
    if func != jbd_up16s::FUNC_WRITE || start != Some(jbd_up16s::SET_SOC.start) {
        return Err(FrameError::UnexpectedCommand { expected: jbd_up16s::FUNC_WRITE, found: func });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    #[test]
    fn commands_map_to_writes_of_both_fets() {
        let mut fets = FetRequest::default();
        let off = fets.apply(BmsCommand::SetChargeFet(false));
        assert_eq!(off, Write::Mosfets(FetRequest { charge_on: false, discharge_on: true }));
        // The discharge command keeps the charge FET as requested before.
        let both = fets.apply(BmsCommand::SetDischargeFet(false));
        assert_eq!(both, Write::Mosfets(FetRequest { charge_on: false, discharge_on: false }));
        assert_eq!(fets.apply(BmsCommand::SetSoc(80.0)), Write::Soc(80.0));
        assert!(off.same_kind(&both) && !off.same_kind(&Write::Soc(1.0)));
        assert_eq!(both.to_string(), "charge FET off, discharge FET off");
    }

    #[test]
    fn requests_match_the_vectors() {
        let charge_off = Write::Mosfets(FetRequest { charge_on: false, discharge_on: true });
        assert_eq!(jbd_request(1, charge_off), Some(hex("DD 5A E1 02 00 01 FF 1C 77")));
        let both_on = Write::Mosfets(FetRequest::default());
        assert_eq!(jbd_request(1, both_on), Some(hex("DD 5A E1 02 00 00 FF 1D 77")));
        let soc = jbd_up16s_request(1, Write::Soc(98.0));
        assert_eq!(soc, Some(hex("01 79 20 06 20 08 00 06 11 4A 42 44 26 48 42 10")));
        assert_eq!(jbd_up16s_request(1, Write::Soc(101.0)), None);
        assert_eq!(jbd_request(1, Write::Soc(50.0)), None);
    }

    #[test]
    fn acknowledgements_are_checked() {
        assert_eq!(jbd_check_ack(1, &hex("DD E1 00 00 00 00 77")), Ok(()));
        let error_status = jbd::encode_response(jbd::REG_MOS_CONTROL, 0x80, &[]);
        assert!(jbd_check_ack(1, &error_status).is_err());
        let other_register = hex("DD 01 00 00 00 00 77");
        assert!(matches!(jbd_check_ack(1, &other_register), Err(FrameError::UnexpectedCommand { .. })));
        let up = hex("01 79 20 06 20 08 00 00 6C 62");
        assert_eq!(jbd_up16s_check_ack(1, &up), Ok(()));
        assert!(jbd_up16s_check_ack(2, &up).is_err(), "another pack's ack");
        assert!(jbd_up16s_check_ack(1, &jbd_up16s::request_pack_status(1)).is_err());
    }
}
