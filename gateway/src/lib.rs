//! The facility-safety gateway: ingest from MQTT, judge, store, serve.
//!
//! Pure cores (`ingest`, `registry`) at the centre; I/O at the edges (`store`,
//! `service`): the binary in `main.rs` only parses the command line.

pub mod acks;
pub mod alerts;
pub mod batch;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod influx;
pub mod ingest;
pub mod ledger;
pub mod metrics;
pub mod modbus;
pub mod ready;
pub mod registry;
pub mod service;
pub mod store;
pub mod supervision;
pub mod workorders;
