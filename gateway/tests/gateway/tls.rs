//! An outside broker that only speaks TLS: the gateway connects with the CA
//! it is given, and refuses a broker it cannot verify.

use gateway::app::config::{BrokerConfig, Config};
use testkit::{Mosquitto, Tls, free_port};

fn config(data: std::path::PathBuf, port: u16, ca: std::path::PathBuf) -> Config {
    let mut c = Config::default();
    c.mqtt.broker = Some(BrokerConfig {
        host: "127.0.0.1".into(),
        port,
        client_id: format!("gw-tls-{port}"),
        username: None,
        password: None,
        share_group: None,
        tls: true,
        ca_file: Some(ca),
        client_cert_file: None,
        client_key_file: None,
    });
    c.http.listen = ([127, 0, 0, 1], free_port()).into();
    c.storage.data_dir = data;
    c
}

async fn publish_tls(port: u16, ca: &std::path::Path, topic: &str, payload: &str) -> bool {
    tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "--cafile"])
        .arg(ca)
        .args(["-t", topic, "-m", payload])
        .status()
        .await
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_broker_is_verified_with_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::generate(dir.path());
    let broker = Mosquitto::start_tls(dir.path(), &tls);
    let cfg = config(dir.path().join("data-good"), broker.port, tls.ca.clone());
    let http = cfg.http.listen.port();
    let gw = crate::http::start(cfg).await;
    let topic = "fm/v1/lakeside/elevator/EL-9/birth";
    let birth = r#"{"v":1,"seq":0,"ts":0,"bdseq":1,"fw":"tls","model":"m","cfg":"c","interval_s":10}"#;
    let mut seen = false;
    for _ in 0..100 {
        assert!(
            publish_tls(broker.port, &tls.ca, topic, birth).await,
            "mosquitto_pub over TLS"
        );
        if crate::http::body(http, "/api/v1/devices").await.contains("EL-9") {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "nothing arrived over TLS; broker log:\n{}", broker.log());
    gw.stop().await;

    // A CA that did not sign the broker's certificate: the gateway must not connect.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let wrong = Tls::generate(&other);
    let cfg = config(dir.path().join("data-wrong"), broker.port, wrong.ca.clone());
    let http = cfg.http.listen.port();
    let gw = crate::http::start(cfg).await;
    for _ in 0..10 {
        assert!(publish_tls(broker.port, &tls.ca, topic, birth).await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = crate::http::body(http, "/api/v1/devices").await;
    assert!(!body.contains("EL-9"), "connected to an unverified broker: {body}");
    let metrics = crate::http::body(http, "/metrics").await;
    assert!(!metrics.contains("fm_mqtt_disconnects_total 0"), "{metrics}");
    gw.stop().await;
}
