//! The HTTP API: health, metrics, the device registry, stored series, alerts
//! and their acknowledgement, work orders and their steps, supervision
//! records, the bureau's reports and the live event stream, behind
//! bearer-token auth with roles and scopes ([`auth`]). Errors are JSON
//! `{"error", "detail"}`.

pub mod auth;
mod devices;
mod orders;
mod records;
pub mod serve;

use std::time::UNIX_EPOCH;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::shared::Shared;
use crate::ops::alerts::Refusal;
use crate::registry::{Registry, Status};
use crate::store::{Point, SeriesQuery, Store};
use auth::{Principal, Role};

/// 503 for a change the pipeline took but could not store yet.
pub(crate) fn not_stored(e: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_stored",
        format!("taken, but the store failed ({e}); it is retried with the next write"),
    )
}

/// Most points one series request returns.
pub const MAX_POINTS: usize = 10_000;

/// A JSON error with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.error, "detail": self.detail}))).into_response()
    }
}

/// The web console (`dashboards/console/`): one static page over this API.
/// It holds no data; every call it makes carries the token typed into it,
/// so it shows each role exactly what the API lets that role see.
const CONSOLE: &str = include_str!("../../../dashboards/console/index.html");

/// The router, with auth on everything but `/healthz` and the console page.
pub fn router(shared: Shared) -> Router {
    let api = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/devices", get(devices).post(devices::add))
        .route("/api/v1/devices/credentials", get(devices::list))
        .route(
            "/api/v1/devices/{site}/{device}",
            axum::routing::delete(devices::revoke),
        )
        .route("/api/v1/series", get(series))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/work-orders", get(orders::list))
        .route("/api/v1/work-orders/{id}", get(orders::one))
        .route("/api/v1/work-orders/{id}/{step}", post(orders::step))
        .route("/api/v1/reports/monthly", get(orders::report))
        .route("/api/v1/records", get(records::list))
        .route("/api/v1/records/export", get(records::export))
        .route("/api/v1/records/verify", get(records::verify))
        .route("/api/v1/events", get(events))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth::middleware));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/", get(|| async { axum::response::Html(CONSOLE) }))
        .merge(api)
        .with_state(shared)
}

/// Whether a message sent now would be judged and kept: 200, or 503 with
/// the reasons (no auth: a load balancer or a probe asks).
async fn readyz(State(shared): State<Shared>) -> Response {
    let m = &shared.metrics();
    let r = crate::ready::judge(&crate::ready::Inputs {
        subscribed: m.mqtt_subscribed.get() == 1,
        commit_failures: m.commit_failures.get(),
        disk_free: crate::ready::disk_free(shared.data_dir()).ok(),
        min_free: shared.min_free(),
        lag_ms: m.pipeline_lag_ms.get(),
    });
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}

/// Runs a blocking read against a fresh connection to the store.
pub(crate) async fn read<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let dir = shared.data_dir().to_owned();
    tokio::task::spawn_blocking(move || Store::open(&dir).and_then(|s| f(&s)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()))
}

/// The devices of the contractor's orders (what a contractor token may see).
pub(crate) async fn contractor_devices(shared: &Shared, who: &Principal) -> Result<Vec<(String, String)>, ApiError> {
    let c = who.contractor.clone().unwrap_or_default();
    read(shared, move |s| {
        let q = crate::ops::workorders::OrderQuery {
            contractor: Some(c),
            limit: 100_000,
            ..Default::default()
        };
        crate::ops::workorders::query(s.conn(), &q)
            .map(|os| os.into_iter().map(|o| (o.site, o.device)).collect())
            .map_err(|e| s.sql_error(e))
    })
    .await
}

async fn metrics(State(shared): State<Shared>, Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    who.require(&[Role::Engineer], "read metrics")?;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &shared.metrics().register())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// A device as the API shows it.
#[derive(Serialize)]
struct DeviceView {
    site: String,
    class: String,
    device: String,
    status: Status,
    last_seen_ms: i64,
    fw: Option<String>,
    model: Option<String>,
    interval_s: u32,
    bdseq: Option<u32>,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    clock_skew_ms: Option<i64>,
}

async fn devices(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let theirs = if who.role == Role::Contractor {
        Some(contractor_devices(&shared, &who).await?)
    } else {
        None
    };
    let now = shared.clock().now_ms();
    let devices = shared.registry().snapshot();
    let list: Vec<DeviceView> = devices
        .iter()
        .filter(|d| match &theirs {
            Some(t) => t.iter().any(|(s, dev)| *s == d.key.site && *dev == d.key.device),
            None => who.sees_site(&d.key.site),
        })
        .map(|d| DeviceView {
            site: d.key.site.clone(),
            class: d.key.class.clone(),
            device: d.key.device.clone(),
            status: Registry::status(d, now),
            last_seen_ms: d.last_seen_ms,
            fw: d.fw.clone(),
            model: d.model.clone(),
            interval_s: d.interval_s,
            bdseq: d.bdseq,
            lost: d.lost,
            duplicates: d.duplicates,
            reordered: d.reordered,
            clock_skew_ms: d.skew_ms,
        })
        .collect();
    Ok(Json(json!({ "devices": list })))
}

#[derive(Deserialize)]
struct SeriesParams {
    device: Option<String>,
    site: Option<String>,
    metric: Option<String>,
    port: Option<u8>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// Parses `from`/`to`: ms since the Unix epoch, or RFC 3339.
pub(crate) fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`{name}` is neither RFC 3339 nor ms since the epoch: {text}"),
            )
        })
}

async fn series(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<SeriesParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let missing = |f: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{f}` is required"));
    let device = p.device.ok_or_else(|| missing("device"))?;
    let site = series_site(&shared, &who, &device, p.site.clone()).await?;
    let metric = p.metric.ok_or_else(|| missing("metric"))?;
    let to =
        p.to.as_deref()
            .map(|t| parse_time("to", t))
            .transpose()?
            .unwrap_or(i64::MAX);
    let from = p
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(to.saturating_sub(86_400_000));
    if from > to {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`from` is after `to`",
        ));
    }
    let q = SeriesQuery {
        device: device.clone(),
        site,
        metric: metric.clone(),
        port: p.port,
        from,
        to,
        limit: p.limit.unwrap_or(MAX_POINTS).min(MAX_POINTS),
    };
    let points: Vec<Point> = read(&shared, move |s| s.series(&q)).await?;
    Ok(Json(
        json!({ "device": device, "metric": metric, "port": p.port, "points": points }),
    ))
}

/// The compound of a series request: a contractor's device of its orders,
/// a scoped token's compound in scope; 403 otherwise.
async fn series_site(
    shared: &Shared,
    who: &Principal,
    device: &str,
    site: Option<String>,
) -> Result<Option<String>, ApiError> {
    let outside = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("`{device}` is outside this token's scope"),
        )
    };
    if who.role == Role::Contractor {
        let theirs = contractor_devices(shared, who).await?;
        return theirs
            .into_iter()
            .find(|(s, d)| d == device && site.as_ref().is_none_or(|x| x == s))
            .map(|(s, _)| Some(s))
            .ok_or_else(outside);
    }
    if who.sites.is_none() {
        return Ok(site);
    }
    let site = match site {
        Some(s) => s,
        None => shared
            .registry()
            .with(|r| {
                r.iter()
                    .find(|d| d.key.device == device && who.sees_site(&d.key.site))
                    .map(|d| d.key.site.clone())
            })
            .ok_or_else(outside)?,
    };
    who.require_site(&site)?;
    Ok(Some(site))
}

/// Most alerts one request returns.
pub const MAX_ALERTS: usize = 5000;

#[derive(Deserialize)]
struct AlertParams {
    state: Option<String>,
    site: Option<String>,
    class: Option<String>,
    device: Option<String>,
    code: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/alerts`: open alerts from the engine's live view, resolved
/// ones from the store; open first (newest first), then resolved (latest
/// change first).
async fn alerts(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<AlertParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(site) = &p.site {
        who.require_site(site)?;
    }
    let theirs = if who.role == Role::Contractor {
        Some(contractor_devices(&shared, &who).await?)
    } else {
        None
    };
    let who_scoped = theirs.is_some() || who.sites.is_some();
    let in_scope = move |a: &alerting::AlertView| match &theirs {
        Some(t) => t.iter().any(|(s, d)| *s == a.site && *d == a.device),
        None => who.sees_site(&a.site),
    };
    let state = match p.state.as_deref() {
        None => None,
        Some(s @ ("pending" | "firing" | "acknowledged" | "resolved")) => Some(s.to_owned()),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`state` is pending, firing, acknowledged or resolved, not `{other}`"),
            ));
        }
    };
    let limit = p.limit.unwrap_or(500).min(MAX_ALERTS);
    let keep = |a: &alerting::AlertView| {
        p.site.as_ref().is_none_or(|s| *s == a.site)
            && p.class.as_ref().is_none_or(|c| *c == a.class)
            && p.device.as_ref().is_none_or(|d| *d == a.device)
            && p.code.as_ref().is_none_or(|c| *c == a.code)
            && state.as_deref().is_none_or(|s| s == a.state.as_str())
            && in_scope(a)
    };
    let mut list: Vec<alerting::AlertView> = if state.as_deref() == Some("resolved") {
        Vec::new()
    } else {
        let mut open: Vec<_> = shared.alerts().open_alerts().into_iter().filter(keep).collect();
        open.reverse();
        open.truncate(limit);
        open
    };
    if state.is_none() || state.as_deref() == Some("resolved") {
        let q = crate::store::AlertQuery {
            state: Some("resolved".into()),
            site: p.site.clone(),
            class: p.class.clone(),
            device: p.device.clone(),
            code: p.code.clone(),
            // Scope is applied after the read: read enough to fill the page.
            limit: if who_scoped {
                MAX_ALERTS * 4
            } else {
                limit.saturating_sub(list.len())
            },
        };
        let resolved = read(&shared, move |s| s.alerts(&q)).await?;
        let room = limit.saturating_sub(list.len());
        list.extend(resolved.into_iter().filter(&keep).take(room));
    }
    Ok(Json(json!({ "alerts": list })))
}

#[derive(Deserialize, Default)]
struct AckBody {
    by: Option<String>,
}

/// `POST /api/v1/alerts/{id}/ack`: answered once the acknowledgement is stored.
async fn ack(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<alerting::AlertView>, ApiError> {
    who.require(&[Role::Engineer], "acknowledge alerts")?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{id}` is not an alert id"),
        )
    })?;
    // No body is fine (acknowledged by the token's user); a body must be JSON.
    let body: AckBody = if body.iter().all(u8::is_ascii_whitespace) {
        AckBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not {{\"by\": \"name\"}}: {e}"),
            )
        })?
    };
    if let Some(a) = shared.alerts().open_alerts().into_iter().find(|a| a.id == id) {
        who.require_site(&a.site)?;
    }
    // The admin may name who acknowledged; everybody else is who they are.
    let by = match (who.role, body.by.filter(|b| !b.trim().is_empty())) {
        (Role::Admin, Some(b)) => b,
        _ => who.name.clone(),
    };
    if by.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`by` is at most 64 bytes",
        ));
    }
    let answer = ask(&shared, |reply| crate::ops::alerts::Control::Ack { id, by, reply }).await?;
    match answer {
        Ok(view) => Ok(Json(view)),
        Err(Refusal::Refused(e @ alerting::AckError::Unknown(_))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))
        }
        Err(Refusal::Refused(e @ alerting::AckError::NotFiring { .. })) => {
            Err(ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()))
        }
        Err(Refusal::NotStored(e)) => Err(not_stored(&e)),
    }
}

/// Sends the pipeline a control carrying its reply channel and waits (10 s at
/// most) for the answer, which comes once the change is stored.
///
/// # Errors
/// 503 when the pipeline does not take it or does not answer in time.
pub(crate) async fn ask<T>(
    shared: &Shared,
    control: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> crate::ops::alerts::Control,
) -> Result<T, ApiError> {
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the pipeline did not answer; try again",
        )
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    shared.alerts().control.send(control(reply)).await.map_err(|_| busy())?;
    match tokio::time::timeout(std::time::Duration::from_secs(10), answer).await {
        Ok(Ok(t)) => Ok(t),
        _ => Err(busy()),
    }
}

/// `GET /api/v1/events`: alert changes, notifications, work-order intents and
/// records as Server-Sent Events. A reader too slow for the stream is told how
/// many events it missed (`event: lagged`), and they are counted.
async fn events(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = shared.alerts().events.subscribe();
    let metrics = shared.metrics().clone();
    let closing = shared.alerts().closing.subscribe();
    let state = (rx, metrics, closing, who);
    let stream = futures_util::stream::unfold(state, |(mut rx, metrics, mut closing, who)| async move {
        use tokio::sync::broadcast::error::RecvError;
        // A contractor sees its own work orders; others what is in scope.
        let sees = |e: &crate::ops::alerts::Streamed| match who.role {
            Role::Admin => true,
            Role::Contractor => who.contractor.as_ref().is_some_and(|c| e.contractors.contains(c)),
            _ => e.site.as_ref().is_none_or(|s| who.sees_site(s)),
        };
        let next = loop {
            let r = tokio::select! {
                r = rx.recv() => r,
                // Shutdown: end the stream so the server can drain.
                _ = closing.wait_for(|c| *c) => return None,
            };
            match r {
                Ok(e) if !sees(&e) => {}
                other => break other,
            }
        };
        let event = match next {
            Ok(e) => Event::default().event(e.name).data(e.json.clone()),
            Err(RecvError::Lagged(n)) => {
                metrics.events_lagged.inc_by(n);
                tracing::warn!(missed = n, "an event stream reader lagged");
                Event::default().event("lagged").data(format!("{{\"missed\":{n}}}"))
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, metrics, closing, who)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
