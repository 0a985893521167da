//! What the HTTP side, the ingest tasks and the pipeline share, and how the
//! gateway is run (whose clock, whether it ticks itself).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::Metrics;
use crate::registry::Registry;

/// The device registry as the parts share it: the pipeline moves it, HTTP
/// and the simulation's bench read it. The lock is held only inside these
/// methods, never across an await or by a caller.
#[derive(Clone, Default)]
pub struct Devices(Arc<Mutex<Registry>>);

impl Devices {
    /// The registry as restored from the store.
    #[must_use]
    pub fn new(registry: Registry) -> Devices {
        Devices(Arc::new(Mutex::new(registry)))
    }

    /// Runs `f` on the registry under its lock, held for `f` only.
    pub fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A copy of every device, in the registry's order.
    #[must_use]
    pub fn snapshot(&self) -> Vec<crate::registry::Device> {
        self.with(|r| r.iter().cloned().collect())
    }
}

/// What the HTTP side, the ingest tasks and the pipeline share: handles,
/// each with its own methods, read through accessors (nothing reaches in to
/// replace one).
#[derive(Clone)]
pub struct Shared {
    registry: Devices,
    metrics: Metrics,
    data_dir: PathBuf,
    tokens: crate::api::auth::Tokens,
    records_key: Arc<str>,
    alerts: crate::ops::alerts::Hub,
    clock: crate::clock::SharedClock,
    polls: Arc<crate::ingest::modbus::Schedule>,
    min_free: u64,
    directory: Arc<crate::directory::Directory>,
    /// The judgement from history's settings (`GET /api/v1/health` reads
    /// the stored state with them).
    judgement: Arc<judgement::Settings>,
    /// The embedded broker and its door, once serving (a revoked device is
    /// shut out at once).
    broker: Arc<std::sync::OnceLock<(crate::broker::Broker, Arc<crate::ingest::access::Access>)>>,
    /// One chain verification at a time: it reads every record (about 23 s
    /// at four years), and a second one at once would only halve the speed of both.
    verifying: Arc<tokio::sync::Semaphore>,
}

/// What [`Shared`] is made of (the wiring builds it once, at start).
pub struct Parts {
    /// The device registry, restored.
    pub registry: Registry,
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
    /// When each Modbus device is next polled.
    pub polls: crate::ingest::modbus::Schedule,
    /// The disk headroom kept for events (bytes).
    pub min_free: u64,
    /// Sites', buildings' and contractors' names.
    pub directory: crate::directory::Directory,
    /// The judgement from history's settings.
    pub judgement: judgement::Settings,
}

impl Shared {
    /// The shared handles of a starting gateway.
    #[must_use]
    pub fn new(p: Parts) -> Shared {
        Shared {
            registry: Devices::new(p.registry),
            metrics: p.metrics,
            data_dir: p.data_dir,
            tokens: p.tokens,
            records_key: p.records_key,
            alerts: p.alerts,
            clock: p.clock,
            polls: Arc::new(p.polls),
            min_free: p.min_free,
            directory: Arc::new(p.directory),
            judgement: Arc::new(p.judgement),
            broker: Arc::default(),
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// The judgement from history's settings, from the configuration.
    #[must_use]
    pub fn judgement(&self) -> &judgement::Settings {
        &self.judgement
    }

    /// Sites', buildings' and contractors' names, from the configuration.
    #[must_use]
    pub fn directory(&self) -> &crate::directory::Directory {
        &self.directory
    }

    /// The right to verify the record chain now, if no verification runs.
    #[must_use]
    pub fn start_verifying(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.verifying.clone().try_acquire_owned().ok()
    }

    /// The device registry.
    #[must_use]
    pub fn registry(&self) -> &Devices {
        &self.registry
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The data directory (HTTP opens its own read connection there).
    #[must_use]
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The bearer tokens.
    #[must_use]
    pub fn tokens(&self) -> &crate::api::auth::Tokens {
        &self.tokens
    }

    /// The public key of the record chain's checkpoints (hex).
    #[must_use]
    pub fn records_key(&self) -> &str {
        &self.records_key
    }

    /// Open alerts, the event stream, and the way to the engine.
    #[must_use]
    pub fn alerts(&self) -> &crate::ops::alerts::Hub {
        &self.alerts
    }

    /// Whose time the gateway judges by.
    #[must_use]
    pub fn clock(&self) -> &crate::clock::SharedClock {
        &self.clock
    }

    /// When each Modbus device is next polled: the first half of
    /// [`crate::app::run::Running::sync`]'s barrier.
    #[must_use]
    pub fn polls(&self) -> &Arc<crate::ingest::modbus::Schedule> {
        &self.polls
    }

    /// The disk headroom kept for events (bytes), judged by `/readyz`.
    #[must_use]
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// The embedded broker is serving, behind `access`.
    pub(crate) fn set_broker(&self, broker: crate::broker::Broker, access: Arc<crate::ingest::access::Access>) {
        let _ = self.broker.set((broker, access));
    }

    /// The embedded broker, if the gateway runs one.
    #[must_use]
    pub fn broker(&self) -> Option<&crate::broker::Broker> {
        self.broker.get().map(|(b, _)| b)
    }

    /// Shuts `username` (a revoked device) out: its connections closed, its
    /// verified password forgotten. Nothing when behind an outside broker.
    pub fn shut_out(&self, username: &str) {
        if let Some((broker, access)) = self.broker.get() {
            access.forget(username);
            broker.kick(username);
        }
    }
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
