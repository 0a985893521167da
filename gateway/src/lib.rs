//! The facility-safety gateway: ingest from MQTT and Modbus, judge, store,
//! dispatch, serve.
//!
//! ```text
//! ingest (mqtt, embedded broker, modbus) ─► lanes ─► pipeline ─► store (one commit per batch) ─► acks
//!                                                       │
//!                                                       └─► ops (alerts, work orders, records) ─► api
//! ```
//!
//! - [`ingest`]: how messages arrive and are acknowledged; [`broker`]: the
//!   embedded MQTT broker whose PUBACK waits for the commit.
//! - [`pipeline`]: the thread that judges and commits; [`store`]: SQLite,
//!   the ledger of one commit, the InfluxDB copy.
//! - [`ops`]: the edges of the pure crates (`alerting`, `dispatch`,
//!   `notify`, `records`); [`registry`]: sessions and health of devices.
//! - [`api`]: HTTP; [`app`]: command line, configuration, wiring; [`ready`],
//!   [`metrics`], [`clock`].
//! - [`upstream`]: the platforms the city runs (elevator supervision, fire
//!   monitoring), fed through a persistent outbox.
//!
//! The binary in `main.rs` only parses the command line.

pub mod api;
pub mod app;
pub mod broker;
pub mod clock;
pub mod directory;
pub mod identity;
pub mod ingest;
pub mod limiter;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod ready;
pub mod registry;
pub mod store;
pub mod tls;
pub mod upstream;
