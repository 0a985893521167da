//! Commands to nodes over HTTP (CONTRACT §9): `POST
//! /api/v1/devices/{site}/{device}/commands` (the admin, or an engineer of
//! the site) sends one and answers 202 once it is stored and handed to the
//! broker; `GET /api/v1/commands/{id}` says where it stands. The pipeline
//! signs, stores, records and sends ([`crate::ops::commands`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::auth::{Principal, Role};
use super::{ApiError, ask, not_stored, read};
use crate::app::shared::Shared;
use crate::ops::commands::{self, Refusal, Request};

fn refused(e: &Refusal) -> ApiError {
    match e {
        Refusal::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        Refusal::NoCredentials(_) => ApiError::new(StatusCode::CONFLICT, "no_credentials", e.to_string()),
        Refusal::NotForClass { .. } => ApiError::new(StatusCode::BAD_REQUEST, "unsupported_op", e.to_string()),
        Refusal::NotStored(e) => not_stored(e),
    }
}

/// `POST /api/v1/devices/{site}/{device}/commands` with `{"op", "args"}`.
pub(crate) async fn send(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Path((site, device)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    who.require(&[Role::Engineer], "send commands to devices")?;
    who.require_site(&site)?;
    let (op, args) =
        commands::parse_body(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e))?;
    let known = shared
        .registry()
        .with(|r| r.iter().any(|d| d.key.site == site && d.key.device == device));
    let request = Request {
        site,
        device,
        op,
        args,
        by: who.name.clone(),
    };
    let c = ask(&shared, |reply| crate::ops::alerts::Control::Command {
        request: Box::new(request),
        known,
        reply,
    })
    .await?
    .map_err(|e| refused(&e))?;
    tracing::info!(id = %c.id, op = c.op.as_str(), device = %c.to.device, by = %c.by, "command sent");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": c.id, "status": c.status.as_str() })),
    )
        .into_response())
}

/// `GET /api/v1/commands/{id}`.
pub(crate) async fn one(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(&[Role::Engineer, Role::Auditor], "read commands")?;
    let key = id.clone();
    let found = read(&shared, move |s| {
        commands::get(s.conn(), &key).map_err(|e| s.sql_error(e))
    })
    .await?;
    let c = found.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no command `{id}`")))?;
    who.require_site(&c.to.site)?;
    Ok(Json(commands::view(&c)))
}
