//! The API described: one table of every route with its roles, parameters
//! and answer, from which `GET /api/v1/openapi.json` (`OpenAPI` 3.1) and the
//! route × role table of `docs/api.md` are made.
//!
//! Why a table rather than annotations on each handler (`utoipa`): the
//! handlers take their parameters as small private structs and answer
//! `serde_json::Value` built in place, so per-handler annotations would
//! restate each of them anyway, and a derive macro crate would add build
//! time for what a page of data says. What keeps the table true is the
//! test `gateway/tests/gateway/openapi.rs`: it asks every route of the
//! table as every role of a running gateway and checks that exactly the
//! roles listed get past the role check, that no route of the router is
//! missing from the table, and that `docs/api.md` holds the table as
//! generated here.

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token (health checks).
    Public,
    /// Every role; what each sees is cut to its scope.
    Any,
    /// These roles and the admin.
    Roles(&'static [&'static str]),
    /// The admin only.
    Admin,
}

impl Access {
    /// Whether a token of `role` passes the role check.
    #[must_use]
    pub fn allows(self, role: &str) -> bool {
        match self {
            Access::Public | Access::Any => true,
            Access::Roles(r) => role == "admin" || r.contains(&role),
            Access::Admin => role == "admin",
        }
    }
}

/// A query or path parameter.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// `path` or `query`.
    pub place: &'static str,
    /// What it means.
    pub doc: &'static str,
}

const fn q(name: &'static str, doc: &'static str) -> Param {
    Param {
        name,
        place: "query",
        doc,
    }
}

const fn path(name: &'static str, doc: &'static str) -> Param {
    Param {
        name,
        place: "path",
        doc,
    }
}

/// One route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The path, `{name}` for path parameters.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What it does, one line.
    pub summary: &'static str,
    /// Its parameters.
    pub params: &'static [Param],
    /// The list key of a paged answer (`alerts`), if it is a list.
    pub list: Option<&'static str>,
    /// The content type of a success, when not JSON.
    pub produces: Option<&'static str>,
}

const LIMIT: Param = q("limit", "most items in the page");
const CURSOR: Param = q("cursor", "`next` of the page before, with the same filters");
const FROM: Param = q(
    "from",
    "from (inclusive): RFC 3339 with an offset, or ms since the epoch",
);
const TO: Param = q("to", "to (exclusive): RFC 3339 with an offset, or ms since the epoch");
const SITE: Param = q("site", "the compound");
const DEVICE: Param = q("device", "the device id");

const ENG: &[&str] = &["engineer"];
const READERS: &[&str] = &["engineer", "contractor", "auditor"];
const HISTORY: &[&str] = &["engineer", "auditor"];

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        access: Access::Public,
        summary: "liveness: the process answers",
        params: &[],
        list: None,
        produces: Some("text/plain"),
    },
    Route {
        method: "GET",
        path: "/readyz",
        access: Access::Public,
        summary: "readiness: subscribed to the broker, the store takes writes, the disk has room",
        params: &[],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/metrics",
        access: Access::Roles(ENG),
        summary: "Prometheus metrics (OpenMetrics text)",
        params: &[],
        list: None,
        produces: Some("application/openmetrics-text"),
    },
    Route {
        method: "GET",
        path: "/api/v1/me",
        access: Access::Any,
        summary: "who this token is: name, role, sites, contractor",
        params: &[],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/labels",
        access: Access::Any,
        summary: "Chinese and English labels of every code, class, state, status, severity, record kind, role and metric",
        params: &[],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/openapi.json",
        access: Access::Any,
        summary: "this description",
        params: &[],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/devices",
        access: Access::Any,
        summary: "the device registry: class, site, online state, last seen, firmware",
        params: &[SITE, q("class", "the device class"), LIMIT, CURSOR],
        list: Some("devices"),
        produces: None,
    },
    Route {
        method: "POST",
        path: "/api/v1/devices",
        access: Access::Admin,
        summary: "provision a device: its MQTT password and command key, shown once",
        params: &[],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/devices/credentials",
        access: Access::Roles(&["auditor"]),
        summary: "who is provisioned, when, revoked when (no secrets)",
        params: &[LIMIT, CURSOR],
        list: Some("credentials"),
        produces: None,
    },
    Route {
        method: "DELETE",
        path: "/api/v1/devices/{site}/{device}",
        access: Access::Admin,
        summary: "revoke a device: refused from then on, its sessions closed",
        params: &[path("site", "the compound"), path("device", "the device id")],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/series",
        access: Access::Any,
        summary: "a stored series, the newest points of the window, oldest first",
        params: &[
            DEVICE,
            SITE,
            q("metric", "the metric"),
            q("port", "the charging port, for port metrics"),
            FROM,
            TO,
            LIMIT,
            CURSOR,
        ],
        list: Some("points"),
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/alerts",
        access: Access::Any,
        summary: "alerts: open ones newest first, then resolved ones by latest change",
        params: &[
            q("state", "pending, firing, acknowledged or resolved"),
            SITE,
            q("class", "the device class"),
            DEVICE,
            q("code", "the event code"),
            LIMIT,
            CURSOR,
        ],
        list: Some("alerts"),
        produces: None,
    },
    Route {
        method: "POST",
        path: "/api/v1/alerts/{id}/ack",
        access: Access::Roles(ENG),
        summary: "acknowledge a firing alert; answered once stored",
        params: &[path("id", "the alert")],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/work-orders",
        access: Access::Roles(READERS),
        summary: "work orders, newest first (a contractor: its own)",
        params: &[
            q("status", "a status, or open"),
            q("contractor", "the contractor"),
            SITE,
            DEVICE,
            q("kind", "corrective or preventive"),
            FROM,
            TO,
            LIMIT,
            CURSOR,
        ],
        list: Some("work_orders"),
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/work-orders/{id}",
        access: Access::Roles(READERS),
        summary: "one work order",
        params: &[path("id", "the order")],
        list: None,
        produces: None,
    },
    Route {
        method: "POST",
        path: "/api/v1/work-orders/{id}/{step}",
        access: Access::Roles(&["engineer", "contractor"]),
        summary: "a step: respond, arrive, complete or false-alarm, with a note; answered once stored",
        params: &[
            path("id", "the order"),
            path("step", "respond, arrive, complete or false-alarm"),
        ],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/reports/monthly",
        access: Access::Roles(HISTORY),
        summary: "the bureau's monthly report of a compound (JSON or CSV)",
        params: &[SITE, q("month", "YYYY-MM"), q("format", "json or csv")],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/records",
        access: Access::Roles(HISTORY),
        summary: "supervision records in chain order",
        params: &[
            DEVICE,
            SITE,
            q("kind", "the record kind"),
            q("subject", "alert:{id}, order:{id}, config"),
            FROM,
            TO,
            q("after", "records after this seq (the older way to page)"),
            LIMIT,
            CURSOR,
        ],
        list: Some("records"),
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/records/export",
        access: Access::Roles(HISTORY),
        summary: "the records for download, streamed",
        params: &[
            q("format", "csv or json"),
            DEVICE,
            SITE,
            q("kind", "the record kind"),
            FROM,
            TO,
        ],
        list: None,
        produces: Some("text/csv"),
    },
    Route {
        method: "GET",
        path: "/api/v1/records/verify",
        access: Access::Roles(HISTORY),
        summary: "verify the chain end to end; with Accept: text/event-stream, progress events then the result",
        params: &[],
        list: None,
        produces: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/events",
        access: Access::Any,
        summary: "Server-Sent Events of alert, work-order and record changes, with ids; resume with Last-Event-ID",
        params: &[],
        list: None,
        produces: Some("text/event-stream"),
    },
];

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn operation(r: &Route) -> Value {
    let params: Vec<Value> = r
        .params
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "in": p.place,
                "required": p.place == "path",
                "description": p.doc,
                "schema": { "type": if matches!(p.name, "limit" | "port" | "after") { "integer" } else { "string" } },
            })
        })
        .collect();
    let ok = match (r.list, r.produces) {
        (Some(list), _) => json!({
            "description": "a page",
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": [list, "next"],
                "properties": {
                    list: { "type": "array", "items": { "type": "object" } },
                    "next": { "type": ["string", "null"], "description": "the cursor of the next page; null on the last" }
                }
            } } }
        }),
        (None, Some(ct)) => json!({ "description": "OK", "content": { ct: { "schema": { "type": "string" } } } }),
        (None, None) => {
            json!({ "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } })
        }
    };
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    responses.insert("400".into(), error_response("a parameter or body that does not parse"));
    if r.access != Access::Public {
        responses.insert("401".into(), error_response("no token, or an unknown one"));
        responses.insert("403".into(), error_response("outside the token's role or scope"));
        responses.insert(
            "429".into(),
            error_response("too many unknown tokens from this address"),
        );
    }
    let roles = match r.access {
        Access::Public => "no token".to_owned(),
        Access::Any => "every role (cut to its scope)".to_owned(),
        Access::Roles(rs) => format!("admin, {}", rs.join(", ")),
        Access::Admin => "admin".to_owned(),
    };
    let mut op = json!({
        "summary": r.summary,
        "description": format!("Roles: {roles}."),
        "operationId": format!("{} {}", r.method.to_lowercase(), r.path),
        "parameters": params,
        "responses": responses,
        "x-roles": roles,
    });
    if r.access == Access::Public {
        op["security"] = json!([]);
    }
    op
}

/// The `OpenAPI` document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        for r in ROUTES {
            let entry = paths.entry(r.path).or_insert_with(|| json!({}));
            entry[r.method.to_lowercase()] = operation(r);
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "fm-gateway API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "The facility-safety gateway's HTTP API (docs/api.md). Every list pages with `limit` and `cursor` and answers `{<items>, next}`; times are RFC 3339 with an offset or ms since the epoch; every refusal is `{\"error\", \"detail\"}`.",
            },
            "servers": [{ "url": "/" }],
            "security": [{ "bearer": [] }],
            "paths": paths,
            "components": {
                "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
                "schemas": {
                    "Error": {
                        "type": "object",
                        "required": ["error", "detail"],
                        "properties": {
                            "error": { "type": "string", "description": "a code: bad_request, forbidden, not_found, ..." },
                            "detail": { "type": "string", "description": "what is wrong, for people" }
                        }
                    }
                }
            }
        })
    })
}

/// The route × role table of `docs/api.md`, in Markdown.
#[must_use]
pub fn markdown_table() -> String {
    const ROLES: [&str; 4] = ["admin", "engineer", "contractor", "auditor"];
    let mut out =
        String::from("| route | admin | engineer | contractor | auditor | what |\n|---|---|---|---|---|---|\n");
    for r in ROUTES {
        let _ = write!(out, "| `{} {}` |", r.method, r.path);
        for role in ROLES {
            let mark = match r.access {
                Access::Public => "open",
                Access::Any if role != "admin" => "✓ scope",
                _ if r.access.allows(role) => "✓",
                _ => "—",
            };
            let _ = write!(out, " {mark} |");
        }
        let _ = writeln!(out, " {} |", r.summary);
    }
    out
}
