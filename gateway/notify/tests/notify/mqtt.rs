//! The MQTT channel against Mosquitto, with a separate subscriber.

use std::sync::Arc;
use std::time::Duration;

use notify::{Channel, Contact, Delivery, Mqtt, Outbox, WebhookTarget};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS};

use crate::common::{DEADLINE, Hook, fast_policy, message, outcomes};

fn client(id: &str, port: u16) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    AsyncClient::new(opts, 16)
}

/// Polls a subscriber's event loop until `pick` returns something.
async fn poll_until<T>(events: &mut EventLoop, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.poll().await.expect("subscriber connection");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("no such MQTT event within the deadline")
}

#[tokio::test]
async fn publishes_qos1_unretained_json_to_the_contact_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = testkit::Mosquitto::start(dir.path());

    // The subscriber (a console) is in place first.
    let (sub, mut sub_events) = client("console", broker.port);
    sub.subscribe("fm/v1/dispatch/#", QoS::AtLeastOnce).await.unwrap();
    poll_until(&mut sub_events, |e| {
        matches!(e, Event::Incoming(Incoming::SubAck(_))).then_some(())
    })
    .await;

    // The gateway's client, its event loop polled as the gateway does.
    let (gw, mut gw_events) = client("gateway", broker.port);
    let gw_loop = tokio::spawn(async move {
        loop {
            if gw_events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let hook = Hook::start().await;
    let mqtt: Arc<dyn Channel> = Arc::new(Mqtt::new(gw, "fm/v1/dispatch/".into()));
    let webhook: Arc<dyn Channel> = Arc::new(notify::Webhook::new(Duration::from_secs(5)).unwrap());
    let (outbox, mut rx, _task) = Outbox::start(vec![mqtt, webhook], fast_policy(3), 8, 2);
    let contact = Contact {
        id: "contractor-a".into(),
        name: Some("武汉电梯维保".into()),
        webhook: Some(WebhookTarget {
            url: hook.url("/a"),
            secret: None,
        }),
        email: None,
        mqtt: true,
        wecom: None,
        dingtalk: None,
        sms: Vec::new(),
    };
    let msg = message("m-mqtt");
    outbox.submit(Delivery::new(contact, msg.clone())).unwrap();

    let publish = poll_until(&mut sub_events, |e| match e {
        Event::Incoming(Incoming::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(publish.topic, "fm/v1/dispatch/contractor-a/alert_notification");
    assert_eq!(
        publish.topic.split('/').count(),
        5,
        "outside the fm/v1/+/+/+/+ ingest filter"
    );
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    assert!(!publish.retain);
    let json: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(json, serde_json::to_value(&msg).unwrap());

    // Both channels reach this contact: one outcome each.
    let all = outcomes(&mut rx, 2).await;
    let channels: Vec<_> = all.iter().map(|o| (o.channel, o.result.clone())).collect();
    assert_eq!(channels, [("mqtt", Ok(())), ("webhook", Ok(()))]);
    gw_loop.abort();
}

#[tokio::test]
async fn a_dead_client_queue_is_retryable_and_a_bad_topic_is_not() {
    let (gw, events) = client("gateway-offline", testkit::free_port());
    drop(events); // nobody polls: the request queue is closed
    let mqtt = Mqtt::new(gw, "fm/v1/dispatch".into()).with_queue_timeout(Duration::from_millis(200));
    let mut contact = Contact {
        id: "c".into(),
        name: None,
        webhook: None,
        email: None,
        mqtt: true,
        wecom: None,
        dingtalk: None,
        sms: Vec::new(),
    };
    assert!(mqtt.reaches(&contact));
    let err = mqtt.send(&contact, &message("m")).await.unwrap_err();
    assert!(err.retryable, "{err}");

    // A queue nobody drains: the attempt gives up after the queue timeout.
    let (stalled, _events) = AsyncClient::new(MqttOptions::new("stalled", "127.0.0.1", testkit::free_port()), 1);
    let mqtt_stalled = Mqtt::new(stalled, "fm/v1/dispatch".into()).with_queue_timeout(Duration::from_millis(100));
    mqtt_stalled.send(&contact, &message("m-1")).await.unwrap();
    let err = mqtt_stalled.send(&contact, &message("m-2")).await.unwrap_err();
    assert!(err.retryable && err.message.contains("full"), "{err}");

    contact.id = "a/b".into();
    let err = mqtt.send(&contact, &message("m")).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    contact.mqtt = false;
    assert!(!mqtt.reaches(&contact));
}
