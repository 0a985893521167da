//! The whole node: session numbers, birth and will, telemetry cadence,
//! store-and-forward with replay marking, commands and acks.

use firmware::charger::{ChargerConfig, ChargerInputs, ChargerNode, MAX_PORTS, PortInputs};
use firmware::elevator::{ElevatorConfig, ElevatorInputs, ElevatorNode};
use firmware::hal::Millis;
use firmware::node::{Node, NodeInfo};
use protocol::{Format, Kind, Message, Metric, Value, decode};

fn info(format: Format) -> NodeInfo {
    NodeInfo {
        fw: "1.0.0".try_into().unwrap(),
        model: "FM-TEST".try_into().unwrap(),
        cfg: "abc123".try_into().unwrap(),
        interval_s: 10,
        format,
    }
}

/// Publishes everything queued; returns the decoded messages.
fn drain<L: firmware::node::ClassLogic>(node: &mut Node<L>) -> Vec<Message> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(o) = node.next_payload(&mut buf) {
        assert_eq!(o.qos, 1);
        out.push(decode(o.kind, &buf[..o.len]).unwrap_or_else(|e| panic!("{e}")));
        node.published();
    }
    out
}

fn elevator_input() -> ElevatorInputs {
    ElevatorInputs {
        door_closed: true,
        door_zone: true,
        power_ok: true,
        speed_mps: Some(0.0),
        ..Default::default()
    }
}

#[test]
fn birth_will_and_session_numbers() {
    for format in [Format::Json, Format::Binary] {
        let mut node = Node::new(ElevatorNode::new(ElevatorConfig::default()), info(format));
        node.set_wall_clock(Millis(0), 1_763_798_400_000);
        let mut buf = [0u8; 512];
        let n = node.will(&mut buf).unwrap();
        assert_eq!(
            decode(Kind::Death, &buf[..n]).unwrap(),
            Message::Death(protocol::Death {
                v: protocol::V1,
                bdseq: 1
            })
        );
        let out = node.on_connect(Millis(5), &mut buf).unwrap();
        let Message::Birth(b) = decode(out.kind, &buf[..out.len]).unwrap() else {
            panic!()
        };
        assert_eq!((b.bdseq, b.seq, b.interval_s, b.floors), (1, 0, 10, Some(18)));
        assert_eq!(b.ts.as_millis(), 1_763_798_400_005);
        // After the birth: the drop counters.
        let msgs = drain(&mut node);
        let Message::Data(d) = &msgs[0] else { panic!("{msgs:?}") };
        assert_eq!(d.m.get(Metric::DroppedTelemetry), Some(Value::Number(0.0)));
        assert_eq!((d.seq, d.bdseq), (1, Some(1)));
        // The next session has the next bdseq, and its will says so.
        node.on_disconnect();
        node.will(&mut buf).unwrap();
        let out = node.on_connect(Millis(6), &mut buf).unwrap();
        let Message::Birth(b) = decode(out.kind, &buf[..out.len]).unwrap() else {
            panic!()
        };
        assert_eq!(b.bdseq, 2);
    }
}

#[test]
fn telemetry_every_interval_and_on_events_with_consecutive_seq() {
    let mut node = Node::new(ElevatorNode::new(ElevatorConfig::default()), info(Format::Json));
    let mut buf = [0u8; 512];
    node.on_connect(Millis(0), &mut buf).unwrap();
    drain(&mut node);
    for s in 0..=30 {
        node.step(Millis(s * 1000), &elevator_input());
    }
    let msgs = drain(&mut node);
    let seqs: Vec<u32> = msgs.iter().map(|m| m.header().seq.unwrap()).collect();
    assert_eq!(seqs, [2, 3, 4, 5], "samples at 0, 10, 20, 30 s");
    // An alarm button press: an event and a fresh sample at once.
    node.step(
        Millis(31_000),
        &ElevatorInputs {
            alarm_button: true,
            ..elevator_input()
        },
    );
    let msgs = drain(&mut node);
    assert!(matches!(&msgs[0], Message::Event(e) if e.code.as_str() == "alarm_button" && e.active));
    assert!(matches!(&msgs[1], Message::Data(_)));
}

#[test]
fn messages_queued_while_offline_are_replayed_in_order_marked_hist() {
    for format in [Format::Json, Format::Binary] {
        let mut node = Node::new(ElevatorNode::new(ElevatorConfig::default()), info(format));
        let mut buf = [0u8; 512];
        node.on_connect(Millis(0), &mut buf).unwrap();
        drain(&mut node);
        node.step(Millis(1000), &elevator_input());
        node.on_disconnect(); // the sample above was never published
        for s in 2..=40 {
            node.step(
                Millis(s * 1000),
                &ElevatorInputs {
                    occupied: true,
                    door_zone: false,
                    ..elevator_input()
                },
            );
        }
        assert!(!node.outbox().is_empty());
        node.on_connect(Millis(41_000), &mut buf).unwrap();
        let msgs = drain(&mut node);
        let replayed: Vec<&Message> = msgs.iter().filter(|m| m.header().hist).collect();
        assert!(replayed.len() >= 5, "{msgs:?}");
        // Replays keep their original session and seq order; the trapped alarm is among them.
        let seqs: Vec<u32> = replayed.iter().map(|m| m.header().seq.unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert!(replayed.iter().all(|m| m.header().bdseq == Some(1)));
        assert!(
            replayed
                .iter()
                .any(|m| matches!(m, Message::Event(e) if e.code.as_str() == "trapped"))
        );
        // Live messages of the new session are not hist.
        assert!(
            msgs.iter()
                .filter(|m| !m.header().hist)
                .all(|m| m.header().bdseq == Some(2))
        );
        // And the still-active trapped alarm is re-sent live after the birth.
        assert!(
            msgs.iter()
                .any(|m| matches!(m, Message::Event(e) if e.code.as_str() == "trapped" && !e.hist))
        );
    }
}

#[test]
fn a_long_outage_drops_telemetry_first_and_reports_the_count() {
    let cfg = ChargerConfig::default();
    let mut node = Node::new(
        ChargerNode::new(cfg, 12),
        NodeInfo {
            interval_s: 1,
            ..info(Format::Binary)
        },
    );
    let mut input = ChargerInputs {
        smoke: false,
        leakage_ma: Some(1.0),
        mains_voltage_v: Some(220.0),
        ambient_temp_c: Some(20.0),
        ports: [PortInputs {
            current_a: Some(1.0),
            temp_c: Some(30.0),
        }; MAX_PORTS],
    };
    let mut buf = [0u8; 512];
    node.on_connect(Millis(0), &mut buf).unwrap();
    drain(&mut node);
    node.on_disconnect();
    for s in 1..=1000 {
        if s == 500 {
            input.smoke = true;
        }
        node.step(Millis(s * 1000), &input);
    }
    let dropped = node.outbox().dropped();
    assert!(dropped.telemetry > 900, "{dropped:?}");
    assert_eq!(dropped.events, 0);
    node.on_connect(Millis(1_001_000), &mut buf).unwrap();
    let msgs = drain(&mut node);
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Message::Event(e) if e.code.as_str() == "smoke" && e.hist))
    );
    let health = msgs
        .iter()
        .find_map(|m| match m {
            Message::Data(d) if !d.hist => d.m.get(Metric::DroppedTelemetry),
            _ => None,
        })
        .unwrap();
    assert_eq!(health, Value::Number(f64::from(dropped.telemetry)));
}

#[test]
fn commands_are_acked_and_refusals_say_why() {
    let mut node = Node::new(ChargerNode::new(ChargerConfig::default(), 8), info(Format::Json));
    let mut buf = [0u8; 512];
    node.on_connect(Millis(0), &mut buf).unwrap();
    drain(&mut node);
    let cmd = |id: &str, op: &str, args: &str| {
        format!(r#"{{"v":1,"seq":1,"ts":0,"id":"{id}","op":"{op}","args":{args}}}"#).into_bytes()
    };
    node.on_command(Millis(1), &cmd("c1", "cut_off", r#"{"port":3}"#));
    assert!(!node.logic().relay_on(3));
    node.on_command(Millis(2), &cmd("c2", "cut_off", r#"{"port":9}"#));
    node.on_command(Millis(3), &cmd("c3", "self_test", "{}"));
    node.on_command(Millis(4), &cmd("c4", "reboot", "{}"));
    node.on_command(
        Millis(5),
        &cmd("c5", "set_threshold", r#"{"name":"over_temp_c","value":60}"#),
    );
    node.on_command(Millis(6), &cmd("c6", "clear", r#"{"port":3}"#));
    node.on_command(Millis(7), b"{not json");
    assert_eq!(node.stats().bad_commands, 1);
    let acks: Vec<(String, bool, Option<String>)> = drain(&mut node)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ack(a) => Some((a.id.to_string(), a.ok, a.error.map(|e| e.to_string()))),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        [
            ("c1".into(), true, None),
            ("c2".into(), false, Some("no such port".into())),
            ("c3".into(), false, Some("unsupported by this node".into())),
            ("c4".into(), false, Some("unsupported by this node".into())),
            ("c5".into(), true, None),
            ("c6".into(), true, None),
        ]
    );
    assert!(node.logic().relay_on(3));
    assert!((node.logic().config().over_temp_c - 60.0).abs() < 1e-6);
}
