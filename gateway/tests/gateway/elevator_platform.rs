//! The elevator supervision platform connector (CONTRACT §10,
//! docs/integrations.md) against a mock platform this test starts: an
//! OAuth 2.0 token endpoint and the alarms and disposals endpoints, on a free
//! port, answering 401 once to force a token refresh, 500 to force retries,
//! 422 to make a dead letter. The gateway is the real binary, so a kill is
//! a real `SIGKILL` and its logs are its real output.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

use crate::http::{get, post as api_post, publish};

const CLIENT_ID: &str = "fm-gateway-lakeside";
/// The secret: it must appear in no log line, record, export or metric.
const SECRET: &str = "s3cret-Zq8-very-private-7781";
const LIFT: &str = "31104201002019000123";
const LIFT2: &str = "31104201002019000456";

/// One request the platform took (2xx).
#[derive(Clone, Debug)]
struct Got {
    path: String,
    key: String,
    body: Value,
}

/// The mock platform's state and behaviour.
#[derive(Default)]
struct Platform {
    /// Tokens issued, the last one valid.
    issued: u32,
    valid: Option<String>,
    /// Every token request's form and `Authorization` header.
    token_requests: Vec<(String, Option<String>)>,
    /// Answer the next N data requests with 401 (and revoke the token).
    unauthorized: u32,
    /// Answer the next data requests with these statuses (`1`: HTTP 200
    /// with a refusal in the body, `{"code":1}`).
    fail: Vec<u16>,
    /// Every attempt: path, key, status answered.
    attempts: Vec<(String, String, u16)>,
    /// Taken, in order; a key taken again is counted in `repeats`.
    got: Vec<Got>,
    repeats: BTreeMap<String, u32>,
}

#[derive(Clone)]
struct Mock(Arc<Mutex<Platform>>);

impl Mock {
    /// Serves on `listener`.
    fn serve(listener: tokio::net::TcpListener) -> Mock {
        let mock = Mock(Arc::default());
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/alarms", post(|s, h, b| data(s, h, b, "/alarms")))
            .route("/api/disposals", post(|s, h, b| data(s, h, b, "/disposals")))
            .route("/gov/alarm/push", post(|s, h, b| data(s, h, b, "/gov/alarm/push")))
            .route(
                "/gov/alarm/dispose",
                post(|s, h, b| data(s, h, b, "/gov/alarm/dispose")),
            )
            .with_state(mock.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        mock
    }

    fn with<T>(&self, f: impl FnOnce(&mut Platform) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    fn got(&self) -> Vec<Got> {
        self.with(|p| p.got.clone())
    }

    /// Polls until `pred` holds on what was taken (20 s at most).
    async fn until(&self, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the platform never got {what}: {:#?}",
                got.iter().map(|g| (&g.path, &g.key)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The form's fields (`a=b&c=d`, percent-decoded).
fn form(body: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn token(State(m): State<Mock>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
    let f = form(&body);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{CLIENT_ID}:{SECRET}")
        )
    );
    let by_body = f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && f.get("client_secret").map(String::as_str) == Some(SECRET);
    m.with(|p| {
        p.token_requests.push((body.clone(), auth.clone()));
        if f.get("grant_type").map(String::as_str) != Some("client_credentials")
            || !(auth.as_deref() == Some(basic.as_str()) || by_body)
        {
            return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#.into());
        }
        p.issued += 1;
        let t = format!("tok-{}", p.issued);
        p.valid = Some(t.clone());
        (
            StatusCode::OK,
            format!(r#"{{"access_token":"{t}","token_type":"bearer","expires_in":3600}}"#),
        )
    })
}

#[allow(clippy::unused_async, reason = "an axum handler")]
async fn data(State(m): State<Mock>, headers: HeaderMap, body: Bytes, path: &'static str) -> (StatusCode, String) {
    let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    let key = header("idempotency-key").unwrap_or_default();
    m.with(|p| {
        let bearer = header("authorization");
        let status = if bearer.is_none() || bearer != p.valid.as_ref().map(|t| format!("Bearer {t}")) {
            401
        } else if p.unauthorized > 0 {
            // Revoked before it expired: the gateway must get a new one.
            p.unauthorized -= 1;
            p.valid = None;
            401
        } else if !p.fail.is_empty() {
            p.fail.remove(0)
        } else {
            200
        };
        p.attempts.push((path.to_owned(), key.clone(), status));
        if status == 1 {
            return (StatusCode::OK, r#"{"code":1,"msg":"busy"}"#.into());
        }
        if status != 200 {
            return (StatusCode::from_u16(status).unwrap(), r#"{"code":1,"msg":"no"}"#.into());
        }
        if p.got.iter().any(|g| g.key == key) {
            *p.repeats.entry(key).or_default() += 1;
        } else {
            p.got.push(Got {
                path: path.to_owned(),
                key,
                body: serde_json::from_slice(&body).unwrap(),
            });
        }
        (StatusCode::OK, r#"{"code":0,"msg":"ok"}"#.into())
    })
}

/// A gateway process on `cfg`, its log (stdout and stderr) in `log`.
fn spawn(cfg: &Path, log: &Path, http: u16) -> std::process::Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(cfg)
        .env("GATEWAY_ADMIN_TOKEN", testkit::ADMIN_TOKEN)
        // Everything the gateway and its HTTP client say, to look for the secret in.
        .env("RUST_LOG", "debug")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    testkit::wait_port(http);
    child
}

/// A configuration with one platform at `platform` (its secret from a file),
/// contractor `acme`, and fast retries.
fn config(dir: &Path, mqtt: u16, http: u16, platform: SocketAddr, extra: &str) -> std::path::PathBuf {
    let secret = dir.join("platform.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let text = format!(
        "{}[[contacts]]\nid = \"acme\"\n[dispatch]\nno_builtin_duties = true\n[[dispatch.assign]]\ncontractor = \"acme\"\n\
         [upstream]\nattempts = 6\nfirst_retry = \"50ms\"\nmax_retry = \"200ms\"\n\
         [[upstream.elevator_platform]]\nname = \"wuhan-96333\"\nurl = \"http://{platform}/api\"\n\
         token_url = \"http://{platform}/oauth/token\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\n{extra}",
        crate::http::base_config(mqtt, http, &dir.join("data")),
        secret.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

async fn records(http: u16, query: &str) -> Vec<Value> {
    let (status, body) = get(http, &format!("/api/v1/records{query}"), Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    json(&body)["records"].as_array().cloned().unwrap()
}

async fn records_until(http: u16, query: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = records(http, query).await;
        if r.len() >= n {
            return r;
        }
        assert!(Instant::now() < deadline, "records {query}: {} of {n}", r.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A lift's event, `seq` its sequence number.
async fn event(mqtt: u16, lift: &str, seq: u32, code: &str, active: bool) {
    let addr: SocketAddr = ([127, 0, 0, 1], mqtt).into();
    publish(
        addr,
        &format!("fm/v1/lakeside/elevator/{lift}/event"),
        &format!(r#"{{"v":1,"seq":{seq},"ts":1763798460000,"bdseq":1,"code":"{code}","active":{active}}}"#),
    )
    .await;
}

/// The lift's floor, so the alarm carries one.
async fn floor(mqtt: u16, lift: &str, seq: u32, floor: u32) {
    let addr: SocketAddr = ([127, 0, 0, 1], mqtt).into();
    publish(
        addr,
        &format!("fm/v1/lakeside/elevator/{lift}/data"),
        &format!(r#"{{"v":1,"seq":{seq},"ts":1763798400000,"bdseq":1,"m":{{"floor":{floor},"running":false}}}}"#),
    )
    .await;
}

/// The open order of `lift`, once there is one.
async fn order_of(http: u16, lift: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(
            http,
            &format!("/api/v1/work-orders?device={lift}"),
            Some(testkit::ADMIN_TOKEN),
        )
        .await;
        if let Some(o) = json(&body)["work_orders"].as_array().and_then(|a| a.first().cloned()) {
            return o;
        }
        assert!(Instant::now() < deadline, "no work order for {lift}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An RFC 3339 time in China's offset, as the generic profile writes.
fn is_china_rfc3339(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.ends_with("+08:00") && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// The secret is nowhere: not in the log, the records' export, `/metrics`.
async fn assert_no_secret(http: u16, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(!text.is_empty(), "the gateway logged nothing");
    assert!(!text.contains(SECRET), "the secret is in the log");
    let (_, export) = get(http, "/api/v1/records/export?format=json", Some(testkit::ADMIN_TOKEN)).await;
    assert!(export.contains("upstream_delivered"), "the export holds the deliveries");
    assert!(!export.contains(SECRET), "the secret is in the records");
    let (_, metrics) = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
    assert!(!metrics.contains(SECRET));
}

/// An alarm, its order's four steps and its clearing reach the platform in
/// order with the generic profile's JSON; a 401 gets one fresh token, 500s
/// are retried with the same idempotency key; every delivery is a record
/// with its attempts; the secret is never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_and_disposals_reach_the_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mock = Mock::serve(listener);
    // The first data request: 401 (the token revoked); then the first
    // disposal twice 500.
    mock.with(|p| p.unauthorized = 1);
    let cfg = config(dir.path(), mqtt, http, at, "");
    let log = dir.path().join("gateway.log");
    let mut child = spawn(&cfg, &log, http);

    floor(mqtt, LIFT, 1, 7).await;
    event(mqtt, LIFT, 2, "trapped", true).await;
    let got = mock.until("the alarm", |g| !g.is_empty()).await;
    let alarm = &got[0];
    assert_eq!(alarm.path, "/alarms");
    let b = &alarm.body;
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "alarm_id",
            "channel",
            "fault_code",
            "fault_name",
            "floor",
            "occurred_at",
            "registration_code",
            "reported_at",
            "status"
        ],
        "{b}"
    );
    assert_eq!(b["registration_code"], LIFT);
    // No GB/T 24476 number for a trapped passenger: the code's name.
    assert_eq!(b["fault_code"], "trapped");
    assert_eq!(b["fault_name"], "困人");
    assert_eq!(b["status"], "new");
    assert_eq!(b["floor"], 7);
    assert_eq!(b["channel"], "iot");
    assert!(
        is_china_rfc3339(&b["occurred_at"]) && is_china_rfc3339(&b["reported_at"]),
        "{b}"
    );
    let alarm_id = b["alarm_id"].as_str().unwrap().to_owned();
    assert_eq!(alarm.key, format!("{alarm_id}/new"));
    // The 401 cost one more token, sent by HTTP Basic, never in the form.
    mock.with(|p| {
        assert_eq!(p.issued, 2, "{:?}", p.token_requests);
        for (form, auth) in &p.token_requests {
            assert!(auth.as_deref().is_some_and(|a| a.starts_with("Basic ")));
            assert_eq!(form, "grant_type=client_credentials");
        }
    });

    // The trapped passenger is critical: the order is dispatched at once (01).
    let order = order_of(http, LIFT).await;
    let id = order["id"].as_u64().unwrap();
    mock.until("disposal 01", |g| g.iter().any(|x| x.body["disposal_status"] == "01"))
        .await;
    mock.with(|p| p.fail = vec![500, 500]);
    for step in ["respond", "arrive", "complete"] {
        let (status, body) = api_post(http, &format!("/api/v1/work-orders/{id}/{step}"), "{}").await;
        assert_eq!(status, 200, "{body}");
    }
    event(mqtt, LIFT, 3, "trapped", false).await;
    let got = mock.until("every disposal and the clearing", |g| g.len() >= 6).await;
    let disposals: Vec<&Got> = got.iter().filter(|g| g.path == "/disposals").collect();
    let statuses: Vec<&str> = disposals
        .iter()
        .map(|g| g.body["disposal_status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["01", "02", "04", "00"]);
    for d in &disposals {
        let mut keys: Vec<&str> = d.body.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["alarm_id", "at", "disposal_status", "operator"]);
        assert_eq!(d.body["alarm_id"], alarm_id.as_str());
        assert!(is_china_rfc3339(&d.body["at"]));
        assert_eq!(
            d.key,
            format!("{alarm_id}/disposal/{}", d.body["disposal_status"].as_str().unwrap())
        );
    }
    assert_eq!(disposals[0].body["operator"], "acme");
    assert_eq!(disposals[1].body["operator"], "admin");
    let times: Vec<&str> = disposals.iter().map(|d| d.body["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let cleared = got.iter().find(|g| g.body["status"] == "cleared").unwrap();
    assert_eq!(cleared.body["alarm_id"], alarm_id.as_str());
    assert_eq!(cleared.key, format!("{alarm_id}/cleared"));

    // The 500s: the same key three times, then taken.
    let tries: Vec<(String, u16)> = mock.with(|p| {
        p.attempts
            .iter()
            .filter(|(_, k, _)| k.ends_with("/disposal/02"))
            .map(|(_, k, s)| (k.clone(), *s))
            .collect()
    });
    assert_eq!(tries.iter().map(|t| t.1).collect::<Vec<_>>(), [500, 500, 200]);

    // A fault with a number: 01.
    event(mqtt, LIFT2, 1, "safety_circuit_break", true).await;
    let got = mock
        .until("the second lift's alarm", |g| {
            g.iter().any(|x| x.body["registration_code"] == LIFT2)
        })
        .await;
    let second = got.iter().find(|x| x.body["registration_code"] == LIFT2).unwrap();
    assert_eq!(second.body["fault_code"], "01");
    assert_eq!(second.body["fault_name"], "安全回路断路");

    // Every delivery is a record, with its attempts.
    let n = mock.got().len();
    let delivered = records_until(http, "?kind=upstream_delivered", n).await;
    assert_eq!(delivered.len(), n);
    let retried = delivered
        .iter()
        .map(|r| json(r["body"].as_str().unwrap()))
        .find(|b| b["key"].as_str().unwrap().ends_with("/disposal/02"))
        .unwrap();
    assert_eq!(retried["attempts"], 3);
    assert_eq!(retried["connector"], "elevator:wuhan-96333");
    assert!(delivered.iter().all(|r| r["device"] == LIFT || r["device"] == LIFT2));
    let (_, metrics) = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
    assert!(
        metrics.contains(&format!(
            "fm_upstream_deliveries_total{{connector=\"elevator:wuhan-96333\",result=\"delivered\"}} {n}"
        )),
        "{metrics}"
    );
    assert_eq!(mock.with(|p| p.repeats.len()), 0, "nothing was sent twice");
    assert_no_secret(http, &log).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The platform is away; alarms are acknowledged and their rows wait; the
/// gateway is killed with `SIGKILL`; the platform comes back and the gateway
/// restarts: every row arrives, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_with_rows_pending_loses_nothing_and_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    // Nothing listens there yet: every attempt is refused.
    let at: SocketAddr = ([127, 0, 0, 1], testkit::free_port()).into();
    let cfg = config(
        dir.path(),
        mqtt,
        http,
        at,
        // Enough attempts to outlive the outage.
        "",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("attempts = 6", "attempts = 1000");
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("gateway.log");
    let mut child = spawn(&cfg, &log, http);
    let lifts: Vec<String> = (1..=4).map(|i| format!("3110420100201900{i:04}")).collect();
    for lift in &lifts {
        event(mqtt, lift, 1, "door_close_fault", true).await;
        event(mqtt, lift, 2, "door_close_fault", false).await;
    }
    // Acknowledged (mosquitto_pub returned on its PUBACK): eight rows, and
    // the first tried and failed.
    let db = dir.path().join("data/gateway.sqlite");
    let count = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("SELECT count(*) FROM upstream_outbox", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
        if count() == 8 && m.contains("fm_upstream_retries_total{connector=\"elevator:wuhan-96333\"}") {
            break;
        }
        assert!(Instant::now() < deadline, "rows: {}", count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(count(), 8, "the rows survive the kill");

    let mock = Mock::serve(tokio::net::TcpListener::bind(at).await.unwrap());
    let mut child = spawn(&cfg, &log, http);
    let got = mock.until("every row", |g| g.len() >= 8).await;
    // In order per lift: new before cleared.
    for lift in &lifts {
        let statuses: Vec<&str> = got
            .iter()
            .filter(|g| g.body["registration_code"] == lift.as_str())
            .map(|g| g.body["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["new", "cleared"], "{lift}");
        assert!(got.iter().all(|g| g.body["fault_code"] == "02"));
    }
    // Forgotten once delivered, each with its record.
    records_until(http, "?kind=upstream_delivered", 8).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() != 0 {
        assert!(Instant::now() < deadline, "rows left: {}", count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once each: the platform took eight keys and no repeat.
    mock.with(|p| {
        assert_eq!(p.got.len(), 8);
        assert!(p.repeats.is_empty(), "{:?}", p.repeats);
    });
    assert_no_secret(http, &log).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A regional profile renames fields, maps codes and statuses, writes local
/// times, posts to its own paths and adds its constants; a platform answer
/// of 200 with a refusal in its body is not taken; a 422 is a dead letter
/// at once and a row that fails every attempt is one too: each recorded with
/// its payload and error, counted, and the rows after them still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_profile_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mock = Mock::serve(listener);
    // The first alarm is refused (422); the next fails all three attempts;
    // the third is first answered 200 with `{"code":1}`: not taken.
    mock.with(|p| p.fail = vec![422, 503, 503, 503, 1]);
    let profile = "profile = \"hubei\"\nclient_auth = \"body\"\n\
        [[upstream.elevator_profile]]\nname = \"hubei\"\nalarms_path = \"/alarm/push\"\ndisposals_path = \"/alarm/dispose\"\n\
        time_format = \"local\"\nok_field = \"code\"\nok_values = [\"0\"]\n\
        fields = { registration_code = \"equipCode\", fault_code = \"faultType\", alarm_id = \"alarmNo\", channel = \"\" }\n\
        codes = { trapped = \"3001\" }\nstatuses = { new = \"1\", cleared = \"0\" }\n\
        disposal_statuses = { \"01\" = \"1\" }\nextra = { platformCode = \"HB-WH-0012\" }\n";
    let cfg = config(dir.path(), mqtt, http, at, profile);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("attempts = 6", "attempts = 3")
        .replace(&format!("http://{at}/api"), &format!("http://{at}/gov"));
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("gateway.log");
    let mut child = spawn(&cfg, &log, http);

    event(mqtt, LIFT, 1, "power_cut", true).await; // 422: dead at once
    event(mqtt, LIFT, 2, "power_cut", false).await; // 503 × 3: dead after its attempts
    event(mqtt, LIFT2, 1, "trapped", true).await; // taken
    let got = mock
        .until("the trapped alarm", |g| g.iter().any(|x| x.path == "/gov/alarm/push"))
        .await;
    let b = &got[0].body;
    assert_eq!(b["equipCode"], LIFT2);
    assert_eq!(b["faultType"], "3001");
    assert_eq!(b["status"], "1");
    assert_eq!(b["platformCode"], "HB-WH-0012");
    assert!(
        b.get("channel").is_none() && b.get("registration_code").is_none(),
        "{b}"
    );
    let local = b["occurred_at"].as_str().unwrap();
    assert!(
        local.len() == 19 && local.as_bytes()[10] == b' ',
        "a local time without an offset: {local}"
    );
    let d = mock
        .until("the dispatch", |g| g.iter().any(|x| x.path == "/gov/alarm/dispose"))
        .await;
    let d = d.iter().find(|x| x.path == "/gov/alarm/dispose").unwrap();
    assert_eq!(d.body["disposal_status"], "1");
    assert_eq!(d.body["alarmNo"], b["alarmNo"]);
    // The secret went in the form this time (client_auth = "body").
    mock.with(|p| {
        assert!(
            p.token_requests
                .iter()
                .all(|(f, a)| a.is_none() && f.contains("client_id="))
        );
    });

    let dead = records_until(http, "?kind=upstream_dead_letter", 2).await;
    let bodies: Vec<Value> = dead.iter().map(|r| json(r["body"].as_str().unwrap())).collect();
    assert_eq!(bodies[0]["attempts"], 1, "{}", bodies[0]);
    assert!(bodies[0]["error"].as_str().unwrap().contains("422"));
    assert_eq!(bodies[0]["payload"]["body"]["status"], "1");
    assert_eq!(bodies[1]["attempts"], 3, "{}", bodies[1]);
    assert!(bodies[1]["error"].as_str().unwrap().contains("503"));
    assert_eq!(bodies[1]["payload"]["body"]["status"], "0");
    assert!(
        dead.iter()
            .all(|r| r["device"] == LIFT && r["subject"].as_str().unwrap().starts_with("alert:"))
    );
    let (_, metrics) = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
    assert!(metrics.contains("fm_upstream_dead_letters_total 2"), "{metrics}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("upstream delivery is a dead letter")
    );

    // 200 with `{"code": 1}` in the body was not taken: tried again.
    let tries: Vec<u16> = mock.with(|p| {
        p.attempts
            .iter()
            .filter(|(path, k, _)| path == "/gov/alarm/push" && k == &got[0].key)
            .map(|(_, _, s)| *s)
            .collect()
    });
    assert_eq!(tries, [1, 200]);
    let delivered = records_until(http, "?kind=upstream_delivered", 2).await;
    let first = json(delivered[0]["body"].as_str().unwrap());
    assert_eq!(first["attempts"], 2, "{first}");
    assert_no_secret(http, &log).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The generic profile's codes: the GB/T 24476 number where the standard
/// has one, else the code's name; and the table in docs/integrations.md is
/// the code's.
#[test]
fn the_code_table_in_the_docs_is_the_codes() {
    use gateway::upstream::elevator::generic_code;
    assert_eq!(generic_code("safety_circuit_break"), "01");
    assert_eq!(generic_code("restart_prevented"), "08");
    assert_eq!(generic_code("power_cut"), "41");
    assert_eq!(generic_code("alarm_button"), "90");
    assert_eq!(generic_code("trapped"), "trapped");
    assert_eq!(generic_code("offline"), "offline");
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/integrations.md")).unwrap();
    let table = docs
        .split("<!-- BEGIN elevator codes -->")
        .nth(1)
        .and_then(|t| t.split("<!-- END elevator codes -->").next())
        .expect("the code table's markers in docs/integrations.md");
    let mut rows = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        rows.insert(
            cells[1].trim_matches('`').to_owned(),
            cells[2].trim_matches('`').to_owned(),
        );
    }
    let ours: BTreeMap<String, String> = protocol::EventCode::of_class(protocol::DeviceClass::Elevator)
        .map(|c| (c.as_str().to_owned(), generic_code(c.as_str())))
        .collect();
    assert_eq!(rows, ours);
}
