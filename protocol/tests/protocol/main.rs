//! The protocol crate's one integration-test binary.

// Tests panic on purpose when something is off; unwrapping is the assertion.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod cmdauth;
mod docs;
mod errors;
mod limits;
mod modbus;
mod roundtrip;
mod strategies;
mod topic;
