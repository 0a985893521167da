//! Time-based debouncing and "held for" timing, the two pieces of timing every
//! detection is built from. Both are fed `now`; neither reads a clock.

use crate::hal::Millis;

/// A digital signal that changes state only after the raw input has been
/// stable for `stable_ms`: contact bounce and one-sample glitches never reach
/// the detections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debouncer {
    stable_ms: u32,
    state: bool,
    candidate: bool,
    since: Millis,
}

impl Debouncer {
    /// A debouncer starting in `initial`.
    #[must_use]
    pub const fn new(stable_ms: u32, initial: bool) -> Self {
        Debouncer {
            stable_ms,
            state: initial,
            candidate: initial,
            since: Millis(0),
        }
    }

    /// Feeds one raw sample; returns the debounced state.
    pub fn update(&mut self, raw: bool, now: Millis) -> bool {
        if raw != self.candidate {
            self.candidate = raw;
            self.since = now;
        }
        if self.candidate != self.state && now.since(self.since) >= u64::from(self.stable_ms) {
            self.state = self.candidate;
        }
        self.state
    }

    /// The debounced state.
    #[must_use]
    pub const fn state(&self) -> bool {
        self.state
    }
}

/// How long a condition has been continuously true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    since: Option<Millis>,
}

impl Held {
    /// A timer whose condition has not held yet.
    #[must_use]
    pub const fn new() -> Self {
        Held { since: None }
    }

    /// Feeds the condition; returns whether it has now held for at least `ms`.
    pub fn update(&mut self, cond: bool, ms: u64, now: Millis) -> bool {
        if !cond {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        now.since(since) >= ms
    }

    /// Milliseconds the condition has held, 0 if it is false.
    #[must_use]
    pub fn held_ms(&self, now: Millis) -> u64 {
        self.since.map_or(0, |s| now.since(s))
    }
}
