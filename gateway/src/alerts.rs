//! The alerting core's edge in the gateway: what the pipeline does with the
//! effects the pure core returns (store them, publish them on the event
//! stream, count them), and what the HTTP side shares with it (the open
//! alerts, the event stream, a control channel for acknowledgements).
//!
//! The core itself (`alerting`) never touches any of this: it is fed and
//! answers; here is where its answers meet SQLite and sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use alerting::{AckError, AlertView, Change, Effect, Engine, WorkOrderIntent};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::metrics::{ChangeLabel, Metrics};
use crate::store::Store;

/// Events the stream keeps for slow readers before they lag (and are told).
pub const EVENTS: usize = 1024;

/// One event of `/api/v1/events`: its SSE event name and JSON data.
pub type StreamEvent = Arc<(&'static str, String)>;

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
        reply: oneshot::Sender<Result<AlertView, AckError>>,
    },
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
        }
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

fn change_name(c: Change) -> &'static str {
    match c {
        Change::Pending => "pending",
        Change::Fired => "fired",
        Change::Acknowledged => "acknowledged",
        Change::Resolved => "resolved",
        Change::Cancelled => "cancelled",
        Change::Updated => "updated",
    }
}

/// The devices (engine position and snapshot) whose alerts an effect list
/// touched, for persisting with it.
fn touched(engine: &Engine, effects: &[Effect]) -> Vec<crate::store::EngineDevice> {
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

/// Applies effects: stores them with the engine state they came from,
/// updates the open alerts, publishes them, counts them, logs the ones people
/// act on. A store failure is counted and logged; the engine keeps its state
/// and the next full save persists it.
pub fn apply(store: &mut Store, engine: &Engine, hub: &Hub, metrics: &Metrics, effects: &[Effect]) {
    if effects.is_empty() {
        return;
    }
    let devices = touched(engine, effects);
    if let Err(e) = store.apply_alert_effects(effects, &devices, &engine.globals()) {
        metrics.alert_store_errors.inc();
        tracing::error!(error = %e, effects = effects.len(), "could not store alert changes");
    }
    let mut open = hub.open.lock().unwrap_or_else(PoisonError::into_inner);
    for e in effects {
        let (name, json) = match e {
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
                ("alert", serde_json::to_string(c))
            }
            Effect::Notify(n) => {
                metrics.notifications.inc();
                tracing::info!(site = %n.site, building = ?n.building, firing = n.firing.len(),
                    resolved = n.resolved.len(), critical = n.critical, "notification due");
                ("notification", serde_json::to_string(n))
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
                ("work_order", serde_json::to_string(w))
            }
            Effect::Record(r) => ("record", serde_json::to_string(r)),
        };
        match json {
            // No subscriber is not an error: the stream is live only.
            Ok(j) => drop(hub.events.send(Arc::new((name, j)))),
            Err(e) => tracing::error!(error = %e, "could not encode an alert effect"),
        }
    }
    metrics.alerts_open.set(i64::try_from(open.len()).unwrap_or(i64::MAX));
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
