//! Failed logins per client address, for every door that takes a secret:
//! the HTTP API's tokens and the embedded broker's device passwords. A
//! guesser is refused before any check (no token lookup, no Argon2 run),
//! other addresses are not affected, and the table of addresses is bounded.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// The client an address stands for: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network, which one client can fill with addresses); an
/// IPv4-mapped IPv6 address is its IPv4 address.
#[must_use]
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Failed logins per client address, as token buckets: an address may
/// fail `burst` times at once, and earns one more failure every
/// `window / burst`. While its bucket is empty it is refused before any
/// check (the API answers 429, the broker CONNACK 5). Successes cost nothing
/// and refill nothing, so a client holding one valid credential cannot use
/// it to keep guessing others.
///
/// An address is an IPv4 address, or an IPv6 /64 (one subscriber's
/// network, which one client can fill with addresses). At most `clients`
/// addresses are remembered: to make room, the ones whose bucket has filled
/// again are forgotten first, then the longest unseen.
pub struct Limiter {
    table: Mutex<HashMap<IpAddr, Bucket>>,
    burst: f64,
    per_second: f64,
    clients: usize,
    counters: Counters,
}

/// What a [`Limiter`] counts, in the metrics of its door.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// What it refused.
    pub limited: Counter,
    /// Addresses forgotten to make room.
    pub evicted: Counter,
    /// The door, for its log lines: `HTTP API`, `MQTT`.
    pub door: &'static str,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Failures the address may still make (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Limiter {
    /// `burst` failures at once, all of them earned back over `window`, for
    /// at most `clients` addresses.
    #[must_use]
    pub fn new(burst: u32, window: Duration, clients: usize, counters: Counters) -> Limiter {
        let burst = f64::from(burst.max(1));
        Limiter {
            table: Mutex::new(HashMap::new()),
            burst,
            per_second: burst / window.as_secs_f64().max(0.001),
            clients: clients.max(1),
            counters,
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let earned = now.saturating_duration_since(b.at).as_secs_f64() * self.per_second;
        b.tokens = (b.tokens + earned).min(self.burst);
        b.at = now;
    }

    /// Whether `ip` may try a token now; if not, how long until it may.
    ///
    /// # Errors
    /// The wait, when its failures are used up (counted as rate limited).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(b) = table.get_mut(&client_key(ip)) else {
            return Ok(());
        };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            return Ok(());
        }
        self.counters.limited.inc();
        Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
    }

    /// `ip` failed a login (an unknown token, a wrong password).
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now());
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        let key = client_key(ip);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.contains_key(&key) {
            self.make_room(&mut table, now);
        }
        let b = table.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
        if b.tokens < 1.0 {
            let wait = (1.0 - b.tokens) / self.per_second;
            tracing::warn!(
                door = self.counters.door,
                client = %key,
                retry_after_s = wait.ceil(),
                "too many failed logins from one address: it is refused unchecked until it earns a try back"
            );
        } else {
            tracing::debug!(door = self.counters.door, client = %key, left = b.tokens.floor(), "a failed login");
        }
    }

    /// Forgets addresses until one more fits: first every one whose bucket
    /// is full again (it is as good as new); if that is not enough, the
    /// longest unseen eighth of the table, so that a table kept full by
    /// many addresses costs one scan per eighth of its size, not per failure.
    fn make_room(&self, table: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        if table.len() < self.clients {
            return;
        }
        let before = table.len();
        table.retain(|_, b| {
            let mut b = *b;
            self.refill(&mut b, now);
            b.tokens < self.burst
        });
        if table.len() >= self.clients {
            let mut seen: Vec<(Instant, IpAddr)> = table.iter().map(|(k, b)| (b.at, *k)).collect();
            let n = (self.clients / 8).max(table.len() + 1 - self.clients);
            if n < seen.len() {
                seen.select_nth_unstable(n);
            }
            for (_, k) in seen.iter().take(n) {
                table.remove(k);
            }
        }
        let dropped = before - table.len();
        self.counters.evicted.inc_by(dropped as u64);
        tracing::debug!(
            door = self.counters.door,
            dropped,
            "failed-login limiter full: addresses forgotten"
        );
    }

    /// Addresses remembered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no address is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_limited_after_its_burst_and_earns_failures_back() {
        let l = Limiter::new(3, Duration::from_secs(30), 100, Counters::default());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(l.check_at(a, t0).is_ok());
            l.failed_at(a, t0);
        }
        // One failure is earned back every 10 s.
        let wait = l.check_at(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(9_900) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert!(l.check_at(a, t0 + Duration::from_secs(5)).is_err());
        assert!(l.check_at(a, t0 + Duration::from_secs(10)).is_ok());
        // Another address is not held; nor is a success ever counted.
        assert!(l.check_at(ip("192.0.2.2"), t0).is_ok());
        assert_eq!(l.counters.limited.get(), 2);
        // Fully earned back after the window.
        let later = t0 + Duration::from_secs(30);
        for _ in 0..3 {
            assert!(l.check_at(a, later).is_ok());
            l.failed_at(a, later);
        }
        assert!(l.check_at(a, later).is_err());
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() {
        let l = Limiter::new(1, Duration::from_mins(1), 100, Counters::default());
        let t0 = Instant::now();
        l.failed_at(ip("2001:db8:1:2::1"), t0);
        assert!(l.check_at(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert!(l.check_at(ip("2001:db8:1:3::1"), t0).is_ok());
        l.failed_at(ip("::ffff:198.51.100.7"), t0);
        assert!(l.check_at(ip("198.51.100.7"), t0).is_err());
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_recovered_then_the_oldest() {
        let l = Limiter::new(2, Duration::from_mins(1), 16, Counters::default());
        let t0 = Instant::now();
        // 16 addresses, each one failure down, a second apart.
        for i in 0..16u8 {
            l.failed_at(IpAddr::from([10, 0, 0, i]), t0 + Duration::from_secs(u64::from(i)));
        }
        assert_eq!(l.len(), 16);
        // At 16 s none has recovered (30 s per failure): the longest unseen
        // eighth (10.0.0.0 and 10.0.0.1) makes room.
        let t = t0 + Duration::from_secs(16);
        l.failed_at(ip("10.0.1.0"), t);
        assert_eq!(l.len(), 15);
        assert_eq!(l.counters.evicted.get(), 2);
        assert!(l.check_at(ip("10.0.0.1"), t).is_ok());
        assert!(l.check_at(ip("10.0.0.2"), t).is_ok(), "one failure of two: not held");
        l.failed_at(ip("10.0.0.2"), t);
        assert!(l.check_at(ip("10.0.0.2"), t).is_err(), "remembered");
        l.failed_at(ip("10.0.1.0"), t);
        assert!(l.check_at(ip("10.0.1.0"), t).is_err(), "the newcomer is remembered");
        l.failed_at(ip("10.0.1.1"), t);
        assert_eq!(l.len(), 16);
        // Much later every bucket is full again: all of them are forgotten
        // at once for the next newcomer.
        l.failed_at(ip("10.0.2.0"), t0 + Duration::from_hours(1));
        assert_eq!(l.len(), 1);
        // A flood of distinct addresses never grows the table past its bound.
        let t = t0 + Duration::from_secs(3601);
        for i in 0..1000u32 {
            l.failed_at(IpAddr::from(i.to_be_bytes()), t);
            assert!(l.len() <= 16);
        }
    }
}
