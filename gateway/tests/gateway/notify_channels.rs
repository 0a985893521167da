//! The channels property staff in China read, end to end: the `gateway`
//! binary, a smoke alert published over MQTT, and a mock of the WeCom,
//! DingTalk and SMS gateway APIs on a free port that checks every request's
//! format and DingTalk's signature and answers with their errcodes. Rate
//! limiting is retried, a refused key is a dead letter at once, every
//! outcome is a record and a metric, and no key, token or secret appears in
//! the logs (captured at debug level), the records or the dead letters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::http::{get, publish};

const GOOD_KEY: &str = "5f1c0b9e-wecom-good-key-0001";
const BAD_KEY: &str = "0a7e33d2-wecom-bad-key-0002";
const DT_TOKEN: &str = "c4f0d8e2a1b3dingtalk-access-token-0003";
const DT_SECRET: &str = "SECdingtalk-signing-secret-0004";
const SMS_TOKEN: &str = "sms-gateway-api-key-0005";
const SECRETS: [&str; 5] = [GOOD_KEY, BAD_KEY, DT_TOKEN, DT_SECRET, SMS_TOKEN];

/// What the mock received, by route, and which format problems it found.
#[derive(Clone, Default)]
struct Mock {
    got: Arc<Mutex<Vec<(&'static str, Value)>>>,
    wrong: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<HashMap<&'static str, u32>>>,
}

impl Mock {
    async fn start() -> (Mock, SocketAddr) {
        let mock = Mock::default();
        let app = axum::Router::new()
            .route("/cgi-bin/webhook/send", axum::routing::post(wecom))
            .route("/proxy/dingtalk/robot/send", axum::routing::post(dingtalk))
            .route("/sms/send", axum::routing::post(sms))
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (mock, addr)
    }

    /// Counts a call to `route` and returns how many there were before it.
    fn call(&self, route: &'static str) -> u32 {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(route).or_default();
        *n += 1;
        *n - 1
    }

    fn wrong(&self, what: String) {
        self.wrong.lock().unwrap().push(what);
    }

    fn got(&self, route: &'static str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == route)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// WeCom: the good key is rate-limited once, then accepted; any other key
/// is WeCom's "invalid webhook url".
async fn wecom(State(m): State<Mock>, Query(q): Query<HashMap<String, String>>, body: String) -> String {
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    let content = match v["msgtype"].as_str() {
        Some("text") => {
            if !v["text"]["mentioned_mobile_list"].is_array() {
                m.wrong(format!("wecom text without mentioned_mobile_list: {v}"));
            }
            v["text"]["content"].as_str()
        }
        Some("markdown") => v["markdown"]["content"].as_str(),
        _ => None,
    };
    if !content.is_some_and(|c| c.starts_with("【") || c.starts_with("### ")) {
        m.wrong(format!("wecom body: {v}"));
        return json!({"errcode": 40008, "errmsg": "invalid message type"}).to_string();
    }
    if q.get("key").map(String::as_str) != Some(GOOD_KEY) {
        return json!({"errcode": 93000, "errmsg": "invalid webhook url, hint: [1], from ip: 127.0.0.1"}).to_string();
    }
    m.got.lock().unwrap().push(("wecom", v));
    if m.call("wecom") == 0 {
        return json!({"errcode": 45009, "errmsg": "api freq out of limit"}).to_string();
    }
    json!({"errcode": 0, "errmsg": "ok"}).to_string()
}

/// DingTalk behind a proxy path: the token, the signature (as DingTalk
/// checks it: fresh, and the HMAC of "{timestamp}\n{secret}"), the format;
/// throttled once, then accepted.
async fn dingtalk(State(m): State<Mock>, Query(q): Query<HashMap<String, String>>, body: String) -> String {
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    if q.get("access_token").map(String::as_str) != Some(DT_TOKEN) {
        return json!({"errcode": 300_001, "errmsg": "token is not exist"}).to_string();
    }
    let ts = q.get("timestamp").cloned().unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let fresh = ts.parse::<u128>().is_ok_and(|t| now.abs_diff(t) < 3_600_000);
    let sign = q.get("sign").cloned().unwrap_or_default();
    if !fresh || !notify::verify_dingtalk(DT_SECRET, &ts, &sign) {
        m.wrong(format!("dingtalk signature: timestamp {ts} sign {sign}"));
        return json!({"errcode": 310_000, "errmsg": "sign not match"}).to_string();
    }
    let ok = v["msgtype"] == "markdown"
        && v["markdown"]["title"].is_string()
        && v["markdown"]["text"].as_str().is_some_and(|t| t.starts_with("#### 【"))
        && v["at"]["atMobiles"].is_array()
        && v["at"]["isAtAll"].is_boolean();
    if !ok {
        m.wrong(format!("dingtalk body: {v}"));
        return json!({"errcode": 40035, "errmsg": "invalid parameter"}).to_string();
    }
    m.got.lock().unwrap().push(("dingtalk", v));
    if m.call("dingtalk") == 0 {
        return json!({"errcode": 130_101, "errmsg": "send too fast, exceed 20 times per minute"}).to_string();
    }
    json!({"errcode": 0, "errmsg": "ok"}).to_string()
}

/// The SMS gateway: a bearer key and a JSON body from the template.
async fn sms(State(m): State<Mock>, headers: HeaderMap, body: String) -> String {
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    let auth = headers.get("authorization").and_then(|h| h.to_str().ok());
    if auth != Some(&format!("Bearer {SMS_TOKEN}")) {
        m.wrong(format!("sms authorization: {auth:?}"));
        return json!({"code": "AUTH_FAILED"}).to_string();
    }
    let text_ok = v["content"].as_str().is_some_and(|t| t.chars().count() <= 70);
    if !text_ok || v["template"] != "SMS_0001" || !v["to"].is_string() {
        m.wrong(format!("sms body: {v}"));
        return json!({"code": "BAD_REQUEST"}).to_string();
    }
    m.got.lock().unwrap().push(("sms", v));
    json!({"code": "OK", "request_id": "r-1"}).to_string()
}

/// The gateway child, killed when the test ends however it ends.
struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The records of `kind`, polled until `pred` holds (15 s at most).
async fn records_until(http: u16, kind: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..300 {
        let (status, body) = get(
            http,
            &format!("/api/v1/records?kind={kind}"),
            Some(testkit::ADMIN_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        last = json_of(&body)["records"].as_array().cloned().unwrap_or_default();
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{kind} records never matched: {last:?}");
}

/// A record's body (a JSON text) parsed.
fn body(record: &Value) -> Value {
    json_of(record["body"].as_str().unwrap())
}

fn on(records: &[Value], to: &str, channel: &str) -> Option<Value> {
    records
        .iter()
        .map(body)
        .find(|b| b["to"] == to && b["channel"] == channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_dingtalk_and_sms_deliver_retry_dead_letter_and_keep_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, at) = Mock::start().await;
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let key_file = dir.path().join("acme-wecom.key");
    std::fs::write(&key_file, format!("{BAD_KEY}\n")).unwrap();
    let base = crate::http::base_config(mqtt, http, &dir.path().join("data"));
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[notify]
attempts = 4
first_retry = "50ms"
max_retry = "100ms"
[notify.wecom]
base_url = "http://{at}"
[notify.dingtalk]
base_url = "http://{at}/proxy/dingtalk"
[notify.sms]
url = "http://{at}/sms/send"
token_env = "FM_TEST_SMS_TOKEN"
headers = {{ Authorization = "Bearer {{token}}" }}
template_id = "SMS_0001"
body = {{ to = "{{phone}}", content = "{{text}}", template = "{{template_id}}" }}
success_field = "code"
success_value = "OK"

[[contacts]]
id = "acme"
wecom = {{ token_file = "{key_file}" }}

[[contacts]]
id = "pm-lake"
wecom = {{ token = "{GOOD_KEY}", mention_mobiles = ["13800000001"] }}
dingtalk = {{ access_token = "{DT_TOKEN}", secret_env = "FM_TEST_DINGTALK_SECRET", mention_mobiles = ["13800000001"] }}
sms = ["13800000002"]

[dispatch]
no_builtin_duties = true
[[dispatch.assign]]
site = "lakeside"
contractor = "acme"
manager = "pm-lake"
"#,
            key_file = key_file.display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("GATEWAY_ADMIN_TOKEN", testkit::ADMIN_TOKEN)
        .env("FM_TEST_SMS_TOKEN", SMS_TOKEN)
        .env("FM_TEST_DINGTALK_SECRET", DT_SECRET)
        // Everything the gateway and its libraries log, reqwest's included.
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let gateway = Gateway(child);
    testkit::wait_port(http);
    testkit::wait_port(mqtt);

    // Smoke in bay CH-1 of lakeside: critical, so the manager is told at
    // once and acme gets the order.
    let mqtt_addr: SocketAddr = ([127, 0, 0, 1], mqtt).into();
    let mut ordered = false;
    for seq in 1..200 {
        let payload = format!(r#"{{"v":1,"seq":{seq},"ts":1763798400000,"m":{{"smoke":true}}}}"#);
        publish(mqtt_addr, "fm/v1/lakeside/charger/CH-1/data", &payload).await;
        let (_, body) = get(http, "/api/v1/work-orders?device=CH-1", Some(testkit::ADMIN_TOKEN)).await;
        if json_of(&body)["work_orders"].as_array().is_some_and(|o| !o.is_empty()) {
            ordered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ordered, "no work order for CH-1");

    // The manager's three channels deliver: WeCom after its rate limit,
    // DingTalk after its throttling, SMS at once.
    let sent = records_until(http, "notification_sent", |r| {
        ["wecom", "dingtalk", "sms"]
            .iter()
            .all(|c| on(r, "pm-lake", c).is_some())
    })
    .await;
    for (channel, attempts) in [("wecom", 2), ("dingtalk", 2), ("sms", 1)] {
        let b = on(&sent, "pm-lake", channel).unwrap();
        assert_eq!(b["kind"], "alert_notification", "{b}");
        assert_eq!(b["attempts"], attempts, "{channel}: {b}");
    }
    // Acme's robot refuses its key: a dead letter after one attempt.
    let dead = records_until(http, "notification_dead_letter", |r| on(r, "acme", "wecom").is_some()).await;
    let d = on(&dead, "acme", "wecom").unwrap();
    assert_eq!(
        (d["kind"].as_str(), d["attempts"].as_u64()),
        (Some("order_dispatched"), Some(1)),
        "{d}"
    );
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("errcode 93000 invalid webhook url"), "{error}");

    // What the mock got: every request well formed, Chinese first, China's time.
    assert_eq!(*mock.wrong.lock().unwrap(), Vec::<String>::new());
    let wecom = mock.got("wecom");
    assert_eq!(wecom.len(), 2, "{wecom:?}");
    assert_eq!(wecom[0]["msgtype"], "text", "critical, with a phone to ring");
    assert_eq!(wecom[0]["text"]["mentioned_mobile_list"], json!(["13800000001"]));
    let content = wecom[0]["text"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("【紧急告警 Critical alert】烟雾报警 smoke · lakeside"),
        "{content}"
    );
    assert!(
        content.contains("设备 device CH-1") && content.contains("+08:00"),
        "{content}"
    );
    let dingtalk = mock.got("dingtalk");
    assert_eq!(dingtalk.len(), 2);
    assert_eq!(dingtalk[1]["at"]["atMobiles"], json!(["13800000001"]));
    assert!(
        dingtalk[1]["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("@13800000001")
    );
    let sms = mock.got("sms");
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0]["to"], "13800000002");
    let text = sms[0]["content"].as_str().unwrap();
    assert!(text.starts_with("【紧急告警】烟雾报警，lakeside CH-1，"), "{text}");

    // Counted with the other channels.
    let (_, metrics) = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
    for series in [
        r#"fm_notification_deliveries_total{channel="wecom",result="delivered"} 1"#,
        r#"fm_notification_deliveries_total{channel="dingtalk",result="delivered"} 1"#,
        r#"fm_notification_deliveries_total{channel="sms",result="delivered"} 1"#,
        r#"fm_notification_deliveries_total{channel="wecom",result="dead_letter"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }

    // No secret in any record (the configuration's included) or dead letter...
    let (_, all) = get(http, "/api/v1/records?limit=10000", Some(testkit::ADMIN_TOKEN)).await;
    assert!(all.contains("notification_dead_letter"));
    for s in SECRETS {
        assert!(!all.contains(s), "{s} in the records");
    }
    drop(gateway);
    // ... nor in what the gateway logged, though it logged the failures.
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("45009") && logged.contains("130101") && logged.contains("93000"),
        "{logged}"
    );
    for s in SECRETS {
        assert!(!logged.contains(s), "{s} in the log:\n{logged}");
    }
}

/// Every mistake in the channels' configuration is named at start, with
/// its field, rather than dead-lettering every message later.
#[test]
fn mistakes_in_the_channels_are_named_at_start() {
    use gateway::app::config::Config;
    let check = |text: &str| -> Vec<String> {
        match Config::check(std::path::Path::new("site.toml"), text) {
            Ok(_) => Vec::new(),
            Err(all) => all.iter().map(ToString::to_string).collect(),
        }
    };
    let errors = check(
        r#"
[notify.wecom]
base_url = "qyapi.weixin.qq.com"
[notify.sms]
url = "https://sms.example/send"
headers = { Authorization = "Bearer {token}" }
[[contacts]]
id = "a"
wecom = { token = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k" }
[[contacts]]
id = "b"
dingtalk = { access_token = "t", mention_mobiles = ["zhang"] }
[[contacts]]
id = "c"
sms = ["138-0013-8000"]
"#,
    );
    for field in [
        "notify.wecom.base_url",
        "notify.sms.headers",
        "contacts[0].wecom",
        "contacts[1].dingtalk",
        "contacts[2].sms",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(&format!("field `{field}`"))),
            "{field} not in {errors:#?}"
        );
    }
    // Numbers without an SMS gateway; a key under WeCom's own name.
    let errors = check("[[contacts]]\nid = \"a\"\nsms = [\"13800138000\"]\n");
    assert!(errors[0].contains("SMS needs [notify.sms]"), "{errors:?}");
    let errors = check("[[contacts]]\nid = \"a\"\nwecom = { key = \"k\" }\n");
    assert!(errors[0].contains("key"), "{errors:?}");
    // The defaults are the real services.
    let c = Config::parse(std::path::Path::new("site.toml"), "").unwrap();
    assert_eq!(c.notify.wecom.base_url, "https://qyapi.weixin.qq.com");
    assert_eq!(c.notify.dingtalk.base_url, "https://oapi.dingtalk.com");
    assert!(c.notify.sms.is_none());
}

/// An SMS gateway that answers OK, except to `busy` while it is not `open`
/// (503): counts every number it was asked to text.
#[derive(Clone, Default)]
struct Busy {
    open: Arc<std::sync::atomic::AtomicBool>,
    texted: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Busy {
    const NUMBER: &str = "13800000003";

    async fn start() -> (Busy, SocketAddr) {
        let busy = Busy::default();
        let app = axum::Router::new()
            .route("/sms/send", axum::routing::post(busy_sms))
            .with_state(busy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (busy, addr)
    }

    /// How often `number` was texted and accepted.
    fn accepted(&self, number: &str) -> usize {
        self.texted
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, ok)| n == number && *ok)
            .count()
    }

    fn tried(&self, number: &str) -> usize {
        self.texted.lock().unwrap().iter().filter(|(n, _)| n == number).count()
    }
}

async fn busy_sms(State(b): State<Busy>, body: String) -> (axum::http::StatusCode, String) {
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    let to = v["to"].as_str().unwrap_or_default().to_owned();
    let ok = to != Busy::NUMBER || b.open.load(std::sync::atomic::Ordering::SeqCst);
    b.texted.lock().unwrap().push((to, ok));
    if ok {
        (axum::http::StatusCode::OK, json!({"code": "OK"}).to_string())
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy".into())
    }
}

/// A message to two numbers, one reached and one busy when the gateway is
/// stopped: the outbox keeps it with the number reached, and after the
/// restart only the other is texted. Before, the reached numbers were known
/// only in memory and the restart texted both again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_cut_off_by_a_restart_texts_only_the_numbers_it_had_not_reached() {
    let dir = tempfile::tempdir().unwrap();
    let (busy, at) = Busy::start().await;
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let base = crate::http::base_config(mqtt, http, &dir.path().join("data"));
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[notify]
attempts = 1000
first_retry = "100ms"
max_retry = "100ms"
[notify.sms]
url = "http://{at}/sms/send"
body = {{ to = "{{phone}}", content = "{{text}}" }}
success_field = "code"
success_value = "OK"

[[contacts]]
id = "acme"
sms = ["13900000009"]

[[contacts]]
id = "pm-lake"
sms = ["13800000002", "{busy_number}"]

[dispatch]
no_builtin_duties = true
[[dispatch.assign]]
site = "lakeside"
contractor = "acme"
manager = "pm-lake"
"#,
            busy_number = Busy::NUMBER
        ),
    )
    .unwrap();
    let spawn = || {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("GATEWAY_ADMIN_TOKEN", testkit::ADMIN_TOKEN)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        testkit::wait_port(http);
        testkit::wait_port(mqtt);
        Gateway(child)
    };
    let mut gateway = spawn();
    let mqtt_addr: SocketAddr = ([127, 0, 0, 1], mqtt).into();
    publish(
        mqtt_addr,
        "fm/v1/lakeside/charger/CH-1/data",
        r#"{"v":1,"seq":1,"ts":1763798400000,"m":{"smoke":true}}"#,
    )
    .await;
    // The first number reached, the second tried and refused for now.
    for _ in 0..300 {
        if busy.accepted("13800000002") == 1 && busy.tried(Busy::NUMBER) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(busy.accepted("13800000002"), 1);
    assert!(busy.tried(Busy::NUMBER) >= 2);

    // A graceful stop (SIGTERM): the delivery is cut off and kept with what
    // it reached.
    let pid = gateway.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let conn = rusqlite::Connection::open(dir.path().join("data/gateway.sqlite")).unwrap();
    let kept: Vec<String> = conn
        .prepare("SELECT queued FROM outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let manager: Vec<Value> = kept
        .iter()
        .map(|k| json_of(k))
        .filter(|q| q["to"] == "pm-lake")
        .collect();
    assert_eq!(manager.len(), 1, "{kept:?}");
    assert_eq!(manager[0]["reached"], json!(["sms:13800000002"]), "{kept:?}");
    drop(conn);

    // The gateway of the next start: the busy number is free now.
    busy.open.store(true, std::sync::atomic::Ordering::SeqCst);
    let tried_before = busy.tried("13800000002");
    let _gateway = spawn();
    let sent = records_until(http, "notification_sent", |r| on(r, "pm-lake", "sms").is_some()).await;
    assert!(on(&sent, "pm-lake", "sms").is_some());
    assert_eq!(busy.accepted(Busy::NUMBER), 1);
    // Not texted again: once in all, across both runs.
    assert_eq!(busy.tried("13800000002"), tried_before);
    assert_eq!(busy.accepted("13800000002"), 1);
}
