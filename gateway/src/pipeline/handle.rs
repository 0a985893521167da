//! One message through decoding, the registry and the alerting engine,
//! staged for its batch's commit with its acknowledgement.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ingest::ingest;
use crate::ingest::lanes::{Input, Publish};
use crate::metrics::{KindLabel, Metrics, ReasonLabel};
use crate::pipeline::Pipeline;
use crate::store::Store;

/// At most one log line per topic per this long for rejected input.
pub(crate) const REJECT_LOG_EVERY: Duration = Duration::from_mins(1);

/// One message through ingest, registry and the alerting engine, staged for
/// the batch's commit with its acknowledgement; returns its receive time.
pub(crate) fn handle(
    p: &mut Pipeline<'_>,
    input: Input,
    last_log: &mut HashMap<String, Instant>,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
    clock: i64,
) -> i64 {
    let m = &p.shared.metrics();
    let (incoming, ack) = match input {
        Input::Polled(incoming) => (*incoming, None),
        Input::Mapped(incoming, ack) => (*incoming, ack),
        Input::Mqtt(pb) => match ingest(&pb.topic, &pb.payload, pb.received_ms) {
            Ok(i) => (i, pb.ack),
            Err(r) => {
                if let Some(rec) = note_rejected(&p.store, m, last_log, &r, &pb) {
                    p.ledger.record(rec);
                }
                // Refused, and acknowledged with the batch: the record of
                // the refusal (if any) is committed first.
                p.batch.add(Instant::now(), pb.received_ms, pb.ack);
                return pb.received_ms;
            }
        },
    };
    m.ingested
        .get_or_create(&KindLabel {
            kind: incoming.topic.kind.to_string(),
        })
        .inc();
    // A device's registry state is written with the batch when the message
    // changes its session or presence; a sample only marks it dirty, and
    // dirty devices are written every few seconds (DEVICES_EVERY), not once
    // per sample (with a thousand devices that was a row per message).
    let persist = obs_persists(&incoming);
    let (obs, died, device, dirty) = p.shared.registry().with(|reg| {
        let (obs, d) = reg.observe_device(&incoming);
        if persist || obs.came_online {
            (obs, d.died, Some(d.clone()), None)
        } else {
            (obs, d.died, None, Some(d.key.clone()))
        }
    });
    if let Some(key) = dirty {
        p.dirty.insert(key);
    }
    m.lost.inc_by(u64::from(obs.lost));
    if obs.reordered {
        m.reordered.inc();
    }
    if obs.skewed {
        m.skewed.inc();
    }
    let received = incoming.received_ms;
    if obs.duplicate {
        // Stored before (or in this batch): acknowledged with the batch.
        m.duplicates.inc();
        p.batch.add(Instant::now(), received, ack);
        return received;
    }
    judge(&mut p.engine, &incoming, obs, died, effects, clock);
    p.judgement.sample(&mut p.engine, clock, &incoming, effects);
    if obs.came_online {
        // Its periodic duties begin (no-op when they run already).
        let t = &incoming.topic;
        p.desk
            .device_seen(clock, t.site.as_str(), t.class.as_str(), t.device.as_str(), outs);
    }
    if p.influx.is_some() {
        crate::store::influx::encode(&incoming, p.batch.lines_mut());
    }
    if let Some(d) = device {
        p.ledger.stage_device(d);
    }
    if !matches!(incoming.message, protocol::Message::Data(_)) {
        // Acks settle commands; births and smoke events feed their rules.
        p.commands
            .observe(clock, p.store.conn(), &incoming, &mut p.ledger, p.shared.metrics());
    }
    if !p.upstream.is_empty() {
        // Connectors that upload values decide their rows as the message is
        // taken; they go with its batch's commit.
        let rows = p.upstream.message(clock, &incoming);
        p.ledger.stage_upstream(rows);
    }
    p.ledger.stage(incoming);
    p.batch.add(Instant::now(), received, ack);
    received
}

/// Whether a message changes what the registry must keep at once: a birth,
/// a death, an event or an ack (sessions and presence), not a sample.
fn obs_persists(incoming: &crate::ingest::Incoming) -> bool {
    !matches!(incoming.message, protocol::Message::Data(_))
}

/// Feeds a stored message to the alerting engine, with what the registry
/// found: a gap before it, a will that is stale (ignored).
pub(crate) fn judge(
    engine: &mut alerting::Engine,
    incoming: &crate::ingest::Incoming,
    obs: crate::registry::Observation,
    died: bool,
    effects: &mut Vec<alerting::Effect>,
    clock: i64,
) {
    let d = alerting::DeviceRef {
        site: incoming.topic.site.as_str(),
        class: incoming.topic.class,
        device: incoming.topic.device.as_str(),
    };
    let now = clock.max(incoming.received_ms);
    if obs.lost > 0 {
        engine.observe(now, d, alerting::Input::Gap, effects);
    }
    // A will of an older session: the node is already back.
    if matches!(incoming.message, protocol::Message::Death(_)) && !died {
        return;
    }
    engine.observe(now, d, alerting::Input::Message(&incoming.message), effects);
}

/// Counts a rejected publish; once a minute per topic also logs it, keeps an
/// audit row and returns a supervision record of it, so a flood of garbage
/// cannot fill the log, the disk or the chain.
pub(crate) fn note_rejected(
    store: &Store,
    m: &Metrics,
    last_log: &mut HashMap<String, Instant>,
    r: &crate::ingest::Rejected,
    p: &Publish,
) -> Option<records::NewRecord> {
    m.rejected
        .get_or_create(&ReasonLabel {
            reason: r.reason.to_owned(),
        })
        .inc();
    if last_log.get(&r.topic).is_some_and(|t| t.elapsed() < REJECT_LOG_EVERY) {
        return None;
    }
    tracing::warn!(topic = %r.topic, reason = r.reason, detail = %r.detail, "rejected input");
    last_log.insert(r.topic.clone(), Instant::now());
    if let Err(e) = store.record_rejected(p.received_ms, r, &p.payload) {
        tracing::error!(error = %e, "could not record rejected input");
    }
    // fm/v1/{site}/{class}/{device}/{kind}, when the topic has that shape.
    let parts: Vec<&str> = r.topic.split('/').collect();
    let (site, class, device) = match parts.as_slice() {
        ["fm", "v1", site, class, device, _] => ((*site).to_owned(), (*class).to_owned(), (*device).to_owned()),
        _ => (String::new(), String::new(), String::new()),
    };
    Some(records::NewRecord {
        at: p.received_ms,
        kind: "rejected_input".into(),
        site,
        class,
        device,
        subject: String::new(),
        body: serde_json::json!({
            "topic": r.topic, "reason": r.reason, "detail": r.detail, "bytes": p.payload.len(),
        })
        .to_string(),
    })
}
