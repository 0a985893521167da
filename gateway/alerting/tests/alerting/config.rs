//! The `[alerting]` configuration: overrides with precedence, and every
//! mistake reported with its field.

use alerting::{AlertingConfig, Engine};

use crate::check_with;

#[derive(serde::Deserialize)]
struct File {
    #[serde(default)]
    alerting: AlertingConfig,
}

fn cfg(text: &str) -> AlertingConfig {
    toml::from_str::<File>(text).unwrap_or_else(|e| panic!("{e}")).alerting
}

fn problem(text: &str) -> (String, String) {
    match cfg(text).build() {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(p) => (p.field, p.message),
    }
}

fn engine_of(text: &str) -> Engine {
    let b = cfg(text).build().unwrap();
    let mut e = Engine::new(b.rules, b.settings);
    e.set_windows(b.windows);
    e
}

#[test]
fn overrides_apply_by_site_class_and_device_most_specific_last() {
    let mut e = engine_of(
        r#"
[[alerting.overrides]]
class = "firepump"
params = { low_pressure_mpa = 0.10, low_pressure_clear_mpa = 0.12 }

[[alerting.overrides]]
site = "lakeside"
device = "P-2"
params = { low_pressure = "10s" }

[[alerting.overrides]]
site = "lakeside"
class = "firepump"
params = { low_pressure = "20s" }
disable = ["firepump.not_in_auto"]
severity = { low_pressure = "critical" }
"#,
    );
    check_with(
        &mut e,
        "
interval 1s
check fired
# 0.09 is low for a sprinkler system (0.10): the class override.
device other/firepump/P-1
birth interval_s=3600
series network_pressure_mpa: 0.09x40
series auto_mode: 0x70
expect 30s fired low_pressure
expect 60s fired not_in_auto
# The site's 20 s; not_in_auto off there.
device lakeside/firepump/P-1
birth interval_s=3600
series network_pressure_mpa: 0.09x40
series auto_mode: 0x70
expect 20s fired low_pressure
# The device's 10 s beats the site's 20 s.
device lakeside/firepump/P-2
birth interval_s=3600
series network_pressure_mpa: 0.09x40
expect 10s fired low_pressure
",
    );
    let sev: Vec<_> = e
        .alerts()
        .into_iter()
        .filter(|a| a.code == "low_pressure")
        .map(|a| (a.site, a.severity))
        .collect();
    assert!(sev.contains(&("lakeside".into(), protocol::Severity::Critical)));
    assert!(sev.contains(&("other".into(), protocol::Severity::Major)));
}

#[test]
fn the_sites_own_rules_join_their_class() {
    let mut e = engine_of(
        r#"
[[alerting.rules]]
id = "lakeside.jockey_cycling"
class = "firepump"
code = "jockey_cycling"
kind = "count"
of = "jockey_running"
at_least = 3
window = "10m"
severity = "minor"
"#,
    );
    check_with(
        &mut e,
        "
device s/firepump/P
birth interval_s=3600
check fired
series jockey_running: 0 1 0 1 0 1 0
expect 5s fired jockey_cycling
",
    );
}

#[test]
fn every_mistake_names_its_field() {
    let cases: [(&str, &str, &str); 12] = [
        (
            "[[alerting.overrides]]\nparams = { low_pressure_mpa = 0.1 }",
            "alerting.overrides[0].site",
            "an override needs `site`, `class` or `device`",
        ),
        (
            "[[alerting.overrides]]\nclass = \"firepump\"\nparams = { low_presure_mpa = 0.1 }",
            "alerting.overrides[0].params.low_presure_mpa",
            "no rule pack of these devices has a parameter `low_presure_mpa`",
        ),
        (
            "[[alerting.overrides]]\nclass = \"elevator\"\nparams = { trapped_outside_zone = 20 }",
            "alerting.overrides[0].params.trapped_outside_zone",
            "`trapped_outside_zone` takes a duration such as \"20s\"",
        ),
        (
            "[[alerting.overrides]]\nclass = \"elevator\"\nparams = { trapped_outside_zone = \"soon\" }",
            "alerting.overrides[0].params (for)",
            "`soon` is not a duration",
        ),
        (
            "[[alerting.overrides]]\nsite = \"x\"\ndisable = [\"elevator.trappd\"]",
            "alerting.overrides[0].disable[0]",
            "no rule `elevator.trappd` for these devices",
        ),
        (
            "[[alerting.overrides]]\nclass = \"elevator\"\nparams = { door_reopens = 50 }",
            "alerting.overrides[0].params (at_least)",
            "must be a whole number from 1 to 32",
        ),
        (
            "[[alerting.rules]]\nid = \"x\"\ncode = \"c\"\nwhen = \"a\"",
            "alerting.rules[0].class",
            "rule `x` needs a `class`",
        ),
        (
            "[[alerting.rules]]\nid = \"x\"\nclass = \"charger\"\ncode = \"c\"\nwhen = \"smoke &&\"",
            "alerting.rules[0].when",
            "at character 9: the condition ends too early",
        ),
        (
            "[[alerting.rules]]\nid = \"x\"\nclass = \"charger\"\ncode = \"c\"\nwhen = \"temp_c > $hot\"",
            "alerting.rules[0].when",
            "no parameter `$hot`",
        ),
        (
            "[[alerting.rules]]\nid = \"charger.smoke\"\nclass = \"charger\"\ncode = \"c\"\nwhen = \"smoke\"",
            "alerting.rules.id",
            "rule id `charger.smoke` is used twice",
        ),
        (
            "[[alerting.maintenance]]\nfrom = \"2026-12-01T08:00:00+08:00\"\nto = \"2026-12-01T07:00:00+08:00\"",
            "alerting.maintenance[0].to",
            "must be after `from`",
        ),
        (
            "[alerting]\ngroup_wait = \"a while\"",
            "alerting.group_wait",
            "is not a duration",
        ),
    ];
    for (text, field, message) in cases {
        let (f, m) = problem(text);
        assert_eq!(f, field, "{text}");
        assert!(m.contains(message), "{text}\n  said: {m}\n  want: {message}");
    }
}

#[test]
fn maintenance_times_take_any_offset() {
    let t = alerting::config::parse_time;
    assert_eq!(
        t("2026-12-01T08:00:00+08:00").unwrap(),
        t("2026-12-01T00:00:00Z").unwrap()
    );
    assert_eq!(t("2026-12-01T00:00:00Z").unwrap(), 1_796_083_200_000);
    assert!(t("tomorrow").is_err());
    // Found by the `config` fuzz target: a time whose last six bytes cut a
    // character panicked instead of being refused.
    for odd in ["2026-12-01T12:00:00+08:维保)", "维保", "2026-12-01T12:00:00维"] {
        assert!(t(odd).is_err(), "{odd}");
    }
}

#[test]
fn the_builtin_packs_parse_and_every_rule_cites_its_source() {
    for pack in alerting::ruleset::builtin_packs() {
        for r in &pack.rule {
            assert!(r.source.as_ref().is_some_and(|s| s.len() > 8), "{} has no source", r.id);
            assert!(
                r.id.starts_with(pack.class.as_str()),
                "{} is not named after its class",
                r.id
            );
        }
    }
}
