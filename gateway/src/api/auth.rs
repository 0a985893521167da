//! Who a bearer token is: one role and a scope (contract §3). `admin` does
//! everything; an `engineer` works the compounds in scope; a `contractor`
//! sees only the work orders dispatched to it and their devices; an
//! `auditor` reads history and records. No token is 401; a token outside its
//! role or scope is 403.

use std::sync::Arc;

use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiError;
use crate::app::config::TokenConfig;

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

/// The tokens the gateway accepts.
#[derive(Clone, Debug)]
pub struct Tokens {
    admin: Arc<str>,
    others: Arc<[TokenConfig]>,
}

impl Tokens {
    /// The admin token and the configured ones.
    #[must_use]
    pub fn new(admin: Arc<str>, others: &[TokenConfig]) -> Tokens {
        Tokens {
            admin,
            others: others.into(),
        }
    }

    /// The principal of a token, comparing in constant time.
    #[must_use]
    pub fn find(&self, token: &str) -> Option<Principal> {
        if constant_time_eq(token.as_bytes(), self.admin.as_bytes()) {
            return Some(Principal::admin());
        }
        // Every token is compared, so the time does not tell which matched.
        let mut found = None;
        for t in self.others.iter() {
            if constant_time_eq(token.as_bytes(), t.token.as_bytes()) {
                found = Some(Principal {
                    name: t.name.clone(),
                    role: t.role,
                    sites: t.sites.clone(),
                    contractor: t.contractor.clone(),
                });
            }
        }
        found
    }
}

/// Compares without leaking the position of the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
