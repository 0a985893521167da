//! The MQTT uplink against a real Mosquitto: birth and will, telemetry and
//! events, a forged command refused and a signed one carried out with their
//! acks, a link loss with replay afterwards, and the CONNECT's username and
//! password against a broker that wants them.

use std::cell::{Cell, RefCell};
use std::process::Stdio;
use std::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use firmware::charger::{ChargerConfig, ChargerInputs, ChargerNode, MAX_PORTS, PortInputs};
use firmware::config::Credentials;
use firmware::hal::Millis;
use firmware::mqtt::{NodeTopics, run_connection};
use firmware::node::{Node, NodeInfo};
use protocol::cmdauth::{CommandKey, Recipient};
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
    node.borrow_mut()
        .set_credentials(crate::signing::credentials("lakeside", "BAY-07"));
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
        // Anybody on the broker sends a `clear` without the key: refused.
        node.borrow_mut().step(Millis(3000), &bay_inputs(40.0));
        let to = Recipient {
            site: "lakeside",
            class: DeviceClass::Charger,
            device: "BAY-07",
        };
        let clear = r#"{"v":1,"seq":1,"ts":0,"id":"clr-3","op":"clear","args":{"port":3}}"#;
        let forged = crate::signing::sign_with(
            &CommandKey::from_bytes([9; 32]),
            &to,
            clear,
            1,
            crate::signing::LATER,
            Format::Json,
        );
        publish_cmd(
            broker.port,
            "fm/v1/lakeside/charger/BAY-07/cmd",
            std::str::from_utf8(&forged).unwrap(),
        )
        .await;
        let seen = until(&mut lines, |t, _| t.kind == Kind::Ack).await;
        let Message::Ack(a) = &seen.last().unwrap().1 else {
            panic!()
        };
        assert_eq!(
            (a.id.as_str(), a.ok, a.error.as_deref()),
            ("clr-3", false, Some("bad_mac"))
        );
        assert!(
            !node.borrow().logic().relay_on(3),
            "a forged clear re-energises nothing"
        );
        // The gateway clears it once cool: a signed command, answered by an ack.
        let signed = crate::signing::sign_with(
            &crate::signing::key(),
            &to,
            clear,
            1,
            crate::signing::LATER,
            Format::Json,
        );
        publish_cmd(
            broker.port,
            "fm/v1/lakeside/charger/BAY-07/cmd",
            std::str::from_utf8(&signed).unwrap(),
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

/// A Mosquitto that refuses anonymous clients and knows one user.
struct LockedBroker {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LockedBroker {
    fn start(user: &str, password: &str) -> LockedBroker {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let made = std::process::Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([user, password])
            .status()
            .expect("mosquitto_passwd (Debian package `mosquitto`)");
        assert!(made.success());
        let port = testkit::free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\n",
                passwd.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        testkit::wait_port(port);
        LockedBroker { child, port, _dir: dir }
    }
}

impl Drop for LockedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_node_logs_in_as_site_slash_device_with_its_password() {
    let broker = LockedBroker::start("lakeside/BAY-07", "Zq3-provisioned-pw");
    let topics = NodeTopics::new(Topic::new(
        SiteId::new("lakeside").unwrap(),
        DeviceClass::Charger,
        DeviceId::new("BAY-07").unwrap(),
        Kind::Data,
    ));
    for (password, accepted) in [
        (None, false),
        (Some("wrong"), false),
        (Some("Zq3-provisioned-pw"), true),
    ] {
        let info = NodeInfo {
            fw: "1.0.0".try_into().unwrap(),
            model: "FM-CH-12".try_into().unwrap(),
            cfg: "c0ffee".try_into().unwrap(),
            interval_s: 10,
            format: Format::Json,
        };
        let node = RefCell::new(Node::new(ChargerNode::new(ChargerConfig::default(), 12), info));
        let mut credentials = Credentials::new("lakeside", "BAY-07").unwrap();
        if let Some(p) = password {
            credentials = credentials.with_password(p).unwrap();
        }
        node.borrow_mut().set_credentials(credentials);
        let mut buffer = [0u8; 4096];
        let io = FromTokio::new(TcpStream::connect(("127.0.0.1", broker.port)).await.unwrap());
        let conn = run_connection(&node, || Millis(0), &topics, "bay-07", io, &mut buffer, 1024);
        let up = async {
            while !node.borrow().link_up() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            e = conn => assert!(!accepted, "{password:?}: refused ({e:?})"),
            r = tokio::time::timeout(Duration::from_secs(5), up) => {
                assert!(r.is_ok() && accepted, "{password:?}: connected without the right password");
            }
        }
    }
}
