//! A small text format for rule tests, in the spirit of `promtool test
//! rules`: series of samples at a fixed interval, node events and link
//! changes at given times, and the alert transitions expected.
//!
//! ```text
//! interval 1s
//! device lakeside/charger/BAY-07
//! birth ports=4
//! series temp_c{port=2}: 30 31 66x6 _ 40
//! series smoke: 0x20 1 0
//! event 12s over_temperature port=2 active
//! expect 7s fired over_temperature{port=2}
//! expect 9s resolved over_temperature{port=2}
//! expect 20s fired smoke
//! expect 21s resolved smoke
//! ```
//!
//! Step `i` of every series is at `i × interval`; `vxN` is `v` N times,
//! `a..b:N` is N values from `a` to `b` in equal steps, and `_` a step
//! without a sample. At each step the actions due (events,
//! `death`, `uplink down|up`, `ack`) run first, then the samples of every
//! device (one `data` message per device), then a tick. `run 30m` carries the
//! clock on with ticks alone. `device SITE/CLASS/ID` sets the device of the
//! lines that follow; a series may also name its own (`series
//! lakeside/firepump/P-1 network_pressure_mpa: ...`).
//!
//! `expect AT CHANGE CODE[{port=N}] [on SITE/CLASS/ID]` lists the transitions
//! expected, with CHANGE one of `pending fired acknowledged resolved
//! cancelled notified dispatched closed no_data stale`. The check compares
//! the kinds named by `check` (default `fired resolved`) exactly: an
//! unexpected firing fails the test as surely as a missing one.

use std::fmt::Write as _;

use protocol::{Birth, Data, Death, DeviceClass, Event, Message, Named, PortReadings, Timestamp, V1, Value};

use crate::effect::{Change, DataState, Effect, WorkOrderIntent};
use crate::engine::{DeviceRef, Engine, Input};
use crate::rule::duration_ms;

/// A line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// One transition, as the test format writes it: `7s fired over_temperature{port=2} on lakeside/charger/BAY-07`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Transition {
    /// When, in ms.
    pub at: i64,
    /// What happened.
    pub what: String,
    /// The code, with `{port=N}` for port alerts.
    pub code: String,
    /// `site/class/device`.
    pub device: String,
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms {} {} on {}", self.at, self.what, self.code, self.device)
    }
}

const KINDS: [&str; 11] = [
    "pending",
    "fired",
    "acknowledged",
    "resolved",
    "cancelled",
    "notified",
    "dispatched",
    "closed",
    "no_data",
    "stale",
    "fresh",
];

#[derive(Clone, Debug, PartialEq, Eq)]
struct Dev {
    site: String,
    class: DeviceClass,
    id: String,
}

impl Dev {
    fn key(&self) -> String {
        format!("{}/{}/{}", self.site, self.class, self.id)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Action {
    Event {
        dev: Dev,
        code: String,
        port: Option<u8>,
        active: bool,
        hist: bool,
    },
    Birth {
        dev: Dev,
        facts: Vec<(String, f64)>,
    },
    Death(Dev),
    Uplink(bool),
    Ack {
        code: String,
        dev: Dev,
        by: String,
    },
}

/// One series: its device, metric, port and values per step.
type Series = (Dev, String, Option<u8>, Vec<Option<f64>>);

/// A parsed test.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesTest {
    interval_ms: i64,
    run_ms: i64,
    series: Vec<Series>,
    actions: Vec<(i64, Action)>,
    checks: Vec<String>,
    /// The expected transitions, in file order.
    pub expected: Vec<Transition>,
}

fn parse_dev(text: &str) -> Option<Dev> {
    let mut it = text.splitn(3, '/');
    let (site, class, id) = (it.next()?, it.next()?, it.next()?);
    Some(Dev {
        site: site.to_owned(),
        class: DeviceClass::from_name(class)?,
        id: id.to_owned(),
    })
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
        if let Some((from, rest)) = tok.split_once("..") {
            let (to, n) = rest.split_once(':')?;
            let (from, to, n): (f64, f64, usize) = (from.parse().ok()?, to.parse().ok()?, n.parse().ok()?);
            #[allow(clippy::cast_precision_loss)]
            let step = if n > 1 { (to - from) / (n - 1) as f64 } else { 0.0 };
            #[allow(clippy::cast_precision_loss)]
            out.extend((0..n).map(|i| Some(from + step * i as f64)));
            continue;
        }
        let (v, n) = match tok.split_once('x') {
            Some((v, n)) => (v, n.parse::<usize>().ok()?),
            None => (tok, 1),
        };
        let v = match v {
            "_" => None,
            "true" => Some(1.0),
            "false" => Some(0.0),
            v => Some(v.parse::<f64>().ok()?),
        };
        out.extend(std::iter::repeat_n(v, n));
    }
    Some(out)
}

impl SeriesTest {
    /// Parses the text.
    ///
    /// # Errors
    /// A [`ParseError`] naming the line.
    #[allow(clippy::too_many_lines)]
    pub fn parse(text: &str) -> Result<SeriesTest, ParseError> {
        let mut t = SeriesTest {
            interval_ms: 1000,
            ..SeriesTest::default()
        };
        let mut current: Option<Dev> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            let err = |p: &str| ParseError {
                line: i + 1,
                problem: p.to_owned(),
            };
            if line.is_empty() {
                continue;
            }
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim();
            let dev = || current.clone().ok_or_else(|| err("no `device` line before this one"));
            let time = |s: &str| duration_ms(s).map_err(|e| err(&e));
            match word {
                "interval" => t.interval_ms = time(rest)?.max(1),
                "run" => t.run_ms = time(rest)?,
                "device" => current = Some(parse_dev(rest).ok_or_else(|| err("expected SITE/CLASS/DEVICE"))?),
                "check" => {
                    for k in rest.split_whitespace() {
                        if !KINDS.contains(&k) {
                            return Err(err(&format!("unknown change `{k}`")));
                        }
                        t.checks.push(k.to_owned());
                    }
                }
                "series" => {
                    let (head, vals) = rest
                        .split_once(':')
                        .ok_or_else(|| err("expected `series [DEVICE] METRIC: values`"))?;
                    let mut parts = head.split_whitespace();
                    let (d, metric) = match (parts.next(), parts.next()) {
                        (Some(d), Some(m)) => (parse_dev(d).ok_or_else(|| err("bad device"))?, m),
                        (Some(m), None) => (dev()?, m),
                        _ => return Err(err("expected a metric")),
                    };
                    let (metric, port) = metric_and_port(metric).ok_or_else(|| err("bad metric{port=N}"))?;
                    let values = values(vals).ok_or_else(|| err("bad values (numbers, true, false, vxN, _)"))?;
                    t.series.push((d, metric, port, values));
                }
                "birth" => {
                    let mut facts = Vec::new();
                    let mut at = 0;
                    for kv in rest.split_whitespace() {
                        let (k, v) = kv.split_once('=').ok_or_else(|| err("expected name=value"))?;
                        if k == "at" {
                            at = time(v)?;
                        } else {
                            facts.push((k.to_owned(), v.parse().map_err(|_| err("bad number"))?));
                        }
                    }
                    t.actions.push((at, Action::Birth { dev: dev()?, facts }));
                }
                "death" => t.actions.push((time(rest)?, Action::Death(dev()?))),
                "uplink" => {
                    let (at, state) = rest
                        .split_once(' ')
                        .ok_or_else(|| err("expected `uplink AT up|down`"))?;
                    let up = match state.trim() {
                        "up" => true,
                        "down" => false,
                        _ => return Err(err("expected up or down")),
                    };
                    t.actions.push((time(at)?, Action::Uplink(up)));
                }
                "event" => {
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    let [at, code, more @ ..] = &parts[..] else {
                        return Err(err("expected `event AT CODE [port=N] active|cleared [hist]`"));
                    };
                    let mut port = None;
                    let mut active = None;
                    let mut hist = false;
                    for m in more {
                        match *m {
                            "active" => active = Some(true),
                            "cleared" => active = Some(false),
                            "hist" => hist = true,
                            p => {
                                port = Some(
                                    p.strip_prefix("port=")
                                        .and_then(|n| n.parse().ok())
                                        .ok_or_else(|| err("bad port=N"))?,
                                );
                            }
                        }
                    }
                    let active = active.ok_or_else(|| err("say `active` or `cleared`"))?;
                    t.actions.push((
                        time(at)?,
                        Action::Event {
                            dev: dev()?,
                            code: (*code).to_owned(),
                            port,
                            active,
                            hist,
                        },
                    ));
                }
                "ack" => {
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    let [at, code, by] = &parts[..] else {
                        return Err(err("expected `ack AT CODE[{port=N}] by=NAME`"));
                    };
                    let by = by.strip_prefix("by=").ok_or_else(|| err("expected by=NAME"))?;
                    t.actions.push((
                        time(at)?,
                        Action::Ack {
                            code: (*code).to_owned(),
                            dev: dev()?,
                            by: by.to_owned(),
                        },
                    ));
                }
                "expect" => {
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    let (at, what, code, device) = match &parts[..] {
                        [at, what, code] => (*at, *what, *code, dev()?.key()),
                        [at, what, code, "on", d] => (*at, *what, *code, (*d).to_owned()),
                        _ => return Err(err("expected `expect AT CHANGE CODE[{port=N}] [on SITE/CLASS/ID]`")),
                    };
                    if !KINDS.contains(&what) {
                        return Err(err(&format!("unknown change `{what}`")));
                    }
                    t.expected.push(Transition {
                        at: time(at)?,
                        what: what.to_owned(),
                        code: code.to_owned(),
                        device,
                    });
                }
                other => return Err(err(&format!("unknown keyword `{other}`"))),
            }
        }
        t.actions.sort_by_key(|(at, _)| *at);
        if t.checks.is_empty() {
            t.checks = vec!["fired".into(), "resolved".into()];
        }
        Ok(t)
    }

    /// Runs the test through `engine`; returns every transition it produced
    /// of the kinds the test checks.
    pub fn run(&self, engine: &mut Engine) -> Vec<Transition> {
        let steps_by_series = self.series.iter().map(|s| s.3.len()).max().unwrap_or(0);
        let last_action = self.actions.last().map_or(0, |(at, _)| *at);
        let end = self
            .run_ms
            .max(last_action)
            .max(i64::try_from(steps_by_series).unwrap_or(0).saturating_sub(1) * self.interval_ms);
        let mut devices: Vec<Dev> = Vec::new();
        for (d, ..) in &self.series {
            if !devices.contains(d) {
                devices.push(d.clone());
            }
        }
        let mut out = Vec::new();
        let mut effects = Vec::new();
        let mut next_action = 0;
        let mut seq = 0u32;
        let mut step = 0usize;
        loop {
            let now = i64::try_from(step).unwrap_or(i64::MAX).saturating_mul(self.interval_ms);
            if now > end {
                break;
            }
            while let Some((at, action)) = self.actions.get(next_action).filter(|(at, _)| *at <= now) {
                seq += 1;
                Self::act(engine, *at, action, seq, &mut effects);
                for e in effects.drain(..) {
                    transitions(&e, *at, &mut out);
                }
                next_action += 1;
            }
            for d in &devices {
                let mut data = Data {
                    v: V1,
                    seq,
                    ts: Timestamp::from_millis(now),
                    hist: false,
                    bdseq: None,
                    m: protocol::Readings::new(),
                    ports: protocol::Bounded::new(),
                };
                let mut any = false;
                for (sd, metric, port, vals) in &self.series {
                    let Some(Some(v)) = vals.get(step).filter(|_| sd == d) else {
                        continue;
                    };
                    any = true;
                    let value = Value::Number(*v);
                    match port {
                        None => {
                            if let Ok(name) = Named::parse(metric) {
                                let _ = data.m.set(name, value);
                            }
                        }
                        Some(p) => {
                            if !data.ports.iter().any(|x| x.port == *p) {
                                let _ = data.ports.push(PortReadings::new(*p));
                            }
                            let i = data.ports.iter().position(|x| x.port == *p).unwrap_or_default();
                            if let (Ok(name), Some(pr)) = (Named::parse(metric), data.ports.get_mut(i)) {
                                let _ = pr.readings.set(name, value);
                            }
                        }
                    }
                }
                if any {
                    seq += 1;
                    data.seq = seq;
                    let dref = DeviceRef {
                        site: &d.site,
                        class: d.class,
                        device: &d.id,
                    };
                    engine.observe(now, dref, Input::Message(&Message::Data(data)), &mut effects);
                }
            }
            engine.tick(now, &mut effects);
            for e in effects.drain(..) {
                transitions(&e, now, &mut out);
            }
            step += 1;
        }
        out.retain(|t| self.checks.contains(&t.what));
        out
    }

    fn act(engine: &mut Engine, at: i64, action: &Action, seq: u32, effects: &mut Vec<Effect>) {
        fn dref(d: &Dev) -> DeviceRef<'_> {
            DeviceRef {
                site: &d.site,
                class: d.class,
                device: &d.id,
            }
        }
        let ts = Timestamp::from_millis(at);
        match action {
            Action::Uplink(up) => engine.uplink(at, *up, effects),
            Action::Death(d) => engine.observe(
                at,
                dref(d),
                Input::Message(&Message::Death(Death { v: V1, bdseq: 0 })),
                effects,
            ),
            Action::Birth { dev, facts } => {
                let fact = |n: &str| facts.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let b = Birth {
                    v: V1,
                    seq: 0,
                    ts,
                    hist: false,
                    bdseq: seq,
                    fw: protocol::message::ShortText::new(),
                    model: protocol::message::ShortText::new(),
                    cfg: protocol::message::ConfigHash::new(),
                    interval_s: fact("interval_s").map_or(crate::DEFAULT_INTERVAL_S, |v| v as u32),
                    rated_speed_mps: fact("rated_speed_mps"),
                    floors: fact("floors").map(|v| v as u16),
                    ports: fact("ports").map(|v| v as u8),
                };
                engine.observe(at, dref(dev), Input::Message(&Message::Birth(b)), effects);
            }
            Action::Event {
                dev,
                code,
                port,
                active,
                hist,
            } => {
                let Ok(code) = Named::parse(code) else { return };
                let mut detail = protocol::Detail::new();
                if let Some(p) = port {
                    let _ = detail.set("port", f64::from(*p));
                }
                let e = Event {
                    v: V1,
                    seq,
                    ts,
                    hist: *hist,
                    bdseq: None,
                    code,
                    active: *active,
                    detail,
                };
                engine.observe(at, dref(dev), Input::Message(&Message::Event(e)), effects);
            }
            Action::Ack { code, dev, by } => {
                let (code, port) = metric_and_port(code).unwrap_or_default();
                let id = engine
                    .alerts()
                    .into_iter()
                    .find(|a| a.code == code && a.port == port && a.device == dev.id && a.site == dev.site)
                    .map(|a| a.id);
                if let Some(id) = id {
                    let _ = engine.ack(at, id, by, effects);
                }
            }
        }
    }

    /// Runs and compares with the expectations; `Err` lists the differences.
    ///
    /// # Errors
    /// A report of what was missing and what was unexpected.
    pub fn check(&self, engine: &mut Engine) -> Result<(), String> {
        let mut got = self.run(engine);
        let mut want: Vec<Transition> = self
            .expected
            .iter()
            .filter(|t| self.checks.contains(&t.what))
            .cloned()
            .collect();
        got.sort();
        want.sort();
        if got == want {
            return Ok(());
        }
        let mut report = String::new();
        for w in want.iter().filter(|w| !got.contains(w)) {
            let _ = writeln!(report, "missing:    {w}");
        }
        for g in got.iter().filter(|g| !want.contains(g)) {
            let _ = writeln!(report, "unexpected: {g}");
        }
        Err(report)
    }
}

/// The transitions one effect, produced at `at`, stands for.
fn transitions(e: &Effect, at: i64, out: &mut Vec<Transition>) {
    let mut push = |what: &str, a: &crate::effect::AlertView| {
        let code = match a.port {
            Some(p) => format!("{}{{port={p}}}", a.code),
            None => a.code.clone(),
        };
        out.push(Transition {
            at,
            what: what.to_owned(),
            code,
            device: format!("{}/{}/{}", a.site, a.class, a.device),
        });
    };
    match e {
        Effect::Alert(c) => {
            let what = match c.change {
                Change::Pending => "pending",
                Change::Fired => "fired",
                Change::Acknowledged => "acknowledged",
                Change::Resolved => "resolved",
                Change::Cancelled => "cancelled",
                Change::Updated => match c.alert.data {
                    DataState::Fresh => "fresh",
                    DataState::NoData => "no_data",
                    DataState::Stale => "stale",
                },
            };
            push(what, &c.alert);
        }
        Effect::Notify(n) => {
            for a in &n.firing {
                push("notified", a);
            }
        }
        Effect::WorkOrder(WorkOrderIntent::Open { alert }) => push("dispatched", alert),
        Effect::WorkOrder(WorkOrderIntent::Close { alert }) => push("closed", alert),
        Effect::Record(_) => {}
    }
}
