//! The outbox: accepts deliveries without blocking, runs attempts through
//! the channels with bounded concurrency, retries with backoff, and reports
//! exactly one outcome per (delivery, channel).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::{Channel, Contact, Message};

/// How often and how patiently a failed delivery is retried.
///
/// Exponential (×2 per attempt, capped at `max`) so a receiver that is down
/// for a minute is not hammered, while one that blinked is retried within
/// seconds. There is no jitter: notifications are few, and a fixed schedule
/// is easier to read back from the records. The defaults (6 attempts, 2 s
/// first, 5 min cap) wait 2+4+8+16+32 s: about a minute before a dead letter,
/// short enough that a person can still be reached another way in time.
///
/// In configuration: `{ attempts = 6, first = "2s", max = "5m" }`, each
/// field optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 is taken as 1).
    pub attempts: u32,
    /// The wait after the first failed attempt.
    #[serde(deserialize_with = "crate::serde_duration::deserialize")]
    pub first: Duration,
    /// The longest wait between two attempts.
    #[serde(deserialize_with = "crate::serde_duration::deserialize")]
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 6,
            first: Duration::from_secs(2),
            max: Duration::from_mins(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based):
    /// `first · 2^(attempt-1)`, at most `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// One message for one contact: the unit the outbox accepts and reports on.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Who is told.
    pub to: Contact,
    /// What they are told.
    pub msg: Message,
    /// What an earlier run already reached (see [`Outcome::reached`]): a
    /// channel named here is not sent again, and the rest is handed to the
    /// channel's [`Channel::resume`]. Empty for a new delivery.
    pub reached: Vec<String>,
}

impl Delivery {
    /// A new delivery, nothing reached yet.
    #[must_use]
    pub fn new(to: Contact, msg: Message) -> Delivery {
        Delivery {
            to,
            msg,
            reached: Vec::new(),
        }
    }
}

/// How one delivery went on one channel: what the gateway writes as a
/// supervision record and counts in metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The message id (`Message::id`).
    pub id: String,
    /// The contact id.
    pub to: String,
    /// The message kind (`Message::kind`).
    pub kind: String,
    /// The channel (`Channel::name`), or `"none"` when no channel reaches
    /// the contact.
    pub channel: &'static str,
    /// Attempts made (0 when none could start before shutdown, or no channel
    /// applied).
    pub attempts: u32,
    /// `Ok` when delivered; `Err` is a dead letter carrying the last error
    /// (or `"shutdown: …"`, `"no channel reaches …"`).
    pub result: Result<(), String>,
    /// Whether this is the delivery's last outcome (every channel that
    /// reaches the contact has reported): a caller that keeps deliveries
    /// on disk forgets one here.
    pub last: bool,
    /// What this channel reached, for a caller that keeps an interrupted
    /// delivery for its next start ([`Delivery::reached`]): the channel's
    /// name once delivered, and what [`Channel::progress`] says when cut
    /// off part-way (the numbers an SMS already got through to).
    pub reached: Vec<String>,
}

impl Outcome {
    /// Whether the delivery was cut off by shutdown (or the task's end)
    /// rather than refused or given up on: a caller that keeps deliveries on
    /// disk sends it again after its restart instead of recording a dead letter.
    #[must_use]
    pub fn interrupted(&self) -> bool {
        matches!(&self.result, Err(e) if e.starts_with(SHUTDOWN))
    }
}

/// How an interrupted delivery's error begins.
const SHUTDOWN: &str = "shutdown: ";

/// Why [`Outbox::submit`] did not take a delivery. Both give the delivery
/// back (boxed, it is a few hundred bytes) so the caller can count it and
/// record it as a dead letter itself: a refused notification is never lost
/// silently.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// `capacity` deliveries are already queued or in progress.
    #[error("notification outbox is full")]
    Full(Box<Delivery>),
    /// The outbox was closed (or its task has ended).
    #[error("notification outbox is closed")]
    Closed(Box<Delivery>),
}

impl SubmitError {
    /// The delivery that was not taken.
    pub fn into_delivery(self) -> Delivery {
        match self {
            SubmitError::Full(d) | SubmitError::Closed(d) => *d,
        }
    }
}

/// Where the outbox is in its life; every job watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Taking deliveries.
    Running,
    /// Closed: no new deliveries; accepted work continues until the deadline.
    Draining(Instant),
    /// The grace is over: every unfinished job reports a shutdown outcome now.
    Cancelled,
}

/// State shared by the handles and the task; holds no sender, so the task
/// sees the queue end when the last handle is dropped.
struct Core {
    /// Deliveries accepted and not yet fully reported.
    pending: AtomicUsize,
    closed: AtomicBool,
    phase: watch::Sender<Phase>,
}

struct Handle {
    tx: mpsc::UnboundedSender<Delivery>,
    core: Arc<Core>,
    capacity: usize,
}

/// A cheap `Clone` handle on the delivery task.
///
/// `capacity` bounds the deliveries accepted and not yet finished (queued,
/// being attempted or waiting for a retry): memory stays bounded however long
/// a receiver is down, and a full outbox is the caller's signal, not a wait.
/// Dropping every handle without [`Outbox::close`] lets the task finish all
/// accepted work with full retries, then end.
#[derive(Clone)]
pub struct Outbox {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("pending", &self.pending())
            .field("capacity", &self.handle.capacity)
            .field("closed", &self.handle.core.closed.load(Ordering::Acquire))
            .finish()
    }
}

impl Outbox {
    /// Spawns the delivery task on the current tokio runtime.
    ///
    /// `capacity` bounds the queue (deliveries accepted and unfinished);
    /// `concurrency` bounds simultaneous attempts across all channels, so
    /// one slow webhook holds one permit and never the others (a delivery
    /// waiting for its retry holds none). Both are taken as at least 1.
    /// Returns the handle, the stream of outcomes (unbounded: at most
    /// `capacity` × channels outcomes are ever outstanding per batch, and
    /// the gateway must not lose them) and the task, which ends after
    /// [`Outbox::close`] (or the last handle's drop) once everything is
    /// reported.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(
        channels: Vec<Arc<dyn Channel>>,
        policy: RetryPolicy,
        capacity: usize,
        concurrency: usize,
    ) -> (Outbox, mpsc::UnboundedReceiver<Outcome>, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            pending: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            phase: watch::Sender::new(Phase::Running),
        });
        let worker = Worker {
            channels: channels.into(),
            policy,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            outcomes: outcomes_tx,
            core: Arc::clone(&core),
        };
        let task = tokio::spawn(worker.run(rx));
        let outbox = Outbox {
            handle: Arc::new(Handle {
                tx,
                core,
                capacity: capacity.max(1),
            }),
        };
        (outbox, outcomes_rx, task)
    }

    /// Hands a delivery to the task. Never blocks and needs no runtime, so
    /// the gateway's synchronous pipeline thread calls it directly.
    ///
    /// # Errors
    /// [`SubmitError::Full`] when `capacity` deliveries are unfinished,
    /// [`SubmitError::Closed`] after [`Outbox::close`] or when the task has
    /// ended; both give the delivery back.
    pub fn submit(&self, d: Delivery) -> Result<(), SubmitError> {
        let core = &self.handle.core;
        if core.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed(Box::new(d)));
        }
        let capacity = self.handle.capacity;
        if core
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1))
            .is_err()
        {
            return Err(SubmitError::Full(Box::new(d)));
        }
        // Once the task has started draining it closes the queue, so a
        // submit racing `close` either lands before (and is worked off) or
        // comes back here: never accepted and forgotten.
        self.handle.tx.send(d).map_err(|e| {
            core.pending.fetch_sub(1, Ordering::AcqRel);
            SubmitError::Closed(Box::new(e.0))
        })
    }

    /// Stops taking new deliveries and returns at once (callable from any
    /// thread). The task keeps working on what it has (first attempts and
    /// retries due) for `grace`; when the grace ends, or earlier for a retry
    /// that would fall after it, every unfinished delivery is reported as an
    /// [`Outcome`] with `Err("shutdown: …")`, and the task ends. Await the
    /// task's `JoinHandle` to know the last outcome has been sent. A second
    /// call changes nothing.
    pub fn close(&self, grace: Duration) {
        let core = &self.handle.core;
        core.closed.store(true, Ordering::Release);
        let deadline = Instant::now().checked_add(grace).unwrap_or_else(far_future);
        core.phase.send_if_modified(|phase| {
            if *phase == Phase::Running {
                *phase = Phase::Draining(deadline);
                true
            } else {
                false
            }
        });
    }

    /// Deliveries queued, being attempted or waiting for a retry (for a
    /// gauge). When the last outcome of a delivery arrives, it is no longer
    /// counted.
    pub fn pending(&self) -> usize {
        self.handle.core.pending.load(Ordering::Acquire)
    }
}

/// About thirty years ahead: a grace too long to add to `now`.
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(1 << 30)).unwrap_or(now)
}

/// The delivery task's side.
struct Worker {
    channels: Arc<[Arc<dyn Channel>]>,
    policy: RetryPolicy,
    permits: Arc<Semaphore>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    core: Arc<Core>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Delivery>) {
        let mut phase = self.core.phase.subscribe();
        let mut jobs = JoinSet::new();
        // Running: take deliveries until closed or every handle is gone.
        let deadline = loop {
            if let Phase::Draining(deadline) = *phase.borrow_and_update() {
                break Some(deadline);
            }
            tokio::select! {
                _ = phase.changed() => {}
                d = rx.recv() => match d {
                    Some(d) => self.dispatch(d, &mut jobs),
                    None => break None,
                },
                Some(joined) = jobs.join_next(), if !jobs.is_empty() => log_join(joined),
            }
        };
        // Whatever made it into the queue before it closed is still worked off.
        rx.close();
        while let Some(d) = rx.recv().await {
            self.dispatch(d, &mut jobs);
        }
        if let Some(deadline) = deadline {
            let grace = tokio::time::sleep_until(deadline.into());
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    joined = jobs.join_next() => match joined {
                        Some(joined) => log_join(joined),
                        None => return,
                    },
                    () = &mut grace => break,
                }
            }
            self.core.phase.send_replace(Phase::Cancelled);
        }
        while let Some(joined) = jobs.join_next().await {
            log_join(joined);
        }
    }

    /// Starts one job per channel that reaches the contact.
    fn dispatch(&self, d: Delivery, jobs: &mut JoinSet<()>) {
        let reaching: Vec<Arc<dyn Channel>> = self.channels.iter().filter(|c| c.reaches(&d.to)).cloned().collect();
        if reaching.is_empty() {
            let names: Vec<&str> = self.channels.iter().map(|c| c.name()).collect();
            let reason = format!(
                "no channel reaches contact {} (configured: {})",
                d.to.id,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
            tracing::error!(id = %d.msg.id, to = %d.to.id, kind = %d.msg.kind, "notification dead letter: {reason}");
            return self.ends_at_once(d, Err(reason));
        }
        // A channel an earlier run already delivered on is not sent again;
        // should that leave none (the caller kept a delivery it need not
        // have), its last outcome still comes, so the caller forgets it.
        let reaching: Vec<Arc<dyn Channel>> = reaching
            .into_iter()
            .filter(|c| !d.reached.iter().any(|r| r == c.name()))
            .collect();
        if reaching.is_empty() {
            return self.ends_at_once(d, Ok(()));
        }
        let slot = Arc::new(Slot {
            core: Arc::clone(&self.core),
            remaining: AtomicUsize::new(reaching.len()),
        });
        let d = Arc::new(d);
        for channel in reaching {
            let report = Report {
                id: d.msg.id.clone(),
                to: d.to.id.clone(),
                kind: d.msg.kind.clone(),
                channel: channel.name(),
                attempts: 0,
                last_error: None,
                outcomes: self.outcomes.clone(),
                slot: Some(Arc::clone(&slot)),
                sent: false,
                channel_ref: Arc::clone(&channel),
            };
            if !d.reached.is_empty() {
                channel.resume(&d.msg.id, &d.reached);
            }
            let job = Job {
                channel,
                delivery: Arc::clone(&d),
                policy: self.policy,
                permits: Arc::clone(&self.permits),
                phase: self.core.phase.subscribe(),
            };
            jobs.spawn(job.run(report));
        }
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        // The job's Report has already sent an outcome from its Drop.
        tracing::error!("notification job failed: {e}");
    }
}

impl Worker {
    /// A delivery with no job to run: its one outcome (channel `none`) at
    /// once, and its place in `pending` given back.
    fn ends_at_once(&self, d: Delivery, result: Result<(), String>) {
        // What a Slot's drop would do.
        self.core.pending.fetch_sub(1, Ordering::AcqRel);
        let _ = self.outcomes.send(Outcome {
            id: d.msg.id,
            to: d.to.id,
            kind: d.msg.kind,
            channel: "none",
            attempts: 0,
            reached: if result.is_ok() { d.reached } else { Vec::new() },
            result,
            last: true,
        });
    }
}

/// One accepted delivery's place in `pending`: released when the last of its
/// jobs lets go, just before that job's outcome is sent. `remaining` counts
/// the jobs still to report, so exactly one outcome is marked the last.
struct Slot {
    core: Arc<Core>,
    remaining: AtomicUsize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.core.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The outcome of one job in the making. If the job ends without finishing
/// it (its task is aborted, a channel panics, the runtime shuts down), Drop
/// reports it, so nothing accepted vanishes without an outcome.
struct Report {
    id: String,
    to: String,
    kind: String,
    channel: &'static str,
    attempts: u32,
    last_error: Option<String>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    slot: Option<Arc<Slot>>,
    sent: bool,
    /// Asked what it reached when the job ends undelivered.
    channel_ref: Arc<dyn Channel>,
}

impl Report {
    fn send(&mut self, result: Result<(), String>) {
        if self.sent {
            return;
        }
        self.sent = true;
        let last = self
            .slot
            .take()
            .is_none_or(|s| s.remaining.fetch_sub(1, Ordering::AcqRel) == 1);
        let reached = if result.is_ok() {
            vec![self.channel.to_owned()]
        } else {
            self.channel_ref.progress(&self.id)
        };
        let _ = self.outcomes.send(Outcome {
            id: std::mem::take(&mut self.id),
            to: std::mem::take(&mut self.to),
            kind: std::mem::take(&mut self.kind),
            channel: self.channel,
            attempts: self.attempts,
            result,
            last,
            reached,
        });
    }

    fn delivered(mut self) {
        if self.attempts > 1 {
            tracing::info!(id = %self.id, to = %self.to, kind = %self.kind, channel = self.channel,
                attempts = self.attempts, "notification delivered after retries");
        }
        self.send(Ok(()));
    }

    fn dead_letter(mut self, error: String) {
        tracing::error!(id = %self.id, to = %self.to, kind = %self.kind, channel = self.channel,
            attempts = self.attempts, error = %error, "notification dead letter");
        self.send(Err(error));
    }

    /// Cut off by shutdown while `doing`.
    fn shutdown(mut self, doing: &str) {
        let reason = match &self.last_error {
            Some(last) => format!("{SHUTDOWN}{doing} after {} attempts, last error: {last}", self.attempts),
            None => format!("{SHUTDOWN}{doing}"),
        };
        tracing::error!(id = %self.id, to = %self.to, kind = %self.kind, channel = self.channel,
            attempts = self.attempts, error = %reason, "notification dead letter");
        self.send(Err(reason));
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.sent {
            let why = if std::thread::panicking() {
                "the channel panicked"
            } else {
                "shutdown: delivery task stopped"
            };
            let reason = match &self.last_error {
                Some(last) => format!("{why}; last error: {last}"),
                None => why.to_owned(),
            };
            self.send(Err(reason));
        }
    }
}

/// One delivery on one channel, from first attempt to outcome.
struct Job {
    channel: Arc<dyn Channel>,
    delivery: Arc<Delivery>,
    policy: RetryPolicy,
    permits: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
}

impl Job {
    async fn run(mut self, mut report: Report) {
        let attempts = self.policy.attempts.max(1);
        loop {
            // Cancellation wins every tie: once the grace is over no new
            // attempt starts, even if a permit happens to be free.
            let permit = tokio::select! {
                biased;
                () = cancelled(&mut self.phase) => None,
                p = Arc::clone(&self.permits).acquire_owned() => p.ok(),
            };
            let Some(permit) = permit.filter(|_| *self.phase.borrow() != Phase::Cancelled) else {
                let doing = if report.attempts == 0 {
                    "not attempted"
                } else {
                    "waiting for a send slot"
                };
                return report.shutdown(doing);
            };
            report.attempts += 1;
            let result = tokio::select! {
                biased;
                () = cancelled(&mut self.phase) => return report.shutdown("attempt cut off"),
                r = self.channel.send(&self.delivery.to, &self.delivery.msg) => r,
            };
            drop(permit);
            let error = match result {
                Ok(()) => return report.delivered(),
                Err(e) if !e.retryable => return report.dead_letter(e.message),
                Err(e) if report.attempts >= attempts => return report.dead_letter(e.message),
                Err(e) => e.message,
            };
            let wait = self.policy.delay(report.attempts);
            tracing::warn!(id = %report.id, to = %report.to, kind = %report.kind, channel = report.channel,
                attempt = report.attempts, of = attempts, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error, "notification attempt failed, will retry");
            report.last_error = Some(error);
            let wake = Instant::now().checked_add(wait).unwrap_or_else(far_future);
            if !self.backoff(wake).await {
                return report.shutdown("retry not due before the shutdown deadline");
            }
        }
    }

    /// Waits until `wake`; false when shutdown makes the next attempt
    /// impossible (cancelled, or due after the grace ends).
    async fn backoff(&mut self, wake: Instant) -> bool {
        loop {
            match *self.phase.borrow_and_update() {
                Phase::Cancelled => return false,
                Phase::Draining(deadline) if wake > deadline => return false,
                _ => {}
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => return true,
                changed = self.phase.changed() => if changed.is_err() { return false },
            }
        }
    }
}

/// Resolves once the grace is over (or the outbox is gone).
async fn cancelled(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Cancelled).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (1..=9).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(p.delay(200), Duration::from_mins(5));
    }

    #[test]
    fn policy_from_config() {
        let p: RetryPolicy = serde_json::from_str(r#"{"first":"100ms"}"#).unwrap();
        assert_eq!(p.first, Duration::from_millis(100));
        assert_eq!(p.attempts, 6);
        assert_eq!(p.max, Duration::from_mins(5));
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"tries":3}"#).is_err());
    }
}
