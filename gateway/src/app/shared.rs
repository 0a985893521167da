//! What the HTTP side, the ingest tasks and the pipeline share, and how the
//! gateway is run (whose clock, whether it ticks itself).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::metrics::Metrics;
use crate::registry::Registry;

/// What the HTTP side shares with the pipeline.
#[derive(Clone)]
pub struct Shared {
    /// The device registry, updated by the pipeline.
    pub registry: Arc<Mutex<Registry>>,
    /// The metrics.
    pub metrics: Metrics,
    /// The data directory (HTTP opens its own read connection).
    pub data_dir: PathBuf,
    /// The bearer tokens: the admin's and the configured ones.
    pub tokens: crate::api::auth::Tokens,
    /// The public key of the record chain's checkpoints.
    pub records_key: Arc<str>,
    /// Open alerts, the event stream, and the way to the engine.
    pub alerts: crate::ops::alerts::Hub,
    /// Whose time the gateway judges by (the system's, or virtual time).
    pub clock: crate::clock::SharedClock,
    /// When each Modbus device is next polled: the first half of
    /// [`Running::sync`]'s barrier.
    pub polls: Arc<crate::ingest::modbus::Schedule>,
    /// The disk headroom kept for events (bytes), judged by `/readyz`.
    pub min_free: u64,
}

/// How to run the gateway: whose clock, and whether it ticks itself.
#[derive(Clone)]
pub struct Options {
    /// The clock (default: the system's).
    pub clock: crate::clock::SharedClock,
    /// Whether a task ticks the pipeline every second (default). Without it
    /// the caller ticks through [`Running::tick`] as it moves virtual time.
    pub ticker: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(crate::clock::SystemClock),
            ticker: true,
        }
    }
}
