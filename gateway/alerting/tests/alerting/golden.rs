//! Golden tests: every code of every built-in pack fires and clears as
//! `docs/rules.md` says, from telemetry alone.

use std::collections::BTreeSet;

use alerting::series::SeriesTest;
use alerting::{RuleKind, RuleSet};
use protocol::EventCode;

const FILES: [(&str, &str); 4] = [
    ("elevator", include_str!("golden/elevator.txt")),
    ("firepump", include_str!("golden/firepump.txt")),
    ("charger", include_str!("golden/charger.txt")),
    ("charger-full", include_str!("golden/charger-full.txt")),
];

#[test]
fn every_golden_file_passes() {
    for (name, text) in FILES {
        let t = SeriesTest::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(report) = t.check(&mut crate::engine()) {
            panic!("golden/{name}.txt:\n{report}");
        }
    }
}

#[test]
fn every_code_of_every_pack_is_fired_and_cleared_in_a_golden_file() {
    let mut fired = BTreeSet::new();
    let mut resolved = BTreeSet::new();
    for (_, text) in FILES {
        for t in SeriesTest::parse(text).unwrap().expected {
            let code = t.code.split('{').next().unwrap().to_owned();
            match t.what.as_str() {
                "fired" => fired.insert(code),
                "resolved" => resolved.insert(code),
                _ => false,
            };
        }
    }
    let rules = RuleSet::builtin();
    for pack in rules.packs() {
        for r in &pack.rule {
            assert!(fired.contains(&r.code), "no golden test fires `{}` ({})", r.code, r.id);
            assert!(
                resolved.contains(&r.code),
                "no golden test clears `{}` ({})",
                r.code,
                r.id
            );
        }
    }
}

#[test]
fn the_packs_raise_every_canonical_code_from_telemetry() {
    let rules = RuleSet::builtin();
    let raised: BTreeSet<&str> = rules
        .packs()
        .iter()
        .flat_map(|p| {
            p.rule
                .iter()
                .filter(|r| r.kind != RuleKind::Offline || r.code == "offline")
        })
        .map(|r| r.code.as_str())
        .collect();
    for code in EventCode::ALL {
        // self_test is a record, not a state; the three root causes are
        // inferred from the topology, not from a device's telemetry, and
        // modbus_exception is raised by the Modbus poller from the answers.
        if !code.is_state()
            || matches!(
                code,
                EventCode::UplinkLost | EventCode::BusDown | EventCode::SiteUnreachable | EventCode::ModbusException
            )
        {
            continue;
        }
        assert!(raised.contains(code.as_str()), "no pack rule raises `{code}`");
    }
}

#[test]
fn a_failing_golden_test_says_what_differs() {
    let text = "
device s/firepump/P
series pump_fault: 0 1 0
expect 1s fired pump_fault
expect 5s resolved pump_fault
";
    let report = SeriesTest::parse(text)
        .unwrap()
        .check(&mut crate::engine())
        .unwrap_err();
    assert!(
        report.contains("missing:    5000ms resolved pump_fault on s/firepump/P"),
        "{report}"
    );
    assert!(
        report.contains("unexpected: 2000ms resolved pump_fault on s/firepump/P"),
        "{report}"
    );
}

#[test]
fn the_notation_reports_bad_lines() {
    let bad = SeriesTest::parse("device s/firepump/P\nseries m: 1 zz\n").unwrap_err();
    assert_eq!(bad.to_string(), "line 2: bad values (numbers, true, false, vxN, _)");
    let bad = SeriesTest::parse("series m: 1\n").unwrap_err();
    assert_eq!(bad.to_string(), "line 1: no `device` line before this one");
    let bad = SeriesTest::parse("device s/lift/P\n").unwrap_err();
    assert_eq!(bad.to_string(), "line 1: expected SITE/CLASS/DEVICE");
    let bad = SeriesTest::parse("device s/firepump/P\nexpect 1s exploded x\n").unwrap_err();
    assert_eq!(bad.to_string(), "line 2: unknown change `exploded`");
}
