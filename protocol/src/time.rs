//! The one timestamp type of the protocol.

use core::fmt;
use core::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC), as on the wire (`ts`).
///
/// One concrete type everywhere, so a device time can never be confused with
/// seconds or with a monotonic reading. Device clocks can be wrong or unset:
/// whether a timestamp is believable is the gateway's judgement, not this type's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, also what a node with an unset clock reports.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp from milliseconds since the Unix epoch.
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This time plus a duration, saturating instead of overflowing.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this time is; `None` if it is before it.
    #[must_use]
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        let ms = self.0.checked_sub(earlier.0)?;
        u64::try_from(ms).ok().map(Duration::from_millis)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
