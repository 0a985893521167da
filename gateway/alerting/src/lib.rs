//! The alerting core (智慧预警、研判): samples and a clock in, alert transitions
//! out, as plain data.
//!
//! It never reads the wall clock, sleeps, or touches a socket or a file: the
//! gateway feeds it [`Engine::observe`] for every sample and [`Engine::tick`]
//! on its own clock, and acts on the returned [`Effect`]s. Iteration is over
//! `BTreeMap`s, so the same inputs give the same effects, byte for byte, and a
//! test replays a day of telemetry in milliseconds.
//!
//! Time: `for`, `keep_firing_for` and absence are judged on the gateway's
//! clock (`now`, receive time), never on device clocks, which can be unset or
//! skewed; replayed (`hist`) samples are not fed here at all.
//!
//! This is the first part of issue 5: threshold rules with `for`, hysteresis,
//! `keep_firing_for`, explicit no-data, episodes, and snapshot/restore. Rule
//! packs, composites, counters, lifecycle acknowledgement, flap damping,
//! inhibition and grouping follow.

pub mod engine;
pub mod rule;
pub mod series;

pub use engine::{AlertKey, AlertState, Effect, Engine, Sample, SeriesKey, Snapshot};
pub use rule::{Cmp, Rule, RuleError};
