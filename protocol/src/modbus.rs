//! Modbus register maps for the three classes, as data.
//!
//! The firmware's slave side serves these tables and the gateway's poller
//! reads them, from this one definition. Third-party controllers use the same
//! [`Register`] shape in the gateway's configuration, so a vendor's fire-pump
//! cabinet is described, not coded. [`RegisterMap::write_markdown`] prints the
//! tables in `docs/protocol.md` (a test keeps the two identical).
//!
//! Addresses are PDU addresses (0-based), as on the wire; documentation in the
//! 3xxxx/4xxxx style adds one.

use core::fmt;

use crate::class::DeviceClass;
use crate::code::EventCode;
use crate::message::Op;
use crate::metric::{Metric, MetricInfo, PortMetric};

/// Version of these maps, served at input register 0 so a poller can check it
/// talks to the layout it expects.
pub const MAP_VERSION: u16 = 1;

/// The four Modbus data tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Read/write bits (FC 01 read, FC 05/15 write).
    Coil,
    /// Read-only bits (FC 02).
    DiscreteInput,
    /// Read-only 16-bit words (FC 04).
    InputRegister,
    /// Read/write 16-bit words (FC 03 read, FC 06/16 write).
    HoldingRegister,
}

impl Table {
    /// The function code that reads this table.
    #[must_use]
    pub const fn read_function(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::DiscreteInput => 2,
            Table::HoldingRegister => 3,
            Table::InputRegister => 4,
        }
    }

    /// The single-item write function code, if the table is writable.
    #[must_use]
    pub const fn write_function(self) -> Option<u8> {
        match self {
            Table::Coil => Some(5),
            Table::HoldingRegister => Some(6),
            _ => None,
        }
    }

    /// Whether items are bits rather than words.
    #[must_use]
    pub const fn is_bit(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Name as printed in the docs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete input",
            Table::InputRegister => "input register",
            Table::HoldingRegister => "holding register",
        }
    }
}

/// Order of the four bytes of a 32-bit value spread over two registers.
///
/// `Abcd` is Modbus's natural big-endian order; controllers in the field use
/// all four, so third-party maps must be able to say which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WordOrder {
    /// High word first, bytes big-endian (most common).
    Abcd,
    /// Low word first, bytes big-endian ("word swap").
    Cdab,
    /// High word first, bytes swapped.
    Badc,
    /// Fully little-endian.
    Dcba,
}

impl WordOrder {
    /// The name used in configuration files and the docs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "abcd",
            WordOrder::Cdab => "cdab",
            WordOrder::Badc => "badc",
            WordOrder::Dcba => "dcba",
        }
    }

    /// Turns two registers into big-endian bytes `[A, B, C, D]`.
    #[must_use]
    pub const fn to_be_bytes(self, w: [u16; 2]) -> [u8; 4] {
        let [h0, l0] = w[0].to_be_bytes();
        let [h1, l1] = w[1].to_be_bytes();
        match self {
            WordOrder::Abcd => [h0, l0, h1, l1],
            WordOrder::Cdab => [h1, l1, h0, l0],
            WordOrder::Badc => [l0, h0, l1, h1],
            WordOrder::Dcba => [l1, h1, l0, h0],
        }
    }

    /// Spreads big-endian bytes `[A, B, C, D]` over two registers.
    #[must_use]
    pub const fn from_be_bytes(self, b: [u8; 4]) -> [u16; 2] {
        let [a, b1, c, d] = b;
        let (w0, w1) = match self {
            WordOrder::Abcd => ([a, b1], [c, d]),
            WordOrder::Cdab => ([c, d], [a, b1]),
            WordOrder::Badc => ([b1, a], [d, c]),
            WordOrder::Dcba => ([d, c], [b1, a]),
        };
        [u16::from_be_bytes(w0), u16::from_be_bytes(w1)]
    }
}

/// How a point's raw bits or words are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// One bit (coil or discrete input), or a word that is 0 or 1.
    Bool,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit over two registers.
    U32(WordOrder),
    /// Signed 32-bit over two registers.
    I32(WordOrder),
    /// IEEE 754 single over two registers.
    F32(WordOrder),
}

impl DataType {
    /// How many registers (or bits) it occupies.
    #[must_use]
    pub const fn words(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            _ => 2,
        }
    }

    /// Name as printed in the docs and written in configuration files.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32(_) => "u32",
            DataType::I32(_) => "i32",
            DataType::F32(_) => "f32",
        }
    }

    /// The smallest and largest raw number the type holds.
    #[must_use]
    pub fn range(self) -> (f64, f64) {
        match self {
            DataType::Bool => (0.0, 1.0),
            DataType::U16 => (0.0, f64::from(u16::MAX)),
            DataType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            DataType::U32(_) => (0.0, f64::from(u32::MAX)),
            DataType::I32(_) => (f64::from(i32::MIN), f64::from(i32::MAX)),
            DataType::F32(_) => (f64::from(f32::MIN), f64::from(f32::MAX)),
        }
    }

    /// Reads raw registers (bits as 0/1 words) into a number, before scaling.
    ///
    /// # Errors
    /// [`RegisterError::WrongLength`] if `words` does not have [`Self::words`] items.
    pub fn decode(self, words: &[u16]) -> Result<f64, RegisterError> {
        let need = usize::from(self.words());
        let pair = |o: WordOrder| o.to_be_bytes([words[0], words[1]]);
        if words.len() != need {
            return Err(RegisterError::WrongLength {
                expected: self.words(),
                got: words.len(),
            });
        }
        Ok(match self {
            DataType::Bool => f64::from(u8::from(words[0] != 0)),
            DataType::U16 => f64::from(words[0]),
            DataType::I16 => f64::from(i16::from_be_bytes(words[0].to_be_bytes())),
            DataType::U32(o) => f64::from(u32::from_be_bytes(pair(o))),
            DataType::I32(o) => f64::from(i32::from_be_bytes(pair(o))),
            DataType::F32(o) => f64::from(f32::from_be_bytes(pair(o))),
        })
    }

    /// Writes a raw number (already unscaled) into registers.
    ///
    /// # Errors
    /// [`RegisterError::OutOfRange`] if the number does not fit the type.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn encode(self, raw: f64) -> Result<heapless::Vec<u16, 2>, RegisterError> {
        let out_of_range = RegisterError::OutOfRange { data_type: self };
        let (lo, hi) = self.range();
        if !raw.is_finite() || raw < lo || raw > hi {
            return Err(out_of_range);
        }
        let mut out = heapless::Vec::new();
        let words: &[u16] = match self {
            DataType::Bool => &[u16::from(raw != 0.0)],
            DataType::U16 => &[round(raw) as u16],
            DataType::I16 => &[u16::from_be_bytes((round(raw) as i16).to_be_bytes())],
            DataType::U32(o) => &o.from_be_bytes((round(raw) as u32).to_be_bytes()),
            DataType::I32(o) => &o.from_be_bytes((round(raw) as i32).to_be_bytes()),
            DataType::F32(o) => &o.from_be_bytes((raw as f32).to_be_bytes()),
        };
        // Cannot fail: at most two words.
        let _ = out.extend_from_slice(words);
        Ok(out)
    }
}

/// Rounds half away from zero (`f64::round` is not in `core`).
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn round(x: f64) -> f64 {
    // Callers have bounded |x| to the 32-bit range, so the i64 cast is exact.
    let t = x as i64 as f64;
    if (x - t).abs() >= 0.5 { t + x.signum() } else { t }
}

/// A register value that cannot be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Wrong number of registers for the type.
    #[error("expected {expected} registers, got {got}")]
    WrongLength {
        /// Registers the type needs.
        expected: u16,
        /// Registers given.
        got: usize,
    },
    /// The value does not fit the register type.
    #[error("value does not fit a {} register", data_type.as_str())]
    OutOfRange {
        /// The register's type.
        data_type: DataType,
    },
}

/// Facts about the node itself, for the poller to check what it talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InfoField {
    /// [`MAP_VERSION`].
    MapVersion,
    /// The node's [`DeviceClass`] id.
    Class,
    /// Number of ports (charging bays).
    PortCount,
}

/// What a register means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// Node facts.
    Info(InfoField),
    /// A device-level metric.
    Metric(Metric),
    /// A per-port metric (inside a [`PortBlock`]).
    PortMetric(PortMetric),
    /// 1 while the node has this event code active.
    Event(EventCode),
    /// Writing 1 performs the command (inside a port block: on that port).
    Command(Op),
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Point::Info(InfoField::MapVersion) => f.write_str("map version"),
            Point::Info(InfoField::Class) => f.write_str("device class id"),
            Point::Info(InfoField::PortCount) => f.write_str("port count"),
            Point::Metric(m) => write!(f, "`{m}`"),
            Point::PortMetric(m) => write!(f, "port `{m}`"),
            Point::Event(c) => write!(f, "event `{c}` active"),
            Point::Command(op) => write!(f, "command `{op}`"),
        }
    }
}

/// One point in a map: where it is, how to read it, and what it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Register {
    /// The table.
    pub table: Table,
    /// PDU address (inside a port block: offset from the block's base).
    pub address: u16,
    /// How to read it.
    pub data_type: DataType,
    /// Engineering value = raw × scale.
    pub scale: f64,
    /// What it is.
    pub point: Point,
}

impl Register {
    /// The engineering value of raw registers.
    ///
    /// # Errors
    /// See [`DataType::decode`].
    pub fn read(&self, words: &[u16]) -> Result<f64, RegisterError> {
        Ok(self.data_type.decode(words)? * self.scale)
    }

    /// The raw registers for an engineering value.
    ///
    /// # Errors
    /// See [`DataType::encode`].
    pub fn write(&self, value: f64) -> Result<heapless::Vec<u16, 2>, RegisterError> {
        self.data_type.encode(value / self.scale)
    }

    /// Whether a master may write it.
    #[must_use]
    pub const fn writable(&self) -> bool {
        matches!(self.point, Point::Command(_)) && self.table.write_function().is_some()
    }
}

/// Points repeated per charging port: port `p` (1-based) has its copy of
/// `fields` at `base + stride × (p − 1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PortBlock {
    /// The table of all fields (they share it).
    pub table: Table,
    /// Address of port 1's first field.
    pub base: u16,
    /// Distance between two ports' blocks.
    pub stride: u16,
    /// The fields, `address` being the offset within the block.
    pub fields: &'static [Register],
}

/// A point resolved to its absolute address (and port, in a block).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// The register with its absolute address.
    pub register: Register,
    /// The port, for points in a port block.
    pub port: Option<u8>,
}

/// The register map of one class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegisterMap {
    /// The class that serves it.
    pub class: DeviceClass,
    /// Device-level points.
    pub registers: &'static [Register],
    /// Per-port points.
    pub port_blocks: &'static [PortBlock],
}

/// Most ports a map addresses (the port blocks have room for this many).
pub const MAX_MAP_PORTS: u8 = 16;

impl RegisterMap {
    /// Every point with its absolute address, for a node with `ports` ports.
    pub fn entries(&self, ports: u8) -> impl Iterator<Item = Entry> + '_ {
        let ports = ports.min(MAX_MAP_PORTS);
        let device = self.registers.iter().map(|r| Entry {
            register: *r,
            port: None,
        });
        let per_port = self.port_blocks.iter().flat_map(move |b| {
            (1..=ports).flat_map(move |p| {
                b.fields.iter().map(move |f| Entry {
                    register: Register {
                        table: b.table,
                        address: b.base + b.stride * u16::from(p - 1) + f.address,
                        ..*f
                    },
                    port: Some(p),
                })
            })
        });
        device.chain(per_port)
    }

    /// The point at an address, for a node with `ports` ports.
    #[must_use]
    pub fn find(&self, table: Table, address: u16, ports: u8) -> Option<Entry> {
        self.entries(ports).find(|e| {
            e.register.table == table
                && address >= e.register.address
                && address < e.register.address + e.register.data_type.words()
        })
    }

    /// Prints the map as a Markdown table, as it appears in `docs/protocol.md`.
    ///
    /// # Errors
    /// Only if the writer fails.
    pub fn write_markdown(&self, w: &mut impl fmt::Write) -> fmt::Result {
        writeln!(w, "| table | address | type | scale | unit | point | access |")?;
        writeln!(w, "|---|---|---|---|---|---|---|")?;
        for r in self.registers {
            write_row(w, r, &DecimalAddress(r.address))?;
        }
        for b in self.port_blocks {
            for f in b.fields {
                let r = Register { table: b.table, ..*f };
                write_row(
                    w,
                    &r,
                    &PortAddress {
                        base: b.base + f.address,
                        stride: b.stride,
                    },
                )?;
            }
        }
        Ok(())
    }
}

struct DecimalAddress(u16);

impl fmt::Display for DecimalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

struct PortAddress {
    base: u16,
    stride: u16,
}

impl fmt::Display for PortAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} + {}·(p−1)", self.base, self.stride)
    }
}

fn write_row(w: &mut impl fmt::Write, r: &Register, address: &dyn fmt::Display) -> fmt::Result {
    let ty = match r.data_type {
        DataType::U32(o) | DataType::I32(o) | DataType::F32(o) => (r.data_type.as_str(), o.as_str()),
        other => (other.as_str(), ""),
    };
    let unit = match r.point {
        Point::Metric(m) => m.unit().symbol(),
        Point::PortMetric(m) => m.unit().symbol(),
        _ => "",
    };
    let access = if r.writable() { "write 1" } else { "read" };
    let sep = if ty.1.is_empty() { "" } else { " " };
    writeln!(
        w,
        "| {} | {address} | {}{sep}{} | {} | {unit} | {} | {access} |",
        r.table.as_str(),
        ty.0,
        ty.1,
        r.scale,
        r.point
    )
}

/// The built-in map for a class.
#[must_use]
pub const fn map_for(class: DeviceClass) -> &'static RegisterMap {
    match class {
        DeviceClass::Elevator => &ELEVATOR,
        DeviceClass::Firepump => &FIREPUMP,
        DeviceClass::Charger => &CHARGER,
    }
}

const fn reg(table: Table, address: u16, data_type: DataType, scale: f64, point: Point) -> Register {
    Register {
        table,
        address,
        data_type,
        scale,
        point,
    }
}

const fn bit(table: Table, address: u16, point: Point) -> Register {
    reg(table, address, DataType::Bool, 1.0, point)
}

const fn info(address: u16, field: InfoField) -> Register {
    reg(Table::InputRegister, address, DataType::U16, 1.0, Point::Info(field))
}

const fn metric(address: u16, data_type: DataType, scale: f64, m: Metric) -> Register {
    reg(Table::InputRegister, address, data_type, scale, Point::Metric(m))
}

const fn flag(address: u16, m: Metric) -> Register {
    bit(Table::DiscreteInput, address, Point::Metric(m))
}

const fn event(address: u16, c: EventCode) -> Register {
    bit(Table::DiscreteInput, address, Point::Event(c))
}

const fn port(offset: u16, data_type: DataType, scale: f64, m: PortMetric) -> Register {
    reg(Table::InputRegister, offset, data_type, scale, Point::PortMetric(m))
}

const fn command(table: Table, address: u16, op: Op) -> Register {
    bit(table, address, Point::Command(op))
}

use DataType::{I16, U16, U32};
use WordOrder::Abcd;

/// Points of the class maps our own nodes have no input for: the elevator
/// node sees contacts and the governor sheave, not the controller's safety
/// chain or service mode; the pump room node is not wired to the fire alarm
/// panel. Their slave reads such a point as 0 (Modbus has no "no value"),
/// which for these would look like a fault (`safety_circuit_ok` false,
/// service mode 0 "out of service"), so a poller of our nodes leaves them
/// out; a vendor controller that implements the whole map serves them.
pub const NOT_MEASURED_BY_NODES: &[(DeviceClass, Metric)] = &[
    (DeviceClass::Elevator, Metric::SafetyCircuitOk),
    (DeviceClass::Elevator, Metric::ServiceMode),
    (DeviceClass::Firepump, Metric::FireAlarm),
];

/// Elevator node map.
pub static ELEVATOR: RegisterMap = RegisterMap {
    class: DeviceClass::Elevator,
    registers: &[
        info(0, InfoField::MapVersion),
        info(1, InfoField::Class),
        metric(2, I16, 1.0, Metric::Floor),
        metric(3, U16, 1.0, Metric::Direction),
        metric(4, U16, 1.0, Metric::ServiceMode),
        metric(5, U16, 0.001, Metric::SpeedMps),
        metric(6, U16, 0.001, Metric::RatedSpeedMps),
        metric(7, U16, 1.0, Metric::LoadPct),
        metric(8, U32(Abcd), 1.0, Metric::RunCount),
        metric(10, U32(Abcd), 0.1, Metric::RunHours),
        flag(0, Metric::Running),
        flag(1, Metric::DoorZone),
        flag(2, Metric::DoorClosed),
        flag(3, Metric::Occupied),
        flag(4, Metric::PowerOk),
        flag(5, Metric::SafetyCircuitOk),
        flag(6, Metric::AlarmButton),
        flag(7, Metric::EbikeDetected),
        event(100, EventCode::SafetyCircuitBreak),
        event(101, EventCode::DoorCloseFault),
        event(102, EventCode::DoorOpenFault),
        event(103, EventCode::StoppedOutsideDoorZone),
        event(104, EventCode::UnintendedMovement),
        event(105, EventCode::RunTimeLimiter),
        event(106, EventCode::PositionLost),
        event(107, EventCode::RestartPrevented),
        event(108, EventCode::OvertravelTop),
        event(109, EventCode::OvertravelBottom),
        event(110, EventCode::Trapped),
        event(111, EventCode::Overspeed),
        event(112, EventCode::DoorOpenWhileRunning),
        event(113, EventCode::PowerCut),
        event(114, EventCode::AlarmButton),
        event(115, EventCode::EbikeInCar),
    ],
    port_blocks: &[],
};

/// Fire pump room node map.
pub static FIREPUMP: RegisterMap = RegisterMap {
    class: DeviceClass::Firepump,
    registers: &[
        info(0, InfoField::MapVersion),
        info(1, InfoField::Class),
        metric(2, U16, 0.001, Metric::OutletPressureMpa),
        metric(3, U16, 0.001, Metric::NetworkPressureMpa),
        metric(4, U16, 0.01, Metric::TankLevelM),
        flag(0, Metric::PumpRunning),
        flag(1, Metric::PumpFault),
        flag(2, Metric::AutoMode),
        flag(3, Metric::StartSignal),
        flag(4, Metric::JockeyRunning),
        flag(5, Metric::MainPowerOk),
        flag(6, Metric::BackupPowerOk),
        flag(7, Metric::SelfTestRunning),
        flag(8, Metric::FireAlarm),
        event(100, EventCode::FireAlarm),
        event(101, EventCode::PumpFailToStart),
        event(102, EventCode::PumpFault),
        event(103, EventCode::LowPressure),
        event(104, EventCode::LowTankLevel),
        event(105, EventCode::NotInAuto),
        event(106, EventCode::MainPowerFault),
        event(107, EventCode::BackupPowerFault),
        command(Table::Coil, 0, Op::SelfTest),
    ],
    port_blocks: &[],
};

/// Charging bay node map.
pub static CHARGER: RegisterMap = RegisterMap {
    class: DeviceClass::Charger,
    registers: &[
        info(0, InfoField::MapVersion),
        info(1, InfoField::Class),
        info(2, InfoField::PortCount),
        metric(3, U16, 0.1, Metric::MainsVoltageV),
        metric(4, I16, 0.1, Metric::AmbientTempC),
        metric(5, U16, 0.1, Metric::LeakageMa),
        flag(0, Metric::Smoke),
        event(100, EventCode::OverTemperature),
        event(101, EventCode::OverCurrent),
        event(102, EventCode::Smoke),
        event(103, EventCode::Leakage),
        event(104, EventCode::ChargeTimeout),
        event(105, EventCode::FullCutoff),
        event(106, EventCode::TempRising),
        command(Table::Coil, 0, Op::CutOff),
        command(Table::Coil, 1, Op::Clear),
    ],
    port_blocks: &[
        PortBlock {
            table: Table::InputRegister,
            base: 100,
            stride: 10,
            fields: &[
                port(0, U16, 1.0, PortMetric::State),
                port(1, U16, 0.1, PortMetric::PowerW),
                port(2, U16, 0.01, PortMetric::CurrentA),
                port(3, I16, 0.1, PortMetric::TempC),
                port(4, U32(Abcd), 0.1, PortMetric::EnergyWh),
                port(6, U32(Abcd), 1.0, PortMetric::SessionS),
            ],
        },
        PortBlock {
            table: Table::Coil,
            base: 100,
            stride: 1,
            fields: &[command(Table::Coil, 0, Op::CutOff)],
        },
        PortBlock {
            table: Table::Coil,
            base: 200,
            stride: 1,
            fields: &[command(Table::Coil, 0, Op::Clear)],
        },
    ],
};
