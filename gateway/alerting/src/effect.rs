//! What the engine returns: plain data the gateway acts on. Nothing here
//! does I/O; the gateway stores alert changes, publishes them on the event
//! stream, sends notifications and opens work orders from them.
//!
//! Every effect names its alert by `id`, the episode number: it never
//! repeats, so a consumer that sees an effect twice (a retry, a replay after
//! a crash) can drop the second.

use protocol::Severity;
use serde::{Deserialize, Serialize};

/// The lifecycle state of an alert, as the HTTP API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The condition holds, not yet for long enough.
    Pending,
    /// The alert fires.
    Firing,
    /// Somebody has taken it; it still fires.
    Acknowledged,
    /// Its condition ended on fresh data.
    Resolved,
}

impl State {
    /// The name used in the API and in filters.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }
}

/// How fresh the data behind an alert is. Neither `no_data` nor `stale` ever
/// resolves an alert: only a fresh sample on the safe side does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataState {
    /// The rule's inputs are current.
    #[default]
    Fresh,
    /// The device reports, but not the metrics this rule reads.
    NoData,
    /// The device itself is silent or offline (or the gateway lost its broker).
    Stale,
}

/// An alert as the outside sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    /// The episode: unique, never reused.
    pub id: u64,
    /// The compound.
    pub site: String,
    /// `elevator`, `firepump`, `charger`, or `gateway` for root causes.
    pub class: String,
    /// The device (for root causes: `uplink`, `site`, or `bus:<name>`).
    pub device: String,
    /// The code.
    pub code: String,
    /// The charging port, for per-port codes.
    pub port: Option<u8>,
    /// Severity.
    pub severity: Severity,
    /// Lifecycle state.
    pub state: State,
    /// When its condition started (gateway ms).
    pub since: i64,
    /// When it fired.
    pub fired_at: Option<i64>,
    /// When it was acknowledged.
    pub acked_at: Option<i64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// When it resolved.
    pub resolved_at: Option<i64>,
    /// Held open because it flaps: not re-notified on every flip.
    pub flapping: bool,
    /// Freshness of its inputs.
    pub data: DataState,
    /// The failed parent that suppresses its notification (`uplink`,
    /// `site:lakeside`, `bus:/dev/ttyUSB0`, `offline:EL-3`).
    pub inhibited_by: Option<String>,
    /// Its device is in a maintenance window: recorded, not notified.
    pub maintenance: bool,
    /// The rules (and `node` for the node's own event) that hold it now.
    pub sources: Vec<String>,
    /// The building, for grouping.
    pub building: Option<String>,
    /// The values of its device (and port) when it fired, and the detail of
    /// the node's event that fired it (a Modbus exception): the evidence.
    pub evidence: Vec<Evidence>,
    /// The code's Chinese label (`困人`), so every reader of an alert (the
    /// console, a webhook, a bureau's export) shows the words staff use
    /// without a table of its own; `""` for a code without one. Alerts
    /// stored before it existed read it back empty: [`AlertView::labelled`].
    #[serde(default)]
    pub label_zh: std::borrow::Cow<'static, str>,
}

impl AlertView {
    /// Fills in `label_zh` if it is empty (an alert stored before it existed).
    #[must_use]
    pub fn labelled(mut self) -> Self {
        if self.label_zh.is_empty() {
            self.label_zh = std::borrow::Cow::Borrowed(protocol::EventCode::label_zh_of(&self.code));
        }
        self
    }
}

/// One value of the evidence: a metric of the device, or a field of the
/// detail of the node's event that fired the alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The metric (or the detail's field: `exception`, `function`, ...).
    pub metric: String,
    /// The port, for port metrics.
    pub port: Option<u8>,
    /// The value (flags 0 or 1; 0 for a text).
    pub value: f64,
    /// When it was received.
    pub at: i64,
    /// A detail field that is text (a Modbus exception's name,
    /// `IllegalDataAddress`); metrics never have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new episode, pending its `for`.
    Pending,
    /// It fired (possibly straight from nothing).
    Fired,
    /// Acknowledged by somebody.
    Acknowledged,
    /// Its condition ended.
    Resolved,
    /// A pending alert whose condition ended before its `for`: never fired.
    Cancelled,
    /// Flags changed (data freshness, flapping, inhibition, maintenance).
    Updated,
}

/// A change of one alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    /// What happened.
    pub change: Change,
    /// The alert after it.
    pub alert: AlertView,
}

/// A notification for one group (a building, or a compound): the firing
/// alerts released since the last one, and those resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The compound.
    pub site: String,
    /// The building, where devices are assigned to one.
    pub building: Option<String>,
    /// When it was sent.
    pub at: i64,
    /// Whether a critical alert is in it (sent at once, not after the group wait).
    pub critical: bool,
    /// Newly firing alerts.
    pub firing: Vec<AlertView>,
    /// Resolved alerts that had been notified.
    pub resolved: Vec<AlertView>,
}

/// What the work-order side must do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum WorkOrderIntent {
    /// Hands are needed on site for this alert (one per episode).
    Open {
        /// The alert, with its evidence.
        alert: AlertView,
    },
    /// The alert behind an opened intent has resolved.
    Close {
        /// The alert.
        alert: AlertView,
    },
}

/// Something worth a supervision record that is not an alert transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When (gateway ms).
    pub at: i64,
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device.
    pub device: String,
    /// `self_test` (a periodic duty's outcome), `replayed_event` (a `hist`
    /// event: stored, never re-notified as live).
    pub kind: String,
    /// The code concerned.
    pub code: String,
    /// Whether the event raised or cleared it.
    pub active: bool,
    /// The event's detail, as text pairs.
    pub detail: Vec<(String, String)>,
}

/// One effect, in the order the gateway must apply them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// An alert changed.
    Alert(AlertChange),
    /// A grouped notification is due.
    Notify(Notification),
    /// A work order should be opened or closed.
    WorkOrder(WorkOrderIntent),
    /// A record that is not an alert transition.
    Record(Record),
}
