//! Restarts and reloads: state continues where it was, keyed by stable ids.

use alerting::{AlertingConfig, DeviceRef, Effect, Engine, Input, Snapshot, State};
use protocol::{DeviceClass, Message};

use crate::engine;

fn pump(id: &str) -> DeviceRef<'_> {
    DeviceRef {
        site: "s",
        class: DeviceClass::Firepump,
        device: id,
    }
}

fn starting() -> Message {
    let text = r#"{"v":1,"seq":1,"ts":0,"m":{"start_signal":true,"pump_running":false,"network_pressure_mpa":0.05}}"#;
    protocol::decode(protocol::Kind::Data, text.as_bytes()).unwrap()
}

/// Feeds `starting()` every 5 s over [from, to) and ticks every second.
fn feed(e: &mut Engine, from: i64, to: i64, out: &mut Vec<Effect>) {
    for s in from..to {
        let now = s * 1000;
        if s % 5 == 0 {
            e.observe(now, pump("P"), Input::Message(&starting()), out);
        }
        e.tick(now, out);
    }
}

fn fired(out: &[Effect]) -> Vec<(String, i64)> {
    out.iter()
        .filter_map(|x| match x {
            Effect::Alert(c) if c.change == alerting::Change::Fired => Some((c.alert.code.clone(), c.alert.fired_at?)),
            _ => None,
        })
        .collect()
}

fn through_json(s: &Snapshot) -> Snapshot {
    serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap()
}

#[test]
fn a_restart_continues_a_running_for() {
    let mut before = engine();
    let mut out = Vec::new();
    feed(&mut before, 0, 50, &mut out);
    let saved = through_json(&before.snapshot());
    let mut after = engine();
    after.restore(saved);
    let mut out = Vec::new();
    feed(&mut after, 50, 130, &mut out);
    // The 120 s `for` of pump_fail_to_start started at 0 s, the 30 s one of
    // low_pressure too: both fire on time, not 50 s late.
    assert_eq!(fired(&out), [("pump_fail_to_start".to_owned(), 120_000)]);
    assert!(
        after
            .alerts()
            .iter()
            .any(|a| a.code == "low_pressure" && a.fired_at == Some(30_000))
    );
}

#[test]
fn a_reload_keeps_the_state_of_unchanged_rules_only() {
    let mut before = engine();
    let mut out = Vec::new();
    feed(&mut before, 0, 20, &mut out);
    let saved = through_json(&before.snapshot());
    // The low-pressure figure changes, the fail-to-start rule does not.
    let cfg: AlertingConfig =
        toml::from_str("[[alerting.overrides]]\nclass = \"firepump\"\nparams = { low_pressure_mpa = 0.06 }")
            .map(|c: toml::Table| c["alerting"].clone().try_into().unwrap())
            .unwrap();
    let b = cfg.build().unwrap();
    let mut after = Engine::new(b.rules, b.settings);
    after.restore(saved);
    let mut out = Vec::new();
    feed(&mut after, 20, 130, &mut out);
    assert_eq!(
        fired(&out),
        [
            ("low_pressure".to_owned(), 50_000),
            ("pump_fail_to_start".to_owned(), 120_000)
        ],
        "low_pressure restarted its 30 s at the first sample after the reload; fail-to-start went on"
    );
}

#[test]
fn per_device_snapshots_reassemble_into_the_whole() {
    let mut e = engine();
    let mut out = Vec::new();
    feed(&mut e, 0, 40, &mut out);
    let mut ok = Vec::new();
    let text = r#"{"v":1,"seq":1,"ts":0,"m":{"pump_fault":false}}"#;
    let m = protocol::decode(protocol::Kind::Data, text.as_bytes()).unwrap();
    e.observe(40_000, pump("Q"), Input::Message(&m), &mut ok);
    let whole = e.snapshot();
    let parts = Snapshot {
        globals: e.globals(),
        devices: ["P", "Q"]
            .iter()
            .map(|d| e.device_snapshot("s", Some(DeviceClass::Firepump), d).unwrap())
            .collect(),
    };
    assert_eq!(whole, parts);
    assert_eq!(e.position("s", Some(DeviceClass::Firepump), "Q"), Some(1));
}

#[test]
fn an_alert_keeps_its_id_and_can_be_acknowledged_after_a_restart() {
    let mut before = engine();
    let mut out = Vec::new();
    feed(&mut before, 0, 40, &mut out);
    let id = before
        .alerts()
        .into_iter()
        .find(|a| a.code == "low_pressure")
        .unwrap()
        .id;
    let mut after = engine();
    after.restore(through_json(&before.snapshot()));
    let mut out = Vec::new();
    let a = after.ack(41_000, id, "zhang.san", &mut out).unwrap();
    assert_eq!((a.id, a.state), (id, State::Acknowledged));
    feed(&mut after, 41, 60, &mut out);
    assert!(
        fired(&out).iter().all(|(c, _)| c != "low_pressure"),
        "no second episode"
    );
}

#[test]
fn after_resume_a_restarted_gateway_does_not_take_its_own_absence_for_silence() {
    let mut before = engine();
    let mut out = Vec::new();
    feed(&mut before, 0, 10, &mut out);
    let mut after = engine();
    after.restore(through_json(&before.snapshot()));
    // Down for ten minutes: without resume every device would be offline at once.
    after.resume(600_000);
    let mut out = Vec::new();
    after.tick(600_000, &mut out);
    assert!(!after.alerts().iter().any(|a| a.code == "offline"));
    // It is judged again after a full window of its own silence.
    for s in 601..=800 {
        after.tick(s * 1000, &mut out);
    }
    assert!(
        after
            .alerts()
            .iter()
            .any(|a| a.code == "offline" && a.fired_at == Some(780_000))
    );
}
