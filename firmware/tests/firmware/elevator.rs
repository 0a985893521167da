//! Elevator detections, sample by sample with a manual clock.

use firmware::alarm::NodeEvent;
use firmware::elevator::{ElevatorConfig, ElevatorInputs, ElevatorNode};
use firmware::hal::Millis;
use protocol::{EventCode, Metric, Value};

fn standing(occupied: bool, door_zone: bool) -> ElevatorInputs {
    ElevatorInputs {
        door_closed: true,
        door_zone,
        occupied,
        power_ok: true,
        speed_mps: Some(0.0),
        ..Default::default()
    }
}

/// Steps once a second from `from` to `to` (inclusive); returns the events with their times.
fn run(node: &mut ElevatorNode, from: u64, to: u64, input: &ElevatorInputs) -> Vec<(u64, NodeEvent)> {
    let mut out = Vec::new();
    for s in from..=to {
        for e in node.step(Millis(s * 1000), input) {
            out.push((s, e));
        }
    }
    out
}

fn raised(events: &[(u64, NodeEvent)], code: EventCode) -> Option<u64> {
    events.iter().find(|(_, e)| e.code == code && e.active).map(|(t, _)| *t)
}

#[test]
fn trapped_after_20_s_outside_the_door_zone() {
    let mut n = ElevatorNode::new(ElevatorConfig::default());
    let ev = run(&mut n, 0, 30, &standing(true, false));
    assert_eq!(raised(&ev, EventCode::Trapped), Some(20));
    assert!(n.is_active(EventCode::Trapped));
    // The door opens: no longer trapped, cleared at once.
    let open = ElevatorInputs {
        door_closed: false,
        ..standing(true, false)
    };
    let ev = run(&mut n, 31, 31, &open);
    assert!(ev.iter().any(|(_, e)| e.code == EventCode::Trapped && !e.active));
}

#[test]
fn trapped_after_60_s_inside_the_door_zone() {
    let mut n = ElevatorNode::new(ElevatorConfig::default());
    let ev = run(&mut n, 0, 70, &standing(true, true));
    assert_eq!(raised(&ev, EventCode::Trapped), Some(60));
    assert_eq!(raised(&ev, EventCode::StoppedOutsideDoorZone), None);
}

#[test]
fn an_empty_car_is_never_trapped_but_can_be_stopped_outside_the_zone() {
    let mut n = ElevatorNode::new(ElevatorConfig::default());
    let ev = run(&mut n, 0, 100, &standing(false, false));
    assert_eq!(raised(&ev, EventCode::Trapped), None);
    assert_eq!(raised(&ev, EventCode::StoppedOutsideDoorZone), Some(45));
}

#[test]
fn door_open_while_running_needs_two_consecutive_samples() {
    let mut n = ElevatorNode::new(ElevatorConfig::default());
    let moving_open = ElevatorInputs {
        door_closed: false,
        door_zone: true,
        speed_mps: Some(0.5),
        ..standing(false, true)
    };
    let ev = run(&mut n, 0, 0, &moving_open);
    assert_eq!(
        raised(&ev, EventCode::DoorOpenWhileRunning),
        None,
        "one sample is not enough"
    );
    let ev = run(&mut n, 1, 1, &standing(false, true));
    assert!(ev.is_empty());
    let ev = run(&mut n, 2, 3, &moving_open);
    assert_eq!(raised(&ev, EventCode::DoorOpenWhileRunning), Some(3));
    // Leaving the door zone with the doors open is unintended movement, at once.
    let leaving = ElevatorInputs {
        door_zone: false,
        ..moving_open
    };
    let ev = run(&mut n, 4, 4, &leaving);
    assert_eq!(raised(&ev, EventCode::UnintendedMovement), Some(4));
}

#[test]
fn overspeed_at_1_2_times_rated() {
    let mut n = ElevatorNode::new(ElevatorConfig {
        rated_speed_mps: 1.0,
        ..ElevatorConfig::default()
    });
    let fast = |v| ElevatorInputs {
        speed_mps: Some(v),
        ..standing(false, false)
    };
    assert!(
        run(&mut n, 0, 0, &fast(1.19))
            .iter()
            .all(|(_, e)| e.code != EventCode::Overspeed)
    );
    let ev = run(&mut n, 1, 1, &fast(-1.2));
    let e = ev.iter().find(|(_, e)| e.code == EventCode::Overspeed).unwrap().1;
    assert!(e.active && (e.value.unwrap() - 1.2).abs() < 1e-6);
}

#[test]
fn contacts_raise_their_codes() {
    let mut n = ElevatorNode::new(ElevatorConfig::default());
    let input = ElevatorInputs {
        alarm_button: true,
        ebike: true,
        top_limit: true,
        bottom_limit: true,
        power_ok: false,
        ..standing(false, true)
    };
    let ev = run(&mut n, 0, 2, &input);
    for code in [
        EventCode::AlarmButton,
        EventCode::EbikeInCar,
        EventCode::OvertravelTop,
        EventCode::OvertravelBottom,
    ] {
        assert_eq!(raised(&ev, code), Some(0), "{code}");
    }
    assert_eq!(raised(&ev, EventCode::PowerCut), Some(1), "power needs 1 s missing");
}

#[test]
fn a_failed_speed_sensor_never_raises_trapped() {
    let mut n = ElevatorNode::new(ElevatorConfig::default());
    run(
        &mut n,
        0,
        0,
        &ElevatorInputs {
            speed_mps: Some(1.0),
            door_zone: false,
            ..standing(true, false)
        },
    );
    let ev = run(
        &mut n,
        1,
        100,
        &ElevatorInputs {
            speed_mps: None,
            ..standing(true, false)
        },
    );
    assert_eq!(
        raised(&ev, EventCode::Trapped),
        None,
        "motion unknown: keep judging it as running"
    );
}

#[test]
fn floors_are_counted_from_door_zone_entries_and_clamped() {
    let cfg = ElevatorConfig {
        lowest_floor: -1.0,
        floors: 5.0,
        ..ElevatorConfig::default()
    };
    let mut n = ElevatorNode::new(cfg);
    let up = |zone| ElevatorInputs {
        door_zone: zone,
        speed_mps: Some(1.0),
        ..standing(false, zone)
    };
    let mut t = 0;
    for _ in 0..10 {
        run(&mut n, t, t, &up(false));
        run(&mut n, t + 1, t + 1, &up(true));
        t += 2;
    }
    let floor = n.readings().iter().find(|(m, _)| *m == Metric::Floor).unwrap().1;
    assert_eq!(floor, Value::Number(3.0), "clamped at the top floor (-1 + 5 - 1)");
    let runs = n.readings().iter().find(|(m, _)| *m == Metric::RunCount).unwrap().1;
    assert_eq!(runs, Value::Number(1.0));
}

#[test]
fn thresholds_can_be_set_within_range_only() {
    let mut n = ElevatorNode::new(ElevatorConfig::default());
    n.set_threshold("trapped_outside_zone_s", 30.0).unwrap();
    assert!(n.set_threshold("trapped_outside_zone_s", 1.0).is_err());
    assert!(n.set_threshold("no_such", 1.0).is_err());
    let ev = run(&mut n, 0, 40, &standing(true, false));
    assert_eq!(raised(&ev, EventCode::Trapped), Some(30));
}

proptest::proptest! {
    /// No sequence of inputs, failed sensors and absurd speeds included, panics.
    #[test]
    fn no_input_sequence_panics(
        samples in proptest::collection::vec((proptest::prelude::any::<[bool; 8]>(), proptest::prelude::any::<Option<f32>>(), 0u64..100_000), 1..200)
    ) {
        let mut n = ElevatorNode::new(ElevatorConfig::default());
        let mut now = 0;
        for ([door_closed, door_zone, occupied, alarm_button, ebike, power_ok, top_limit, bottom_limit], speed_mps, dt) in samples {
            now += dt;
            let input = ElevatorInputs { door_closed, door_zone, occupied, alarm_button, ebike, power_ok, top_limit, bottom_limit, speed_mps };
            let _ = n.step(Millis(now), &input);
            let _ = n.readings();
            let _ = n.active_events();
        }
    }
}
