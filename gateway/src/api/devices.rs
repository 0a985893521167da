//! Device provisioning over HTTP (CONTRACT §8), admin only: `POST
//! /api/v1/devices` shows a device's password and command key once;
//! `DELETE /api/v1/devices/{site}/{device}` revokes it and closes its
//! connections at once; `GET /api/v1/devices/credentials` lists who is
//! provisioned (no secrets). Changes go through the pipeline, which owns the
//! record chain: the answer comes once the credential and its record are
//! stored together.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::auth::{Principal, Role};
use super::{ApiError, Query, ask, not_stored, params, read};
use crate::app::shared::Shared;
use crate::ops::provisioning::{self, NewDevice, ProvisionError};
use crate::store::credentials::{self, Credential};

fn refused(e: &ProvisionError) -> ApiError {
    match e {
        ProvisionError::Invalid { .. } => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        ProvisionError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        ProvisionError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        ProvisionError::Secrets(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// The stored credential of `site`/`device`, read on a blocking thread.
async fn existing(shared: &Shared, site: String, device: String) -> Result<Option<Credential>, ApiError> {
    read(shared, move |s| {
        credentials::get(s.conn(), &site, &device).map_err(|e| s.sql_error(e))
    })
    .await
}

/// Hands the change and its record to the pipeline and waits until stored.
async fn store(
    shared: &Shared,
    change: credentials::Change,
    record: Option<records::NewRecord>,
) -> Result<(), ApiError> {
    ask(shared, |reply| crate::ops::alerts::Control::Credential {
        change: Box::new(change),
        record,
        reply,
    })
    .await?
    .map_err(|e| not_stored(&e))
}

/// `POST /api/v1/devices`.
pub(crate) async fn add(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    who.require(&[], "provision devices")?;
    let new: NewDevice = params::json_body(&body)?;
    let id = provisioning::identity(&new).map_err(|e| refused(&e))?;
    let found = existing(&shared, id.site.clone(), id.device.clone()).await?;
    let now = shared.clock().now_ms();
    // Argon2 (tens of milliseconds): off the runtime's workers.
    let made = tokio::task::spawn_blocking(move || provisioning::provision(&new, found.as_ref(), now, &who.name))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| refused(&e))?;
    store(&shared, made.change, made.record).await?;
    // A rotated device's old password stops working at once.
    shared.shut_out(&id.username());
    tracing::info!(username = %id.username(), "device provisioned");
    Ok((StatusCode::CREATED, Json(made.answer)).into_response())
}

/// `DELETE /api/v1/devices/{site}/{device}`.
pub(crate) async fn revoke(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Path((site, device)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    who.require(&[], "revoke devices")?;
    let found = existing(&shared, site.clone(), device.clone()).await?;
    let now = shared.clock().now_ms();
    let (change, record) =
        provisioning::revoke(&site, &device, found.as_ref(), now, &who.name).map_err(|e| refused(&e))?;
    store(&shared, change, record).await?;
    let username = crate::identity::username(&site, &device);
    shared.shut_out(&username);
    tracing::info!(%username, "device revoked; its connections closed");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/devices/credentials`: admin and auditors (no secrets in it).
pub(crate) async fn list(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(&[Role::Auditor], "list device credentials")?;
    let limit = p.limit.unwrap_or(1000).clamp(1, 10_000);
    let after: Option<(String, String)> = params::cursor_key("credentials", p.cursor.as_deref())?;
    let all = read(&shared, |s| credentials::list(s.conn()).map_err(|e| s.sql_error(e))).await?;
    let mut page: Vec<&Credential> = all
        .iter()
        .filter(|c| who.sees_site(&c.identity.site))
        .filter(|c| {
            after
                .as_ref()
                .is_none_or(|(s, d)| (&c.identity.site, &c.identity.device) > (s, d))
        })
        .take(limit + 1)
        .collect();
    let next = params::end_page(&mut page, limit, "credentials", |c| {
        serde_json::json!([c.identity.site, c.identity.device])
    });
    let rows: Vec<_> = page.into_iter().map(provisioning::listed).collect();
    Ok(Json(serde_json::json!({ "credentials": rows, "next": next })))
}

/// `?limit=&cursor=` of the credentials list.
#[derive(serde::Deserialize)]
pub(crate) struct ListParams {
    limit: Option<usize>,
    cursor: Option<String>,
}
