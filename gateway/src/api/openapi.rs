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
    /// The schema (in [`schemas`]) of a list's items, or of the answer.
    pub schema: Option<&'static str>,
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
/// Routes that answer 202: taken, the outcome comes later.
const ACCEPTED: &[&str] = &["/api/v1/devices/{site}/{device}/commands"];
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
        schema: None,
    },
    Route {
        method: "GET",
        path: "/readyz",
        access: Access::Public,
        summary: "readiness: subscribed to the broker, the store takes writes, the disk has room",
        params: &[],
        list: None,
        produces: None,
        schema: None,
    },
    Route {
        method: "GET",
        path: "/metrics",
        access: Access::Roles(ENG),
        summary: "Prometheus metrics (OpenMetrics text)",
        params: &[],
        list: None,
        produces: Some("application/openmetrics-text"),
        schema: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/me",
        access: Access::Any,
        summary: "who this token is: name, role, sites, contractor",
        params: &[],
        list: None,
        produces: None,
        schema: Some("Me"),
    },
    Route {
        method: "GET",
        path: "/api/v1/labels",
        access: Access::Any,
        summary: "Chinese and English labels of every code, class, state, status, severity, record kind, role and metric",
        params: &[],
        list: None,
        produces: None,
        schema: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/openapi.json",
        access: Access::Any,
        summary: "this description",
        params: &[],
        list: None,
        produces: None,
        schema: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/devices",
        access: Access::Any,
        summary: "the device registry: class, site, online state, last seen, firmware",
        params: &[SITE, q("class", "the device class"), LIMIT, CURSOR],
        list: Some("devices"),
        produces: None,
        schema: Some("Device"),
    },
    Route {
        method: "POST",
        path: "/api/v1/devices",
        access: Access::Admin,
        summary: "provision a device: its MQTT password and command key, shown once",
        params: &[],
        list: None,
        produces: None,
        schema: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/devices/credentials",
        access: Access::Roles(&["auditor"]),
        summary: "who is provisioned, when, revoked when (no secrets)",
        params: &[LIMIT, CURSOR],
        list: Some("credentials"),
        produces: None,
        schema: Some("Credential"),
    },
    Route {
        method: "DELETE",
        path: "/api/v1/devices/{site}/{device}",
        access: Access::Admin,
        summary: "revoke a device: refused from then on, its sessions closed",
        params: &[path("site", "the compound"), path("device", "the device id")],
        list: None,
        produces: None,
        schema: None,
    },
    Route {
        method: "POST",
        path: "/api/v1/devices/{site}/{device}/commands",
        access: Access::Roles(ENG),
        summary: "send a signed command ({op, args}) to a provisioned device; 202 {id, status: sent} once stored and handed to the broker",
        params: &[path("site", "the compound"), path("device", "the device id")],
        list: None,
        produces: None,
        schema: Some("CommandSent"),
    },
    Route {
        method: "GET",
        path: "/api/v1/commands/{id}",
        access: Access::Roles(HISTORY),
        summary: "one command: sent, acked, refused (with the node's error) or expired (no ack within 30 s)",
        params: &[path("id", "the command")],
        list: None,
        produces: None,
        schema: Some("Command"),
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
        schema: Some("Point"),
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
        schema: Some("Alert"),
    },
    Route {
        method: "POST",
        path: "/api/v1/alerts/{id}/ack",
        access: Access::Roles(ENG),
        summary: "acknowledge a firing alert; answered once stored",
        params: &[path("id", "the alert")],
        list: None,
        produces: None,
        schema: Some("Alert"),
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
        schema: Some("WorkOrder"),
    },
    Route {
        method: "GET",
        path: "/api/v1/work-orders/{id}",
        access: Access::Roles(READERS),
        summary: "one work order",
        params: &[path("id", "the order")],
        list: None,
        produces: None,
        schema: Some("WorkOrder"),
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
        schema: Some("WorkOrder"),
    },
    Route {
        method: "GET",
        path: "/api/v1/reports/monthly",
        access: Access::Roles(HISTORY),
        summary: "the bureau's monthly report of a compound (JSON or CSV)",
        params: &[SITE, q("month", "YYYY-MM"), q("format", "json or csv")],
        list: None,
        produces: None,
        schema: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/health",
        access: Access::Roles(HISTORY),
        summary: "health per device and compound from history, with reasons; the devices to inspect first",
        params: &[
            SITE,
            q("class", "elevator, firepump or charger"),
            DEVICE,
            q("top", "how many devices to inspect first (5; at most 100)"),
        ],
        list: None,
        produces: None,
        schema: Some("Health"),
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
        schema: Some("Record"),
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
        schema: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/records/verify",
        access: Access::Roles(HISTORY),
        summary: "verify the chain end to end; with Accept: text/event-stream, progress events then the result",
        params: &[],
        list: None,
        produces: None,
        schema: None,
    },
    Route {
        method: "GET",
        path: "/api/v1/events",
        access: Access::Any,
        summary: "Server-Sent Events of alert, work-order and record changes, with ids; resume with Last-Event-ID",
        params: &[],
        list: None,
        produces: Some("text/event-stream"),
        schema: None,
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
    let item = r.schema.map_or_else(
        || json!({ "type": "object" }),
        |n| json!({ "$ref": format!("#/components/schemas/{n}") }),
    );
    let ok = match (r.list, r.produces) {
        (Some(list), _) => json!({
            "description": "a page",
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": [list, "next"],
                "properties": {
                    list: { "type": "array", "items": item },
                    "next": { "type": ["string", "null"], "description": "the cursor of the next page; null on the last" }
                }
            } } }
        }),
        (None, Some(ct)) => json!({ "description": "OK", "content": { ct: { "schema": { "type": "string" } } } }),
        (None, None) => {
            json!({ "description": "OK", "content": { "application/json": { "schema": item } } })
        }
    };
    let mut responses = Map::new();
    // Taken, not yet done: a command's outcome comes later (GET /api/v1/commands/{id}).
    let success = if ACCEPTED.contains(&r.path) { "202" } else { "200" };
    responses.insert(success.into(), ok);
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

fn int(doc: &str) -> Value {
    json!({ "type": "integer", "description": doc })
}
fn text(doc: &str) -> Value {
    json!({ "type": "string", "description": doc })
}
fn maybe(t: &str, doc: &str) -> Value {
    json!({ "type": [t, "null"], "description": doc })
}
fn flag(doc: &str) -> Value {
    json!({ "type": "boolean", "description": doc })
}
fn list_of(t: &str, doc: &str) -> Value {
    json!({ "type": "array", "items": { "type": t }, "description": doc })
}

/// An object schema: every property listed, the ones always present required.
fn object(required: &[&str], props: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = props.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    json!({ "type": "object", "required": required, "properties": properties })
}

const MS: &str = "ms since the Unix epoch (UTC)";

/// The answers' objects, field by field. A test (`gateway/tests/gateway/api.rs`)
/// checks real answers against them: every field an answer carries is
/// described, and every required one is there.
#[must_use]
pub fn schemas() -> Value {
    let mut all = who_and_what();
    if let (Some(a), Value::Object(b)) = (all.as_object_mut(), history()) {
        a.extend(b);
    }
    all
}

/// Who asks, devices and their series.
fn who_and_what() -> Value {
    json!({
        "Error": object(&["error", "detail"], &[
            ("error", text("a code: bad_request, forbidden, not_found, ...")),
            ("detail", text("what is wrong, for people")),
        ]),
        "Me": object(&["name", "role", "sites", "contractor"], &[
            ("name", text("the token's name, stamped on what it does")),
            ("role", text("admin, engineer, contractor or auditor")),
            ("sites", json!({ "type": ["array", "null"], "items": { "type": "string" }, "description": "the compounds in scope; null: all" })),
            ("contractor", maybe("string", "for a contractor: the contact its orders go to")),
        ]),
        "Device": object(&["site", "class", "device", "status", "last_seen_ms", "interval_s", "lost", "duplicates", "reordered"], &[
            ("site", text("the compound")),
            ("class", text("elevator, firepump or charger")),
            ("device", text("the device id")),
            ("status", text("online, offline (after a death) or stale (3 intervals silent)")),
            ("last_seen_ms", int(MS)),
            ("fw", maybe("string", "firmware version from its last birth")),
            ("model", maybe("string", "model from its last birth")),
            ("interval_s", int("its reporting interval")),
            ("bdseq", maybe("integer", "its session number")),
            ("lost", int("messages missing from its sessions")),
            ("duplicates", int("duplicates dropped")),
            ("reordered", int("late messages that filled a gap")),
            ("clock_skew_ms", maybe("integer", "its clock minus the gateway's")),
            ("building", json!({ "type": "string", "description": "its building, as configured (absent otherwise)" })),
        ]),
        "Credential": object(&["site", "class", "device", "username", "created"], &[
            ("site", text("the compound")),
            ("class", text("the device class")),
            ("device", text("the device id")),
            ("username", text("its MQTT user name, {site}/{device}")),
            ("created", int(MS)),
            ("revoked", maybe("integer", MS)),
            ("certificate_sha256", maybe("string", "its pinned client certificate")),
        ]),
        "CommandSent": object(&["id", "status"], &[
            ("id", text("the command's id, echoed by the node's ack")),
            ("status", text("sent")),
        ]),
        "Command": object(&["id", "site", "class", "device", "op", "args", "status", "error", "by", "sent_at", "expires_at", "settled_at"], &[
            ("id", text("the command's id")),
            ("site", text("the compound")),
            ("class", text("the device class")),
            ("device", text("the device id")),
            ("op", text("cut_off, clear, self_test, set_threshold or hold_doors")),
            ("args", json!({ "type": "object", "description": "port, name and value, or hold, as the op takes them" })),
            ("status", text("sent, acked, refused or expired")),
            ("error", maybe("string", "the node's reason for a refusal, or why it expired")),
            ("by", text("who issued it: a token's name, rule:smoke, rule:ebike_in_car, rule:thresholds or schedule:self_test")),
            ("sent_at", int(MS)),
            ("expires_at", int("signed to expire then (sent_at + 30 s), ms since the epoch")),
            ("settled_at", maybe("integer", MS)),
        ]),
        "Point": object(&["ts", "received", "value", "hist"], &[
            ("ts", int("device time, ms since the epoch")),
            ("received", int("gateway time, ms since the epoch")),
            ("value", json!({ "type": "number", "description": "the value (flags as 0/1)" })),
            ("hist", flag("replayed from the node's buffer")),
        ]),
    })
}

/// What happened: alerts, work orders, records.
fn history() -> Value {
    json!({
        "Alert": object(&["id", "site", "class", "device", "code", "severity", "state", "since", "label_zh"], &[
            ("id", int("the episode: unique, never reused")),
            ("site", text("the compound")),
            ("class", text("the device class, or gateway for root causes")),
            ("device", text("the device id")),
            ("code", text("the event code (labels: /api/v1/labels)")),
            ("port", maybe("integer", "the charging port, for per-port codes")),
            ("severity", text("critical, major, minor or info")),
            ("state", text("pending, firing, acknowledged or resolved")),
            ("since", int(MS)),
            ("fired_at", maybe("integer", MS)),
            ("acked_at", maybe("integer", MS)),
            ("acked_by", maybe("string", "who acknowledged it")),
            ("resolved_at", maybe("integer", MS)),
            ("flapping", flag("it fires and clears too often to notify each time")),
            ("data", text("fresh, no_data or stale: the state of its inputs")),
            ("inhibited_by", maybe("string", "the root cause that holds its notification back")),
            ("maintenance", flag("its device is under maintenance: recorded, not dispatched")),
            ("sources", list_of("string", "the rules (and node) that hold it")),
            ("building", maybe("string", "its building, as configured")),
            ("evidence", list_of("object", "the values when it fired: {metric, port, value, at, text}")),
            ("label_zh", text("the code's Chinese label")),
        ]),
        "WorkOrder": object(&["id", "kind", "site", "class", "device", "code", "severity", "status", "created_at", "deadlines", "steps", "label_zh"], &[
            ("id", int("its number: unique, never reused")),
            ("kind", text("corrective or preventive")),
            ("site", text("the compound")),
            ("class", text("the device class")),
            ("device", text("the device id")),
            ("code", text("the fault code, or the duty's name")),
            ("port", json!({ "type": "integer", "description": "the charging port, for per-port codes (absent otherwise)" })),
            ("severity", text("the alert's severity, info for duties")),
            ("status", text("dispatched, responded, arrived, completed or false_alarm")),
            ("contractor", maybe("string", "who has it now")),
            ("primary", maybe("string", "who it went to first")),
            ("backup", maybe("string", "who it goes to after a missed deadline")),
            ("manager", maybe("string", "the property manager told of escalations")),
            ("created_at", int(MS)),
            ("fault_since", int(MS)),
            ("deadlines", json!({ "type": "object", "description": "respond, arrive, complete, bureau: ms since the epoch (respond/arrive/bureau may be null)" })),
            ("responded_at", maybe("integer", MS)),
            ("arrived_at", maybe("integer", MS)),
            ("closed_at", maybe("integer", MS)),
            ("steps", list_of("object", "every step: {status, at, by, note}")),
            ("escalations", list_of("object", "every missed deadline: {at, missed, due, actions}")),
            ("bureau_flagged", flag("flagged to the bureau")),
            ("alerts", list_of("integer", "the alerts it answers")),
            ("alert_resolved_at", maybe("integer", MS)),
            ("evidence", json!({ "type": "object", "description": "at_fire, series, sources: what the device reported around the fault" })),
            ("building", json!({ "type": "string", "description": "its building, as configured (absent otherwise)" })),
            ("label_zh", text("the code's Chinese label")),
        ]),
        "Health": object(&["at", "sites", "devices", "inspect_first"], &[
            ("at", int(MS)),
            ("sites", list_of("object", "per compound: {site, score (mean of its devices), devices, worst}")),
            ("devices", list_of("object", "per device: {site, class, device, score (0-100, 100 healthy), reasons}; a reason: {metric or fault, port, label, value, baseline, unit, trend, window {from, to}, points} (docs/judgement.md)")),
            ("inspect_first", list_of("object", "本周优先检查: the least healthy devices, {site, class, device, score, reasons (the three heaviest)}")),
        ]),
        "Record": object(&["seq", "at", "kind", "site", "class", "device", "subject", "body", "prev", "hash", "label_zh"], &[
            ("seq", int("its place in the chain")),
            ("at", int(MS)),
            ("kind", text("what kind of record (labels: record_kinds)")),
            ("site", text("the compound, or empty")),
            ("class", text("the device class, or empty")),
            ("device", text("the device id, or empty")),
            ("subject", text("alert:{id}, order:{id}, config, or empty")),
            ("body", text("JSON text with the details, hashed byte for byte")),
            ("prev", text("the hash of the record before it")),
            ("hash", text("SHA-256 over the record and prev (records.md)")),
            ("label_zh", text("its kind's Chinese label, and its code's")),
        ]),
    })
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
                "schemas": schemas()
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
