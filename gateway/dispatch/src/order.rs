//! A work order and the rules of its steps: `dispatched` → `responded` →
//! `arrived` → `completed`, or `false_alarm` from any open status (the
//! regional elevator disposal schema). Each step stamps its time and who did
//! it; a step out of order is refused with the reason, never guessed.

use serde::{Deserialize, Serialize};

/// Where an order is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Sent to a contractor, nobody has answered.
    Dispatched,
    /// The contractor has taken it.
    Responded,
    /// Somebody is on site.
    Arrived,
    /// Done.
    Completed,
    /// Nothing was wrong.
    FalseAlarm,
}

impl Status {
    /// The name in the API and in filters.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Dispatched => "dispatched",
            Status::Responded => "responded",
            Status::Arrived => "arrived",
            Status::Completed => "completed",
            Status::FalseAlarm => "false_alarm",
        }
    }

    /// Whether the order is closed.
    #[must_use]
    pub const fn is_closed(self) -> bool {
        matches!(self, Status::Completed | Status::FalseAlarm)
    }

    /// Parses a name of the API.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Status> {
        [
            Status::Dispatched,
            Status::Responded,
            Status::Arrived,
            Status::Completed,
            Status::FalseAlarm,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A contractor's step (`POST /api/v1/work-orders/{id}/{step}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `respond`.
    Respond,
    /// `arrive`.
    Arrive,
    /// `complete`.
    Complete,
    /// `false-alarm`.
    FalseAlarm,
}

impl StepKind {
    /// The status the step leads to.
    #[must_use]
    pub const fn status(self) -> Status {
        match self {
            StepKind::Respond => Status::Responded,
            StepKind::Arrive => Status::Arrived,
            StepKind::Complete => Status::Completed,
            StepKind::FalseAlarm => Status::FalseAlarm,
        }
    }

    /// Parses the path segment of the API (`false-alarm`).
    #[must_use]
    pub fn from_path(s: &str) -> Option<StepKind> {
        match s {
            "respond" => Some(StepKind::Respond),
            "arrive" => Some(StepKind::Arrive),
            "complete" => Some(StepKind::Complete),
            "false-alarm" => Some(StepKind::FalseAlarm),
            _ => None,
        }
    }
}

/// Corrective (from an alert) or preventive (a periodic duty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Opened by a firing alert.
    Corrective,
    /// A periodic duty (maintenance, self-test).
    Preventive,
}

/// One stamped step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The status it led to.
    pub status: Status,
    /// When (gateway ms).
    pub at: i64,
    /// Who (a contractor id, `admin`, an engineer's name, or `node` for a
    /// self-test that fulfilled a duty).
    pub by: String,
    /// Their note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Which deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deadline {
    /// Respond.
    Respond,
    /// Arrive.
    Arrive,
    /// Complete (for a preventive order: the duty's due time).
    Complete,
    /// The bureau's limit (a passenger trapped past 1 h).
    Bureau,
}

impl Deadline {
    /// The name in records and reports.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Deadline::Respond => "respond",
            Deadline::Arrive => "arrive",
            Deadline::Complete => "complete",
            Deadline::Bureau => "bureau",
        }
    }
}

/// What an escalation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The order went to the backup contractor.
    Redispatched {
        /// The contractor it was with.
        from: Option<String>,
        /// The backup.
        to: String,
    },
    /// The property manager was told.
    NotifiedManager {
        /// The manager.
        manager: String,
    },
    /// The order was flagged for the bureau.
    FlaggedBureau {
        /// The bureau's contact, when configured.
        bureau: Option<String>,
    },
    /// Nobody could be told (no backup, no manager configured): recorded so
    /// the gap in the configuration shows in the audit.
    NobodyToTell,
}

/// One missed deadline and what was done about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// When it was noticed (gateway ms).
    pub at: i64,
    /// The deadline.
    pub missed: Deadline,
    /// When it was due.
    pub due: i64,
    /// What was done.
    pub actions: Vec<Action>,
}

/// Absolute deadlines (gateway ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Respond by (none for preventive orders).
    pub respond: Option<i64>,
    /// On site by (none for preventive orders).
    pub arrive: Option<i64>,
    /// Completed by.
    pub complete: i64,
    /// Flag for the bureau at, if its alert still fires.
    pub bureau: Option<i64>,
}

/// One value of the evidence: what the device reported around the trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The metric.
    pub metric: String,
    /// The charging port, for port metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u8>,
    /// Gateway receive time (ms).
    pub at: i64,
    /// The value.
    pub value: f64,
}

/// What an order carries as proof of why it was opened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The alert's values when it fired.
    pub at_fire: Vec<alerting::effect::Evidence>,
    /// The device's samples in the window before the trigger (from the
    /// store; the pure core is handed them).
    pub series: Vec<Sample>,
    /// The rules (and `node`) that held the alert.
    pub sources: Vec<String>,
}

/// A work order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Its number: unique, never reused.
    pub id: u64,
    /// Corrective or preventive.
    pub kind: Kind,
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device.
    pub device: String,
    /// The fault code (or the duty's name).
    pub code: String,
    /// The charging port of the first alert, for per-port codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u8>,
    /// The alert's severity (`critical`), or `info` for duties.
    pub severity: String,
    /// Where it is.
    pub status: Status,
    /// Who has it now (after a re-dispatch: the backup).
    pub contractor: Option<String>,
    /// The contractor it was first dispatched to.
    pub primary: Option<String>,
    /// The backup contractor.
    pub backup: Option<String>,
    /// The property manager.
    pub manager: Option<String>,
    /// When it was dispatched (gateway ms).
    pub created_at: i64,
    /// When its fault began (the alert's `since`).
    pub fault_since: i64,
    /// Its deadlines.
    pub deadlines: Deadlines,
    /// Responded at.
    pub responded_at: Option<i64>,
    /// Arrived at.
    pub arrived_at: Option<i64>,
    /// Completed or found a false alarm at.
    pub closed_at: Option<i64>,
    /// Every step.
    pub steps: Vec<Step>,
    /// Every missed deadline.
    pub escalations: Vec<Escalation>,
    /// Flagged for the bureau.
    pub bureau_flagged: bool,
    /// The alerts behind it (one order per device and code: a second alert
    /// of the same fault joins the open order).
    pub alerts: Vec<u64>,
    /// When its (last) alert resolved; the order stays open until somebody
    /// closes it (a freed passenger still needs the lift inspected).
    pub alert_resolved_at: Option<i64>,
    /// Why it was opened.
    pub evidence: Evidence,
    /// The alert's building, for people on site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    /// The code's Chinese label (`困人`), for every reader of the order; `""`
    /// for a code without one. Orders stored before it existed read it back
    /// empty: [`Order::labelled`].
    #[serde(default)]
    pub label_zh: std::borrow::Cow<'static, str>,
}

/// Why a step was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// No such order.
    #[error("no work order {0}")]
    NotFound(u64),
    /// The order is with somebody else.
    #[error("work order {id} is dispatched to {holder}, not to {who}")]
    NotYours {
        /// The order.
        id: u64,
        /// Who asked.
        who: String,
        /// Who has it.
        holder: String,
    },
    /// The step does not follow from the status.
    #[error("work order {id} is {status}: cannot {step} ({why})")]
    Conflict {
        /// The order.
        id: u64,
        /// Its status.
        status: &'static str,
        /// The step asked for.
        step: &'static str,
        /// What must happen first.
        why: &'static str,
    },
}

/// Who takes a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The name stamped on the step.
    pub name: String,
    /// The contractor the actor speaks for: it may step only its own orders.
    /// `None` for the admin and property engineers.
    pub contractor: Option<String>,
}

impl Order {
    /// Fills in `label_zh` if it is empty (an order stored before it existed).
    #[must_use]
    pub fn labelled(mut self) -> Self {
        if self.label_zh.is_empty() {
            self.label_zh = std::borrow::Cow::Borrowed(protocol::EventCode::label_zh_of(&self.code));
        }
        self
    }

    /// Whether the contractor has (or had) this order: what a contractor
    /// token may see.
    #[must_use]
    pub fn concerns(&self, contractor: &str) -> bool {
        self.contractor.as_deref() == Some(contractor) || self.primary.as_deref() == Some(contractor)
    }

    /// Checks and applies a step.
    ///
    /// # Errors
    /// [`StepError`]; the order is unchanged then.
    pub fn step(&mut self, now: i64, step: StepKind, by: &Actor, note: Option<String>) -> Result<(), StepError> {
        if let Some(c) = &by.contractor
            && self.contractor.as_deref() != Some(c)
        {
            return Err(StepError::NotYours {
                id: self.id,
                who: c.clone(),
                holder: self.contractor.clone().unwrap_or_else(|| "nobody".into()),
            });
        }
        let name = match step {
            StepKind::Respond => "respond",
            StepKind::Arrive => "arrive",
            StepKind::Complete => "complete",
            StepKind::FalseAlarm => "false-alarm",
        };
        let conflict = |why| StepError::Conflict {
            id: self.id,
            status: self.status.as_str(),
            step: name,
            why,
        };
        if self.status.is_closed() {
            return Err(conflict("the order is closed"));
        }
        let preventive = self.kind == Kind::Preventive;
        match (step, self.status) {
            (StepKind::Respond, Status::Dispatched) => self.responded_at = Some(now),
            (StepKind::Respond, _) => return Err(conflict("it was already responded to")),
            (StepKind::Arrive, Status::Responded) => self.arrived_at = Some(now),
            (StepKind::Arrive, Status::Dispatched) if preventive => self.arrived_at = Some(now),
            (StepKind::Arrive, Status::Dispatched) => return Err(conflict("respond first")),
            (StepKind::Arrive, _) => return Err(conflict("somebody already arrived")),
            (StepKind::Complete, Status::Arrived) => self.closed_at = Some(now),
            // Planned work has no response to wait for.
            (StepKind::Complete, _) if preventive => self.closed_at = Some(now),
            (StepKind::Complete, _) => return Err(conflict("arrive first: only somebody on site completes")),
            (StepKind::FalseAlarm, _) if preventive => return Err(conflict("a periodic duty is never a false alarm")),
            (StepKind::FalseAlarm, _) => self.closed_at = Some(now),
        }
        self.status = step.status();
        self.steps.push(Step {
            status: self.status,
            at: now,
            by: by.name.clone(),
            note,
        });
        Ok(())
    }
}
