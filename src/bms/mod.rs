//! The BMS registry: one [`Spec`] per protocol, and [`ALL`], the only list of them.
//!
//! A spec says what the rest of the daemon needs to know about a protocol without decoding a
//! byte of it: its name in the config file, the link it runs on, line speed, addressing, and the
//! writes it offers. [`Protocol`] is the key into this table (config files, CLI arguments and
//! drivers carry it); every question about a protocol is answered by its spec. Adding a protocol
//! is one line in [`registry!`] below and its `SPEC` in a file of this folder
//! (`docs/architecture.md` "Adding a BMS").
//!
//! Like `protocol/`, this module is pure and imports nothing from the layers above it
//! (`tests/architecture.rs`).

pub mod daly;
pub mod daly_ble;
pub mod daly_can;
pub mod daren_485;
pub mod eg4_lifepower;
pub mod eg4_lifepower4;
pub mod eg4_ll;
pub mod foxess;
pub mod jbd;
pub mod jbd_ble;
pub mod jbd_up16s;
pub mod jk_ble;
pub mod jk_can;
pub mod jk_pb;
pub mod jk_rs485;
pub mod mqtt;
pub mod renogy;
pub mod victron_can;

pub mod listen;
pub mod plan;

pub use plan::PollError;

pub use crate::protocol::gatt::Gatt;
use crate::protocol::writes::{Write, WriteSupport};
use crate::protocol::{Decoded, FrameError, Scan};
use plan::{PollPlan, PollTarget};
use serde::Deserialize;
use std::time::Duration;

/// What a port of this protocol is opened as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A serial port with the protocol's own framing (request, then a frame found by `scan`).
    Serial,
    /// A serial port driven as a Modbus RTU master (tokio-modbus).
    Modbus,
    /// A SocketCAN interface (`can0`); the bit rate is set on the interface, not by us.
    Can,
    /// An MQTT broker: JSON messages on a topic (`device` is `mqtt://host[:port]/topic`).
    Mqtt,
    /// Bluetooth LE through BlueZ (`device` is `ble:AA:BB:CC:DD:EE:FF`): requests written to one
    /// GATT characteristic, replies reassembled from the notifications of another.
    Ble(Gatt),
}

impl Link {
    /// The link's family: 0 a serial port (own framing or Modbus), 1 CAN, 2 MQTT. Const, for the
    /// key lists below.
    const fn family(self) -> u8 {
        match self {
            Link::Serial | Link::Modbus => 0,
            Link::Can => 1,
            Link::Mqtt => 2,
            Link::Ble(_) => 3,
        }
    }
}

/// Why an address cannot be a BMS address of the protocol (`None`: it can).
pub type AddressRule = fn(u8) -> Option<String>;

/// The writes a protocol documents, and how they go on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Writes {
    /// Which writes are offered.
    pub support: WriteSupport,
    /// The request for a write to the BMS at an address (`None`: not offered, or out of range).
    pub request: fn(u8, Write) -> Option<Vec<u8>>,
    /// Checks that a frame acknowledges a write to the BMS at an address.
    pub check_ack: fn(u8, &[u8]) -> Result<(), FrameError>,
    /// Finds the acknowledgement in the bytes received.
    pub ack_scan: fn(&[u8]) -> Scan,
}

impl Writes {
    /// A protocol that offers no writes.
    pub const NONE: Writes = Writes {
        support: WriteSupport::NONE,
        request: |_, _| None,
        check_ack: |_, _| Err(FrameError::InvalidField { field: "write_not_supported" }),
        ack_scan: |_| Scan::Incomplete,
    };
}

/// The codec's entry points, for the tools that take a protocol by name (`bms-bridge decode`,
/// the contract tests, the fuzz targets, the benches).
#[derive(Debug, Clone, Copy)]
pub enum Codec {
    /// A byte stream: replies found by `scan`, one reply (with leading garbage or trailing bytes
    /// allowed) decoded by `decode`.
    Bytes {
        /// The scanner the transport uses for replies.
        scan: fn(&[u8]) -> Scan,
        /// Decodes the first reply in the bytes (every sentence given, for multi-sentence replies).
        decode: fn(&[u8]) -> Result<Decoded, FrameError>,
    },
    /// CAN frames: one frame (id, data) decoded at the protocol's standard scales.
    Can {
        /// Decodes one frame.
        decode: fn(u32, &[u8]) -> Result<Decoded, FrameError>,
    },
    /// One JSON message (MQTT): the whole battery, or the field at fault and why.
    Json {
        /// Decodes one message.
        decode: fn(&[u8]) -> Result<Decoded, mqtt::MessageError>,
    },
}

/// Decodes a Modbus reply as the answer to a read from the given register.
pub type DecodeAtRegister = fn(&[u8], u16) -> Result<Decoded, FrameError>;

/// Everything the daemon knows about one protocol outside its codec.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The name used in the config file, on the command line and in the test vectors.
    pub name: &'static str,
    /// What a port of this protocol is opened as.
    pub link: Link,
    /// Line speed the BMS ships with (0 on CAN: the interface has its own bit rate).
    pub default_baud: u32,
    /// Whether several BMS can share one bus (the protocol carries an address).
    pub addressable: bool,
    /// Whether all addresses of a port form ONE battery (FoxESS packs in series) instead of one
    /// battery per address.
    pub one_battery_per_port: bool,
    /// Address used when the config names none (`None`: the protocol has no addresses).
    pub default_address: Option<u8>,
    /// Addresses `probe` tries, in order.
    pub probe_addresses: &'static [Option<u8>],
    /// The dbus-serialbattery BMS classes (`BMS_TYPE`) this protocol replaces, for
    /// `import-serialbattery`.
    pub serialbattery_classes: &'static [&'static str],
    /// Which configured addresses are wrong for this protocol, and why.
    pub address_problem: AddressRule,
    /// The writes it offers.
    pub writes: Writes,
    /// Its codec, by entry point.
    pub codec: Codec,
    /// Its poll plan, built for each poll (`None`: not polled, e.g. CAN protocols that
    /// broadcast).
    pub poll: Option<fn(PollTarget<'_>) -> Box<dyn PollPlan>>,
    /// Least time between the end of a reply and the next request, for BMSes that drop
    /// requests sent too soon (`None`: no gap).
    pub command_gap: Option<Duration>,
    /// Starts its simulator on a pty (`None`: no serial simulator; CAN has its own).
    pub simulator: Option<crate::sim::serve::Simulator>,
    /// Cells of every pack of this protocol, whatever the simulator is asked for (FoxESS HV2600:
    /// 18), `None`: any count.
    pub cells_per_pack: Option<usize>,
    /// A CAN protocol that is polled: how its sentences travel as CAN frames, so its poll plan
    /// runs over the CAN bus as over a serial port (Daly CAN). `None`: not polled over CAN.
    pub can_bridge: Option<crate::transport::can_bridge::CanBridge>,
    /// Modbus protocols: decodes a reply as the answer to a read from `register` (a Modbus reply
    /// does not say which register it answers; `decode --register N`). `None`: by size only.
    pub decode_at_register: Option<DecodeAtRegister>,
    /// `/Manufacturer` (the BMS maker; in brackets where the protocol does not tell, and the
    /// battery's own name, if it sends one, is `/DeviceName`).
    pub manufacturer: &'static str,
    /// A CAN protocol that is listened to: its listener ([`listen`]). `None`: polled, or not CAN.
    pub listener: Option<listen::MakeListener>,
}

/// The spec of a BLE protocol: one BMS per device, no addresses, no line speed, no writes, not
/// imported from dbus-serialbattery (its BLE configs name the MAC elsewhere).
pub const fn ble_spec(
    name: &'static str,
    manufacturer: &'static str,
    gatt: Gatt,
    codec: Codec,
    poll: fn(PollTarget<'_>) -> Box<dyn PollPlan>,
    simulator: crate::sim::serve::Simulator,
) -> Spec {
    Spec {
        name,
        link: Link::Ble(gatt),
        default_baud: 0,
        addressable: false,
        one_battery_per_port: false,
        default_address: None,
        probe_addresses: &[None],
        serialbattery_classes: &[],
        address_problem: any_address,
        writes: Writes::NONE,
        codec,
        poll: Some(poll),
        command_gap: None,
        simulator: Some(simulator),
        cells_per_pack: None,
        can_bridge: None,
        decode_at_register: None,
        manufacturer,
        listener: None,
    }
}

/// The address rule of protocols that accept every address they carry.
pub fn any_address(_: u8) -> Option<String> {
    None
}

/// Declares the protocols: the [`Protocol`] key, [`ALL`] and the key-to-spec map, from one list,
/// so a protocol cannot be in one and missing from another.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident => $spec:path,)+) => {
        /// The BMS protocols a port can speak: a key into [`ALL`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Protocol {
            $($(#[$doc])* $variant,)+
        }

        /// Every protocol's spec; serial protocols in the order `probe` tries them.
        pub static ALL: &[&Spec] = &[$(&$spec,)+];

        /// Every protocol, in the order of [`ALL`].
        const KEYS: &[Protocol] = &[$(Protocol::$variant,)+];

        impl Protocol {
            /// This protocol's spec.
            pub const fn spec(self) -> &'static Spec {
                match self {
                    $(Protocol::$variant => &$spec,)+
                }
            }
        }
    };
}

registry! {
    /// JBD / LLT / Overkill classic UART or RS485 (`DD A5 ...`), one BMS per port.
    Jbd => jbd::SPEC,
    /// JBD UP-series RS485 (addressable, CRC-16/MODBUS).
    JbdUp16s => jbd_up16s::SPEC,
    /// JK PB inverter BMS, RS485 115200: FC16 trigger, 300-byte `55 AA EB 90` reply + ACK.
    JkPb => jk_pb::SPEC,
    /// Renogy smart batteries, Modbus RTU 9600, registers 5000+.
    Renogy => renogy::SPEC,
    /// EG4-LL / LL-S v2, Modbus RTU 9600, DIP addresses.
    Eg4Ll => eg4_ll::SPEC,
    /// FoxESS HV2600 packs (V1) in series: Modbus FC03 + `0D 0A`, 115200; one battery per port.
    Foxess => foxess::SPEC,
    /// JK BMS, older RS485/TTL protocol (`4E 57 ...`), one BMS per port.
    JkRs485 => jk_rs485::SPEC,
    /// Daly UART/RS485 (`A5 ...` sentences), addressable (0x40 + board - 1).
    Daly => daly::SPEC,
    /// EG4 LifePower (TianPower/Narada `7E ... 0D`), addresses 1-15.
    Eg4Lifepower => eg4_lifepower::SPEC,
    /// EG4 LifePower4 v2 firmware, YD/T 1363 ASCII (`~20 ADR 4A ...`), addresses 1-15.
    Eg4Lifepower4 => eg4_lifepower4::SPEC,
    /// Daren / BASEN (DR-JC03), YD/T 1363 ASCII (`~22 ADR 4A ...`), 19200, addresses 0-15.
    Daren485 => daren_485::SPEC,
    /// The CAN "Victron/Pylontech dialect" over SocketCAN; `device` is the interface (`can0`).
    VictronCan => victron_can::SPEC,
    /// Daly over CAN, 250 kbit/s, 29-bit ids, polled by CAN address (`0x18 CC BB 40`).
    DalyCan => daly_can::SPEC,
    /// JK BMS CAN broadcast (`0x02F4 + address` ...), listened to.
    JkCan => jk_can::SPEC,
    /// Generic MQTT: dbus-serialbattery's JSON battery document on a broker topic.
    Mqtt => mqtt::SPEC,
    /// JBD / LLT / Overkill over Bluetooth LE (FF00: notify FF01, write FF02), the UART frames.
    JbdBle => jbd_ble::SPEC,
    /// JK BMS over Bluetooth LE (FFE0/FFE1): `AA 55 90 EB` commands, 300-byte `55 AA EB 90` frames.
    JkBle => jk_ble::SPEC,
    /// Daly over Bluetooth LE (FFF0: notify FFF1, write FFF2): `D2 03` register read, 124-byte reply.
    DalyBle => daly_ble::SPEC,
}

/// The protocols of `KEYS` whose link is of `family` ([`Link::family`]), in order. Const, so
/// [`Protocol::ALL`], [`Protocol::CAN`] and [`Protocol::MQTT`] stay slices derived from the one list.
const fn keys_where<const N: usize>(family: u8) -> [Protocol; N] {
    let mut out = [Protocol::Jbd; N];
    let (mut from, mut to) = (0, 0);
    while from < KEYS.len() {
        // Const evaluation: an index out of bounds fails the build, it cannot panic at run time.
        #[allow(clippy::indexing_slicing)]
        let key = KEYS[from];
        if key.spec().link.family() == family {
            #[allow(clippy::indexing_slicing)]
            {
                out[to] = key;
            }
            to += 1;
        }
        from += 1;
    }
    out
}

/// How many of `KEYS` have a link of `family`.
const fn count_where(family: u8) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < KEYS.len() {
        #[allow(clippy::indexing_slicing)]
        if KEYS[i].spec().link.family() == family {
            n += 1;
        }
        i += 1;
    }
    n
}

const SERIAL_KEYS: [Protocol; count_where(0)] = keys_where(0);
const CAN_KEYS: [Protocol; count_where(1)] = keys_where(1);
const MQTT_KEYS: [Protocol; count_where(2)] = keys_where(2);
const BLE_KEYS: [Protocol; count_where(3)] = keys_where(3);

impl Protocol {
    /// Every serial protocol, in the order `probe` tries them.
    pub const ALL: &'static [Protocol] = &SERIAL_KEYS;

    /// The CAN protocols (not probed on serial ports).
    pub const CAN: &'static [Protocol] = &CAN_KEYS;

    /// The MQTT protocols (not probed on serial ports).
    pub const MQTT: &'static [Protocol] = &MQTT_KEYS;

    /// The Bluetooth LE protocols (not probed on serial ports; `scan-ble` finds them).
    pub const BLE: &'static [Protocol] = &BLE_KEYS;

    /// Every protocol, serial, CAN and MQTT, in the order of [`ALL`].
    pub fn every() -> impl Iterator<Item = Protocol> {
        KEYS.iter().copied()
    }

    /// The names of every protocol, for messages.
    pub fn names() -> String {
        ALL.iter().map(|spec| spec.name).collect::<Vec<_>>().join(", ")
    }

    /// The name used in the config file and on the command line.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Parses a config/CLI name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::every().find(|p| p.name() == name)
    }

    /// Addresses `probe` tries (none for protocols without addressing).
    pub fn probe_addresses(self) -> Vec<Option<u8>> {
        self.spec().probe_addresses.to_vec()
    }

    /// Line speed the BMS ships with.
    pub fn default_baud(self) -> u32 {
        self.spec().default_baud
    }

    /// Whether several BMS can share one bus (the protocol carries an address).
    pub fn addressable(self) -> bool {
        self.spec().addressable
    }

    /// Whether all addresses of a port form ONE battery (FoxESS packs in series) instead of
    /// one battery per address.
    pub fn one_battery_per_port(self) -> bool {
        self.spec().one_battery_per_port
    }

    /// Why `address` cannot be a BMS address of this protocol, if it cannot.
    pub fn address_problem(self, address: u8) -> Option<String> {
        (self.spec().address_problem)(address)
    }

    /// Address used when the config names none.
    pub fn default_address(self) -> Option<u8> {
        self.spec().default_address
    }

    /// The protocol that replaces the dbus-serialbattery BMS class `class` (`BMS_TYPE`), if any.
    pub fn for_serialbattery_class(class: &str) -> Option<Self> {
        Self::every().find(|p| p.spec().serialbattery_classes.contains(&class.trim()))
    }

    /// Whether the protocol runs on a CAN interface instead of a serial port.
    pub fn is_can(self) -> bool {
        self.spec().link == Link::Can
    }

    /// Whether the protocol runs on a CAN interface and is polled there (request/response by
    /// address, like a serial bus) instead of listened to.
    pub fn is_polled_can(self) -> bool {
        self.is_can() && self.spec().can_bridge.is_some() && self.spec().poll.is_some()
    }

    /// A CAN protocol that is listened to, with one battery per address on the bus (JK CAN's DIP
    /// addresses): one listener for the interface feeds a battery per address.
    pub fn listens_per_address(self) -> bool {
        self.spec().listener.is_some() && self.spec().addressable
    }

    /// A CAN protocol listened to with one battery per bus (the Victron/Pylontech dialect): the
    /// one kind that `[port.can]` options (keep-alive, scales, the Venus check) apply to.
    pub fn listens_per_bus(self) -> bool {
        self.spec().listener.is_some() && !self.spec().addressable
    }

    /// Whether the protocol reads JSON messages from an MQTT broker.
    pub fn is_mqtt(self) -> bool {
        self.spec().link == Link::Mqtt
    }

    /// Whether the protocol runs over Bluetooth LE (BlueZ), and its GATT layout.
    pub fn ble(self) -> Option<Gatt> {
        match self.spec().link {
            Link::Ble(gatt) => Some(gatt),
            Link::Serial | Link::Modbus | Link::Can | Link::Mqtt => None,
        }
    }

    /// The writes this protocol documents (and bms-bridge implements).
    pub fn writes(self) -> WriteSupport {
        self.spec().writes.support
    }

    /// The request for `write` to the BMS at `address`, or `None` when the protocol does not
    /// offer it (or the value is out of range).
    pub fn write_request(self, address: u8, write: Write) -> Option<Vec<u8>> {
        (self.spec().writes.request)(address, write)
    }

    /// Checks that `frame` acknowledges a write to `address`: valid frame, status OK, the
    /// written register / window echoed.
    pub fn check_ack(self, address: u8, frame: &[u8]) -> Result<(), FrameError> {
        (self.spec().writes.check_ack)(address, frame)
    }

    /// The scanner that finds a write acknowledgement of this protocol.
    pub fn ack_scan(self) -> fn(&[u8]) -> Scan {
        self.spec().writes.ack_scan
    }
}

/// Why a tool could not decode bytes of a named protocol (`decode`, the fuzz targets).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No protocol has this name.
    #[error("unknown protocol {name:?} (known: {})", Protocol::names())]
    UnknownProtocol {
        /// The name asked for.
        name: String,
    },
    /// A CAN protocol: a frame means nothing without its id.
    #[error("{name} frames need their CAN id (--can-id 0x351)")]
    NeedsCanId {
        /// The protocol.
        name: String,
    },
    /// A CAN id was given for a protocol that is not CAN.
    #[error("{name:?} is not a CAN protocol (CAN: {})", can_names())]
    NotCan {
        /// The protocol.
        name: String,
    },
    /// `--register` for a protocol whose replies say what they are.
    #[error("{name} replies say what they are; --register is for Modbus protocols that read registers")]
    NoRegisters {
        /// The protocol.
        name: String,
    },
    /// The bytes are not a valid frame of the protocol.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The message is not a valid document of the protocol (MQTT).
    #[error(transparent)]
    Message(#[from] mqtt::MessageError),
}

impl DecodeError {
    /// The frame error, where the bytes were decoded and refused.
    pub fn frame(&self) -> Option<&FrameError> {
        match self {
            DecodeError::Frame(e) => Some(e),
            _ => None,
        }
    }
}

fn can_names() -> String {
    Protocol::CAN.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
}

fn named(name: &str) -> Result<&'static Spec, DecodeError> {
    Protocol::from_name(name)
        .map(Protocol::spec)
        .ok_or_else(|| DecodeError::UnknownProtocol { name: name.to_owned() })
}

/// Decodes one frame of the named protocol (the names of the config file and of the vectors).
/// The frame may carry leading garbage or trailing bytes; the first valid frame is decoded.
pub fn decode_named(name: &str, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    match named(name)?.codec {
        Codec::Bytes { decode, .. } => Ok(decode(bytes)?),
        Codec::Can { .. } => Err(DecodeError::NeedsCanId { name: name.to_owned() }),
        Codec::Json { decode } => Ok(decode(bytes)?),
    }
}

/// Decodes one reply of the named protocol as the answer to a read from `register`.
pub fn decode_register_named(name: &str, register: u16, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let decode =
        named(name)?.decode_at_register.ok_or_else(|| DecodeError::NoRegisters { name: name.to_owned() })?;
    Ok(decode(bytes, register)?)
}

/// The scanner the transport uses for replies of the named protocol (`None`: unknown name or a
/// protocol that is not a byte stream). Used by the property tests and the fuzz targets to feed
/// the same bytes whole and in chunks.
pub fn scan_named(name: &str) -> Option<fn(&[u8]) -> Scan> {
    match Protocol::from_name(name)?.spec().codec {
        Codec::Bytes { scan, .. } => Some(scan),
        Codec::Can { .. } | Codec::Json { .. } => None,
    }
}

/// Decodes one CAN frame (`id`, data bytes) of the named CAN protocol at its standard scales.
pub fn decode_can_named(name: &str, id: u32, data: &[u8]) -> Result<Decoded, DecodeError> {
    match Protocol::from_name(name).map(|p| p.spec().codec) {
        Some(Codec::Can { decode }) => Ok(decode(id, data)?),
        Some(Codec::Bytes { .. } | Codec::Json { .. }) | None => {
            Err(DecodeError::NotCan { name: name.to_owned() })
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Protocol::from_name(&name).ok_or_else(|| {
            let expected: Vec<String> = ALL.iter().map(|spec| format!("`{}`", spec.name)).collect();
            // serde's own wording for an unknown enum variant, which the config messages show.
            serde::de::Error::custom(format!(
                "unknown variant `{name}`, expected one of {}",
                expected.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests;
