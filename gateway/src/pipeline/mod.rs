//! The pipeline thread: takes controls, then the priority lane, then
//! telemetry; judges each message as it takes it ([`handle`]); commits in
//! batches ([`batch`], [`settle`]) and only then releases the messages'
//! acknowledgements; answers the HTTP side's controls ([`control`]).
//!
//! It owns the store's write connection, the alerting engine, the dispatch
//! desk, the record chain and the notification courier: nothing else writes.

pub mod batch;
mod control;
mod handle;
mod settle;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::app::shared::Shared;
use crate::ingest::acks::Done;
use crate::ingest::lanes::{Next, Receivers};
use crate::metrics::Metrics;
use crate::store::Store;
use control::control;
use handle::handle;
use settle::{delivered, settle};

/// Where the pipeline hands InfluxDB its lines.
pub(crate) type InfluxSender = mpsc::Sender<Vec<u8>>;

/// How often the whole alerting state is saved besides the changes.
pub(crate) const SAVE_EVERY: Duration = Duration::from_mins(5);

/// What the pipeline thread is given to own.
pub(crate) struct Owned {
    pub(crate) store: Store,
    pub(crate) engine: alerting::Engine,
    pub(crate) desk: dispatch::Desk,
    pub(crate) ledger: crate::store::ledger::Ledger,
    pub(crate) courier: crate::ops::workorders::Courier,
    pub(crate) upstream: crate::upstream::Upstream,
    pub(crate) commands: crate::ops::commands::Commander,
    pub(crate) judgement: crate::ops::judgement::Judgement,
    pub(crate) influx: Option<InfluxSender>,
    pub(crate) shared: Shared,
    pub(crate) retention_ms: i64,
    pub(crate) min_free: u64,
}

impl Owned {
    pub(crate) fn run(self, rt: &tokio::runtime::Handle, rx: Receivers) -> anyhow::Result<()> {
        pipeline(
            rt,
            Pipeline {
                store: self.store,
                engine: self.engine,
                desk: self.desk,
                ledger: self.ledger,
                courier: self.courier,
                upstream: self.upstream,
                commands: self.commands,
                judgement: self.judgement,
                influx: self.influx.as_ref(),
                shared: &self.shared,
                retention_ms: self.retention_ms,
                batch: crate::pipeline::batch::Batch::new(),
                min_free: self.min_free,
                disk_low: false,
                dirty: std::collections::HashSet::new(),
                devices_saved: Instant::now(),
                disk_checked: Instant::now(),
                overview: crate::store::influx::Overview::default(),
            },
            rx,
        )
    }
}

/// What the pipeline thread owns and uses.
pub(crate) struct Pipeline<'a> {
    pub(crate) store: Store,
    pub(crate) engine: alerting::Engine,
    pub(crate) desk: dispatch::Desk,
    pub(crate) ledger: crate::store::ledger::Ledger,
    pub(crate) courier: crate::ops::workorders::Courier,
    /// The upstream platforms' mappers: rows staged with the step's commit.
    pub(crate) upstream: crate::upstream::Upstream,
    /// Commands to nodes: issued, stored, sent after the commit, settled.
    pub(crate) commands: crate::ops::commands::Commander,
    /// The judgement from history: fed samples, orders and time; its
    /// verdicts become alerts through the engine.
    pub(crate) judgement: crate::ops::judgement::Judgement,
    pub(crate) influx: Option<&'a InfluxSender>,
    pub(crate) shared: &'a Shared,
    pub(crate) retention_ms: i64,
    /// The messages of the next commit: their acknowledgements, receive
    /// times and time-series lines (the ledger stages what they wrote).
    pub(crate) batch: crate::pipeline::batch::Batch<Done, u8>,
    /// Devices whose registry state moved with samples since they were
    /// last written.
    pub(crate) dirty: std::collections::HashSet<crate::registry::DeviceKey>,
    /// When the dirty devices were last written.
    pub(crate) devices_saved: Instant,
    /// The headroom kept for events (bytes).
    pub(crate) min_free: u64,
    /// Whether the data directory's disk is below that headroom.
    pub(crate) disk_low: bool,
    /// When it was last measured.
    pub(crate) disk_checked: Instant,
    /// When the overview's counts next go to InfluxDB.
    pub(crate) overview: crate::store::influx::Overview,
}

/// How often the pipeline measures the disk's headroom at most (besides
/// every tick and every failed commit): one `statvfs` per quarter second.
pub(crate) const DISK_CHECK_EVERY: Duration = Duration::from_millis(250);

/// How often the registry state that samples moved (last sequence number,
/// last seen) is written: a kill loses at most this much of it, which after
/// the restart reads as a gap in that device's count, never as data lost
/// or a message taken for a duplicate.
pub(crate) const DEVICES_EVERY: Duration = Duration::from_secs(5);

/// Samples waiting for a failing store beyond which the pipeline stops
/// taking telemetry (the broker holds it); events, births and controls
/// still come through.
pub(crate) const MAX_STAGED: usize = 200_000;

/// The pipeline: owns the store's write connection, the alerting engine,
/// the dispatch desk and the record chain. Messages are judged as they are
/// taken and committed in batches ([`crate::batch`]); their
/// acknowledgements go out after the commit.
pub(crate) fn pipeline(rt: &tokio::runtime::Handle, mut p: Pipeline<'_>, mut rx: Receivers) -> anyhow::Result<()> {
    let p_clock = p.shared.clock().clone();
    let mut last_log: HashMap<String, Instant> = HashMap::new();
    let mut last_prune = Instant::now();
    let mut last_save = Instant::now();
    // The engine's clock: the gateway's, never going back (a message queued
    // for a while is judged when it is taken, not before the last tick).
    let now = || p_clock.now_ms();
    let mut clock = now();
    let mut effects = Vec::new();
    let mut outs = p.ledger.take_held();
    let mut stopping = false;
    check_disk(&mut p);
    loop {
        let next = if stopping {
            // Stop: finish what is queued, controls and lanes alike.
            match rx.priority.try_recv().or_else(|_| rx.bulk.try_recv()) {
                Ok(i) => Next::Message(i, false),
                Err(_) => break,
            }
        } else if let Some(n) = rx.try_next(takes_telemetry(&p)) {
            n
        } else {
            // Nothing queued: the batch is complete.
            flush(&mut p, clock, &mut effects, &mut outs, false);
            p.shared.metrics().pipeline_lag_ms.set(0);
            match rx.next(rt, takes_telemetry(&p), p.batch.retry_at()) {
                Some(n) => n,
                None => break,
            }
        };
        match next {
            Next::Wake => {}
            Next::Control(c) => {
                clock = clock.max(now());
                if let crate::ops::alerts::Control::Sync(reply) = c {
                    // Everything already queued is judged and stored first.
                    while let Some(i) = rx
                        .priority
                        .try_recv()
                        .ok()
                        .map(|i| (i, true))
                        .or_else(|| rx.bulk.try_recv().ok().map(|i| (i, false)))
                    {
                        taken(p.shared.metrics(), i.1);
                        clock = clock.max(handle(&mut p, i.0, &mut last_log, &mut effects, &mut outs, clock));
                    }
                    flush(&mut p, clock, &mut effects, &mut outs, false);
                    let _ = reply.send(());
                    continue;
                }
                stopping |= control(&mut p, c, clock, &mut effects, &mut outs);
            }
            Next::Message(input, priority) => {
                taken(p.shared.metrics(), priority);
                let received = handle(&mut p, input, &mut last_log, &mut effects, &mut outs, clock);
                if priority {
                    p.batch.mark_urgent();
                }
                clock = clock.max(received);
                p.shared.metrics().pipeline_lag_ms.set((now() - received).max(0));
            }
        }
        if p.batch.due(Instant::now(), !rx.priority.is_empty()) {
            flush(&mut p, clock, &mut effects, &mut outs, false);
        }
        if last_save.elapsed() > SAVE_EVERY {
            last_save = Instant::now();
            crate::ops::alerts::save_all(&mut p.store, &p.engine, p.shared.metrics());
        }
        if last_prune.elapsed() > Duration::from_hours(1) {
            last_prune = Instant::now();
            match p.store.prune(now() - p.retention_ms) {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned telemetry past retention"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "prune failed"),
            }
        }
    }
    close_courier(&mut p, &mut rx.control);
    let _ = settle(&mut p, clock.max(now()), &mut effects, &mut outs, true);
    crate::ops::alerts::save_all(&mut p.store, &p.engine, p.shared.metrics());
    // Persist the whole registry on the way out: last-seen times survive a restart.
    let devices = p.shared.registry().snapshot();
    p.store.transact(|tx| crate::store::write_devices(tx, &devices))?;
    Ok(())
}

/// Measures the data directory's free space against the headroom kept for
/// events; telemetry is held back below it.
pub(crate) fn check_disk(p: &mut Pipeline<'_>) {
    p.disk_checked = Instant::now();
    match crate::ready::disk_free(p.shared.data_dir()) {
        Ok(free) => {
            p.shared
                .metrics()
                .disk_free_bytes
                .set(i64::try_from(free).unwrap_or(i64::MAX));
            let low = free < p.min_free;
            if low != p.disk_low {
                if low {
                    tracing::warn!(
                        free_mib = free >> 20,
                        "disk headroom low: telemetry held back at the broker, events still stored"
                    );
                } else {
                    tracing::info!(free_mib = free >> 20, "disk headroom back: telemetry taken again");
                }
            }
            p.disk_low = low;
        }
        Err(e) => tracing::warn!(error = %e, "cannot measure the data directory's free space"),
    }
}

/// Deliveries in flight get a moment; what is left comes back as dead
/// letters, recorded with the final commit and its signed checkpoint.
pub(crate) fn close_courier(p: &mut Pipeline<'_>, control: &mut mpsc::Receiver<crate::ops::alerts::Control>) {
    use tokio::sync::mpsc::error::TryRecvError;
    let now = || p.shared.clock().now_ms();
    p.courier.close(Duration::from_secs(2));
    // Polled on this thread's own clock, not awaited on the runtime's: when
    // the runtime itself is going away (a test that panicked, a runtime
    // dropped), its timers are no longer driven and an await would never end.
    let until = Instant::now() + Duration::from_secs(3);
    let mut quiet_since = Instant::now();
    while Instant::now() < until {
        match control.try_recv() {
            Ok(crate::ops::alerts::Control::Delivered(o)) => {
                delivered(p, now(), &o);
                quiet_since = Instant::now();
            }
            Ok(_) => {}
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Nothing in flight: only outcomes already on their way are
                // left, and they get 100 ms.
                if p.courier.pending() == 0 && quiet_since.elapsed() >= Duration::from_millis(100) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Whether the pipeline takes telemetry now: it waits at the broker while
/// the disk is below its headroom or too much waits for a failing store;
/// events, births and controls never do.
pub(crate) fn takes_telemetry(p: &Pipeline<'_>) -> bool {
    let takes = p.ledger.staged_samples() < MAX_STAGED && !p.disk_low;
    p.shared.metrics().telemetry_held.set(i64::from(!takes));
    takes
}

/// A message left its lane: the queue gauges follow.
pub(crate) fn taken(m: &Metrics, priority: bool) {
    m.queue_depth.dec();
    if priority {
        m.priority_queue_depth.dec();
    }
}

/// Commits the batch if a commit may be tried now (a failing store is tried
/// again only after its back-off), whatever [`settle`] found.
pub(crate) fn flush(
    p: &mut Pipeline<'_>,
    clock: i64,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
    force: bool,
) {
    if p.disk_checked.elapsed() >= DISK_CHECK_EVERY {
        check_disk(p);
    }
    if p.devices_saved.elapsed() >= DEVICES_EVERY && !p.dirty.is_empty() {
        p.devices_saved = Instant::now();
        let dirty: Vec<_> = p.dirty.drain().collect();
        let devices: Vec<_> = p
            .shared
            .registry()
            .with(|reg| dirty.iter().filter_map(|k| reg.get(k).cloned()).collect());
        for d in devices {
            p.ledger.stage_device(d);
        }
    }
    if p.batch.may_try(Instant::now()) || force {
        let _ = settle(p, clock, effects, outs, force);
    }
}
