//! Figures: percentiles, min/median/max over runs, the tables, the goals,
//! the raw runs as JSON and a bar chart drawn as SVG by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::load::{RunResult, StormResult};
use crate::sut::Target;

/// A count as a float (exact below 2^53: every count here).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn f(x: u64) -> f64 {
    x as f64
}

/// A size as a count.
pub(crate) fn u(x: usize) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// The `p`th percentile (nearest rank) of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in 1..=len
    let rank = (p * f(u(sorted.len())) / 100.0 - 1e-9).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// Minimum, median and maximum.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spread {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            f64::midpoint(v[n / 2 - 1], v[n / 2])
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }

    fn show(self, digits: usize) -> String {
        format!(
            "{} / {} / {}",
            num(self.min, digits),
            num(self.median, digits),
            num(self.max, digits)
        )
    }
}

/// A number with thousands separators (no decimals) or with `digits` decimals.
fn num(x: f64, digits: usize) -> String {
    if digits > 0 {
        return format!("{x:.digits$}");
    }
    let s = format!("{x:.0}");
    let (sign, s) = s.strip_prefix('-').map_or(("", s.as_str()), |r| ("-", r));
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "—".into(), |v| num(v, digits))
}

/// Runs grouped by target, QoS and format, in that order.
type Key = (Target, u8, &'static str);

fn groups(runs: &[RunResult]) -> BTreeMap<Key, Vec<&RunResult>> {
    let mut g: BTreeMap<Key, Vec<&RunResult>> = BTreeMap::new();
    for r in runs {
        g.entry((r.target, r.qos, r.format.name())).or_default().push(r);
    }
    g
}

/// The sink bench's table: ingest while spooling, the drain into the
/// server, the server alone, and (with `judge`) the goal.
pub(crate) fn sink_table(runs: &[crate::sink::SinkResult], judge: bool) -> String {
    let mut out = String::new();
    if runs.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "InfluxDB sink into VictoriaMetrics (min / median / max over {} run{})",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    );
    let spread = |v: Vec<f64>| Spread::of(v).map_or_else(|| "—".into(), |s| s.show(0));
    let ratio = Spread::of(
        runs.iter()
            .filter_map(|r| r.drain_points_s.map(|d| d / r.alone_points_s.max(1e-9))),
    );
    let rows = [
        (
            "gateway ingest while spooling (msg/s)",
            spread(runs.iter().map(|r| r.ingest_msg_s).collect()),
        ),
        (
            "gateway spool → server (points/s)",
            spread(runs.iter().filter_map(|r| r.drain_points_s).collect()),
        ),
        (
            "the server alone, same batches (points/s)",
            spread(runs.iter().map(|r| r.alone_points_s).collect()),
        ),
        (
            "ratio drain / alone",
            ratio.map_or_else(
                || "—".into(),
                |s| format!("{} / {} / {}", num(s.min, 2), num(s.median, 2), num(s.max, 2)),
            ),
        ),
    ];
    for (name, v) in rows {
        let _ = writeln!(out, "{name:<44} {v:>31}");
    }
    if judge && let Some(r) = ratio {
        let _ = writeln!(
            out,
            "goal (issue 13): the sink delivers ≥ 0.85 of what the server takes alone: {} (median {:.2})",
            if r.median >= 0.85 { "met" } else { "NOT met" },
            r.median
        );
    }
    out
}

/// The latencies of a group, pooled and sorted.
fn pooled(rs: &[&RunResult]) -> Vec<f64> {
    let mut l: Vec<f64> = rs.iter().flat_map(|r| r.latencies_ms.iter().copied()).collect();
    l.sort_by(f64::total_cmp);
    l
}

/// The table of runs, the table of storms, the ratios and (with `judge`) the goals.
pub(crate) fn table(runs: &[RunResult], storms: &[StormResult], judge: bool) -> String {
    let mut out = String::new();
    if !runs.is_empty() {
        run_table(&mut out, runs);
    }
    if !storms.is_empty() {
        storm_table(&mut out, storms);
    }
    let goals = if judge { goal_lines(runs, storms) } else { Vec::new() };
    if !goals.is_empty() {
        let _ = writeln!(out, "goals (issue 13)");
        for g in goals {
            let _ = writeln!(out, "  {g}");
        }
    }
    out
}

fn run_table(out: &mut String, runs: &[RunResult]) {
    let n = runs.iter().map(|r| r.run).max().unwrap_or(0) + 1;
    let _ = writeln!(
        out,
        "throughput and alarm latency (min / median / max over {n} run{}; latencies pooled over the runs)",
        if n == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        out,
        "{:<18} {:>3} {:<6} {:>31} {:>8} {:>9} {:>6} {:>9} {:>8} {:>8} {:>36} {:>9}",
        "target",
        "qos",
        "format",
        "msg/s",
        "backlog",
        "µs CPU/msg",
        "cores",
        "broker µs",
        "RSS MB",
        "broker MB",
        "alarm ms p50 / p99 / p99.9 / max",
        "alarms"
    );
    for ((target, qos, format), rs) in groups(runs) {
        let msg_s = Spread::of(rs.iter().map(|r| r.msg_s));
        let us = Spread::of(rs.iter().map(|r| r.consumer_cpu_s / f(r.consumed.max(1)) * 1e6));
        let cores = Spread::of(rs.iter().map(|r| r.consumer_cpu_s / r.secs.max(1e-9)));
        let broker_us = Spread::of(
            rs.iter()
                .filter_map(|r| r.broker_cpu_s.map(|c| c / f(r.consumed.max(1)) * 1e6)),
        );
        let rss = rs.iter().map(|r| r.consumer_rss).max().unwrap_or(0);
        let brss = rs.iter().filter_map(|r| r.broker_rss).max();
        let lat = pooled(&rs);
        let sent: usize = rs.iter().map(|r| r.alarms_sent).sum();
        let lat_s = if lat.is_empty() {
            "—".to_owned()
        } else {
            format!(
                "{} / {} / {} / {}",
                opt(percentile(&lat, 50.0), 1),
                opt(percentile(&lat, 99.0), 1),
                opt(percentile(&lat, 99.9), 1),
                opt(lat.last().copied(), 1)
            )
        };
        let _ = writeln!(
            out,
            "{:<18} {:>3} {:<6} {:>31} {:>8} {:>9} {:>6} {:>9} {:>8} {:>8} {:>36} {:>9}",
            target.name(),
            qos,
            format,
            msg_s.map_or_else(|| "—".into(), |s| s.show(0)),
            opt(Spread::of(rs.iter().map(|r| f(r.max_backlog))).map(|s| s.median), 0),
            opt(us.map(|s| s.median), 1),
            opt(cores.map(|s| s.median), 2),
            opt(broker_us.map(|s| s.median), 1),
            num(f(rss) / 1e6, 1),
            opt(brss.map(|b| f(b) / 1e6), 1),
            lat_s,
            format!("{}/{sent}", lat.len())
        );
        let short: Vec<String> = rs
            .iter()
            .filter(|r| r.consumed < r.sent)
            .map(|r| format!("run {}: {} of {}", r.run + 1, r.consumed, r.sent))
            .collect();
        if !short.is_empty() {
            let _ = writeln!(out, "    consumed less than sent: {}", short.join(", "));
        }
        let lagged: u64 = rs.iter().map(|r| r.lagged).sum();
        if lagged > 0 {
            let _ = writeln!(
                out,
                "    the gateway's event stream dropped {lagged} events for this reader (`event: lagged`): \
                 an alarm whose alert was among them counts as not arrived"
            );
        }
    }
    let _ = writeln!(
        out,
        "(msg/s: samples consumed / first publish to last consumed; backlog: most samples published and not yet \
             consumed at one poll, median; µs CPU/msg and cores: the consumer \
         process — mosquitto_sub, the gateway or Node-RED — medians; broker µs: Mosquitto's; RSS: peak VmHWM)"
    );
    out.push('\n');
    let ratios = ratio_lines(runs);
    if !ratios.is_empty() {
        let _ = writeln!(out, "ratios of msg/s, paired by run (min / median / max)");
        for l in ratios {
            let _ = writeln!(out, "  {l}");
        }
        out.push('\n');
    }
}

fn storm_table(out: &mut String, storms: &[StormResult]) {
    let _ = writeln!(
        out,
        "event storm: N devices raise a fire alarm at once (min / median / max)"
    );
    let _ = writeln!(
        out,
        "{:<18} {:>7} {:>24} {:>24} {:>24} {:>13} {:>8}",
        "target", "events", "all published s", "last alert s", "last work order s", "seen", "source"
    );
    let mut by: BTreeMap<(Target, usize), Vec<&StormResult>> = BTreeMap::new();
    for s in storms {
        by.entry((s.target, s.events)).or_default().push(s);
    }
    for ((target, events), ss) in by {
        let p = Spread::of(ss.iter().map(|s| s.publish_secs));
        let a = Spread::of(ss.iter().filter_map(|s| s.alert_secs));
        let o = Spread::of(ss.iter().filter_map(|s| s.order_secs));
        let alerts: usize = ss.iter().map(|s| s.alerts).min().unwrap_or(0);
        let orders = ss.iter().filter_map(|s| s.orders).min();
        let sources: Vec<&str> = {
            let mut v: Vec<&str> = ss.iter().map(|s| s.source).collect();
            v.dedup();
            v
        };
        let _ = writeln!(
            out,
            "{:<18} {:>7} {:>24} {:>24} {:>24} {:>13} {:>8}",
            target.name(),
            num(f(u(events)), 0),
            p.map_or_else(|| "—".into(), |s| s.show(3)),
            a.map_or_else(|| "—".into(), |s| s.show(3)),
            o.map_or_else(|| "—".into(), |s| s.show(3)),
            match orders {
                Some(o) => format!("{alerts}+{o}"),
                None => format!("{alerts}"),
            },
            sources.join(",")
        );
    }
    let _ = writeln!(
        out,
        "(times from the first publish; seen: fewest alerts (+ orders) seen in a run; source: how they were \
         seen — the gateway's event stream, its counters when the stream lagged, Node-RED's MQTT alerts, \
         mosquitto_sub's output)"
    );
    out.push('\n');
}

fn ratio_lines(runs: &[RunResult]) -> Vec<String> {
    let pairs = [
        (Target::GatewayMosquitto, Target::Bare),
        (Target::GatewayEmbedded, Target::Bare),
        (Target::GatewayMosquitto, Target::NodeRed),
        (Target::GatewayEmbedded, Target::NodeRed),
    ];
    let mut out = Vec::new();
    let keys: Vec<(u8, &str)> = {
        let mut k: Vec<(u8, &str)> = runs.iter().map(|r| (r.qos, r.format.name())).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    for (a, b) in pairs {
        for &(qos, format) in &keys {
            if let Some(s) = ratio(runs, a, b, qos, format) {
                out.push(format!(
                    "{:<38} qos {qos} {format:<6} {}",
                    format!("{} / {}", a.name(), b.name()),
                    s.show(3)
                ));
            }
        }
    }
    out
}

/// msg/s of `a` over `b`, run by run.
fn ratio(runs: &[RunResult], a: Target, b: Target, qos: u8, format: &str) -> Option<Spread> {
    let find = |t: Target, run: usize| {
        runs.iter()
            .find(|r| r.target == t && r.qos == qos && r.format.name() == format && r.run == run)
    };
    Spread::of(
        runs.iter()
            .filter(|r| r.target == a && r.qos == qos && r.format.name() == format)
            .filter_map(|ra| {
                let rb = find(b, ra.run)?;
                (rb.msg_s > 0.0).then(|| ra.msg_s / rb.msg_s)
            }),
    )
}

/// The goals, each met or not, from what was measured.
fn goal_lines(runs: &[RunResult], storms: &[StormResult]) -> Vec<String> {
    let mut out = Vec::new();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for (qos, format) in {
        let mut k: Vec<(u8, &str)> = runs.iter().map(|r| (r.qos, r.format.name())).collect();
        k.sort_unstable();
        k.dedup();
        k
    } {
        if let Some(s) = ratio(runs, Target::GatewayMosquitto, Target::Bare, qos, format) {
            let cores = Spread::of(
                runs.iter()
                    .filter(|r| r.target == Target::GatewayMosquitto && r.qos == qos && r.format.name() == format)
                    .map(|r| r.consumer_cpu_s / r.secs.max(1e-9)),
            );
            let c = cores.map_or(f64::NAN, |c| c.median);
            out.push(format!(
                "qos {qos} {format}: gateway behind Mosquitto ≥ 0.95 × bare at ≤ 0.5 core: {:.3} × at {c:.2} cores (medians): {}",
                s.median,
                verdict(s.median >= 0.95 && c <= 0.5)
            ));
        }
        for t in [Target::GatewayMosquitto, Target::GatewayEmbedded] {
            if let Some(s) = ratio(runs, t, Target::NodeRed, qos, format) {
                out.push(format!(
                    "qos {qos} {format}: {} ≥ 10 × Node-RED: {:.1} × (median): {}",
                    t.name(),
                    s.median,
                    verdict(s.median >= 10.0)
                ));
            }
        }
        for t in [Target::GatewayMosquitto, Target::GatewayEmbedded] {
            let rs: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.target == t && r.qos == qos && r.format.name() == format)
                .collect();
            let lat = pooled(&rs);
            let sent: usize = rs.iter().map(|r| r.alarms_sent).sum();
            if let Some(p99) = percentile(&lat, 99.0) {
                let all = lat.len() == sent;
                out.push(format!(
                    "qos {qos} {format}: {} alarm p99 ≤ 100 ms while the samples flow: {p99:.1} ms{}: {}",
                    t.name(),
                    if all {
                        String::new()
                    } else {
                        format!(" ({} of {sent} arrived)", lat.len())
                    },
                    verdict(p99 <= 100.0 && all)
                ));
            }
        }
    }
    for t in [Target::GatewayMosquitto, Target::GatewayEmbedded] {
        let ss: Vec<&StormResult> = storms.iter().filter(|s| s.target == t).collect();
        if let (Some(first), Some(o)) = (ss.first(), Spread::of(ss.iter().filter_map(|s| s.order_secs))) {
            let a = Spread::of(ss.iter().filter_map(|s| s.alert_secs)).map_or(f64::NAN, |a| a.median);
            let complete = ss.iter().all(|s| s.alerts == s.events && s.orders == Some(s.events));
            out.push(format!(
                "{}: storm of {} events, last alert and order ≤ 1 s: alert {a:.3} s, order {:.3} s (medians){}: {}",
                t.name(),
                first.events,
                o.median,
                if complete { "" } else { ", not all seen" },
                if first.events < 10_000 {
                    "not judged (the goal is for 10,000 events)"
                } else {
                    verdict(complete && o.median <= 1.0 && a <= 1.0)
                }
            ));
        }
    }
    out
}

/// Every run and storm, raw.
pub(crate) fn json(runs: &[RunResult], storms: &[StormResult], meta: &serde_json::Value) -> serde_json::Value {
    json!({
        "meta": meta,
        "runs": runs.iter().map(|r| json!({
            "target": r.target.name(), "qos": r.qos, "format": r.format.name(), "run": r.run + 1,
            "sent": r.sent, "consumed": r.consumed, "seconds": r.secs, "msg_per_s": r.msg_s,
            "publish_seconds": r.publish_secs, "sample_bytes": r.sample_bytes,
            "consumer_cpu_s": r.consumer_cpu_s, "consumer_peak_rss_bytes": r.consumer_rss,
            "broker_cpu_s": r.broker_cpu_s, "broker_peak_rss_bytes": r.broker_rss,
            "loadgen_cpu_s": r.loadgen_cpu_s,
            "max_backlog": r.max_backlog, "alarms_sent": r.alarms_sent, "alarm_latencies_ms": r.latencies_ms, "stream_lagged": r.lagged,
        })).collect::<Vec<_>>(),
        "storms": storms.iter().map(|s| json!({
            "target": s.target.name(), "run": s.run + 1, "events": s.events,
            "publish_seconds": s.publish_secs, "alerts_seen": s.alerts, "last_alert_seconds": s.alert_secs,
            "orders_seen": s.orders, "last_order_seconds": s.order_secs, "source": s.source,
        })).collect::<Vec<_>>(),
    })
}

/// A bar chart (median, with a min–max whisker) of msg/s and of alarm p99
/// per target and QoS, as SVG.
pub(crate) fn svg(runs: &[RunResult]) -> String {
    // Per bar: its label, then (min, median, max) of each panel.
    let mut labels = Vec::new();
    let mut panels: [Vec<Option<(f64, f64, f64)>>; 2] = [Vec::new(), Vec::new()];
    for ((target, qos, format), rs) in groups(runs) {
        labels.push(if format == "json" {
            format!("{} q{qos}", target.name())
        } else {
            format!("{} q{qos} {format}", target.name())
        });
        panels[0].push(Spread::of(rs.iter().map(|r| r.msg_s)).map(|s| (s.min, s.median, s.max)));
        panels[1].push(percentile(&pooled(&rs), 99.0).map(|p| (p, p, p)));
    }
    let titles = [
        "messages per second (median; whisker min–max)",
        "alarm latency p99, ms (pooled over runs)",
    ];
    let (bar_w, gap, left, top, height) = (56.0, 24.0, 70.0, 40.0, 220.0);
    let panel_w = left + f(u(labels.len().max(1))) * (bar_w + gap) + 20.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        panel_w * 2.0,
        top + height + 120.0
    );
    for (pi, (title, values)) in titles.iter().zip(&panels).enumerate() {
        let x0 = f(u(pi)) * panel_w;
        let max = values.iter().flatten().map(|v| v.2).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
        let y = |v: f64| top + height - height * v / max;
        let _ = writeln!(
            out,
            "<text x=\"{:.0}\" y=\"20\" font-size=\"13\">{title}</text>",
            x0 + 10.0
        );
        let _ = writeln!(
            out,
            "<line x1=\"{0:.0}\" y1=\"{1:.0}\" x2=\"{0:.0}\" y2=\"{2:.0}\" stroke=\"black\"/>\
             <line x1=\"{0:.0}\" y1=\"{2:.0}\" x2=\"{3:.0}\" y2=\"{2:.0}\" stroke=\"black\"/>",
            x0 + left,
            top,
            top + height,
            x0 + panel_w - 10.0
        );
        for tick in 0..=4 {
            let v = max * f(tick) / 4.0;
            let _ = writeln!(
                out,
                "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
                x0 + left - 4.0,
                y(v) + 4.0,
                num(v, usize::from(max < 10.0))
            );
        }
        for (i, (label, value)) in labels.iter().zip(values).enumerate() {
            let x = x0 + left + gap / 2.0 + f(u(i)) * (bar_w + gap);
            if let Some((lo, mid, hi)) = *value {
                let colour = if label.starts_with("gateway") {
                    "#3b6ea5"
                } else {
                    "#9a9a9a"
                };
                let _ = writeln!(
                    out,
                    "<rect x=\"{x:.0}\" y=\"{:.1}\" width=\"{bar_w:.0}\" height=\"{:.1}\" fill=\"{colour}\"/>",
                    y(mid),
                    top + height - y(mid)
                );
                let cx = x + bar_w / 2.0;
                if hi > lo {
                    let _ = writeln!(
                        out,
                        "<line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                        y(lo),
                        y(hi)
                    );
                }
                let _ = writeln!(
                    out,
                    "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>",
                    y(hi) - 3.0,
                    num(mid, usize::from(mid < 10.0))
                );
            }
            let _ = writeln!(
                out,
                "<text transform=\"translate({:.1},{:.1}) rotate(40)\">{label}</text>",
                x + 6.0,
                top + height + 12.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Pass/fail checks of a smoke run.
#[derive(Default)]
pub(crate) struct Checks {
    items: Vec<(String, bool)>,
}

impl Checks {
    pub(crate) fn check(&mut self, name: String, ok: bool) {
        eprintln!("{} {name}", if ok { "ok  " } else { "FAIL" });
        self.items.push((name, ok));
    }

    pub(crate) fn runs(&mut self, runs: &[RunResult]) {
        for r in runs {
            let label = format!("{} qos {} {} run {}", r.target, r.qos, r.format.name(), r.run + 1);
            self.check(
                format!("{label}: consumed {} of {} samples", r.consumed, r.sent),
                r.consumed >= r.sent,
            );
            self.check(
                format!("{label}: {} of {} alarms arrived", r.latencies_ms.len(), r.alarms_sent),
                r.latencies_ms.len() == r.alarms_sent,
            );
        }
    }

    pub(crate) fn storms(&mut self, storms: &[StormResult]) {
        for s in storms {
            let label = format!("{} storm run {}", s.target, s.run + 1);
            self.check(
                format!("{label}: {} of {} alerts", s.alerts, s.events),
                s.alerts == s.events,
            );
            if let Some(o) = s.orders {
                self.check(format!("{label}: {o} of {} work orders", s.events), o == s.events);
            }
        }
    }

    /// `N passed, M failed`, and whether all passed.
    pub(crate) fn summary(&self) -> (String, bool) {
        let failed = self.items.iter().filter(|(_, ok)| !ok).count();
        (
            format!("{} passed, {failed} failed", self.items.len() - failed),
            failed == 0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f).collect();
        assert_eq!(percentile(&v, 50.0), Some(500.0));
        assert_eq!(percentile(&v, 99.0), Some(990.0));
        assert_eq!(percentile(&v, 99.9), Some(999.0));
        assert_eq!(percentile(&v, 100.0), Some(1000.0));
        assert_eq!(percentile(&[3.0], 99.9), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn spread_and_numbers() {
        let s = Spread::of([5.0, 1.0, 3.0, 2.0]).expect("values");
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 5.0));
        assert_eq!(num(1_234_567.0, 0), "1,234,567");
        assert_eq!(num(999.0, 0), "999");
        assert_eq!(num(0.1234, 2), "0.12");
    }
}
