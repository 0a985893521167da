//! One step of the pipeline, stored in one transaction: the alert changes
//! and the engine state behind them, the work orders and the desk's state,
//! and the supervision records of all of it, sealed into the chain. Only
//! after the commit are the changes published (event stream, open alerts)
//! and HTTP requests answered, so whatever a client was told survives a
//! `kill -9` the next instant.
//!
//! A failed commit (disk full, database locked) loses nothing: the step's
//! records and orders stay pending and go with the next commit; what waits is
//! gauged (`fm_unstored_changes`), and only past [`MAX_UNSTORED`] is the
//! oldest dropped, counted and logged.

use std::collections::{BTreeMap, BTreeSet};

use alerting::{Effect, Engine};
use dispatch::{Desk, Order, Out};
use records::NewRecord;

use crate::alerts::Hub;
use crate::metrics::{ChangeLabel, Metrics};
use crate::store::{EngineDevice, Store, StoreError};
use crate::supervision::Chain;

/// Records kept for a failing store before the oldest are dropped.
pub const MAX_UNSTORED: usize = 100_000;

/// What is waiting to be stored.
pub struct Ledger {
    chain: Chain,
    records: Vec<NewRecord>,
    orders: BTreeMap<u64, Order>,
    desk: bool,
    alerts: Vec<Effect>,
    config: Option<String>,
    held: Vec<Out>,
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
            desk: false,
            alerts: Vec::new(),
            config: None,
            held: Vec::new(),
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

    /// Whether anything waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.orders.is_empty() && !self.desk && self.alerts.is_empty()
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
        let mut recs = crate::supervision::of_effects(effects);
        recs.extend(crate::workorders::records_of(outs, now));
        self.records.extend(recs);
        let mut new_orders = false;
        for o in outs {
            if let Out::Order { change, order } = o {
                m.work_order_changes
                    .get_or_create(&ChangeLabel {
                        change: change.record_kind(order).into(),
                    })
                    .inc();
                self.orders.insert(order.id, (**order).clone());
                new_orders = true;
            }
        }
        self.desk |= new_orders;
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
            crate::alerts::publish(hub, m, effects, outs, &[]);
            return Ok(());
        }
        let devices = touched(engine, &self.alerts);
        let orders: Vec<Order> = self.orders.values().cloned().collect();
        let records = self.records.clone();
        let config = self.config.clone();
        let desk_state = self.desk.then(|| desk.state().clone());
        let chain = &self.chain;
        let alerts = &self.alerts;
        let appended = store.transact(|tx| {
            crate::store::write_alerts(tx, alerts)?;
            crate::store::write_engine(tx, &devices, &engine.globals())?;
            crate::workorders::save(tx, now, &orders, desk_state.as_ref())?;
            if let Some(text) = &config {
                crate::supervision::save_config(tx, text)?;
            }
            chain.append(tx, now, records, force)
        });
        match appended {
            Ok(a) => {
                self.chain.adopt(&a);
                m.records.inc_by(a.entries.len() as u64);
                self.records.clear();
                self.orders.clear();
                self.alerts.clear();
                self.desk = false;
                self.config = None;
                m.unstored.set(0);
                m.work_orders_open
                    .set(i64::try_from(desk.open().count()).unwrap_or(i64::MAX));
                crate::alerts::publish(hub, m, effects, outs, &a.entries);
                Ok(())
            }
            Err(e) => {
                m.alert_store_errors.inc();
                m.unstored
                    .set(i64::try_from(self.records.len() + self.orders.len()).unwrap_or(i64::MAX));
                tracing::error!(error = %e, records = self.records.len(), "could not store; kept for the next commit");
                // Still published: the open alerts and the stream are live
                // views; the store catches up with the next commit.
                crate::alerts::publish(hub, m, effects, outs, &[]);
                Err(e)
            }
        }
    }
}
