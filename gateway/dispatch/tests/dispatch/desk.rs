//! Orders from intents, every status path, every deadline and escalation,
//! restarts in between.

use dispatch::{Action, Actor, Deadline, Kind, Out, Sample, Status, StepError, StepKind};

use crate::support::{DAY, HOUR, MIN, T0, alert, close, desk, kinds, open, restart, tells};

fn acme() -> Actor {
    Actor {
        name: "acme".into(),
        contractor: Some("acme".into()),
    }
}

fn city() -> Actor {
    Actor {
        name: "city-lifts".into(),
        contractor: Some("city-lifts".into()),
    }
}

/// A desk with order 1: a passenger trapped in EL-3 at `T0`, dispatched to acme.
fn trapped_at_t0() -> (dispatch::Desk, Vec<Out>) {
    let mut d = desk();
    let mut out = Vec::new();
    d.intent(
        T0,
        &open(&alert(1, "elevator", "EL-3", "trapped", T0)),
        Vec::new(),
        &mut out,
    );
    (d, out)
}

#[test]
fn a_trapped_alert_becomes_one_order_with_the_contract_deadlines_and_evidence() {
    let mut d = desk();
    let a = alert(7, "elevator", "EL-3", "trapped", T0 - 20_000);
    let series = vec![Sample {
        metric: "occupied".into(),
        port: None,
        at: T0 - 5_000,
        value: 1.0,
    }];
    let mut out = Vec::new();
    d.intent(T0, &open(&a), series.clone(), &mut out);
    assert_eq!(kinds(&out), ["work_order_dispatched"]);
    assert_eq!(tells(&out), [("acme".to_owned(), "order_dispatched")]);
    let o = d.open().next().expect("one order");
    assert_eq!((o.id, o.status, o.kind), (1, Status::Dispatched, Kind::Corrective));
    assert_eq!(o.contractor.as_deref(), Some("acme"));
    assert_eq!(o.deadlines.respond, Some(T0 + 3 * MIN));
    assert_eq!(o.deadlines.arrive, Some(T0 + 30 * MIN));
    assert_eq!(o.deadlines.complete, T0 + DAY);
    // The bureau's hour counts from when the passenger was trapped.
    assert_eq!(o.deadlines.bureau, Some(T0 - 20_000 + HOUR));
    assert_eq!(o.evidence.series, series);
    assert_eq!(o.evidence.sources, ["elevator.trapped_outside_zone"]);
    assert_eq!(o.alerts, [7]);
    // The subject says what, where and by when, in Chinese and English.
    let Some(Out::Tell(t)) = out.iter().find(|o| matches!(o, Out::Tell(_))) else {
        panic!("a tell")
    };
    assert!(
        t.subject.contains("电梯困人") || t.subject.contains("困人"),
        "{}",
        t.subject
    );
    assert!(
        t.subject.contains("EL-3") && t.subject.contains("respond by 08:03"),
        "{}",
        t.subject
    );
}

#[test]
fn duplicate_intents_and_a_second_alert_of_the_same_fault_never_make_a_second_order() {
    let mut d = desk();
    let a = alert(7, "elevator", "EL-3", "trapped", T0);
    let mut out = Vec::new();
    d.intent(T0, &open(&a), Vec::new(), &mut out);
    d.intent(T0 + 1, &open(&a), Vec::new(), &mut out);
    // A replay after a restart.
    let mut d = restart(&d);
    d.intent(T0 + 2, &open(&a), Vec::new(), &mut out);
    assert_eq!(kinds(&out), ["work_order_dispatched"]);
    // A new episode of the same fault joins the open order.
    let b = alert(9, "elevator", "EL-3", "trapped", T0 + 10 * MIN);
    d.intent(T0 + 10 * MIN, &open(&b), Vec::new(), &mut out);
    assert_eq!(kinds(&out), ["work_order_dispatched", "work_order_joined"]);
    assert_eq!(d.open().count(), 1);
    assert_eq!(d.open().next().map(|o| o.alerts.clone()), Some(vec![7, 9]));
    // Another fault of the same lift is another order.
    let c = alert(10, "elevator", "EL-3", "door_open_while_running", T0 + 11 * MIN);
    d.intent(T0 + 11 * MIN, &open(&c), Vec::new(), &mut out);
    assert_eq!(d.open().count(), 2);
}

#[test]
fn the_happy_path_stamps_every_step_with_time_and_who() {
    let (mut d, mut out) = trapped_at_t0();
    d.step(
        T0 + MIN,
        1,
        StepKind::Respond,
        &acme(),
        Some("on my way".into()),
        &mut out,
    )
    .expect("respond");
    d.step(T0 + 20 * MIN, 1, StepKind::Arrive, &acme(), None, &mut out)
        .expect("arrive");
    let o = d
        .step(T0 + 40 * MIN, 1, StepKind::Complete, &acme(), None, &mut out)
        .expect("complete");
    assert_eq!(o.status, Status::Completed);
    assert_eq!(o.responded_at, Some(T0 + MIN));
    assert_eq!(o.arrived_at, Some(T0 + 20 * MIN));
    assert_eq!(o.closed_at, Some(T0 + 40 * MIN));
    let steps: Vec<_> = o.steps.iter().map(|s| (s.status, s.at, s.by.as_str())).collect();
    assert_eq!(
        steps,
        [
            (Status::Responded, T0 + MIN, "acme"),
            (Status::Arrived, T0 + 20 * MIN, "acme"),
            (Status::Completed, T0 + 40 * MIN, "acme"),
        ]
    );
    assert_eq!(o.steps[0].note.as_deref(), Some("on my way"));
    assert_eq!(
        kinds(&out),
        [
            "work_order_dispatched",
            "work_order_responded",
            "work_order_arrived",
            "work_order_completed"
        ]
    );
    // Closed: no longer open, no deadline escalates it any more.
    assert_eq!(d.open().count(), 0);
    out.clear();
    d.tick(T0 + 2 * DAY, &mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_false_alarm_closes_from_every_open_status() {
    for steps in [
        &[][..],
        &[StepKind::Respond][..],
        &[StepKind::Respond, StepKind::Arrive][..],
    ] {
        let mut d = desk();
        let mut out = Vec::new();
        d.intent(
            T0,
            &open(&alert(1, "elevator", "EL-3", "trapped", T0)),
            Vec::new(),
            &mut out,
        );
        for (i, s) in steps.iter().enumerate() {
            d.step(T0 + i64::try_from(i).expect("small"), 1, *s, &acme(), None, &mut out)
                .expect("step");
        }
        let o = d
            .step(
                T0 + MIN,
                1,
                StepKind::FalseAlarm,
                &acme(),
                Some("sensor".into()),
                &mut out,
            )
            .expect("false alarm");
        assert_eq!(o.status, Status::FalseAlarm);
        assert_eq!(o.closed_at, Some(T0 + MIN));
        assert_eq!(kinds(&out).last().map(String::as_str), Some("work_order_false_alarm"));
    }
}

#[test]
fn steps_out_of_order_or_by_somebody_else_are_refused_and_change_nothing() {
    let (mut d, mut out) = trapped_at_t0();
    out.clear();
    let conflict = |r: Result<_, StepError>| matches!(r, Err(StepError::Conflict { .. }));
    assert!(conflict(d.step(T0, 1, StepKind::Arrive, &acme(), None, &mut out)));
    assert!(conflict(d.step(T0, 1, StepKind::Complete, &acme(), None, &mut out)));
    assert!(matches!(
        d.step(T0, 1, StepKind::Respond, &city(), None, &mut out),
        Err(StepError::NotYours { .. })
    ));
    assert!(matches!(
        d.step(T0, 99, StepKind::Respond, &acme(), None, &mut out),
        Err(StepError::NotFound(99))
    ));
    assert!(out.is_empty());
    d.step(T0, 1, StepKind::Respond, &acme(), None, &mut out)
        .expect("respond");
    assert!(conflict(d.step(T0, 1, StepKind::Respond, &acme(), None, &mut out)));
    // The admin steps on behalf of anybody, stamped with its own name.
    let admin = Actor {
        name: "admin".into(),
        contractor: None,
    };
    let o = d
        .step(T0 + 1, 1, StepKind::Arrive, &admin, None, &mut out)
        .expect("admin");
    assert_eq!(o.steps.last().map(|s| s.by.as_str()), Some("admin"));
    let err = d
        .step(T0 + 2, 1, StepKind::Respond, &acme(), None, &mut out)
        .expect_err("already responded");
    assert!(err.to_string().contains("arrived"), "{err}");
}

#[test]
fn a_missed_respond_deadline_redispatches_to_the_backup_and_tells_the_manager() {
    let (mut d, mut out) = trapped_at_t0();
    out.clear();
    d.tick(T0 + 3 * MIN - 1, &mut out);
    assert!(out.is_empty(), "not yet: {out:?}");
    d.tick(T0 + 3 * MIN, &mut out);
    assert_eq!(kinds(&out), ["deadline_missed"]);
    assert_eq!(
        tells(&out),
        [
            ("city-lifts".to_owned(), "order_redispatched"),
            ("pm-lake".to_owned(), "order_escalated")
        ]
    );
    let o = d.order(1).expect("open");
    assert_eq!(o.contractor.as_deref(), Some("city-lifts"));
    assert_eq!(o.primary.as_deref(), Some("acme"));
    let e = &o.escalations[0];
    assert_eq!((e.missed, e.due, e.at), (Deadline::Respond, T0 + 3 * MIN, T0 + 3 * MIN));
    assert_eq!(
        e.actions,
        [
            Action::Redispatched {
                from: Some("acme".into()),
                to: "city-lifts".into()
            },
            Action::NotifiedManager {
                manager: "pm-lake".into()
            }
        ]
    );
    // Once only.
    out.clear();
    d.tick(T0 + 4 * MIN, &mut out);
    assert!(out.is_empty());
    // Now the backup's, not acme's.
    assert!(
        d.step(T0 + 5 * MIN, 1, StepKind::Respond, &acme(), None, &mut out)
            .is_err()
    );
    d.step(T0 + 5 * MIN, 1, StepKind::Respond, &city(), None, &mut out)
        .expect("backup responds");
    // Acme still sees the order it had.
    assert!(
        d.order(1)
            .is_some_and(|o| o.concerns("acme") && o.concerns("city-lifts"))
    );
}

#[test]
fn arrive_and_complete_deadlines_escalate_to_the_manager_once_the_backup_has_it() {
    let mut d = desk();
    let mut out = Vec::new();
    d.intent(
        T0,
        &open(&alert(1, "elevator", "EL-3", "door_open_while_running", T0)),
        Vec::new(),
        &mut out,
    );
    // Other elevator faults: 30 min / 2 h / 72 h.
    let o = d.order(1).expect("open");
    assert_eq!(o.deadlines.respond, Some(T0 + 30 * MIN));
    assert_eq!(o.deadlines.arrive, Some(T0 + 2 * HOUR));
    assert_eq!(o.deadlines.complete, T0 + 3 * DAY);
    assert_eq!(o.deadlines.bureau, None);
    d.step(T0 + MIN, 1, StepKind::Respond, &acme(), None, &mut out)
        .expect("respond");
    out.clear();
    d.tick(T0 + 2 * HOUR, &mut out);
    // Responded but not on site: the backup is sent.
    assert_eq!(kinds(&out), ["deadline_missed"]);
    assert_eq!(tells(&out)[0], ("city-lifts".to_owned(), "order_redispatched"));
    d.step(T0 + 3 * HOUR, 1, StepKind::Arrive, &city(), None, &mut out)
        .expect("arrive");
    out.clear();
    d.tick(T0 + 3 * DAY, &mut out);
    assert_eq!(kinds(&out), ["deadline_missed"]);
    // The backup already has it: only the manager is told.
    assert_eq!(tells(&out), [("pm-lake".to_owned(), "order_escalated")]);
    let missed: Vec<_> = d.order(1).expect("open").escalations.iter().map(|e| e.missed).collect();
    assert_eq!(missed, [Deadline::Arrive, Deadline::Complete]);
}

#[test]
fn a_passenger_trapped_past_an_hour_flags_the_order_for_the_bureau() {
    let mut d = desk();
    let mut out = Vec::new();
    let since = T0 - 20_000;
    d.intent(
        T0,
        &open(&alert(1, "elevator", "EL-3", "trapped", since)),
        Vec::new(),
        &mut out,
    );
    d.step(T0 + MIN, 1, StepKind::Respond, &acme(), None, &mut out)
        .expect("respond");
    d.step(T0 + 25 * MIN, 1, StepKind::Arrive, &acme(), None, &mut out)
        .expect("arrive");
    out.clear();
    d.tick(since + HOUR - 1, &mut out);
    assert!(out.is_empty());
    d.tick(since + HOUR, &mut out);
    assert_eq!(kinds(&out), ["bureau_flagged"]);
    assert_eq!(
        tells(&out),
        [
            ("wuhan-bureau".to_owned(), "bureau_flag"),
            ("pm-lake".to_owned(), "bureau_flag")
        ]
    );
    assert!(d.order(1).is_some_and(|o| o.bureau_flagged));
}

#[test]
fn a_passenger_freed_within_the_hour_is_never_flagged_and_the_order_stays_open() {
    let mut d = desk();
    let mut out = Vec::new();
    let a = alert(1, "elevator", "EL-3", "trapped", T0);
    d.intent(T0, &open(&a), Vec::new(), &mut out);
    d.intent(T0 + 10 * MIN, &close(&a, T0 + 10 * MIN), Vec::new(), &mut out);
    assert_eq!(kinds(&out), ["work_order_dispatched", "work_order_alert_resolved"]);
    out.clear();
    d.tick(T0 + 2 * HOUR, &mut out);
    assert!(!kinds(&out).contains(&"bureau_flagged".to_owned()), "{:?}", kinds(&out));
    // Still open: the lift must be inspected.
    assert_eq!(d.order(1).map(|o| o.alert_resolved_at), Some(Some(T0 + 10 * MIN)));
}

#[test]
fn clocks_survive_a_restart_and_catch_up_after_downtime() {
    let (mut d, mut out) = trapped_at_t0();
    d.tick(T0 + MIN, &mut out);
    // Down for two hours.
    let mut d = restart(&d);
    out.clear();
    d.tick(T0 + 2 * HOUR, &mut out);
    // Respond and arrive passed while away, and the bureau's hour too: each
    // escalates once, stamped when noticed, with its due time.
    let missed: Vec<_> = d
        .order(1)
        .expect("open")
        .escalations
        .iter()
        .map(|e| (e.missed, e.due, e.at))
        .collect();
    assert_eq!(
        missed,
        [
            (Deadline::Respond, T0 + 3 * MIN, T0 + 2 * HOUR),
            (Deadline::Arrive, T0 + 30 * MIN, T0 + 2 * HOUR),
            (Deadline::Bureau, T0 + HOUR, T0 + 2 * HOUR),
        ]
    );
    // And another restart changes nothing: nothing escalates twice.
    let mut d = restart(&d);
    out.clear();
    d.tick(T0 + 3 * HOUR, &mut out);
    assert!(out.is_empty(), "{out:?}");
    // Ids continue after a restart.
    d.intent(
        T0 + 3 * HOUR,
        &open(&alert(2, "charger", "CH-1", "smoke", T0)),
        Vec::new(),
        &mut out,
    );
    assert_eq!(d.open().map(|o| o.id).max(), Some(2));
}

#[test]
fn fire_and_charger_faults_get_their_rows_of_the_table_and_root_causes_do_not_dispatch() {
    let mut d = desk();
    let mut out = Vec::new();
    d.intent(
        T0,
        &open(&alert(1, "firepump", "FP-1", "pump_fail_to_start", T0)),
        Vec::new(),
        &mut out,
    );
    d.intent(
        T0,
        &open(&alert(2, "charger", "CH-1", "smoke", T0)),
        Vec::new(),
        &mut out,
    );
    d.intent(
        T0,
        &open(&alert(3, "charger", "CH-1", "charge_timeout", T0)),
        Vec::new(),
        &mut out,
    );
    d.intent(
        T0,
        &open(&alert(4, "gateway", "uplink", "uplink_lost", T0)),
        Vec::new(),
        &mut out,
    );
    let dl: Vec<_> = d
        .open()
        .map(|o| {
            (
                o.code.as_str(),
                o.deadlines.respond,
                o.deadlines.arrive,
                o.deadlines.complete,
            )
        })
        .collect();
    assert_eq!(
        dl,
        [
            ("pump_fail_to_start", Some(T0 + 3 * MIN), Some(T0 + 15 * MIN), T0 + DAY),
            ("smoke", Some(T0 + 3 * MIN), Some(T0 + 10 * MIN), T0 + DAY),
            ("charge_timeout", Some(T0 + 30 * MIN), Some(T0 + 2 * HOUR), T0 + 3 * DAY),
        ]
    );
}

#[test]
fn without_backup_or_manager_the_escalation_still_is_recorded() {
    let mut d = dispatch::Desk::new(dispatch::Policy::default());
    let mut out = Vec::new();
    d.intent(
        T0,
        &open(&alert(1, "charger", "CH-1", "smoke", T0)),
        Vec::new(),
        &mut out,
    );
    assert!(tells(&out).is_empty(), "nobody to dispatch to");
    out.clear();
    d.tick(T0 + 3 * MIN, &mut out);
    assert_eq!(kinds(&out), ["deadline_missed"]);
    assert_eq!(d.order(1).expect("open").escalations[0].actions, [Action::NobodyToTell]);
}

/// Who is sent: an e-bike in a car to the property's staff (never re-sent to
/// the lifts' backup), a silent node to its installer.
#[test]
fn an_ebike_goes_to_the_property_staff_and_a_silent_node_to_its_installer() {
    let cfg: dispatch::PolicyConfig = toml::from_str(
        r#"
[[assign]]
site = "lakeside"
contractor = "acme"
backup = "city-lifts"
manager = "pm-lake"
installer = "integrator"
"#,
    )
    .expect("policy");
    let mut d = dispatch::Desk::new(cfg.build().expect("valid"));
    let mut out = Vec::new();
    let mut ebike = alert(1, "elevator", "EL-3", "ebike_in_car", T0);
    ebike.severity = protocol::Severity::Minor;
    d.intent(T0, &open(&ebike), Vec::new(), &mut out);
    d.intent(
        T0,
        &open(&alert(2, "elevator", "EL-3", "offline", T0)),
        Vec::new(),
        &mut out,
    );
    d.intent(
        T0,
        &open(&alert(3, "charger", "CH-1", "full_cutoff", T0)),
        Vec::new(),
        &mut out,
    );
    assert_eq!(
        tells(&out),
        [
            ("pm-lake".to_owned(), "order_dispatched"),
            ("integrator".to_owned(), "order_dispatched")
        ],
        "information is nobody's order"
    );
    let o = d.order(1).expect("the e-bike's order");
    assert_eq!((o.contractor.as_deref(), o.backup.as_deref()), (Some("pm-lake"), None));
    assert_eq!(o.deadlines.arrive, Some(T0 + 15 * MIN));
    // Nobody responds: the manager is told it missed; nobody else is sent.
    out.clear();
    d.tick(T0 + 3 * MIN, &mut out);
    let e = &d.order(1).expect("open").escalations[0];
    assert_eq!(
        e.actions,
        [Action::NotifiedManager {
            manager: "pm-lake".into()
        }]
    );
    assert_eq!(
        d.order(1).and_then(|o| o.contractor.clone()).as_deref(),
        Some("pm-lake")
    );
}
