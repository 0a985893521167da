//! One batch of the pipeline, stored in one transaction (a group commit): the
//! samples of the batch's messages and the registry state they moved, the alert changes
//! and the engine state behind them, the work orders and the desk's state,
//! and the supervision records of all of it, sealed into the chain. Only
//! after the commit are the changes published (event stream, open alerts)
//! and HTTP requests answered, so whatever a client was told survives a
//! `kill -9` the next instant.
//!
//! A failed commit (disk full, database locked) loses nothing: the batch's
//! samples, records and orders stay pending and go with the next commit; what
//! waits is gauged (`fm_unstored_changes`), and only past [`MAX_UNSTORED`]
//! records is the oldest record dropped, counted and logged. Samples are never
//! dropped here: the pipeline stops taking telemetry while too many wait
//! ([`Ledger::staged_samples`]), so the broker holds them instead.

use std::collections::{BTreeMap, BTreeSet};

use alerting::{Effect, Engine};
use dispatch::{Desk, Order, Out};
use records::NewRecord;

use crate::ingest::Incoming;
use crate::metrics::{ChangeLabel, Metrics};
use crate::ops::alerts::Hub;
use crate::ops::supervision::Chain;
use crate::registry::{Device, DeviceKey};
use crate::store::{EngineDevice, Store, StoreError};

/// Records kept for a failing store before the oldest are dropped.
pub const MAX_UNSTORED: usize = 100_000;

/// What is waiting to be stored.
pub struct Ledger {
    chain: Chain,
    records: Vec<NewRecord>,
    orders: BTreeMap<u64, Order>,
    /// What of the desk's state waits to be written.
    desk: dispatch::StateChanges,
    /// Whether the next commit may compact the inbox.
    may_compact: bool,
    alerts: Vec<Effect>,
    config: Option<String>,
    held: Vec<Out>,
    /// Messages whose samples go with the next commit.
    samples: Vec<Incoming>,
    /// Registry state moved by the batch, newest per device.
    devices: BTreeMap<DeviceKey, Device>,
    /// Deliveries to keep in the outbox table, and ids to forget.
    outbox_put: Vec<crate::ops::workorders::Queued>,
    outbox_done: Vec<String>,
    /// Device credentials provisioned or revoked.
    credentials: Vec<crate::store::credentials::Change>,
    /// Commands to nodes and their outcomes, and the command policy's state.
    commands: crate::ops::commands::Staged,
    /// Upstream outbox rows to add, reschedule and forget.
    upstream: crate::upstream::outbox::Changes,
    /// The judgement from history's device states the step changed.
    judgement: BTreeMap<(String, String, String), judgement::DeviceState>,
}

/// The devices (engine position and snapshot) whose alerts an effect list
/// touched, for persisting with it.
fn touched(engine: &Engine, effects: &[Effect]) -> Vec<EngineDevice> {
    let mut keys = BTreeSet::new();
    for e in effects {
        if let Effect::Alert(c) = e {
            let class = protocol::DeviceClass::from_name(&c.alert.class);
            keys.insert((c.alert.site.clone(), class, c.alert.device.clone()));
        }
    }
    keys.into_iter()
        .filter_map(|(s, c, d)| Some((engine.position(&s, c, &d)?, engine.device_snapshot(&s, c, &d)?)))
        .collect()
}

impl Ledger {
    /// A ledger appending to `chain`.
    #[must_use]
    pub fn new(chain: Chain) -> Ledger {
        Ledger {
            chain,
            records: Vec::new(),
            orders: BTreeMap::new(),
            desk: dispatch::StateChanges::default(),
            may_compact: true,
            alerts: Vec::new(),
            config: None,
            held: Vec::new(),
            samples: Vec::new(),
            devices: BTreeMap::new(),
            outbox_put: Vec::new(),
            outbox_done: Vec::new(),
            credentials: Vec::new(),
            commands: crate::ops::commands::Staged::default(),
            upstream: crate::upstream::outbox::Changes::default(),
            judgement: BTreeMap::new(),
        }
    }

    /// The judgement's device states for the next commit (newest per device).
    pub fn stage_judgement(&mut self, states: Vec<judgement::DeviceState>) {
        for s in states {
            self.judgement.insert(s.key(), s);
        }
    }

    /// Keeps outs decided before the pipeline runs (start-up duties,
    /// deadlines passed while away) for its first commit.
    pub fn hold(&mut self, outs: Vec<Out>) {
        self.held = outs;
    }

    /// Takes the held outs.
    pub fn take_held(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.held)
    }

    /// The chain.
    #[must_use]
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Adds a record to the next commit.
    pub fn record(&mut self, r: NewRecord) {
        self.records.push(r);
    }

    /// Adds a configuration change (its record, and the text remembered).
    pub fn config(&mut self, r: NewRecord, audited: String) {
        self.records.push(r);
        self.config = Some(audited);
    }

    /// Adds a message's samples (a `data` message; other kinds have none) to
    /// the next commit.
    pub fn stage(&mut self, incoming: Incoming) {
        if matches!(incoming.message, protocol::Message::Data(_)) {
            self.samples.push(incoming);
        }
    }

    /// Whether the next commit may compact the inbox (not one carrying an
    /// alarm: it should be over as soon as it can).
    pub fn allow_compaction(&mut self, may: bool) {
        self.may_compact = may;
    }

    /// Adds what of the desk's state changed to the next commit.
    pub fn stage_desk(&mut self, changes: dispatch::StateChanges) {
        self.desk.merge(changes);
    }

    /// Adds deliveries to keep in the outbox table with the next commit.
    pub fn stage_outbox(&mut self, put: Vec<crate::ops::workorders::Queued>) {
        self.outbox_put.extend(put);
    }

    /// A delivery is finished: forgotten from the outbox table with the next commit.
    pub fn outbox_done(&mut self, id: String) {
        self.outbox_done.push(id);
    }

    /// Upstream rows decided by a step, for the commit that stores the step.
    pub fn stage_upstream(&mut self, rows: Vec<crate::upstream::Entry>) {
        self.upstream.put.extend(rows);
    }

    /// An upstream row rescheduled or finished, for the next commit.
    pub fn upstream_change(&mut self, change: crate::upstream::outbox::Change) {
        self.upstream.apply(change);
    }

    /// Commands and the command policy's state for the next commit.
    pub fn commands(&mut self) -> &mut crate::ops::commands::Staged {
        &mut self.commands
    }

    /// A device credential provisioned or revoked, for the next commit.
    pub fn stage_credential(&mut self, change: crate::store::credentials::Change) {
        self.credentials.push(change);
    }

    /// Keeps a device's registry state for the next commit.
    pub fn stage_device(&mut self, device: Device) {
        self.devices.insert(device.key.clone(), device);
    }

    /// A device's recent samples (the evidence of a work order): what is
    /// stored, then what waits in the batch, the newest `limit` kept.
    ///
    /// # Errors
    /// The store's.
    pub fn recent(
        &self,
        store: &Store,
        site: &str,
        device: &str,
        from: i64,
        limit: usize,
    ) -> Result<Vec<dispatch::Sample>, StoreError> {
        let mut out = store.recent(site, device, from, limit)?;
        for i in self
            .samples
            .iter()
            .filter(|i| i.received_ms >= from && i.topic.site.as_str() == site && i.topic.device.as_str() == device)
        {
            let protocol::Message::Data(data) = &i.message else {
                continue;
            };
            out.extend(
                crate::store::values(data).map(|(metric, port, value)| dispatch::Sample {
                    metric: metric.to_owned(),
                    port: (port > 0).then_some(port),
                    at: i.received_ms,
                    value: value.to_number(),
                }),
            );
        }
        let cut = out.len().saturating_sub(limit);
        out.drain(..cut);
        Ok(out)
    }

    /// Messages whose samples wait for a commit.
    #[must_use]
    pub fn staged_samples(&self) -> usize {
        self.samples.len()
    }

    /// Whether anything waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.orders.is_empty()
            && self.desk.is_empty()
            && self.alerts.is_empty()
            && self.samples.is_empty()
            && self.devices.is_empty()
            && self.outbox_put.is_empty()
            && self.outbox_done.is_empty()
            && self.credentials.is_empty()
            && self.commands.is_empty()
            && self.upstream.is_empty()
            && self.judgement.is_empty()
    }

    /// Everything staged is committed: nothing waits any more.
    fn forget_stored(&mut self) {
        self.records.clear();
        self.orders.clear();
        self.alerts.clear();
        self.desk = dispatch::StateChanges::default();
        self.config = None;
        self.samples.clear();
        self.devices.clear();
        self.outbox_put.clear();
        self.outbox_done.clear();
        self.credentials.clear();
        self.commands = crate::ops::commands::Staged::default();
        self.upstream = crate::upstream::outbox::Changes::default();
        self.judgement.clear();
    }

    /// Stores a step: `effects` of the engine and `outs` of the desk, with
    /// their records, and whatever earlier failed commits left. `force`
    /// signs a checkpoint of every record so far (shutdown). Publishes the
    /// step either way: the open alerts and the stream are live views.
    ///
    /// # Errors
    /// The store's; everything of the step is kept for the next commit.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        store: &mut Store,
        engine: &Engine,
        desk: &Desk,
        hub: &Hub,
        m: &Metrics,
        now: i64,
        effects: &[Effect],
        outs: &[Out],
        force: bool,
    ) -> Result<(), StoreError> {
        if effects.is_empty() && outs.is_empty() && self.is_empty() && !force && !self.chain.checkpoint_due(now) {
            // Most telemetry changes nothing: no transaction, nothing to publish.
            return Ok(());
        }
        let mut recs = crate::ops::supervision::of_effects(effects);
        recs.extend(crate::ops::workorders::records_of(outs, now));
        self.records.extend(recs);
        for o in outs {
            if let Out::Order { change, order } = o {
                m.work_order_changes
                    .get_or_create(&ChangeLabel {
                        change: change.record_kind(order).into(),
                    })
                    .inc();
                self.orders.insert(order.id, (**order).clone());
            }
        }
        self.alerts
            .extend(effects.iter().filter(|e| matches!(e, Effect::Alert(_))).cloned());
        if self.records.len() > MAX_UNSTORED {
            let n = self.records.len() - MAX_UNSTORED;
            self.records.drain(..n);
            m.unstored_dropped.inc_by(n as u64);
            tracing::error!(
                dropped = n,
                "the store has refused records for too long: oldest dropped"
            );
        }
        if self.is_empty() && !force && !self.chain.checkpoint_due(now) {
            crate::ops::alerts::publish(hub, m, effects, outs, &[]);
            return Ok(());
        }
        let devices = touched(engine, &self.alerts);
        let orders: Vec<Order> = self.orders.values().cloned().collect();
        let records = self.records.clone();
        let config = self.config.clone();
        let (desk_state, desk_changes) = (desk.state(), &self.desk);
        let chain = &self.chain;
        let alerts = &self.alerts;
        let samples = &self.samples;
        let registry = &self.devices;
        let (put, done) = (&self.outbox_put, &self.outbox_done);
        let credentials = &self.credentials;
        let commands = &self.commands;
        let upstream = &self.upstream;
        let judged: Vec<judgement::DeviceState> = self.judgement.values().cloned().collect();
        let mut compacted = None;
        let may_compact = self.may_compact;
        let appended = store.transact_series(|tx, series| {
            let n = crate::store::write_samples(tx, series, samples)?;
            if may_compact && series.inbox.due(now) {
                let t = std::time::Instant::now();
                let rows = crate::store::compact_step(tx, series)?;
                compacted = Some((rows, t));
            }
            crate::store::write_devices(tx, registry.values())?;
            crate::ops::workorders::save_outbox(tx, put, done)?;
            crate::store::credentials::write(tx, credentials)?;
            crate::ops::commands::write(tx, commands)?;
            crate::upstream::outbox::save(tx, upstream)?;
            crate::ops::judgement::save(tx, now, &judged)?;
            crate::store::write_alerts(tx, alerts)?;
            crate::store::write_engine(tx, &devices, &engine.globals())?;
            crate::ops::workorders::save(tx, now, &orders, desk_state, desk_changes)?;
            if let Some(text) = &config {
                crate::ops::supervision::save_config(tx, text)?;
            }
            Ok((n, chain.append(tx, now, records, force)?))
        });
        match appended {
            Ok((n, a)) => {
                m.commits.inc();
                m.stored.inc_by(n as u64);
                if let Some((rows, t)) = compacted {
                    m.compactions.inc();
                    m.compaction_seconds.observe(t.elapsed().as_secs_f64());
                    tracing::debug!(rows, took = ?t.elapsed(), "inbox compaction step");
                }
                self.chain.adopt(&a);
                m.records.inc_by(a.entries.len() as u64);
                self.forget_stored();
                m.unstored.set(0);
                m.work_orders_open
                    .set(i64::try_from(desk.open().count()).unwrap_or(i64::MAX));
                crate::ops::alerts::publish(hub, m, effects, outs, &a.entries);
                Ok(())
            }
            Err(e) => {
                m.alert_store_errors.inc();
                m.unstored
                    .set(i64::try_from(self.records.len() + self.orders.len()).unwrap_or(i64::MAX));
                tracing::error!(error = %e, records = self.records.len(), "could not store; kept for the next commit");
                // Still published: the open alerts and the stream are live
                // views; the store catches up with the next commit.
                crate::ops::alerts::publish(hub, m, effects, outs, &[]);
                Err(e)
            }
        }
    }
}
