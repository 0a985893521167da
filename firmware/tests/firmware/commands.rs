//! Every op a node carries out, through `Node::on_command` as the gateway's
//! signed commands arrive: what it does, and the `ack` that says so, or says
//! why not (issue 16).

use firmware::charger::{ChargerConfig, ChargerInputs, ChargerNode, MAX_PORTS, PortInputs};
use firmware::elevator::{ElevatorConfig, ElevatorInputs, ElevatorNode};
use firmware::firepump::{FirepumpConfig, FirepumpInputs, FirepumpNode};
use firmware::hal::Millis;
use firmware::node::{ClassLogic, CommandOutcome, Node, NodeInfo};
use firmware::registers::CommandError;
use protocol::cmdauth::Recipient;
use protocol::{DeviceClass, EventCode, Format, Message, decode};

use crate::signing;

const LIFT: Recipient<'static> = Recipient {
    site: "lakeside",
    class: DeviceClass::Elevator,
    device: "LIFT-1",
};
const PUMP: Recipient<'static> = Recipient {
    site: "lakeside",
    class: DeviceClass::Firepump,
    device: "PUMP-B2",
};
const BAY: Recipient<'static> = Recipient {
    site: "lakeside",
    class: DeviceClass::Charger,
    device: "BAY-07",
};

fn node<L: ClassLogic>(logic: L, to: &Recipient<'_>, format: Format) -> Node<L> {
    let info = NodeInfo {
        fw: "1.0.0".try_into().unwrap(),
        model: "FM-TEST".try_into().unwrap(),
        cfg: "abc123".try_into().unwrap(),
        interval_s: 10,
        format,
    };
    let mut node = Node::new(logic, info);
    node.set_credentials(signing::credentials(to.site, to.device));
    let mut buf = [0u8; 512];
    node.on_connect(Millis(0), &mut buf).unwrap();
    acks(&mut node);
    node
}

/// Publishes what is queued; returns the acks as `(id, ok, error)`.
fn acks<L: ClassLogic>(node: &mut Node<L>) -> Vec<(String, bool, Option<String>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(o) = node.next_payload(&mut buf) {
        if let Message::Ack(a) = decode(o.kind, &buf[..o.len]).unwrap() {
            out.push((a.id.to_string(), a.ok, a.error.map(|e| e.to_string())));
        }
        node.published();
    }
    out
}

fn ack(id: &str, ok: bool, error: Option<&str>) -> (String, bool, Option<String>) {
    (id.into(), ok, error.map(Into::into))
}

fn standing(occupied: bool) -> ElevatorInputs {
    ElevatorInputs {
        door_closed: true,
        door_zone: false,
        occupied,
        power_ok: true,
        speed_mps: Some(0.0),
        ..Default::default()
    }
}

fn lift(door_hold_output: bool, format: Format) -> Node<ElevatorNode> {
    let config = ElevatorConfig {
        door_hold_output,
        ..ElevatorConfig::default()
    };
    node(ElevatorNode::new(config), &LIFT, format)
}

#[test]
fn hold_doors_holds_until_released_and_acks_each() {
    for format in [Format::Json, Format::Binary] {
        let mut n = lift(true, format);
        let cmd = |id: &str, args: &str, ctr| signing::cmd_in(&LIFT, id, "hold_doors", args, ctr, format);
        n.step(Millis(1_000), &standing(false));
        assert!(!n.logic().door_hold());
        assert_eq!(
            n.on_command(Millis(1_500), &cmd("h1", r#"{"hold":true}"#, 1)),
            CommandOutcome::Done
        );
        assert!(n.logic().door_hold(), "{format:?}");
        for s in 2..=120 {
            n.step(Millis(s * 1_000), &standing(false));
        }
        assert!(n.logic().door_hold(), "held for two minutes");
        assert_eq!(
            n.on_command(Millis(121_000), &cmd("h2", r#"{"hold":false}"#, 2)),
            CommandOutcome::Done
        );
        assert!(!n.logic().door_hold());
        // A release while nothing is held is done already.
        assert_eq!(
            n.on_command(Millis(122_000), &cmd("h3", r#"{"hold":false}"#, 3)),
            CommandOutcome::Done
        );
        assert_eq!(
            acks(&mut n),
            [ack("h1", true, None), ack("h2", true, None), ack("h3", true, None)],
            "{format:?}"
        );
    }
}

#[test]
fn a_hold_ends_by_itself_after_the_safety_maximum() {
    let mut n = lift(true, Format::Json);
    let cmd = |id: &str, args: &str, ctr| signing::cmd(&LIFT, id, "hold_doors", args, ctr);
    n.on_command(Millis(10_000), &cmd("h1", r#"{"hold":true}"#, 1));
    // A second hold does not restart the clock: the limit bounds one hold.
    n.on_command(Millis(300_000), &cmd("h2", r#"{"hold":true}"#, 2));
    let mut released = None;
    for s in 11..=1_000 {
        n.step(Millis(s * 1_000), &standing(false));
        if released.is_none() && !n.logic().door_hold() {
            released = Some(s);
        }
    }
    assert_eq!(released, Some(610), "600 s after the first hold");
    assert_eq!(acks(&mut n), [ack("h1", true, None), ack("h2", true, None)]);

    // The limit is a threshold: shorter on a site that wants it.
    let mut n = lift(true, Format::Json);
    n.on_command(
        Millis(0),
        &signing::cmd(
            &LIFT,
            "t",
            "set_threshold",
            r#"{"name":"door_hold_max_s","value":30}"#,
            1,
        ),
    );
    n.on_command(
        Millis(0),
        &signing::cmd(&LIFT, "h", "hold_doors", r#"{"hold":true}"#, 2),
    );
    n.step(Millis(29_900), &standing(false));
    assert!(n.logic().door_hold());
    n.step(Millis(30_000), &standing(false));
    assert!(!n.logic().door_hold());
    // Out of its range (10 s to 30 min) it is refused.
    n.on_command(
        Millis(31_000),
        &signing::cmd(
            &LIFT,
            "t2",
            "set_threshold",
            r#"{"name":"door_hold_max_s","value":86400}"#,
            3,
        ),
    );
    assert_eq!(
        acks(&mut n),
        [
            ack("t", true, None),
            ack("h", true, None),
            ack("t2", false, Some("value out of range"))
        ]
    );
}

#[test]
fn hold_doors_is_refused_where_there_is_no_output() {
    let mut n = lift(false, Format::Json);
    assert_eq!(
        n.on_command(
            Millis(1),
            &signing::cmd(&LIFT, "h1", "hold_doors", r#"{"hold":true}"#, 1)
        ),
        CommandOutcome::Failed(CommandError::NoDoorHold)
    );
    assert!(!n.logic().door_hold());
    let mut bay = node(ChargerNode::new(ChargerConfig::default(), 4), &BAY, Format::Json);
    bay.on_command(
        Millis(1),
        &signing::cmd(&BAY, "h2", "hold_doors", r#"{"hold":true}"#, 1),
    );
    let mut pump = node(FirepumpNode::new(FirepumpConfig::default()), &PUMP, Format::Json);
    pump.on_command(
        Millis(1),
        &signing::cmd(&PUMP, "h3", "hold_doors", r#"{"hold":true}"#, 1),
    );
    assert_eq!(acks(&mut n), [ack("h1", false, Some("no door-hold output"))]);
    assert_eq!(acks(&mut bay), [ack("h2", false, Some("unsupported by this node"))]);
    assert_eq!(acks(&mut pump), [ack("h3", false, Some("unsupported by this node"))]);
    // Without `hold` the command does not decode: nothing to answer.
    let bare = br#"{"v":1,"seq":1,"ts":0,"id":"h4","op":"hold_doors"}"#;
    assert_eq!(n.on_command(Millis(2), bare), CommandOutcome::Malformed);
}

fn bay_inputs(temp_c: f32) -> ChargerInputs {
    let mut ports = [PortInputs {
        current_a: Some(0.0),
        temp_c: Some(30.0),
    }; MAX_PORTS];
    ports[1] = PortInputs {
        current_a: Some(1.0),
        temp_c: Some(temp_c),
    };
    ChargerInputs {
        smoke: false,
        leakage_ma: Some(2.0),
        mains_voltage_v: Some(220.0),
        ambient_temp_c: Some(25.0),
        ports,
    }
}

#[test]
fn cut_off_and_clear_ack_and_a_clear_while_hot_says_why() {
    let mut n = node(ChargerNode::new(ChargerConfig::default(), 4), &BAY, Format::Json);
    let cmd = |id: &str, op: &str, args: &str, ctr| signing::cmd(&BAY, id, op, args, ctr);
    n.step(Millis(0), &bay_inputs(30.0));
    assert_eq!(
        n.on_command(Millis(100), &cmd("cut", "cut_off", r#"{"port":1}"#, 1)),
        CommandOutcome::Done
    );
    assert!(!n.logic().relay_on(1) && n.logic().relay_on(2));
    // Port 2 overheats and is cut by the node itself.
    n.step(Millis(1_000), &bay_inputs(85.0));
    assert!(!n.logic().relay_on(2));
    assert_eq!(
        n.on_command(Millis(1_100), &cmd("clr-hot", "clear", r#"{"port":2}"#, 2)),
        CommandOutcome::Failed(CommandError::StillHot)
    );
    n.step(Millis(2_000), &bay_inputs(60.0));
    n.on_command(Millis(2_100), &cmd("clr-warm", "clear", r#"{"port":2}"#, 3));
    assert!(!n.logic().relay_on(2), "still cut at 60 °C");
    n.step(Millis(3_000), &bay_inputs(40.0));
    n.on_command(Millis(3_100), &cmd("clr-cool", "clear", r#"{"port":2}"#, 4));
    n.on_command(Millis(3_200), &cmd("clr-1", "clear", r#"{"port":1}"#, 5));
    assert!(n.logic().relay_on(1) && n.logic().relay_on(2));
    assert_eq!(
        acks(&mut n),
        [
            ack("cut", true, None),
            ack("clr-hot", false, Some("cause still present: port still hot")),
            ack("clr-warm", false, Some("cause still present: port still hot")),
            ack("clr-cool", true, None),
            ack("clr-1", true, None),
        ]
    );
    // Smoke: every port cut, and the clear says smoke.
    n.step(
        Millis(4_000),
        &ChargerInputs {
            smoke: true,
            ..bay_inputs(30.0)
        },
    );
    n.on_command(Millis(4_100), &cmd("clr-smoke", "clear", "{}", 6));
    assert!((1..=4).all(|p| !n.logic().relay_on(p)));
    assert_eq!(
        acks(&mut n),
        [ack("clr-smoke", false, Some("cause still present: smoke"))]
    );
}

fn pump_inputs(auto_mode: bool) -> FirepumpInputs {
    FirepumpInputs {
        auto_mode,
        main_power_ok: true,
        backup_power_ok: true,
        outlet_pressure_mpa: Some(0.6),
        network_pressure_mpa: Some(0.3),
        tank_level_m: Some(3.0),
        ..Default::default()
    }
}

#[test]
fn self_test_acks_and_its_refusals_say_why() {
    let mut n = node(FirepumpNode::new(FirepumpConfig::default()), &PUMP, Format::Json);
    let cmd = |id: &str, ctr| signing::cmd(&PUMP, id, "self_test", "{}", ctr);
    n.step(Millis(0), &pump_inputs(false));
    assert_eq!(
        n.on_command(Millis(100), &cmd("t-manual", 1)),
        CommandOutcome::Failed(CommandError::NotInAuto)
    );
    assert!(!n.logic().test_output());
    n.step(Millis(1_000), &pump_inputs(true));
    assert_eq!(n.on_command(Millis(1_100), &cmd("t1", 2)), CommandOutcome::Done);
    assert!(n.logic().test_output());
    n.on_command(Millis(1_200), &cmd("t2", 3));
    assert_eq!(
        acks(&mut n),
        [
            ack("t-manual", false, Some("cabinet not in auto")),
            ack("t1", true, None),
            ack("t2", false, Some("self-test already running")),
        ]
    );
}

#[test]
fn a_threshold_pushed_is_used_and_a_bad_one_says_why() {
    let mut n = lift(false, Format::Json);
    let cmd = |id: &str, args: &str, ctr| signing::cmd(&LIFT, id, "set_threshold", args, ctr);
    n.on_command(
        Millis(0),
        &cmd("s1", r#"{"name":"trapped_outside_zone_s","value":8}"#, 1),
    );
    n.on_command(Millis(0), &cmd("s2", r#"{"name":"no_such_threshold","value":8}"#, 2));
    n.on_command(
        Millis(0),
        &cmd("s3", r#"{"name":"trapped_outside_zone_s","value":1}"#, 3),
    );
    assert_eq!(
        acks(&mut n),
        [
            ack("s1", true, None),
            ack("s2", false, Some("unknown threshold")),
            ack("s3", false, Some("value out of range")),
        ]
    );
    let mut trapped_at = None;
    for s in 1..=30 {
        n.step(Millis(s * 1_000), &standing(true));
        if trapped_at.is_none() && n.logic().is_active(EventCode::Trapped) {
            trapped_at = Some(s);
        }
    }
    assert_eq!(trapped_at, Some(9), "8 s after the car stopped at 1 s, not 20 s");
}

#[test]
fn every_refusal_fits_an_ack() {
    for e in [
        CommandError::Unsupported,
        CommandError::NoSuchPort,
        CommandError::CauseStillPresent,
        CommandError::StillHot,
        CommandError::SmokePresent,
        CommandError::LeakagePresent,
        CommandError::SelfTestRunning,
        CommandError::NotInAuto,
        CommandError::NoDoorHold,
        CommandError::UnknownThreshold,
        CommandError::OutOfRange,
        CommandError::BadArgument,
    ] {
        let text = e.as_str();
        assert!(
            text.is_ascii() && text.len() <= protocol::limits::MAX_ERROR_LEN,
            "{text}"
        );
    }
}

fn birth_cfg<L: ClassLogic>(n: &mut Node<L>, now: u64) -> String {
    n.on_disconnect();
    let mut buf = [0u8; 512];
    let o = n.on_connect(Millis(now), &mut buf).unwrap();
    let Message::Birth(b) = decode(o.kind, &buf[..o.len]).unwrap() else {
        unreachable!()
    };
    acks(n);
    b.cfg.to_string()
}

/// The gateway confirms pushed thresholds by the next birth's `cfg`: it
/// stays the configured one until a threshold is set, then says which
/// thresholds are in force.
#[test]
fn the_birth_cfg_follows_the_thresholds_set() {
    let set = |n: &mut Node<ElevatorNode>, value: &str, ctr| {
        let args = format!(r#"{{"name":"trapped_outside_zone_s","value":{value}}}"#);
        n.on_command(Millis(1), &signing::cmd(&LIFT, "s", "set_threshold", &args, ctr))
    };
    let mut a = lift(false, Format::Json);
    assert_eq!(birth_cfg(&mut a, 10), "abc123");
    assert_eq!(set(&mut a, "4000", 1), CommandOutcome::Failed(CommandError::OutOfRange));
    assert_eq!(birth_cfg(&mut a, 20), "abc123", "a refused value changes nothing");
    assert_eq!(set(&mut a, "30", 2), CommandOutcome::Done);
    let pushed = birth_cfg(&mut a, 30);
    assert!(pushed.starts_with("abc123+") && pushed.len() == 15, "{pushed}");
    assert!(pushed[7..].bytes().all(|b| b.is_ascii_hexdigit()), "{pushed}");
    // Another node given the same value says the same; another value differs.
    let mut b = lift(false, Format::Json);
    set(&mut b, "30", 1);
    assert_eq!(birth_cfg(&mut b, 10), pushed);
    set(&mut b, "31", 2);
    assert_ne!(birth_cfg(&mut b, 20), pushed);
}

/// A `clear` of every port while one is still hot clears the cool ones and
/// says so: their events go out with the refusal's ack. Before, the node
/// returned the refusal alone and the cool port's "cleared" event was lost,
/// so the gateway kept its alert open while the port was back in service.
#[test]
fn a_clear_of_every_port_reports_the_ports_it_cleared_beside_the_refusal() {
    let mut n = node(ChargerNode::new(ChargerConfig::default(), 4), &BAY, Format::Json);
    let two = |t1: f32, t2: f32| {
        let mut i = bay_inputs(t2);
        i.ports[0] = PortInputs {
            current_a: Some(1.0),
            temp_c: Some(t1),
        };
        i
    };
    n.step(Millis(0), &two(30.0, 30.0));
    n.step(Millis(1_000), &two(85.0, 85.0));
    assert!(!n.logic().relay_on(1) && !n.logic().relay_on(2));
    // Port 1 cools, port 2 does not.
    n.step(Millis(2_000), &two(30.0, 85.0));
    let mut buf = [0u8; 4096];
    while n.next_payload(&mut buf).is_some() {
        n.published();
    }
    let clear = signing::cmd(&BAY, "clr-all", "clear", "{}", 1);
    assert_eq!(
        n.on_command(Millis(2_100), &clear),
        CommandOutcome::Failed(CommandError::StillHot)
    );
    assert!(n.logic().relay_on(1) && !n.logic().relay_on(2));
    let (mut cleared, mut acked) = (Vec::new(), Vec::new());
    while let Some(o) = n.next_payload(&mut buf) {
        match decode(o.kind, &buf[..o.len]).unwrap() {
            Message::Event(e) if !e.active => cleared.push((e.code.to_string(), e.port())),
            Message::Ack(a) => acked.push((a.id.to_string(), a.ok)),
            _ => {}
        }
        n.published();
    }
    assert_eq!(cleared, [(EventCode::OverTemperature.as_str().to_owned(), Some(1))]);
    assert_eq!(acked, [("clr-all".to_owned(), false)]);
}
