//! The alerting core wired into the gateway, end to end over the embedded
//! broker: alerts fire from telemetry and node events, show in the API, are
//! acknowledged over HTTP, stream as Server-Sent Events, resolve, and survive
//! a restart with their ids.

use std::time::Duration;

use gateway::app::config::Config;

use crate::http::{free_addr, publish};

fn alerts(body: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The event stream as read so far.
struct Stream {
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    read: String,
}

impl Stream {
    /// Waits (10 s at most) until the stream has carried `needle`.
    async fn until(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.read.contains(needle) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(chunk)) => self.read.push_str(&chunk),
                _ => panic!("the event stream never carried {needle}:\n{}", self.read),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_are_acknowledged_stream_and_resolve_then_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.mqtt.listen = free_addr();
    cfg.http.listen = free_addr();
    dir.path().clone_into(&mut cfg.storage.data_dir);
    let (mqtt, http) = (cfg.mqtt.listen, cfg.http.listen.port());
    let gw = crate::http::start(cfg.clone()).await;
    testkit::wait_port(mqtt.port());
    let mut stream = Stream {
        rx: crate::http::events(http).await,
        read: String::new(),
    };

    // Smoke in the bay (critical, at once): keep publishing until the gateway
    // has subscribed and the alert shows.
    let bay = "fm/v1/lakeside/charger/BAY-07";
    let smoke = r#"{"v":1,"seq":1,"ts":1763798400000,"m":{"smoke":true,"leakage_ma":2}}"#;
    let mut firing = Vec::new();
    for _ in 0..100 {
        publish(mqtt, &format!("{bay}/data"), smoke).await;
        firing = alerts(&crate::http::body(http, "/api/v1/alerts?state=firing").await);
        if !firing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(firing.len(), 1, "{firing:?}");
    let a = &firing[0];
    assert_eq!(
        (a["code"].as_str(), a["device"].as_str(), a["severity"].as_str()),
        (Some("smoke"), Some("BAY-07"), Some("critical"))
    );
    assert_eq!(a["sources"], serde_json::json!(["charger.smoke"]));
    let id = a["id"].as_u64().unwrap();
    stream.until("\"change\":\"fired\"").await;
    // Critical: notified at once, with a work-order intent.
    stream.until("event: notification").await;
    stream.until("event: work_order").await;

    // Acknowledge over HTTP; wrong ids are told apart.
    let (status, body) = crate::http::post(http, &format!("/api/v1/alerts/{id}/ack"), r#"{"by":"li.wei"}"#).await;
    assert_eq!(status, 200, "{body}");
    let acked: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (acked["state"].as_str(), acked["acked_by"].as_str()),
        (Some("acknowledged"), Some("li.wei"))
    );
    stream.until("\"change\":\"acknowledged\"").await;
    assert_eq!(crate::http::post(http, "/api/v1/alerts/999999/ack", "").await.0, 404);
    assert_eq!(crate::http::post(http, "/api/v1/alerts/x/ack", "").await.0, 400);
    assert_eq!(
        crate::http::get(http, "/api/v1/alerts?state=burning", Some(testkit::ADMIN_TOKEN))
            .await
            .0,
        400
    );
    assert_eq!(crate::http::get(http, "/api/v1/alerts", None).await.0, 401);

    // A node-raised event on another device, by port, passes through.
    let ev = r#"{"v":1,"seq":2,"ts":1763798401000,"code":"over_current","active":true,"detail":{"port":3}}"#;
    publish(mqtt, "fm/v1/lakeside/charger/BAY-08/event", ev).await;
    let body = crate::http::wait_for(http, "/api/v1/alerts?device=BAY-08", |b| b.contains("over_current")).await;
    let node = alerts(&body);
    assert_eq!(
        (node[0]["port"].as_u64(), node[0]["sources"][0].as_str()),
        (Some(3), Some("node"))
    );

    // The smoke clears on fresh data: resolved, and kept in the store.
    let clear = r#"{"v":1,"seq":3,"ts":1763798402000,"m":{"smoke":false,"leakage_ma":2}}"#;
    publish(mqtt, &format!("{bay}/data"), clear).await;
    let body = crate::http::wait_for(http, "/api/v1/alerts?state=resolved", |b| b.contains("BAY-07")).await;
    let resolved = alerts(&body);
    assert_eq!(resolved[0]["id"].as_u64(), Some(id));
    assert_eq!(resolved[0]["acked_by"].as_str(), Some("li.wei"));
    // Metrics follow the store a moment later (published after the commit).
    let metrics = crate::http::wait_for(http, "/metrics", |m| {
        m.contains("fm_alert_changes_total{change=\"resolved\"} 1")
    })
    .await;
    assert!(
        metrics.contains("fm_alert_changes_total{change=\"resolved\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("fm_alerts_open 1"), "{metrics}");
    gw.stop().await;

    // After a restart: the resolved alert is history, the open one is still
    // open under the same id, and the log kept every change in order. (The
    // embedded broker cannot stop, so the restart listens on a new port.)
    cfg.mqtt.listen = free_addr();
    let gw = crate::http::start(cfg).await;
    let all = alerts(&crate::http::body(http, "/api/v1/alerts").await);
    let after: Vec<_> = all
        .iter()
        .map(|a| (a["code"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert_eq!(after, [("over_current", "firing"), ("smoke", "resolved")]);
    gw.stop().await;
    let store = gateway::store::Store::open(dir.path()).unwrap();
    let all = gateway::ops::supervision::RecordQuery {
        limit: usize::MAX,
        ..Default::default()
    };
    let kinds: Vec<String> = gateway::ops::supervision::list(store.conn(), &all)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    let position = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} missing from {kinds:?}"))
    };
    let order: Vec<usize> = [
        "config_initial",
        "alert_fired",
        "notification",
        "work_order_dispatched",
        "alert_acknowledged",
        "alert_resolved",
        "work_order_alert_resolved",
    ]
    .iter()
    .map(|k| position(k))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{kinds:?}");
    // And the chain they are in verifies, signed at the shutdowns.
    let v = gateway::ops::supervision::verify(store.conn(), None).unwrap();
    assert!(v.ok && v.checkpoints >= 2, "{v:?}");
}

#[test]
fn events_births_and_acks_take_the_priority_lane_telemetry_and_wills_the_bulk_one() {
    use gateway::ingest::lanes::priority_lane;
    for kind in ["event", "birth", "ack"] {
        assert!(priority_lane(kind), "{kind}");
    }
    for kind in ["data", "death"] {
        assert!(!priority_lane(kind), "{kind}");
    }
}
