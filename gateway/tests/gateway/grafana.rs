//! The Grafana dashboards (`dashboards/grafana/`) against what the gateway
//! really writes and registers:
//!
//! - every dashboard's JSON has the structure Grafana imports (uid, title,
//!   schema version, panels on the grid, data sources by a uid the
//!   provisioning defines, variables that exist);
//! - every measurement, field and tag its Flux queries name is one the
//!   InfluxDB sink writes, taken from the sink's own table
//!   (`gateway::store::influx::schema`), and every `fm_*` metric its
//!   Prometheus query names is one `Metrics::register` registers;
//! - that table is what the encoders write, no more and no less (real
//!   messages, the real alerting engine);
//! - threshold lines are the built-in rule packs' parameters;
//! - alert changes, node events and the overview's counts reach a real
//!   server speaking the InfluxDB v2 write API (VictoriaMetrics) after an
//!   event published over MQTT.
//!
//! So renaming a metric, a field or a tag breaks this test, not a dashboard
//! in the field.

use crate::http;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::store::influx::layout::{FieldType, Measurement};
use gateway::store::influx::{Overview, Tally, encode, encode_alerts, schema};
use protocol::{DeviceClass, Metric, MetricInfo, PortMetric, ValueKind};
use serde_json::Value as Json;

fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/grafana")
}

// ------------------------------------------------------------ provisioning

/// A data source the provisioning defines.
#[derive(Debug, Default, Clone)]
struct DataSource {
    name: String,
    uid: String,
    kind: String,
    version: String,
}

/// The data sources of `provisioning/datasources/*.yaml`. The files keep to
/// a plain subset of YAML (one `- name:` per source, `key: value` lines), so
/// a few lines read them; a line this does not understand fails the test.
fn datasources() -> Vec<DataSource> {
    let dir = grafana_dir().join("provisioning/datasources");
    let mut out = Vec::new();
    for path in files(&dir, "yaml") {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut current: Option<DataSource> = None;
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (key, value) = t.trim_start_matches("- ").split_once(':').unwrap_or((t, ""));
            let value = value.trim().trim_matches('"').to_owned();
            if t.starts_with("- name:") {
                out.extend(current.take());
                current = Some(DataSource {
                    name: value,
                    ..DataSource::default()
                });
                continue;
            }
            let Some(ds) = current.as_mut() else {
                continue;
            };
            match key {
                "uid" => ds.uid = value,
                "type" => ds.kind = value,
                "version" => ds.version = value,
                _ => {}
            }
        }
        out.extend(current.take());
    }
    out
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn the_provisioning_defines_flux_and_prometheus_sources_and_a_folder() {
    let ds = datasources();
    let influx: Vec<_> = ds.iter().filter(|d| d.kind == "influxdb").collect();
    assert_eq!(influx.len(), 1, "{ds:?}");
    assert_eq!(influx[0].version, "Flux", "the dashboards are Flux (InfluxDB 2)");
    assert_eq!(ds.iter().filter(|d| d.kind == "prometheus").count(), 1, "{ds:?}");
    let uids: BTreeSet<_> = ds.iter().map(|d| &d.uid).collect();
    assert_eq!(uids.len(), ds.len(), "uids are unique: {ds:?}");
    assert!(ds.iter().all(|d| !d.uid.is_empty() && !d.name.is_empty()), "{ds:?}");

    let providers = files(&grafana_dir().join("provisioning/dashboards"), "yaml");
    assert_eq!(providers.len(), 1);
    let text = std::fs::read_to_string(&providers[0]).unwrap();
    assert!(text.contains("type: file"), "{text}");
    assert!(text.contains("path: "), "{text}");
}

// ------------------------------------------------------------ dashboards

fn dashboards() -> Vec<(String, Json)> {
    let dir = grafana_dir().join("dashboards");
    let found: Vec<_> = files(&dir, "json")
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    assert!(!found.is_empty(), "no dashboards under {}", dir.display());
    found
}

/// Every panel, rows' collapsed panels included.
fn panels(d: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// A query of a dashboard: where it is, which data source, its text.
struct Query<'a> {
    at: String,
    ds_type: String,
    text: &'a str,
}

/// Every query of a dashboard: panels' targets, variables, annotations.
fn queries<'a>(name: &str, d: &'a Json) -> Vec<Query<'a>> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = if t["datasource"].is_object() {
                &t["datasource"]
            } else {
                &p["datasource"]
            };
            let text = t["query"].as_str().or_else(|| t["expr"].as_str()).unwrap_or("");
            out.push(Query {
                at: format!("{name}: panel `{}` {}", p["title"], t["refId"]),
                ds_type: ds["type"].as_str().unwrap_or("").to_owned(),
                text,
            });
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let text = v["query"]
                .as_str()
                .or_else(|| v["query"]["query"].as_str())
                .unwrap_or("");
            out.push(Query {
                at: format!("{name}: variable {}", v["name"]),
                ds_type: v["datasource"]["type"].as_str().unwrap_or("").to_owned(),
                text,
            });
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if a["builtIn"] == 1 {
            continue;
        }
        let text = a["target"]["query"]
            .as_str()
            .or_else(|| a["target"]["expr"].as_str())
            .or_else(|| a["expr"].as_str())
            .unwrap_or("");
        out.push(Query {
            at: format!("{name}: annotation {}", a["name"]),
            ds_type: a["datasource"]["type"].as_str().unwrap_or("").to_owned(),
            text,
        });
    }
    out
}

/// Whether a text holds Chinese (people-facing text is Chinese first, with
/// English beside it).
fn bilingual(text: &str) -> bool {
    let zh = text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    let en = text.chars().any(|c| c.is_ascii_alphabetic());
    zh && en
}

/// Checks a data source reference against the provisioning.
fn check_ds(at: &str, ds: &Json, sources: &[DataSource], problems: &mut Vec<String>) {
    let (Some(kind), Some(uid)) = (ds["type"].as_str(), ds["uid"].as_str()) else {
        problems.push(format!("{at}: data source must be {{type, uid}}, is {ds}"));
        return;
    };
    if kind == "grafana" || kind == "datasource" {
        return;
    }
    match sources.iter().find(|s| s.uid == uid) {
        Some(s) if s.kind == kind => {}
        Some(s) => problems.push(format!("{at}: data source {uid} is a {}, not a {kind}", s.kind)),
        None => problems.push(format!("{at}: no provisioned data source has uid {uid}")),
    }
}

#[test]
fn every_dashboard_is_importable_and_names_provisioned_sources() {
    let sources = datasources();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for (name, d) in dashboards() {
        let text = serde_json::to_string(&d).unwrap();
        let uid = d["uid"].as_str().unwrap_or("");
        if uid.is_empty() || uid.len() > 40 || !uids.insert(uid.to_owned()) {
            problems.push(format!(
                "{name}: uid `{uid}` must be set, at most 40 characters, unique"
            ));
        }
        let title = d["title"].as_str().unwrap_or("");
        if !bilingual(title) || !titles.insert(title.to_owned()) {
            problems.push(format!("{name}: title `{title}` must be Chinese and English, unique"));
        }
        if d["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
            problems.push(format!(
                "{name}: schemaVersion {} (want 36 or later)",
                d["schemaVersion"]
            ));
        }
        if !d["id"].is_null() {
            problems.push(format!("{name}: `id` must be null: Grafana gives its own"));
        }
        // Provisioned as they are: no import-time inputs or ${DS_...} placeholders.
        if d.get("__inputs").is_some() || d.get("__requires").is_some() || text.contains("${DS_") {
            problems.push(format!(
                "{name}: has __inputs/__requires/${{DS_…}}: name data sources by uid"
            ));
        }
        let mut ids = BTreeSet::new();
        let mut cells: Vec<(String, [u64; 4])> = Vec::new();
        for p in panels(&d) {
            let at = format!("{name}: panel `{}`", p["title"]);
            if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
                problems.push(format!("{at}: id {} missing or repeated", p["id"]));
            }
            if !p["title"].as_str().is_some_and(bilingual) {
                problems.push(format!("{at}: the title must be Chinese and English"));
            }
            let g = &p["gridPos"];
            let grid = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap_or(u64::MAX));
            if grid.contains(&u64::MAX) || grid[0] + grid[2] > 24 || grid[2] == 0 || grid[3] == 0 {
                problems.push(format!("{at}: gridPos {g} is not on the 24-column grid"));
            } else {
                for (other, o) in &cells {
                    let apart = grid[0] + grid[2] <= o[0]
                        || o[0] + o[2] <= grid[0]
                        || grid[1] + grid[3] <= o[1]
                        || o[1] + o[3] <= grid[1];
                    if !apart {
                        problems.push(format!("{at}: overlaps `{other}`"));
                    }
                }
                cells.push((p["title"].to_string(), grid));
            }
            if p["type"] == "row" {
                continue;
            }
            if p["type"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{at}: no type"));
            }
            check_ds(&at, &p["datasource"], &sources, &mut problems);
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no queries"));
            }
            let mut refs = BTreeSet::new();
            for t in &targets {
                if !t["refId"].as_str().is_some_and(|r| refs.insert(r.to_owned())) {
                    problems.push(format!("{at}: refId {} missing or repeated", t["refId"]));
                }
                if t["datasource"].is_object() {
                    check_ds(&at, &t["datasource"], &sources, &mut problems);
                }
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["datasource"].is_object() {
                check_ds(
                    &format!("{name}: variable {}", v["name"]),
                    &v["datasource"],
                    &sources,
                    &mut problems,
                );
            }
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            check_ds(
                &format!("{name}: annotation {}", a["name"]),
                &a["datasource"],
                &sources,
                &mut problems,
            );
        }
        // Every variable a query uses is defined (or one of Grafana's own).
        let defined: BTreeSet<String> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect();
        for q in queries(&name, &d) {
            if q.text.trim().is_empty() {
                problems.push(format!("{}: empty query", q.at));
            }
            let kind_ok = match q.ds_type.as_str() {
                "influxdb" => !q.text.contains("SELECT "),
                "prometheus" => true,
                other => {
                    problems.push(format!("{}: data source type {other}", q.at));
                    true
                }
            };
            if !kind_ok {
                problems.push(format!("{}: InfluxQL; the dashboards are Flux", q.at));
            }
            for var in grafana_vars(q.text) {
                if !var.starts_with("__") && !defined.contains(&var) {
                    problems.push(format!("{}: variable ${var} is not defined", q.at));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        [
            "fm-overview",
            "fm-elevators",
            "fm-firewater",
            "fm-charging",
            "fm-gateway"
        ]
        .iter()
        .all(|u| uids.contains(*u)),
        "{uids:?}"
    );
}

/// Grafana variables a query uses: `$name`, `${name}`, `${name:format}`, `[[name]]`.
fn grafana_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let word = |from: usize| -> String {
        text[from..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for i in 0..b.len() {
        if b[i] == b'$' {
            let name = if b.get(i + 1) == Some(&b'{') {
                word(i + 2)
            } else {
                word(i + 1)
            };
            if !name.is_empty() {
                out.insert(name);
            }
        } else if b[i] == b'[' && b.get(i + 1) == Some(&b'[') {
            let name = word(i + 2);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

// ------------------------------------------------------------ Flux

/// A token of Flux, as far as these checks need one.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    /// A Grafana variable (`${site:json}`), replaced before Flux sees it.
    Var(String),
    Op(String),
}

fn lex(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '"' {
            let mut s = String::new();
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if let Some(&x) = c.get(i) {
                    s.push(x);
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if ch == '$' {
            let mut s = String::new();
            i += 1;
            if c.get(i) == Some(&'{') {
                while i < c.len() && c[i] != '}' {
                    s.push(c[i]);
                    i += 1;
                }
                i += 1;
            } else {
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    s.push(c[i]);
                    i += 1;
                }
            }
            out.push(Tok::Var(s.trim_start_matches('{').to_owned()));
        } else if ch.is_alphabetic() || ch == '_' {
            let mut s = String::new();
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                s.push(c[i]);
                i += 1;
            }
            out.push(Tok::Ident(s));
        } else if ch.is_ascii_digit() {
            let mut s = String::new();
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '.') {
                s.push(c[i]);
                i += 1;
            }
            out.push(Tok::Num(s));
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["==", "!=", "=~", "!~", "|>", "=>", "<=", ">="].contains(&two.as_str()) {
                out.push(Tok::Op(two));
                i += 2;
            } else {
                out.push(Tok::Op(ch.to_string()));
                i += 1;
            }
        }
    }
    out
}

/// What one Flux query names.
#[derive(Debug, Default)]
struct FluxUse {
    measurements: BTreeSet<String>,
    /// `r._field == "…"`.
    fields: BTreeSet<String>,
    /// Columns read: `r.x`, `r["x"]`, `columns: […]`, `column: "…"`, ….
    columns: BTreeSet<String>,
    /// Tags named by `tag: "…"` (schema.tagValues).
    tags: BTreeSet<String>,
    /// `r.x == "v"` comparisons.
    compared: BTreeSet<(String, String)>,
    /// Columns the query makes itself (`map(fn: (r) => ({r with x: …}))`).
    made: BTreeSet<String>,
    /// `v.x`: Grafana's Flux macros.
    macros: BTreeSet<String>,
}

fn is(t: Option<&Tok>, op: &str) -> bool {
    matches!(t, Some(Tok::Op(o)) if o == op)
}

fn flux_use(text: &str) -> FluxUse {
    let t = lex(text);
    let mut u = FluxUse::default();
    let ident = |i: usize| match t.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let string = |i: usize| match t.get(i) {
        Some(Tok::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let mut map_depth: Option<usize> = None;
    let mut depth = 0usize;
    for i in 0..t.len() {
        match &t[i] {
            Tok::Op(o) if o == "(" => depth += 1,
            Tok::Op(o) if o == ")" => {
                depth = depth.saturating_sub(1);
                if map_depth == Some(depth) {
                    map_depth = None;
                }
            }
            _ => {}
        }
        let standalone = i == 0 || !is(t.get(i - 1), ".");
        // r.x / r["x"], and what it is compared with.
        let column = match (ident(i), standalone) {
            (Some("r"), true) if is(t.get(i + 1), ".") => ident(i + 2).map(|s| (s.to_owned(), i + 3)),
            (Some("r"), true) if is(t.get(i + 1), "[") => string(i + 2).map(|s| (s, i + 4)),
            _ => None,
        };
        if let Some((name, next)) = column {
            if (is(t.get(next), "==") || is(t.get(next), "!="))
                && let Some(v) = string(next + 1)
            {
                match name.as_str() {
                    "_measurement" => {
                        u.measurements.insert(v.clone());
                    }
                    "_field" => {
                        u.fields.insert(v.clone());
                    }
                    _ => {}
                }
                u.compared.insert((name.clone(), v));
            }
            u.columns.insert(name);
            continue;
        }
        if let (Some("v"), true) = (ident(i), standalone)
            && is(t.get(i + 1), ".")
            && let Some(m) = ident(i + 2)
        {
            u.macros.insert(m.to_owned());
        }
        if ident(i) == Some("map") && is(t.get(i + 1), "(") {
            map_depth = Some(depth);
        }
        let Some(key) = ident(i) else { continue };
        if !is(t.get(i + 1), ":") {
            continue;
        }
        if map_depth.is_some() && key != "fn" {
            u.made.insert(key.to_owned());
        }
        match key {
            "columns" | "rowKey" | "columnKey" if is(t.get(i + 2), "[") => {
                let mut j = i + 3;
                while let Some(s) = string(j) {
                    u.columns.insert(s);
                    j += if is(t.get(j + 1), ",") { 2 } else { 1 };
                }
            }
            "column" | "valueColumn" | "timeColumn" => u.columns.extend(string(i + 2)),
            "tag" => u.tags.extend(string(i + 2)),
            _ => {}
        }
    }
    u
}

/// Columns every Flux table has.
const STANDARD: [&str; 6] = ["_time", "_value", "_field", "_measurement", "_start", "_stop"];
/// The macros Grafana's InfluxDB (Flux) data source defines.
const MACROS: [&str; 5] = [
    "timeRangeStart",
    "timeRangeStop",
    "windowPeriod",
    "defaultBucket",
    "organization",
];

/// Checks one Flux query against the sink's schema; returns its problems.
fn check_flux(at: &str, text: &str, schema: &[Measurement]) -> Vec<String> {
    let u = flux_use(text);
    let mut problems = Vec::new();
    if u.measurements.is_empty() {
        problems.push(format!("{at}: names no measurement (r._measurement == \"…\")"));
    }
    let ms: Vec<&Measurement> = u
        .measurements
        .iter()
        .filter_map(|m| {
            let found = schema.iter().find(|s| s.name == m.as_str());
            if found.is_none() {
                problems.push(format!("{at}: the gateway writes no measurement `{m}`"));
            }
            found
        })
        .collect();
    let is_field = |f: &str| ms.iter().any(|m| m.field(f).is_some());
    let is_tag = |t: &str| ms.iter().any(|m| m.tag(t).is_some());
    for f in &u.fields {
        if !is_field(f) {
            problems.push(format!("{at}: no field `{f}` in {:?}", u.measurements));
        }
    }
    for t in &u.tags {
        if !is_tag(t) {
            problems.push(format!("{at}: no tag `{t}` in {:?}", u.measurements));
        }
    }
    for c in &u.columns {
        if !(STANDARD.contains(&c.as_str()) || is_field(c) || is_tag(c) || u.made.contains(c)) {
            problems.push(format!("{at}: column `{c}` is no tag or field of {:?}", u.measurements));
        }
    }
    for (col, value) in &u.compared {
        if value.contains('$') {
            continue;
        }
        let values: Vec<&Vec<&str>> = ms.iter().filter_map(|m| m.tag(col)?.values.as_ref()).collect();
        if !values.is_empty() && !values.iter().any(|v| v.contains(&value.as_str())) {
            problems.push(format!("{at}: `{col}` is never \"{value}\" (written: {values:?})"));
        }
    }
    for m in &u.macros {
        if !MACROS.contains(&m.as_str()) {
            problems.push(format!("{at}: v.{m} is no Grafana macro"));
        }
    }
    problems
}

#[test]
fn every_flux_query_names_only_what_the_gateway_writes() {
    let schema = schema();
    let mut problems = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut n = 0;
    for (name, d) in dashboards() {
        for q in queries(&name, &d).into_iter().filter(|q| q.ds_type == "influxdb") {
            n += 1;
            problems.extend(check_flux(&q.at, q.text, &schema));
            used.extend(flux_use(q.text).measurements);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        n > 40,
        "only {n} Flux queries found: is the parser reading the dashboards?"
    );
    // Every measurement the gateway writes is shown somewhere.
    let written: BTreeSet<String> = schema.iter().map(|m| m.name.to_owned()).collect();
    assert_eq!(used, written);
}

#[test]
fn the_flux_checker_catches_renames() {
    let schema = schema();
    let ok = r#"from(bucket: v.defaultBucket)
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "fm_alert" and r._field == "label_zh" and r.change == "fired")
  |> filter(fn: (r) => contains(value: r.site, set: ${site:json}))
  |> map(fn: (r) => ({_time: r._time, text: r._value + r.device}))
  |> keep(columns: ["_time", "text", "code"])"#;
    assert_eq!(check_flux("ok", ok, &schema), Vec::<String>::new());
    for (bad, why) in [
        (ok.replace("fm_alert", "fm_alerts"), "measurement"),
        (ok.replace("\"label_zh\"", "\"label\""), "field"),
        (
            ok.replace("r.change == \"fired\"", "r.change == \"firing\""),
            "tag value",
        ),
        (ok.replace("r.device", "r.devices"), "column"),
        (ok.replace("\"code\"]", "\"codes\"]"), "keep column"),
        (ok.replace("v.timeRangeStop", "v.timeRangeEnd"), "macro"),
    ] {
        let problems = check_flux("bad", &bad, &schema);
        assert!(!problems.is_empty(), "a wrong {why} is found: {bad}");
        if why != "measurement" {
            assert_eq!(problems.len(), 1, "{why}: {problems:?}");
        }
    }
}

// ------------------------------------------------------------ thresholds

/// Panels whose description names the rule parameters their thresholds
/// draw (`rule params: firepump.low_pressure_mpa, …`) show exactly those
/// values: a pack that changes its default changes the dashboard too.
#[test]
fn threshold_lines_are_the_built_in_rule_parameters() {
    let packs: BTreeMap<&str, toml::Table> = alerting::ruleset::PACKS
        .iter()
        .map(|(class, text)| (*class, text.parse::<toml::Table>().unwrap()))
        .collect();
    let mut checked = 0;
    let mut problems = Vec::new();
    for (name, d) in dashboards() {
        for p in panels(&d) {
            let desc = p["description"].as_str().unwrap_or("");
            let Some(list) = desc.lines().find_map(|l| l.trim().strip_prefix("rule params:")) else {
                continue;
            };
            let mut want: Vec<f64> = Vec::new();
            for param in list.split(',').map(str::trim) {
                let (class, key) = param.split_once('.').unwrap();
                let v = &packs[class]["params"][key];
                want.push(
                    v.as_float()
                        .or_else(|| v.as_integer().and_then(|i| i32::try_from(i).ok()).map(f64::from))
                        .unwrap(),
                );
            }
            let mut got: Vec<f64> = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["value"].as_f64())
                .collect();
            want.sort_by(f64::total_cmp);
            got.sort_by(f64::total_cmp);
            if want != got {
                problems.push(format!(
                    "{name}: `{}` draws {got:?}, the packs say {want:?}",
                    p["title"]
                ));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 5, "{checked} panels with rule parameters");
}

// ------------------------------------------------------------ Prometheus

/// The sample names `/metrics` can show: what `Metrics::register` encodes.
/// A labelled family shows nothing until it has a child, so each gets one
/// here (a family added later and used by a dashboard fails this test
/// until it is touched here too: it fails closed).
fn registered() -> BTreeSet<String> {
    use gateway::metrics::{
        ChangeLabel, DeliveryLabel, DeviceLabel, KindLabel, ModbusLabel, ModbusOutcomeLabel, ReasonLabel, SeverityLabel,
    };
    let m = gateway::metrics::Metrics::default();
    let reason = ReasonLabel { reason: "x".into() };
    let change = ChangeLabel { change: "x".into() };
    m.ingested.get_or_create(&KindLabel { kind: "x".into() }).inc();
    m.rejected.get_or_create(&reason).inc();
    m.broker.denied.get_or_create(&reason).inc();
    m.modbus_requests
        .get_or_create(&ModbusOutcomeLabel {
            device: "x".into(),
            outcome: "x".into(),
        })
        .inc();
    m.modbus_up.get_or_create(&ModbusLabel { device: "x".into() }).set(1);
    m.alert_changes.get_or_create(&change).inc();
    m.work_order_intents.get_or_create(&change).inc();
    m.work_order_changes.get_or_create(&change).inc();
    m.deliveries
        .get_or_create(&DeliveryLabel {
            channel: "x".into(),
            result: "x".into(),
        })
        .inc();
    m.devices
        .get_or_create(&DeviceLabel {
            class: "x".into(),
            status: "x".into(),
        })
        .set(1);
    m.alerts_open_by_severity
        .get_or_create(&SeverityLabel { severity: "x".into() })
        .set(1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.register()).unwrap();
    let mut out = BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    out
}

fn fm_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("fm_") {
        let start = i + at;
        let boundary = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |e| start + e);
        if boundary {
            out.insert(expr[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

#[test]
fn every_prometheus_query_names_registered_metrics() {
    let names = registered();
    assert!(names.contains("fm_ingest_messages_total"), "{names:?}");
    let mut problems = Vec::new();
    let mut n = 0;
    for (name, d) in dashboards() {
        for q in queries(&name, &d).into_iter().filter(|q| q.ds_type == "prometheus") {
            let used = fm_names(q.text);
            if used.is_empty() {
                problems.push(format!("{}: names no fm_ metric", q.at));
            }
            for m in used {
                n += 1;
                if !names.contains(&m) {
                    problems.push(format!("{}: `{m}` is not registered", q.at));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}\nregistered: {names:?}", problems.join("\n"));
    assert!(n > 20, "only {n} metric names found");
}

// ------------------------------------------------------------ the schema is what is written

/// One line of line protocol, read back.
#[derive(Debug)]
struct Point {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, FieldType>,
}

/// Splits at unescaped `sep` outside double quotes.
fn split_lp(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().unwrap();
                out.last_mut().unwrap().push(c);
                out.last_mut().unwrap().push(next);
            }
            '"' => {
                quoted = !quoted;
                out.last_mut().unwrap().push(c);
            }
            c if c == sep && !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap() } else { c });
    }
    out
}

fn parse_line(line: &str) -> Point {
    let parts = split_lp(line, ' ');
    assert_eq!(parts.len(), 3, "measurement+tags, fields, time: {line}");
    parts[2].parse::<i64>().unwrap();
    let mut head = split_lp(&parts[0], ',').into_iter();
    let measurement = unescape(&head.next().unwrap());
    let tags = head
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            assert!(!v.is_empty(), "{line}");
            (unescape(k), unescape(v))
        })
        .collect();
    let fields = split_lp(&parts[1], ',')
        .into_iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let ty = if v.starts_with('"') {
                assert!(v.ends_with('"') && v.len() >= 2, "{line}");
                FieldType::String
            } else if let Some(n) = v.strip_suffix('i') {
                n.parse::<i64>().unwrap();
                FieldType::Integer
            } else {
                assert!(v.contains('.'), "floats are written with a point: {line}");
                v.parse::<f64>().unwrap();
                FieldType::Float
            };
            (unescape(k), ty)
        })
        .collect();
    Point {
        measurement,
        tags,
        fields,
    }
}

fn ingest(topic: &str, payload: &str) -> gateway::ingest::Incoming {
    gateway::ingest::ingest(topic, payload.as_bytes(), 1_763_798_500_000)
        .unwrap_or_else(|e| panic!("{topic} {payload}: {e:?}"))
}

/// A `data` message carrying every canonical metric of its class (and, for
/// charging bays, every port metric), each a value of its kind.
fn every_metric(class: DeviceClass, hist: bool) -> String {
    fn value(kind: ValueKind) -> String {
        match kind {
            ValueKind::Bool => "true".into(),
            ValueKind::Number => "1.5".into(),
            ValueKind::Code { max } => max.to_string(),
        }
    }
    let m: Vec<String> = Metric::of_class(class)
        .chain(Metric::ALL.iter().copied().filter(|m| m.class().is_none()))
        .map(|m| format!("\"{}\":{}", m.as_str(), value(m.kind())))
        .collect();
    let ports = if class == DeviceClass::Charger {
        let p: Vec<String> = PortMetric::ALL
            .iter()
            .map(|m| format!("\"{}\":{}", m.as_str(), value(m.kind())))
            .collect();
        format!(r#","ports":[{{"port":3,{}}}]"#, p.join(","))
    } else {
        String::new()
    };
    format!(
        r#"{{"v":1,"seq":1,"ts":1763798400000,"hist":{hist},"m":{{{}}}{ports}}}"#,
        m.join(",")
    )
}

/// What the encoders write for real inputs: every metric of every class,
/// node events, alert changes from the real engine, the overview's counts.
fn written() -> Vec<Point> {
    let mut out = Vec::new();
    for class in DeviceClass::ALL {
        for hist in [false, true] {
            let topic = format!("fm/v1/lakeside/{}/D-{}/data", class.as_str(), class.id());
            encode(&ingest(&topic, &every_metric(*class, hist)), &mut out);
        }
    }
    for (topic, payload) in [
        (
            "fm/v1/lakeside/charger/BAY-07/event",
            r#"{"v":1,"seq":2,"ts":1763798400000,"code":"over_temperature","active":true,"detail":{"port":4,"temp_c":67.5,"cut_off":true}}"#,
        ),
        (
            "fm/v1/lakeside/firepump/PUMP-B2/event",
            r#"{"v":1,"seq":3,"ts":1763798400000,"hist":true,"code":"self_test","active":true,"detail":{"ok":true,"duration_s":120,"outlet_pressure_mpa":0.9}}"#,
        ),
        (
            "fm/v1/lakeside/elevator/EL-1/event",
            r#"{"v":1,"seq":4,"ts":1763798400000,"code":"modbus_exception","active":false,"detail":{"exception":"IllegalDataAddress","function":3}}"#,
        ),
    ] {
        encode(&ingest(topic, payload), &mut out);
    }
    // Alerts from the real engine: a bay's port over temperature (a node's
    // event, by port, in a building) fired, acknowledged, resolved; smoke
    // pending and cancelled is not a thing (it fires at once), so a pump's
    // low pressure goes pending and is cancelled.
    let mut engine = alerting::Engine::new(alerting::RuleSet::builtin(), alerting::Settings::default());
    engine.set_buildings([("lakeside".into(), "BAY-07".into(), "3号楼 East, gate".into())]);
    let mut effects = Vec::new();
    let bay = alerting::DeviceRef {
        site: "lakeside",
        class: DeviceClass::Charger,
        device: "BAY-07",
    };
    let pump = alerting::DeviceRef {
        site: "lakeside",
        class: DeviceClass::Firepump,
        device: "PUMP-B2",
    };
    let bay_t = "fm/v1/lakeside/charger/BAY-07";
    let pump_t = "fm/v1/lakeside/firepump/PUMP-B2";
    let steps: [(i64, alerting::DeviceRef<'_>, String, &str); 6] = [
        (
            1_000,
            bay,
            format!("{bay_t}/data"),
            r#"{"v":1,"seq":1,"ts":1000,"ports":[{"port":4,"temp_c":30}]}"#,
        ),
        (
            2_000,
            bay,
            format!("{bay_t}/event"),
            r#"{"v":1,"seq":2,"ts":2000,"code":"over_temperature","active":true,"detail":{"port":4}}"#,
        ),
        (
            4_000,
            bay,
            format!("{bay_t}/event"),
            r#"{"v":1,"seq":3,"ts":4000,"code":"over_temperature","active":false,"detail":{"port":4}}"#,
        ),
        (
            5_000,
            bay,
            format!("{bay_t}/data"),
            r#"{"v":1,"seq":4,"ts":5000,"ports":[{"port":4,"temp_c":30}]}"#,
        ),
        (
            6_000,
            pump,
            format!("{pump_t}/data"),
            r#"{"v":1,"seq":1,"ts":6000,"m":{"network_pressure_mpa":0.01}}"#,
        ),
        (
            7_000,
            pump,
            format!("{pump_t}/data"),
            r#"{"v":1,"seq":2,"ts":7000,"m":{"network_pressure_mpa":0.5}}"#,
        ),
    ];
    for (i, (now, d, topic, payload)) in steps.iter().enumerate() {
        engine.observe(
            *now,
            *d,
            alerting::Input::Message(&ingest(topic, payload).message),
            &mut effects,
        );
        if i == 1 {
            // Taken by somebody before the node clears it.
            let id = engine.alerts()[0].id;
            engine.ack(3_000, id, "li.wei", &mut effects).unwrap();
        }
    }
    let n = encode_alerts(&effects, 9_000, &mut out);
    assert!(n >= 5, "{effects:?}");
    // The overview's counts, with smoke in the bay (an open, firing alert).
    let mut tally = Tally::default();
    tally.device("lakeside", "charger", true);
    tally.order("lakeside", "charger");
    let smoke = ingest(
        &format!("{bay_t}/data"),
        r#"{"v":1,"seq":5,"ts":10000,"m":{"smoke":true}}"#,
    );
    engine.observe(10_000, bay, alerting::Input::Message(&smoke.message), &mut effects);
    assert!(!engine.alerts().is_empty());
    for a in engine.alerts() {
        tally.alert(&a);
    }
    let mut overview = Overview::default();
    assert!(overview.due(10_000, true));
    overview.write(10_000, &tally, &mut out);
    String::from_utf8(out).unwrap().lines().map(parse_line).collect()
}

#[test]
fn the_schema_is_exactly_what_the_encoders_write() {
    let schema = schema();
    let points = written();
    let mut problems = Vec::new();
    // (measurement, key) seen, for the other direction.
    let mut seen_tags: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen_fields: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen_changes: BTreeSet<String> = BTreeSet::new();
    for p in &points {
        let Some(m) = schema.iter().find(|m| m.name == p.measurement) else {
            problems.push(format!("measurement `{}` is not in the schema", p.measurement));
            continue;
        };
        for (k, v) in &p.tags {
            match m.tag(k) {
                None => problems.push(format!("{}: tag `{k}` is not in the schema", m.name)),
                Some(t) => {
                    if let Some(values) = &t.values
                        && !values.contains(&v.as_str())
                    {
                        problems.push(format!("{}: tag {k}={v} is not among {values:?}", m.name));
                    }
                    seen_tags.insert((m.name.into(), k.clone()));
                }
            }
            if k == "change" {
                seen_changes.insert(v.clone());
            }
        }
        for (k, ty) in &p.fields {
            match m.field(k) {
                None => problems.push(format!("{}: field `{k}` is not in the schema", m.name)),
                Some(f) if f.ty != *ty => {
                    problems.push(format!(
                        "{}: field `{k}` written as {ty:?}, the schema says {:?}",
                        m.name, f.ty
                    ));
                }
                Some(f) => {
                    seen_fields.insert((m.name.into(), f.name.clone()));
                }
            }
        }
    }
    // Nothing listed that is never written (the alert's `updated` and
    // `cancelled` need time to pass; their names are checked against the
    // engine's own by the layout's unit test).
    for m in &schema {
        if !points.iter().any(|p| p.measurement == m.name) {
            problems.push(format!("measurement `{}` is listed but never written", m.name));
        }
        for t in &m.tags {
            if !seen_tags.contains(&(m.name.into(), t.name.into())) {
                problems.push(format!("{}: tag `{}` is listed but never written", m.name, t.name));
            }
        }
        for f in &m.fields {
            if !seen_fields.contains(&(m.name.into(), f.name.clone())) {
                problems.push(format!("{}: field `{}` is listed but never written", m.name, f.name));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for c in ["fired", "acknowledged", "resolved", "pending", "cancelled"] {
        assert!(seen_changes.contains(c), "{c} in {seen_changes:?}");
    }
}

// ------------------------------------------------------------ a real server

async fn export(vm: u16, selector: &str) -> Vec<Json> {
    // Percent-encoded: braces and quotes are not for a request line.
    let selector: String = selector
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    // What arrived in the last seconds is searchable once flushed.
    let _ = http::get(vm, "/internal/force_flush", None).await;
    let path = format!("/api/v1/export?match%5B%5D={selector}");
    let (status, body) = http::get(vm, &path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body.lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .collect()
}

/// Polls VictoriaMetrics until `pred` holds on the series a selector
/// matches (15 s at most); returns the last answer either way.
async fn wait_export(vm: u16, selector: &str, pred: impl Fn(&[Json]) -> bool) -> Vec<Json> {
    let mut got = Vec::new();
    for _ in 0..150 {
        got = export(vm, selector).await;
        if pred(&got) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

fn last_value(series: &Json) -> f64 {
    series["values"].as_array().unwrap().last().unwrap().as_f64().unwrap()
}

/// An event published over MQTT raises an alert; it is acknowledged over
/// HTTP and cleared by the node. The event points, the alert's three
/// changes and the overview's counts all reach the server through the
/// sink's spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_events_and_counts_reach_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let vm = testkit::VictoriaMetrics::start(dir.path());
    let (mqtt, http_port) = (testkit::free_port(), testkit::free_port());
    let cfg = http::base_config(mqtt, http_port, &dir.path().join("data"))
        + &format!(
            "[influx]\nurl = \"http://127.0.0.1:{}\"\norg = \"fm\"\nbucket = \"telemetry\"\nflush_ms = 100\n",
            vm.port
        );
    let config = gateway::app::config::Config::parse(Path::new("t.toml"), &cfg).unwrap();
    let gw = http::start(config).await;
    testkit::wait_port(mqtt);
    let bay = "fm/v1/lakeside/charger/BAY-07";
    let now = gateway::app::run::now_ms();
    let birth =
        format!(r#"{{"v":1,"seq":0,"ts":{now},"bdseq":1,"fw":"1.0","model":"M","cfg":"c","interval_s":10,"ports":8}}"#);
    let cool = |seq: i64| {
        format!(
            r#"{{"v":1,"seq":{seq},"ts":{},"bdseq":1,"ports":[{{"port":4,"temp_c":30}}]}}"#,
            now + seq
        )
    };
    // The gateway subscribes once connected to its own broker: repeat the birth until it is known.
    let mut known = false;
    for _ in 0..100 {
        assert!(http::try_publish(mqtt, &format!("{bay}/birth"), &birth).await);
        if http::body(http_port, "/api/v1/devices").await.contains("BAY-07") {
            known = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(known, "the birth never arrived");
    assert!(http::try_publish(mqtt, &format!("{bay}/data"), &cool(1)).await);
    let raise = format!(
        r#"{{"v":1,"seq":2,"ts":{},"bdseq":1,"code":"over_temperature","active":true,"detail":{{"port":4,"temp_c":67.5,"cut_off":true}}}}"#,
        now + 2
    );
    assert!(http::try_publish(mqtt, &format!("{bay}/event"), &raise).await);
    let body = http::wait_for(http_port, "/api/v1/alerts?state=firing", |b| {
        b.contains("over_temperature")
    })
    .await;
    let alerts: Json = serde_json::from_str(&body).unwrap();
    let alert = alerts
        .as_array()
        .or_else(|| alerts["alerts"].as_array())
        .or_else(|| alerts["items"].as_array())
        .and_then(|a| a.iter().find(|a| a["code"] == "over_temperature"))
        .unwrap_or_else(|| panic!("no firing alert: {body}"))
        .clone();
    let id = alert["id"].as_u64().unwrap();
    let severity = alert["severity"].as_str().unwrap().to_owned();
    // The overview follows within seconds: the bay online, its alert open.
    let state = |field: &str| format!(r#"fm_gateway_state_{field}{{site="lakeside",class="charger"}}"#);
    let open_now = |want: f64| move |s: &[Json]| s.first().is_some_and(|s| last_value(s) == want);
    let open = wait_export(vm.port, &state("alerts_open"), open_now(1.0)).await;
    assert!(open_now(1.0)(&open), "alerts_open 1 while it fires: {open:?}");
    let online = wait_export(vm.port, &state("devices_online"), open_now(1.0)).await;
    assert!(open_now(1.0)(&online), "the bay online: {online:?}");
    let (status, body) = http::post(http_port, &format!("/api/v1/alerts/{id}/ack"), r#"{"by":"li.wei"}"#).await;
    assert_eq!(status, 200, "{body}");
    let clear = format!(
        r#"{{"v":1,"seq":3,"ts":{},"bdseq":1,"code":"over_temperature","active":false,"detail":{{"port":4,"temp_c":50}}}}"#,
        now + 3
    );
    assert!(http::try_publish(mqtt, &format!("{bay}/event"), &clear).await);
    assert!(http::try_publish(mqtt, &format!("{bay}/data"), &cool(4)).await);
    let resolved = http::wait_for(http_port, "/api/v1/alerts?state=resolved", |b| {
        b.contains("over_temperature")
    })
    .await;
    assert!(resolved.contains("over_temperature"), "{resolved}");

    // The alert's changes: one point each, tagged, its id a field.
    let sel = r#"fm_alert_id{code="over_temperature"}"#;
    let changes = wait_export(vm.port, sel, |s| s.len() >= 3).await;
    let mut by_change: BTreeMap<String, &Json> = BTreeMap::new();
    for s in &changes {
        let m = &s["metric"];
        assert_eq!(
            (
                m["site"].as_str(),
                m["class"].as_str(),
                m["device"].as_str(),
                m["port"].as_str()
            ),
            (Some("lakeside"), Some("charger"), Some("BAY-07"), Some("4")),
            "{s}"
        );
        assert_eq!(m["severity"].as_str(), Some(severity.as_str()), "{s}");
        #[allow(clippy::cast_precision_loss)]
        let want = id as f64;
        assert_eq!(last_value(s), want, "the id is the point's value: {s}");
        by_change.insert(m["change"].as_str().unwrap().to_owned(), s);
    }
    for (change, state) in [
        ("fired", "firing"),
        ("acknowledged", "acknowledged"),
        ("resolved", "resolved"),
    ] {
        let s = by_change
            .get(change)
            .unwrap_or_else(|| panic!("no `{change}` point: {changes:?}"));
        assert_eq!(s["metric"]["state"].as_str(), Some(state), "{s}");
    }
    let t = |c: &str| by_change[c]["timestamps"][0].as_i64().unwrap();
    assert!(t("fired") <= t("acknowledged") && t("acknowledged") <= t("resolved"));
    let lasted = wait_export(vm.port, r#"fm_alert_duration_s{change="resolved"}"#, |s| !s.is_empty()).await;
    assert!(!lasted.is_empty() && last_value(&lasted[0]) >= 0.0, "{lasted:?}");

    // The node's two events, at the device's time, with their detail.
    let events = wait_export(vm.port, r#"fm_event_seq{code="over_temperature"}"#, |s| s.len() >= 2).await;
    let mut seen: Vec<(String, i64, f64)> = events
        .iter()
        .map(|s| {
            (
                s["metric"]["active"].as_str().unwrap().to_owned(),
                s["timestamps"][0].as_i64().unwrap(),
                last_value(s),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen, [("false".into(), now + 3, 3.0), ("true".into(), now + 2, 2.0)]);
    let temp = wait_export(vm.port, r#"fm_event_detail_temp_c{active="true"}"#, |s| !s.is_empty()).await;
    assert_eq!(temp.len(), 1, "{temp:?}");
    assert_eq!(last_value(&temp[0]), 67.5);
    assert_eq!(temp[0]["metric"]["port"].as_str(), Some("4"));

    // And none open once it resolved.
    let open = wait_export(vm.port, &state("alerts_open"), open_now(0.0)).await;
    assert!(open_now(0.0)(&open), "alerts_open back to 0: {open:?}");
    let m = http::body(http_port, "/metrics").await;
    assert!(
        m.contains("fm_influx_points_rejected_total 0"),
        "the server took every point: {m}"
    );
    gw.stop().await;
}
