//! `GET /api/v1/health?site=&class=&device=&top=`: health per device and
//! compound from stored history (CONTRACT §11), with the reasons of each
//! score, and per compound the devices to inspect first this week
//! (本周优先检查). Read from the judgement's stored state
//! (`judgement_devices`) with the crate's own functions, so the API and the
//! pipeline cannot disagree on a formula (docs/judgement.md).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Principal, Role};
use crate::api::{ApiError, Query, read};
use crate::app::shared::Shared;

/// Devices in an "inspect first" list unless `top` says otherwise.
pub(crate) const DEFAULT_TOP: usize = 5;
/// The longest "inspect first" list.
pub(crate) const MAX_TOP: usize = 100;

/// The query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthParams {
    site: Option<String>,
    class: Option<String>,
    device: Option<String>,
    top: Option<usize>,
}

/// A device to inspect first, with its heaviest reasons.
#[derive(Debug, Serialize)]
pub(crate) struct Inspect {
    site: String,
    class: String,
    device: String,
    score: u32,
    reasons: Vec<judgement::Reason>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub(crate) struct HealthAnswer {
    /// When it was computed (gateway ms).
    at: i64,
    /// Per compound.
    sites: Vec<judgement::SiteHealth>,
    /// Per device, as the query selects.
    devices: Vec<judgement::DeviceHealth>,
    /// The least healthy devices, at most `top`, the least healthy first.
    inspect_first: Vec<Inspect>,
}

fn bad(detail: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
}

/// The handler.
pub(crate) async fn health(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<HealthParams>,
) -> Result<Json<HealthAnswer>, ApiError> {
    who.require(&[Role::Engineer, Role::Auditor], "read health")?;
    if let Some(site) = &p.site {
        protocol::SiteId::new(site).map_err(|e| bad(format!("`site` is not a compound id: {e}")))?;
        who.require_site(site)?;
    }
    if let Some(c) = &p.class
        && protocol::DeviceClass::from_name(c).is_none()
    {
        return Err(bad(format!("`class` is elevator, firepump or charger, not `{c}`")));
    }
    let top = p.top.unwrap_or(DEFAULT_TOP);
    if top > MAX_TOP {
        return Err(bad(format!("`top` is at most {MAX_TOP}")));
    }
    let states = read(&shared, |s| {
        crate::ops::judgement::load(s.conn()).map_err(|e| {
            s.sql_error(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                e.into(),
            ))
        })
    })
    .await?;
    let now = shared.clock().now_ms();
    let settings = shared.judgement();
    let devices: Vec<judgement::DeviceHealth> = states
        .iter()
        .filter(|d| who.sees_site(&d.site))
        .filter(|d| p.site.as_ref().is_none_or(|s| *s == d.site))
        .filter(|d| p.class.as_ref().is_none_or(|c| *c == d.class))
        .filter(|d| p.device.as_ref().is_none_or(|x| *x == d.device))
        .map(|d| judgement::health::device(d, now, settings))
        .collect();
    let inspect_first = judgement::health::inspect_first(&devices, top)
        .into_iter()
        .map(|d| Inspect {
            site: d.site.clone(),
            class: d.class.clone(),
            device: d.device.clone(),
            score: d.score,
            reasons: d.reasons.iter().filter(|r| r.points > 0).take(3).cloned().collect(),
        })
        .collect();
    Ok(Json(HealthAnswer {
        at: now,
        sites: judgement::health::sites(&devices),
        devices,
        inspect_first,
    }))
}

/// The month's frequent-fault flags of a compound, for the monthly report.
///
/// # Errors
/// The store's.
pub(crate) async fn frequent_report(
    shared: &Shared,
    site: &str,
    from: i64,
    to: i64,
) -> Result<judgement::FrequentReport, ApiError> {
    let site = site.to_owned();
    let states = read(shared, |s| {
        crate::ops::judgement::load(s.conn()).map_err(|e| {
            s.sql_error(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                e.into(),
            ))
        })
    })
    .await?;
    Ok(judgement::health::frequent_report(
        states.iter().filter(|d| d.site == site),
        from,
        to,
    ))
}
