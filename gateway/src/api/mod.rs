//! The HTTP API: health, metrics, the device registry, stored series, alerts
//! and their acknowledgement, work orders and their steps, supervision
//! records, the bureau's reports and the live event stream, behind
//! bearer-token auth with roles and scopes ([`auth`]). Errors are JSON
//! `{"error", "detail"}`.

pub mod auth;
mod commands;
mod devices;
pub(crate) mod health;
pub mod labels;
pub mod openapi;
mod orders;
pub mod params;
mod records;
pub mod serve;

use axum::extract::{Path, State};
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
pub(crate) use params::{Query, parse_time};

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

    /// Its status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What it says.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
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
        .route("/api/v1/devices/{site}/{device}/commands", post(commands::send))
        .route("/api/v1/commands/{id}", get(commands::one))
        .route("/api/v1/series", get(series))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/work-orders", get(orders::list))
        .route("/api/v1/work-orders/{id}", get(orders::one))
        .route("/api/v1/work-orders/{id}/{step}", post(orders::step))
        .route("/api/v1/reports/monthly", get(orders::report))
        .route("/api/v1/health", get(health::health))
        .route("/api/v1/records", get(records::list))
        .route("/api/v1/records/export", get(records::export))
        .route("/api/v1/records/verify", get(records::verify))
        .route("/api/v1/events", get(events))
        .route("/api/v1/labels", get(labels))
        .route("/api/v1/me", get(me))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth::middleware));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/", get(|| async { axum::response::Html(CONSOLE) }))
        .merge(api)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such path (see /api/v1/openapi.json)",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not take this method (see /api/v1/openapi.json)",
            )
        })
        .with_state(shared)
}

/// `GET /api/v1/labels`: the one table of words ([`labels::all`]), with
/// the names of the sites this token sees and of the contractors.
async fn labels(State(shared): State<Shared>, Extension(who): Extension<Principal>) -> Json<serde_json::Value> {
    let mut table = labels::all().clone();
    let (sites, contractors) = shared.directory().labels(|s| who.sees_site(s));
    table["sites"] = sites;
    table["contractors"] = contractors;
    Json(table)
}

/// `GET /api/v1/me`: who this token is, so a client (the console) shows
/// each role its own screens.
async fn me(Extension(who): Extension<Principal>) -> Json<serde_json::Value> {
    Json(json!({
        "name": who.name,
        "role": who.role.as_str(),
        "sites": who.sites,
        "contractor": who.contractor,
    }))
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
    count_devices(&shared);
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

/// Sets `fm_devices{class, status}` from the registry now: a device's status
/// depends on the time (stale after 3 silent intervals), so it is counted
/// when read rather than kept up to date on every message.
fn count_devices(shared: &Shared) {
    let now = shared.clock().now_ms();
    let mut counts: std::collections::BTreeMap<(String, &'static str), i64> = std::collections::BTreeMap::new();
    for class in protocol::DeviceClass::ALL {
        for status in ["online", "offline", "stale"] {
            counts.insert((class.as_str().to_owned(), status), 0);
        }
    }
    shared.registry().with(|r| {
        for d in r.iter() {
            let status = match Registry::status(d, now) {
                Status::Online => "online",
                Status::Offline => "offline",
                Status::Stale => "stale",
            };
            *counts.entry((d.key.class.clone(), status)).or_insert(0) += 1;
        }
    });
    for ((class, status), n) in counts {
        shared
            .metrics()
            .devices
            .get_or_create(&crate::metrics::DeviceLabel {
                class,
                status: status.to_owned(),
            })
            .set(n);
    }
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
    /// Its building, as configured (`[[alerting.buildings]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    building: Option<String>,
}

/// Most devices one request returns (default 1,000).
pub const MAX_DEVICES: usize = 10_000;

#[derive(Deserialize)]
struct DeviceParams {
    site: Option<String>,
    class: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/devices?site=&class=&limit=&cursor=`: by site and device id.
async fn devices(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<DeviceParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(site) = &p.site {
        who.require_site(site)?;
    }
    let after: Option<(String, String)> = params::cursor_key("devices", p.cursor.as_deref())?;
    let limit = p.limit.unwrap_or(1000).clamp(1, MAX_DEVICES);
    let theirs = if who.role == Role::Contractor {
        Some(contractor_devices(&shared, &who).await?)
    } else {
        None
    };
    let now = shared.clock().now_ms();
    let mut devices = shared.registry().snapshot();
    devices.sort_by(|a, b| (&a.key.site, &a.key.device).cmp(&(&b.key.site, &b.key.device)));
    let mut list: Vec<DeviceView> = devices
        .iter()
        .filter(|d| match &theirs {
            Some(t) => t.iter().any(|(s, dev)| *s == d.key.site && *dev == d.key.device),
            None => who.sees_site(&d.key.site),
        })
        .filter(|d| p.site.as_ref().is_none_or(|s| *s == d.key.site))
        .filter(|d| p.class.as_ref().is_none_or(|c| *c == d.key.class))
        .filter(|d| {
            after
                .as_ref()
                .is_none_or(|(s, dev)| (&d.key.site, &d.key.device) > (s, dev))
        })
        .take(limit + 1)
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
            building: shared
                .directory()
                .building(&d.key.site, &d.key.device)
                .map(str::to_owned),
        })
        .collect();
    let next = params::end_page(&mut list, limit, "devices", |d| json!([d.site, d.device]));
    Ok(Json(json!({ "devices": list, "next": next })))
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
    cursor: Option<String>,
}

/// `GET /api/v1/series?device=&site=&metric=&port=&from=&to=&limit=&cursor=`:
/// the newest `limit` points of the window, oldest first; `next` pages on
/// to older points.
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
    // A page ends before the oldest time of the page before it, and takes
    // every point of that time (see below).
    let older_than: Option<i64> = params::cursor_key("series", p.cursor.as_deref())?;
    let to = older_than.map_or(to, |t| to.min(t.saturating_add(1)));
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
        limit: p.limit.unwrap_or(MAX_POINTS).clamp(1, MAX_POINTS),
    };
    let limit = q.limit;
    let mut points: Vec<Point> = read(&shared, move |s| s.series(&q)).await?;
    // A full page may have cut the points of its oldest millisecond in two:
    // it leaves them all to the next page (whose window ends after that
    // millisecond), unless the whole page is that millisecond.
    let next = match points.first().map(|p| p.ts) {
        Some(oldest) if points.len() == limit => {
            let cut = points.iter().take_while(|p| p.ts == oldest).count();
            if cut < points.len() {
                points.drain(..cut);
                Some(params::cursor("series", json!(oldest)))
            } else {
                Some(params::cursor("series", json!(oldest - 1)))
            }
        }
        _ => None,
    };
    Ok(Json(
        json!({ "device": device, "metric": metric, "port": p.port, "points": points, "next": next }),
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

/// Most store reads for one page of resolved alerts (docs/api.md, pages).
const ALERT_BATCHES: usize = 20;

#[derive(Deserialize)]
struct AlertParams {
    state: Option<String>,
    site: Option<String>,
    class: Option<String>,
    device: Option<String>,
    code: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
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
    let limit = p.limit.unwrap_or(500).clamp(1, MAX_ALERTS);
    let keep = |a: &alerting::AlertView| {
        p.site.as_ref().is_none_or(|s| *s == a.site)
            && p.class.as_ref().is_none_or(|c| *c == a.class)
            && p.device.as_ref().is_none_or(|d| *d == a.device)
            && p.code.as_ref().is_none_or(|c| *c == a.code)
            && state.as_deref().is_none_or(|s| s == a.state.as_str())
            && in_scope(a)
    };
    // The cursor: `["o", 0, id]` in the open alerts (newest first, so ids
    // below it), `["r", changed, id]` in the resolved ones.
    let after: Option<(String, i64, u64)> = params::cursor_key("alerts", p.cursor.as_deref())?;
    let in_resolved = after.as_ref().is_some_and(|(phase, _, _)| phase == "r");
    let mut list: Vec<alerting::AlertView> = Vec::new();
    let mut next = None;
    if state.as_deref() != Some("resolved") && !in_resolved {
        let below = after.as_ref().map_or(u64::MAX, |(_, _, id)| *id);
        let mut open: Vec<_> = shared
            .alerts()
            .open_alerts()
            .into_iter()
            .filter(|a| a.id < below)
            .filter(keep)
            .collect();
        open.reverse();
        if open.len() >= limit {
            open.truncate(limit);
            next = open.last().map(|a| params::cursor("alerts", json!(["o", 0, a.id])));
        }
        list = open;
    }
    if next.is_none() && list.len() < limit && (state.is_none() || state.as_deref() == Some("resolved")) {
        let mut before = after.filter(|(phase, _, _)| phase == "r").map(|(_, c, id)| (c, id));
        // Scope and filters the store cannot apply are applied after the
        // read: read in batches until the page is full or the store is
        // done, and at most `ALERT_BATCHES` batches (a short page with a cursor).
        let batch = limit.max(100);
        let mut exhausted = false;
        for _ in 0..ALERT_BATCHES {
            let q = crate::store::AlertQuery {
                state: Some("resolved".into()),
                site: p.site.clone(),
                class: p.class.clone(),
                device: p.device.clone(),
                code: p.code.clone(),
                limit: batch,
                before,
            };
            let rows = read(&shared, move |s| s.alerts(&q)).await?;
            exhausted = rows.len() < batch;
            for (changed, a) in rows {
                // The cursor is where the scan got to, kept or not.
                before = Some((changed, a.id));
                if keep(&a) {
                    list.push(a);
                    if list.len() == limit {
                        exhausted = false;
                        break;
                    }
                }
            }
            if list.len() == limit || exhausted {
                break;
            }
        }
        if !exhausted {
            next = before.map(|(c, id)| params::cursor("alerts", json!(["r", c, id])));
        }
    }
    Ok(Json(json!({ "alerts": list, "next": next })))
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
/// records as Server-Sent Events, each with an `id`. A client that
/// reconnects with `Last-Event-ID` is first given what it missed (the last
/// [`crate::ops::alerts::EVENTS`] events are kept), or `event: reset` when
/// that is more than is kept or from before a restart: it must then read
/// its lists again. A reader too slow for the stream is told how many
/// events it missed (`event: lagged`), and they are counted.
async fn events(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: axum::http::HeaderMap,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    use crate::ops::alerts::{Resume, StreamEvent};
    use futures_util::StreamExt as _;
    // Subscribe first, then read the journal: nothing falls between them,
    // and what both hold is skipped by its number.
    let rx = shared.alerts().events.subscribe();
    let hub = shared.alerts().clone();
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let (missed, reset) = match last.map(|l| hub.since(l)) {
        None => (Vec::new(), false),
        Some(Resume::Missed(m)) => (m, false),
        Some(Resume::Reset) => (Vec::new(), true),
    };
    let replayed = missed.last().map(|e| e.seq);
    // A contractor sees its own work orders; others what is in scope.
    let sees = {
        let who = who.clone();
        move |e: &crate::ops::alerts::Streamed| match who.role {
            Role::Admin => true,
            Role::Contractor => who.contractor.as_ref().is_some_and(|c| e.contractors.contains(c)),
            _ => e.site.as_ref().is_none_or(|s| who.sees_site(s)),
        }
    };
    let to_sse = {
        let hub = hub.clone();
        move |e: &StreamEvent| Event::default().id(hub.event_id(e)).event(e.name).data(e.json.clone())
    };
    let head: Vec<Result<Event, std::convert::Infallible>> = reset
        .then(|| Event::default().event("reset").data("{}"))
        .into_iter()
        .chain(missed.iter().filter(|e| sees(e)).map(&to_sse))
        .map(Ok)
        .collect();
    let metrics = shared.metrics().clone();
    let closing = shared.alerts().closing.subscribe();
    // The reader's filter and encoder travel in the stream's state: nothing
    // is cloned per event.
    let state = (rx, metrics, closing, sees, to_sse);
    let live = futures_util::stream::unfold(state, move |(mut rx, metrics, mut closing, sees, to_sse)| {
        async move {
            use tokio::sync::broadcast::error::RecvError;
            let next = loop {
                let r = tokio::select! {
                    r = rx.recv() => r,
                    // Shutdown: end the stream so the server can drain.
                    _ = closing.wait_for(|c| *c) => return None,
                };
                match r {
                    Ok(e) if !sees(&e) || replayed.is_some_and(|r| e.seq <= r) => {}
                    other => break other,
                }
            };
            let event = match next {
                Ok(e) => to_sse(&e),
                Err(RecvError::Lagged(n)) => {
                    metrics.events_lagged.inc_by(n);
                    tracing::warn!(missed = n, "an event stream reader lagged");
                    Event::default().event("lagged").data(format!("{{\"missed\":{n}}}"))
                }
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), (rx, metrics, closing, sees, to_sse)))
        }
    });
    Sse::new(futures_util::stream::iter(head).chain(live)).keep_alive(KeepAlive::default())
}
