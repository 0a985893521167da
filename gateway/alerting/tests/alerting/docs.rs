//! `docs/rules.md` is tested: its tables of the built-in packs are printed
//! from the packs themselves, and its configuration and rule-test examples
//! work. Run with `FM_BLESS_DOCS=1` to rewrite the tables after changing a
//! pack.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use alerting::rule::Figure;
use alerting::ruleset::builtin_packs;
use alerting::{AlertingConfig, Engine, Pack, RuleDef, RuleKind, Scope};
use protocol::{DeviceClass, EventCode, Severity};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rules.md");

fn doc() -> String {
    std::fs::read_to_string(DOC).expect("docs/rules.md")
}

/// Text for a table cell: a `|` (conditions have `||`) would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Code in a table cell.
fn code(text: &str) -> String {
    format!("`{}`", cell(text))
}

/// A figure as written in TOML (what an override sets).
fn toml_literal(f: &Figure) -> String {
    match f {
        Figure::Number(n) => n.to_string(),
        Figure::Text(t) => format!("\"{t}\""),
    }
}

/// A figure's value, without quotes.
fn plain(f: &Figure) -> String {
    match f {
        Figure::Number(n) => n.to_string(),
        Figure::Text(t) => t.clone(),
    }
}

/// A figure of a rule with its default value: ``20s (`$trapped_outside_zone`)``.
fn figure(f: &Figure, params: &BTreeMap<String, Figure>) -> String {
    match f {
        Figure::Text(t) if t.starts_with('$') => {
            let value = params.get(&t[1..]).map_or_else(|| "?".to_owned(), plain);
            format!("{value} ({})", code(t))
        }
        other => plain(other),
    }
}

/// The `$parameters` a condition reads, in order of appearance.
fn params_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

/// Every `$parameter` a rule reads, in its conditions or its figures.
fn params_of(r: &RuleDef) -> Vec<&str> {
    let texts = [&r.when, &r.clear, &r.of, &r.reset, &r.applies];
    let figures = [
        &r.for_,
        &r.samples,
        &r.keep_firing_for,
        &r.window,
        &r.at_least,
        &r.intervals,
    ];
    let mut out: Vec<&str> = texts.into_iter().flatten().flat_map(|t| params_in(t)).collect();
    out.extend(figures.into_iter().flatten().filter_map(|f| match f {
        Figure::Text(t) => t.strip_prefix('$'),
        Figure::Number(_) => None,
    }));
    out
}

/// What a rule judges, with its figures.
fn condition(r: &RuleDef, params: &BTreeMap<String, Figure>) -> String {
    let fig = |f: &Figure| figure(f, params);
    let mut parts = Vec::new();
    match r.kind {
        RuleKind::Condition => {
            parts.push(r.when.as_deref().map_or_else(|| "—".to_owned(), code));
            if let Some(c) = &r.clear {
                parts.push(format!("clear {}", code(c)));
            }
            if let Some(w) = &r.window {
                parts.push(format!("rate over {}", fig(w)));
            }
            match (&r.for_, &r.samples) {
                (None, None) => parts.push("at once".to_owned()),
                (f, s) => {
                    if let Some(f) = f {
                        parts.push(format!("for {}", fig(f)));
                    }
                    if let Some(s) = s {
                        parts.push(format!("in {} consecutive samples", fig(s)));
                    }
                }
            }
            if let Some(k) = &r.keep_firing_for {
                parts.push(format!("keep firing for {}", fig(k)));
            }
        }
        RuleKind::Count => {
            parts.push(format!(
                "rising edges of {}",
                r.of.as_deref().map_or_else(|| "—".to_owned(), code)
            ));
            if let Some(reset) = &r.reset {
                parts.push(format!("reset by {}", code(reset)));
            }
            let at_least = r.at_least.as_ref().map_or_else(|| "1".to_owned(), fig);
            let window = r.window.as_ref().map_or_else(|| "—".to_owned(), fig);
            parts.push(format!("at least {at_least} within {window}"));
        }
        RuleKind::Offline => {
            let n = r.intervals.as_ref().map_or_else(|| "3".to_owned(), fig);
            parts.push(format!("a death, or silence for {n} × the declared interval"));
        }
    }
    if let Some(a) = &r.applies {
        parts.push(format!("judged only while {}", code(a)));
    }
    let mut s = parts.join(", ");
    // Parameters inside conditions: their defaults, once each.
    let mut seen = Vec::new();
    for t in [&r.when, &r.clear, &r.of, &r.reset].into_iter().flatten() {
        for p in params_in(t) {
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
    }
    if !seen.is_empty() {
        let defaults: Vec<String> = seen
            .iter()
            .map(|p| {
                let v = params.get(*p).map_or_else(|| "?".to_owned(), plain);
                format!("{} = {v}", code(&format!("${p}")))
            })
            .collect();
        write!(s, "; {}", defaults.join(", ")).unwrap();
    }
    s
}

/// The severity a rule's alert gets, and whether it asks for a work order.
fn severity(r: &RuleDef) -> String {
    let default = EventCode::from_name(&r.code).map_or(Severity::Major, EventCode::severity);
    let sev = r.severity.unwrap_or(default);
    let mut s = sev.to_string();
    if r.severity.is_some() {
        s.push_str(" (set by the rule)");
    }
    if !r.dispatch.unwrap_or(sev != Severity::Info) {
        s.push_str("; no work order");
    }
    s
}

fn title(class: DeviceClass) -> &'static str {
    match class {
        DeviceClass::Elevator => "Elevators",
        DeviceClass::Firepump => "Fire pumps and fire water",
        DeviceClass::Charger => "E-bike charging bays",
    }
}

fn kind(r: &RuleDef) -> String {
    let kind = match r.kind {
        RuleKind::Condition => "condition",
        RuleKind::Count => "count",
        RuleKind::Offline => "offline",
    };
    let scope = match r.scope {
        Scope::Device => "device",
        Scope::Port => "port",
    };
    format!("{kind}, {scope}")
}

/// The text between `<!-- BEGIN packs -->` and `<!-- END packs -->`.
fn packs_section(packs: &[Pack]) -> String {
    let mut s = String::new();
    for (i, pack) in packs.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        writeln!(s, "### {} (`{}`)\n", title(pack.class), pack.class).unwrap();
        s.push_str("| parameter | default | read by |\n|---|---|---|\n");
        for (name, value) in &pack.params {
            let users: Vec<String> = pack
                .rule
                .iter()
                .filter(|r| params_of(r).contains(&name.as_str()))
                .map(|r| code(&r.id))
                .collect();
            writeln!(
                s,
                "| {} | {} | {} |",
                code(name),
                code(&toml_literal(value)),
                users.join(", ")
            )
            .unwrap();
        }
        if !pack.systems.is_empty() {
            let names: Vec<&String> = {
                let mut n: Vec<&String> = pack.systems.values().flat_map(|p| p.params.keys()).collect();
                n.sort();
                n.dedup();
                n
            };
            s.push_str("\n| `system` | serves |");
            for n in &names {
                write!(s, " {} |", code(n)).unwrap();
            }
            s.push_str(" source |\n|---|---|");
            s.push_str(&"---|".repeat(names.len()));
            s.push_str("---|\n");
            for (name, preset) in &pack.systems {
                write!(s, "| {} | {} |", code(name), cell(&preset.about)).unwrap();
                for n in &names {
                    let v = preset.params.get(*n).or_else(|| pack.params.get(*n));
                    write!(s, " {} |", v.map_or_else(|| "—".to_owned(), plain)).unwrap();
                }
                writeln!(s, " {} |", cell(&preset.source)).unwrap();
            }
        }
        s.push_str("\n| rule | code | kind, scope | condition and figures | severity | source |\n");
        s.push_str("|---|---|---|---|---|---|\n");
        for r in &pack.rule {
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                code(&r.id),
                code(&r.code),
                kind(r),
                condition(r, &pack.params),
                severity(r),
                cell(r.source.as_deref().unwrap_or("—"))
            )
            .unwrap();
        }
    }
    s
}

/// Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->`.
fn with_region(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- BEGIN {name} -->\n");
    let end = format!("<!-- END {name} -->");
    let b = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/rules.md lacks {begin}"))
        + begin.len();
    let e = doc[b..]
        .find(&end)
        .unwrap_or_else(|| panic!("docs/rules.md lacks {end}"))
        + b;
    format!("{}{body}{}", &doc[..b], &doc[e..])
}

#[test]
fn docs_rules_md_pack_tables_match_the_packs() {
    let doc = doc();
    let expected = with_region(&doc, "packs", &packs_section(&builtin_packs()));
    if expected != doc {
        if std::env::var_os("FM_BLESS_DOCS").is_some() {
            std::fs::write(DOC, &expected).unwrap();
            return;
        }
        let first = doc.lines().zip(expected.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "docs/rules.md pack tables differ from the packs at line {}; rerun with FM_BLESS_DOCS=1\n  doc  : {:?}\n  packs: {:?}",
            first + 1,
            doc.lines().nth(first),
            expected.lines().nth(first)
        );
    }
}

/// `(tag, text)` of every fenced block after `<!-- example: TAG -->`.
fn examples(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(tag) = line
            .trim()
            .strip_prefix("<!-- example:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let tag = tag.trim().to_owned();
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "example {tag}: a fenced block must follow");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push((tag, body.join("\n")));
    }
    out
}

fn parse_config(text: &str) -> AlertingConfig {
    let table: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    table
        .get("alerting")
        .cloned()
        .map(|v| v.try_into().unwrap_or_else(|e| panic!("{e}\n{text}")))
        .unwrap_or_default()
}

#[test]
fn docs_rules_md_examples_work() {
    let mut config = None;
    let mut counts = BTreeMap::<&str, usize>::new();
    let all = examples(&doc());
    for (tag, text) in &all {
        match tag.as_str() {
            "config" => {
                let c = parse_config(text);
                if let Err(p) = c.build() {
                    panic!("config example: field `{}`: {}\n{text}", p.field, p.message);
                }
                config = Some(c);
            }
            "config-error" => {
                let Err(p) = parse_config(text).build() else {
                    panic!("config-error example is accepted:\n{text}");
                };
                let said = format!("# error: field `{}`: {}", p.field, p.message);
                assert!(
                    text.lines().any(|l| l.trim() == said),
                    "config-error example must say what `gateway check` says:\n{said}\n{text}"
                );
            }
            "series" => crate::check(text),
            "series with the config above" => {
                let c: &AlertingConfig = config.as_ref().expect("a config example before it");
                let b = c.build().unwrap();
                let mut e = Engine::new(b.rules, b.settings);
                e.set_windows(b.windows);
                e.set_buildings(b.buildings);
                crate::check_with(&mut e, text);
            }
            other => panic!("unknown example tag `{other}`"),
        }
        *counts.entry(tag.as_str()).or_default() += 1;
    }
    for tag in ["config", "config-error", "series", "series with the config above"] {
        assert!(counts.contains_key(tag), "docs/rules.md has no `{tag}` example");
    }
}
