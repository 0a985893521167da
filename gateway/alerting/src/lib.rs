//! The alerting core (智慧预警、研判): observations and a clock in, alert
//! transitions, notifications, work-order intents and records out, as plain
//! data.
//!
//! It never reads the wall clock, sleeps, or touches a socket or a file: the
//! gateway feeds it [`Engine::observe`] for every decoded message,
//! [`Engine::uplink`] when its broker connection changes, and
//! [`Engine::tick`] on its own clock, and acts on the returned [`Effect`]s.
//! Devices are visited in arrival order and groups in key order, so the same
//! inputs give the same effects, byte for byte, and a test replays a day of
//! telemetry in milliseconds.
//!
//! The pieces, each in its own module:
//! - [`expr`]: the condition language rules are written in;
//! - [`rule`]: rules as data and their compilation; [`ruleset`]: the
//!   built-in packs, the configuration's rules and overrides, per-device
//!   profiles; [`config`]: the `[alerting]` configuration;
//! - [`instance`]: one rule on one device or port (`for`, hysteresis,
//!   `keep_firing_for`, rate, counts, no-data);
//! - [`alert`]: the lifecycle of one alert per (device, code, port), with
//!   episodes and flap damping;
//! - [`engine`]: devices, root-cause inhibition over the topology,
//!   maintenance windows, grouped notifications; [`snapshot`]: restarts;
//! - [`series`]: the text format of rule tests.
//!
//! Time is the gateway's (see `docs/rules.md`): `for`, `keep_firing_for`
//! and absence are judged on receive time, never on device clocks, which can
//! be unset or skewed; replayed (`hist`) samples never fire live alerts.

pub mod alert;
pub mod config;
pub mod effect;
pub mod engine;
pub mod expr;
pub mod instance;
pub mod rule;
pub mod ruleset;
pub mod series;
pub mod snapshot;
mod store;

pub use config::AlertingConfig;
pub use effect::{AlertChange, AlertView, Change, DataState, Effect, Notification, Record, State, WorkOrderIntent};
pub use engine::{AckError, DeviceRef, Engine, Input, Settings, Window};
pub use rule::{Pack, RuleDef, RuleError, RuleKind, Scope};
pub use ruleset::{ConfigProblem, Override, RuleSet};
pub use snapshot::{DeviceSnapshot, Globals, Snapshot};

/// Reporting interval assumed before a device's first birth (the contract's default).
pub const DEFAULT_INTERVAL_S: u32 = 60;
