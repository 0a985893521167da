//! One rule on one device (or port): the state machine that turns a stream
//! of verdicts into inactive, pending and firing.
//!
//! ```text
//!             holds                 held `for` (and `samples`)
//! Inactive ─────────► Pending ───────────────────────────► Firing
//!    ▲                   │ ends                              │ ends (or `clear` holds),
//!    └───────────────────┘                                   │ then `keep_firing_for`
//!    ◄───────────────────────────────────────────────────────┘
//! unknown (missing or stale inputs): nothing moves, nothing resolves
//! not applicable (`applies` false): back to inactive, but a firing one holds
//! ```
//!
//! Values carry their receive time and the time they last changed, so a rule
//! can ask how long a metric has kept its value, and a value older than the
//! device's offline window counts as missing.

use serde::{Deserialize, Serialize};

use crate::expr::{Slot, Values};
use crate::rule::{Compiled, CountRule, Judge};

/// A metric's last value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Val {
    /// The value (flags 0/1); NaN when never seen.
    pub v: f64,
    /// Gateway time it was received; `i64::MAX` for facts from a birth, which
    /// do not go stale.
    pub at: i64,
    /// Gateway time it last changed.
    pub changed: i64,
}

impl Default for Val {
    fn default() -> Self {
        Val {
            v: f64::NAN,
            at: i64::MIN,
            changed: i64::MIN,
        }
    }
}

impl Val {
    /// Takes a new reading.
    pub fn set(&mut self, v: f64, now: i64) {
        if !(self.v == v) {
            self.changed = now;
        }
        self.v = v;
        self.at = now;
    }
}

/// Where an instance stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The condition does not hold.
    #[default]
    Inactive,
    /// It holds, not yet for long enough.
    Pending,
    /// It fires.
    Firing,
}

/// Extra state of `rate()` and `count` rules (boxed in [`Inst`]: most
/// rules need none, and an instance stays 32 bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Aux {
    /// The start of the current rate span, and the last rate computed.
    Rate {
        /// Span start time.
        t: i64,
        /// Value at the span start (none yet).
        v: Option<f64>,
        /// Change per second over the last complete span.
        rate: Option<f64>,
    },
    /// Recent rising edges of the counted condition.
    Count {
        /// Edge times, oldest first (at most `at_least`).
        edges: Vec<i64>,
        /// The counted condition at the last sample.
        prev: Option<bool>,
    },
}

/// One rule instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inst {
    /// Where it stands.
    pub phase: Phase,
    /// Consecutive samples the condition held in.
    pub streak: u16,
    /// Whether the last verdict was known.
    pub known: bool,
    /// Pending since, or firing since.
    pub since: i64,
    /// When the condition last held (for `keep_firing_for`).
    pub last_active: i64,
    /// Rate or count state.
    pub aux: Option<Box<Aux>>,
}

/// What an instance reads: the device's and the port's values, the clock,
/// and the window after which a value counts as missing.
pub struct Ctx<'a> {
    /// Device values by slot.
    pub dev: &'a [Val],
    /// Port values by slot (empty for device rules).
    pub port: &'a [Val],
    /// Gateway time.
    pub now: i64,
    /// Values this old or older are missing (the device's offline window:
    /// a value goes stale exactly when silence makes its device offline).
    pub stale_ms: i64,
    /// The device is known dead: every value is missing.
    pub dead: bool,
    /// The rule's rate, once computed.
    pub rate: Option<f64>,
}

impl Ctx<'_> {
    fn val(&self, slot: Slot) -> Option<&Val> {
        if self.dead {
            return None;
        }
        let v = match slot {
            Slot::Device(i) => self.dev.get(usize::from(i)),
            Slot::Port(i) => self.port.get(usize::from(i)),
        }?;
        (!v.v.is_nan() && (v.at == i64::MAX || self.now.saturating_sub(v.at) < self.stale_ms)).then_some(v)
    }
}

impl Values for Ctx<'_> {
    fn get(&self, slot: Slot) -> Option<f64> {
        self.val(slot).map(|v| v.v)
    }

    fn rate(&self) -> Option<f64> {
        self.rate
    }

    fn since_change(&self, slot: Slot) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        self.val(slot)
            .map(|v| (self.now.saturating_sub(v.changed)).max(0) as f64 / 1000.0)
    }
}

impl Inst {
    /// Whether it needs the clock (a pending `for`, a running
    /// `keep_firing_for`, counted edges that will expire).
    #[must_use]
    pub fn busy(&self) -> bool {
        self.phase != Phase::Inactive
            || matches!(self.aux.as_deref(), Some(Aux::Count { edges, .. }) if !edges.is_empty())
    }

    /// Judges the rule at `now`; `sample` says whether a new sample of the
    /// device arrived (streaks and edges move only on samples; ticks only let
    /// time pass). `offline` is the device's silence verdict, for offline rules.
    pub fn step(&mut self, rule: &Compiled, ctx: &mut Ctx<'_>, sample: bool, offline: Option<bool>) {
        let now = ctx.now;
        let firing = self.phase == Phase::Firing;
        if rule.applies.as_ref().and_then(|a| a.holds(ctx)) == Some(false) {
            self.not_applicable(firing);
            return;
        }
        let verdict = match &rule.judge {
            Judge::Offline { .. } => offline,
            Judge::Condition { when, clear, rate } => {
                if let Some((slot, window)) = rate {
                    ctx.rate = self.rate(*slot, *window, ctx, sample);
                }
                match (firing, clear) {
                    (true, Some(c)) => c.holds(ctx).map(|cleared| !cleared),
                    _ => when.holds(ctx),
                }
            }
            Judge::Count(c) => self.count(c, ctx, sample),
        };
        self.known = verdict.is_some();
        let Some(active) = verdict else { return };
        if sample {
            self.streak = if active { self.streak.saturating_add(1) } else { 0 };
        }
        match (self.phase, active) {
            (Phase::Inactive, true) => {
                self.phase = Phase::Pending;
                self.since = now;
                self.maybe_fire(rule, now);
            }
            (Phase::Pending, true) => self.maybe_fire(rule, now),
            (Phase::Firing, true) => self.last_active = now,
            (Phase::Inactive | Phase::Pending, false) => self.phase = Phase::Inactive,
            (Phase::Firing, false) => {
                if now.saturating_sub(self.last_active) >= rule.keep_ms {
                    self.phase = Phase::Inactive;
                }
            }
        }
    }

    /// The rule does not apply now (`applies` is false: an elevator in
    /// inspection): nothing pending or counted carries over, so a
    /// technician's stops never add up to an alert once the car is back in
    /// service. An alert already firing is held as it is, not resolved: a
    /// passenger trapped before the technician took the car is still
    /// trapped until the rule, applying again, sees otherwise; the work
    /// order follows its own steps either way.
    fn not_applicable(&mut self, firing: bool) {
        self.known = true;
        if firing {
            return;
        }
        self.phase = Phase::Inactive;
        self.streak = 0;
        if let Some(Aux::Count { edges, prev }) = self.aux.as_deref_mut() {
            edges.clear();
            *prev = None;
        }
    }

    fn maybe_fire(&mut self, rule: &Compiled, now: i64) {
        // A streak counts samples, so it is asked for only by rules that need
        // more than one: a condition that becomes true on a tick (silence,
        // a value ageing) fires on its `for` alone.
        let streak_ok = rule.samples <= 1 || u32::from(self.streak) >= rule.samples.min(u32::from(u16::MAX));
        if now.saturating_sub(self.since) >= rule.for_ms && streak_ok {
            self.phase = Phase::Firing;
            self.since = now;
            self.last_active = now;
        }
    }

    /// Change per second over complete spans of `window`: the span restarts
    /// after a gap of three windows without the value.
    fn rate(&mut self, slot: Slot, window: i64, ctx: &Ctx<'_>, sample: bool) -> Option<f64> {
        let current = ctx.get(slot);
        let Some(Aux::Rate { t, v, rate }) = self.aux.as_deref_mut() else {
            self.aux = Some(Box::new(Aux::Rate {
                t: ctx.now,
                v: current,
                rate: None,
            }));
            return None;
        };
        let Some(x) = current else {
            return *rate;
        };
        if !sample {
            return *rate;
        }
        let span = ctx.now.saturating_sub(*t);
        match *v {
            Some(start) if span <= 3 * window => {
                if span >= window {
                    #[allow(clippy::cast_precision_loss)]
                    let r = (x - start) / (span as f64 / 1000.0);
                    (*t, *v, *rate) = (ctx.now, Some(x), Some(r));
                }
            }
            _ => (*t, *v, *rate) = (ctx.now, Some(x), None),
        }
        *rate
    }

    /// Rising edges of `of` within the window, restarted by `reset`.
    fn count(&mut self, c: &CountRule, ctx: &Ctx<'_>, sample: bool) -> Option<bool> {
        if !matches!(self.aux.as_deref(), Some(Aux::Count { .. })) {
            self.aux = Some(Box::new(Aux::Count {
                edges: Vec::new(),
                prev: None,
            }));
        }
        let Some(Aux::Count { edges, prev }) = self.aux.as_deref_mut() else {
            return None;
        };
        // Missing or stale inputs: the count neither grows nor expires into a
        // resolution (silence never resolves).
        let now_holds = c.of.holds(ctx)?;
        if sample {
            if c.reset.as_ref().and_then(|r| r.holds(ctx)) == Some(true) {
                edges.clear();
            }
            if now_holds && *prev == Some(false) {
                if edges.len() >= usize::from(c.at_least) {
                    edges.remove(0);
                }
                edges.push(ctx.now);
            }
            *prev = Some(now_holds);
        }
        edges.retain(|t| ctx.now.saturating_sub(*t) < c.window_ms);
        Some(edges.len() >= usize::from(c.at_least))
    }
}
