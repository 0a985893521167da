//! Periodic duties: preventive orders, completions, a self-test that fulfils
//! one, a missed duty as a supervision warning, maintenance windows.

use dispatch::{Actor, Desk, Kind, Out, PolicyConfig, Status, StepKind};

use crate::support::{DAY, T0, kinds, restart, tells};

fn desk() -> Desk {
    let cfg: PolicyConfig = toml::from_str(
        r#"
[[assign]]
contractor = "acme"
manager = "pm-lake"
"#,
    )
    .expect("policy");
    Desk::new(cfg.build().expect("valid"))
}

fn acme() -> Actor {
    Actor {
        name: "acme".into(),
        contractor: Some("acme".into()),
    }
}

#[test]
fn a_new_elevator_gets_its_half_monthly_maintenance_and_a_fire_pump_its_weekly_self_test() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    d.device_seen(T0, "lakeside", "firepump", "FP-1", &mut out);
    d.device_seen(T0, "lakeside", "charger", "CH-1", &mut out);
    // Seen again (every restart): nothing new.
    d.device_seen(T0 + 1, "lakeside", "elevator", "EL-3", &mut out);
    let orders: Vec<_> = d
        .open()
        .map(|o| {
            (
                o.kind,
                o.device.as_str(),
                o.code.as_str(),
                o.deadlines.complete,
                o.deadlines.respond,
            )
        })
        .collect();
    assert_eq!(
        orders,
        [
            (Kind::Preventive, "EL-3", "maintenance", T0 + 15 * DAY, None),
            (Kind::Preventive, "FP-1", "self_test", T0 + 7 * DAY, None),
        ]
    );
    assert_eq!(tells(&out).len(), 2, "the contractor hears of both");
}

#[test]
fn maintenance_done_on_time_schedules_the_next_from_its_completion() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    out.clear();
    // Planned work: arriving needs no response first, and puts the lift
    // under maintenance until it is completed.
    d.step(T0 + 10 * DAY, 1, StepKind::Arrive, &acme(), None, &mut out)
        .expect("arrive");
    assert!(out.iter().any(|o| matches!(
        o,
        Out::Maintenance {
            active: true,
            order: 1,
            ..
        }
    )));
    d.step(
        T0 + 10 * DAY + 3_600_000,
        1,
        StepKind::Complete,
        &acme(),
        None,
        &mut out,
    )
    .expect("complete");
    assert!(out.iter().any(|o| matches!(
        o,
        Out::Maintenance {
            active: false,
            order: 1,
            ..
        }
    )));
    assert_eq!(
        kinds(&out),
        [
            "work_order_arrived",
            "work_order_completed",
            "duty_done",
            "work_order_dispatched"
        ]
    );
    let next = d.open().next().expect("the next one");
    assert_eq!(next.deadlines.complete, T0 + 10 * DAY + 3_600_000 + 15 * DAY);
    let state = &d.state().duties["lakeside/EL-3/maintenance"];
    assert_eq!(state.last_done, Some(T0 + 10 * DAY + 3_600_000));
    assert_eq!(state.order, Some(next.id));
    // A periodic duty is never a false alarm.
    assert!(
        d.step(T0 + 11 * DAY, next.id, StepKind::FalseAlarm, &acme(), None, &mut out)
            .is_err()
    );
}

#[test]
fn a_missed_duty_is_a_supervision_warning_and_stays_to_be_done() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    let mut d = restart(&d);
    out.clear();
    d.tick(T0 + 15 * DAY - 1, &mut out);
    assert!(out.is_empty());
    d.tick(T0 + 15 * DAY, &mut out);
    assert_eq!(kinds(&out), ["duty_missed"]);
    assert_eq!(tells(&out), [("pm-lake".to_owned(), "duty_missed")]);
    // Done late: a duty_done that says so.
    out.clear();
    d.step(T0 + 16 * DAY, 1, StepKind::Complete, &acme(), None, &mut out)
        .expect("late");
    assert!(out.iter().any(|o| matches!(
        o,
        Out::Order {
            change: dispatch::OrderChange::DutyDone { on_time: false },
            ..
        }
    )));
}

#[test]
fn a_passing_self_test_fulfils_the_weekly_duty_and_a_failing_one_does_not() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "firepump", "FP-1", &mut out);
    out.clear();
    d.self_test(T0 + DAY, "lakeside", "firepump", "FP-1", false, &mut out);
    assert!(out.is_empty());
    assert_eq!(d.open().next().map(|o| o.status), Some(Status::Dispatched));
    d.self_test(T0 + 2 * DAY, "lakeside", "firepump", "FP-1", true, &mut out);
    assert_eq!(
        kinds(&out),
        ["work_order_completed", "duty_done", "work_order_dispatched"]
    );
    let done = out
        .iter()
        .find_map(|o| match o {
            Out::Order { order, .. } if order.status == Status::Completed => Some(order.clone()),
            _ => None,
        })
        .expect("completed");
    assert_eq!(done.steps[0].by, "node");
    assert_eq!(d.open().next().map(|o| o.deadlines.complete), Some(T0 + 9 * DAY));
    // An elevator has no self-test duty: nothing happens.
    out.clear();
    d.self_test(T0, "lakeside", "elevator", "EL-9", true, &mut out);
    assert!(out.is_empty());
}

/// Applies what changed to a copy of the state, as the gateway's store does
/// with its rows.
fn apply(mirror: &mut dispatch::DeskState, d: &mut Desk) {
    let c = d.take_changes();
    let s = d.state();
    for k in c.duties {
        match s.duties.get(&k) {
            Some(v) => mirror.duties.insert(k, v.clone()),
            None => mirror.duties.remove(&k),
        };
    }
    for id in c.dispatched {
        match s.dispatched.get(&id) {
            Some(at) => mirror.dispatched.insert(id, *at),
            None => mirror.dispatched.remove(&id),
        };
    }
    if c.next_id {
        mirror.next_id = s.next_id;
    }
    assert!(d.take_changes().is_empty(), "taken once");
}

/// The changes a desk reports rebuild its whole state, step by step: duties
/// begun, done and rescheduled, alerts remembered and, a week on, forgotten.
#[test]
fn the_reported_changes_rebuild_the_state() {
    let mut d = desk();
    let mut mirror = d.state().clone();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    d.device_seen(T0, "lakeside", "firepump", "FP-1", &mut out);
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());
    assert_eq!(mirror.duties.len(), 2);

    d.intent(
        T0 + 1000,
        &crate::support::open(&crate::support::alert(41, "elevator", "EL-3", "trapped", T0)),
        Vec::new(),
        &mut out,
    );
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());
    assert!(mirror.dispatched.contains_key(&41));

    d.step(T0 + DAY, 1, StepKind::Arrive, &acme(), None, &mut out)
        .expect("arrive");
    d.step(T0 + DAY + 1000, 1, StepKind::Complete, &acme(), None, &mut out)
        .expect("complete");
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());

    // Eight days on, a new alert prunes the remembered one.
    d.intent(
        T0 + 8 * DAY,
        &crate::support::open(&crate::support::alert(
            42,
            "firepump",
            "FP-1",
            "pump_fault",
            T0 + 8 * DAY,
        )),
        Vec::new(),
        &mut out,
    );
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());
    assert!(!mirror.dispatched.contains_key(&41) && mirror.dispatched.contains_key(&42));
}
