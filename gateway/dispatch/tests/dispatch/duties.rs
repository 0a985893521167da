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

/// What is open: (device, duty, created, due).
fn open_duties(d: &Desk) -> Vec<(String, String, i64, i64)> {
    d.open()
        .filter(|o| o.kind == Kind::Preventive)
        .map(|o| (o.device.clone(), o.code.clone(), o.created_at, o.deadlines.complete))
        .collect()
}

#[test]
fn a_compound_connected_on_day_one_gets_no_duty_order_until_its_notice() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    d.device_seen(T0, "lakeside", "firepump", "FP-1", &mut out);
    d.device_seen(T0, "lakeside", "charger", "CH-1", &mut out);
    // Nobody knows when they were last maintained: a full period from now,
    // and nobody is sent anything on day one.
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(d.open().count(), 0);
    assert_eq!(d.state().duties["lakeside/EL-3/maintenance"].due, T0 + 15 * DAY);
    assert_eq!(d.state().duties["lakeside/FP-1/self_test"].due, T0 + 7 * DAY);
    // Seen again (every restart, every reconnection): nothing new.
    d.device_seen(T0 + DAY, "lakeside", "elevator", "EL-3", &mut out);
    assert_eq!(d.state().duties["lakeside/EL-3/maintenance"].due, T0 + 15 * DAY);
    // The self-test's order comes a day before it falls due, the
    // maintenance order three days before.
    let mut d = restart(&d);
    d.tick(T0 + 6 * DAY - 1, &mut out);
    assert!(out.is_empty());
    d.tick(T0 + 6 * DAY, &mut out);
    assert_eq!(
        open_duties(&d),
        [("FP-1".into(), "self_test".into(), T0 + 6 * DAY, T0 + 7 * DAY)]
    );
    d.tick(T0 + 12 * DAY, &mut out);
    assert_eq!(open_duties(&d).len(), 2);
    assert_eq!(
        open_duties(&d)[1],
        ("EL-3".into(), "maintenance".into(), T0 + 12 * DAY, T0 + 15 * DAY)
    );
    let dispatched = tells(&out)
        .into_iter()
        .filter(|(_, k)| *k == "order_dispatched")
        .count();
    assert_eq!(dispatched, 2, "the contractor hears of each when it comes");
    d.tick(T0 + 13 * DAY, &mut out);
    assert_eq!(d.open().count(), 2, "each once");
}

#[test]
fn a_recorded_last_visit_sets_the_first_due_date() {
    let at = |ms: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).expect("after 1970"));
        humantime::format_rfc3339(t).to_string()
    };
    let cfg: PolicyConfig = toml::from_str(&format!(
        r#"
[[assign]]
contractor = "acme"
manager = "pm-lake"
[[last_done]]
site = "lakeside"
device = "EL-1"
duty = "maintenance"
at = "{}"
[[last_done]]
site = "lakeside"
device = "EL-2"
duty = "maintenance"
at = "{}"
"#,
        at(T0 - 20 * DAY),
        at(T0 - 10 * DAY)
    ))
    .expect("policy");
    let mut d = Desk::new(cfg.build().expect("valid"));
    let mut out = Vec::new();
    for lift in ["EL-1", "EL-2", "EL-3"] {
        d.device_seen(T0, "lakeside", "elevator", lift, &mut out);
    }
    // Maintained 20 days ago: five days overdue, sent at once and missed at
    // the first tick (the manager is told).
    assert_eq!(
        open_duties(&d),
        [("EL-1".into(), "maintenance".into(), T0, T0 - 5 * DAY)]
    );
    d.tick(T0, &mut out);
    assert_eq!(kinds(&out), ["work_order_dispatched", "duty_missed"]);
    assert_eq!(
        tells(&out),
        [
            ("acme".to_owned(), "order_dispatched"),
            ("pm-lake".to_owned(), "duty_missed")
        ]
    );
    // Maintained 10 days ago: due in 5 days, sent with its 3 days' notice.
    let el2 = &d.state().duties["lakeside/EL-2/maintenance"];
    assert_eq!(
        (el2.due, el2.last_done, el2.order),
        (T0 + 5 * DAY, Some(T0 - 10 * DAY), None)
    );
    d.tick(T0 + 2 * DAY - 1, &mut out);
    assert_eq!(open_duties(&d).len(), 1);
    d.tick(T0 + 2 * DAY, &mut out);
    assert_eq!(
        open_duties(&d)[1],
        ("EL-2".into(), "maintenance".into(), T0 + 2 * DAY, T0 + 5 * DAY)
    );
    // Never recorded: a full period after it was first seen.
    assert_eq!(d.state().duties["lakeside/EL-3/maintenance"].due, T0 + 15 * DAY);
}

#[test]
fn a_visit_recorded_after_the_device_was_seen_moves_its_next_due_date() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    // The contractor's log, imported a day later (and the gateway restarted
    // on the new configuration): EL-3 was maintained 12 days before T0.
    let cfg: PolicyConfig = toml::from_str(
        r#"
[[assign]]
contractor = "acme"
[[last_done]]
site = "lakeside"
device = "EL-3"
duty = "maintenance"
at = "2026-11-19T00:00:00Z"
"#,
    )
    .expect("policy");
    let mut d = restart(&d);
    d.set_policy(cfg.build().expect("valid"));
    d.device_seen(T0 + DAY, "lakeside", "elevator", "EL-3", &mut out);
    assert_eq!(d.state().duties["lakeside/EL-3/maintenance"].due, T0 + 3 * DAY);
    assert_eq!(
        open_duties(&d),
        [("EL-3".into(), "maintenance".into(), T0 + DAY, T0 + 3 * DAY)],
        "within its notice: sent at once"
    );
    // Once the desk knows of a later visit (its own order done), the old
    // record changes nothing.
    d.step(T0 + 2 * DAY, 1, StepKind::Complete, &acme(), None, &mut out)
        .expect("done");
    d.device_seen(T0 + 3 * DAY, "lakeside", "elevator", "EL-3", &mut out);
    assert_eq!(d.state().duties["lakeside/EL-3/maintenance"].due, T0 + 17 * DAY);
}

#[test]
fn maintenance_done_on_time_schedules_the_next_from_its_completion() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    d.tick(T0 + 12 * DAY, &mut out);
    out.clear();
    // Planned work: arriving needs no response first, and puts the lift
    // under maintenance until it is completed.
    d.step(T0 + 13 * DAY, 1, StepKind::Arrive, &acme(), None, &mut out)
        .expect("arrive");
    assert!(out.iter().any(|o| matches!(
        o,
        Out::Maintenance {
            active: true,
            order: 1,
            ..
        }
    )));
    let done_at = T0 + 13 * DAY + 3_600_000;
    let closed = d
        .step(done_at, 1, StepKind::Complete, &acme(), None, &mut out)
        .expect("complete");
    assert!(out.iter().any(|o| matches!(
        o,
        Out::Maintenance {
            active: false,
            order: 1,
            ..
        }
    )));
    assert_eq!(kinds(&out), ["work_order_arrived", "work_order_completed", "duty_done"]);
    // The next falls due 15 days after the completion; its order comes
    // with its notice, not at once.
    let state = &d.state().duties["lakeside/EL-3/maintenance"];
    assert_eq!(
        (state.due, state.last_done, state.order),
        (done_at + 15 * DAY, Some(done_at), None)
    );
    assert_eq!(d.open().count(), 0);
    d.tick(done_at + 12 * DAY, &mut out);
    let next = d.open().next().expect("the next one");
    assert_eq!(next.deadlines.complete, done_at + 15 * DAY);
    assert_eq!(d.state().duties["lakeside/EL-3/maintenance"].order, Some(next.id));
    // A periodic duty is never a false alarm.
    let id = next.id;
    assert!(
        d.step(done_at + 13 * DAY, id, StepKind::FalseAlarm, &acme(), None, &mut out)
            .is_err()
    );
    assert_eq!(closed.status, Status::Completed);
}

#[test]
fn a_duty_noticed_for_the_whole_period_is_open_from_the_start_as_a_standing_plan() {
    let cfg: PolicyConfig = toml::from_str(
        r#"
[[assign]]
contractor = "acme"
[[duties]]
class = "elevator"
duty = "maintenance"
every = "15d"
notice = "20d"
"#,
    )
    .expect("policy");
    let mut d = Desk::new(cfg.build().expect("valid"));
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    // The notice is at most the period: the order is open from the start.
    assert_eq!(
        open_duties(&d),
        [("EL-3".into(), "maintenance".into(), T0, T0 + 15 * DAY)]
    );
    d.step(T0 + DAY, 1, StepKind::Complete, &acme(), None, &mut out)
        .expect("done");
    assert_eq!(
        open_duties(&d),
        [("EL-3".into(), "maintenance".into(), T0 + DAY, T0 + 16 * DAY)]
    );
}

#[test]
fn a_missed_duty_is_a_supervision_warning_and_stays_to_be_done() {
    let mut d = desk();
    let mut out = Vec::new();
    d.device_seen(T0, "lakeside", "elevator", "EL-3", &mut out);
    d.tick(T0 + 12 * DAY, &mut out);
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
    d.tick(T0 + 6 * DAY, &mut out);
    out.clear();
    d.self_test(T0 + 6 * DAY, "lakeside", "firepump", "FP-1", false, &mut out);
    assert!(out.is_empty());
    assert_eq!(d.open().next().map(|o| o.status), Some(Status::Dispatched));
    let ran = T0 + 6 * DAY + 3_600_000;
    d.self_test(ran, "lakeside", "firepump", "FP-1", true, &mut out);
    assert_eq!(kinds(&out), ["work_order_completed", "duty_done"]);
    let done = out
        .iter()
        .find_map(|o| match o {
            Out::Order { order, .. } if order.status == Status::Completed => Some(order.clone()),
            _ => None,
        })
        .expect("completed");
    assert_eq!(done.steps[0].by, "node");
    assert_eq!(d.state().duties["lakeside/FP-1/self_test"].due, ran + 7 * DAY);
    // A passing run before the next order was sent: nothing to close, and
    // the next falls due a week after it.
    out.clear();
    d.self_test(ran + 3 * DAY, "lakeside", "firepump", "FP-1", true, &mut out);
    assert!(out.is_empty());
    let s = &d.state().duties["lakeside/FP-1/self_test"];
    assert_eq!(
        (s.due, s.last_done, s.order),
        (ran + 10 * DAY, Some(ran + 3 * DAY), None)
    );
    // An elevator has no self-test duty: nothing happens.
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
    // Their orders are sent (maintenance first, by key): order 1 is EL-3's.
    d.tick(T0 + 12 * DAY, &mut out);
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());

    d.intent(
        T0 + 12 * DAY + 1000,
        &crate::support::open(&crate::support::alert(41, "elevator", "EL-3", "trapped", T0)),
        Vec::new(),
        &mut out,
    );
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());
    assert!(mirror.dispatched.contains_key(&41));

    d.step(T0 + 13 * DAY, 1, StepKind::Arrive, &acme(), None, &mut out)
        .expect("arrive");
    d.step(T0 + 13 * DAY + 1000, 1, StepKind::Complete, &acme(), None, &mut out)
        .expect("complete");
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());

    // Eight days on, a new alert prunes the remembered one.
    d.intent(
        T0 + 20 * DAY,
        &crate::support::open(&crate::support::alert(
            42,
            "firepump",
            "FP-1",
            "pump_fault",
            T0 + 20 * DAY,
        )),
        Vec::new(),
        &mut out,
    );
    apply(&mut mirror, &mut d);
    assert_eq!(&mirror, d.state());
    assert!(!mirror.dispatched.contains_key(&41) && mirror.dispatched.contains_key(&42));
}
