//! Chip-independent drivers, generic over embedded-hal 1.0. Each owns its bus
//! or pin by value (share a bus with `embedded-hal-bus`), as the embedded-hal
//! driver guidance says, and never names a chip.

pub mod as5600;
pub mod input;
pub mod mcp3208;
pub mod relay;
