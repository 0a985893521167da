//! Work orders over HTTP: the list (a contractor sees only its own), one
//! order, the contractor steps, and the bureau's monthly report.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, Role};
use super::{ApiError, Query, not_stored, params, parse_time, read};
use crate::app::shared::Shared;
use crate::ops::alerts::{Control, Refusal};
use crate::ops::workorders::OrderQuery;

/// Most orders one request returns.
pub(super) const MAX_ORDERS: usize = 5000;

#[derive(Deserialize)]
pub(super) struct ListParams {
    status: Option<String>,
    contractor: Option<String>,
    site: Option<String>,
    device: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn bad(detail: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
}

/// The query a principal may run: a contractor only its own orders, a
/// scoped token only its compounds.
fn scoped(who: &Principal, p: ListParams) -> Result<OrderQuery, ApiError> {
    if let Some(s) = &p.status
        && s != "open"
        && dispatch::Status::from_name(s).is_none()
    {
        return Err(bad(format!(
            "`status` is open, dispatched, responded, arrived, completed or false_alarm, not `{s}`"
        )));
    }
    if let Some(k) = &p.kind
        && !matches!(k.as_str(), "corrective" | "preventive")
    {
        return Err(bad(format!("`kind` is corrective or preventive, not `{k}`")));
    }
    let contractor = match (&who.role, p.contractor) {
        (Role::Contractor, Some(c)) if Some(&c) != who.contractor.as_ref() => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a contractor token sees only its own work orders",
            ));
        }
        (Role::Contractor, _) => who.contractor.clone(),
        (_, c) => c,
    };
    let sites = match (p.site, &who.sites) {
        (Some(s), _) => {
            who.require_site(&s)?;
            Some(vec![s])
        }
        (None, scope) => scope.clone(),
    };
    Ok(OrderQuery {
        status: p.status,
        contractor,
        sites,
        device: p.device,
        kind: p.kind,
        from: p.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
        to: p.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        limit: p.limit.unwrap_or(500).clamp(1, MAX_ORDERS),
        before: params::cursor_key("work_orders", p.cursor.as_deref())?,
    })
}

/// `GET /api/v1/work-orders?status=&contractor=&site=&device=&kind=&from=&to=&limit=&cursor=`, newest first.
pub(super) async fn list(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(&[Role::Engineer, Role::Contractor, Role::Auditor], "read work orders")?;
    let mut q = scoped(&who, p)?;
    // One more than the page, to know whether there is a next one.
    let limit = q.limit;
    q.limit += 1;
    let mut orders = read(&shared, move |s| {
        crate::ops::workorders::query(s.conn(), &q).map_err(|e| s.sql_error(e))
    })
    .await?;
    let next = params::end_page(&mut orders, limit, "work_orders", |o| json!(o.id));
    Ok(Json(json!({ "work_orders": orders, "next": next })))
}

fn order_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| bad(format!("`{id}` is not a work-order id")))
}

/// The order, if the principal may see it: 404 unknown, 403 somebody else's.
async fn visible(shared: &Shared, who: &Principal, id: u64) -> Result<dispatch::Order, ApiError> {
    let order = read(shared, move |s| {
        crate::ops::workorders::get(s.conn(), id).map_err(|e| s.sql_error(e))
    })
    .await?
    .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no work order {id}")))?;
    if who.role == Role::Contractor && !who.contractor.as_ref().is_some_and(|c| order.concerns(c)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("work order {id} is not dispatched to this contractor"),
        ));
    }
    who.require_site(&order.site)?;
    Ok(order)
}

/// `GET /api/v1/work-orders/{id}`.
pub(super) async fn one(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<dispatch::Order>, ApiError> {
    who.require(&[Role::Engineer, Role::Contractor, Role::Auditor], "read work orders")?;
    Ok(Json(visible(&shared, &who, order_id(&id)?).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StepBody {
    note: Option<String>,
    by: Option<String>,
}

/// `POST /api/v1/work-orders/{id}/respond|arrive|complete|false-alarm`, body
/// optional `{"note": "...", "by": "..."}` (`by` for the admin and engineers
/// stepping on somebody's behalf). Answered once the step is stored.
pub(super) async fn step(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Path((id, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<dispatch::Order>, ApiError> {
    who.require(&[Role::Engineer, Role::Contractor], "step work orders")?;
    let id = order_id(&id)?;
    let step = dispatch::StepKind::from_path(&step).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("`{step}` is not a step (respond, arrive, complete, false-alarm)"),
        )
    })?;
    let body: StepBody = if body.iter().all(u8::is_ascii_whitespace) {
        StepBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not {{\"note\": \"...\"}}: {e}")))?
    };
    if body.note.as_ref().is_some_and(|n| n.len() > 2000) || body.by.as_ref().is_some_and(|b| b.len() > 64) {
        return Err(bad("`note` is at most 2000 bytes, `by` at most 64".into()));
    }
    let order = visible(&shared, &who, id).await?;
    let by = match (who.role, body.by.filter(|b| !b.trim().is_empty())) {
        (Role::Contractor, _) => dispatch::Actor {
            name: who.name.clone(),
            contractor: who.contractor.clone(),
        },
        (_, Some(b)) => dispatch::Actor {
            name: format!("{b} (by {})", who.name),
            contractor: None,
        },
        (_, None) => dispatch::Actor {
            name: who.name.clone(),
            contractor: None,
        },
    };
    let note = body.note;
    let answer = super::ask(&shared, |reply| Control::Step {
        id,
        step,
        by,
        note,
        reply,
    })
    .await?;
    match answer {
        Ok(o) => Ok(Json(o)),
        Err(Refusal::Refused(dispatch::StepError::NotFound(_))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("work order {id} is {}: it takes no more steps", order.status.as_str()),
        )),
        Err(Refusal::Refused(e @ dispatch::StepError::NotYours { .. })) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()))
        }
        Err(Refusal::Refused(e)) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())),
        Err(Refusal::NotStored(e)) => Err(not_stored(&e)),
    }
}

#[derive(Deserialize)]
pub(super) struct ReportParams {
    site: Option<String>,
    month: Option<String>,
    format: Option<String>,
}

/// `GET /api/v1/reports/monthly?site=&month=2026-11&format=json|csv`: the
/// bureau's report of one compound and month (UTC+8 calendar months).
pub(super) async fn report(
    State(shared): State<Shared>,
    Extension(who): Extension<Principal>,
    Query(p): Query<ReportParams>,
) -> Result<Response, ApiError> {
    who.require(&[Role::Engineer, Role::Auditor], "read reports")?;
    let site = p.site.ok_or_else(|| bad("`site` is required".into()))?;
    // It names the CSV's file in a header: a compound id or nothing (fuzzing found a NUL here answering 500).
    protocol::SiteId::new(&site).map_err(|e| bad(format!("`site` is not a compound id: {e}")))?;
    who.require_site(&site)?;
    let month = p.month.ok_or_else(|| bad("`month` is required (2026-11)".into()))?;
    let month = dispatch::Month::parse(&month).map_err(bad)?;
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => return Err(bad(format!("`format` is json or csv, not `{f}`"))),
    };
    let now = shared.clock().now_ms();
    let s2 = site.clone();
    let m2 = month.clone();
    let (fired, orders) = read(&shared, move |s| {
        crate::ops::workorders::for_report(s.conn(), &s2, &m2).map_err(|e| s.sql_error(e))
    })
    .await?;
    let r = dispatch::MonthlyReport::compute(&site, month, now, &fired, &orders);
    if !csv {
        // The month's frequent-fault flags (电梯故障频发) beside the
        // desk's figures: per device, for the compound, per contractor.
        let flags = crate::api::health::frequent_report(&shared, &site, r.month.from, r.month.to).await?;
        let mut answer = serde_json::to_value(&r)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        if let Some(o) = answer.as_object_mut() {
            o.insert("frequent_faults".into(), serde_json::json!(flags));
        }
        return Ok(Json(answer).into_response());
    }
    let mut out = Vec::new();
    r.write_csv(&mut out)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let name = format!("attachment; filename=\"report-{site}-{}.csv\"", r.month.month);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        out,
    )
        .into_response())
}
