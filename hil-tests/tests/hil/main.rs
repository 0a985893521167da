//! The simulation's one integration-test binary.

// Tests panic on purpose when something is off; unwrapping is the assertion.
#![allow(clippy::unwrap_used)]

mod charger_physics;
mod elevator_physics;
mod end_to_end;
mod firewater_physics;
mod modbus_links;
mod peripherals;
mod rigs;
mod runner;
