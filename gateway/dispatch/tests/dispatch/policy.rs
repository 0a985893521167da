//! The policy: the contract's table as defaults, overrides, errors by field.

use dispatch::PolicyConfig;

use crate::support::{DAY, HOUR, MIN};

fn build(text: &str) -> Result<dispatch::Policy, dispatch::PolicyProblem> {
    let cfg: PolicyConfig = toml::from_str(text).expect("toml");
    cfg.build()
}

#[test]
fn the_defaults_are_the_contract_table() {
    let p = dispatch::Policy::default();
    let row = |class: &str, code: &str| {
        let s = p.sla("any", class, code);
        (s.respond, s.arrive, s.complete)
    };
    for code in ["trapped", "unintended_movement", "overtravel_top", "overtravel_bottom"] {
        assert_eq!(row("elevator", code), (3 * MIN, 30 * MIN, DAY), "{code}");
    }
    assert_eq!(row("elevator", "door_close_fault"), (30 * MIN, 2 * HOUR, 3 * DAY));
    for code in ["fire_alarm", "pump_fail_to_start", "low_pressure"] {
        assert_eq!(row("firepump", code), (3 * MIN, 15 * MIN, DAY), "{code}");
    }
    for code in ["smoke", "over_temperature", "leakage"] {
        assert_eq!(row("charger", code), (3 * MIN, 10 * MIN, DAY), "{code}");
    }
    assert_eq!(p.sla("any", "elevator", "trapped").bureau_after, Some(HOUR));
    assert_eq!(p.sla("any", "elevator", "overtravel_top").bureau_after, None);
    assert!(!p.sla("any", "gateway", "uplink_lost").dispatch);
}

#[test]
fn site_entries_override_only_what_they_say() {
    let p = build(
        r#"
[[sla]]
site = "hillside"
class = "elevator"
codes = ["trapped"]
arrive = "1h"
[[sla]]
class = "charger"
codes = ["charge_timeout"]
dispatch = false
[[assign]]
class = "elevator"
contractor = "acme"
manager = "pm"
[[assign]]
site = "hillside"
class = "elevator"
contractor = "rural-lifts"
"#,
    )
    .expect("valid");
    let hill = p.sla("hillside", "elevator", "trapped");
    assert_eq!(
        (hill.respond, hill.arrive, hill.bureau_after),
        (3 * MIN, HOUR, Some(HOUR))
    );
    assert_eq!(p.sla("lakeside", "elevator", "trapped").arrive, 30 * MIN);
    assert!(!p.sla("lakeside", "charger", "charge_timeout").dispatch);
    let a = p.assignment("hillside", "elevator");
    assert_eq!(
        (a.contractor.as_deref(), a.manager.as_deref()),
        (Some("rural-lifts"), Some("pm"))
    );
    assert_eq!(p.assignment("lakeside", "elevator").contractor.as_deref(), Some("acme"));
    assert_eq!(p.managers("hillside"), ["pm"]);
}

#[test]
fn a_site_duty_replaces_the_builtin_one_of_the_same_name() {
    let p = build(
        r#"
[[duties]]
site = "hillside"
class = "elevator"
duty = "maintenance"
every = "10d"
"#,
    )
    .expect("valid");
    let every = |site: &str| p.duties(site, "elevator").map(|d| d.every).collect::<Vec<_>>();
    assert_eq!(every("hillside"), [10 * DAY]);
    assert_eq!(every("lakeside"), [15 * DAY]);
}

#[test]
fn problems_name_their_field() {
    for (text, field, says) in [
        (
            "[[sla]]\nrespond = \"soon\"",
            "dispatch.sla[0].respond",
            "not a duration",
        ),
        ("[[sla]]\narrive = \"0s\"", "dispatch.sla[0].arrive", "longer than zero"),
        (
            "[[assign]]\nclass = \"lift\"",
            "dispatch.assign[0].class",
            "unknown class `lift`",
        ),
        (
            "[[duties]]\nclass = \"elevator\"\nduty = \"maintenance\"\nevery = \"fortnightly\"",
            "dispatch.duties[0].every",
            "not a duration",
        ),
    ] {
        let e = build(text).expect_err(text);
        assert_eq!(e.field, field, "{text}");
        assert!(e.message.contains(says), "{text}: {}", e.message);
    }
}

#[test]
fn each_code_is_sent_to_whose_it_is_and_told_to_whom_it_concerns() {
    let mut p = build(
        r#"
[[assign]]
site = "lakeside"
contractor = "lifts"
backup = "city-lifts"
manager = "pm"
[[assign]]
site = "lakeside"
class = "charger"
contractor = "bays"
[[assign]]
site = "lakeside"
class = "elevator"
installer = "integrator"
"#,
    )
    .expect("valid");
    let sent = |class: &str, code: &str| p.sent("lakeside", class, code);
    // Faults of the equipment: its contractor.
    assert_eq!(sent("elevator", "trapped").as_deref(), Some("lifts"));
    assert_eq!(sent("charger", "smoke").as_deref(), Some("bays"));
    // What is the property's: its staff.
    for (class, code) in [
        ("elevator", "ebike_in_car"),
        ("elevator", "power_cut"),
        ("firepump", "not_in_auto"),
        ("charger", "charge_timeout"),
    ] {
        assert_eq!(sent(class, code).as_deref(), Some("pm"), "{class}/{code}");
    }
    // A silent node: its installer, or the manager where nobody installed it.
    assert_eq!(sent("elevator", "offline").as_deref(), Some("integrator"));
    assert_eq!(sent("firepump", "offline").as_deref(), Some("pm"));
    // Information is nobody's order, and nobody is told of it.
    assert!(!p.sla("lakeside", "charger", "full_cutoff").dispatch);
    assert!(p.told("lakeside", "charger", "full_cutoff").is_empty());
    assert_eq!(p.told("lakeside", "elevator", "trapped"), ["pm"]);
    // The ebike row: staff on site within 15 min, while the car is held.
    let e = p.sla("lakeside", "elevator", "ebike_in_car");
    assert_eq!((e.respond, e.arrive, e.complete), (3 * MIN, 15 * MIN, DAY));
    // The gateway's root causes: no class's assignment, so every manager of
    // the compound.
    assert_eq!(p.told("lakeside", "gateway", "uplink_lost"), ["pm"]);

    // Configured per code: e-bikes to the lift contractor too, and the lift
    // contractor told of them; nobody told of door faults.
    p = build(
        r#"
[[assign]]
contractor = "lifts"
manager = "pm"
[[sla]]
class = "elevator"
codes = ["ebike_in_car"]
send = ["contractor"]
tell = ["manager", "contractor"]
[[sla]]
codes = ["door_close_fault"]
tell = []
"#,
    )
    .expect("valid");
    assert_eq!(p.sent("x", "elevator", "ebike_in_car").as_deref(), Some("lifts"));
    assert_eq!(p.told("x", "elevator", "ebike_in_car"), ["lifts", "pm"]);
    assert!(p.told("x", "elevator", "door_close_fault").is_empty());
    let e = build("[[sla]]\nsend = []").expect_err("empty send");
    assert_eq!(e.field, "dispatch.sla[0].send");
}

#[test]
fn a_notification_is_split_by_who_is_told_of_each_alert() {
    let p = build(
        r#"
[[assign]]
manager = "pm"
[[assign]]
class = "charger"
manager = "bays-desk"
"#,
    )
    .expect("valid");
    let mut smoke = crate::support::alert(1, "charger", "CH-1", "smoke", 0);
    smoke.severity = protocol::Severity::Critical;
    let mut full = crate::support::alert(2, "charger", "CH-1", "full_cutoff", 0);
    full.severity = protocol::Severity::Info;
    let mut door = crate::support::alert(3, "elevator", "EL-1", "door_close_fault", 0);
    door.severity = protocol::Severity::Major;
    let n = alerting::Notification {
        site: "lakeside".into(),
        building: Some("3号楼".into()),
        at: 5,
        critical: true,
        firing: vec![smoke, full.clone(), door],
        resolved: vec![full],
    };
    let split = p.recipients(&n);
    let who: Vec<(&str, Vec<u64>, bool)> = split
        .iter()
        .map(|(to, n)| {
            (
                to.as_str(),
                n.firing.iter().chain(&n.resolved).map(|a| a.id).collect(),
                n.critical,
            )
        })
        .collect();
    assert_eq!(who, [("bays-desk", vec![1], true), ("pm", vec![3], false)]);
    assert_eq!(split[0].1.building.as_deref(), Some("3号楼"));
}

#[test]
fn a_rural_compound_gets_an_hour_to_reach_a_trapped_passenger() {
    let mut p = build(
        r#"
[[sla]]
area = "rural"
class = "charger"
arrive = "30m"
"#,
    )
    .expect("valid");
    p.set_areas([("hillside".to_owned(), dispatch::Area::Rural)]);
    for code in ["trapped", "unintended_movement", "overtravel_top", "overtravel_bottom"] {
        assert_eq!(p.sla("hillside", "elevator", code).arrive, HOUR, "{code}");
        assert_eq!(p.sla("lakeside", "elevator", code).arrive, 30 * MIN, "{code}");
    }
    // Only those rows: the rest, and the bureau's hour, are the same anywhere.
    let trapped = p.sla("hillside", "elevator", "trapped");
    assert_eq!((trapped.respond, trapped.bureau_after), (3 * MIN, Some(HOUR)));
    assert_eq!(p.sla("hillside", "elevator", "door_close_fault").arrive, 2 * HOUR);
    assert_eq!(p.sla("hillside", "firepump", "fire_alarm").arrive, 15 * MIN);
    // A configured area entry.
    assert_eq!(p.sla("hillside", "charger", "smoke").arrive, 30 * MIN);
    assert_eq!(p.sla("lakeside", "charger", "smoke").arrive, 10 * MIN);
    assert_eq!(p.area("elsewhere"), dispatch::Area::Urban, "urban unless said");
}

#[test]
fn duty_notice_defaults_and_last_visits_are_checked() {
    let p = build(
        r#"
[[duties]]
class = "elevator"
duty = "maintenance"
every = "10d"
[[duties]]
class = "charger"
duty = "inspection"
every = "30d"
[[last_done]]
site = "lakeside"
device = "EL-1"
duty = "maintenance"
at = "2026-11-20T09:00:00+08:00"
[[last_done]]
site = "lakeside"
device = "EL-1"
duty = "maintenance"
at = "2026-11-10T09:00:00+08:00"
"#,
    )
    .expect("valid");
    let notice = |class: &str| p.duties("lakeside", class).map(|d| d.notice).collect::<Vec<_>>();
    assert_eq!(notice("elevator"), [3 * DAY], "the built-in duty's notice");
    assert_eq!(notice("charger"), [6 * DAY], "a fifth of its period");
    assert_eq!(notice("firepump"), [DAY]);
    assert_eq!(
        p.last_done("lakeside", "EL-1", "maintenance"),
        Some(1_795_136_400_000),
        "the later of two"
    );
    for (text, field) in [
        (
            "[[last_done]]\nsite = \"a\"\ndevice = \"b\"\nduty = \"maintenance\"\nat = \"last week\"",
            "dispatch.last_done[0].at",
        ),
        (
            "[[last_done]]\nsite = \"a\"\ndevice = \"\"\nduty = \"maintenance\"\nat = \"2026-11-20T09:00:00+08:00\"",
            "dispatch.last_done[0].device",
        ),
        (
            "[[duties]]\nclass = \"elevator\"\nduty = \"maintenance\"\nevery = \"15d\"\nnotice = \"0s\"",
            "dispatch.duties[0].notice",
        ),
    ] {
        assert_eq!(build(text).expect_err(text).field, field, "{text}");
    }
}
