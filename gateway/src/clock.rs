//! Whose time the gateway judges by. In service it is the system clock; the
//! HIL simulation runs the whole gateway on a [`ManualClock`] it advances
//! itself (with ticks sent through [`crate::app::run::Running::tick`]), so a
//! day of a compound runs in seconds with the same pipeline, rules, work
//! orders and records as in service.
//!
//! The pipeline's clock never goes back, whichever clock it reads. Tasks that
//! wait for a moment of the gateway's time (the Modbus pollers' schedules)
//! wait through [`Clock::sleep_until`], so on a manual clock they wake when
//! the caller moves time, not when the wall clock would have got there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A wait for a moment of a [`Clock`]'s time, boxed so that it can come from
/// a `dyn Clock`.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now_ms(&self) -> i64;

    /// Resolves once the clock reads `ms` or later (at once if it already
    /// does). The future owns what it needs, so a task can hold it across
    /// other awaits.
    fn sleep_until(&self, ms: i64) -> Sleep;
}

/// The clock of a running gateway, shared by its tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::app::run::now_ms()
    }

    fn sleep_until(&self, ms: i64) -> Sleep {
        // A wall-clock step during the wait is not followed: polls keep their
        // pace (tokio's timer is monotonic) and the next wait re-reads the clock.
        let left = u64::try_from(ms.saturating_sub(self.now_ms())).unwrap_or(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(left)))
    }
}

/// A clock that moves only when told: virtual time. Its value lives in a
/// watch channel, so waiters wake on every move instead of polling it.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<watch::Sender<i64>>);

impl ManualClock {
    /// A clock reading `start_ms`.
    #[must_use]
    pub fn new(start_ms: i64) -> Self {
        ManualClock(Arc::new(watch::Sender::new(start_ms)))
    }

    /// Moves it to `ms` (never back).
    pub fn set(&self, ms: i64) {
        self.0.send_if_modified(|now| {
            let moved = ms > *now;
            if moved {
                *now = ms;
            }
            moved
        });
    }

    /// Moves it on by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.send_if_modified(|now| {
            *now = now.saturating_add(ms.max(0));
            ms > 0
        });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.0.borrow()
    }

    fn sleep_until(&self, ms: i64) -> Sleep {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first; it fails only when
            // every handle on the clock is gone, and then time never comes.
            if rx.wait_for(|now| *now >= ms).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
