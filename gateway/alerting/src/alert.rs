//! The alert lifecycle: one alert per (device, code, port) at a time, fed the
//! combined verdict of everything that can raise its code (several rules, the
//! node's own event), so a node-raised `trapped` and the gateway's own
//! judgement of it are one alert, never two.
//!
//! ```text
//!  (none) ──pending──► Pending ──fires──► Firing ──ack──► Acknowledged
//!    ▲                   │ ends             │ ends on fresh data │
//!    │                   ▼                  ▼                    ▼
//!    └──────────────── (cancelled)        Resolved ◄─────────────┘
//! unknown sources (no data, stale): nothing moves
//! the Nth firing within the flap window: held open as flapping until quiet
//! ```

use std::sync::Arc;

use protocol::Severity;
use serde::{Deserialize, Serialize};

use crate::effect::{Change, DataState, Evidence, State};

/// Where an alert stands, including the closed slot that remembers recent
/// episodes for flap detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Pending its `for`.
    Pending,
    /// Firing.
    Firing,
    /// Firing, taken by somebody.
    Acknowledged,
    /// No open episode; the slot keeps flap history.
    Closed,
}

/// Timing of flap damping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flap {
    /// The window episodes are counted in.
    pub window_ms: i64,
    /// Episodes within the window that make an alert flapping.
    pub starts: u8,
    /// How long a flapping alert must stay quiet before it resolves.
    pub hold_ms: i64,
}

/// The combined verdict of an alert's sources.
#[derive(Clone, Debug, PartialEq)]
pub struct Sources {
    /// The code.
    pub code: Arc<str>,
    /// The port (0: the device).
    pub port: u8,
    /// Some source fires.
    pub firing: bool,
    /// Some source is pending.
    pub pending: bool,
    /// Some source cannot judge (missing or stale inputs).
    pub unknown: bool,
    /// Earliest pending start.
    pub since: i64,
    /// Most severe of the firing or pending sources.
    pub severity: Severity,
    /// Some source asks for a work order.
    pub dispatch: bool,
    /// Which sources hold it now.
    pub names: Vec<Arc<str>>,
    /// Freshness.
    pub data: DataState,
}

impl Sources {
    /// An empty verdict: nothing holds, everything known.
    #[must_use]
    pub fn none(code: Arc<str>, port: u8, severity: Severity) -> Sources {
        Sources {
            code,
            port,
            firing: false,
            pending: false,
            unknown: false,
            since: i64::MAX,
            severity,
            dispatch: false,
            names: Vec::new(),
            data: DataState::Fresh,
        }
    }
}

/// One alert slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The code.
    pub code: Arc<str>,
    /// The port (0: the device).
    pub port: u8,
    /// The current (or last) episode.
    pub episode: u64,
    /// Where it stands.
    pub state: Lifecycle,
    /// Severity.
    pub severity: Severity,
    /// Whether firing asks for a work order.
    pub dispatch: bool,
    /// When its condition started.
    pub since: i64,
    /// When it fired.
    pub fired_at: Option<i64>,
    /// When and by whom it was acknowledged.
    pub acked: Option<(i64, String)>,
    /// When it resolved.
    pub resolved_at: Option<i64>,
    /// Freshness of its sources.
    pub data: DataState,
    /// Held open because it flaps.
    pub flapping: bool,
    /// A flapping alert's quiet period start.
    pub quiet_since: Option<i64>,
    /// Fire times of recent episodes, oldest first.
    pub starts: Vec<i64>,
    /// Waiting in its group for the notification.
    pub queued: bool,
    /// Its firing was notified.
    pub notified: bool,
    /// A work-order intent was opened for it.
    pub dispatched: bool,
    /// A parent recovered at this time: notify only after fresh data.
    pub rejudge_after: Option<i64>,
    /// What suppresses its notification now.
    pub inhibited_by: Option<String>,
    /// Its device is in a maintenance window.
    pub maintenance: bool,
    /// The sources holding it.
    pub sources: Vec<Arc<str>>,
    /// Values when it fired.
    pub evidence: Vec<Evidence>,
}

impl Alert {
    /// An empty slot for (code, port).
    #[must_use]
    pub fn closed(code: Arc<str>, port: u8, severity: Severity) -> Alert {
        Alert {
            code,
            port,
            episode: 0,
            state: Lifecycle::Closed,
            severity,
            dispatch: false,
            since: 0,
            fired_at: None,
            acked: None,
            resolved_at: None,
            data: DataState::Fresh,
            flapping: false,
            quiet_since: None,
            starts: Vec::new(),
            queued: false,
            notified: false,
            dispatched: false,
            rejudge_after: None,
            inhibited_by: None,
            maintenance: false,
            sources: Vec::new(),
            evidence: Vec::new(),
        }
    }

    /// Whether an episode is open.
    #[must_use]
    pub fn open(&self) -> bool {
        self.state != Lifecycle::Closed
    }

    /// Whether it fires (acknowledged or not).
    #[must_use]
    pub fn firing(&self) -> bool {
        matches!(self.state, Lifecycle::Firing | Lifecycle::Acknowledged)
    }

    /// The state as the API names it.
    #[must_use]
    pub fn api_state(&self) -> State {
        match self.state {
            Lifecycle::Pending => State::Pending,
            Lifecycle::Firing => State::Firing,
            Lifecycle::Acknowledged => State::Acknowledged,
            Lifecycle::Closed => State::Resolved,
        }
    }

    /// Whether the slot can be forgotten: closed, with no episode in the
    /// flap window.
    #[must_use]
    pub fn forgettable(&self, now: i64, flap: Flap) -> bool {
        self.state == Lifecycle::Closed && self.starts.iter().all(|t| now.saturating_sub(*t) >= flap.window_ms)
    }

    /// Applies the sources' verdict at `now`; returns what changed.
    pub fn judge(&mut self, s: &Sources, now: i64, flap: Flap, next_episode: &mut u64) -> Option<Change> {
        let data_changed = self.data != s.data;
        match self.state {
            Lifecycle::Closed => {
                if !(s.firing || s.pending) {
                    return None;
                }
                self.episode = *next_episode;
                *next_episode += 1;
                self.since = s.since.min(now);
                self.fired_at = None;
                self.acked = None;
                self.resolved_at = None;
                self.flapping = false;
                self.quiet_since = None;
                self.queued = false;
                self.notified = false;
                self.dispatched = false;
                self.rejudge_after = None;
                self.inhibited_by = None;
                self.maintenance = false;
                self.evidence.clear();
                self.take(s);
                if s.firing {
                    self.fire(now, flap);
                    Some(Change::Fired)
                } else {
                    self.state = Lifecycle::Pending;
                    Some(Change::Pending)
                }
            }
            Lifecycle::Pending => {
                if s.firing {
                    self.take(s);
                    self.fire(now, flap);
                    Some(Change::Fired)
                } else if s.pending || s.unknown {
                    self.take(s);
                    data_changed.then_some(Change::Updated)
                } else {
                    self.state = Lifecycle::Closed;
                    Some(Change::Cancelled)
                }
            }
            Lifecycle::Firing | Lifecycle::Acknowledged => {
                if s.firing {
                    self.quiet_since = None;
                    let escalated = s.severity < self.severity;
                    self.take(s);
                    (data_changed || escalated).then_some(Change::Updated)
                } else if s.unknown {
                    self.data = s.data;
                    data_changed.then_some(Change::Updated)
                } else if self.flapping {
                    self.data = s.data;
                    let quiet = *self.quiet_since.get_or_insert(now);
                    if now.saturating_sub(quiet) >= flap.hold_ms {
                        self.resolve(now);
                        Some(Change::Resolved)
                    } else {
                        data_changed.then_some(Change::Updated)
                    }
                } else {
                    self.data = s.data;
                    self.resolve(now);
                    Some(Change::Resolved)
                }
            }
        }
    }

    fn take(&mut self, s: &Sources) {
        if s.firing || s.pending {
            // The most severe source sets the severity; it never drops within
            // an episode (a critical alert does not become minor mid-way).
            if self.state == Lifecycle::Closed || s.severity < self.severity {
                self.severity = s.severity;
            }
            self.dispatch |= s.dispatch;
            self.sources.clone_from(&s.names);
        }
        self.data = s.data;
    }

    fn fire(&mut self, now: i64, flap: Flap) {
        self.state = Lifecycle::Firing;
        self.fired_at = Some(now);
        self.starts.retain(|t| now.saturating_sub(*t) < flap.window_ms);
        self.starts.push(now);
        if self.starts.len() > usize::from(flap.starts.max(1)) {
            self.starts.remove(0);
        }
        self.flapping = self.starts.len() >= usize::from(flap.starts.max(2));
    }

    fn resolve(&mut self, now: i64) {
        self.state = Lifecycle::Closed;
        self.resolved_at = Some(now);
        self.quiet_since = None;
        self.queued = false;
    }

    /// Acknowledges it.
    ///
    /// # Errors
    /// The state it is in, when that is not firing.
    pub fn ack(&mut self, now: i64, by: &str) -> Result<bool, State> {
        match self.state {
            Lifecycle::Firing => {
                self.state = Lifecycle::Acknowledged;
                self.acked = Some((now, by.to_owned()));
                Ok(true)
            }
            Lifecycle::Acknowledged => Ok(false),
            Lifecycle::Pending => Err(State::Pending),
            Lifecycle::Closed => Err(State::Resolved),
        }
    }
}
