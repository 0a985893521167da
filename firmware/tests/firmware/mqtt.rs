//! The MQTT uplink against a real Mosquitto: birth and will, telemetry and
//! events, a command and its ack, and a link loss with replay afterwards.

use std::cell::{Cell, RefCell};
use std::process::Stdio;
use std::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use firmware::charger::{ChargerConfig, ChargerInputs, ChargerNode, MAX_PORTS, PortInputs};
use firmware::hal::Millis;
use firmware::mqtt::{NodeTopics, run_connection};
use firmware::node::{Node, NodeInfo};
use protocol::{DeviceClass, DeviceId, Format, Kind, Message, SiteId, Topic, decode};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

/// A subscriber printing `topic payload` lines, ready once it has its SUBACK.
async fn subscriber(port: u16) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new("stdbuf")
        .args([
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-v",
            "-d",
        ])
        .args(["-t", "fm/v1/#"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(l) = lines.next_line().await.unwrap() {
        if l.contains("SUBACK") {
            return (child, lines);
        }
    }
    panic!("mosquitto_sub ended without a SUBACK");
}

/// The next message on `fm/v1/...`, decoded.
async fn next_message(lines: &mut Lines<BufReader<ChildStdout>>) -> (Topic, Message) {
    let fut = async {
        loop {
            let l = lines.next_line().await.unwrap().expect("subscriber ended");
            if let Some((t, p)) = l.split_once(' ').filter(|(t, _)| t.starts_with("fm/v1/")) {
                let topic = Topic::parse(t).unwrap();
                let msg = decode(topic.kind, p.as_bytes()).unwrap_or_else(|e| panic!("{e}: {p}"));
                return (topic, msg);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("no message within 10 s")
}

/// Messages until one matches, returning everything seen.
async fn until(
    lines: &mut Lines<BufReader<ChildStdout>>,
    pred: impl Fn(&Topic, &Message) -> bool,
) -> Vec<(Topic, Message)> {
    let mut seen = Vec::new();
    loop {
        let (t, m) = next_message(lines).await;
        let done = pred(&t, &m);
        seen.push((t, m));
        if done {
            return seen;
        }
    }
}

fn bay_inputs(port3_temp: f32) -> ChargerInputs {
    let mut ports = [PortInputs {
        current_a: Some(1.0),
        temp_c: Some(30.0),
    }; MAX_PORTS];
    ports[2].temp_c = Some(port3_temp);
    ChargerInputs {
        smoke: false,
        leakage_ma: Some(1.0),
        mains_voltage_v: Some(220.0),
        ambient_temp_c: Some(20.0),
        ports,
    }
}

async fn publish_cmd(port: u16, topic: &str, payload: &str) {
    let ok = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .status()
        .await
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "current_thread")]
async fn a_charging_bay_talks_to_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = testkit::Mosquitto::start(dir.path());
    let (_sub, mut lines) = subscriber(broker.port).await;
    let topic = Topic::new(
        SiteId::new("lakeside").unwrap(),
        DeviceClass::Charger,
        DeviceId::new("BAY-07").unwrap(),
        Kind::Data,
    );
    let topics = NodeTopics::new(topic);
    let info = NodeInfo {
        fw: "1.0.0".try_into().unwrap(),
        model: "FM-CH-12".try_into().unwrap(),
        cfg: "c0ffee".try_into().unwrap(),
        interval_s: 10,
        format: Format::Json,
    };
    let node = RefCell::new(Node::new(ChargerNode::new(ChargerConfig::default(), 12), info));
    let clock = Cell::new(0u64);
    let now = || Millis(clock.get());
    let mut buffer = [0u8; 4096];

    // First connection.
    let io = FromTokio::new(TcpStream::connect(("127.0.0.1", broker.port)).await.unwrap());
    let conn = run_connection(&node, now, &topics, "bay-07", io, &mut buffer, 1024);
    let script = async {
        let (t, m) = next_message(&mut lines).await;
        assert_eq!(t.kind, Kind::Birth);
        let Message::Birth(b) = m else { panic!() };
        assert_eq!((b.bdseq, b.ports), (1, Some(12)));
        until(&mut lines, |t, _| t.kind == Kind::Data).await; // drop counters
        // A hot port: cut off at once, reported with its port.
        for s in 1..=2 {
            clock.set(s * 1000);
            node.borrow_mut().step(now(), &bay_inputs(85.0));
        }
        let seen = until(&mut lines, |_, m| matches!(m, Message::Event(_))).await;
        let Message::Event(e) = &seen.last().unwrap().1 else {
            panic!()
        };
        assert_eq!(
            (e.code.as_str(), e.port(), e.active),
            ("over_temperature", Some(3), true)
        );
        assert!(!node.borrow().logic().relay_on(3));
        // The gateway clears it once cool: a command, answered by an ack.
        node.borrow_mut().step(Millis(3000), &bay_inputs(40.0));
        publish_cmd(
            broker.port,
            "fm/v1/lakeside/charger/BAY-07/cmd",
            r#"{"v":1,"seq":1,"ts":0,"id":"clr-3","op":"clear","args":{"port":3}}"#,
        )
        .await;
        let seen = until(&mut lines, |t, _| t.kind == Kind::Ack).await;
        let Message::Ack(a) = &seen.last().unwrap().1 else {
            panic!()
        };
        assert_eq!((a.id.as_str(), a.ok), ("clr-3", true));
        assert!(node.borrow().logic().relay_on(3));
    };
    tokio::select! {
        e = conn => panic!("connection ended: {e:?}"),
        () = script => {}
    }
    // The connection future is dropped without DISCONNECT: the broker sends the will.
    let seen = until(&mut lines, |t, _| t.kind == Kind::Death).await;
    let Message::Death(d) = &seen.last().unwrap().1 else {
        panic!()
    };
    assert_eq!(d.bdseq, 1);
    assert!(!node.borrow().link_up(), "the dropped connection marked the link down");

    // Offline: samples and an event are queued.
    for s in 10..=40 {
        clock.set(s * 1000);
        node.borrow_mut()
            .step(now(), &bay_inputs(if s > 30 { 90.0 } else { 30.0 }));
    }
    let queued = node.borrow().outbox().len();
    assert!(queued >= 4, "{queued}");

    // Reconnect: a new session, then the backlog marked hist, in order.
    let io = FromTokio::new(TcpStream::connect(("127.0.0.1", broker.port)).await.unwrap());
    let conn = run_connection(&node, now, &topics, "bay-07", io, &mut buffer, 1024);
    let script = async {
        let (t, m) = next_message(&mut lines).await;
        assert_eq!(t.kind, Kind::Birth);
        assert_eq!(m.header().bdseq, Some(2));
        let seen = until(&mut lines, |_, m| matches!(m, Message::Event(e) if e.hist)).await;
        let hist: Vec<_> = seen.iter().filter(|(_, m)| m.header().hist).collect();
        assert!(!hist.is_empty());
        assert!(hist.iter().all(|(_, m)| m.header().bdseq == Some(1)));
        let seqs: Vec<u32> = hist.iter().map(|(_, m)| m.header().seq.unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    };
    tokio::select! {
        e = conn => panic!("connection ended: {e:?}"),
        () = script => {}
    }
    drop(broker);
}
