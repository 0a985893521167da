//! Charging bay interlocks: every cut-off, its latch, and its clear.

use firmware::alarm::NodeEvent;
use firmware::charger::{ChargerConfig, ChargerInputs, ChargerNode, CutReason, MAX_PORTS, PortInputs};
use firmware::hal::Millis;
use firmware::registers::CommandError;
use proptest::prelude::*;
use protocol::{EventCode, PortMetric, PortState, Value};

fn bay() -> ChargerNode {
    ChargerNode::new(ChargerConfig::default(), 12)
}

fn inputs(port_current: f32, port_temp: f32) -> ChargerInputs {
    ChargerInputs {
        smoke: false,
        leakage_ma: Some(2.0),
        mains_voltage_v: Some(220.0),
        ambient_temp_c: Some(25.0),
        ports: [PortInputs {
            current_a: Some(port_current),
            temp_c: Some(port_temp),
        }; MAX_PORTS],
    }
}

fn with_port(mut i: ChargerInputs, p: usize, current: f32, temp: f32) -> ChargerInputs {
    i.ports[p - 1] = PortInputs {
        current_a: Some(current),
        temp_c: Some(temp),
    };
    i
}

fn run(node: &mut ChargerNode, from: u64, to: u64, input: &ChargerInputs) -> Vec<(u64, NodeEvent)> {
    let mut out = Vec::new();
    for s in from..=to {
        out.extend(node.step(Millis(s * 1000), input).into_iter().map(|e| (s, e)));
    }
    out
}

#[test]
fn over_temperature_for_5_s_cuts_only_that_port() {
    let mut n = bay();
    let hot = with_port(inputs(1.0, 30.0), 4, 1.0, 66.0);
    let ev = run(&mut n, 0, 10, &hot);
    let (t, e) = ev.iter().find(|(_, e)| e.code == EventCode::OverTemperature).unwrap();
    assert_eq!((*t, e.port, e.cut_off, e.active), (5, Some(4), true, true));
    assert!(!n.relay_on(4));
    assert!((1..=12).filter(|p| *p != 4).all(|p| n.relay_on(p)));
    assert_eq!(n.cut_reason(4), Some(CutReason::OverTemperature));
}

#[test]
fn a_very_hot_port_is_cut_in_the_same_sample() {
    let mut n = bay();
    run(&mut n, 0, 0, &inputs(1.0, 30.0));
    let ev = run(&mut n, 1, 1, &with_port(inputs(1.0, 30.0), 2, 1.0, 81.0));
    assert!(
        ev.iter()
            .any(|(_, e)| e.code == EventCode::OverTemperature && e.port == Some(2))
    );
    assert!(!n.relay_on(2));
}

#[test]
fn over_current_for_5_s_cuts_the_port() {
    let mut n = bay();
    let ev = run(&mut n, 0, 6, &with_port(inputs(1.0, 30.0), 7, 6.0, 30.0));
    let (t, e) = ev.iter().find(|(_, e)| e.code == EventCode::OverCurrent).unwrap();
    assert_eq!((*t, e.port), (5, Some(7)));
    assert!(!n.relay_on(7));
}

#[test]
fn smoke_cuts_every_port_at_once_and_stays_latched_after_the_smoke_clears() {
    let mut n = bay();
    run(&mut n, 0, 0, &inputs(1.0, 30.0));
    let ev = run(
        &mut n,
        1,
        1,
        &ChargerInputs {
            smoke: true,
            ..inputs(1.0, 30.0)
        },
    );
    let e = ev.iter().find(|(_, e)| e.code == EventCode::Smoke).unwrap().1;
    assert!(e.active && e.cut_off);
    assert!((1..=12).all(|p| !n.relay_on(p)));
    assert_eq!(n.clear(None), Err(CommandError::SmokePresent), "smoke still there");
    let ev = run(&mut n, 2, 2, &inputs(0.0, 30.0));
    assert!(ev.iter().any(|(_, e)| e.code == EventCode::Smoke && !e.active));
    assert!((1..=12).all(|p| !n.relay_on(p)), "latched until cleared");
    n.clear(None).unwrap();
    assert!((1..=12).all(|p| n.relay_on(p)));
}

#[test]
fn leakage_cuts_every_port() {
    let mut n = bay();
    let ev = run(
        &mut n,
        0,
        0,
        &ChargerInputs {
            leakage_ma: Some(30.0),
            ..inputs(1.0, 30.0)
        },
    );
    let e = ev.iter().find(|(_, e)| e.code == EventCode::Leakage).unwrap().1;
    assert!(e.cut_off && (e.value.unwrap() - 30.0).abs() < 1e-6);
    assert!((1..=12).all(|p| !n.relay_on(p)));
}

#[test]
fn a_session_over_8_hours_is_cut() {
    let mut n = bay();
    let charging = with_port(inputs(0.0, 30.0), 3, 1.0, 35.0);
    let mut ev = Vec::new();
    for m in 0..=(8 * 60) {
        ev.extend(n.step(Millis(m * 60_000), &charging).into_iter().map(|e| (m, e)));
    }
    let (t, e) = ev.iter().find(|(_, e)| e.code == EventCode::ChargeTimeout).unwrap();
    assert_eq!((*t, e.port), (480, Some(3)));
    assert!(!n.relay_on(3));
}

#[test]
fn a_full_battery_is_cut_after_120_min_under_30_w() {
    let mut n = bay();
    let trickle = with_port(inputs(0.0, 30.0), 9, 0.1, 30.0); // 22 W
    let mut ev = Vec::new();
    for m in 0..=130 {
        ev.extend(n.step(Millis(m * 60_000), &trickle).into_iter().map(|e| (m, e)));
    }
    let (t, e) = ev.iter().find(|(_, e)| e.code == EventCode::FullCutoff).unwrap();
    assert_eq!((*t, e.port), (120, Some(9)));
    let state = n.port_readings(Millis(130 * 60_000), 9);
    assert_eq!(state[0], (PortMetric::State, Value::from(PortState::CutOff)));
}

#[test]
fn a_trickle_dipping_below_the_idle_current_counts_as_full() {
    // A float charger pulsing: 0.1 A (22 W) one minute, 0.02 A (4 W, under
    // `idle_current_a`) the next. Before, every dip restarted the 120 min,
    // so the port was never cut; the dips are part of the session (shorter
    // than `unplug_s`), and the port reports state 2 (full) through them.
    let mut n = bay();
    let mut ev = Vec::new();
    for m in 0..=130 {
        let current = if m % 2 == 0 { 0.1 } else { 0.02 };
        let sample = with_port(inputs(0.0, 30.0), 4, current, 30.0);
        for s in 0..60 {
            let t = m * 60 + s;
            ev.extend(n.step(Millis(t * 1000), &sample).into_iter().map(|e| (m, e)));
        }
        if m == 61 {
            let r = n.port_readings(Millis((m * 60 + 59) * 1000), 4);
            assert_eq!(
                r[0],
                (PortMetric::State, Value::from(PortState::Full)),
                "a dip is float"
            );
            let session = r.iter().find(|(k, _)| *k == PortMetric::SessionS).map(|(_, v)| *v);
            assert_eq!(
                session,
                Some(Value::Number(3719.0)),
                "the session goes on through the dips"
            );
        }
    }
    let (t, e) = ev.iter().find(|(_, e)| e.code == EventCode::FullCutoff).unwrap();
    assert_eq!((*t, e.port), (120, Some(4)));
    assert!(!n.relay_on(4));
}

#[test]
fn a_battery_in_float_past_8_hours_is_cut_for_its_session() {
    // Full cut-off off (a site that only wants the 8 h limit): a port in
    // float (state 2) the whole time is still cut at 8 h of session, the
    // same limit the gateway's `charge_timeout` applies to states 1 and 2.
    let config = ChargerConfig {
        full_s: 86_400.0,
        ..ChargerConfig::default()
    };
    let mut n = ChargerNode::new(config, 4);
    let float = with_port(inputs(0.0, 30.0), 2, 0.1, 30.0); // 22 W: float
    let mut ev = Vec::new();
    for m in 0..=(8 * 60) {
        ev.extend(n.step(Millis(m * 60_000), &float).into_iter().map(|e| (m, e)));
        if m == 60 {
            let r = n.port_readings(Millis(m * 60_000), 2);
            assert_eq!(r[0], (PortMetric::State, Value::from(PortState::Full)));
        }
    }
    let (t, e) = ev.iter().find(|(_, e)| e.code == EventCode::ChargeTimeout).unwrap();
    assert_eq!((*t, e.port), (480, Some(2)));
}

#[test]
fn clear_refuses_while_the_port_is_still_hot() {
    let mut n = bay();
    let hot = with_port(inputs(1.0, 30.0), 1, 1.0, 85.0);
    run(&mut n, 0, 0, &hot);
    assert_eq!(n.clear(Some(1)), Err(CommandError::StillHot));
    run(&mut n, 1, 1, &with_port(inputs(1.0, 30.0), 1, 0.0, 60.0));
    assert_eq!(
        n.clear(Some(1)),
        Err(CommandError::StillHot),
        "60 °C is above the 55 °C clear level"
    );
    run(&mut n, 2, 2, &inputs(0.0, 40.0));
    let events = n.clear(Some(1)).unwrap();
    assert_eq!(events.len(), 1);
    assert!(!events[0].active && events[0].port == Some(1));
    assert!(n.relay_on(1));
    assert_eq!(n.clear(Some(13)), Err(CommandError::NoSuchPort));
}

#[test]
fn commanded_cut_off_latches_and_latches_survive_a_reset() {
    let mut n = bay();
    n.cut_off(Some(5)).unwrap();
    run(&mut n, 0, 0, &with_port(inputs(0.0, 30.0), 6, 1.0, 90.0));
    let saved = n.latches();
    let mut rebooted = bay();
    rebooted.restore_latches(saved);
    assert_eq!(rebooted.cut_reason(5), Some(CutReason::Command));
    assert_eq!(rebooted.cut_reason(6), Some(CutReason::OverTemperature));
    assert!(rebooted.relay_on(4));
}

#[test]
fn telemetry_reports_sessions_and_energy() {
    let mut n = bay();
    let charging = with_port(inputs(0.0, 30.0), 2, 1.0, 35.0); // 220 W
    for s in 0..=3600 {
        n.step(Millis(s * 1000), &charging);
    }
    let r = n.port_readings(Millis(3_600_000), 2);
    let get = |m| r.iter().find(|(k, _)| *k == m).map(|(_, v)| *v);
    assert_eq!(get(PortMetric::State), Some(Value::from(PortState::Charging)));
    assert_eq!(get(PortMetric::SessionS), Some(Value::Number(3600.0)));
    let wh = get(PortMetric::EnergyWh).unwrap().as_f64().unwrap();
    assert!((wh - 220.0).abs() < 1.0, "{wh}");
    assert_eq!(n.port_readings(Millis(0), 1)[0].1, Value::from(PortState::Idle));
}

#[derive(Clone, Debug)]
enum Action {
    Sample {
        smoke: bool,
        leakage: f32,
        port: usize,
        current: f32,
        temp: f32,
    },
    CutOff(Option<u8>),
    Advance(u64),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (any::<bool>(), 0.0f32..60.0, 1usize..=12, 0.0f32..10.0, -20.0f32..120.0)
            .prop_map(|(smoke, leakage, port, current, temp)| Action::Sample { smoke, leakage, port, current, temp }),
        1 => prop::option::of(1u8..=14).prop_map(Action::CutOff),
        1 => (0u64..10_000_000).prop_map(Action::Advance),
    ]
}

proptest! {
    /// A cut-off port never switches back on by itself: only `clear` re-enables it.
    #[test]
    fn a_cut_port_stays_off_without_a_clear(actions in prop::collection::vec(action(), 1..200)) {
        let mut n = bay();
        let mut now = 0u64;
        let mut was_cut = [false; 12];
        let mut input = inputs(0.5, 30.0);
        for a in actions {
            match a {
                Action::Sample { smoke, leakage, port, current, temp } => {
                    input.smoke = smoke;
                    input.leakage_ma = Some(leakage);
                    input.ports[port - 1] = PortInputs { current_a: Some(current), temp_c: Some(temp) };
                    now += 1000;
                    let _ = n.step(Millis(now), &input);
                }
                Action::CutOff(p) => { let _ = n.cut_off(p); }
                Action::Advance(ms) => now += ms,
            }
            for p in 1..=12u8 {
                let i = usize::from(p - 1);
                if was_cut[i] {
                    prop_assert!(!n.relay_on(p), "port {p} came back on without a clear");
                }
                was_cut[i] |= !n.relay_on(p);
            }
        }
    }

    /// No sequence of inputs, including failed sensors and absurd values, panics.
    #[test]
    fn no_input_sequence_panics(
        samples in prop::collection::vec((any::<bool>(), any::<Option<f32>>(), any::<Option<f32>>(), any::<[Option<f32>; 2]>(), any::<u32>()), 1..100)
    ) {
        let mut n = bay();
        let mut now = 0u64;
        for (smoke, leak, volts, [c, t], dt) in samples {
            now += u64::from(dt);
            let mut i = inputs(0.0, 20.0);
            i.smoke = smoke;
            i.leakage_ma = leak;
            i.mains_voltage_v = volts;
            i.ports[0] = PortInputs { current_a: c, temp_c: t };
            let _ = n.step(Millis(now), &i);
            let _ = n.port_readings(Millis(now), 1);
            let _ = n.clear(None);
        }
    }
}
