//! The whole gateway on virtual time (as the HIL simulation runs it): a
//! manual clock, no ticker of its own, ticks and a barrier from the caller.
//! Telemetry arrives over the real broker; the rules' `for`, the order's SLA
//! clock and its escalation all run on the manual clock, so 4 minutes of a
//! trapped passenger take well under a second of the test.

use std::time::Duration;

use gateway::app::shared::Options;
use gateway::clock::ManualClock;

use crate::http::{free_addr, get, publish};

/// 2026-12-01T08:00:00+08:00.
const T0: i64 = 1_796_083_200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_passenger_is_an_order_and_an_escalation_on_virtual_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let text = format!(
        "{}[[contacts]]\nid = \"acme\"\nmqtt = true\n[[contacts]]\nid = \"city\"\nmqtt = true\n[[dispatch.assign]]\ncontractor = \"acme\"\nbackup = \"city\"\n",
        crate::http::base_config(mqtt.port(), http.port(), dir.path())
    );
    let cfg = gateway::app::config::Config::parse(std::path::Path::new("virtual.toml"), &text).unwrap();
    let clock = ManualClock::new(T0);
    let options = Options {
        clock: std::sync::Arc::new(clock.clone()),
        ticker: false,
    };
    let gw = gateway::app::run::start(cfg, testkit::ADMIN_TOKEN.into(), options)
        .await
        .unwrap();
    testkit::wait_port(mqtt.port());
    let http = http.port();

    // A car standing between floors, doors shut, somebody inside. Publish
    // until the gateway (subscribed after its broker connects) has it.
    let topic = "fm/v1/lakeside/elevator/EL-3/data";
    let sample = r#"{"v":1,"seq":1,"ts":1796083200000,"m":{"occupied":true,"running":false,"door_closed":true,"door_zone":false,"speed_mps":0.0}}"#;
    let mut seen = false;
    for _ in 0..200 {
        publish(mqtt, topic, sample).await;
        gw.sync().await.unwrap();
        if get(http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN))
            .await
            .1
            .contains("EL-3")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the sample never reached the registry");
    let alerts = || async {
        get(http, "/api/v1/alerts?code=trapped", Some(testkit::ADMIN_TOKEN))
            .await
            .1
    };
    // 19 virtual seconds: pending, not firing.
    clock.advance(19_000);
    gw.tick().await.unwrap();
    gw.sync().await.unwrap();
    assert!(!alerts().await.contains("\"firing\""), "{}", alerts().await);
    // 20: it fires, and the order is dispatched at virtual time.
    clock.advance(1_500);
    gw.tick().await.unwrap();
    gw.sync().await.unwrap();
    assert!(alerts().await.contains("\"firing\""), "{}", alerts().await);
    let (_, body) = get(http, "/api/v1/work-orders", Some(testkit::ADMIN_TOKEN)).await;
    let orders: serde_json::Value = serde_json::from_str(&body).unwrap();
    let o = &orders["work_orders"][0];
    assert_eq!(o["code"], "trapped");
    let created = o["created_at"].as_i64().unwrap();
    assert_eq!(created, T0 + 20_500);
    assert_eq!(o["deadlines"]["respond"].as_i64(), Some(created + 180_000));
    // Three virtual minutes without a response: re-dispatched to the backup.
    clock.advance(180_000);
    gw.tick().await.unwrap();
    gw.sync().await.unwrap();
    let (_, body) = get(http, "/api/v1/work-orders", Some(testkit::ADMIN_TOKEN)).await;
    let orders: serde_json::Value = serde_json::from_str(&body).unwrap();
    let o = &orders["work_orders"][0];
    assert_eq!(o["contractor"], "city");
    assert_eq!(o["escalations"][0]["missed"], "respond");
    assert_eq!(o["escalations"][0]["at"].as_i64(), Some(created + 180_000));
    gw.stop().await.unwrap();
}
