//! The whole node: session numbers, birth and will, telemetry cadence,
//! store-and-forward with replay marking, commands and acks.

use firmware::charger::{ChargerConfig, ChargerInputs, ChargerNode, MAX_PORTS, PortInputs};
use firmware::config::Credentials;
use firmware::elevator::{ElevatorConfig, ElevatorInputs, ElevatorNode};
use firmware::hal::Millis;
use firmware::node::{CommandOutcome, Node, NodeInfo};
use firmware::registers::CommandError;
use protocol::cmdauth::{CommandKey, Recipient, Refusal};
use protocol::{DeviceClass, Format, Kind, Message, Metric, Timestamp, Value, decode};

use crate::signing::{self, LATER};

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

const BAY: Recipient<'static> = Recipient {
    site: "lakeside",
    class: DeviceClass::Charger,
    device: "BAY-07",
};

fn bay() -> Node<ChargerNode> {
    let mut node = Node::new(ChargerNode::new(ChargerConfig::default(), 8), info(Format::Json));
    node.set_credentials(signing::credentials("lakeside", "BAY-07"));
    let mut buf = [0u8; 512];
    node.on_connect(Millis(0), &mut buf).unwrap();
    drain(&mut node);
    node
}

fn acks(msgs: Vec<Message>) -> Vec<(String, bool, Option<String>)> {
    msgs.into_iter()
        .filter_map(|m| match m {
            Message::Ack(a) => Some((a.id.to_string(), a.ok, a.error.map(|e| e.to_string()))),
            _ => None,
        })
        .collect()
}

#[test]
fn commands_are_acked_and_refusals_say_why() {
    let mut node = bay();
    let cmd = |id: &str, op: &str, args: &str, ctr| signing::cmd(&BAY, id, op, args, ctr);
    assert_eq!(
        node.on_command(Millis(1), &cmd("c1", "cut_off", r#"{"port":3}"#, 1)),
        CommandOutcome::Done
    );
    assert!(!node.logic().relay_on(3));
    assert_eq!(
        node.on_command(Millis(2), &cmd("c2", "cut_off", r#"{"port":9}"#, 2)),
        CommandOutcome::Failed(CommandError::NoSuchPort)
    );
    node.on_command(Millis(3), &cmd("c3", "self_test", "{}", 3));
    node.on_command(Millis(4), &cmd("c4", "reboot", "{}", 4));
    node.on_command(
        Millis(5),
        &cmd("c5", "set_threshold", r#"{"name":"over_temp_c","value":60}"#, 5),
    );
    node.on_command(Millis(6), &cmd("c6", "clear", r#"{"port":3}"#, 6));
    assert_eq!(node.on_command(Millis(7), b"{not json"), CommandOutcome::Malformed);
    assert_eq!(node.stats().bad_commands, 1);
    assert_eq!(
        acks(drain(&mut node)),
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

/// The commands an attacker on the broker could send, each refused with its
/// reason, none carried out, the counter untouched by any of them.
#[test]
fn unauthorised_commands_change_nothing_and_say_why() {
    let mut node = bay();
    let cut3 = r#"{"v":1,"seq":1,"ts":0,"id":"x","op":"cut_off","args":{"port":3}}"#;
    let sign =
        |key: &CommandKey, to: &Recipient<'_>, ctr, exp, format| signing::sign_with(key, to, cut3, ctr, exp, format);
    let forged_key = CommandKey::from_bytes([0x5A; 32]);
    let other_device = Recipient {
        device: "BAY-08",
        ..BAY
    };
    let other_class = Recipient {
        class: DeviceClass::Firepump,
        ..BAY
    };
    let mut tampered = sign(&signing::key(), &BAY, 7, LATER, Format::Json);
    let at = tampered
        .windows(9)
        .position(|w| w == br#""port":3}"#.as_slice())
        .unwrap();
    tampered[at + 7] = b'4';
    let tries: Vec<(&str, Vec<u8>, Refusal)> = vec![
        ("unsigned", cut3.as_bytes().to_vec(), Refusal::Unsigned),
        (
            "another key",
            sign(&forged_key, &BAY, 7, LATER, Format::Json),
            Refusal::BadMac,
        ),
        (
            "another device's command",
            sign(&signing::key(), &other_device, 7, LATER, Format::Json),
            Refusal::BadMac,
        ),
        (
            "another class",
            sign(&signing::key(), &other_class, 7, LATER, Format::Binary),
            Refusal::BadMac,
        ),
        ("a port changed on the way", tampered, Refusal::BadMac),
        (
            "a forged counter",
            sign(&forged_key, &BAY, u64::MAX, LATER, Format::Binary),
            Refusal::BadMac,
        ),
    ];
    for (what, payload, refusal) in &tries {
        assert_eq!(
            node.on_command(Millis(10), payload),
            CommandOutcome::Refused(*refusal),
            "{what}"
        );
        assert!(node.logic().relay_on(3), "{what}: carried out");
    }
    assert_eq!(node.command_counter(), 0);
    assert_eq!(node.stats().refused_commands, 6);
    let answered = acks(drain(&mut node));
    assert_eq!(answered.len(), 6);
    assert!(
        answered
            .iter()
            .zip(&tries)
            .all(|(a, t)| !a.1 && a.2.as_deref() == Some(t.2.as_str()))
    );

    // The real one goes through, once.
    let good = sign(&signing::key(), &BAY, 7, LATER, Format::Binary);
    assert_eq!(node.on_command(Millis(20), &good), CommandOutcome::Done);
    assert!(!node.logic().relay_on(3));
    assert_eq!(node.command_counter(), 7);
    node.on_command(Millis(21), &signing::cmd(&BAY, "c", "clear", r#"{"port":3}"#, 8));
    assert!(node.logic().relay_on(3));
    assert_eq!(
        node.on_command(Millis(22), &good),
        CommandOutcome::Refused(Refusal::Replayed)
    );
    let older = sign(&signing::key(), &BAY, 6, LATER, Format::Json);
    assert_eq!(
        node.on_command(Millis(23), &older),
        CommandOutcome::Refused(Refusal::Replayed)
    );
    assert!(node.logic().relay_on(3), "a replayed cut-off is not carried out");
    assert_eq!(node.command_counter(), 8);
}

#[test]
fn expired_commands_are_refused_once_the_clock_is_set() {
    let exp = Timestamp::from_millis(1_763_798_430_000);
    let cut3 = r#"{"v":1,"seq":1,"ts":0,"id":"x","op":"cut_off","args":{"port":3}}"#;
    let signed = |ctr| signing::sign_with(&signing::key(), &BAY, cut3, ctr, exp, Format::Json);

    // No clock yet: the expiry cannot be judged, the counter still is.
    let mut node = bay();
    assert_eq!(node.on_command(Millis(1_000), &signed(1)), CommandOutcome::Done);

    // Clock set: 1 ms after `exp` is too late, `exp` itself is not.
    let mut node = bay();
    node.set_wall_clock(Millis(1_000), 1_763_798_430_000);
    assert_eq!(
        node.on_command(Millis(1_001), &signed(1)),
        CommandOutcome::Refused(Refusal::Expired)
    );
    assert!(node.logic().relay_on(3));
    assert_eq!(
        node.command_counter(),
        0,
        "an expired command does not use up its counter"
    );
    let mut node = bay();
    node.set_wall_clock(Millis(1_000), 1_763_798_430_000);
    assert_eq!(node.on_command(Millis(1_000), &signed(1)), CommandOutcome::Done);
}

#[test]
fn without_a_key_nothing_is_carried_out() {
    let cut = |node: &mut Node<ChargerNode>| node.on_command(Millis(1), &signing::cmd(&BAY, "c", "cut_off", "{}", 1));
    let mut node = Node::new(ChargerNode::new(ChargerConfig::default(), 8), info(Format::Json));
    assert_eq!(
        cut(&mut node),
        CommandOutcome::Refused(Refusal::NoKey),
        "no credentials at all"
    );
    node.set_credentials(Credentials::new("lakeside", "BAY-07").unwrap());
    assert_eq!(
        cut(&mut node),
        CommandOutcome::Refused(Refusal::NoKey),
        "credentials without a key"
    );
    assert!((1..=8).all(|p| node.logic().relay_on(p)));
    let answered = acks(drain(&mut node));
    assert_eq!(answered, vec![("c".into(), false, Some("no_key".into())); 2]);
}

#[test]
fn a_counter_restored_after_a_reset_keeps_refusing_replays() {
    let mut node = bay();
    let payload = signing::cmd(&BAY, "c", "cut_off", r#"{"port":1}"#, 41);
    assert_eq!(node.on_command(Millis(1), &payload), CommandOutcome::Done);
    let saved = node.command_counter();
    // The board keeps `saved` in backup RAM across the reset.
    let mut rebooted = bay();
    rebooted.restore_command_counter(saved);
    assert_eq!(
        rebooted.on_command(Millis(1), &payload),
        CommandOutcome::Refused(Refusal::Replayed)
    );
    // Without it, only the expiry would have stopped it.
    assert_eq!(bay().on_command(Millis(1), &payload), CommandOutcome::Done);
}

#[test]
fn credentials_name_the_node_and_hide_their_secrets() {
    let c = Credentials::new("lakeside", "BAY-07")
        .unwrap()
        .with_password("s3cret-pw")
        .unwrap()
        .with_cmd_key_hex(signing::KEY_HEX)
        .unwrap();
    assert_eq!(c.username().as_str(), "lakeside/BAY-07");
    assert!(c.modbus_key().is_some(), "a key: signed Modbus writes");
    let read_only = Credentials {
        modbus_read_only: true,
        ..c.clone()
    };
    assert!(read_only.modbus_key().is_none(), "configured read-only");
    assert!(
        Credentials::new("a", "b").unwrap().modbus_key().is_none(),
        "no key: read-only"
    );
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret") && !shown.contains("8f1e"), "{shown}");
    assert!(Credentials::new("Lakeside", "x").is_err());
    assert!(Credentials::new("a", "x").unwrap().with_cmd_key_hex("00").is_err());
    assert!(
        Credentials::new("a", "x")
            .unwrap()
            .with_password(&"p".repeat(65))
            .is_err()
    );
}
