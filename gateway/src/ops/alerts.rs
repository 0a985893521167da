//! The alerting core's edge in the gateway: what the pipeline does with the
//! effects the pure core returns (store them, publish them on the event
//! stream, count them), and what the HTTP side shares with it (the open
//! alerts, the event stream, a control channel for acknowledgements).
//!
//! The core itself (`alerting`) never touches any of this: it is fed and
//! answers; here is where its answers meet SQLite and sockets.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use alerting::{AckError, AlertView, Change, Effect, Engine, WorkOrderIntent};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::metrics::{ChangeLabel, Metrics};
use crate::store::Store;

/// Events the stream keeps for slow readers before they lag (and are told).
pub const EVENTS: usize = 1024;

/// One event of `/api/v1/events`, with what scoping needs: the compound and,
/// for work orders, the contractors it concerns.
#[derive(Debug)]
pub struct Streamed {
    /// Its place in the stream, the SSE `id` (`{boot}-{seq}`): a reader that
    /// reconnects sends the last one it saw as `Last-Event-ID` and is given
    /// what it missed ([`Hub::since`]).
    pub seq: u64,
    /// The SSE event name (`alert`, `work_order`, `record`, ...).
    pub name: &'static str,
    /// The compound, when it has one.
    pub site: Option<String>,
    /// The contractors a work-order event concerns (they alone of their role see it).
    pub contractors: Vec<String>,
    /// The JSON data.
    pub json: String,
}

/// One event of the stream, shared by every reader.
pub type StreamEvent = Arc<Streamed>;

/// Why an acknowledgement or a step was not taken.
#[derive(Debug)]
pub enum Refusal<E> {
    /// The core said no (unknown, not firing, somebody else's, out of order).
    Refused(E),
    /// Taken, but the store failed: it is kept and stored with the next
    /// commit; the client is told it is not yet durable.
    NotStored(String),
}

/// Asks the pipeline, which owns the engine, to do something.
#[derive(Debug)]
pub enum Control {
    /// Let time pass (sent every second).
    Tick,
    /// The broker connection went up (`true`) or down.
    Uplink(bool),
    /// Acknowledge an alert; the answer comes once the change is stored.
    Ack {
        /// The alert.
        id: u64,
        /// Who.
        by: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<AlertView, Refusal<AckError>>>,
    },
    /// A contractor's step on a work order; answered once stored.
    Step {
        /// The order.
        id: u64,
        /// Which step.
        step: dispatch::StepKind,
        /// Who.
        by: dispatch::Actor,
        /// Their note.
        note: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<dispatch::Order, Refusal<dispatch::StepError>>>,
    },
    /// A device credential provisioned or revoked, stored with its record;
    /// answered once stored.
    Credential {
        /// The change (boxed: it is rare, and the queue's slots stay small).
        change: Box<crate::store::credentials::Change>,
        /// Its record.
        record: Option<records::NewRecord>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A notification's delivery ended (delivered or a dead letter).
    Delivered(notify::Outcome),
    /// A command to a node over the API; answered once it is stored (and
    /// handed to the broker), or refused.
    Command {
        /// What, to whom, by whom (boxed: the queue's slots stay small).
        request: Box<crate::ops::commands::Request>,
        /// Known to the registry (to tell "unknown" from "no credentials").
        known: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<crate::ops::commands::Command, crate::ops::commands::Refusal>>,
    },
    /// An upstream row's attempt ended (delivered, to be retried, or dead):
    /// its row and record are stored with the next commit.
    Upstream(Box<crate::upstream::Outcome>),
    /// Answer once everything already in the lanes is judged and stored (the
    /// HIL simulation's barrier before it moves virtual time on).
    Sync(oneshot::Sender<()>),
    /// Drain what is queued and stop.
    Stop,
}

/// What the HTTP side shares with the pipeline about alerts.
#[derive(Clone)]
pub struct Hub {
    /// Open alerts (pending, firing, acknowledged) by id: resolved ones are in
    /// SQLite.
    pub open: Arc<Mutex<BTreeMap<u64, AlertView>>>,
    /// The live event stream.
    pub events: broadcast::Sender<StreamEvent>,
    /// To the pipeline.
    pub control: mpsc::Sender<Control>,
    /// Set at shutdown: event streams end, so the HTTP server can drain.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The last [`EVENTS`] events, to resume a reader that reconnects.
    journal: Arc<Mutex<Journal>>,
    /// Device statuses last told as `device` events.
    statuses: Arc<Mutex<crate::registry::StatusWatch>>,
    /// This run's start (ms), the first half of every event id: numbers
    /// start again at each start, so a reader's id from before a restart
    /// is recognised as such, not confused with a number of this run.
    boot: u64,
}

/// The stream's numbering and its recent past.
#[derive(Debug)]
struct Journal {
    next: u64,
    recent: VecDeque<StreamEvent>,
}

/// What a reader that reconnects is owed ([`Hub::since`]).
#[derive(Debug)]
pub enum Resume {
    /// The events after its last one, all still kept (maybe none).
    Missed(Vec<StreamEvent>),
    /// Its last event is from another run of the gateway, or too old to
    /// be kept: it must read the lists again (`event: reset`).
    Reset,
}

impl Hub {
    /// A hub sending controls into `control`.
    #[must_use]
    pub fn new(control: mpsc::Sender<Control>) -> Hub {
        Hub {
            open: Arc::default(),
            events: broadcast::channel(EVENTS).0,
            control,
            closing: tokio::sync::watch::channel(false).0,
            journal: Arc::new(Mutex::new(Journal {
                next: 1,
                recent: VecDeque::with_capacity(EVENTS),
            })),
            statuses: Arc::default(),
            boot: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Streams a `device` event (`{"site","class","device","status",
    /// "last_seen_ms"}`) for each device whose status changed since the last
    /// look, so a screen of devices stays current without polling. Called on
    /// the pipeline's tick: a status also changes with time alone (stale).
    pub fn watch_devices(&self, devices: &crate::app::shared::Devices, now_ms: i64) {
        let changes = devices.with(|r| {
            self.statuses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .changes(r, now_ms)
        });
        for (key, status, last_seen_ms) in changes {
            let json = serde_json::to_string(&serde_json::json!({
                "site": key.site, "class": key.class, "device": key.device,
                "status": status, "last_seen_ms": last_seen_ms,
            }));
            stream(self, "device", Some(&key.site), Vec::new(), json);
        }
    }

    /// The SSE id of an event: `{boot}-{seq}`.
    #[must_use]
    pub fn event_id(&self, e: &Streamed) -> String {
        format!("{}-{}", self.boot, e.seq)
    }

    /// What a reader whose last event was `last_id` (its `Last-Event-ID`)
    /// missed. Call after subscribing to [`Hub::events`], and skip events
    /// of the subscription up to the last one returned here: nothing falls
    /// between the two.
    #[must_use]
    pub fn since(&self, last_id: &str) -> Resume {
        let j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let parsed = last_id
            .split_once('-')
            .and_then(|(b, s)| Some((b.parse::<u64>().ok()?, s.parse::<u64>().ok()?)));
        let Some((boot, seq)) = parsed else {
            return Resume::Reset;
        };
        if boot != self.boot || seq >= j.next {
            return Resume::Reset;
        }
        let oldest = j.recent.front().map_or(j.next, |e| e.seq);
        if seq + 1 < oldest {
            return Resume::Reset;
        }
        Resume::Missed(j.recent.iter().filter(|e| e.seq > seq).cloned().collect())
    }

    /// The open alerts, in id order.
    #[must_use]
    pub fn open_alerts(&self) -> Vec<AlertView> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Replaces the open alerts (after a restore).
    pub fn reset(&self, alerts: Vec<AlertView>) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = alerts.into_iter().map(|a| (a.id, a)).collect();
    }
}

/// The name of an alert change, in metrics and record kinds.
#[must_use]
pub fn change_name(c: Change) -> &'static str {
    match c {
        Change::Pending => "pending",
        Change::Fired => "fired",
        Change::Acknowledged => "acknowledged",
        Change::Resolved => "resolved",
        Change::Cancelled => "cancelled",
        Change::Updated => "updated",
    }
}

fn stream(
    hub: &Hub,
    name: &'static str,
    site: Option<&str>,
    contractors: Vec<String>,
    json: serde_json::Result<String>,
) {
    match json {
        Ok(json) => {
            // Numbered and sent under one lock, so the stream's order is
            // the numbers' order whichever thread publishes.
            let mut j = hub.journal.lock().unwrap_or_else(PoisonError::into_inner);
            let event = Arc::new(Streamed {
                seq: j.next,
                name,
                site: site.map(str::to_owned),
                contractors,
                json,
            });
            j.next += 1;
            if j.recent.len() == EVENTS {
                j.recent.pop_front();
            }
            j.recent.push_back(event.clone());
            // No subscriber is not an error: a reader resumes from the journal.
            drop(hub.events.send(event));
        }
        Err(e) => tracing::error!(error = %e, "could not encode an event"),
    }
}

/// Publishes a stored step: updates the open alerts, streams alert changes,
/// notifications, work-order changes and the new records, counts them, logs
/// the ones people act on.
pub fn publish(hub: &Hub, metrics: &Metrics, effects: &[Effect], outs: &[dispatch::Out], records: &[records::Entry]) {
    let mut open = hub.open.lock().unwrap_or_else(PoisonError::into_inner);
    for e in effects {
        match e {
            Effect::Alert(c) => {
                let a = &c.alert;
                metrics
                    .alert_changes
                    .get_or_create(&ChangeLabel {
                        change: change_name(c.change).into(),
                    })
                    .inc();
                match c.change {
                    Change::Resolved | Change::Cancelled => {
                        open.remove(&a.id);
                    }
                    _ => {
                        open.insert(a.id, a.clone());
                    }
                }
                if matches!(c.change, Change::Fired | Change::Resolved | Change::Acknowledged) {
                    tracing::info!(id = a.id, site = %a.site, device = %a.device, code = %a.code, port = ?a.port,
                        severity = %a.severity, change = change_name(c.change), inhibited_by = ?a.inhibited_by, "alert");
                }
                stream(hub, "alert", Some(&a.site), Vec::new(), serde_json::to_string(c));
            }
            Effect::Notify(n) => {
                metrics.notifications.inc();
                tracing::info!(site = %n.site, building = ?n.building, firing = n.firing.len(),
                    resolved = n.resolved.len(), critical = n.critical, "notification due");
                stream(hub, "notification", Some(&n.site), Vec::new(), serde_json::to_string(n));
            }
            Effect::WorkOrder(w) => {
                let intent = match w {
                    WorkOrderIntent::Open { .. } => "open",
                    WorkOrderIntent::Close { .. } => "close",
                };
                metrics
                    .work_order_intents
                    .get_or_create(&ChangeLabel { change: intent.into() })
                    .inc();
            }
            Effect::Record(_) => {}
        }
    }
    metrics.alerts_open.set(i64::try_from(open.len()).unwrap_or(i64::MAX));
    for severity in protocol::Severity::ALL {
        let n = open.values().filter(|a| a.severity == *severity).count();
        metrics
            .alerts_open_by_severity
            .get_or_create(&crate::metrics::SeverityLabel {
                severity: severity.as_str().to_owned(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    drop(open);
    for o in outs {
        if let dispatch::Out::Order { change, order } = o {
            tracing::info!(order = order.id, site = %order.site, device = %order.device, code = %order.code,
                status = order.status.as_str(), contractor = ?order.contractor, change = change.record_kind(order), "work order");
            let contractors: Vec<String> = order.contractor.iter().chain(order.primary.iter()).cloned().collect();
            let json = serde_json::to_string(&serde_json::json!({ "change": change, "order": order }));
            stream(hub, "work_order", Some(&order.site), contractors, json);
        }
    }
    for r in records {
        let site = (!r.site.is_empty()).then_some(r.site.as_str());
        stream(hub, "record", site, Vec::new(), serde_json::to_string(r));
    }
}
/// Saves the whole engine (periodically and at shutdown).
pub fn save_all(store: &mut Store, engine: &Engine, metrics: &Metrics) {
    let snap = engine.snapshot();
    let devices: Vec<crate::store::EngineDevice> = snap
        .devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| (u32::try_from(i).unwrap_or(u32::MAX), d))
        .collect();
    if let Err(e) = store.save_engine(&devices, &snap.globals) {
        metrics.alert_store_errors.inc();
        tracing::error!(error = %e, "could not save the alerting state");
    }
}
