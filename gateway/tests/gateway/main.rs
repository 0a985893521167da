//! The gateway crate's one integration-test binary.

// Tests panic on purpose when something is off; unwrapping is the assertion.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod alerts;
mod broker;
mod config;
mod delivery;
mod embedded_broker;
mod fuzz_findings;
mod http;
mod http_hardening;
mod identity;
mod influx;
mod ingest;
mod modbus;
mod modbus_clock;
mod process;
mod registry;
mod service;
mod store;
mod tls;
mod virtual_time;
mod workorders;
