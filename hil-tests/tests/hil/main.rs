//! The simulation's one integration-test binary.

mod charger_physics;
mod elevator_physics;
mod firewater_physics;
mod peripherals;
mod rigs;
