//! The HTTP API: health, metrics, the device registry, stored series, alerts
//! and their acknowledgement, and the live event stream, behind bearer-token
//! auth. Errors are JSON `{"error", "detail"}`.

use std::time::UNIX_EPOCH;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::registry::{Registry, Status};
use crate::service::{Shared, now_ms};
use crate::store::{Point, SeriesQuery, Store};

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
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
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

/// The router, with auth on everything but `/healthz`.
pub fn router(shared: Shared) -> Router {
    let api = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/series", get(series))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/{id}/ack", post(ack))
        .route("/api/v1/events", get(events))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
        .with_state(shared)
}

async fn auth(State(shared): State<Shared>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )
        .into_response(),
        Some(t) if constant_time_eq(t.as_bytes(), shared.admin_token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this token may not do that").into_response(),
    }
}

/// Compares without leaking the position of the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(shared): State<Shared>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &shared.metrics.register())
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

async fn devices(State(shared): State<Shared>) -> Json<serde_json::Value> {
    let now = now_ms();
    let reg = shared
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let list: Vec<DeviceView> = reg
        .iter()
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
    Json(json!({ "devices": list }))
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
fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
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
    Query(p): Query<SeriesParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let missing = |f: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{f}` is required"));
    let device = p.device.ok_or_else(|| missing("device"))?;
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
        site: p.site,
        metric: metric.clone(),
        port: p.port,
        from,
        to,
        limit: p.limit.unwrap_or(MAX_POINTS).min(MAX_POINTS),
    };
    let dir = shared.data_dir.clone();
    let points: Vec<Point> = tokio::task::spawn_blocking(move || Store::open(&dir).and_then(|s| s.series(&q)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()))?;
    Ok(Json(
        json!({ "device": device, "metric": metric, "port": p.port, "points": points }),
    ))
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
    Query(p): Query<AlertParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    };
    let mut list: Vec<alerting::AlertView> = if state.as_deref() == Some("resolved") {
        Vec::new()
    } else {
        let mut open: Vec<_> = shared.alerts.open_alerts().into_iter().filter(keep).collect();
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
            limit: limit.saturating_sub(list.len()),
        };
        let dir = shared.data_dir.clone();
        let resolved = tokio::task::spawn_blocking(move || Store::open(&dir).and_then(|s| s.alerts(&q)))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()))?;
        list.extend(resolved);
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
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<alerting::AlertView>, ApiError> {
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
    let by = body
        .by
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "admin".into());
    if by.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`by` is at most 64 bytes",
        ));
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the pipeline did not answer; try again",
        )
    };
    shared
        .alerts
        .control
        .send(crate::alerts::Control::Ack { id, by, reply })
        .await
        .map_err(|_| busy())?;
    match tokio::time::timeout(std::time::Duration::from_secs(10), answer).await {
        Ok(Ok(Ok(view))) => Ok(Json(view)),
        Ok(Ok(Err(e @ alerting::AckError::Unknown(_)))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))
        }
        Ok(Ok(Err(e @ alerting::AckError::NotFiring { .. }))) => {
            Err(ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()))
        }
        _ => Err(busy()),
    }
}

/// `GET /api/v1/events`: alert changes, notifications, work-order intents and
/// records as Server-Sent Events. A reader too slow for the stream is told how
/// many events it missed (`event: lagged`), and they are counted.
async fn events(
    State(shared): State<Shared>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = shared.alerts.events.subscribe();
    let metrics = shared.metrics.clone();
    let closing = shared.alerts.closing.subscribe();
    let stream = futures_util::stream::unfold((rx, metrics, closing), |(mut rx, metrics, mut closing)| async move {
        use tokio::sync::broadcast::error::RecvError;
        let next = tokio::select! {
            r = rx.recv() => r,
            // Shutdown: end the stream so the server can drain.
            _ = closing.wait_for(|c| *c) => return None,
        };
        let event = match next {
            Ok(e) => Event::default().event(e.0).data(e.1.clone()),
            Err(RecvError::Lagged(n)) => {
                metrics.events_lagged.inc_by(n);
                tracing::warn!(missed = n, "an event stream reader lagged");
                Event::default().event("lagged").data(format!("{{\"missed\":{n}}}"))
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, metrics, closing)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
