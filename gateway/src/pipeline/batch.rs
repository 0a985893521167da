//! The pipeline's group commit: which messages wait for the next
//! transaction, when that transaction is due, and when a failed one is tried
//! again.
//!
//! A QoS 1 message is acknowledged only once everything it caused (its
//! samples, the registry state it moved, the alert change, the work order,
//! the record) is committed. One transaction per message would cost one
//! `fsync` per message (`synchronous = FULL`, so that an acknowledgement
//! survives a power cut); one per batch shares it. A batch closes when the
//! lanes are empty (the usual case: no waiting at all), when it holds
//! [`MAX_MESSAGES`], or [`WINDOW`] after its first message, whichever comes
//! first, so a fire alarm taken into a batch waits at most a few
//! milliseconds plus one commit.
//!
//! ```text
//! lanes ──► judge, stage ──► batch ──(empty lanes | 1024 | 5 ms)──► COMMIT ──► PUBACKs, stream, InfluxDB
//!                               ▲                                      │ failed
//!                               └──── kept, tried again after 50 ms … 5 s (doubling)
//! ```
//!
//! Pure: it is told the time, and holds the acknowledgements as opaque
//! values, so the schedule is tested without a store or a broker.

use std::time::{Duration, Instant};

/// Messages in one transaction at most.
pub const MAX_MESSAGES: usize = 1024;
/// How long a batch stays open after its first message at most.
pub const WINDOW: Duration = Duration::from_millis(5);
/// The first wait after a failed commit; doubled after each further failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest wait between two tries of a failing store.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// What waits for the next commit, besides what the ledger stages.
#[derive(Debug)]
pub struct Batch<A, L> {
    acks: Vec<A>,
    received: Vec<i64>,
    lines: Vec<L>,
    started: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl<A, L> Default for Batch<A, L> {
    fn default() -> Self {
        Batch {
            acks: Vec::new(),
            received: Vec::new(),
            lines: Vec::new(),
            started: None,
            failures: 0,
            retry_at: None,
        }
    }
}

/// What a successful commit releases.
#[derive(Debug, PartialEq)]
pub struct Released<A, L> {
    /// The acknowledgements, in the order the messages were taken.
    pub acks: Vec<A>,
    /// When each message of the batch was received (ms), for the pipeline latency.
    pub received: Vec<i64>,
    /// The lines for the time-series copy.
    pub lines: Vec<L>,
}

impl<A, L> Batch<A, L> {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A message taken into the batch at `now`, received at `received_ms`,
    /// with its acknowledgement (none for QoS 0 and polled messages) and its
    /// time-series lines.
    pub fn add(&mut self, now: Instant, received_ms: i64, ack: Option<A>, lines: impl IntoIterator<Item = L>) {
        self.started.get_or_insert(now);
        self.received.push(received_ms);
        self.acks.extend(ack);
        self.lines.extend(lines);
    }

    /// Messages waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.received.len()
    }

    /// Whether no message waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// Whether the batch should be committed now although more messages are
    /// queued: it is full or has been open for [`WINDOW`], and a failed
    /// store is not being waited out.
    #[must_use]
    pub fn due(&self, now: Instant) -> bool {
        let closed = self.len() >= MAX_MESSAGES || self.started.is_some_and(|s| now.duration_since(s) >= WINDOW);
        closed && self.may_try(now)
    }

    /// Whether a commit may be tried at `now` (no failed one is being waited out).
    #[must_use]
    pub fn may_try(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// When the next try of a failing store is due, if one failed.
    #[must_use]
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Commits that failed in a row.
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The commit succeeded: everything waiting is released and the batch starts empty.
    pub fn committed(&mut self) -> Released<A, L> {
        self.started = None;
        self.failures = 0;
        self.retry_at = None;
        Released {
            acks: std::mem::take(&mut self.acks),
            received: std::mem::take(&mut self.received),
            lines: std::mem::take(&mut self.lines),
        }
    }

    /// The commit failed at `now`: everything stays, and the next try waits
    /// [`FIRST_RETRY`], doubled per failure up to [`MAX_RETRY`]. Returns the wait.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let wait = FIRST_RETRY.saturating_mul(1u32 << self.failures.min(16)).min(MAX_RETRY);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + wait);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_batch_closes_when_full_or_after_its_window() {
        let t0 = Instant::now();
        let mut b: Batch<u16, ()> = Batch::new();
        assert!(!b.due(t0), "an empty batch is never due");
        b.add(t0, 0, Some(1), []);
        assert!(!b.due(t0 + ms(4)));
        assert!(b.due(t0 + WINDOW));
        let mut full: Batch<u16, ()> = Batch::new();
        for i in 0..MAX_MESSAGES {
            full.add(t0, 0, None, []);
            assert_eq!(full.due(t0), i + 1 == MAX_MESSAGES);
        }
    }

    #[test]
    fn a_commit_releases_acks_in_the_order_taken_and_empties_the_batch() {
        let t0 = Instant::now();
        let mut b: Batch<u16, &str> = Batch::new();
        b.add(t0, 10, Some(7), ["a"]);
        b.add(t0, 11, None, []);
        b.add(t0, 12, Some(3), ["b", "c"]);
        let r = b.committed();
        assert_eq!(r.acks, vec![7, 3]);
        assert_eq!(r.received, vec![10, 11, 12]);
        assert_eq!(r.lines, vec!["a", "b", "c"]);
        assert!(b.is_empty());
        assert!(!b.due(t0 + ms(100)));
    }

    #[test]
    fn a_failed_commit_keeps_everything_and_backs_off_doubling_to_a_bound() {
        let t0 = Instant::now();
        let mut b: Batch<u16, ()> = Batch::new();
        b.add(t0, 0, Some(1), []);
        let waits: Vec<Duration> = (0..10).map(|_| b.failed(t0)).collect();
        assert_eq!(&waits[..4], &[ms(50), ms(100), ms(200), ms(400)]);
        assert_eq!(waits[9], MAX_RETRY);
        assert_eq!(b.failures(), 10);
        assert!(!b.may_try(t0 + ms(4999)));
        assert!(b.may_try(t0 + MAX_RETRY));
        assert!(!b.due(t0 + ms(10)), "a full or old batch still waits out the back-off");
        let r = b.committed();
        assert_eq!(r.acks, vec![1], "nothing was lost by the failures");
        assert_eq!(b.failures(), 0);
        assert_eq!(b.retry_at(), None);
    }
}
