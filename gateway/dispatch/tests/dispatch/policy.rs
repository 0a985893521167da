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
