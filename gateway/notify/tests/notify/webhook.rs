//! The webhook channel against a real HTTP receiver: the wire format, the
//! signature, and how each kind of failure is retried or dead-lettered.

use std::sync::Arc;
use std::time::Duration;

use notify::{Channel, Delivery, Outbox, RetryPolicy, Webhook, verify_webhook};

use crate::common::{Hook, Step, fast_policy, message, next_outcome, outcomes, webhook_contact};

fn webhook() -> Arc<dyn Channel> {
    Arc::new(Webhook::new(Duration::from_secs(5)).unwrap())
}

fn start(policy: RetryPolicy) -> (Outbox, tokio::sync::mpsc::UnboundedReceiver<notify::Outcome>) {
    let (outbox, rx, _task) = Outbox::start(vec![webhook()], policy, 64, 4);
    (outbox, rx)
}

#[tokio::test]
async fn signed_post_carries_the_message_and_a_checkable_signature() {
    let hook = Hook::start().await;
    hook.require_secret("/signed", "s3cret-密钥");
    let (outbox, mut rx) = start(fast_policy(1));
    let msg = message("m-signed");
    outbox
        .submit(Delivery::new(
            webhook_contact("contractor-a", &hook.url("/signed"), Some("s3cret-密钥")),
            msg.clone(),
        ))
        .unwrap();
    let out = next_outcome(&mut rx).await;
    // The receiver returned 2xx only because the signature checked out.
    assert_eq!(out.result, Ok(()), "{out:?}");
    assert_eq!(
        (out.channel, out.attempts, out.to.as_str()),
        ("webhook", 1, "contractor-a")
    );

    let got = hook.received("/signed").pop().unwrap();
    let header = |name: &str| got.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-fm-id"), "m-signed");
    let ts = header("x-fm-timestamp");
    let sig = header("x-fm-signature");
    let json: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(json, serde_json::to_value(&msg).unwrap());
    assert_eq!(json["text"], msg.text, "Chinese text survives");
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 6, "{keys:?}");

    // The crate's helper agrees with the receiver, and a tampered body or a
    // moved timestamp fails it.
    assert!(verify_webhook("s3cret-密钥", &ts, &got.body, &sig));
    let mut tampered = got.body.to_vec();
    let at = tampered.iter().position(|&b| b == b'7').unwrap(); // "floor":7
    tampered[at] = b'1';
    assert!(!verify_webhook("s3cret-密钥", &ts, &tampered, &sig));
    let later = (ts.parse::<u64>().unwrap() + 1).to_string();
    assert!(!verify_webhook("s3cret-密钥", &later, &got.body, &sig));

    // Replayed at the receiver with a tampered body: refused.
    let http = reqwest::Client::new();
    let replay = |body: Vec<u8>, ts: String| {
        http.post(hook.url("/signed"))
            .header("content-type", "application/json")
            .header("x-fm-id", "m-signed")
            .header("x-fm-timestamp", ts)
            .header("x-fm-signature", sig.clone())
            .body(body)
            .send()
    };
    assert_eq!(replay(tampered, ts.clone()).await.unwrap().status(), 401);
    assert_eq!(replay(got.body.to_vec(), later).await.unwrap().status(), 401);
    assert_eq!(replay(got.body.to_vec(), ts).await.unwrap().status(), 200);
}

#[tokio::test]
async fn unsigned_target_sends_no_signature() {
    let hook = Hook::start().await;
    let (outbox, mut rx) = start(fast_policy(1));
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/plain"), None),
            message("m-plain"),
        ))
        .unwrap();
    assert_eq!(next_outcome(&mut rx).await.result, Ok(()));
    let got = hook.received("/plain").pop().unwrap();
    assert!(got.headers.get("x-fm-signature").is_none());
    assert!(got.headers.get("x-fm-timestamp").is_some());
}

#[tokio::test]
async fn two_500s_then_200_is_delivered_on_the_third_attempt() {
    let hook = Hook::start().await;
    hook.script("/flaky", &[Step::Status(500), Step::Status(500), Step::Status(200)]);
    let (outbox, mut rx) = start(fast_policy(6));
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/flaky"), None),
            message("m-flaky"),
        ))
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.result, out.attempts), (Ok(()), 3));
    let ids: Vec<_> = hook
        .received("/flaky")
        .iter()
        .map(|r| r.headers["x-fm-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["m-flaky"; 3], "every retry carries the same id");
    assert_eq!(outbox.pending(), 0);
}

#[tokio::test]
async fn always_500_is_a_dead_letter_after_all_attempts() {
    let hook = Hook::start().await;
    hook.script("/down", &[Step::Status(503); 10]);
    let (outbox, mut rx) = start(fast_policy(4));
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/down"), None),
            message("m-down"),
        ))
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(out.attempts, 4);
    let err = out.result.unwrap_err();
    assert!(err.contains("503"), "{err}");
    assert_eq!(hook.received("/down").len(), 4);
}

#[tokio::test]
async fn http_400_is_not_retried() {
    let hook = Hook::start().await;
    hook.script("/bad", &[Step::Status(400); 10]);
    let (outbox, mut rx) = start(fast_policy(6));
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/bad"), None),
            message("m-bad"),
        ))
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(out.attempts, 1);
    let err = out.result.unwrap_err();
    assert!(err.contains("400") && err.contains("scripted 400"), "{err}");
    assert_eq!(hook.received("/bad").len(), 1);
}

#[tokio::test]
async fn http_429_and_408_are_retried() {
    let hook = Hook::start().await;
    hook.script("/busy", &[Step::Status(429), Step::Status(408), Step::Status(204)]);
    let (outbox, mut rx) = start(fast_policy(6));
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/busy"), None),
            message("m-busy"),
        ))
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.result, out.attempts), (Ok(()), 3));
}

#[tokio::test]
async fn refused_connection_is_retried_then_dead_lettered() {
    let port = testkit::free_port(); // nothing listens there
    let (outbox, mut rx) = start(fast_policy(3));
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &format!("http://127.0.0.1:{port}/hook"), None),
            message("m-refused"),
        ))
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(out.attempts, 3, "{out:?}");
    let err = out.result.unwrap_err();
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn single_attempt_classification() {
    let channel = Webhook::new(Duration::from_millis(300)).unwrap();
    let hook = Hook::start().await;
    hook.script("/slow", &[Step::Hang]);
    let msg = message("m-direct");
    // A receiver slower than the timeout: retryable.
    let err = channel
        .send(&webhook_contact("c", &hook.url("/slow"), None), &msg)
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
    // A URL that cannot be requested: permanent.
    let err = channel
        .send(&webhook_contact("c", "not a url", None), &msg)
        .await
        .unwrap_err();
    assert!(!err.retryable, "{err}");
    assert!(channel.reaches(&webhook_contact("c", "http://x", None)));
}

#[tokio::test]
async fn a_slow_webhook_does_not_delay_another_contact() {
    let hook = Hook::start().await;
    hook.script("/slow", &[Step::Hang]);
    let (outbox, mut rx, _task) = Outbox::start(vec![webhook()], fast_policy(1), 64, 2);
    outbox
        .submit(Delivery::new(
            webhook_contact("slow", &hook.url("/slow"), None),
            message("m-1-slow"),
        ))
        .unwrap();
    hook.wait_hits("/slow", 1).await;
    outbox
        .submit(Delivery::new(
            webhook_contact("fast", &hook.url("/fast"), None),
            message("m-2-fast"),
        ))
        .unwrap();
    let first = next_outcome(&mut rx).await;
    assert_eq!((first.to.as_str(), first.result.clone()), ("fast", Ok(())), "{first:?}");
    assert_eq!(outbox.pending(), 1, "the slow one is still in flight");
    hook.release();
    let all = outcomes(&mut rx, 1).await;
    assert_eq!((all[0].to.as_str(), all[0].result.clone()), ("slow", Ok(())));
    assert_eq!(outbox.pending(), 0);
}
