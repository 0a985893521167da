//! Who a bearer token is: one role and a scope (contract §3). `admin` does
//! everything; an `engineer` works the compounds in scope; a `contractor`
//! sees only the work orders dispatched to it and their devices; an
//! `auditor` reads history and records. No token is 401; a token outside its
//! role or scope is 403. A client address that sends too many unknown tokens
//! is answered 429 for a while, its tokens not even looked at ([`Limiter`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiError;
use crate::app::config::TokenConfig;
use crate::app::shared::Shared;
use crate::metrics::HttpMetrics;

/// The roles of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// A property engineer: the sites in scope.
    Engineer,
    /// A maintenance contractor: its own work orders and their devices.
    Contractor,
    /// The bureau: read-only history and records.
    Auditor,
}

impl Role {
    /// The name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Engineer => "engineer",
            Role::Contractor => "contractor",
            Role::Auditor => "auditor",
        }
    }
}

/// The caller of a request, found from its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Stamped on what it does.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The compounds in scope; `None` is all.
    pub sites: Option<Vec<String>>,
    /// For contractors: the contact id orders are dispatched to.
    pub contractor: Option<String>,
}

impl Principal {
    /// The admin.
    #[must_use]
    pub fn admin() -> Principal {
        Principal {
            name: "admin".into(),
            role: Role::Admin,
            sites: None,
            contractor: None,
        }
    }

    /// Whether a compound is in scope (a contractor's scope is its orders,
    /// checked by the caller).
    #[must_use]
    pub fn sees_site(&self, site: &str) -> bool {
        self.sites.as_ref().is_none_or(|s| s.iter().any(|x| x == site))
    }

    /// Refuses unless the role is one of `roles`.
    ///
    /// # Errors
    /// 403.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("a {} token may not {what}", self.role.as_str()),
            ))
        }
    }

    /// Refuses a compound outside the scope.
    ///
    /// # Errors
    /// 403.
    pub fn require_site(&self, site: &str) -> Result<(), ApiError> {
        if self.sees_site(site) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("`{site}` is outside this token's scope"),
            ))
        }
    }
}

/// A token's SHA-256: what the gateway keeps of a token, in memory and
/// (with `token_sha256`) in its file.
pub type Digest = [u8; 32];

/// The SHA-256 of a token.
#[must_use]
pub fn digest(token: &str) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// A digest written as 64 hex digits.
#[must_use]
pub fn parse_digest(hex_text: &str) -> Option<Digest> {
    let bytes = hex::decode(hex_text.trim()).ok()?;
    bytes.try_into().ok()
}

/// The digest a configured token stands for (`None` only for a
/// configuration that validation refuses).
#[must_use]
pub fn digest_of(t: &TokenConfig) -> Option<Digest> {
    match (&t.token, &t.token_sha256) {
        (Some(token), _) => Some(digest(token)),
        (None, Some(h)) => parse_digest(h),
        (None, None) => None,
    }
}

/// The tokens the gateway accepts, kept as their SHA-256 only: a memory
/// dump, a core file or a `Debug` print shows no usable token, and comparing
/// digests of equal length tells nothing of a token's length either.
#[derive(Clone, Debug)]
pub struct Tokens {
    admin: Digest,
    others: Arc<[(Digest, Principal)]>,
}

impl Tokens {
    /// The admin token and the configured ones.
    #[must_use]
    pub fn new(admin: &str, others: &[TokenConfig]) -> Tokens {
        Tokens {
            admin: digest(admin),
            others: others
                .iter()
                .filter_map(|t| {
                    Some((
                        digest_of(t)?,
                        Principal {
                            name: t.name.clone(),
                            role: t.role,
                            sites: t.sites.clone(),
                            contractor: t.contractor.clone(),
                        },
                    ))
                })
                .collect(),
        }
    }

    /// The principal of a token, comparing digests in constant time.
    #[must_use]
    pub fn find(&self, token: &str) -> Option<Principal> {
        let d = digest(token);
        if constant_time_eq(&d, &self.admin) {
            return Some(Principal::admin());
        }
        // Every token is compared, so the time does not tell which matched.
        let mut found = None;
        for (t, p) in self.others.iter() {
            if constant_time_eq(&d, t) {
                found = Some(p.clone());
            }
        }
        found
    }
}

/// Compares without leaking the position of the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The check in front of every API route. A client address the [`Limiter`]
/// holds is answered 429 with `Retry-After`, whatever token it sends (it is
/// not even looked at); no token is 401; an unknown token is 401 and counts
/// against the address; a known one hands its [`Principal`] to the handler
/// and costs nothing. The limiter and the client's address come as request
/// extensions from `api::serve`; without them nothing is limited.
pub async fn middleware(State(shared): State<Shared>, mut req: Request, next: Next) -> Response {
    let limiter = req.extensions().get::<Arc<Limiter>>().cloned();
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let guarded = limiter.as_deref().zip(client);
    if let Some((l, ip)) = guarded
        && let Err(wait) = l.check(ip)
    {
        return too_many(wait);
    }
    let principal = {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token>",
            )
            .into_response();
        };
        shared.tokens().find(token)
    };
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
        return next.run(req).await;
    }
    shared.metrics().http.auth_failures.inc();
    if let Some((l, ip)) = guarded {
        l.failed(ip);
    } else {
        tracing::debug!("an unknown token");
    }
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token").into_response()
}

/// 429 with `Retry-After` in whole seconds (at least 1).
fn too_many(wait: Duration) -> Response {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!("too many unknown tokens from this address; try again in {secs} s"),
    )
    .into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

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

/// Unknown tokens per client address, as token buckets: an address may
/// fail `burst` times at once, and earns one more failure every
/// `window / burst`. While its bucket is empty every request it makes to the
/// API is answered 429. Successes cost nothing and refill nothing, so a
/// client holding one valid token cannot use it to keep guessing others.
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
    metrics: HttpMetrics,
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
    pub fn new(burst: u32, window: Duration, clients: usize, metrics: HttpMetrics) -> Limiter {
        let burst = f64::from(burst.max(1));
        Limiter {
            table: Mutex::new(HashMap::new()),
            burst,
            per_second: burst / window.as_secs_f64().max(0.001),
            clients: clients.max(1),
            metrics,
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
        self.metrics.auth_limited.inc();
        Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
    }

    /// `ip` sent an unknown token.
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
                client = %key,
                retry_after_s = wait.ceil(),
                "too many unknown tokens from one address: its API requests are answered 429"
            );
        } else {
            tracing::debug!(client = %key, left = b.tokens.floor(), "an unknown token");
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
        self.metrics.auth_evicted.inc_by(dropped as u64);
        tracing::debug!(dropped, "auth failure limiter full: addresses forgotten");
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

    fn token(name: &str, token: Option<&str>, sha: Option<String>) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            token: token.map(Into::into),
            token_sha256: sha,
            role: Role::Auditor,
            sites: None,
            contractor: None,
        }
    }

    #[test]
    fn tokens_are_found_by_their_digest_and_kept_only_as_one() {
        let sha = hex::encode(digest("from-the-file-0123456789"));
        let t = Tokens::new(
            "the-admin-token-0123",
            &[
                token("plain", Some("plain-token-0123456789"), None),
                token("hashed", None, Some(sha)),
            ],
        );
        assert_eq!(t.find("the-admin-token-0123").map(|p| p.role), Some(Role::Admin));
        assert_eq!(t.find("plain-token-0123456789").map(|p| p.name), Some("plain".into()));
        assert_eq!(
            t.find("from-the-file-0123456789").map(|p| p.name),
            Some("hashed".into())
        );
        assert!(t.find("plain-token-012345678").is_none());
        assert!(t.find("").is_none());
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("plain-token") && !shown.contains("the-admin-token"),
            "{shown}"
        );
    }

    #[test]
    fn digests_parse_from_hex() {
        // The value `printf %s test | sha256sum` prints.
        assert_eq!(
            hex::encode(digest("test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let d = digest("x");
        assert_eq!(parse_digest(&hex::encode(d)), Some(d));
        assert_eq!(parse_digest(&format!(" {} ", hex::encode(d).to_uppercase())), Some(d));
        assert_eq!(parse_digest("abc"), None);
        assert_eq!(parse_digest(&"g".repeat(64)), None);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_limited_after_its_burst_and_earns_failures_back() {
        let l = Limiter::new(3, Duration::from_secs(30), 100, HttpMetrics::default());
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
        assert_eq!(l.metrics.auth_limited.get(), 2);
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
        let l = Limiter::new(1, Duration::from_mins(1), 100, HttpMetrics::default());
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
        let l = Limiter::new(2, Duration::from_mins(1), 16, HttpMetrics::default());
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
        assert_eq!(l.metrics.auth_evicted.get(), 2);
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
