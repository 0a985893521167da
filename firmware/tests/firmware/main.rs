//! The firmware crate's one integration-test binary. Everything runs on the
//! host with a manual clock: no test sleeps.

// Tests panic on purpose when something is off; unwrapping is the assertion.
#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    clippy::many_single_char_names
)]

mod budget;
mod charger;
mod commands;
mod docs;
mod drivers;
mod elevator;
mod firepump;
mod io;
mod modbus;
mod mqtt;
mod node;
mod outbox;
mod sensors;
pub(crate) mod signing;
