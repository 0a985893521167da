//! Readiness (`GET /readyz`): whether the gateway can take a node's message
//! and keep it, and if not, why. Liveness (`/healthz`) only says the process
//! answers; a load balancer or an operator needs to know that a fire alarm
//! sent now would be judged and stored.
//!
//! Pure: the HTTP side reads the gauges and the disk, this decides.

use serde::Serialize;

/// Pipeline lag beyond which the gateway is not ready: GB 26875.1 allows
/// 10 s from detector to monitoring centre for the whole chain.
pub const MAX_LAG_MS: i64 = 10_000;

/// What readiness is judged from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The broker has acknowledged the gateway's subscriptions (or the
    /// embedded broker is serving).
    pub subscribed: bool,
    /// Commits that failed in a row (0 when the store takes writes).
    pub commit_failures: i64,
    /// Free bytes on the data directory's file system, when known.
    pub disk_free: Option<u64>,
    /// The headroom below which telemetry is held back (`storage.min_free_mb`).
    pub min_free: u64,
    /// How long the message the pipeline took last had waited since its
    /// receipt, ms (0 when idle).
    pub lag_ms: i64,
}

/// The answer of `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Whether every check passed.
    pub ready: bool,
    /// Why not, one line per failed check (empty when ready).
    pub reasons: Vec<String>,
}

/// Judges readiness.
#[must_use]
pub fn judge(i: &Inputs) -> Readiness {
    let mut reasons = Vec::new();
    if !i.subscribed {
        reasons.push("mqtt: not subscribed to the broker (未订阅消息代理)".to_owned());
    }
    if i.commit_failures > 0 {
        reasons.push(format!(
            "store: the last {} commits failed; messages are held unacknowledged and retried (存储写入失败)",
            i.commit_failures
        ));
    }
    if let Some(free) = i.disk_free
        && free < i.min_free
    {
        reasons.push(format!(
            "disk: {} MiB free, below the {} MiB headroom; telemetry is held back, events are still stored (磁盘空间不足)",
            free / (1 << 20),
            i.min_free / (1 << 20)
        ));
    }
    if i.lag_ms > MAX_LAG_MS {
        #[allow(clippy::cast_precision_loss)]
        let s = i.lag_ms as f64 / 1000.0;
        reasons.push(format!(
            "pipeline: messages wait {s:.1} s before they are judged, over {} s (处理延迟过大)",
            MAX_LAG_MS / 1000
        ));
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
    }
}

/// Free bytes for an unprivileged writer on the file system holding `path`.
///
/// # Errors
/// The OS's, when the path cannot be inspected.
pub fn disk_free(path: &std::path::Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Inputs {
        Inputs {
            subscribed: true,
            commit_failures: 0,
            disk_free: Some(1 << 30),
            min_free: 64 << 20,
            lag_ms: 3,
        }
    }

    #[test]
    fn a_healthy_gateway_is_ready_with_no_reasons() {
        assert_eq!(
            judge(&healthy()),
            Readiness {
                ready: true,
                reasons: vec![]
            }
        );
    }

    #[test]
    fn each_failed_check_is_one_reason() {
        let r = judge(&Inputs {
            subscribed: false,
            commit_failures: 3,
            disk_free: Some(10 << 20),
            min_free: 64 << 20,
            lag_ms: 12_500,
        });
        assert!(!r.ready);
        assert_eq!(r.reasons.len(), 4, "{:?}", r.reasons);
        assert!(r.reasons[0].starts_with("mqtt:"));
        assert!(r.reasons[1].contains("last 3 commits failed"));
        assert!(r.reasons[2].contains("10 MiB free, below the 64 MiB"));
        assert!(r.reasons[3].contains("12.5 s"));
    }

    #[test]
    fn an_unknown_disk_and_the_edges_pass() {
        let mut i = healthy();
        i.disk_free = None;
        i.lag_ms = MAX_LAG_MS;
        assert!(judge(&i).ready);
        i.disk_free = Some(i.min_free);
        assert!(judge(&i).ready);
        i.disk_free = Some(i.min_free - 1);
        assert!(!judge(&i).ready);
    }

    #[test]
    fn the_disk_of_a_real_directory_is_measured() {
        let dir = std::env::temp_dir();
        let free = disk_free(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(free > 0);
        assert!(disk_free(std::path::Path::new("/no/such/dir/here")).is_err());
    }
}
