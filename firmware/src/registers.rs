//! What a node exposes to Modbus: its current values by register-map point,
//! and the commands a master may give. The slave framing in [`crate::modbus`]
//! serves any [`RegisterImage`] through the class's map in
//! `protocol::modbus`, so the node logic never sees a frame.

use protocol::modbus::Point;
use protocol::{DeviceClass, Op};

use crate::hal::Millis;

/// Why a command from a master (or the gateway) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// This class does not do that.
    Unsupported,
    /// No such port.
    NoSuchPort,
    /// The cause of a cut-off is still present, so it cannot be cleared.
    CauseStillPresent,
    /// An argument is missing or out of range.
    BadArgument,
}

impl CommandError {
    /// The text sent back in an `ack` or logged.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandError::Unsupported => "unsupported by this node",
            CommandError::NoSuchPort => "no such port",
            CommandError::CauseStillPresent => "cause still present",
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
