//! The embedded broker with real clients (rumqttc, Debian's `mosquitto_pub`
//! and `mosquitto_sub`): PUBACK only after the gateway's commit, in order;
//! routing, retained messages, wills, sessions, back-pressure, bad input.

use std::process::Stdio;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway::broker::{Broker, Inbound, Ingress, Lane, Settings};
use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Events, births and deaths to the priority lane, telemetry to bulk, the rest to neither.
fn by_kind(topic: &str) -> Lane {
    match topic.rsplit('/').next() {
        Some("event" | "birth" | "death") => Lane::Priority,
        Some("data") => Lane::Bulk,
        _ => Lane::None,
    }
}

struct Harness {
    broker: Broker,
    port: u16,
    priority: mpsc::Receiver<Inbound>,
    bulk: mpsc::Receiver<Inbound>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start(lane: fn(&str) -> Lane, capacity: usize, settings: Settings) -> Harness {
    let listener = TcpListener::bind(("127.0.0.1", testkit::free_port())).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ptx, priority) = mpsc::channel(capacity);
    let (btx, bulk) = mpsc::channel(capacity);
    let (stop, stopped) = oneshot::channel::<()>();
    let ingress = Ingress {
        priority: ptx,
        bulk: btx,
        lane,
    };
    let (broker, task) = Broker::start(listener, settings, ingress, async {
        let _ = stopped.await;
    });
    Harness {
        broker,
        port,
        priority,
        bulk,
        stop,
        task,
    }
}

impl Harness {
    /// Stops the broker and waits until every connection has ended.
    async fn shutdown(self) -> (Broker, mpsc::Receiver<Inbound>) {
        self.stop.send(()).unwrap();
        timeout(WAIT, self.task)
            .await
            .expect("the broker did not stop")
            .unwrap();
        (self.broker, self.priority)
    }

    /// Polls `f` on the broker's counters until it holds.
    async fn until(&self, what: &str, f: impl Fn(&gateway::broker::Stats) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !f(self.broker.stats()) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn next(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
    timeout(WAIT, rx.recv())
        .await
        .expect("nothing reached the lane")
        .unwrap()
}

fn mosquitto_pub(port: u16, args: &[&str]) -> tokio::process::Child {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_pub is not installed: run scripts/install-test-deps.sh")
}

async fn pub_ok(port: u16, args: &[&str]) {
    let status = timeout(WAIT, mosquitto_pub(port, args).wait()).await.unwrap().unwrap();
    assert!(status.success(), "mosquitto_pub {args:?}");
}

fn options(port: u16, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// A client whose event loop a task polls, forwarding its events, until its
/// first error (so it never reconnects); aborting the task drops the socket abruptly.
fn connect(opts: MqttOptions) -> (AsyncClient, mpsc::UnboundedReceiver<Event>, JoinHandle<ConnectionError>) {
    let (client, mut el) = AsyncClient::new(opts, 200);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(e) => _ = tx.send(e),
                Err(e) => return e,
            }
        }
    });
    (client, rx, task)
}

/// The first incoming packet for which `f` says Some.
async fn until<T>(events: &mut mpsc::UnboundedReceiver<Event>, mut f: impl FnMut(&Packet) -> Option<T>) -> T {
    timeout(WAIT, async {
        loop {
            if let Event::Incoming(p) = events.recv().await.expect("the event loop ended")
                && let Some(t) = f(&p)
            {
                return t;
            }
        }
    })
    .await
    .expect("timed out waiting for a packet")
}

async fn connack(events: &mut mpsc::UnboundedReceiver<Event>) -> bool {
    until(events, |p| match p {
        Packet::ConnAck(c) => Some(c.session_present),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_pubacks_only_after_the_commit() {
    let mut h = start(by_kind, 8, Settings::default()).await;
    let mut node = mosquitto_pub(h.port, &["-q", "1", "-t", "fm/v1/s/firepump/P1/event", "-m", "fire"]);
    let msg = next(&mut h.priority).await;
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..]),
        ("fm/v1/s/firepump/P1/event", &b"fire"[..])
    );
    assert_eq!(msg.qos, QoS::AtLeastOnce);
    assert!(!msg.will && !msg.client_id.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        node.try_wait().unwrap().is_none(),
        "mosquitto_pub got its PUBACK before the commit"
    );
    msg.ack.expect("a QoS 1 publish carries its ack").done();
    assert!(timeout(WAIT, node.wait()).await.unwrap().unwrap().success());

    // QoS 2 is taken like QoS 1: PUBREC once committed, then PUBCOMP.
    let mut node = mosquitto_pub(h.port, &["-q", "2", "-t", "fm/v1/s/firepump/P1/event", "-m", "two"]);
    let msg = next(&mut h.priority).await;
    assert_eq!(msg.qos, QoS::ExactlyOnce);
    msg.ack.unwrap().done();
    assert!(timeout(WAIT, node.wait()).await.unwrap().unwrap().success());

    pub_ok(h.port, &["-q", "0", "-t", "fm/v1/s/firepump/P1/data", "-m", "t"]).await;
    let msg = next(&mut h.bulk).await;
    assert!(msg.qos == QoS::AtMostOnce && msg.ack.is_none());
    assert_eq!(h.broker.stats().received_total.load(Relaxed), 3);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_releases_pubacks_in_arrival_order() {
    let mut h = start(by_kind, 8, Settings::default()).await;
    let (client, mut events, _task) = connect(options(h.port, "order"));
    connack(&mut events).await;
    for i in 1..=3u8 {
        client
            .publish("fm/v1/s/elevator/E1/data", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut acks = Vec::new();
    for i in 1..=3u8 {
        let m = next(&mut h.bulk).await;
        assert_eq!(m.payload[..], [i]);
        acks.push(m.ack.unwrap());
    }
    let (third, second, first) = (acks.pop().unwrap(), acks.pop().unwrap(), acks.pop().unwrap());
    let puback = |p: &Packet| match p {
        Packet::PubAck(a) => Some(a.pkid),
        _ => None,
    };
    third.done();
    first.done();
    assert_eq!(
        until(&mut events, puback).await,
        1,
        "the first PUBACK is the first message's"
    );
    second.done();
    assert_eq!(until(&mut events, puback).await, 2);
    assert_eq!(until(&mut events, puback).await, 3);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_routes_to_subscribers_with_retained_messages() {
    let h = start(|_| Lane::None, 8, Settings::default()).await;
    pub_ok(
        h.port,
        &["-q", "1", "-r", "-t", "fm/v1/s/elevator/E1/event", "-m", "retained"],
    )
    .await;
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &h.port.to_string(),
            "-v",
            "-q",
            "1",
            "-t",
            "fm/v1/+/+/+/event",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    let mut line = async || timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    // The retained message also shows that the subscription is in place.
    assert_eq!(line().await, "fm/v1/s/elevator/E1/event retained");
    pub_ok(h.port, &["-q", "1", "-t", "fm/v1/s/charger/C1/event", "-m", "node"]).await;
    assert_eq!(line().await, "fm/v1/s/charger/C1/event node");
    h.broker.publish(
        "fm/v1/s/charger/C1/data",
        Bytes::from_static(b"no"),
        QoS::AtLeastOnce,
        false,
    );
    h.broker.publish(
        "fm/v1/s/firepump/P1/event",
        Bytes::from_static(b"inside"),
        QoS::AtLeastOnce,
        false,
    );
    assert_eq!(
        line().await,
        "fm/v1/s/firepump/P1/event inside",
        "a non-matching topic was delivered"
    );
    assert_eq!(h.broker.stats().delivered_total.load(Relaxed), 3);
    h.shutdown().await;
}

/// A CONNECT written by hand, for a client that then says nothing.
async fn silent_client(port: u16, id: &str, keep_alive: u16, will: LastWill) -> TcpStream {
    let mut c = rumqttc::Connect::new(id);
    c.keep_alive = keep_alive;
    c.last_will = Some(will);
    let mut buf = BytesMut::new();
    Packet::Connect(c).write(&mut buf, usize::MAX).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&buf).await.unwrap();
    let mut connack = [0; 4];
    s.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_publishes_wills_only_for_vanished_clients() {
    let mut h = start(by_kind, 8, Settings::default()).await;
    let (watcher, mut seen, _w) = connect(options(h.port, "watcher"));
    connack(&mut seen).await;
    watcher.subscribe("fm/v1/+/+/+/death", QoS::AtLeastOnce).await.unwrap();
    until(&mut seen, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    let with_will = |id: &str| {
        let mut o = options(h.port, id);
        o.set_last_will(LastWill::new(
            format!("fm/v1/s/elevator/{id}/death"),
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        o
    };

    let (_node, mut events, task) = connect(with_will("E1"));
    connack(&mut events).await;
    task.abort();
    let will = next(&mut h.priority).await;
    assert_eq!(
        (will.topic.as_str(), &*will.client_id),
        ("fm/v1/s/elevator/E1/death", "E1")
    );
    assert!(will.will && will.ack.is_none());
    let topic = until(&mut seen, |p| match p {
        Packet::Publish(p) => Some(p.topic.clone()),
        _ => None,
    })
    .await;
    assert_eq!(topic, "fm/v1/s/elevator/E1/death");

    // Silent past 1.5 × its keep-alive of 1 s.
    let will = LastWill::new("fm/v1/s/elevator/E2/death", "gone", QoS::AtLeastOnce, false);
    let _socket = silent_client(h.port, "E2", 1, will).await;
    let started = tokio::time::Instant::now();
    let will = next(&mut h.priority).await;
    assert_eq!(will.topic, "fm/v1/s/elevator/E2/death");
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );

    // A clean DISCONNECT, and a client still there at shutdown: no will.
    let (node, mut events, _t) = connect(with_will("E3"));
    connack(&mut events).await;
    node.disconnect().await.unwrap();
    h.until("E3 gone", |s| s.connections.load(Relaxed) == 1).await;
    let (_node, mut events, _t) = connect(with_will("E4"));
    connack(&mut events).await;
    let (broker, mut priority) = h.shutdown().await;
    assert_eq!(broker.stats().wills_total.load(Relaxed), 2);
    assert!(priority.try_recv().is_err(), "a will after DISCONNECT or at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_keeps_a_persistent_session_while_offline() {
    let h = start(by_kind, 8, Settings::default()).await;
    let mut opts = options(h.port, "C1");
    opts.set_clean_session(false);
    let (client, mut events, _t) = connect(opts.clone());
    assert!(!connack(&mut events).await);
    client
        .subscribe("fm/v1/s/charger/C1/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut events, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
    client.disconnect().await.unwrap();
    h.until("C1 gone", |s| s.connections.load(Relaxed) == 0).await;
    h.broker.publish(
        "fm/v1/s/charger/C1/cmd",
        Bytes::from_static(b"cut"),
        QoS::AtLeastOnce,
        false,
    );

    // Back, but it never acknowledges: after the next reconnect the message comes again, marked DUP.
    let mut manual = opts.clone();
    manual.set_manual_acks(true);
    let (_client, mut events, task) = connect(manual);
    assert!(connack(&mut events).await, "session_present");
    let publish = |p: &Packet| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    };
    let p = until(&mut events, publish).await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos, p.dup),
        ("fm/v1/s/charger/C1/cmd", &b"cut"[..], QoS::AtLeastOnce, false)
    );
    task.abort();
    h.until("C1 gone", |s| s.connections.load(Relaxed) == 0).await;
    let (_client, mut events, _t) = connect(opts);
    assert!(connack(&mut events).await);
    let p = until(&mut events, publish).await;
    assert!(p.dup && &p.payload[..] == b"cut");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_pushes_back_on_a_full_lane_without_buffering() {
    let mut h = start(by_kind, 1, Settings::default()).await;
    let (client, mut events, task) = connect(options(h.port, "flood"));
    connack(&mut events).await;
    for i in 0..100u8 {
        client
            .publish("fm/v1/s/elevator/E1/data", QoS::AtMostOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut written = 0;
    while written < 100 {
        let e = timeout(WAIT, events.recv()).await.unwrap().unwrap();
        written += usize::from(matches!(e, Event::Outgoing(Outgoing::Publish(_))));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One in the lane, one waiting for room; the rest still in the socket.
    assert!(
        h.broker.stats().received_total.load(Relaxed) <= 2,
        "{:?}",
        h.broker.stats()
    );
    for i in 0..100u8 {
        assert_eq!(next(&mut h.bulk).await.payload[..], [i]);
    }
    assert!(!task.is_finished(), "the client was dropped");
    assert_eq!(h.broker.stats().dropped_qos0_total.load(Relaxed), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_closes_a_connection_on_garbage_only() {
    let settings = Settings {
        connect_timeout: Duration::from_millis(500),
        ..Settings::default()
    };
    let h = start(by_kind, 8, settings).await;
    let mut rng = fastrand::Rng::new();
    // 0xFF is a reserved packet type: whatever length the rest gives, this is an error.
    let mut garbage: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(1024).collect();
    garbage[0] = 0xFF;
    let mut raw = TcpStream::connect(("127.0.0.1", h.port)).await.unwrap();
    raw.write_all(&garbage).await.unwrap();
    let mut buf = [0; 64];
    assert!(
        matches!(timeout(WAIT, raw.read(&mut buf)).await.unwrap(), Ok(0) | Err(_)),
        "not closed"
    );
    h.until("a protocol error", |s| s.protocol_errors_total.load(Relaxed) == 1)
        .await;

    // A wildcard in a published topic, after a good CONNECT.
    let will = LastWill::new("fm/v1/s/elevator/G/death", "gone", QoS::AtMostOnce, false);
    let mut s = silent_client(h.port, "G", 0, will).await;
    let mut bad = BytesMut::new();
    Packet::Publish(rumqttc::Publish::new("fm/+/x", QoS::AtMostOnce, "x"))
        .write(&mut bad, usize::MAX)
        .unwrap();
    s.write_all(&bad).await.unwrap();
    assert!(
        matches!(timeout(WAIT, s.read(&mut buf)).await.unwrap(), Ok(0) | Err(_)),
        "not closed"
    );
    h.until("a second protocol error", |s| {
        s.protocol_errors_total.load(Relaxed) == 2
    })
    .await;

    // MQTT 3.1 is refused politely.
    let mqtt31 = mosquitto_pub(h.port, &["-V", "mqttv31", "-t", "a", "-m", "x"])
        .wait()
        .await
        .unwrap();
    assert!(!mqtt31.success() && h.broker.stats().refused_total.load(Relaxed) == 1);
    pub_ok(
        h.port,
        &["-q", "1", "-t", "fm/v1/s/elevator/E1/ack", "-m", "still here"],
    )
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_lets_a_new_connection_take_over_a_client_id() {
    let settings = Settings {
        max_connections: 1,
        ..Settings::default()
    };
    let mut h = start(by_kind, 8, settings).await;
    let mut first = options(h.port, "twin");
    first.set_last_will(LastWill::new(
        "fm/v1/s/firepump/P1/death",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (_a, mut events_a, task_a) = connect(first);
    connack(&mut events_a).await;
    let (b, mut events_b, _t) = connect(options(h.port, "twin"));
    connack(&mut events_b).await;
    // The will went out before the new connection's CONNACK.
    let will = h.priority.try_recv().expect("no will before the CONNACK");
    assert!(will.will && will.topic == "fm/v1/s/firepump/P1/death");
    timeout(WAIT, task_a)
        .await
        .expect("the first connection is still open")
        .unwrap();
    b.publish("fm/v1/s/firepump/P1/ack", QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    until(&mut events_b, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    assert_eq!(h.broker.stats().connections.load(Relaxed), 1);
    // A takeover fits within max_connections; another client does not.
    let other = mosquitto_pub(h.port, &["-t", "fm/v1/s/firepump/P1/ack", "-m", "x"])
        .wait()
        .await
        .unwrap();
    assert!(!other.success() && h.broker.stats().refused_total.load(Relaxed) == 1);
    h.shutdown().await;
}
