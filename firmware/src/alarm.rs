//! The node's view of an event code: raised when its condition has held long
//! enough, cleared when it stops, each transition reported exactly once.

use protocol::EventCode;

use crate::debounce::Held;
use crate::hal::Millis;

/// Most events one step can produce (a smoke alarm on a 12-port bay cuts 12
/// ports and raises smoke: 13).
pub const MAX_EVENTS_PER_STEP: usize = 16;

/// An event the node must send: a code raised or cleared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeEvent {
    /// What happened.
    pub code: EventCode,
    /// Raised or cleared.
    pub active: bool,
    /// The port, for per-port codes.
    pub port: Option<u8>,
    /// The measurement that decided it (°C, A, mA, MPa, m/s, ...), for `detail`.
    pub value: Option<f32>,
    /// Whether the node cut a port off because of it.
    pub cut_off: bool,
    /// Outcome, for records such as `self_test`.
    pub ok: Option<bool>,
    /// Duration, for records such as `self_test`.
    pub duration_s: Option<u32>,
}

impl NodeEvent {
    /// An event without port or value.
    #[must_use]
    pub const fn new(code: EventCode, active: bool) -> Self {
        NodeEvent {
            code,
            active,
            port: None,
            value: None,
            cut_off: false,
            ok: None,
            duration_s: None,
        }
    }
}

/// The events of one step.
pub type Events = heapless::Vec<NodeEvent, MAX_EVENTS_PER_STEP>;

/// Pushes an event, keeping the first ones if a step ever produced more than fit
/// (it cannot with the built-in classes; a test checks the worst case).
pub(crate) fn push(events: &mut Events, e: NodeEvent) {
    let _ = events.push(e);
}

/// One code's raise/clear state on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alarm {
    code: EventCode,
    active: bool,
    held: Held,
}

impl Alarm {
    /// An inactive alarm for `code`.
    #[must_use]
    pub const fn new(code: EventCode) -> Self {
        Alarm {
            code,
            active: false,
            held: Held::new(),
        }
    }

    /// Whether the code is raised.
    #[must_use]
    pub const fn active(&self) -> bool {
        self.active
    }

    /// The code.
    #[must_use]
    pub const fn code(&self) -> EventCode {
        self.code
    }

    /// Feeds the condition: raises once it has held `hold_ms`, clears as soon as
    /// it is false. Returns the transition, if any.
    pub fn update(&mut self, cond: bool, hold_ms: u64, now: Millis) -> Option<NodeEvent> {
        let raise = self.held.update(cond, hold_ms, now);
        if raise && !self.active {
            self.active = true;
            return Some(NodeEvent::new(self.code, true));
        }
        if !cond && self.active {
            self.active = false;
            return Some(NodeEvent::new(self.code, false));
        }
        None
    }
}

/// The still-raised codes among `alarms`, as events to resend after a reconnect.
pub fn raised<'a>(alarms: impl IntoIterator<Item = &'a Alarm>) -> Events {
    let mut events = Events::new();
    for a in alarms.into_iter().filter(|a| a.active()) {
        push(&mut events, NodeEvent::new(a.code(), true));
    }
    events
}
