//! The API's common ground, end to end on a running gateway: every list
//! pages the same way (`limit`, `cursor`, `{items, next}`) and a walk of
//! pages gives exactly the one big page; times take any UTC offset and a
//! zone-less time is refused; every refusal is JSON (query parse errors,
//! unknown paths and methods included); labels in Chinese come with
//! alerts, orders and records and as one table; the event stream resumes
//! from `Last-Event-ID`; the chain's verification streams its progress;
//! and the `OpenAPI` description lists every route with exactly the roles
//! the gateway lets through.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::{free_addr, get, publish};

const ACME: &str = "acme-token-0123456789";
const LAKE: &str = "engineer-lakeside-01";
const BUREAU: &str = "auditor-token-012345";

fn config(mqtt: u16, http: u16, data: &std::path::Path) -> gateway::app::config::Config {
    let base = crate::http::base_config(mqtt, http, data);
    let text = format!(
        r#"{base}
[[http.tokens]]
name = "acme-app"
token = "{ACME}"
role = "contractor"
contractor = "acme"
[[http.tokens]]
name = "zhang"
token = "{LAKE}"
role = "engineer"
sites = ["lakeside"]
[[http.tokens]]
name = "bureau"
token = "{BUREAU}"
role = "auditor"

[[contacts]]
id = "acme"
name = "武汉安达消防"

[[sites]]
id = "lakeside"
name = "湖畔花园"
name_en = "Lakeside Garden"
[[sites]]
id = "hill"
name = "山景苑"

[[alerting.buildings]]
site = "lakeside"
building = "3号楼"
devices = ["BAY-1"]

[dispatch]
no_builtin_duties = true
[[dispatch.assign]]
site = "lakeside"
contractor = "acme"
"#
    );
    gateway::app::config::Config::parse(std::path::Path::new("test.toml"), &text).unwrap()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn get_json(http: u16, path: &str, token: &str) -> Value {
    let (status, body) = get(http, path, Some(token)).await;
    assert_eq!(status, 200, "{path}: {body}");
    json(&body)
}

/// Every item of a list, page after page of `limit`, following `next`.
async fn walk(http: u16, path: &str, list: &str, limit: usize, token: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let page_path = match &cursor {
            None => format!("{path}{sep}limit={limit}"),
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
        };
        let page = get_json(http, &page_path, token).await;
        let items = page[list].as_array().unwrap_or_else(|| panic!("{page_path}: {page}"));
        assert!(items.len() <= limit, "{page_path}: a page over its limit");
        out.extend(items.iter().cloned());
        if let Some(c) = page["next"].as_str() {
            cursor = Some(c.to_owned());
        } else {
            assert!(
                page["next"].is_null(),
                "{page_path}: `next` is a string or null: {page}"
            );
            return out;
        }
    }
    panic!("{path}: pages never ended");
}

/// Checks `item` against the `OpenAPI` schema `name`: every field it
/// carries is described, and every field the schema requires is there.
fn conforms(doc: &Value, name: &str, item: &Value) {
    let schema = &doc["components"]["schemas"][name];
    let props = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {name}"));
    let fields = item
        .as_object()
        .unwrap_or_else(|| panic!("{name}: not an object: {item}"));
    for k in fields.keys() {
        assert!(props.contains_key(k), "{name}: `{k}` is not described: {item}");
    }
    for r in schema["required"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(fields.contains_key(r), "{name}: required `{r}` missing: {item}");
    }
}

fn ids(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|i| i[key].to_string()).collect()
}

/// Smoke in bays BAY-1..=n of lakeside: critical alerts, each an order.
async fn smoke(mqtt: std::net::SocketAddr, http: u16, n: usize) {
    for _ in 0..200 {
        for i in 1..=n {
            let topic = format!("fm/v1/lakeside/charger/BAY-{i}/data");
            publish(mqtt, &topic, r#"{"v":1,"seq":1,"ts":1796083200000,"m":{"smoke":true}}"#).await;
        }
        let orders = get_json(http, "/api/v1/work-orders?limit=100", testkit::ADMIN_TOKEN).await;
        if orders["work_orders"].as_array().unwrap().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the smoke never became {n} orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_pages_with_one_cursor_shape_and_says_it_in_chinese() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let gw = crate::http::start(config(mqtt.port(), http.port(), dir.path())).await;
    testkit::wait_port(mqtt.port());
    let http = http.port();
    smoke(mqtt, http, 5).await;
    // Two bays clear: resolved alerts follow the open ones.
    for i in [2, 4] {
        let topic = format!("fm/v1/lakeside/charger/BAY-{i}/data");
        publish(
            mqtt,
            &topic,
            r#"{"v":1,"seq":2,"ts":1796083260000,"m":{"smoke":false}}"#,
        )
        .await;
    }
    crate::http::wait_for(http, "/api/v1/alerts?state=resolved", |b| {
        json(b)["alerts"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    // A series of 7 points on BAY-1, a second apart.
    for k in 0..7_i64 {
        let ts = 1_796_083_300_000 + k * 1000;
        let p = format!(
            r#"{{"v":1,"seq":{},"ts":{ts},"m":{{"ambient_temp_c":{}}}}}"#,
            10 + k,
            20 + k
        );
        publish(mqtt, "fm/v1/lakeside/charger/BAY-1/data", &p).await;
    }
    let series = "/api/v1/series?device=BAY-1&metric=ambient_temp_c&from=0";
    crate::http::wait_for(http, series, |b| {
        json(b)["points"].as_array().is_some_and(|p| p.len() == 7)
    })
    .await;

    // Walking pages of 2 (3) gives the one big page, in its order, once each.
    let admin = testkit::ADMIN_TOKEN;
    for (path, list, key) in [
        ("/api/v1/alerts", "alerts", "id"),
        ("/api/v1/work-orders", "work_orders", "id"),
        ("/api/v1/devices", "devices", "device"),
        ("/api/v1/records", "records", "seq"),
        (series, "points", "ts"),
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let all = get_json(http, &format!("{path}{sep}limit=1000"), admin).await;
        assert!(all["next"].is_null(), "{path}: one page holds all: {all}");
        let all = all[list].as_array().unwrap().clone();
        assert!(all.len() >= 5, "{path}: {all:?}");
        for limit in [2, 3] {
            let walked = walk(http, path, list, limit, admin).await;
            if list == "points" {
                // Pages go back in time; each page is oldest first.
                let mut w = ids(&walked, key);
                w.sort();
                assert_eq!(w, ids(&all, key), "{path} by {limit}");
            } else {
                assert_eq!(ids(&walked, key), ids(&all, key), "{path} by {limit}");
            }
        }
    }
    // Every item matches its schema in the OpenAPI description, as that
    // description names it for the route.
    let doc = get_json(http, "/api/v1/openapi.json", admin).await;
    let (status, body) = crate::http::post(
        http,
        "/api/v1/devices",
        r#"{"site":"lakeside","class":"charger","device":"BAY-9"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (route, list, query) in [
        ("/api/v1/alerts", "alerts", ""),
        ("/api/v1/work-orders", "work_orders", ""),
        ("/api/v1/devices", "devices", ""),
        ("/api/v1/records", "records", ""),
        ("/api/v1/series", "points", "?device=BAY-1&metric=ambient_temp_c&from=0"),
        ("/api/v1/devices/credentials", "credentials", ""),
    ] {
        let page = get_json(http, &format!("{route}{query}"), admin).await;
        let answer = &doc["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        let name = answer["properties"][list]["items"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{route}: no item schema in {answer}"))
            .trim_start_matches("#/components/schemas/");
        for item in page[list].as_array().unwrap() {
            conforms(&doc, name, item);
        }
    }
    let one = get_json(http, "/api/v1/work-orders?limit=1", admin).await["work_orders"][0]["id"].clone();
    conforms(
        &doc,
        "WorkOrder",
        &get_json(http, &format!("/api/v1/work-orders/{one}"), admin).await,
    );
    conforms(&doc, "Me", &get_json(http, "/api/v1/me", LAKE).await);

    let alerts = get_json(http, "/api/v1/alerts", admin).await["alerts"]
        .as_array()
        .unwrap()
        .clone();
    let alert_states: Vec<&str> = alerts.iter().map(|a| a["state"].as_str().unwrap()).collect();
    assert_eq!(
        alert_states,
        ["firing", "firing", "firing", "resolved", "resolved"],
        "open first"
    );
    // A contractor's walk: its own orders only, the same shape.
    assert_eq!(walk(http, "/api/v1/work-orders", "work_orders", 2, ACME).await.len(), 5);

    // Chinese beside every code.
    assert!(alerts.iter().all(|a| a["label_zh"] == "烟雾报警"), "{alerts:?}");
    let orders = get_json(http, "/api/v1/work-orders", LAKE).await;
    assert!(
        orders["work_orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["label_zh"] == "烟雾报警")
    );
    let records = walk(http, "/api/v1/records?kind=alert_fired", "records", 2, BUREAU).await;
    assert_eq!(records.len(), 5);
    assert!(
        records.iter().all(|r| r["label_zh"] == "告警触发 · 烟雾报警"),
        "{records:?}"
    );
    let labels = get_json(http, "/api/v1/labels", ACME).await;
    assert_eq!(labels["codes"]["trapped"]["zh"], "困人");
    assert_eq!(labels["codes"]["trapped"]["en"], "Passengers trapped");
    assert_eq!(labels["order_statuses"]["dispatched"]["zh"], "已派单");
    assert_eq!(labels["metrics"]["network_pressure_mpa"]["unit"], "MPa");
    // Names people read: the sites a token sees, the contractors, and a
    // device's building.
    let admin_labels = get_json(http, "/api/v1/labels", admin).await;
    assert_eq!(
        admin_labels["sites"],
        serde_json::json!({"hill": {"zh": "山景苑", "en": "山景苑"}, "lakeside": {"zh": "湖畔花园", "en": "Lakeside Garden"}})
    );
    assert_eq!(admin_labels["contractors"]["acme"]["zh"], "武汉安达消防");
    let lake_labels = get_json(http, "/api/v1/labels", LAKE).await;
    assert_eq!(
        lake_labels["sites"],
        serde_json::json!({"lakeside": {"zh": "湖畔花园", "en": "Lakeside Garden"}}),
        "a scoped token learns only its own sites' names"
    );
    let devices = get_json(http, "/api/v1/devices?site=lakeside", LAKE).await;
    let building = |id: &str| {
        devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == id)
            .map(|d| d["building"].clone())
    };
    assert_eq!(building("BAY-1"), Some(serde_json::json!("3号楼")));
    assert_eq!(building("BAY-2"), Some(Value::Null), "no building configured: absent");
    let me = get_json(http, "/api/v1/me", LAKE).await;
    assert_eq!(
        me,
        serde_json::json!({"name": "zhang", "role": "engineer", "sites": ["lakeside"], "contractor": null})
    );

    // Metrics people write rules against.
    let (_, metrics) = get(http, "/metrics", Some(LAKE)).await;
    for line in [
        "fm_devices{class=\"charger\",status=\"online\"} 5",
        "fm_devices{class=\"elevator\",status=\"online\"} 0",
        "fm_alerts_open_by_severity{severity=\"critical\"} 3",
        "fm_alerts_open_by_severity{severity=\"major\"} 0",
        "fm_build_info{version=\"",
        "fm_pipeline_seconds_bucket{le=\"0.00005\"}",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }

    // Times: any offset; none is refused, in JSON.
    let z = get_json(http, "/api/v1/records?from=2026-12-01T00:00:00Z&limit=1000", admin).await;
    let cst = get_json(
        http,
        "/api/v1/records?from=2026-12-01T08:00:00%2B08:00&limit=1000",
        admin,
    )
    .await;
    assert_eq!(z["records"], cst["records"]);
    let (status, body) = get(http, "/api/v1/work-orders?from=2026-12-01T08:00:00", Some(admin)).await;
    assert_eq!(status, 400, "{body}");
    let e = json(&body);
    assert_eq!(e["error"], "bad_request");
    assert!(
        e["detail"].as_str().unwrap().contains("`from` has no UTC offset"),
        "{e}"
    );

    // Every refusal is the API's JSON: a bad parameter, a cursor of another
    // list, an unknown path, a method a path does not take.
    let first = get_json(http, "/api/v1/alerts?limit=1", admin).await;
    let alerts_cursor = first["next"].as_str().unwrap().to_owned();
    for (path, status, error) in [
        ("/api/v1/alerts?limit=lots", 400, "bad_request"),
        (
            "/api/v1/series?device=BAY-1&metric=ambient_temp_c&port=999",
            400,
            "bad_request",
        ),
        (
            &*format!("/api/v1/work-orders?cursor={alerts_cursor}"),
            400,
            "bad_request",
        ),
        ("/api/v1/alerts?cursor=garbage", 400, "bad_request"),
        ("/api/v1/nothing-here", 404, "not_found"),
    ] {
        let (got, body) = get(http, path, Some(admin)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(json(&body)["error"], error, "{path}: {body}");
    }
    let (got, body) = crate::http::request(http, "PUT", "/api/v1/alerts", "{}").await;
    assert_eq!(
        (got, json(&body)["error"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    gw.stop().await;
}

/// Opens `/api/v1/events` with `Last-Event-ID: last` (if given) and reads
/// until `needle` arrived (10 s at most); returns what was read.
async fn stream_until(http: u16, last: Option<&str>, needle: &str, then: impl AsyncFnOnce()) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap();
    let resume = last.map(|l| format!("Last-Event-ID: {l}\r\n")).unwrap_or_default();
    let req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
        testkit::ADMIN_TOKEN
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut read = String::new();
    let mut buf = vec![0u8; 8192];
    // The head first, so the stream is subscribed before `then` acts.
    while !read.contains("\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {read}");
        read.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    then().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !read.contains(needle) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => panic!("the stream never carried {needle}:\n{read}"),
        }
    }
    read
}

/// A device's status changes are events of the stream: a device that
/// appears is told online, its death offline, so a devices screen needs
/// no polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_coming_and_going_is_an_event_of_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let gw = crate::http::start(config(mqtt.port(), http.port(), dir.path())).await;
    testkit::wait_port(mqtt.port());
    let http = http.port();
    let data = r#"{"v":1,"seq":1,"bdseq":1,"ts":1796083200000,"m":{"smoke":false}}"#;
    let online = stream_until(http, None, "\"status\":\"online\"", || async {
        publish(mqtt, "fm/v1/lakeside/charger/BAY-7/data", data).await;
    })
    .await;
    let event = online
        .split("\n\n")
        .find(|e| e.contains("event: device"))
        .unwrap_or_else(|| panic!("no device event: {online}"));
    assert!(
        event.contains("\"device\":\"BAY-7\"") && event.contains("\"site\":\"lakeside\""),
        "{event}"
    );
    let offline = stream_until(http, None, "\"status\":\"offline\"", || async {
        publish(mqtt, "fm/v1/lakeside/charger/BAY-7/death", r#"{"v":1,"bdseq":1}"#).await;
    })
    .await;
    assert!(offline.contains("event: device"), "{offline}");
    gw.stop().await;
}

/// The `id:` of the last event in `text` that carries `needle`.
fn id_of(text: &str, needle: &str) -> String {
    text.split("\n\n")
        .filter(|e| e.contains(needle))
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("id:").map(|v| v.trim().to_owned()))
        })
        .last()
        .unwrap_or_else(|| panic!("no event with {needle} and an id in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_from_last_event_id_and_says_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let gw = crate::http::start(config(mqtt.port(), http.port(), dir.path())).await;
    testkit::wait_port(mqtt.port());
    let http = http.port();
    // BAY-1 fires while a reader listens; every event has an id.
    let seen = stream_until(http, None, "\"device\":\"BAY-1\"", || smoke(mqtt, http, 1)).await;
    let last = id_of(&seen, "\"device\":\"BAY-1\"");
    assert!(seen.contains("id: "), "{seen}");
    // The reader is gone while BAY-2 fires; it comes back with its last id
    // and is given what it missed, BAY-1's events not again.
    smoke(mqtt, http, 2).await;
    let resumed = stream_until(http, Some(&last), "\"device\":\"BAY-2\"", async || {}).await;
    let body = resumed.split_once("\r\n\r\n").unwrap().1;
    assert!(!body.contains("event: reset"), "{resumed}");
    let ids: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.rsplit_once('-').unwrap().1.parse().unwrap())
        .collect();
    let after: u64 = last.rsplit_once('-').unwrap().1.parse().unwrap();
    assert!(
        !ids.is_empty() && ids.iter().all(|&i| i > after),
        "{ids:?} after {after}"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    // An id of another run (or nonsense) is a reset: read the lists again.
    for stale in ["1-1", "nonsense"] {
        let r = stream_until(http, Some(stale), "event: reset", async || {}).await;
        assert!(r.contains("event: reset"), "{r}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_is_verified_on_request_with_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let gw = crate::http::start(config(mqtt.port(), http.port(), dir.path())).await;
    testkit::wait_port(mqtt.port());
    let http = http.port();
    smoke(mqtt, http, 2).await;
    let plain = get_json(http, "/api/v1/records/verify", BUREAU).await;
    assert_eq!(plain["ok"], true, "{plain}");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap();
    let req = format!(
        "GET /api/v1/records/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BUREAU}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the verification stream ended")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let progress = text.find("event: progress").unwrap_or_else(|| panic!("{text}"));
    let result = text.find("event: result").unwrap_or_else(|| panic!("{text}"));
    assert!(progress < result, "{text}");
    let data = text[result..].lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let verified = json(data);
    assert_eq!(verified["ok"], true);
    // The last progress is the whole chain this verification read (records
    // keep coming: the plain GET before it may have read fewer).
    let count = verified["count"].as_u64().unwrap();
    assert!(count >= plain["count"].as_u64().unwrap(), "{text}");
    assert!(
        text.contains(&format!("\"checked\":{count},\"total\":{count}")),
        "{text}"
    );
    gw.stop().await;
}

/// Sends `method path` as `token` and returns the status and up to 4 KiB
/// of the answer (the event stream does not end).
async fn ask(http: u16, method: &str, path: &str, token: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&out).contains("\r\n\r\n") || out.len() < 12 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    // The rest of a short answer, if it comes at once.
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_lists_every_route_with_exactly_its_roles() {
    use gateway::api::openapi::{Access, ROUTES, markdown_table};
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let gw = crate::http::start(config(mqtt.port(), http.port(), dir.path())).await;
    let http = http.port();
    let doc = get_json(http, "/api/v1/openapi.json", ACME).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for r in ROUTES {
        assert!(
            paths[r.path][r.method.to_lowercase()].is_object(),
            "{} {}",
            r.method,
            r.path
        );
    }

    // Every route of the router is in the table: read from the router's source.
    let source = [
        include_str!("../../src/api/mod.rs"),
        include_str!("../../src/api/serve.rs"),
    ]
    .concat();
    let served: Vec<&str> = source
        .split(".route(")
        .skip(1)
        .filter_map(|s| s.trim_start().strip_prefix('"')?.split('"').next())
        // The console's page and files are not the API.
        .filter(|p| {
            p.starts_with('/')
                && *p != "/"
                && !std::path::Path::new(p)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("js") || e.eq_ignore_ascii_case("css"))
        })
        .filter(|p| !matches!(*p, "/small" | "/large" | "/ignores")) // serve.rs's own tests
        .collect();
    assert!(served.len() >= 15, "{served:?}");
    for p in &served {
        assert!(ROUTES.iter().any(|r| r.path == *p), "{p} is served but not described");
    }

    // Exactly the roles the table lists pass the role check.
    let tokens = [
        ("admin", testkit::ADMIN_TOKEN),
        ("engineer", LAKE),
        ("contractor", ACME),
        ("auditor", BUREAU),
    ];
    for r in ROUTES {
        let path = r
            .path
            .replace("{site}", "lakeside")
            .replace("{device}", "NO-SUCH")
            .replace("{id}", "999999")
            .replace("{step}", "respond");
        for (role, token) in tokens {
            let (status, text) = ask(http, r.method, &path, token).await;
            let refused_for_role = status == 403 && text.contains("may not");
            if r.access.allows(role) {
                assert!(
                    !refused_for_role && status != 401 && status != 405 && !text.contains("no such path"),
                    "{role} {} {}: {text}",
                    r.method,
                    r.path
                );
            } else {
                assert!(
                    refused_for_role,
                    "{role} {} {} should be refused: {text}",
                    r.method, r.path
                );
            }
        }
    }
    // No token is 401 wherever one is needed (a few: the address is limited
    // after 10 unknown tokens).
    for r in ROUTES.iter().filter(|r| r.access != Access::Public).take(3) {
        let (status, text) = ask(http, r.method, r.path, "not-a-token-at-all").await;
        assert_eq!(status, 401, "{} {}: {text}", r.method, r.path);
    }

    // docs/api.md holds the table as the code makes it.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let table = markdown_table();
    assert!(
        docs.contains(&table),
        "docs/api.md does not hold the route table as the code makes it; put this in it:\n{table}"
    );
    gw.stop().await;
}
