//! What follows from a batch's judgements, and its commit: work orders
//! from intents (with their evidence), duties, notifications, maintenance
//! windows, the deliveries decided, then one transaction; after it the
//! acknowledgements, the stream and the deliveries go out, or after a
//! failure everything waits for the retry.

use std::time::Instant;

use crate::pipeline::{Pipeline, check_disk};

/// A delivery's outcome on one channel: its record, and the outbox row
/// forgotten once its last channel has reported (or written back with what
/// was reached, when shutdown cut it off).
pub(crate) fn delivered(p: &mut Pipeline<'_>, now: i64, o: &notify::Outcome) {
    let reported = p.courier.outcome(now, o, p.shared.metrics());
    if let Some(r) = reported.record {
        p.ledger.record(r);
    }
    if let Some(id) = reported.done {
        p.ledger.outbox_done(id);
    }
    if let Some(q) = reported.rewrite {
        p.ledger.stage_outbox(vec![q]);
    }
}

/// What follows from a step's effects, stored in one transaction: work
/// orders from intents (with the store's evidence), duties fulfilled by
/// self-tests, notifications to the managers, maintenance windows, then the
/// commit and what the desk says to tell. `force` signs a checkpoint.
pub(crate) fn settle(
    p: &mut Pipeline<'_>,
    clock: i64,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
    force: bool,
) -> Result<(), String> {
    follow(p, clock, effects, outs);
    // The orders of the step are faults for the judgement from history;
    // what it raises (a `frequent_faults` alert) follows the same way and
    // is stored by this commit with them.
    let mut judged = Vec::new();
    p.judgement.outs(&mut p.engine, clock, outs, &mut judged);
    if !judged.is_empty() {
        follow(p, clock, &judged, outs);
        effects.extend(judged);
    }
    settle_rest(p, clock, effects, outs, force)
}

/// What the engine's effects lead to: orders from intents (with the
/// store's evidence), duties fulfilled by self-tests, notifications.
fn follow(p: &mut Pipeline<'_>, clock: i64, effects: &[alerting::Effect], outs: &mut Vec<dispatch::Out>) {
    use alerting::Effect;
    let m = &p.shared.metrics();
    for e in effects {
        match e {
            Effect::WorkOrder(intent) => {
                let series = match intent {
                    alerting::WorkOrderIntent::Open { alert } => evidence(p, alert),
                    alerting::WorkOrderIntent::Close { .. } => Vec::new(),
                };
                p.desk.intent(clock, intent, series, outs);
            }
            Effect::Record(r) if r.kind == "self_test" => {
                let ok = r.detail.iter().any(|(k, v)| k == "ok" && v == "true");
                p.desk.self_test(clock, &r.site, &r.class, &r.device, ok, outs);
            }
            Effect::Notify(n) => {
                // Each is told only of the alerts of codes it is told of
                // (dispatch policy `tell`): nobody of information.
                for (to, n) in p.desk.policy().recipients(n) {
                    for r in p.courier.notification(&n, std::slice::from_ref(&to), m) {
                        p.ledger.record(r);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Maintenance windows, deliveries, then the commit.
fn settle_rest(
    p: &mut Pipeline<'_>,
    clock: i64,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
    force: bool,
) -> Result<(), String> {
    let m = &p.shared.metrics();
    for o in outs.iter() {
        match o {
            dispatch::Out::Maintenance {
                site,
                class,
                device,
                order,
                active,
            } => {
                let reason = format!("order:{order}");
                if *active {
                    p.engine.add_window(alerting::Window {
                        site: Some(site.clone()),
                        class: protocol::DeviceClass::from_name(class),
                        device: Some(device.clone()),
                        from: clock,
                        to: i64::MAX,
                        reason,
                    });
                } else {
                    p.engine.end_window(&reason, clock);
                }
            }
            dispatch::Out::Tell(_) | dispatch::Out::Order { .. } => {}
        }
    }
    tell(p, clock, outs);
    if p.influx.is_some() {
        influx_lines(p, clock, effects, outs);
    }
    p.ledger.stage_outbox(p.courier.take_unwritten());
    p.ledger.stage_desk(p.desk.take_changes());
    // Commands the step's alert changes call for, stored by this commit
    // and sent after it.
    p.commands.effects(clock, p.store.conn(), effects, &mut p.ledger, m);
    // The platforms' rows are decided now and stored by this commit, with
    // the changes they are about (upstream::outbox).
    p.ledger.stage_upstream(p.upstream.step(clock, effects, outs));
    p.ledger.stage_judgement(p.judgement.take_changed(force));
    // An alarm's commit carries no compaction: that waits for a batch of telemetry.
    p.ledger.allow_compaction(!p.batch.is_urgent());
    let stored = p
        .ledger
        .commit(
            &mut p.store,
            &p.engine,
            &p.desk,
            p.shared.alerts(),
            m,
            clock,
            effects,
            outs,
            force,
        )
        .map_err(|e| e.to_string());
    if stored.is_ok() {
        p.upstream.committed();
        p.commands.release(p.store.conn(), clock);
        let (records, done) = p.courier.release(clock, m);
        for r in records {
            p.ledger.record(r);
        }
        for id in done {
            p.ledger.outbox_done(id);
        }
        release(p);
    } else {
        failed(p);
    }
    effects.clear();
    outs.clear();
    stored
}

/// What the desk says to tell is decided now and kept in the outbox table
/// with the change it is about; it is handed to the channels only once
/// stored: a contractor is never sent an order the gateway could lose, and a
/// kill after the commit does not lose the message.
fn tell(p: &mut Pipeline<'_>, clock: i64, outs: &[dispatch::Out]) {
    let m = &p.shared.metrics();
    for o in outs {
        if let dispatch::Out::Tell(t) = o {
            let order = outs
                .iter()
                .rev()
                .find_map(|o| match o {
                    dispatch::Out::Order { order, .. } if order.id == t.order => Some(&**order),
                    _ => None,
                })
                .or_else(|| p.desk.order(t.order));
            if let Some(r) = p.courier.tell(clock, t, order, m) {
                p.ledger.record(r);
            }
        }
    }
}

/// The step's alert changes, and the overview's counts when due, join the
/// batch's lines for InfluxDB: released with its commit (with the samples
/// and events of the same batch), kept with it while the store fails, so
/// they go through the same spool, retries and `rejected/` as the samples.
fn influx_lines(p: &mut Pipeline<'_>, clock: i64, effects: &[alerting::Effect], outs: &[dispatch::Out]) {
    crate::store::influx::encode_alerts(effects, clock, p.batch.lines_mut());
    let changed = p.batch.is_urgent()
        || effects.iter().any(|e| matches!(e, alerting::Effect::Alert(_)))
        || outs.iter().any(|o| matches!(o, dispatch::Out::Order { .. }));
    if !p.overview.due(clock, changed) {
        return;
    }
    let mut tally = crate::store::influx::Tally::default();
    p.shared.registry().with(|reg| {
        for d in reg.iter() {
            let online = crate::registry::Registry::status(d, clock) == crate::registry::Status::Online;
            tally.device(&d.key.site, &d.key.class, online);
        }
    });
    for a in p.engine.alerts() {
        tally.alert(&a);
    }
    for o in p.desk.open() {
        tally.order(&o.site, &o.class);
    }
    p.overview.write(clock, &tally, p.batch.lines_mut());
}

/// The samples before an alert that a work order carries as its evidence:
/// stored ones and those of the batch not yet committed.
pub(crate) fn evidence(p: &Pipeline<'_>, alert: &alerting::AlertView) -> Vec<dispatch::Sample> {
    let trigger = alert.fired_at.unwrap_or(alert.since).min(alert.since);
    p.ledger
        .recent(
            &p.store,
            &alert.site,
            &alert.device,
            trigger - crate::ops::workorders::EVIDENCE_BEFORE_MS,
            crate::ops::workorders::EVIDENCE_SAMPLES,
        )
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no evidence series for a work order");
            Vec::new()
        })
}

/// The batch's commit failed: it stays, unacknowledged, and is tried again
/// after a back-off; the disk is measured (a full one holds telemetry back).
pub(crate) fn failed(p: &mut Pipeline<'_>) {
    let wait = p.batch.failed(Instant::now());
    let m = &p.shared.metrics();
    m.store_errors.inc();
    m.commit_failures.set(i64::from(p.batch.failures()));
    tracing::warn!(
        messages = p.batch.len(),
        failures = p.batch.failures(),
        retry_in = ?wait,
        "the batch is not stored; its messages stay unacknowledged and are tried again"
    );
    check_disk(p);
}

/// The batch is committed: its acknowledgements go out (in the order the
/// messages were taken; each connection's in arrival order), its lines go
/// to the time-series copy, and its latency is measured.
pub(crate) fn release(p: &mut Pipeline<'_>) {
    let r = p.batch.committed();
    let m = &p.shared.metrics();
    m.commit_failures.set(0);
    let now = p.shared.clock().now_ms();
    for received in r.received {
        #[allow(clippy::cast_precision_loss)]
        m.pipeline_seconds.observe((now - received).max(0) as f64 / 1000.0);
    }
    for ack in r.acks {
        ack.release();
    }
    if let Some(tx) = p.influx
        && !r.lines.is_empty()
        && tx.blocking_send(r.lines).is_err()
    {
        tracing::error!("the InfluxDB collector has stopped");
    }
}
