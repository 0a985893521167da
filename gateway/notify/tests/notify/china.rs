//! The channels property staff in China read (WeCom and DingTalk group
//! robots, SMS through an HTTP gateway) against a mock of their APIs on a
//! free port: the wire format, DingTalk's signature checked the way DingTalk
//! checks it, errcodes retried or dead-lettered, and no secret in any error.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use notify::{
    AlertFacts, Channel, Contact, Delivery, Dingtalk, DingtalkConfig, DingtalkTarget, Message, Notice, Outbox, Sms,
    SmsConfig, Wecom, WecomConfig, WecomTarget,
};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{fast_policy, next_outcome};

/// One request as the mock saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

#[derive(Default)]
struct MockState {
    /// Per path: the answers to give, in order; then `{"errcode":0}`.
    scripts: Mutex<HashMap<String, VecDeque<(u16, String)>>>,
    seen: Mutex<Vec<Seen>>,
}

/// A mock of the robots' and an SMS gateway's HTTP APIs.
struct Mock {
    base: String,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    async fn start() -> Mock {
        let state = Arc::new(MockState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(answer).with_state(Arc::clone(&state));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Mock { base, state, task }
    }

    fn script(&self, path: &str, answers: &[(u16, &str)]) {
        self.state.scripts.lock().unwrap().insert(
            path.into(),
            answers.iter().map(|(s, b)| (*s, (*b).to_owned())).collect(),
        );
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let query = uri
        .query()
        .map(|q| url_pairs(q).into_iter().collect::<HashMap<String, String>>())
        .unwrap_or_default();
    let path = uri.path().to_owned();
    state.seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        query,
        headers,
        body,
    });
    let next = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let (status, body) = next.unwrap_or((200, r#"{"errcode":0,"errmsg":"ok"}"#.into()));
    (StatusCode::from_u16(status).unwrap(), body)
}

/// `a=1&b=%2B` decoded (form rules: `+` is a space), written here rather
/// than taken from the crate under test.
fn url_pairs(q: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A critical alert: smoke in bay CH-1, 2026-12-01 08:00 in China.
fn smoke(id: &str) -> Message {
    let at = 1_796_083_200_000;
    Message {
        id: id.into(),
        kind: "alert_notification".into(),
        site: "lakeside".into(),
        subject: "unused when there is a notice".into(),
        text: String::new(),
        body: json!({}),
        notice: Some(Notice {
            kind: "alert_notification".into(),
            site: "lakeside".into(),
            building: Some("3号楼".into()),
            at,
            critical: true,
            order: None,
            alerts: vec![AlertFacts {
                id: 7,
                code: "smoke".into(),
                device: "CH-1".into(),
                port: None,
                severity: "critical".into(),
                resolved: false,
                at,
            }],
        }),
    }
}

fn contact(id: &str) -> Contact {
    Contact {
        id: id.into(),
        name: None,
        webhook: None,
        email: None,
        mqtt: false,
        wecom: None,
        dingtalk: None,
        sms: Vec::new(),
    }
}

fn outbox(channel: Arc<dyn Channel>, attempts: u32) -> (Outbox, tokio::sync::mpsc::UnboundedReceiver<notify::Outcome>) {
    let (outbox, rx, _task) = Outbox::start(vec![channel], fast_policy(attempts), 16, 4);
    (outbox, rx)
}

const WECOM_KEY: &str = "693a91f6-7aoc-4bc4-97a0-0ec2sifa5aaa";

#[tokio::test]
async fn wecom_retries_rate_limiting_then_delivers_and_mentions_on_critical() {
    let mock = Mock::start().await;
    mock.script(
        "/cgi-bin/webhook/send",
        &[(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#)],
    );
    let wecom = Wecom::new(
        &WecomConfig {
            base_url: mock.base.clone(),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let (outbox, mut rx) = outbox(Arc::new(wecom), 3);
    let mut to = contact("pm-lake");
    to.wecom = Some(WecomTarget {
        token: WECOM_KEY.into(),
        mention_mobiles: vec!["13800138000".into()],
    });
    outbox.submit(Delivery::new(to.clone(), smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(
        (out.channel, out.attempts, out.result.clone()),
        ("wecom", 2, Ok(())),
        "{out:?}"
    );

    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/cgi-bin/webhook/send"));
        assert_eq!(s.query.get("key").map(String::as_str), Some(WECOM_KEY));
        assert_eq!(s.header("content-type"), "application/json");
        // Critical, with somebody to mention: text with the mobiles.
        let body = s.json();
        assert_eq!(body["msgtype"], "text", "{body}");
        assert_eq!(body["text"]["mentioned_mobile_list"], json!(["13800138000"]));
        let content = body["text"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("【紧急告警 Critical alert】烟雾报警 smoke · lakeside 3号楼 CH-1\n"),
            "{content}"
        );
        assert!(content.contains("2026-12-01 08:00:00 +08:00"), "{content}");
    }

    // Not critical: markdown, nobody mentioned.
    let mut calm = smoke("m-2");
    calm.notice.as_mut().unwrap().critical = false;
    outbox.submit(Delivery::new(to, calm)).unwrap();
    assert_eq!(next_outcome(&mut rx).await.result, Ok(()));
    let body = mock.seen()[2].json();
    assert_eq!(body["msgtype"], "markdown", "{body}");
    assert!(
        body["markdown"]["content"]
            .as_str()
            .unwrap()
            .starts_with("### 【告警 Alert】烟雾报警 smoke"),
        "{body}"
    );
}

#[tokio::test]
async fn wecom_refusing_the_key_is_a_dead_letter_at_once_without_the_key() {
    let mock = Mock::start().await;
    // WeCom's real answer to a wrong key (it names the caller's IP, never the key).
    mock.script(
        "/cgi-bin/webhook/send",
        &[(
            200,
            r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1755605200056773468916791], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}"#,
        )],
    );
    let wecom = Wecom::new(
        &WecomConfig {
            base_url: mock.base.clone(),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let (outbox, mut rx) = outbox(Arc::new(wecom), 5);
    let mut to = contact("acme");
    to.wecom = Some(WecomTarget {
        token: WECOM_KEY.into(),
        mention_mobiles: Vec::new(),
    });
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(out.attempts, 1, "permanent: not retried");
    let error = out.result.unwrap_err();
    assert!(error.contains("errcode 93000 invalid webhook url"), "{error}");
    assert!(!error.contains(WECOM_KEY), "{error}");
    // Critical but nobody to mention: markdown in the warning colour.
    assert_eq!(mock.seen()[0].json()["msgtype"], "markdown");
}

#[tokio::test]
async fn an_unreachable_robot_is_retried_and_its_key_never_reaches_the_error() {
    // A port nobody listens on: refused on every attempt.
    let closed = format!("http://127.0.0.1:{}", testkit::free_port());
    let wecom = Wecom::new(
        &WecomConfig {
            base_url: closed.clone(),
        },
        Duration::from_secs(2),
    )
    .unwrap();
    let dingtalk = Dingtalk::new(&DingtalkConfig { base_url: closed }, Duration::from_secs(2)).unwrap();
    let mut to = contact("pm-lake");
    to.wecom = Some(WecomTarget {
        token: WECOM_KEY.into(),
        mention_mobiles: Vec::new(),
    });
    to.dingtalk = Some(DingtalkTarget {
        access_token: "dt-access-token-0123".into(),
        secret: Some("SEC-dingtalk-secret-0123".into()),
        mention_mobiles: Vec::new(),
    });
    let (outbox, mut rx, _task) = Outbox::start(vec![Arc::new(wecom), Arc::new(dingtalk)], fast_policy(3), 16, 4);
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    for _ in 0..2 {
        let out = next_outcome(&mut rx).await;
        assert_eq!(out.attempts, 3, "{out:?}");
        let error = out.result.unwrap_err();
        for secret in [WECOM_KEY, "dt-access-token-0123", "SEC-dingtalk-secret-0123", "sign="] {
            assert!(!error.contains(secret), "{secret} in {error}");
        }
    }
}

const DT_TOKEN: &str = "b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1";
const DT_SECRET: &str = "SEC1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

/// DingTalk's check, written here from its documentation: the timestamp
/// within an hour, and `sign` the base64 HMAC-SHA256 of "{timestamp}\n{secret}".
fn dingtalk_accepts(query: &HashMap<String, String>) -> bool {
    let (Some(ts), Some(sign)) = (query.get("timestamp"), query.get("sign")) else {
        return false;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let Ok(ts_ms) = ts.parse::<u128>() else {
        return false;
    };
    if now.abs_diff(ts_ms) > 3_600_000 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(DT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}\n{DT_SECRET}").as_bytes());
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(sign) else {
        return false;
    };
    mac.verify_slice(&tag).is_ok()
}

#[tokio::test]
async fn dingtalk_signs_every_attempt_and_retries_throttling() {
    let mock = Mock::start().await;
    mock.script(
        "/robot/send",
        &[(
            200,
            r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
        )],
    );
    let dingtalk = Dingtalk::new(
        &DingtalkConfig {
            base_url: mock.base.clone(),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let (outbox, mut rx) = outbox(Arc::new(dingtalk), 3);
    let mut to = contact("pm-lake");
    to.dingtalk = Some(DingtalkTarget {
        access_token: DT_TOKEN.into(),
        secret: Some(DT_SECRET.into()),
        mention_mobiles: vec!["13800138000".into()],
    });
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(
        (out.channel, out.attempts, out.result.clone()),
        ("dingtalk", 2, Ok(())),
        "{out:?}"
    );

    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    let mut stamps = Vec::new();
    for s in &seen {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/robot/send"));
        assert_eq!(s.query.get("access_token").map(String::as_str), Some(DT_TOKEN));
        assert!(dingtalk_accepts(&s.query), "{:?}", s.query);
        stamps.push(s.query["timestamp"].clone());
        let body = s.json();
        assert_eq!(body["msgtype"], "markdown");
        assert_eq!(
            body["markdown"]["title"],
            "【紧急告警 Critical alert】烟雾报警 smoke · lakeside 3号楼 CH-1"
        );
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(text.starts_with("#### 【紧急告警 Critical alert】"), "{text}");
        assert!(text.contains("\n\n@13800138000\n\n"), "{text}");
        assert!(text.contains("设施安全网关"), "the keyword a robot may require: {text}");
        assert_eq!(body["at"], json!({"atMobiles": ["13800138000"], "isAtAll": false}));
    }
    assert_ne!(stamps[0], stamps[1], "each attempt is signed afresh");
}

#[tokio::test]
async fn dingtalk_refusing_the_signature_is_a_dead_letter_without_secrets() {
    let mock = Mock::start().await;
    mock.script(
        "/robot/send",
        &[(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#)],
    );
    let dingtalk = Dingtalk::new(
        &DingtalkConfig {
            base_url: format!("{}/", mock.base),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let (outbox, mut rx) = outbox(Arc::new(dingtalk), 5);
    let mut to = contact("pm-lake");
    to.dingtalk = Some(DingtalkTarget {
        access_token: DT_TOKEN.into(),
        secret: Some(DT_SECRET.into()),
        mention_mobiles: Vec::new(),
    });
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(out.attempts, 1);
    let error = out.result.unwrap_err();
    assert!(error.contains("errcode 310000 sign not match"), "{error}");
    assert!(!error.contains(DT_TOKEN) && !error.contains(DT_SECRET), "{error}");
    // Without mentions nobody is @-ed, critical or not.
    assert_eq!(mock.seen()[0].json()["at"]["atMobiles"], json!([]));
}

#[tokio::test]
async fn dingtalk_without_a_secret_sends_no_signature() {
    let mock = Mock::start().await;
    let dingtalk = Dingtalk::new(
        &DingtalkConfig {
            base_url: mock.base.clone(),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let mut to = contact("pm-lake");
    to.dingtalk = Some(DingtalkTarget {
        access_token: DT_TOKEN.into(),
        secret: None,
        mention_mobiles: Vec::new(),
    });
    dingtalk.send(&to, &smoke("m-1")).await.unwrap();
    let seen = mock.seen();
    assert_eq!(seen[0].query.keys().collect::<Vec<_>>(), ["access_token"]);
}

const SMS_TOKEN: &str = "sms-api-key-4f1e2d3c";

fn sms_config(mock: &Mock, extra: &Value) -> SmsConfig {
    let mut cfg = json!({
        "url": format!("{}/v1/sms/send", mock.base),
        "token": SMS_TOKEN,
        "headers": {"Authorization": "Bearer {token}"},
        "template_id": "SMS_0001",
        "body": {"to": "{phone}", "content": "{text}", "template": "{template_id}", "params": ["{label}", "{site}", "{device}"]},
        "success_field": "code",
        "success_value": "OK",
        "retry_values": ["LIMIT_CONTROL"],
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    serde_json::from_value(cfg).unwrap()
}

#[tokio::test]
async fn sms_fills_the_template_and_a_retry_texts_only_the_numbers_not_yet_reached() {
    let mock = Mock::start().await;
    mock.script(
        "/v1/sms/send",
        &[
            (200, r#"{"code":"OK"}"#),
            (200, r#"{"code":"LIMIT_CONTROL","message":"too many to this number"}"#),
            (200, r#"{"code":"OK"}"#),
        ],
    );
    let sms = Sms::new(sms_config(&mock, &json!({})), Duration::from_secs(5)).unwrap();
    let (outbox, mut rx) = outbox(Arc::new(sms), 3);
    let mut to = contact("pm-lake");
    to.sms = vec!["13800138000".into(), "13900139000".into()];
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(
        (out.channel, out.attempts, out.result.clone()),
        ("sms", 2, Ok(())),
        "{out:?}"
    );

    let seen = mock.seen();
    let to: Vec<String> = seen
        .iter()
        .map(|s| s.json()["to"].as_str().unwrap().to_owned())
        .collect();
    // The first number once; the second refused for now, then sent.
    assert_eq!(to, ["13800138000", "13900139000", "13900139000"]);
    for s in &seen {
        assert_eq!(s.header("authorization"), format!("Bearer {SMS_TOKEN}"));
        assert_eq!(s.header("content-type"), "application/json");
        let body = s.json();
        assert_eq!(body["template"], "SMS_0001");
        assert_eq!(body["params"], json!(["烟雾报警", "lakeside", "CH-1"]));
        let text = body["content"].as_str().unwrap();
        assert_eq!(
            text,
            "【紧急告警】烟雾报警，lakeside 3号楼 CH-1，12-01 08:00 Critical alert: Smoke CH-1"
        );
        assert!(text.chars().count() <= 70);
    }
}

#[tokio::test]
async fn sms_as_a_form_cut_to_its_length_and_a_refusal_is_a_dead_letter() {
    let mock = Mock::start().await;
    mock.script(
        "/v1/sms/send",
        &[(
            200,
            r#"{"code":"INVALID_NUMBER","message":"bad number for key sms-api-key-4f1e2d3c"}"#,
        )],
    );
    let sms = Sms::new(
        sms_config(
            &mock,
            &json!({
                "encoding": "form",
                "body": {"mobile": "{phone}", "msg": "{text}", "n": 1},
                "query": {"apikey": "{token}"},
                "headers": {},
                "max_chars": 20,
            }),
        ),
        Duration::from_secs(5),
    )
    .unwrap();
    let (outbox, mut rx) = outbox(Arc::new(sms), 5);
    let mut to = contact("pm-lake");
    to.sms = vec!["13800138000".into()];
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(out.attempts, 1);
    let error = out.result.unwrap_err();
    assert!(
        error.contains("INVALID_NUMBER") && error.contains("138****8000"),
        "{error}"
    );
    assert!(!error.contains(SMS_TOKEN) && !error.contains("13800138000"), "{error}");

    let s = &mock.seen()[0];
    assert_eq!(s.header("content-type"), "application/x-www-form-urlencoded");
    assert_eq!(s.query.get("apikey").map(String::as_str), Some(SMS_TOKEN));
    let form: HashMap<String, String> = url_pairs(std::str::from_utf8(&s.body).unwrap()).into_iter().collect();
    assert_eq!(form["mobile"], "13800138000");
    assert_eq!(form["n"], "1");
    // Twenty characters: the Chinese form, cut, with an ellipsis.
    assert_eq!(form["msg"], "【紧急告警】烟雾报警，lakeside…");
    assert_eq!(form["msg"].chars().count(), 20);
}

#[tokio::test]
async fn sms_gateway_errors_are_retried_by_status() {
    let mock = Mock::start().await;
    mock.script("/v1/sms/send", &[(503, "busy"), (401, "no such key")]);
    let sms = Sms::new(sms_config(&mock, &json!({})), Duration::from_secs(5)).unwrap();
    let (outbox, mut rx) = outbox(Arc::new(sms), 5);
    let mut to = contact("pm-lake");
    to.sms = vec!["13800138000".into()];
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    // 503 retried, 401 final.
    assert_eq!(out.attempts, 2);
    assert!(out.result.unwrap_err().contains("401"));
}

#[tokio::test]
async fn sms_keeps_retrying_a_number_failing_for_now_beside_one_refused_for_good() {
    let mock = Mock::start().await;
    mock.script(
        "/v1/sms/send",
        &[
            (200, r#"{"code":"INVALID_NUMBER"}"#),
            (503, "busy"),
            (200, r#"{"code":"OK"}"#),
        ],
    );
    let sms = Sms::new(sms_config(&mock, &json!({})), Duration::from_secs(5)).unwrap();
    let (outbox, mut rx) = outbox(Arc::new(sms), 5);
    let mut to = contact("pm-lake");
    to.sms = vec!["13800138000".into(), "13900139000".into()];
    outbox.submit(Delivery::new(to, smoke("m-1"))).unwrap();
    let out = next_outcome(&mut rx).await;
    // The busy number was retried (and reached); the refused one was not
    // tried again, and makes the message a dead letter naming it.
    let to: Vec<String> = mock
        .seen()
        .iter()
        .map(|s| s.json()["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(to, ["13800138000", "13900139000", "13900139000"]);
    assert_eq!(out.attempts, 2, "{out:?}");
    let error = out.result.unwrap_err();
    assert!(
        error.contains("INVALID_NUMBER") && error.contains("138****8000") && error.contains("1 reached"),
        "{error}"
    );
}

#[tokio::test]
async fn sms_cut_off_by_shutdown_says_which_numbers_it_reached_and_a_resumed_delivery_skips_them() {
    let mock = Mock::start().await;
    mock.script("/v1/sms/send", &[(200, r#"{"code":"OK"}"#), (503, "busy")]);
    let sms: Arc<dyn Channel> = Arc::new(Sms::new(sms_config(&mock, &json!({})), Duration::from_secs(5)).unwrap());
    // A retry far in the future: shutdown comes first.
    let slow = notify::RetryPolicy {
        attempts: 5,
        first: Duration::from_mins(10),
        max: Duration::from_mins(10),
    };
    let (outbox, mut rx, _task) = Outbox::start(vec![Arc::clone(&sms)], slow, 16, 4);
    let mut to = contact("pm-lake");
    to.sms = vec!["13800138000".into(), "13900139000".into()];
    outbox.submit(Delivery::new(to.clone(), smoke("m-1"))).unwrap();
    until_seen(&mock, 2).await;
    outbox.close(Duration::ZERO);
    let out = next_outcome(&mut rx).await;
    assert!(out.interrupted() && out.last, "{out:?}");
    assert_eq!(out.reached, ["sms:13800138000"]);

    // The next start: a fresh channel, told what was reached.
    mock.script("/v1/sms/send", &[(200, r#"{"code":"OK"}"#)]);
    let sms = Sms::new(sms_config(&mock, &json!({})), Duration::from_secs(5)).unwrap();
    let (outbox, mut rx) = self::outbox(Arc::new(sms), 3);
    outbox
        .submit(Delivery {
            to,
            msg: smoke("m-1"),
            reached: out.reached.clone(),
        })
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(
        (out.result.clone(), out.reached.clone()),
        (Ok(()), vec!["sms".to_owned()])
    );
    let to: Vec<String> = mock
        .seen()
        .iter()
        .map(|s| s.json()["to"].as_str().unwrap().to_owned())
        .collect();
    // The first number only once, across both runs.
    assert_eq!(to, ["13800138000", "13900139000", "13900139000"]);
}

/// Waits until the mock has answered `n` requests.
async fn until_seen(mock: &Mock, n: usize) {
    crate::common::until(&format!("{n} requests"), || mock.seen().len() >= n).await;
}
