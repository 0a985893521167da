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
//! first. A batch holding an event, a birth or a death (the priority lane)
//! closes as soon as no more of those wait, without waiting for telemetry to
//! fill it: a fire alarm taken into a batch waits for the messages already in
//! it and one commit, never for the window.
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
    /// It holds a message of the priority lane.
    urgent: bool,
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
            urgent: false,
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
    /// with its acknowledgement (none for QoS 0 and polled messages).
    pub fn add(&mut self, now: Instant, received_ms: i64, ack: Option<A>) {
        self.started.get_or_insert(now);
        self.received.push(received_ms);
        self.acks.extend(ack);
    }

    /// The time-series copy of what the batch holds, released with it: the
    /// pipeline writes a message's lines here as it takes the message.
    pub fn lines_mut(&mut self) -> &mut Vec<L> {
        &mut self.lines
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

    /// The message just added came by the priority lane (an event, a
    /// birth, a death): the batch closes once no more of those wait.
    pub fn mark_urgent(&mut self) {
        self.urgent = true;
    }

    /// Whether it holds a message of the priority lane (its commit should
    /// be as short as it can be: no inbox compaction in it).
    #[must_use]
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    /// Whether the batch should be committed now although more messages are
    /// queued: it is full, or has been open for [`WINDOW`], or holds a
    /// priority message and no other waits (`priority_waiting`), and a
    /// failed store is not being waited out.
    #[must_use]
    pub fn due(&self, now: Instant, priority_waiting: bool) -> bool {
        let closed = self.len() >= MAX_MESSAGES
            || self.started.is_some_and(|s| now.duration_since(s) >= WINDOW)
            || (self.urgent && !priority_waiting);
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
        self.urgent = false;
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
        assert!(!b.due(t0, false), "an empty batch is never due");
        b.add(t0, 0, Some(1));
        assert!(!b.due(t0 + ms(4), false));
        assert!(b.due(t0 + WINDOW, false));
        let mut full: Batch<u16, ()> = Batch::new();
        for i in 0..MAX_MESSAGES {
            full.add(t0, 0, None);
            assert_eq!(full.due(t0, false), i + 1 == MAX_MESSAGES);
        }
    }

    #[test]
    fn an_alarm_closes_its_batch_once_no_other_waits() {
        let t0 = Instant::now();
        let mut b: Batch<u16, ()> = Batch::new();
        b.add(t0, 0, None);
        b.add(t0, 0, Some(1));
        b.mark_urgent();
        assert!(!b.due(t0, true), "more events wait: they join this commit");
        assert!(
            b.due(t0, false),
            "no other event waits: commit now, not after the window"
        );
        let _ = b.committed();
        b.add(t0, 0, None);
        assert!(!b.due(t0, false), "the next batch is plain telemetry again");
        // A failing store is still waited out.
        b.mark_urgent();
        let _ = b.failed(t0);
        assert!(!b.due(t0, false));
    }

    #[test]
    fn a_commit_releases_acks_in_the_order_taken_and_empties_the_batch() {
        let t0 = Instant::now();
        let mut b: Batch<u16, &str> = Batch::new();
        b.add(t0, 10, Some(7));
        b.lines_mut().push("a");
        b.add(t0, 11, None);
        b.add(t0, 12, Some(3));
        b.lines_mut().extend(["b", "c"]);
        let r = b.committed();
        assert_eq!(r.acks, vec![7, 3]);
        assert_eq!(r.received, vec![10, 11, 12]);
        assert_eq!(r.lines, vec!["a", "b", "c"]);
        assert!(b.is_empty());
        assert!(!b.due(t0 + ms(100), false));
    }

    #[test]
    fn a_failed_commit_keeps_everything_and_backs_off_doubling_to_a_bound() {
        let t0 = Instant::now();
        let mut b: Batch<u16, ()> = Batch::new();
        b.add(t0, 0, Some(1));
        let waits: Vec<Duration> = (0..10).map(|_| b.failed(t0)).collect();
        assert_eq!(&waits[..4], &[ms(50), ms(100), ms(200), ms(400)]);
        assert_eq!(waits[9], MAX_RETRY);
        assert_eq!(b.failures(), 10);
        assert!(!b.may_try(t0 + ms(4999)));
        assert!(b.may_try(t0 + MAX_RETRY));
        assert!(
            !b.due(t0 + ms(10), false),
            "a full or old batch still waits out the back-off"
        );
        let r = b.committed();
        assert_eq!(r.acks, vec![1], "nothing was lost by the failures");
        assert_eq!(b.failures(), 0);
        assert_eq!(b.retry_at(), None);
    }
}
