//! The sensor node: chip-independent, `#![no_std]`, no heap.
//!
//! Layers, as embedded-hal's driver guidance and embassy lay them out:
//!
//! ```text
//! board crate (pins, clocks, UART)        ← names a chip
//!   └─ drivers (MCP3208, AS5600, inputs)  ← generic over embedded-hal 1.0
//!        └─ sensors (4–20 mA, NTC, shunt) ← pure conversions
//!             └─ node state machines      ← pure: readings + now → effects
//!                  └─ outbox, session     ← what goes on the wire
//! ```
//!
//! The node state machines never sleep or read a clock: they are fed readings
//! and a [`hal::Millis`], so tests (and the HIL simulation) drive them sample
//! by sample.
#![no_std]

pub mod alarm;
pub mod charger;
pub mod config;
pub mod debounce;
pub mod drivers;
pub mod elevator;
pub mod firepump;
pub mod hal;
pub mod io;
pub mod modbus;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod node;
pub mod outbox;
pub mod registers;
pub mod sensors;
