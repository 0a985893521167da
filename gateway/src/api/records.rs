//! Supervision records over HTTP: the list by device and time, the export
//! (JSON or CSV, streamed: four years of records never sit in memory) and
//! the chain's verification. For admins, engineers (their compounds) and
//! auditors; never for contractors.

use std::io::Write;

use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::auth::{Principal, Role};
use super::{ApiError, Query, params, parse_time, read};
use crate::app::shared::Shared;
use crate::ops::supervision::RecordQuery;

/// Most records one list request returns (page with `after`).
pub(super) const MAX_RECORDS: usize = 10_000;

#[derive(Deserialize)]
pub(super) struct Params {
    device: Option<String>,
    site: Option<String>,
    kind: Option<String>,
    subject: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    cursor: Option<String>,
    format: Option<String>,
}

fn query(who: &Principal, p: &Params, limit: usize) -> Result<RecordQuery, ApiError> {
    who.require(&[Role::Engineer, Role::Auditor], "read supervision records")?;
    let sites = match (&p.site, &who.sites) {
        (Some(s), _) => {
            who.require_site(s)?;
            Some(vec![s.clone()])
        }
        (None, scope) => scope.clone(),
    };
    Ok(RecordQuery {
        device: p.device.clone(),
        sites,
        kind: p.kind.clone(),
        subject: p.subject.clone(),
        from: p.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
        to: p.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        after: match params::cursor_key::<u64>("records", p.cursor.as_deref())? {
            Some(seq) => Some(seq.max(p.after.unwrap_or(0))),
            None => p.after,
        },
        limit,
    })
}

/// `GET /api/v1/records?device=&site=&kind=&subject=&from=&to=&after=&limit=`.
pub(super) async fn list(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<Params>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = p.limit.unwrap_or(1000).clamp(1, MAX_RECORDS);
    // One more than the page, to know whether there is a next one.
    let q = query(&who, &p, limit + 1)?;
    let mut page = read(&shared, move |s| {
        crate::ops::supervision::list(s.conn(), &q).map_err(|e| s.sql_error(e))
    })
    .await?;
    let next = params::end_page(&mut page, limit, "records", |e| json!(e.seq));
    let last = page.last().map(|e| e.seq);
    let records: Vec<serde_json::Value> = page
        .into_iter()
        .map(|e| {
            let label = super::labels::record_zh(&e.kind, &e.body);
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("label_zh".into(), label.into());
            }
            v
        })
        .collect();
    // `next_after` is the older way to page (`?after=`), kept for clients of it.
    Ok(Json(json!({ "records": records, "next": next, "next_after": last })))
}

/// Hands what a blocking writer writes to a streamed response, 64 KiB at a
/// time; a client that went away stops the writer.
struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// `GET /api/v1/records/export?format=json|csv` with the filters of the
/// list: the whole chain (or the selection) with its signed checkpoints, for
/// a third party to verify without the database (docs/records.md).
pub(super) async fn export(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let q = query(&who, &p, usize::MAX)?;
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`format` is json or csv, not `{f}`"),
            ));
        }
    };
    let dir = shared.data_dir().to_owned();
    let key = shared.records_key().to_string();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let mut w = ChunkWriter { buf: Vec::new(), tx };
        let result = crate::store::Store::open(&dir)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|s| {
                crate::ops::supervision::export(&s, &q, Some(&key), csv, &mut w).map_err(std::io::Error::other)
            })
            .and_then(|()| w.flush());
        if let Err(e) = result {
            tracing::error!(error = %e, "record export failed");
            // The stream ends with an error: the client sees a broken body,
            // never a short export that looks whole.
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let (kind, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/json", "json")
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"records.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /api/v1/records/verify`: the whole chain, end to end, against the
/// gateway's own key: `{"ok", "count", "head", "checkpoints", "problem", ...}`.
pub(super) async fn verify(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    who.require(&[Role::Engineer, Role::Auditor], "verify the record chain")?;
    let Some(permit) = shared.start_verifying() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "verification_running",
            "a verification of the chain is running; its result is on its way to whoever asked: try again when it ends",
        ));
    };
    let streamed = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let key = shared.records_key().to_string();
    let dir = shared.data_dir().to_owned();
    let (tx, rx) = mpsc::channel::<(u64, u64)>(4);
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let store = crate::store::Store::open(&dir).map_err(|e| e.to_string())?;
        crate::ops::supervision::verify_with_progress(store.conn(), Some(&key), |checked, total| {
            // A reader that does not keep up misses progress, never the result.
            let _ = tx.try_send((checked, total));
        })
        .map_err(|e| e.to_string())
    });
    let outcome = |r: Result<Result<records::Verification, String>, tokio::task::JoinError>| match r {
        Ok(Ok(v)) => {
            if !v.ok {
                tracing::error!(problem = ?v.problem, "the record chain does not verify");
            }
            Ok(v)
        }
        Ok(Err(e)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e)),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    };
    if !streamed {
        drop(rx);
        return Ok(Json(outcome(job.await)?).into_response());
    }
    // `event: progress` `{"checked","total"}` while it reads, then
    // `event: result` with what the plain GET answers (or `event: error`).
    let progress = tokio_stream_of(rx).map(|(checked, total)| {
        Ok::<_, std::convert::Infallible>(
            Event::default()
                .event("progress")
                .data(json!({ "checked": checked, "total": total }).to_string()),
        )
    });
    let result = futures_util::stream::once(async move {
        let event = match outcome(job.await) {
            Ok(v) => Event::default()
                .event("result")
                .data(serde_json::to_string(&v).unwrap_or_default()),
            Err(e) => Event::default()
                .event("error")
                .data(json!({ "error": e.error, "detail": e.detail }).to_string()),
        };
        Ok(event)
    });
    Ok(Sse::new(progress.chain(result)).into_response())
}

/// The receiver as a stream that ends when its sender is dropped.
fn tokio_stream_of<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}
