//! Judgement from history (研判, CONTRACT §11): frequent faults per device,
//! health per device and site with its reasons, trends and change points.
//!
//! A pure core like `alerting` and `dispatch`: fed samples, dispatched
//! faults and the gateway's clock; answers verdicts (a code raised or
//! cleared on a device, with its evidence) and health. No I/O, no tokio, no
//! wall clock, so a test replays months in milliseconds. Its state is plain
//! serde data per device ([`DeviceState`]): the gateway stores it with the
//! step that changed it and restores it at start (`gateway::ops::judgement`).
//! The formulas and their defaults are in docs/judgement.md.

pub mod config;
pub mod health;
pub mod indicator;
pub mod judge;
pub mod trend;

pub use config::{ConfigError, JudgementConfig, Settings};
pub use health::{DeviceHealth, FrequentReport, Reason, SiteHealth};
pub use judge::{DEGRADING, DeviceState, Evidence, FREQUENT_FAULTS, Fault, Judge, Severity, Verdict};
pub use trend::{Direction, Trend, Worse};
