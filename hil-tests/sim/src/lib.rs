//! The simulated compound: physics models
//! of an elevator, a fire water system and a charging bay, each stepped by a
//! virtual clock, feed simulated `embedded-hal` peripherals, so the real
//! firmware runs unchanged on the host.
//!
//! - [`physics`]: the plants, pure and deterministic (seeded), with faults
//!   injected on demand.
//! - [`peripherals`]: simulated pins, an AS5600 on "I²C", MCP3208s on "SPI"
//!   and a virtual clock, implementing the traits the firmware's drivers use.
//! - [`wiring`]: physics to volts, the inverse of the firmware's sensor
//!   conversions with the reference board's scaling.
//! - [`rig`]: a plant, the firmware's class glue over its wires and the
//!   firmware node, stepped together in virtual time.
//! - [`device`]: one device of a compound, whatever its class, built from
//!   a declaration and driven by actions (people, batteries, faults).
//! - [`sensor`]: a plain sensor node (samples only, no judgement), for what
//!   only a controller knows.
//! - [`uplink`]: a simulated node's MQTT link to a real broker, carrying the
//!   firmware's own payloads and the gateway's commands.
//! - [`modbus`]: a simulated node's Modbus links (TCP, and RTU over a pty
//!   pair) through the firmware's own slave, with faults on the link.

pub mod device;
pub mod modbus;
pub mod peripherals;
pub mod physics;
pub mod rig;
pub mod sensor;
pub mod uplink;
pub mod wiring;
