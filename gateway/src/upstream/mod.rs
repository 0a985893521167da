//! The platforms upstream (CONTRACT §10): what the city already runs and the
//! gateway feeds, each through one **connector** and a persistent outbox.
//!
//! - [`elevator`]: elevator supervision platforms (96333, GB/T 24476 style
//!   REST with OAuth 2.0 client credentials).
//! - the fire remote-monitoring centre (GB/T 26875.3 over TCP) uses the same
//!   outbox.
//!
//! # The outbox, for every connector
//!
//! An upstream platform must get every change the gateway acknowledged, even
//! if the gateway is killed the next instant, and must never get one change
//! twice as two. So a connector works in two halves:
//!
//! ```text
//!  pipeline thread (one SQLite commit per step)          delivery loop (one tokio task per connector)
//!  ─────────────────────────────────────────────          ──────────────────────────────────────────
//!  Mapper::map(effects, outs) ─► Vec<Entry>               reads its rows, oldest first (id order)
//!      │ Ledger::stage_upstream                           waits for the row's next try
//!      ▼                                                  Connector::deliver(&Row)
//!  upstream_outbox rows, in the SAME commit as the          ├ Ok            ─► Outcome::Delivered
//!  alert change / order step that caused them              ├ Retry(e)      ─► Outcome::Retry (back-off)
//!      │ after the commit: Upstream::committed wakes       └ Permanent(e) / attempts spent ─► Outcome::Dead
//!      ▼ the loop                                          Control::Upstream(outcome) ─► pipeline
//!  Upstream::outcome: row deleted (or rescheduled) and
//!  its record (`upstream_delivered`, `upstream_dead_letter`) written, in one commit
//! ```
//!
//! 1. **Deciding** is pure and runs on the pipeline thread: a [`Mapper`]
//!    turns a step's alert changes ([`alerting::Effect`]) and work-order
//!    changes ([`dispatch::Out`]) into [`Entry`] rows: a connector name, an
//!    idempotency key unique per connector, a JSON payload (whatever the
//!    connector needs to send it later: it is all it gets), and the site,
//!    class, device and subject its records name. [`Mapper::message`] sees
//!    every message taken as well (telemetry, for connectors that upload
//!    values). Rows are written to the table `upstream_outbox` by the commit
//!    that stores the change they are about (`store::ledger`), never before
//!    and never apart from it: an acknowledged alarm's upstream effects
//!    survive a `kill -9`, and a change the store refused is not sent.
//! 2. **Delivering** is a [`Connector`], one per configured platform, driven
//!    by [`outbox::deliver`]: a loop that reads its own rows (`id` order,
//!    strictly one after the other: a disposal never overtakes its alarm),
//!    calls [`Connector::deliver`], and reports each end to the pipeline,
//!    which deletes the row (or writes its new attempt count and next try)
//!    and writes the supervision record in one commit. A retryable failure
//!    waits `first_retry`, doubling to `max_retry`, up to `attempts` in all;
//!    a permanent failure or the last attempt is a dead letter (record
//!    `upstream_dead_letter` with the payload and the last error, counted in
//!    `fm_upstream_dead_letters_total`, logged), and the loop goes on.
//! 3. **Delivery is at least once**: a kill between a platform's answer and
//!    the commit that deletes the row sends the row again at the next start,
//!    with the same idempotency key (`Idempotency-Key` for HTTP connectors),
//!    so the platform drops the repeat. Nothing is sent twice as two.
//!
//! To add a connector: a [`Mapper`] (given to [`Upstream::new`]), a
//! [`Connector`] (started with [`outbox::deliver`] in `app::run`), and a name
//! unique among connectors (the `connector` column, records and metrics).

pub mod elevator;
pub mod fire_centre;
pub mod outbox;

use std::collections::BTreeMap;
use std::sync::Arc;

use records::NewRecord;
use tokio::sync::Notify;

use crate::metrics::Metrics;
pub use outbox::{Connector, Entry, Failure, Outcome, Row};

/// Decides a connector's rows from what the pipeline judged; pure, no I/O,
/// on the pipeline thread (it must never wait).
pub trait Mapper: Send {
    /// The connector's name: the `connector` of its rows.
    fn connector(&self) -> &str;

    /// Rows for one step's alert changes and work-order changes, stored in
    /// the same commit.
    fn map(&mut self, now: i64, effects: &[alerting::Effect], outs: &[dispatch::Out], rows: &mut Vec<Entry>);

    /// Rows for one message as it is taken (telemetry for connectors that
    /// upload values); none by default.
    fn message(&mut self, _now: i64, _incoming: &crate::ingest::Incoming, _rows: &mut Vec<Entry>) {}

    /// The alerts open at start, as restored from the store: a mapper that
    /// keeps state from alert changes (the fire centre's status words)
    /// starts where the last run ended. Nothing by default.
    fn seed(&mut self, _open: &[alerting::AlertView]) {}
}

/// The pipeline's side of every connector: the mappers, and the bells that
/// wake the delivery loops once their rows are committed.
#[derive(Default)]
pub struct Upstream {
    mappers: Vec<Box<dyn Mapper>>,
    wakes: BTreeMap<String, Arc<Notify>>,
    /// Connectors whose rows wait for a commit to wake their loop.
    staged: Vec<String>,
}

impl Upstream {
    /// The mappers of the configured connectors; each gets a bell that
    /// [`Upstream::wake`] hands to its delivery loop.
    #[must_use]
    pub fn new(mappers: Vec<Box<dyn Mapper>>) -> Upstream {
        let wakes = mappers
            .iter()
            .map(|m| (m.connector().to_owned(), Arc::new(Notify::new())))
            .collect();
        Upstream {
            mappers,
            wakes,
            staged: Vec::new(),
        }
    }

    /// Whether any connector is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.mappers.is_empty()
    }

    /// The bell of a connector's delivery loop (rung after each commit with
    /// its rows); a new one for a connector without a mapper.
    #[must_use]
    pub fn wake(&mut self, connector: &str) -> Arc<Notify> {
        self.wakes
            .entry(connector.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Hands every mapper the alerts open at start ([`Mapper::seed`]).
    pub fn seed(&mut self, open: &[alerting::AlertView]) {
        for m in &mut self.mappers {
            m.seed(open);
        }
    }

    /// Every mapper's rows for a step, to stage with its commit.
    pub fn step(&mut self, now: i64, effects: &[alerting::Effect], outs: &[dispatch::Out]) -> Vec<Entry> {
        let mut rows = Vec::new();
        for m in &mut self.mappers {
            m.map(now, effects, outs, &mut rows);
        }
        self.note(&rows);
        rows
    }

    /// Every mapper's rows for a message taken.
    pub fn message(&mut self, now: i64, incoming: &crate::ingest::Incoming) -> Vec<Entry> {
        let mut rows = Vec::new();
        for m in &mut self.mappers {
            m.message(now, incoming, &mut rows);
        }
        self.note(&rows);
        rows
    }

    fn note(&mut self, rows: &[Entry]) {
        for r in rows {
            if !self.staged.contains(&r.connector) {
                self.staged.push(r.connector.clone());
            }
        }
    }

    /// A commit succeeded: the loops whose rows it stored look again.
    pub fn committed(&mut self) {
        for c in self.staged.drain(..) {
            if let Some(w) = self.wakes.get(&c) {
                w.notify_one();
            }
        }
    }

    /// A delivery loop's report: what the ledger must change in the table,
    /// and the record of a delivery or a dead letter (counted and logged).
    pub fn outcome(now: i64, o: &Outcome, m: &Metrics) -> (outbox::Change, Option<NewRecord>) {
        outbox::settle(now, o, m)
    }
}

/// The configured connectors: their mappers for the pipeline, and their
/// delivery loops started (aborted at shutdown by the caller).
///
/// # Errors
/// A connector that cannot be built (a bad timeout, an unknown profile):
/// `gateway check` reports those first.
pub fn start(
    config: &crate::app::config::Config,
    control: &tokio::sync::mpsc::Sender<crate::ops::alerts::Control>,
    clock: &crate::clock::SharedClock,
) -> anyhow::Result<(Upstream, Vec<tokio::task::JoinHandle<()>>)> {
    let u = &config.upstream;
    let retry = u.retry().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
    let mut mappers: Vec<Box<dyn Mapper>> = Vec::new();
    let mut loops = Vec::new();
    for p in &u.elevator_platform {
        let profile = elevator::Profile::named(&p.profile, &u.elevator_profile)
            .ok_or_else(|| anyhow::anyhow!("upstream.elevator_platform {}: no profile `{}`", p.name, p.profile))?;
        let platform = elevator::Platform::new(p, &profile)
            .map_err(|e| anyhow::anyhow!("upstream.elevator_platform {}: {e}", p.name))?;
        let name = platform.connector();
        mappers.push(Box::new(elevator::ElevatorMapper::new(p, profile)));
        loops.push((name, Arc::new(platform)));
        tracing::info!(platform = %p.name, url = %p.url, profile = %p.profile, "feeding an elevator supervision platform");
    }
    // The fire centre: its link task runs beside its delivery loop.
    let mut fire = None;
    if let Some(f) = &u.fire_centre {
        let (mapper, centre, link) = fire_centre::build(f, clock.clone())?;
        mappers.push(Box::new(mapper));
        fire = Some((centre, link));
        tracing::info!(host = %f.host, port = f.port, address = %f.address, "feeding a fire remote-monitoring centre (GB/T 26875.3)");
    }
    let mut upstream = Upstream::new(mappers);
    let tasks = loops
        .into_iter()
        .map(|(name, platform)| {
            let cfg = outbox::LoopConfig {
                connector: name.clone(),
                data_dir: config.storage.data_dir.clone(),
                retry,
                clock: clock.clone(),
            };
            tokio::spawn(outbox::deliver(platform, cfg, upstream.wake(&name), control.clone()))
        })
        .collect::<Vec<_>>();
    let mut tasks = tasks;
    if let Some((centre, link)) = fire {
        let cfg = outbox::LoopConfig {
            connector: fire_centre::CONNECTOR.into(),
            data_dir: config.storage.data_dir.clone(),
            retry,
            clock: clock.clone(),
        };
        let wake = upstream.wake(fire_centre::CONNECTOR);
        tasks.push(tokio::spawn(outbox::deliver(centre, cfg, wake, control.clone())));
        tasks.push(link);
    }
    Ok((upstream, tasks))
}
