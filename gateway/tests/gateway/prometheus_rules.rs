//! `dashboards/prometheus/gateway-rules.yml` against the metrics the gateway
//! registers: every metric an expression reads must be one
//! `Metrics::register()` puts out (encoded as Prometheus text, with the
//! suffixes a scrape shows: `_total`, `_bucket`, ...), so renaming a metric
//! fails here instead of silently disarming an alert.

use std::collections::BTreeSet;

use yaml_rust2::{Yaml, YamlLoader};

/// What Prometheus itself adds to every scrape: the only names not the gateway's.
const PROMETHEUS_OWN: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

/// `PromQL` words that are neither metrics nor functions.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan", // Aggregations, which may stand before `by (...)` rather than `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The sample names a scrape of the gateway can show, from the registry's
/// text encoding: each `# TYPE` line's family with its type's suffixes.
fn registered() -> BTreeSet<String> {
    let metrics = gateway::metrics::Metrics::default();
    // A labelled family is encoded only once it has a child: give the ones
    // the rules read one (the names still come from `register()`).
    let _ = metrics
        .modbus_up
        .get_or_create(&gateway::metrics::ModbusLabel { device: "x".into() });
    let _ = metrics.devices.get_or_create(&gateway::metrics::DeviceLabel {
        class: "elevator".into(),
        status: "online".into(),
    });
    let registry = metrics.register();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The metric names a `PromQL` expression reads: identifiers outside label
/// matchers (`{...}`), ranges (`[...]`), strings and grouping lists
/// (`by (...)`), that are not functions (followed by `(`) or keywords.
fn metrics_in(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += usize::from(chars[i] == '\\') + 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += usize::from(chars[i] == '\\') + 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_group = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word.as_str()) {
                    skip_group = true;
                } else if next == Some(&'(') || KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    // A function call or an operator.
                } else {
                    out.push(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number, a duration (5m) or an exponent (1e3): not a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[test]
fn the_expression_reader_finds_metrics_and_only_metrics() {
    assert_eq!(
        metrics_in(r#"sum by (site, class) (rate(fm_a_total{reason="x{y}"}[5m])) > 1e3 and on(instance) fm_b == 0"#),
        ["fm_a_total", "fm_b"]
    );
    assert_eq!(
        metrics_in("predict_linear(fm_c[6h], 3 * 86400) < 0 or up{job=\"fm\"} == 0"),
        ["fm_c", "up"]
    );
}

#[test]
fn every_metric_the_rules_use_is_one_the_gateway_registers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dashboards/prometheus/gateway-rules.yml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "one YAML document");
    let known = registered();
    assert!(
        known.contains("fm_store_commit_failures") && known.contains("fm_ingest_lost_total"),
        "the registry's names were not read: {known:?}"
    );
    let groups = docs[0]["groups"].as_vec().expect("`groups:` is a list");
    let mut alerts = BTreeSet::new();
    let mut used = BTreeSet::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "every group has a name");
        for rule in group["rules"].as_vec().expect("`rules:` is a list") {
            let name = rule["alert"]
                .as_str()
                .expect("every rule is an alerting rule with `alert:`");
            assert!(alerts.insert(name.to_owned()), "{name} twice");
            let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{name}: no `expr:`"));
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("critical" | "warning")),
                "{name}: severity critical or warning, not {severity:?}"
            );
            for key in ["summary", "description"] {
                let a = &rule["annotations"][key];
                assert!(a.as_str().is_some_and(|s| !s.is_empty()), "{name}: annotation {key}");
            }
            if let Yaml::String(d) = &rule["for"] {
                assert!(humantime::parse_duration(d).is_ok(), "{name}: for: {d}");
            }
            let metrics = metrics_in(expr);
            assert!(!metrics.is_empty(), "{name}: reads no metric: {expr}");
            for m in metrics {
                assert!(
                    known.contains(&m) || PROMETHEUS_OWN.contains(&m.as_str()),
                    "{name}: `{m}` is not a metric the gateway registers"
                );
                used.insert(m);
            }
        }
    }
    // The health the rules are there for, each watched by at least one rule.
    for needed in [
        "up",
        "fm_store_commit_failures",
        "fm_pipeline_telemetry_held",
        "fm_store_disk_free_bytes",
        "fm_mqtt_subscribed",
        "fm_influx_spool_batches",
        "fm_broker_dropped_qos1_total",
        "fm_unstored_dropped_total",
    ] {
        assert!(used.contains(needed), "no rule watches {needed}");
    }
}
