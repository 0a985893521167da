//! An outside broker (a real Mosquitto) restarted mid-stream: every QoS 1
//! message still reaches the store, once.

use std::time::Duration;

use gateway::app::config::{BrokerConfig, Config};
use testkit::{Mosquitto, free_port};

async fn publish_until_accepted(port: u16, topic: &str, payload: &str) {
    for _ in 0..200 {
        if crate::http::try_publish(port, topic, payload).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the broker never took {topic}");
}

async fn http_get(port: u16, path: &str) -> String {
    crate::http::body(port, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_qos1_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path());
    let http = free_port();
    let mut config = Config::default();
    config.mqtt.broker = Some(BrokerConfig {
        host: "127.0.0.1".into(),
        port: broker.port,
        client_id: "gw-restart-test".into(),
        username: None,
        password: None,
        share_group: None,
        tls: false,
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
    });
    config.http.listen = ([127, 0, 0, 1], http).into();
    config.storage.data_dir = dir.path().join("data");
    let gw = crate::http::start(config).await;

    let topic = "fm/v1/lakeside/firepump/PUMP-B2";
    let birth = r#"{"v":1,"seq":0,"ts":0,"bdseq":1,"fw":"1","model":"m","cfg":"c","interval_s":3600}"#;
    // Until the gateway has subscribed, births may go nowhere: repeat until one arrives.
    for _ in 0..100 {
        publish_until_accepted(broker.port, &format!("{topic}/birth"), birth).await;
        if http_get(http, "/api/v1/devices").await.contains("PUMP-B2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data = |seq: u32| format!(r#"{{"v":1,"seq":{seq},"ts":{seq},"bdseq":1,"m":{{"tank_level_m":{seq}}}}}"#);
    for seq in 1..=10 {
        publish_until_accepted(broker.port, &format!("{topic}/data"), &data(seq)).await;
    }
    broker.restart();
    for seq in 11..=20 {
        publish_until_accepted(broker.port, &format!("{topic}/data"), &data(seq)).await;
    }
    let path = "/api/v1/series?device=PUMP-B2&metric=tank_level_m&from=0&to=1000";
    let mut body = String::new();
    for _ in 0..300 {
        body = http_get(http, path).await;
        if body.matches("\"ts\"").count() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let seqs: Vec<i64> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ts"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "broker log:\n{}", broker.log());
    let devices: serde_json::Value = serde_json::from_str(&http_get(http, "/api/v1/devices").await).unwrap();
    assert_eq!(devices["devices"][0]["lost"].as_u64(), Some(0));
    let metrics = http_get(http, "/metrics").await;
    assert!(
        metrics.contains("fm_mqtt_disconnects_total 1") || metrics.contains("fm_mqtt_disconnects_total 2"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_in_a_share_group_split_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let gateway_config = |name: &str| {
        let mut c = Config::default();
        c.mqtt.broker = Some(BrokerConfig {
            host: "127.0.0.1".into(),
            port: broker.port,
            client_id: format!("gw-{name}"),
            username: None,
            password: None,
            share_group: Some("gateways".into()),
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        });
        c.http.listen = ([127, 0, 0, 1], free_port()).into();
        c.storage.data_dir = dir.path().join(name);
        c
    };
    let (a, b) = (gateway_config("a"), gateway_config("b"));
    let (http_a, http_b) = (a.http.listen.port(), b.http.listen.port());
    let (gw_a, gw_b) = (crate::http::start(a).await, crate::http::start(b).await);
    let count = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["devices"]
            .as_array()
            .unwrap()
            .len()
    };
    // Both must have subscribed before the stream starts: probe until each has seen a device.
    let mut probe = 0;
    while count(&crate::http::body(http_a, "/api/v1/devices").await) == 0
        || count(&crate::http::body(http_b, "/api/v1/devices").await) == 0
    {
        probe += 1;
        assert!(probe < 400, "the share group never delivered to both");
        let birth = r#"{"v":1,"seq":0,"ts":0,"bdseq":1,"fw":"1","model":"m","cfg":"c","interval_s":3600}"#;
        publish_until_accepted(broker.port, &format!("fm/v1/probe/elevator/P-{probe}/birth"), birth).await;
    }
    for i in 0..20 {
        let birth = r#"{"v":1,"seq":0,"ts":0,"bdseq":1,"fw":"1","model":"m","cfg":"c","interval_s":3600}"#;
        publish_until_accepted(broker.port, &format!("fm/v1/shared/elevator/S-{i}/birth"), birth).await;
    }
    let shared = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["site"] == "shared")
            .map(|d| d["device"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..200 {
        got_a = shared(&crate::http::body(http_a, "/api/v1/devices").await);
        got_b = shared(&crate::http::body(http_b, "/api/v1/devices").await);
        if got_a.len() + got_b.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got_a.len() + got_b.len(), 20, "a: {got_a:?} b: {got_b:?}");
    assert!(got_a.iter().all(|d| !got_b.contains(d)), "a message went to both");
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "the group did not split the load"
    );
    gw_a.stop().await;
    gw_b.stop().await;
}
