//! A small text format for rule tests, in the spirit of `promtool test rules`:
//! series of samples at a fixed interval, and the alerts expected.
//!
//! ```text
//! interval 1s
//! series lakeside/firepump/PUMP-B2 network_pressure_mpa: 0.3 0.05x40 _x200 0.3
//! series lakeside/charger/BAY-07 temp_c{port=2}: 30 31 66x6 _ 40
//! expect 31s fired firepump.low_pressure lakeside/firepump/PUMP-B2 network_pressure_mpa
//! expect 220s no_data firepump.low_pressure lakeside/firepump/PUMP-B2 network_pressure_mpa
//! expect 241s resolved firepump.low_pressure lakeside/firepump/PUMP-B2 network_pressure_mpa
//! ```
//!
//! Step `i` of every series is at `i × interval`; `vxN` is `v` N times, `_` is
//! no sample at that step. The engine is ticked at every step after the
//! samples. [`run`] returns what fired and resolved, to compare with the
//! `expect` lines.

use crate::engine::{Effect, Engine, Sample, SeriesKey};

/// A line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for ParseError {}

/// One expected (or observed) transition: `(at ms, "fired"|"resolved"|"no_data", rule, device, metric)`.
pub type Transition = (i64, String, String, String, String);

/// A parsed test.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesTest {
    interval_ms: i64,
    series: Vec<(SeriesKey, Vec<Option<f64>>)>,
    /// The expected transitions, in file order.
    pub expected: Vec<Transition>,
}

fn duration_ms(text: &str) -> Option<i64> {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    match unit {
        "ms" => Some(n),
        "s" => Some(n * 1000),
        "m" => Some(n * 60_000),
        "h" => Some(n * 3_600_000),
        _ => None,
    }
}

fn metric_and_port(text: &str) -> Option<(String, Option<u8>)> {
    match text.split_once('{') {
        None => Some((text.to_owned(), None)),
        Some((m, rest)) => {
            let port = rest.strip_suffix('}')?.strip_prefix("port=")?.parse().ok()?;
            Some((m.to_owned(), Some(port)))
        }
    }
}

fn values(text: &str) -> Option<Vec<Option<f64>>> {
    let mut out = Vec::new();
    for tok in text.split_whitespace() {
        let (v, n) = match tok.split_once('x') {
            Some((v, n)) => (v, n.parse::<usize>().ok()?),
            None => (tok, 1),
        };
        let v = if v == "_" { None } else { Some(v.parse::<f64>().ok()?) };
        out.extend(std::iter::repeat_n(v, n));
    }
    Some(out)
}

impl SeriesTest {
    /// Parses the text.
    ///
    /// # Errors
    /// A [`ParseError`] naming the line.
    pub fn parse(text: &str) -> Result<SeriesTest, ParseError> {
        let mut t = SeriesTest {
            interval_ms: 1000,
            ..SeriesTest::default()
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |p: &str| ParseError {
                line: i + 1,
                problem: p.to_owned(),
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "interval" => t.interval_ms = duration_ms(rest.trim()).ok_or_else(|| err("bad interval (e.g. 1s)"))?,
                "series" => {
                    let (head, vals) = rest
                        .split_once(':')
                        .ok_or_else(|| err("expected `series DEVICE METRIC: values`"))?;
                    let (device, metric) = head
                        .trim()
                        .split_once(' ')
                        .ok_or_else(|| err("expected DEVICE METRIC"))?;
                    let (metric, port) = metric_and_port(metric.trim()).ok_or_else(|| err("bad metric{port=N}"))?;
                    let values = values(vals).ok_or_else(|| err("bad values (numbers, vxN, _)"))?;
                    t.series.push((
                        SeriesKey {
                            device: device.to_owned(),
                            metric,
                            port,
                        },
                        values,
                    ));
                }
                "expect" => {
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    let [at, what, rule, device, metric] = parts[..] else {
                        return Err(err("expected `expect AT fired|resolved|no_data RULE DEVICE METRIC`"));
                    };
                    let at = duration_ms(at).ok_or_else(|| err("bad time"))?;
                    if !matches!(what, "fired" | "resolved" | "no_data") {
                        return Err(err("expected fired, resolved or no_data"));
                    }
                    t.expected
                        .push((at, what.into(), rule.into(), device.into(), metric.into()));
                }
                other => return Err(err(&format!("unknown keyword `{other}`"))),
            }
        }
        Ok(t)
    }

    /// Runs the series through `engine`; returns the transitions it produced.
    pub fn run(&self, engine: &mut Engine) -> Vec<Transition> {
        let steps = self.series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        let mut out = Vec::new();
        let mut push = |effects: Vec<Effect>| {
            for e in effects {
                let (at, what, key) = match e {
                    Effect::Fired { at, key, .. } => (at, "fired", key),
                    Effect::Resolved { at, key, .. } => (at, "resolved", key),
                    Effect::NoData { at, key } => (at, "no_data", key),
                    Effect::DataResumed { .. } => continue,
                };
                let metric = match key.series.port {
                    Some(p) => format!("{}{{port={p}}}", key.series.metric),
                    None => key.series.metric.clone(),
                };
                out.push((at, what.to_owned(), key.rule, key.series.device, metric));
            }
        };
        for step in 0..steps {
            let now = i64::try_from(step).unwrap_or(i64::MAX).saturating_mul(self.interval_ms);
            for (key, vals) in &self.series {
                if let Some(Some(v)) = vals.get(step) {
                    push(engine.observe(&Sample {
                        series: key.clone(),
                        value: *v,
                        now,
                    }));
                }
            }
            push(engine.tick(now));
        }
        out
    }
}
