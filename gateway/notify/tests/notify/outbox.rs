//! The outbox's contract: never blocking, bounded, one outcome per (delivery,
//! channel), and nothing dropped silently on shutdown or panic.

use std::sync::Arc;
use std::time::Duration;

use notify::{
    Channel, Contact, Delivery, Message, Outbox, Outcome, RetryPolicy, SendError, SendFuture, SubmitError, Webhook,
};

use crate::common::{DEADLINE, Hook, Step, fast_policy, message, next_outcome, outcomes, webhook_contact};

fn webhook() -> Arc<dyn Channel> {
    Arc::new(Webhook::new(Duration::from_secs(10)).unwrap())
}

/// A channel written by a test: reaches everyone with `mqtt = true`,
/// delivers, fails or panics as told.
struct Fake {
    name: &'static str,
    behaviour: fn() -> Result<(), SendError>,
}

impl Channel for Fake {
    fn name(&self) -> &'static str {
        self.name
    }

    fn reaches(&self, to: &Contact) -> bool {
        to.mqtt
    }

    fn send<'a>(&'a self, _to: &'a Contact, _msg: &'a Message) -> SendFuture<'a> {
        let behaviour = self.behaviour;
        Box::pin(async move { behaviour() })
    }
}

fn fake(name: &'static str, behaviour: fn() -> Result<(), SendError>) -> Arc<dyn Channel> {
    Arc::new(Fake { name, behaviour })
}

fn reached(id: &str) -> Contact {
    Contact {
        id: id.into(),
        name: None,
        webhook: None,
        email: None,
        mqtt: true,
        wecom: None,
        dingtalk: None,
        sms: Vec::new(),
    }
}

#[tokio::test]
async fn one_outcome_per_channel_that_reaches_the_contact() {
    let channels = vec![
        fake("first", || Ok(())),
        fake("second", || Err(SendError::permanent("rejected"))),
        webhook(), // does not reach: the contact has no webhook
    ];
    let (outbox, mut rx, _task) = Outbox::start(channels, fast_policy(3), 8, 2);
    outbox.submit(Delivery::new(reached("c"), message("m"))).unwrap();
    let all = outcomes(&mut rx, 2).await;
    assert_eq!((all[0].channel, all[0].result.clone()), ("first", Ok(())));
    assert_eq!((all[1].channel, all[1].attempts), ("second", 1));
    assert_eq!(all[1].result, Err("rejected".into()));
    assert_eq!(
        all.iter().filter(|o| o.last).count(),
        1,
        "exactly one outcome of the delivery is its last: {all:?}"
    );
    assert!(!all.iter().any(Outcome::interrupted));
    until_pending_zero(&outbox).await;
    assert!(rx.try_recv().is_err(), "no outcome for the webhook that does not reach");
}

async fn until_pending_zero(outbox: &Outbox) {
    crate::common::until("pending() to reach 0", || outbox.pending() == 0).await;
}

#[tokio::test]
async fn a_contact_no_channel_reaches_is_a_dead_letter_at_once() {
    let (outbox, mut rx, _task) = Outbox::start(vec![webhook()], RetryPolicy::default(), 8, 2);
    let nobody = Contact {
        id: "nobody".into(),
        name: None,
        webhook: None,
        email: None,
        mqtt: false,
        wecom: None,
        dingtalk: None,
        sms: Vec::new(),
    };
    outbox.submit(Delivery::new(nobody, message("m-none"))).unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.channel, out.attempts, out.to.as_str()), ("none", 0, "nobody"));
    let err = out.result.unwrap_err();
    assert!(err.contains("no channel reaches") && err.contains("webhook"), "{err}");
    assert_eq!(outbox.pending(), 0);
}

#[tokio::test]
async fn a_full_queue_gives_the_delivery_back() {
    let hook = Hook::start().await;
    hook.script("/hang", &[Step::Hang, Step::Hang]);
    let (outbox, mut rx, _task) = Outbox::start(vec![webhook()], fast_policy(1), 2, 4);
    for id in ["m-1", "m-2"] {
        outbox
            .submit(Delivery::new(
                webhook_contact("c", &hook.url("/hang"), None),
                message(id),
            ))
            .unwrap();
    }
    assert_eq!(outbox.pending(), 2);
    let third = Delivery::new(webhook_contact("c", &hook.url("/hang"), None), message("m-3"));
    match outbox.submit(third.clone()) {
        Err(SubmitError::Full(back)) => assert_eq!(*back, third),
        other => panic!("expected Full, got {other:?}"),
    }
    hook.wait_hits("/hang", 2).await;
    hook.release();
    let done = outcomes(&mut rx, 2).await;
    assert!(done.iter().all(|o| o.result.is_ok()), "{done:?}");
    assert_eq!(outbox.pending(), 0, "a delivery's last outcome frees its place");
    outbox.submit(third).unwrap();
    assert_eq!(next_outcome(&mut rx).await.result, Ok(()));
}

#[tokio::test]
async fn close_cuts_off_what_is_unfinished_after_the_grace() {
    let hook = Hook::start().await;
    hook.script("/hang", &[Step::Hang]);
    // One permit: the hanging attempt holds it, the second delivery waits.
    let (outbox, mut rx, task) = Outbox::start(vec![webhook()], fast_policy(3), 8, 1);
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/hang"), None),
            message("m-1-in-flight"),
        ))
        .unwrap();
    hook.wait_hits("/hang", 1).await;
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/ok"), None),
            message("m-2-waiting"),
        ))
        .unwrap();
    outbox.close(Duration::from_millis(200));
    let late = Delivery::new(webhook_contact("c", &hook.url("/ok"), None), message("m-3-late"));
    assert!(matches!(outbox.submit(late), Err(SubmitError::Closed(_))));

    let all = outcomes(&mut rx, 2).await;
    assert_eq!(all[0].id, "m-1-in-flight");
    assert_eq!(all[0].attempts, 1);
    assert!(
        all[0].result.as_ref().unwrap_err().starts_with("shutdown:"),
        "{:?}",
        all[0]
    );
    assert!(all.iter().all(|o| o.interrupted() && o.last), "{all:?}");
    assert_eq!(all[1].id, "m-2-waiting");
    assert_eq!(all[1].attempts, 0);
    assert!(
        all[1].result.as_ref().unwrap_err().starts_with("shutdown:"),
        "{:?}",
        all[1]
    );
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    assert_eq!(outbox.pending(), 0);
    assert!(rx.recv().await.is_none(), "the outcome stream ends with the task");
    assert!(hook.received("/ok").is_empty());
}

#[tokio::test]
async fn close_lets_in_flight_attempts_finish_and_skips_retries_due_after_the_grace() {
    let hook = Hook::start().await;
    hook.script("/hang", &[Step::Hang]);
    hook.script("/down", &[Step::Status(500); 5]);
    let policy = RetryPolicy {
        attempts: 5,
        first: Duration::from_hours(1),
        max: Duration::from_hours(1),
    };
    let (outbox, mut rx, task) = Outbox::start(vec![webhook()], policy, 8, 4);
    for (id, path) in [("m-1-hang", "/hang"), ("m-2-down", "/down")] {
        outbox
            .submit(Delivery::new(webhook_contact("c", &hook.url(path), None), message(id)))
            .unwrap();
    }
    hook.wait_hits("/hang", 1).await;
    hook.wait_hits("/down", 1).await;
    outbox.close(Duration::from_mins(30));
    // The retry an hour away cannot happen within the half-hour grace:
    // reported now, not when the grace ends.
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.id.as_str(), out.attempts), ("m-2-down", 1));
    let err = out.result.unwrap_err();
    assert!(err.starts_with("shutdown:") && err.contains("500"), "{err}");
    // The attempt in flight finishes within the grace and is delivered, and
    // the task ends as soon as nothing is left, long before the grace.
    hook.release();
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.id.as_str(), out.result), ("m-1-hang", Ok(())));
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn dropping_every_handle_finishes_the_work_then_ends() {
    let hook = Hook::start().await;
    hook.script("/flaky", &[Step::Status(500)]);
    let (outbox, mut rx, task) = Outbox::start(vec![webhook()], fast_policy(3), 8, 2);
    outbox
        .submit(Delivery::new(
            webhook_contact("c", &hook.url("/flaky"), None),
            message("m"),
        ))
        .unwrap();
    drop(outbox);
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.result, out.attempts), (Ok(()), 2));
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_works_from_a_plain_thread() {
    let hook = Hook::start().await;
    let (outbox, mut rx, _task) = Outbox::start(vec![webhook()], fast_policy(1), 8, 2);
    let url = hook.url("/from-thread");
    let handle = outbox.clone();
    let (submitted, pending) = std::thread::spawn(move || {
        // Not a runtime thread: submit must neither block nor need one.
        let r = handle.submit(Delivery::new(webhook_contact("c", &url, None), message("m-thread")));
        (r.is_ok(), handle.pending())
    })
    .join()
    .unwrap();
    assert!(submitted);
    assert!(pending <= 1);
    let out = next_outcome(&mut rx).await;
    assert_eq!((out.id.as_str(), out.result), ("m-thread", Ok(())));
    assert_eq!(hook.received("/from-thread").len(), 1);
}

#[tokio::test]
async fn a_panicking_channel_still_yields_an_outcome() {
    let channels = vec![fake("boom", || panic!("channel bug")), fake("fine", || Ok(()))];
    let (outbox, mut rx, _task) = Outbox::start(channels, fast_policy(3), 8, 2);
    outbox.submit(Delivery::new(reached("c"), message("m"))).unwrap();
    let all = outcomes(&mut rx, 2).await;
    assert_eq!(all[0].channel, "boom");
    assert!(all[0].result.as_ref().unwrap_err().contains("panicked"), "{:?}", all[0]);
    assert_eq!((all[1].channel, all[1].result.clone()), ("fine", Ok(())));
    until_pending_zero(&outbox).await;
}

#[tokio::test]
async fn a_channel_an_earlier_run_delivered_on_is_not_sent_again() {
    let channels = vec![
        fake("first", || panic!("delivered by the earlier run: not sent again")),
        fake("second", || Ok(())),
    ];
    let (outbox, mut rx, _task) = Outbox::start(channels, fast_policy(1), 4, 2);
    outbox
        .submit(Delivery {
            to: reached("c"),
            msg: message("m-1"),
            reached: vec!["first".into()],
        })
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(
        (out.channel, out.result.clone(), out.last),
        ("second", Ok(()), true),
        "{out:?}"
    );
    assert_eq!(out.reached, ["second"]);

    // Every channel delivered before: the delivery still ends, with nothing sent.
    outbox
        .submit(Delivery {
            to: reached("c"),
            msg: message("m-2"),
            reached: vec!["first".into(), "second".into()],
        })
        .unwrap();
    let out = next_outcome(&mut rx).await;
    assert_eq!(
        (out.channel, out.attempts, out.result.clone(), out.last),
        ("none", 0, Ok(()), true)
    );
    assert_eq!(outbox.pending(), 0);
}
