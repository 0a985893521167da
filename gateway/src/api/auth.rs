//! Who a bearer token is: one role and a scope (contract §3). `admin` does
//! everything; an `engineer` works the compounds in scope; a `contractor`
//! sees only the work orders dispatched to it and their devices; an
//! `auditor` reads history and records. No token is 401; a token outside its
//! role or scope is 403. A client address that sends too many unknown tokens
//! is answered 429 for a while, its tokens not even looked at ([`Limiter`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiError;
use crate::app::config::TokenConfig;
use crate::app::shared::Shared;
use crate::limiter::Limiter;

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
        if crate::identity::same(&d, &self.admin) {
            return Some(Principal::admin());
        }
        // Every token is compared, so the time does not tell which matched.
        let mut found = None;
        for (t, p) in self.others.iter() {
            if crate::identity::same(&d, t) {
                found = Some(p.clone());
            }
        }
        found
    }
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
}
