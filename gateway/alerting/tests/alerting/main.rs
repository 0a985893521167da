//! The alerting core's one integration-test binary: scenarios sample by
//! sample, and properties over random streams.

#![allow(clippy::unwrap_used)]

use alerting::{AlertKey, AlertState, Cmp, Effect, Engine, Rule, Sample, SeriesKey};
use proptest::prelude::*;

fn pressure_rule() -> Rule {
    Rule {
        id: "firepump.low_pressure".into(),
        code: "low_pressure".into(),
        metric: "network_pressure_mpa".into(),
        cmp: Cmp::Lt,
        threshold: 0.07,
        clear: Some(0.10),
        for_ms: 30_000,
        keep_firing_for_ms: 0,
        absent_after_ms: Some(180_000),
    }
}

fn series() -> SeriesKey {
    SeriesKey {
        device: "lakeside/firepump/PUMP-B2".into(),
        metric: "network_pressure_mpa".into(),
        port: None,
    }
}

fn key() -> AlertKey {
    AlertKey {
        rule: "firepump.low_pressure".into(),
        series: series(),
    }
}

fn sample(value: f64, now: i64) -> Sample {
    Sample {
        series: series(),
        value,
        now,
    }
}

/// Feeds `values` one per second from `start` (seconds); returns the effects with their times.
fn feed(e: &mut Engine, start: i64, values: &[f64]) -> Vec<Effect> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let now = (start + i64::try_from(i).unwrap()) * 1000;
        out.extend(e.observe(&sample(*v, now)));
        out.extend(e.tick(now));
    }
    out
}

fn fired_at(effects: &[Effect]) -> Vec<i64> {
    effects
        .iter()
        .filter_map(|e| {
            if let Effect::Fired { at, .. } = e {
                Some(*at)
            } else {
                None
            }
        })
        .collect()
}

fn resolved_at(effects: &[Effect]) -> Vec<i64> {
    effects
        .iter()
        .filter_map(|e| {
            if let Effect::Resolved { at, .. } = e {
                Some(*at)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn fires_after_its_for_and_not_a_second_before() {
    let mut e = Engine::new(vec![pressure_rule()]).unwrap();
    let effects = feed(&mut e, 0, &[0.05; 40]);
    assert_eq!(fired_at(&effects), [30_000]);
}

#[test]
fn a_dip_shorter_than_for_never_fires() {
    let mut e = Engine::new(vec![pressure_rule()]).unwrap();
    let mut values = vec![0.05; 29];
    values.push(0.3);
    values.extend([0.05; 29]);
    assert!(fired_at(&feed(&mut e, 0, &values)).is_empty());
}

#[test]
fn hysteresis_keeps_it_firing_until_past_the_clear_threshold() {
    let mut e = Engine::new(vec![pressure_rule()]).unwrap();
    feed(&mut e, 0, &[0.05; 31]);
    // Back above 0.07 but below the 0.10 clear threshold: still firing.
    let effects = feed(&mut e, 31, &[0.08, 0.09, 0.095]);
    assert!(resolved_at(&effects).is_empty());
    let effects = feed(&mut e, 34, &[0.11]);
    assert_eq!(resolved_at(&effects), [34_000]);
    assert_eq!(e.state(&key()), Some(&AlertState::Inactive));
}

#[test]
fn keep_firing_for_holds_a_resolved_condition() {
    let rule = Rule {
        keep_firing_for_ms: 10_000,
        ..pressure_rule()
    };
    let mut e = Engine::new(vec![rule]).unwrap();
    feed(&mut e, 0, &[0.05; 31]);
    let effects = feed(&mut e, 31, &[0.5; 12]);
    assert_eq!(
        resolved_at(&effects),
        [40_000],
        "10 s after the condition last held (30 s)"
    );
    // A relapse within keep_firing_for is the same episode, not a new alert.
    let mut e = Engine::new(vec![Rule {
        keep_firing_for_ms: 10_000,
        ..pressure_rule()
    }])
    .unwrap();
    let first = feed(&mut e, 0, &[0.05; 31]);
    let again = feed(&mut e, 31, &[0.5, 0.5, 0.05, 0.05]);
    assert_eq!(fired_at(&first).len(), 1);
    assert!(fired_at(&again).is_empty() && resolved_at(&again).is_empty());
}

#[test]
fn silence_is_no_data_never_resolved() {
    let mut e = Engine::new(vec![pressure_rule()]).unwrap();
    feed(&mut e, 0, &[0.05; 31]);
    let mut effects = Vec::new();
    for s in 31..=600 {
        effects.extend(e.tick(s * 1000));
    }
    assert!(resolved_at(&effects).is_empty(), "a vanished series is not resolved");
    assert_eq!(
        effects,
        [Effect::NoData {
            key: key(),
            at: 210_000
        }]
    );
    assert!(matches!(e.state(&key()), Some(AlertState::Firing { .. })));
    // Fresh data judges it again.
    let effects = feed(&mut e, 601, &[0.3]);
    assert_eq!(
        effects[0],
        Effect::DataResumed {
            key: key(),
            at: 601_000
        }
    );
    assert_eq!(resolved_at(&effects), [601_000]);
}

#[test]
fn rules_are_validated() {
    let bad = Rule {
        clear: Some(0.05),
        ..pressure_rule()
    };
    assert!(Engine::new(vec![bad]).unwrap_err().to_string().contains("safe side"));
    let twice = Engine::new(vec![pressure_rule(), pressure_rule()]).unwrap_err();
    assert!(twice.to_string().contains("used twice"));
    let negative = Rule {
        for_ms: -1,
        ..pressure_rule()
    };
    assert!(Engine::new(vec![negative]).is_err());
}

#[test]
fn a_restart_continues_a_running_for() {
    let mut e = Engine::new(vec![pressure_rule()]).unwrap();
    feed(&mut e, 0, &[0.05; 20]);
    let saved = serde_json::to_string(&e.snapshot()).unwrap();
    let mut restarted = Engine::new(vec![pressure_rule()]).unwrap();
    restarted.restore(serde_json::from_str(&saved).unwrap());
    let effects = feed(&mut restarted, 20, &[0.05; 15]);
    assert_eq!(fired_at(&effects), [30_000], "the for kept counting from 0 s");
    // A reload that drops the rule drops its state; others keep theirs.
    let mut reloaded = Engine::new(vec![]).unwrap();
    reloaded.restore(serde_json::from_str(&saved).unwrap());
    assert_eq!(reloaded.state(&key()), None);
}

#[derive(Clone, Debug)]
enum Op {
    Sample(f64, i64),
    Tick(i64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let value = prop_oneof![
        8 => prop_oneof![Just(0.05), Just(0.08), Just(0.2), 0.0f64..0.3],
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
    ];
    prop::collection::vec(
        prop_oneof![
            3 => (value, 0i64..20_000).prop_map(|(v, dt)| Op::Sample(v, dt)),
            1 => (0i64..300_000).prop_map(Op::Tick),
        ],
        0..120,
    )
}

fn rules() -> Vec<Rule> {
    vec![
        pressure_rule(),
        Rule {
            id: "fast".into(),
            for_ms: 0,
            keep_firing_for_ms: 5000,
            clear: None,
            ..pressure_rule()
        },
    ]
}

fn run(e: &mut Engine, ops: &[Op], mut now: i64) -> (Vec<Effect>, i64) {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Sample(v, dt) => {
                now += dt;
                out.extend(e.observe(&sample(*v, now)));
            }
            Op::Tick(dt) => {
                now += dt;
                out.extend(e.tick(now));
            }
        }
    }
    (out, now)
}

proptest! {
    #[test]
    fn the_same_inputs_give_the_same_effects(ops in ops()) {
        let (a, _) = run(&mut Engine::new(rules()).unwrap(), &ops, 0);
        let (b, _) = run(&mut Engine::new(rules()).unwrap(), &ops, 0);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    }

    #[test]
    fn a_snapshot_and_restore_mid_stream_changes_nothing(ops in ops(), cut in any::<prop::sample::Index>()) {
        let at = cut.index(ops.len() + 1);
        let (whole, _) = run(&mut Engine::new(rules()).unwrap(), &ops, 0);
        let mut first = Engine::new(rules()).unwrap();
        let (mut split, now) = run(&mut first, &ops[..at], 0);
        let saved = serde_json::to_string(&first.snapshot()).unwrap();
        let mut second = Engine::new(rules()).unwrap();
        second.restore(serde_json::from_str(&saved).unwrap());
        split.extend(run(&mut second, &ops[at..], now).0);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn nothing_fires_before_its_condition_held_for_long_enough(ops in ops()) {
        let rule = pressure_rule();
        let mut e = Engine::new(vec![rule.clone()]).unwrap();
        let mut now = 0;
        // Start of the current run of samples on the alerting side.
        let mut run_start: Option<i64> = None;
        for op in &ops {
            let effects = match op {
                Op::Sample(v, dt) => {
                    now += dt;
                    let firing = matches!(e.state(&key()), Some(AlertState::Firing { .. }));
                    let active = v.is_finite() && rule.active(*v, firing);
                    run_start = if active { run_start.or(Some(now)) } else { None };
                    e.observe(&sample(*v, now))
                }
                Op::Tick(dt) => {
                    now += dt;
                    e.tick(now)
                }
            };
            for eff in effects {
                if let Effect::Fired { at, .. } = eff {
                    let start = run_start.expect("fired without the condition");
                    prop_assert!(at - start >= rule.for_ms, "fired at {at}, condition since {start}");
                }
            }
        }
    }
}

#[test]
fn the_series_notation_reads_like_the_domain() {
    use alerting::series::SeriesTest;
    let text = "
# A pump room: the pressure drops (fires after its 30 s), the gauge goes silent
# (no-data 180 s after its last sample, not resolved), and is back high (resolved).
interval 1s
series lakeside/firepump/PUMP-B2 network_pressure_mpa: 0.3 0.05x40 _x200 0.3
series lakeside/charger/BAY-07 temp_c{port=2}: 30 31 66x6 _ 40
expect 31s fired firepump.low_pressure lakeside/firepump/PUMP-B2 network_pressure_mpa
expect 220s no_data firepump.low_pressure lakeside/firepump/PUMP-B2 network_pressure_mpa
expect 241s resolved firepump.low_pressure lakeside/firepump/PUMP-B2 network_pressure_mpa
expect 2s fired charger.over_temperature lakeside/charger/BAY-07 temp_c{port=2}
expect 9s resolved charger.over_temperature lakeside/charger/BAY-07 temp_c{port=2}
";
    let t = SeriesTest::parse(text).unwrap();
    let over_temp = Rule {
        id: "charger.over_temperature".into(),
        code: "over_temperature".into(),
        metric: "temp_c".into(),
        cmp: Cmp::Ge,
        threshold: 65.0,
        clear: None,
        for_ms: 0,
        keep_firing_for_ms: 0,
        absent_after_ms: None,
    };
    let mut e = Engine::new(vec![pressure_rule(), over_temp]).unwrap();
    let mut got = t.run(&mut e);
    let mut want = t.expected.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let bad = SeriesTest::parse("interval 1s\nseries d m: 1 zz\n").unwrap_err();
    assert_eq!(bad.to_string(), "line 2: bad values (numbers, vxN, _)");
}
