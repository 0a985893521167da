//! The HTTP API's router with arbitrary requests: any method, path, query,
//! token and body, sent with `tower::ServiceExt::oneshot` to the router of a
//! gateway running in this process (the embedded broker, SQLite on a
//! scratch directory, the pipeline), which holds real alerts and work orders
//! to acknowledge and step.
//!
//! Nothing may panic, no request may be answered 500 or hang, a JSON answer
//! must be JSON, nothing under `/api` or `/metrics` may succeed without a
//! known token, and a contractor never reads supervision records.
//!
//! An input is text: `<who> <METHOD> <target>\n<body>`. `who` is `admin`,
//! `lake` or `hill` (engineers scoped to one compound), `acme` or `city`
//! (contractors), `bureau` (the auditor), `-` (no token), or anything else,
//! sent as the bearer token. In the target, `{alert}` and `{order}` stand
//! for the ids of a firing alert and an open work order; bytes a URI cannot
//! carry are percent-encoded. The seeds are in `seeds/api/`; with
//! `GW_FUZZ_TRACE=1` every answer's status and start are printed.
#![no_main]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use gateway::app::config::Config;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const ADMIN: &str = "fuzz-admin-token-0123456789";
/// The tokens of the configuration, by the name an input uses.
const TOKENS: [(&str, &str); 6] = [
    ("admin", ADMIN),
    ("lake", "fuzz-engineer-lakeside"),
    ("hill", "fuzz-engineer-hillside"),
    ("acme", "fuzz-contractor-acme-01"),
    ("city", "fuzz-contractor-city-01"),
    ("bureau", "fuzz-auditor-bureau-01"),
];

/// A running gateway and its router, started once per process.
struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    alert: String,
    order: String,
    _gateway: Mutex<gateway::app::run::Running>,
    _dir: tempfile::TempDir,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
}

fn config(mqtt: SocketAddr, http: SocketAddr, data: &std::path::Path) -> Config {
    let [_, lake, hill, acme, city, bureau] = TOKENS.map(|(_, t)| t);
    let text = format!(
        r#"[mqtt]
listen = "{mqtt}"
[http]
listen = "{http}"
[[http.tokens]]
name = "zhang"
token = "{lake}"
role = "engineer"
sites = ["lakeside"]
[[http.tokens]]
name = "wang"
token = "{hill}"
role = "engineer"
sites = ["hillside"]
[[http.tokens]]
name = "acme-app"
token = "{acme}"
role = "contractor"
contractor = "acme"
[[http.tokens]]
name = "city-app"
token = "{city}"
role = "contractor"
contractor = "city-lifts"
[[http.tokens]]
name = "bureau"
token = "{bureau}"
role = "auditor"
[storage]
data_dir = "{data}"
[[contacts]]
id = "acme"
mqtt = true
[[contacts]]
id = "city-lifts"
mqtt = true
[[contacts]]
id = "pm-lake"
mqtt = true
[dispatch]
no_builtin_duties = true
[[dispatch.assign]]
site = "lakeside"
contractor = "acme"
backup = "city-lifts"
manager = "pm-lake"
"#,
        data = data.display()
    );
    Config::parse(std::path::Path::new("fuzz-api.toml"), &text)
        .unwrap_or_else(|e| panic!("the harness's configuration: {e}"))
}

/// MQTT 3.1.1's variable-length "remaining length".
fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = u8::try_from(n % 128).expect("below 128");
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

/// The seeding client's id.
const CLIENT_ID: &[u8; 9] = b"fuzz-seed";

/// Publishes each `(topic, payload)` at QoS 1 to the embedded broker and
/// waits for every PUBACK (sent once the gateway has stored the message).
async fn publish(broker: SocketAddr, messages: &[(String, String)]) -> std::io::Result<()> {
    let mut s = tokio::net::TcpStream::connect(broker).await?;
    let mut connect = vec![0x10];
    remaining_length(10 + 2 + CLIENT_ID.len(), &mut connect);
    // Protocol "MQTT" level 4, clean session, keep-alive 60 s, the client id.
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 9]);
    connect.extend_from_slice(CLIENT_ID);
    s.write_all(&connect).await?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(std::io::Error::other(format!("CONNACK {connack:?}")));
    }
    for (i, (topic, payload)) in messages.iter().enumerate() {
        let packet_id = u16::try_from(i + 1).expect("few messages").to_be_bytes();
        let mut p = vec![0x32];
        remaining_length(2 + topic.len() + 2 + payload.len(), &mut p);
        p.extend_from_slice(&u16::try_from(topic.len()).expect("a short topic").to_be_bytes());
        p.extend_from_slice(topic.as_bytes());
        p.extend_from_slice(&packet_id);
        p.extend_from_slice(payload.as_bytes());
        s.write_all(&p).await?;
        let mut puback = [0u8; 4];
        s.read_exact(&mut puback).await?;
        if puback != [0x40, 2, packet_id[0], packet_id[1]] {
            return Err(std::io::Error::other(format!("PUBACK {puback:?}")));
        }
    }
    s.write_all(&[0xE0, 0]).await
}

/// `GET target` as the admin, through the router: the JSON answer.
async fn admin_get(router: &axum::Router, target: &str) -> serde_json::Value {
    let req = Request::get(target)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))))
        .body(Body::empty())
        .expect("a valid request");
    let resp = router.clone().oneshot(req).await.expect("the router is infallible");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24).await.expect("a body");
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

/// The first id in `list` of the answer to `target`, once there is one.
async fn first_id(router: &axum::Router, target: &str, list: &str) -> Option<String> {
    let v = admin_get(router, target).await;
    v[list].as_array()?.first()?["id"].as_u64().map(|id| id.to_string())
}

/// Starts the gateway on a scratch directory (`$GW_FUZZ_TMP`, or the system's
/// temporary directory) and gives it alerts, work orders and series: smoke
/// in four charging bays at lakeside (critical: dispatched at once to acme),
/// a lift's telemetry at hillside.
fn start() -> Harness {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let base = std::env::var_os("GW_FUZZ_TMP").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::Builder::new()
        .prefix("gateway-fuzz-")
        .tempdir_in(base)
        .expect("a scratch data directory");
    let (mqtt, http) = (free_addr(), free_addr());
    let cfg = config(mqtt, http, dir.path());
    let (running, router, alert, order) = rt.block_on(async {
        let running = gateway::app::run::start(cfg, ADMIN.into(), gateway::app::shared::Options::default())
            .await
            .unwrap_or_else(|e| panic!("the gateway did not start: {e:#}"));
        assert!(
            running.subscribed(Duration::from_secs(20)).await,
            "the gateway never subscribed"
        );
        let router = gateway::api::router(running.shared.clone());
        let until = Instant::now() + Duration::from_mins(1);
        let mut seq = 0;
        loop {
            seq += 1;
            let ts = 1_763_798_400_000_i64 + seq * 1000;
            let mut messages: Vec<(String, String)> = (1..=4)
                .map(|bay| {
                    (
                        format!("fm/v1/lakeside/charger/BAY-0{bay}/data"),
                        format!(r#"{{"v":1,"seq":{seq},"ts":{ts},"m":{{"smoke":true,"leakage_ma":2}}}}"#),
                    )
                })
                .collect();
            messages.push((
                "fm/v1/hillside/elevator/LIFT-1/data".into(),
                format!(r#"{{"v":1,"seq":{seq},"ts":{ts},"m":{{"floor":{seq},"door_open":false}}}}"#),
            ));
            publish(mqtt, &messages)
                .await
                .unwrap_or_else(|e| panic!("publishing to the embedded broker: {e}"));
            let alert = first_id(&router, "/api/v1/alerts?state=firing", "alerts").await;
            let order = first_id(&router, "/api/v1/work-orders?status=open", "work_orders").await;
            if let (Some(alert), Some(order)) = (alert, order) {
                break (running, router, alert, order);
            }
            assert!(Instant::now() < until, "no alert and work order 60 s after the smoke");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Harness {
        rt,
        router,
        alert,
        order,
        _gateway: Mutex::new(running),
        _dir: dir,
    }
}

/// Percent-encodes what a request target cannot carry (keeps `%`, so
/// broken escapes reach the extractors).
fn target(raw: &[u8]) -> Option<Uri> {
    let mut t = String::with_capacity(raw.len() + 1);
    if raw.first() != Some(&b'/') {
        t.push('/');
    }
    for &b in raw {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            t.push(char::from(b));
        } else {
            let _ = write!(t, "%{b:02X}");
        }
    }
    t.parse().ok()
}

/// A different client address for every request, so no per-address limit
/// of the API (failed logins) turns the run into a stream of 429s.
fn next_client() -> SocketAddr {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)), 40000))
}

fn split(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let h = HARNESS.get_or_init(start);
    let (head, body) = split(data, b'\n');
    let (who, rest) = split(head, b' ');
    let (method, raw_target) = split(rest, b' ');
    let Ok(method) = Method::from_bytes(method) else { return };
    let raw_target = String::from_utf8_lossy(raw_target)
        .replace("{alert}", &h.alert)
        .replace("{order}", &h.order);
    let Some(uri) = target(raw_target.as_bytes()) else {
        return;
    };
    let known = TOKENS.iter().find(|(name, _)| name.as_bytes() == who).map(|(_, t)| *t);
    let authorization = match known {
        Some(t) => HeaderValue::from_str(&format!("Bearer {t}")).ok(),
        None if who == b"-" => None,
        None => HeaderValue::from_bytes(&[b"Bearer ", who].concat()).ok(),
    };
    let contractor = who == b"acme" || who == b"city";

    let path = uri.path().to_owned();
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(v) = authorization {
        req = req.header(header::AUTHORIZATION, v);
    }
    let Ok(req) = req
        .header(header::CONTENT_TYPE, "application/json")
        .extension(ConnectInfo(next_client()))
        .body(Body::from(body.to_vec()))
    else {
        return;
    };

    let what = format!("{} {method} {path}", String::from_utf8_lossy(who));
    let (status, content_type, answer) = h.rt.block_on(async {
        let resp = tokio::time::timeout(Duration::from_secs(30), h.router.clone().oneshot(req))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within 30 s"))
            .expect("the router is infallible");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // The event stream never ends: its headers are the answer.
        if content_type.starts_with("text/event-stream") {
            return (status, content_type, Vec::new());
        }
        let body = tokio::time::timeout(Duration::from_secs(30), axum::body::to_bytes(resp.into_body(), 1 << 26))
            .await
            .unwrap_or_else(|_| panic!("{what}: the body did not end within 30 s"))
            .unwrap_or_else(|e| panic!("{what}: the body failed: {e}"));
        (status, content_type, body.to_vec())
    });

    let shown = String::from_utf8_lossy(&answer[..answer.len().min(400)]).into_owned();
    if std::env::var_os("GW_FUZZ_TRACE").is_some() {
        eprintln!("{} {what}: {shown}", status.as_u16());
    }
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}: {shown}");
    // (A HEAD answer has the headers of a GET and no body.)
    if method != Method::HEAD && content_type.starts_with("application/json") {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&answer).is_ok(),
            "{what}: {status} with a body that is not JSON: {shown}"
        );
    }
    if status.is_success() {
        let public = matches!(path.as_str(), "/" | "/healthz" | "/readyz");
        assert!(
            known.is_some() || public,
            "{what}: {status} without a known token: {shown}"
        );
        assert!(
            !(contractor && path.starts_with("/api/v1/records")),
            "{what}: a contractor read records: {status}"
        );
    }
});
