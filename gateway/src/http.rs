//! The HTTP API (first part): health, metrics, the device registry and stored
//! series, behind bearer-token auth. Errors are JSON `{"error", "detail"}`.

use std::time::UNIX_EPOCH;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
