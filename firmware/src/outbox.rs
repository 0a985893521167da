//! Store-and-forward: encoded messages wait here until the broker has them.
//!
//! A fixed byte buffer holds the payloads back to back, oldest first, with a
//! fixed-size index beside it. When a new message does not fit, telemetry is
//! dropped oldest-first before any event; only a buffer full of events drops
//! its oldest event. Every drop is counted, and the counts go to the gateway
//! after the next `birth` (`dropped_telemetry`, `dropped_events`).
//!
//! Dropping from the middle moves the bytes after it down: at most a few KiB
//! of `memmove` on an overflow, which is rare, instead of a fragmented ring.

use protocol::Kind;

/// How important a buffered message is when space runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Events and acks: kept over any telemetry.
    Event,
    /// Samples: the first to go.
    Telemetry,
}

/// One buffered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The topic kind to publish it on.
    pub kind: Kind,
    /// Payload length.
    pub len: u16,
    /// Drop order.
    pub priority: Priority,
    /// The link went down after it was queued: publish it marked `hist: true`.
    pub replay: bool,
}

/// The drop counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Telemetry dropped since boot.
    pub telemetry: u32,
    /// Events dropped since boot.
    pub events: u32,
}

/// A store-and-forward buffer of `BYTES` bytes and at most `SLOTS` messages.
#[derive(Clone, Debug)]
pub struct Outbox<const BYTES: usize, const SLOTS: usize> {
    data: [u8; BYTES],
    used: usize,
    entries: heapless::Deque<Entry, SLOTS>,
    dropped: Dropped,
}

impl<const BYTES: usize, const SLOTS: usize> Default for Outbox<BYTES, SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize, const SLOTS: usize> Outbox<BYTES, SLOTS> {
    /// An empty buffer.
    #[must_use]
    pub const fn new() -> Self {
        Outbox {
            data: [0; BYTES],
            used: 0,
            entries: heapless::Deque::new(),
            dropped: Dropped {
                telemetry: 0,
                events: 0,
            },
        }
    }

    /// Queues a payload, dropping per the policy if it does not fit. `replay`
    /// marks a message queued while the link is down. Returns whether it was
    /// queued (a payload larger than the whole buffer never is).
    pub fn push(&mut self, kind: Kind, payload: &[u8], priority: Priority, replay: bool) -> bool {
        let Ok(len) = u16::try_from(payload.len()) else {
            self.count(priority);
            return false;
        };
        if payload.len() > BYTES {
            self.count(priority);
            return false;
        }
        while self.used + payload.len() > BYTES || self.entries.is_full() {
            let victim = self.entries.iter().position(|e| e.priority == Priority::Telemetry);
            match (victim, priority) {
                (Some(i), _) => self.remove(i),
                (None, Priority::Telemetry) => {
                    self.count(Priority::Telemetry);
                    return false;
                }
                (None, Priority::Event) => self.remove(0),
            }
        }
        self.data[self.used..self.used + payload.len()].copy_from_slice(payload);
        self.used += payload.len();
        // Cannot fail: the loop made room.
        let _ = self.entries.push_back(Entry {
            kind,
            len,
            priority,
            replay,
        });
        true
    }

    fn count(&mut self, priority: Priority) {
        match priority {
            Priority::Telemetry => self.dropped.telemetry = self.dropped.telemetry.saturating_add(1),
            Priority::Event => self.dropped.events = self.dropped.events.saturating_add(1),
        }
    }

    /// Drops entry `i`, counting it.
    fn remove(&mut self, i: usize) {
        let Some(&e) = self.entries.iter().nth(i) else { return };
        let start: usize = self.entries.iter().take(i).map(|e| usize::from(e.len)).sum();
        let end = start + usize::from(e.len);
        self.data.copy_within(end..self.used, start);
        self.used -= usize::from(e.len);
        self.count(e.priority);
        // Rotate the victim to the front and pop it, keeping the others' order.
        let mut kept: heapless::Deque<Entry, SLOTS> = heapless::Deque::new();
        for (j, x) in self.entries.iter().enumerate() {
            if j != i {
                let _ = kept.push_back(*x);
            }
        }
        self.entries = kept;
    }

    /// The oldest message, without removing it.
    #[must_use]
    pub fn front(&self) -> Option<(Entry, &[u8])> {
        let e = *self.entries.front()?;
        Some((e, &self.data[..usize::from(e.len)]))
    }

    /// Removes the oldest message: call once the broker has it (PUBACK for
    /// QoS 1, written to the socket for QoS 0).
    pub fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            let len = usize::from(e.len);
            self.data.copy_within(len..self.used, 0);
            self.used -= len;
        }
    }

    /// The link went down: everything still queued will be a replay.
    pub fn mark_all_replay(&mut self) {
        for e in &mut self.entries {
            e.replay = true;
        }
    }

    /// Messages queued.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of payload queued.
    #[must_use]
    pub fn bytes_used(&self) -> usize {
        self.used
    }

    /// Drops since boot.
    #[must_use]
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// The queued entries, oldest first (for tests and diagnostics).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}
