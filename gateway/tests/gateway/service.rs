//! `gateway run` end to end, in process: the embedded broker, a real
//! `mosquitto_pub` publishing to it, the pipeline into SQLite, the HTTP API,
//! auth, metrics, shutdown, and the registry restored after a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gateway::app::config::Config;

use crate::http::{free_addr, publish};

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    crate::http::get(addr.port(), path, token).await
}

/// Polls `path` until `pred` holds on the body (bounded: 10 s).
async fn wait_for(http: SocketAddr, path: &str, pred: impl Fn(&str) -> bool) -> String {
    crate::http::wait_for(http.port(), path, pred).await
}

fn config(dir: &Path) -> (Config, SocketAddr, SocketAddr) {
    let mut c = Config::default();
    c.mqtt.listen = free_addr();
    c.http.listen = free_addr();
    dir.clone_into(&mut c.storage.data_dir);
    (c.clone(), c.mqtt.listen, c.http.listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_store_and_serve_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, mqtt, http) = config(dir.path());
    let gw = crate::http::start(cfg).await;
    testkit::wait_port(mqtt.port());

    // Auth first: no token, an unknown token, health without a token.
    assert_eq!(get(http, "/api/v1/devices", None).await.0, 401);
    assert_eq!(get(http, "/api/v1/devices", Some("nope")).await.0, 401);
    assert_eq!(get(http, "/healthz", None).await, (200, "ok".into()));

    // The gateway subscribes after connecting to its broker: publish until the first birth shows.
    let base = "fm/v1/lakeside/elevator/EL-3";
    let birth = r#"{"v":1,"seq":0,"ts":1763798400000,"bdseq":1,"fw":"1.4.2","model":"M","cfg":"c","interval_s":10}"#;
    let mut seen = false;
    for _ in 0..100 {
        publish(mqtt, &format!("{base}/birth"), birth).await;
        let (_, body) = get(http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN)).await;
        if body.contains("EL-3") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the birth never reached the registry");
    for seq in 1..=3 {
        let ts = 1_763_798_400_000i64 + i64::from(seq) * 1000;
        let p = format!(r#"{{"v":1,"seq":{seq},"ts":{ts},"bdseq":1,"m":{{"floor":{seq},"running":true}}}}"#);
        publish(mqtt, &format!("{base}/data"), &p).await;
    }
    publish(mqtt, &format!("{base}/data"), "{broken").await;
    publish(mqtt, "fm/v1/Bad Site/elevator/x/data", "{}").await;

    let body = wait_for(
        http,
        "/api/v1/series?device=EL-3&metric=floor&from=2025-11-22T08:00:00Z",
        |b| b.matches("\"ts\"").count() == 3,
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let floors: Vec<f64> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(floors, [1.0, 2.0, 3.0]);

    let devices = wait_for(http, "/api/v1/devices", |b| b.contains("\"fw\":\"1.4.2\"")).await;
    let v: serde_json::Value = serde_json::from_str(&devices).unwrap();
    let d = &v["devices"][0];
    assert_eq!(
        (d["site"].as_str(), d["class"].as_str(), d["bdseq"].as_u64()),
        (Some("lakeside"), Some("elevator"), Some(1))
    );

    let metrics = wait_for(http, "/metrics", |b| b.contains("reason=\"bad_topic\"")).await;
    assert!(
        metrics.contains("fm_ingest_rejected_total{reason=\"bad_json\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fm_ingest_rejected_total{reason=\"bad_topic\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("fm_store_values_total 6"), "{metrics}");

    // Bad queries are clear errors.
    let (status, body) = get(http, "/api/v1/series?device=EL-3", Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(status, 400);
    assert!(body.contains("`metric` is required"), "{body}");
    let (status, body) = get(
        http,
        "/api/v1/series?device=EL-3&metric=floor&from=yesterday",
        Some(testkit::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("neither RFC 3339"), "{body}");

    let metrics = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await.1;
    // Every stored message (3 samples and at least one birth) has its latency observed.
    let observed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fm_pipeline_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(observed >= 4, "{metrics}");

    // Clean shutdown, then a restart on the same data directory keeps the registry.
    gw.stop().await;
    // Rejected input was kept for audit, with its reason.
    let rejected = gateway::store::Store::open(dir.path()).unwrap().rejected(10).unwrap();
    let mut reasons: Vec<&str> = rejected.iter().map(|(_, _, r)| r.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["bad_json", "bad_topic"]);
    let (cfg, _, http) = config(dir.path());
    let gw = crate::http::start(cfg).await;
    let (_, body) = get(http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN)).await;
    assert!(body.contains("\"fw\":\"1.4.2\""), "registry restored: {body}");
    let (_, body) = get(
        http,
        "/api/v1/series?device=EL-3&metric=floor&from=0",
        Some(testkit::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(body.matches("\"ts\"").count(), 3, "{body}");
    gw.stop().await;
}
