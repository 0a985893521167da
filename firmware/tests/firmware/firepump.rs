//! Fire pump detections and the self-test record.

use firmware::alarm::NodeEvent;
use firmware::firepump::{FirepumpConfig, FirepumpInputs, FirepumpNode};
use firmware::hal::Millis;
use protocol::EventCode;

fn normal() -> FirepumpInputs {
    FirepumpInputs {
        auto_mode: true,
        main_power_ok: true,
        backup_power_ok: true,
        outlet_pressure_mpa: Some(0.6),
        network_pressure_mpa: Some(0.3),
        tank_level_m: Some(3.0),
        ..Default::default()
    }
}

fn run(node: &mut FirepumpNode, from: u64, to: u64, input: &FirepumpInputs) -> Vec<(u64, NodeEvent)> {
    let mut out = Vec::new();
    for s in from..=to {
        out.extend(node.step(Millis(s * 1000), input).into_iter().map(|e| (s, e)));
    }
    out
}

fn raised(events: &[(u64, NodeEvent)], code: EventCode) -> Option<u64> {
    events.iter().find(|(_, e)| e.code == code && e.active).map(|(t, _)| *t)
}

#[test]
fn a_normal_day_raises_nothing() {
    let mut n = FirepumpNode::new(FirepumpConfig::default());
    assert!(run(&mut n, 0, 3600, &normal()).is_empty());
}

#[test]
fn fail_to_start_after_120_s_of_start_signal() {
    let mut n = FirepumpNode::new(FirepumpConfig::default());
    let ev = run(
        &mut n,
        0,
        200,
        &FirepumpInputs {
            start_signal: true,
            ..normal()
        },
    );
    assert_eq!(raised(&ev, EventCode::PumpFailToStart), Some(120));
    // The pump starts: cleared.
    let ev = run(
        &mut n,
        201,
        201,
        &FirepumpInputs {
            start_signal: true,
            pump_running: true,
            ..normal()
        },
    );
    assert!(
        ev.iter()
            .any(|(_, e)| e.code == EventCode::PumpFailToStart && !e.active)
    );
}

#[test]
fn low_pressure_low_tank_not_in_auto_and_power() {
    let mut n = FirepumpNode::new(FirepumpConfig::default());
    let bad = FirepumpInputs {
        network_pressure_mpa: Some(0.05),
        tank_level_m: Some(0.4),
        auto_mode: false,
        main_power_ok: false,
        backup_power_ok: false,
        pump_fault: true,
        ..normal()
    };
    let ev = run(&mut n, 0, 100, &bad);
    assert_eq!(raised(&ev, EventCode::PumpFault), Some(0));
    assert_eq!(raised(&ev, EventCode::MainPowerFault), Some(5));
    assert_eq!(raised(&ev, EventCode::BackupPowerFault), Some(5));
    assert_eq!(raised(&ev, EventCode::LowPressure), Some(30));
    assert_eq!(raised(&ev, EventCode::LowTankLevel), Some(30));
    assert_eq!(raised(&ev, EventCode::NotInAuto), Some(60));
    let low = ev.iter().find(|(_, e)| e.code == EventCode::LowPressure).unwrap().1;
    assert!((low.value.unwrap() - 0.05).abs() < 1e-6);
}

#[test]
fn a_broken_pressure_loop_is_not_low_pressure() {
    let mut n = FirepumpNode::new(FirepumpConfig::default());
    let ev = run(
        &mut n,
        0,
        100,
        &FirepumpInputs {
            network_pressure_mpa: None,
            ..normal()
        },
    );
    assert_eq!(raised(&ev, EventCode::LowPressure), None);
}

#[test]
fn a_commanded_self_test_that_builds_pressure_is_recorded_ok() {
    let mut n = FirepumpNode::new(FirepumpConfig::default());
    run(&mut n, 0, 0, &normal());
    n.start_self_test(Millis(1000)).unwrap();
    assert!(n.test_output());
    assert!(n.start_self_test(Millis(1000)).is_err(), "one run at a time");
    let pumping = FirepumpInputs {
        pump_running: true,
        start_signal: true,
        outlet_pressure_mpa: Some(0.8),
        ..normal()
    };
    let mut ev = run(&mut n, 1, 10, &normal());
    ev.extend(run(&mut n, 11, 121, &pumping));
    let rec = ev.iter().find(|(_, e)| e.code == EventCode::SelfTest).unwrap();
    assert_eq!(rec.0, 121);
    assert_eq!(rec.1.ok, Some(true));
    assert_eq!(rec.1.duration_s, Some(120));
    assert!(!n.test_output());
    assert_eq!(n.self_tests(), (1, Some(true)));
}

#[test]
fn a_cabinet_self_test_where_the_pump_never_runs_is_recorded_failed() {
    let mut n = FirepumpNode::new(FirepumpConfig::default());
    run(&mut n, 0, 0, &normal());
    let ev = run(
        &mut n,
        1,
        60,
        &FirepumpInputs {
            cabinet_self_test: true,
            ..normal()
        },
    );
    assert!(ev.iter().all(|(_, e)| e.code != EventCode::SelfTest));
    let ev = run(&mut n, 61, 61, &normal());
    let rec = ev.iter().find(|(_, e)| e.code == EventCode::SelfTest).unwrap().1;
    assert_eq!(rec.ok, Some(false));
    assert!(!n.test_output(), "the cabinet ran it, not the node");
}

#[test]
fn no_self_test_out_of_auto() {
    let mut n = FirepumpNode::new(FirepumpConfig::default());
    run(
        &mut n,
        0,
        0,
        &FirepumpInputs {
            auto_mode: false,
            ..normal()
        },
    );
    assert!(n.start_self_test(Millis(1000)).is_err());
}

proptest::proptest! {
    /// No sequence of inputs, broken loops and self-test commands included, panics.
    #[test]
    fn no_input_sequence_panics(
        samples in proptest::collection::vec(
            (proptest::prelude::any::<[bool; 9]>(), proptest::prelude::any::<[Option<f32>; 3]>(), 0u64..1_000_000),
            1..200,
        )
    ) {
        let mut n = FirepumpNode::new(FirepumpConfig::default());
        let mut now = 0;
        for ([pump_running, pump_fault, auto_mode, start_signal, jockey_running, main_power_ok, backup_power_ok, cabinet_self_test, test], [outlet, network, tank], dt) in samples {
            now += dt;
            if test {
                let _ = n.start_self_test(Millis(now));
            }
            let input = FirepumpInputs {
                pump_running, pump_fault, auto_mode, start_signal, jockey_running, main_power_ok, backup_power_ok,
                cabinet_self_test, outlet_pressure_mpa: outlet, network_pressure_mpa: network, tank_level_m: tank,
            };
            let _ = n.step(Millis(now), &input);
            let _ = n.readings();
        }
    }
}
