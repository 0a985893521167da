//! What a node exposes to Modbus: its current values by register-map point,
//! and the commands a master may give. The slave framing in [`crate::modbus`]
//! serves any [`RegisterImage`] through the class's map in
//! `protocol::modbus`, so the node logic never sees a frame.

use protocol::modbus::Point;
use protocol::{DeviceClass, Op};

use crate::hal::Millis;

/// Why a command from a master (or the gateway) was refused. Each has its
/// own ack text, so whoever reads the record knows what to do next (wait for
/// the socket to cool, put the cabinet in auto, fit the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// This class does not do that.
    Unsupported,
    /// No such port.
    NoSuchPort,
    /// The cause of a cut-off is still present, so it cannot be cleared
    /// (a cause the node cannot name more precisely).
    CauseStillPresent,
    /// `clear`: the socket has not cooled below `clear_temp_c`.
    StillHot,
    /// `clear`: the smoke detector still sees smoke.
    SmokePresent,
    /// `clear`: the leakage current is still at or above the limit (or
    /// cannot be measured).
    LeakagePresent,
    /// `self_test`: a run is already going.
    SelfTestRunning,
    /// `self_test`: the cabinet is not in auto, so a test would prove nothing.
    NotInAuto,
    /// `hold_doors`: this node has no door-hold output.
    NoDoorHold,
    /// `set_threshold`: no threshold of that name on this node.
    UnknownThreshold,
    /// `set_threshold`: the value is outside the threshold's range.
    OutOfRange,
    /// An argument is missing or malformed.
    BadArgument,
}

impl CommandError {
    /// The text sent back in an `ack` or logged (at most 64 bytes, ASCII).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandError::Unsupported => "unsupported by this node",
            CommandError::NoSuchPort => "no such port",
            CommandError::CauseStillPresent => "cause still present",
            CommandError::StillHot => "cause still present: port still hot",
            CommandError::SmokePresent => "cause still present: smoke",
            CommandError::LeakagePresent => "cause still present: leakage",
            CommandError::SelfTestRunning => "self-test already running",
            CommandError::NotInAuto => "cabinet not in auto",
            CommandError::NoDoorHold => "no door-hold output",
            CommandError::UnknownThreshold => "unknown threshold",
            CommandError::OutOfRange => "value out of range",
            CommandError::BadArgument => "bad argument",
        }
    }
}

/// A node's live values, as the register map names them.
pub trait RegisterImage {
    /// The node's class: selects the register map.
    fn class(&self) -> DeviceClass;

    /// Number of ports (charging bays), 0 otherwise.
    fn ports(&self) -> u8;

    /// The engineering value of a point, `None` when not (yet) measured.
    /// Flags and event bits are 0.0 or 1.0. `Point::Info` is answered by the
    /// slave itself.
    fn point(&self, point: Point, port: Option<u8>) -> Option<f64>;

    /// A master wrote 1 to a command coil.
    ///
    /// # Errors
    /// Why the node refused.
    fn command(&mut self, op: Op, port: Option<u8>, now: Millis) -> Result<(), CommandError>;
}
