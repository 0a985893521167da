//! Commands to nodes, end to end (CONTRACT §9): the API sends a signed
//! `cmd` through the gateway's broker (embedded, and a real Mosquitto); a
//! node played here with its own MQTT client checks every command's MAC
//! with `protocol::cmdauth` and answers with an `ack`; the outcome is the
//! command's status and a record. The rules that command on their own
//! (smoke, the weekly self-test, an e-bike in a car, threshold overrides)
//! are driven by what a node would send. Expiry runs on a manual clock.

use std::time::Duration;

use gateway::app::shared::Options;
use gateway::clock::ManualClock;
use protocol::cmdauth::{self, CommandKey, Recipient};
use protocol::{Cmd, Message};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::http::{free_addr, get, post_as, publish};

const LAKE: &str = "engineer-lakeside-01";
const HILL: &str = "engineer-hillside-01";
const ACME: &str = "acme-token-0123456789";
const BUREAU: &str = "auditor-token-012345";
const ADMIN: &str = testkit::ADMIN_TOKEN;

/// 2026-12-01T08:00:00+08:00, a Tuesday.
const T0: i64 = 1_796_083_200_000;

fn tokens() -> String {
    format!(
        r#"
[[http.tokens]]
name = "zhang"
token = "{LAKE}"
role = "engineer"
sites = ["lakeside"]
[[http.tokens]]
name = "li"
token = "{HILL}"
role = "engineer"
sites = ["hillside"]
[[http.tokens]]
name = "acme-app"
token = "{ACME}"
role = "contractor"
contractor = "acme"
[[http.tokens]]
name = "bureau"
token = "{BUREAU}"
role = "auditor"
[[contacts]]
id = "acme"
mqtt = true
[dispatch]
no_builtin_duties = true
"#
    )
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Provisions a device; its command key.
async fn provision(http: u16, site: &str, class: &str, device: &str) -> [u8; 32] {
    let (status, body) = post_as(
        http,
        "/api/v1/devices",
        &json!({"site": site, "class": class, "device": device}).to_string(),
        ADMIN,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = hex::decode(json_of(&body)["cmd_key"].as_str().unwrap()).unwrap();
    key.try_into().unwrap()
}

/// What the played node answers a command with: messages to publish on
/// its own topics (`kind`, the payload without `v`, `seq`, `ts`).
type Answer = Box<dyn Fn(&Cmd) -> Vec<(&'static str, Value)> + Send>;

/// A node's `ack` of `cmd`.
fn ack(cmd: &Cmd, ok: bool, error: Option<&str>) -> (&'static str, Value) {
    let mut a = json!({"id": cmd.id.as_str(), "ok": ok});
    if let Some(e) = error {
        a["error"] = json!(e);
    }
    ("ack", a)
}

/// A device played here: subscribed to its `cmd` topic, it checks each
/// command's MAC against its key and that the counter only goes up, hands
/// the command (or what is wrong with it) to the test, and answers.
struct Node {
    got: mpsc::UnboundedReceiver<Result<Cmd, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(mqtt: u16, site: &str, class: &str, device: &str, key: [u8; 32], answer: Answer) -> Node {
        let base = format!("fm/v1/{site}/{class}/{device}");
        let mut opts = MqttOptions::new(format!("node-{site}-{device}"), "127.0.0.1", mqtt);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(opts, 64);
        client.subscribe(format!("{base}/cmd"), QoS::AtLeastOnce).await.unwrap();
        let (tx, got) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut guard = cmdauth::Guard::new();
            let key = CommandKey::from_bytes(key);
            // Above what the tests publish for the device themselves: the
            // gateway drops a repeated `seq` as a duplicate.
            let mut seq = 100u32;
            loop {
                let Ok(ev) = events.poll().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let Event::Incoming(p) = ev else { continue };
                match p {
                    Packet::SubAck(_) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Packet::Publish(p) => {
                        let topic = protocol::Topic::parse(&p.topic).unwrap();
                        let cmd = match protocol::decode(protocol::Kind::Cmd, &p.payload) {
                            Ok(Message::Cmd(c)) => c,
                            other => {
                                let _ = tx.send(Err(format!("not a cmd: {other:?}")));
                                continue;
                            }
                        };
                        // The node's own check: MAC, and a counter above the last.
                        if let Err(e) = guard.check(Some(&key), &Recipient::of(&topic), &cmd, None) {
                            let _ = tx.send(Err(format!("refused {}: {e}", cmd.id)));
                            continue;
                        }
                        for (kind, mut body) in answer(&cmd) {
                            seq += 1;
                            body["v"] = json!(1);
                            body["seq"] = json!(seq);
                            body["ts"] = json!(T0);
                            let _ =
                                client.try_publish(format!("{base}/{kind}"), QoS::AtLeastOnce, false, body.to_string());
                        }
                        let _ = tx.send(Ok(cmd));
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("the node never subscribed")
            .unwrap();
        Node { got, task }
    }

    /// The next command the node received (10 s at most), its MAC checked.
    async fn next(&mut self) -> Cmd {
        let got = tokio::time::timeout(Duration::from_secs(10), self.got.recv())
            .await
            .expect("no command reached the node")
            .unwrap();
        got.unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `GET /api/v1/commands/{id}` until its status is `status`.
async fn status_until(http: u16, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (code, body) = get(http, &format!("/api/v1/commands/{id}"), Some(LAKE)).await;
        if code == 200 {
            last = json_of(&body);
            if last["status"] == status {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("command {id} never became {status}: {last}");
}

async fn records(http: u16, query: &str) -> Vec<Value> {
    let (_, body) = get(http, &format!("/api/v1/records{query}"), Some(ADMIN)).await;
    json_of(&body)["records"].as_array().cloned().unwrap_or_default()
}

fn kinds(rs: &[Value]) -> Vec<String> {
    rs.iter().map(|r| r["kind"].as_str().unwrap().to_owned()).collect()
}

async fn send(http: u16, token: &str, device: &str, body: Value) -> (u16, Value) {
    let (status, text) = post_as(
        http,
        &format!("/api/v1/devices/lakeside/{device}/commands"),
        &body.to_string(),
        token,
    )
    .await;
    (status, json_of(&text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_signed_sent_acked_or_refused_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let text = format!(
        "{}{}",
        crate::http::base_config(mqtt.port(), http.port(), dir.path()),
        tokens()
    );
    let cfg = gateway::app::config::Config::parse(std::path::Path::new("commands.toml"), &text).unwrap();
    let gw = crate::http::start(cfg).await;
    testkit::wait_port(mqtt.port());
    let http = http.port();
    let key = provision(http, "lakeside", "charger", "BAY-1").await;
    let mut node = Node::start(
        mqtt.port(),
        "lakeside",
        "charger",
        "BAY-1",
        key,
        Box::new(|c: &Cmd| match c.op.as_str() {
            "clear" => vec![ack(c, false, Some("cause_present"))],
            _ => vec![ack(c, true, None)],
        }),
    )
    .await;

    // The engineer of the compound cuts port 3: sent, signed, carried out.
    let (status, sent) = send(http, LAKE, "BAY-1", json!({"op": "cut_off", "args": {"port": 3}})).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["status"], "sent");
    let id = sent["id"].as_str().unwrap().to_owned();
    let cmd = node.next().await;
    assert_eq!(
        (cmd.id.as_str(), cmd.op.as_str(), cmd.args.port),
        (id.as_str(), "cut_off", Some(3))
    );
    let (ctr, exp) = (cmd.ctr.unwrap(), cmd.exp.unwrap().as_millis());
    assert!(ctr < 1 << 53, "{ctr}");
    let done = status_until(http, &id, "acked").await;
    assert_eq!(done["error"], Value::Null);
    assert_eq!(
        (done["by"].as_str(), done["expires_at"].as_i64()),
        (Some("zhang"), Some(exp))
    );
    assert_eq!(exp - done["sent_at"].as_i64().unwrap(), 30_000);

    // A clear the node refuses: refused, with its reason; a higher counter.
    let (_, sent) = send(http, ADMIN, "BAY-1", json!({"op": "clear", "args": {"port": 3}})).await;
    let refused_id = sent["id"].as_str().unwrap().to_owned();
    let second = node.next().await;
    assert!(second.ctr.unwrap() > ctr);
    let refused = status_until(http, &refused_id, "refused").await;
    assert_eq!(refused["error"], "cause_present");
    assert_eq!(refused["op"], "clear");
    assert_eq!(refused["args"], json!({"port": 3}));

    let (_, sent) = send(http, LAKE, "BAY-1", json!({"op": "cut_off"})).await;
    let third = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(node.next().await.args.port, None, "no port: every port");
    status_until(http, &third, "acked").await;

    // An ack from another device for a command's id settles nothing; its
    // own device's does. (A QoS 1 publish is acknowledged once stored.)
    provision(http, "lakeside", "charger", "BAY-3").await;
    let (_, sent) = send(http, LAKE, "BAY-3", json!({"op": "cut_off"})).await;
    let silent = sent["id"].as_str().unwrap().to_owned();
    let spoof = json!({"v": 1, "seq": 900, "ts": 1, "id": silent, "ok": true}).to_string();
    publish(mqtt, "fm/v1/lakeside/charger/BAY-1/ack", &spoof).await;
    let (_, body) = get(http, &format!("/api/v1/commands/{silent}"), Some(LAKE)).await;
    assert_eq!(json_of(&body)["status"], "sent", "{body}");
    publish(mqtt, "fm/v1/lakeside/charger/BAY-3/ack", &spoof).await;
    status_until(http, &silent, "acked").await;

    // Who may: the engineer of another compound, a contractor, an auditor may not.
    for token in [HILL, ACME, BUREAU] {
        let (status, body) = send(http, token, "BAY-1", json!({"op": "cut_off"})).await;
        assert_eq!(status, 403, "{token}: {body}");
    }
    let (status, _) = get(http, &format!("/api/v1/commands/{id}"), Some(HILL)).await;
    assert_eq!(status, 403);
    let (status, _) = get(http, &format!("/api/v1/commands/{id}"), Some(ACME)).await;
    assert_eq!(status, 403);
    let (status, body) = get(http, &format!("/api/v1/commands/{id}"), Some(BUREAU)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(http, "/api/v1/commands/no-such-command", Some(ADMIN)).await;
    assert_eq!(status, 404);

    // Clear refusals: an unknown device, a device seen but not provisioned,
    // an op the class does not carry out, arguments the op does not take.
    let (status, body) = send(http, ADMIN, "NO-SUCH", json!({"op": "cut_off"})).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "{body}");
    publish(
        mqtt,
        "fm/v1/lakeside/charger/BAY-2/data",
        r#"{"v":1,"seq":1,"ts":1,"m":{"smoke":false}}"#,
    )
    .await;
    crate::http::wait_for(http, "/api/v1/devices", |b| b.contains("BAY-2")).await;
    let (status, body) = send(http, ADMIN, "BAY-2", json!({"op": "cut_off"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("no_credentials")),
        "{body}"
    );
    let (status, body) = send(http, ADMIN, "BAY-1", json!({"op": "self_test"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_op")),
        "{body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cut_off, clear, set_threshold")
    );
    for bad in [
        json!({"op": "cut_off", "args": {"port": 0}}),
        json!({"op": "cut_off", "args": {"bay": 1}}),
        json!({"op": "explode"}),
        json!({"op": "set_threshold", "args": {"name": "over_temp_c"}}),
    ] {
        let (status, body) = send(http, LAKE, "BAY-1", bad.clone()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {body}"
        );
    }

    // Every command and outcome is a record, and none holds the key.
    let rs = records(http, "?device=BAY-1").await;
    let ks = kinds(&rs);
    for k in ["command_sent", "command_acked", "command_refused"] {
        assert!(ks.iter().any(|x| x == k), "{k}: {ks:?}");
    }
    assert_eq!(ks.iter().filter(|k| *k == "command_sent").count(), 3, "{ks:?}");
    let sent_record = rs.iter().find(|r| r["kind"] == "command_sent").unwrap();
    assert_eq!(sent_record["subject"], format!("command:{id}"));
    assert_eq!(sent_record["label_zh"], "指令下发 · 切断端口");
    let all = serde_json::to_string(&rs).unwrap();
    assert!(!all.contains(&hex::encode(key)), "the key is in a record");
    let verify = crate::http::body(http, "/api/v1/records/verify").await;
    assert!(verify.contains("\"ok\":true"), "{verify}");

    let metrics = crate::http::body(http, "/metrics").await;
    for line in [
        r#"fm_commands_total{op="cut_off",status="sent"} 3"#,
        r#"fm_commands_total{op="cut_off",status="acked"} 3"#,
        r#"fm_commands_total{op="clear",status="refused"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    drop(node);
    gw.stop().await;
}

/// The gateway's side of the weekly pump self-test and of expiry, on a
/// manual clock: a command without an ack expires at 30 s of the
/// gateway's time, and the self-test is started at its configured time and
/// its outcome fulfils the duty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_the_weekly_self_test_run_on_the_gateways_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let text = format!(
        "{}{}[[dispatch.duties]]\nclass = \"firepump\"\nduty = \"self_test\"\nevery = \"7d\"\nnotice = \"7d\"\nby_self_test = true\n\
         [commands.self_test]\nweekday = \"tuesday\"\ntime = \"08:10\"\n",
        crate::http::base_config(mqtt.port(), http.port(), dir.path()),
        tokens()
    );
    let cfg = gateway::app::config::Config::parse(std::path::Path::new("self-test.toml"), &text).unwrap();
    let clock = ManualClock::new(T0);
    let options = Options {
        clock: std::sync::Arc::new(clock.clone()),
        ticker: false,
    };
    let gw = gateway::app::run::start(cfg, ADMIN.into(), options).await.unwrap();
    testkit::wait_port(mqtt.port());
    assert!(gw.subscribed(Duration::from_secs(10)).await);
    let http = http.port();
    let step = async |ms: i64| {
        clock.advance(ms);
        gw.tick().await.unwrap();
        gw.sync().await.unwrap();
    };

    // No node listens on this bay: its command expires at 30 s, not before.
    provision(http, "lakeside", "charger", "BAY-1").await;
    let (status, sent) = send(http, LAKE, "BAY-1", json!({"op": "cut_off", "args": {"port": 1}})).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    step(29_999).await;
    assert_eq!(status_until(http, &id, "sent").await["settled_at"], Value::Null);
    step(1).await;
    let expired = status_until(http, &id, "expired").await;
    assert_eq!(expired["settled_at"].as_i64(), Some(T0 + 30_000));
    let rs = records(http, "?kind=command_expired").await;
    assert_eq!(rs.len(), 1, "{rs:?}");

    // The pump: provisioned, seen (its duty begins), and a node that runs
    // its self-test when told and reports the outcome.
    let key = provision(http, "lakeside", "firepump", "PUMP-1").await;
    let mut pump = Node::start(
        mqtt.port(),
        "lakeside",
        "firepump",
        "PUMP-1",
        key,
        Box::new(|c: &Cmd| {
            vec![
                ack(c, true, None),
                (
                    "event",
                    json!({"code": "self_test", "active": true, "detail": {"ok": true, "duration_s": 120}}),
                ),
            ]
        }),
    )
    .await;
    let birth = r#"{"v":1,"seq":0,"ts":1796083200000,"bdseq":1,"fw":"1","model":"m","cfg":"c","interval_s":3600}"#;
    publish(mqtt, "fm/v1/lakeside/firepump/PUMP-1/birth", birth).await;
    let mut duty = Value::Null;
    for _ in 0..200 {
        gw.sync().await.unwrap();
        let (_, body) = get(http, "/api/v1/work-orders?kind=preventive&device=PUMP-1", Some(ADMIN)).await;
        duty = json_of(&body)["work_orders"][0].clone();
        if duty.is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(duty["code"], "self_test", "{duty}");

    // 08:09:59: nothing yet; 08:10: the self-test is sent.
    step(10 * 60_000 - 30_000 - 1).await;
    step(1).await;
    let cmd = pump.next().await;
    assert_eq!(cmd.op.as_str(), "self_test");
    let run = status_until(http, cmd.id.as_str(), "acked").await;
    assert_eq!(run["by"], "schedule:self_test");
    assert_eq!(run["sent_at"].as_i64(), Some(T0 + 10 * 60_000));
    // The node's outcome fulfils the duty.
    let mut closed = Value::Null;
    for _ in 0..200 {
        gw.sync().await.unwrap();
        let (_, body) = get(http, &format!("/api/v1/work-orders/{}", duty["id"]), Some(ADMIN)).await;
        closed = json_of(&body);
        if closed["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closed["status"], "completed", "{closed}");
    assert_eq!(closed["steps"][0]["by"], "node");
    // Once a week: a minute later nothing more is sent.
    step(60_000).await;
    let (_, sent) = send(http, ADMIN, "PUMP-1", json!({"op": "self_test"})).await;
    assert_eq!(
        pump.next().await.id.as_str(),
        sent["id"].as_str().unwrap(),
        "the next is the engineer's"
    );
    drop(pump);
    gw.stop().await.unwrap();
}

/// Behind a real Mosquitto, the rules command on their own: smoke a plain
/// sensor reports cuts the bay (a node that cut itself is left alone),
/// threshold overrides go out at a birth and are confirmed by the next, an
/// e-bike holds a car's doors until it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_mosquitto_the_rules_cut_smoke_push_thresholds_and_hold_doors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = testkit::Mosquitto::start(dir.path());
    let http = free_addr();
    let text = format!(
        "[mqtt.broker]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"gw-commands\"\n\
         [http]\nlisten = \"{http}\"\n[storage]\ndata_dir = \"{}\"\n{}\
         [commands]\nhold_doors_on_ebike = true\n\
         [[commands.thresholds]]\nsite = \"lakeside\"\nclass = \"charger\"\nname = \"over_temp_c\"\nvalue = 55.0\n\
         [[commands.thresholds]]\nclass = \"charger\"\nname = \"over_temp_c\"\nvalue = 60.0\n",
        broker.port,
        dir.path().join("data").display(),
        tokens()
    );
    let cfg = gateway::app::config::Config::parse(std::path::Path::new("rules.toml"), &text).unwrap();
    let gw = crate::http::start(cfg).await;
    let http = http.port();
    crate::http::wait_for(http, "/readyz", |b| b.contains("\"ready\":true")).await;
    let ok = || -> Answer { Box::new(|c: &Cmd| vec![ack(c, true, None)]) };
    let mut bay1 = Node::start(
        broker.port,
        "lakeside",
        "charger",
        "BAY-1",
        provision(http, "lakeside", "charger", "BAY-1").await,
        ok(),
    )
    .await;
    let mut bay2 = Node::start(
        broker.port,
        "lakeside",
        "charger",
        "BAY-2",
        provision(http, "lakeside", "charger", "BAY-2").await,
        ok(),
    )
    .await;
    let mut car = Node::start(
        broker.port,
        "lakeside",
        "elevator",
        "EL-1",
        provision(http, "lakeside", "elevator", "EL-1").await,
        ok(),
    )
    .await;
    let broker_addr: std::net::SocketAddr = ([127, 0, 0, 1], broker.port).into();

    // A plain sensor reports smoke: the gateway cuts every port of the bay.
    publish(
        broker_addr,
        "fm/v1/lakeside/charger/BAY-1/data",
        r#"{"v":1,"seq":1,"ts":1,"m":{"smoke":true}}"#,
    )
    .await;
    let cut = bay1.next().await;
    assert_eq!((cut.op.as_str(), cut.args.port), ("cut_off", None));
    let c = status_until(http, cut.id.as_str(), "acked").await;
    assert_eq!(c["by"], "rule:smoke");

    // Our node cut its ports itself and said so: nothing from the gateway.
    // (The next command BAY-2 gets is the threshold push of its birth.)
    publish(
        broker_addr,
        "fm/v1/lakeside/charger/BAY-2/event",
        r#"{"v":1,"seq":1,"ts":1,"code":"smoke","active":true,"detail":{"cut_off":true}}"#,
    )
    .await;
    crate::http::wait_for(http, "/api/v1/alerts?device=BAY-2&code=smoke", |b| b.contains("firing")).await;
    let birth = |bdseq: u32, cfg: &str| {
        format!(
            r#"{{"v":1,"seq":0,"ts":1,"bdseq":{bdseq},"fw":"1","model":"m","cfg":"{cfg}","interval_s":60,"ports":4}}"#
        )
    };
    publish(broker_addr, "fm/v1/lakeside/charger/BAY-2/birth", &birth(1, "cfg-a")).await;
    let push = bay2.next().await;
    assert_eq!(
        (push.op.as_str(), push.args.name.as_deref(), push.args.value),
        ("set_threshold", Some("over_temp_c"), Some(55.0)),
        "the site's override beats the class's; no cut-off came first"
    );
    let p = status_until(http, push.id.as_str(), "acked").await;
    assert_eq!(p["by"], "rule:thresholds");
    // The next birth shows a changed cfg: confirmed, nothing pushed again.
    publish(broker_addr, "fm/v1/lakeside/charger/BAY-2/birth", &birth(2, "cfg-b")).await;
    let mut confirmed = Vec::new();
    for _ in 0..200 {
        confirmed = records(http, "?device=BAY-2&kind=thresholds_confirmed").await;
        if !confirmed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(confirmed.len(), 1);
    assert!(confirmed[0]["body"].as_str().unwrap().contains("cfg-b"));

    // An e-bike in the car: its doors held, then released when it leaves.
    publish(
        broker_addr,
        "fm/v1/lakeside/elevator/EL-1/event",
        r#"{"v":1,"seq":1,"ts":1,"code":"ebike_in_car","active":true}"#,
    )
    .await;
    let hold = car.next().await;
    assert_eq!((hold.op.as_str(), hold.args.hold), ("hold_doors", Some(true)));
    publish(
        broker_addr,
        "fm/v1/lakeside/elevator/EL-1/event",
        r#"{"v":1,"seq":2,"ts":2,"code":"ebike_in_car","active":false}"#,
    )
    .await;
    let release = car.next().await;
    assert_eq!((release.op.as_str(), release.args.hold), ("hold_doors", Some(false)));
    assert!(release.ctr > hold.ctr);
    status_until(http, release.id.as_str(), "acked").await;

    // Each is recorded as issued by its rule.
    let sent = records(http, "?kind=command_sent").await;
    let by: Vec<String> = sent
        .iter()
        .map(|r| json_of(r["body"].as_str().unwrap())["by"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        by,
        [
            "rule:smoke",
            "rule:thresholds",
            "rule:ebike_in_car",
            "rule:ebike_in_car"
        ],
        "{sent:?}"
    );
    drop((bay1, bay2, car));
    gw.stop().await;
    drop(broker);
}
