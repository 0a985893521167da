//! The judgement from history in the running gateway, on virtual time:
//! three trapped passengers in a month are one `frequent_faults` alert
//! (major, from the `history` source, listing them) and one inspection
//! order; health answers with its reasons and the "inspect first" list;
//! the monthly report flags the lift; and a restart keeps all of it — the
//! alert, the order, and the incremental state (a pump's trend).

use std::time::Duration;

use gateway::app::shared::Options;
use gateway::clock::{Clock as _, ManualClock};
use serde_json::Value;

use crate::http::{free_addr, get, publish};

/// 2026-12-01T08:00:00+08:00.
const T0: i64 = 1_796_083_200_000;

async fn start(dir: &std::path::Path, clock: &ManualClock) -> (gateway::app::run::Running, std::net::SocketAddr, u16) {
    let (mqtt, http) = (free_addr(), free_addr());
    let text = format!(
        // Incidents of 30 s: the three trapped passengers come a minute and
        // a half apart here (each a separate incident), where the default
        // hour would make them one (judgement's own tests cover that).
        "{}[[contacts]]\nid = \"acme\"\nmqtt = true\n[[dispatch.assign]]\ncontractor = \"acme\"\n[judgement]\nfault_incident = \"30s\"\n",
        crate::http::base_config(mqtt.port(), http.port(), dir)
    );
    let cfg = gateway::app::config::Config::parse(std::path::Path::new("judgement.toml"), &text).unwrap();
    let options = Options {
        clock: std::sync::Arc::new(clock.clone()),
        ticker: false,
    };
    let gw = gateway::app::run::start(cfg, testkit::ADMIN_TOKEN.into(), options)
        .await
        .unwrap();
    testkit::wait_port(mqtt.port());
    (gw, mqtt, http.port())
}

async fn json(http: u16, path: &str) -> Value {
    let (status, body) = get(http, path, Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Publishes until the gateway has a message of the device (its broker
/// subscribes a moment after the port opens).
async fn first(gw: &gateway::app::run::Running, mqtt: std::net::SocketAddr, http: u16, topic: &str, payload: &str) {
    let device = topic.split('/').nth(4).unwrap();
    for _ in 0..200 {
        publish(mqtt, topic, payload).await;
        gw.sync().await.unwrap();
        if get(http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN))
            .await
            .1
            .contains(device)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{topic} never reached the registry");
}

async fn step(gw: &gateway::app::run::Running, clock: &ManualClock, ms: i64) {
    clock.advance(ms);
    gw.tick().await.unwrap();
    gw.sync().await.unwrap();
}

const LIFT: &str = "fm/v1/lakeside/elevator/EL-3/data";

fn lift(seq: u32, trapped: bool) -> String {
    format!(
        r#"{{"v":1,"seq":{seq},"ts":{T0},"m":{{"occupied":{trapped},"running":false,"door_closed":true,"door_zone":{},"service_mode":1}}}}"#,
        !trapped
    )
}

/// One trapped passenger: 21 s stuck outside the door zone, then freed.
async fn trapped(gw: &gateway::app::run::Running, clock: &ManualClock, mqtt: std::net::SocketAddr, seq: &mut u32) {
    *seq += 1;
    publish(mqtt, LIFT, &lift(*seq, true)).await;
    gw.sync().await.unwrap();
    step(gw, clock, 21_000).await;
    *seq += 1;
    publish(mqtt, LIFT, &lift(*seq, false)).await;
    gw.sync().await.unwrap();
    step(gw, clock, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_faults_are_one_frequent_faults_alert_and_one_inspection_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (gw, mqtt, http) = start(dir.path(), &clock).await;
    let mut seq = 0;
    first(&gw, mqtt, http, LIFT, &lift(0, false)).await;
    // A fire pump whose jockey starts go into its trend.
    let pump = "fm/v1/lakeside/firepump/PUMP-1/data";
    first(
        &gw,
        mqtt,
        http,
        pump,
        r#"{"v":1,"seq":1,"ts":0,"m":{"jockey_running":false,"network_pressure_mpa":0.35}}"#,
    )
    .await;

    for _ in 0..3 {
        trapped(&gw, &clock, mqtt, &mut seq).await;
        // Within its reporting window: an offline lift's alerts would be
        // held back by its `offline` (root-cause inhibition).
        step(&gw, &clock, 60_000).await;
    }
    // Major: notified and dispatched after the group wait.
    step(&gw, &clock, 31_000).await;
    let alerts = json(http, "/api/v1/alerts?code=frequent_faults").await;
    let a = &alerts["alerts"][0];
    assert_eq!(
        (a["state"].as_str(), a["severity"].as_str()),
        (Some("firing"), Some("major")),
        "{alerts}"
    );
    assert_eq!(a["sources"], serde_json::json!(["history"]));
    let listed: Vec<&str> = a["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["metric"] == "fault")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{a}");
    assert!(listed.iter().all(|t| t.starts_with("trapped")), "{listed:?}");
    let orders = |http: u16| async move {
        json(http, "/api/v1/work-orders").await["work_orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["code"].as_str().unwrap().to_owned(),
                    o["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let inspections = |os: &[(String, String)]| os.iter().filter(|(c, _)| c == "frequent_faults").count();
    assert_eq!(inspections(&orders(http).await), 1, "{:?}", orders(http).await);

    // Health: 3 faults (30) and frequent (20) off; the lift first to inspect.
    let h = json(http, "/api/v1/health?site=lakeside").await;
    let el3 = h["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "EL-3")
        .unwrap();
    assert_eq!(el3["score"], 50, "{h}");
    assert_eq!(h["inspect_first"][0]["device"], "EL-3", "{h}");
    assert!(
        el3["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["fault"] == "frequent_faults")
    );
    let report = json(http, "/api/v1/reports/monthly?site=lakeside&month=2026-12").await;
    assert_eq!(report["frequent_faults"]["devices"][0]["device"], "EL-3", "{report}");
    assert_eq!(report["frequent_faults"]["contractors"][0]["id"], "acme", "{report}");

    // A day passes for the pump: a jockey cycle an hour, its bucket closes.
    let mut pseq = 1;
    for _ in 0..26 {
        for (running, p) in [(true, 0.30), (false, 0.35)] {
            pseq += 1;
            publish(
                mqtt,
                pump,
                &format!(
                    r#"{{"v":1,"seq":{pseq},"ts":0,"m":{{"jockey_running":{running},"network_pressure_mpa":{p}}}}}"#
                ),
            )
            .await;
            gw.sync().await.unwrap();
            step(&gw, &clock, if running { 60_000 } else { 540_000 }).await;
        }
        for _ in 0..5 {
            pseq += 1;
            publish(
                mqtt,
                pump,
                &format!(r#"{{"v":1,"seq":{pseq},"ts":0,"m":{{"jockey_running":false}}}}"#),
            )
            .await;
            gw.sync().await.unwrap();
            step(&gw, &clock, 600_000).await;
        }
    }
    let before = json(http, "/api/v1/health?device=PUMP-1").await;
    let reason = |h: &Value| {
        h["devices"][0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == "jockey_starts_per_h")
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(reason(&before)["trend"], "learning", "{before}");
    gw.stop().await.unwrap();
    let stored = gateway::ops::judgement::load(gateway::store::Store::open(dir.path()).unwrap().conn()).unwrap();

    // Restart: the state, the alert and the order are where they were.
    let clock = ManualClock::new(clock.now_ms() + 60_000);
    let (gw, mqtt, http) = start(dir.path(), &clock).await;
    gw.sync().await.unwrap();
    let restored = gateway::ops::judgement::load(gateway::store::Store::open(dir.path()).unwrap().conn()).unwrap();
    assert_eq!(stored, restored);
    let pump_state = restored.iter().find(|d| d.device == "PUMP-1").unwrap();
    assert!(
        pump_state
            .tracks
            .iter()
            .any(|t| t.id == "jockey_starts_per_h" && t.trend.n >= 1),
        "{pump_state:?}"
    );
    assert_eq!(
        reason(&json(http, "/api/v1/health?device=PUMP-1").await)["value"],
        reason(&before)["value"]
    );
    let alerts = json(http, "/api/v1/alerts?code=frequent_faults").await;
    assert_eq!(alerts["alerts"][0]["state"], "firing", "{alerts}");
    // A fourth fault: still one alert, still one inspection order.
    first(&gw, mqtt, http, LIFT, &lift(1000, false)).await;
    seq = 1000;
    trapped(&gw, &clock, mqtt, &mut seq).await;
    step(&gw, &clock, 31_000).await;
    assert_eq!(inspections(&orders(http).await), 1, "{:?}", orders(http).await);
    assert_eq!(
        json(http, "/api/v1/alerts?code=frequent_faults").await["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let h = json(http, "/api/v1/health?site=lakeside&device=EL-3").await;
    assert_eq!(h["devices"][0]["score"], 100 - 40 - 20, "{h}");
    gw.stop().await.unwrap();
}
