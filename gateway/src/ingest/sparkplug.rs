//! Sparkplug B ingest: the gateway as a Sparkplug primary host application.
//!
//! One MQTT session of its own (on the embedded broker as the gateway's own
//! user, or on the outside broker with its credentials) subscribes to every
//! edge node's births, deaths and data, in one stream, since an edge node's
//! `seq` counts across all its message types. The session rules are the
//! `sparkplug` crate's (pure); what they decide is mapped here through
//! `[[sparkplug.map]]` to our own sites, classes, devices and canonical
//! metrics ([`Translator`], pure too), and handed to the same lanes as our
//! own nodes' messages: a birth becomes our `birth` (online), a death our
//! `death` (offline), data our `data` — so the rules, alerts, work orders and
//! records work on them unchanged. A rebirth the rules ask for is published
//! as an NCMD `Node Control/Rebirth`. The gateway's STATE
//! (`spBv1.0/STATE/{host_id}`, retained, its will saying offline) tells edge
//! nodes their primary host is there (Sparkplug 3.0).
//!
//! Nothing is dropped silently: a metric no map names, a device no map
//! matches, a value of a type the gateway cannot judge are counted in
//! `fm_sparkplug_unmapped_total{reason}` and logged once a minute per
//! subject; refused topics and payloads in `fm_sparkplug_rejected_total`.
//! docs/integrations.md, "Sparkplug B ingest".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use protocol::message::{Birth, ConfigHash, Data, Death, V1};
use protocol::{
    DeviceClass, DeviceId, Message, Metric, MetricInfo as _, PortMetric, SiteId, Timestamp, Value, ValueKind,
};
use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Packet, QoS};
use serde::Deserialize;
use sparkplug::session::{Event, Problem, Reason, Sample};
use sparkplug::{MessageType, Scalar};

use crate::app::config::Config;
use crate::app::shared::Shared;
use crate::ingest::Incoming;
use crate::ingest::acks::Acker;
use crate::ingest::lanes::{Input, Lanes};
use crate::metrics::ReasonLabel;

/// `[sparkplug]`: the gateway as a Sparkplug B primary host application.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SparkplugConfig {
    /// The host application id: STATE is published on `spBv1.0/STATE/{host_id}`.
    pub host_id: String,
    /// The least time between two rebirth requests to one edge node.
    pub rebirth_every: String,
    /// How edge nodes and devices become ours, first match wins.
    pub map: Vec<MapConfig>,
}

impl Default for SparkplugConfig {
    fn default() -> Self {
        SparkplugConfig {
            host_id: "fm-gateway".into(),
            rebirth_every: "10s".into(),
            map: Vec::new(),
        }
    }
}

/// One `[[sparkplug.map]]`: which Sparkplug edge nodes or devices are which
/// of our devices, and which of their metrics are which of ours.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// The Sparkplug group id, `*` matching any run of characters.
    #[serde(default = "any")]
    pub group: String,
    /// The edge node id, a pattern as `group`.
    #[serde(default = "any")]
    pub edge: String,
    /// The device id, a pattern as `group`; absent: the edge node's own
    /// metrics (NBIRTH, NDATA).
    #[serde(default)]
    pub device: Option<String>,
    /// Our site; `{group}`, `{edge}`, `{device}` are replaced.
    pub site: String,
    /// Our class.
    pub class: DeviceClass,
    /// Our device id, as `site`; default `{device}`, or `{edge}` for an edge node.
    #[serde(default)]
    pub id: Option<String>,
    /// The reporting interval our offline judgement assumes (Sparkplug
    /// reports by exception: set the longest silence that is normal).
    #[serde(default = "default_interval")]
    pub interval_s: u32,
    /// The metrics, by their Sparkplug names.
    #[serde(default)]
    pub metrics: Vec<MetricMap>,
}

/// One metric of a map: a Sparkplug metric name to our canonical name.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricMap {
    /// The Sparkplug metric name, exactly (`Pump/Outlet Pressure`).
    pub name: String,
    /// Our canonical metric (`protocol::Metric`), or a per-port one with `port`.
    pub metric: String,
    /// Our value = the Sparkplug number × `scale` (default 1).
    #[serde(default = "one")]
    pub scale: f64,
    /// A charging bay's port (1-based): `metric` is then a port metric.
    #[serde(default)]
    pub port: Option<u8>,
}

fn any() -> String {
    "*".into()
}

fn one() -> f64 {
    1.0
}

fn default_interval() -> u32 {
    600
}

/// Where a mapped metric goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Metric(Metric),
    Port(u8, PortMetric),
}

impl Target {
    fn kind(self) -> ValueKind {
        match self {
            Target::Metric(m) => m.kind(),
            Target::Port(_, m) => m.kind(),
        }
    }
}

impl MetricMap {
    fn target(&self, class: DeviceClass) -> Result<Target, String> {
        if let Some(port) = self.port {
            if class != DeviceClass::Charger {
                return Err(format!("`{}`: ports are a charging bay's", self.name));
            }
            if port == 0 {
                return Err(format!("`{}`: ports are 1-based", self.name));
            }
            return PortMetric::from_name(&self.metric)
                .map(|m| Target::Port(port, m))
                .ok_or_else(|| format!("`{}`: `{}` is not a port metric", self.name, self.metric));
        }
        let m = Metric::from_name(&self.metric)
            .ok_or_else(|| format!("`{}`: `{}` is not a canonical metric", self.name, self.metric))?;
        match m.class() {
            Some(c) if c != class => Err(format!(
                "`{}`: `{}` is a {} metric, not a {class} one",
                self.name, self.metric, c
            )),
            _ => Ok(Target::Metric(m)),
        }
    }
}

impl SparkplugConfig {
    /// Every problem of the section, as (field, message).
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.host_id.is_empty() || self.host_id.contains(['/', '+', '#']) {
            out.push((
                "sparkplug.host_id".into(),
                "must be a topic level: not empty, no / + #".into(),
            ));
        }
        if humantime::parse_duration(&self.rebirth_every).is_err() {
            out.push((
                "sparkplug.rebirth_every".into(),
                format!("`{}` is not a duration such as \"10s\"", self.rebirth_every),
            ));
        }
        for (i, m) in self.map.iter().enumerate() {
            let at = |f: &str| format!("sparkplug.map[{i}].{f}");
            for (f, pattern) in [
                ("group", Some(&m.group)),
                ("edge", Some(&m.edge)),
                ("device", m.device.as_ref()),
            ] {
                if let Some(p) = pattern
                    && (p.is_empty() || p.contains(['/', '+', '#']))
                {
                    out.push((at(f), format!("`{p}`: a pattern is one topic level (`*` for any run)")));
                }
            }
            for (f, t) in [("site", Some(&m.site)), ("id", m.id.as_ref())] {
                let Some(t) = t else { continue };
                if let Err(e) = check_template(t, m.device.is_some()) {
                    out.push((at(f), e));
                } else if !t.contains('{') {
                    let ok = if f == "site" {
                        SiteId::new(t).is_ok()
                    } else {
                        DeviceId::new(t).is_ok()
                    };
                    if !ok {
                        out.push((at(f), format!("`{t}` is not a valid {f}")));
                    }
                }
            }
            if m.interval_s == 0 {
                out.push((at("interval_s"), "must be at least 1".into()));
            }
            for (j, mm) in m.metrics.iter().enumerate() {
                if let Err(e) = mm.target(m.class) {
                    out.push((format!("sparkplug.map[{i}].metrics[{j}]"), e));
                }
                if !mm.scale.is_finite() || mm.scale == 0.0 {
                    out.push((
                        format!("sparkplug.map[{i}].metrics[{j}].scale"),
                        "must be a finite number other than 0".into(),
                    ));
                }
                if m.metrics[..j].iter().any(|o| o.name == mm.name) {
                    out.push((
                        format!("sparkplug.map[{i}].metrics[{j}].name"),
                        format!("`{}` is mapped twice", mm.name),
                    ));
                }
            }
        }
        out
    }

    fn rebirth_every_ms(&self) -> i64 {
        humantime::parse_duration(&self.rebirth_every)
            .map_or(10_000, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A template uses only `{group}`, `{edge}` and (for devices) `{device}`.
fn check_template(t: &str, device: bool) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("`{t}`: an unclosed `{{`"));
        };
        let name = &rest[open + 1..open + close];
        match name {
            "group" | "edge" => {}
            "device" if device => {}
            _ => {
                return Err(format!(
                    "`{t}`: `{{{name}}}` is not one of {{group}}, {{edge}}, {{device}} (devices only)"
                ));
            }
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// Whether `text` matches `pattern`, where `*` is any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut at = first.len();
    let end = text.len() - last.len();
    for mid in &parts[1..parts.len() - 1] {
        match text[at..end].find(mid) {
            Some(i) => at += i + mid.len(),
            None => return false,
        }
    }
    true
}

fn render(template: &str, group: &str, edge: &str, device: Option<&str>) -> String {
    template
        .replace("{group}", group)
        .replace("{edge}", edge)
        .replace("{device}", device.unwrap_or_default())
}

/// Our device a Sparkplug edge node or device is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Ours {
    site: SiteId,
    class: DeviceClass,
    device: DeviceId,
}

/// A map, compiled.
#[derive(Clone, Debug)]
struct Rule {
    config: MapConfig,
    metrics: HashMap<String, (Target, f64)>,
    ports: Option<u8>,
}

/// Something counted in `fm_sparkplug_unmapped_total{reason}` and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmapped {
    /// `device` (no map matches), `id` (the map makes an invalid id),
    /// `metric` (the map does not name it), `type` (not a number or flag),
    /// `value` (does not fit our metric, e.g. a code out of range).
    pub reason: &'static str,
    /// What: the Sparkplug topic's ids and the metric.
    pub subject: String,
}

/// What one Sparkplug publish came to.
#[derive(Debug, Default)]
pub struct Output {
    /// Our messages, in order.
    pub messages: Vec<Incoming>,
    /// The NCMD to publish (topic, payload), when a rebirth is due.
    pub rebirth: Option<(String, Vec<u8>)>,
    /// Why a rebirth was wanted, and whether it was sent.
    pub wanted: Option<sparkplug::Rebirth>,
    /// What no map covers.
    pub unmapped: Vec<Unmapped>,
    /// Refused whole: the reason label and what was wrong.
    pub rejected: Option<(&'static str, String)>,
    /// Session problems the message had (counted as refusals by reason).
    pub problems: Vec<&'static str>,
    /// The Sparkplug message type, when the topic parsed.
    pub kind: Option<MessageType>,
}

/// Names the session carries itself: never "unmapped".
fn is_session_metric(name: &str) -> bool {
    name == sparkplug::payload::BD_SEQ || name.starts_with("Node Control/") || name.starts_with("Device Control/")
}

/// Sparkplug to our messages: the session rules, the maps, and our own
/// session numbers for each of our devices. Pure (the registry's last
/// session of a device is asked through a function).
pub struct Translator {
    host: sparkplug::Host,
    rules: Vec<Rule>,
    /// Our session and message counter of each device we made a birth for.
    sessions: HashMap<Ours, (u32, u32)>,
}

impl Translator {
    /// From a checked configuration (maps that do not compile are left out:
    /// `gateway check` refuses them first).
    #[must_use]
    pub fn new(config: &SparkplugConfig) -> Translator {
        let rules = config
            .map
            .iter()
            .map(|m| {
                let metrics: HashMap<String, (Target, f64)> = m
                    .metrics
                    .iter()
                    .filter_map(|mm| mm.target(m.class).ok().map(|t| (mm.name.clone(), (t, mm.scale))))
                    .collect();
                let ports = metrics
                    .values()
                    .filter_map(|(t, _)| match t {
                        Target::Port(p, _) => Some(*p),
                        Target::Metric(_) => None,
                    })
                    .max();
                Rule {
                    config: m.clone(),
                    metrics,
                    ports,
                }
            })
            .collect();
        Translator {
            host: sparkplug::Host::new(config.rebirth_every_ms()),
            rules,
            sessions: HashMap::new(),
        }
    }

    /// Takes one publish at gateway time `now_ms`; `last_session` answers
    /// the registry's current session number of one of our devices (ours
    /// start above it, so a late death of an older session stays stale).
    pub fn take(
        &mut self,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
        last_session: &dyn Fn(&str, DeviceClass, &str) -> Option<u32>,
    ) -> Output {
        let mut out = Output::default();
        let t = match sparkplug::Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => {
                out.rejected = Some(("bad_topic", e.to_string()));
                return out;
            }
        };
        out.kind = Some(t.kind);
        let p = match sparkplug::decode(payload) {
            Ok(p) => p,
            Err(e) => {
                out.rejected = Some(("bad_payload", e.to_string()));
                return out;
            }
        };
        let step = self.host.handle(&t, &p, now_ms);
        out.problems = step
            .problems
            .iter()
            .map(|p| match p {
                Problem::BadSeq => "bad_seq",
                Problem::NoBdSeq => "no_bdseq",
                Problem::StaleDeath => "stale_death",
                Problem::Unnamed => "unnamed_metric",
            })
            .collect();
        out.wanted = step.rebirth;
        if step.rebirth.is_some_and(|r| r.send) {
            let ts = u64::try_from(now_ms).unwrap_or_default();
            out.rebirth = Some((
                sparkplug::Topic::ncmd(&t.group, &t.edge),
                sparkplug::encode(&sparkplug::payload::rebirth_request(ts)),
            ));
        }
        let ts = p.timestamp.and_then(|v| i64::try_from(v).ok()).unwrap_or(now_ms);
        for event in step.events {
            self.event(&t, event, ts, now_ms, last_session, &mut out);
        }
        out
    }

    fn event(
        &mut self,
        t: &sparkplug::Topic,
        event: Event,
        ts: i64,
        now_ms: i64,
        last_session: &dyn Fn(&str, DeviceClass, &str) -> Option<u32>,
        out: &mut Output,
    ) {
        match event {
            Event::NodeBirth { metrics, .. } => self.birth(t, None, &metrics, ts, now_ms, last_session, out),
            Event::DeviceBirth { device, metrics } => {
                self.birth(t, Some(&device), &metrics, ts, now_ms, last_session, out);
            }
            Event::NodeData { metrics } => self.data(t, None, &metrics, ts, now_ms, out),
            Event::DeviceData { device, metrics } => self.data(t, Some(&device), &metrics, ts, now_ms, out),
            Event::NodeDeath { devices } => {
                for d in devices.iter().map(|d| Some(d.as_str())).chain([None]) {
                    self.death(t, d, now_ms, out);
                }
            }
            Event::DeviceDeath { device } => self.death(t, Some(&device), now_ms, out),
        }
    }

    /// The map of a node (`device` None) or device, and our device it makes.
    fn find(&self, t: &sparkplug::Topic, device: Option<&str>, out: &mut Output) -> Option<(usize, Ours)> {
        let subject = || match device {
            Some(d) => format!("{}/{}/{d}", t.group, t.edge),
            None => format!("{}/{}", t.group, t.edge),
        };
        let Some(i) = self.rules.iter().position(|r| {
            let c = &r.config;
            c.device.is_some() == device.is_some()
                && glob(&c.group, &t.group)
                && glob(&c.edge, &t.edge)
                && c.device.as_deref().zip(device).is_none_or(|(p, d)| glob(p, d))
        }) else {
            out.unmapped.push(Unmapped {
                reason: "device",
                subject: subject(),
            });
            return None;
        };
        let c = &self.rules[i].config;
        let default_id = if device.is_some() { "{device}" } else { "{edge}" };
        let site = render(&c.site, &t.group, &t.edge, device);
        let id = render(c.id.as_deref().unwrap_or(default_id), &t.group, &t.edge, device);
        if let (Ok(site), Ok(device)) = (SiteId::new(&site), DeviceId::new(&id)) {
            return Some((
                i,
                Ours {
                    site,
                    class: c.class,
                    device,
                },
            ));
        }
        out.unmapped.push(Unmapped {
            reason: "id",
            subject: format!("{} (site `{site}`, device `{id}`)", subject()),
        });
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn birth(
        &mut self,
        t: &sparkplug::Topic,
        device: Option<&str>,
        metrics: &[Sample],
        ts: i64,
        now_ms: i64,
        last_session: &dyn Fn(&str, DeviceClass, &str) -> Option<u32>,
        out: &mut Output,
    ) {
        let Some((i, ours)) = self.find(t, device, out) else {
            return;
        };
        let rule = &self.rules[i];
        let bdseq = match self.sessions.get(&ours) {
            Some((b, _)) => b.wrapping_add(1),
            None => last_session(ours.site.as_str(), ours.class, ours.device.as_str()).map_or(1, |b| b.wrapping_add(1)),
        };
        let mut names: Vec<&str> = metrics.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        let birth = Birth {
            v: V1,
            seq: 0,
            ts: Timestamp::from_millis(ts),
            hist: false,
            bdseq,
            fw: text("spBv1.0"),
            model: text(device.unwrap_or(&t.edge)),
            cfg: config_hash(&names),
            interval_s: rule.config.interval_s.max(1),
            rated_speed_mps: None,
            floors: None,
            ports: rule.ports,
        };
        self.sessions.insert(ours.clone(), (bdseq, 0));
        out.messages.push(incoming(&ours, Message::Birth(birth), now_ms));
        self.samples(i, &ours, t, device, metrics, ts, now_ms, out);
    }

    fn data(
        &mut self,
        t: &sparkplug::Topic,
        device: Option<&str>,
        metrics: &[Sample],
        ts: i64,
        now_ms: i64,
        out: &mut Output,
    ) {
        let Some((i, ours)) = self.find(t, device, out) else {
            return;
        };
        self.samples(i, &ours, t, device, metrics, ts, now_ms, out);
    }

    fn death(&mut self, t: &sparkplug::Topic, device: Option<&str>, now_ms: i64, out: &mut Output) {
        // Unmapped devices were counted at their birth; only ours die here.
        let mut quiet = Output::default();
        let Some((_, ours)) = self.find(t, device, &mut quiet) else {
            return;
        };
        if let Some((bdseq, _)) = self.sessions.get(&ours) {
            out.messages
                .push(incoming(&ours, Message::Death(Death { v: V1, bdseq: *bdseq }), now_ms));
        }
    }

    /// Our `data` messages of mapped samples (current values in one, each
    /// historical timestamp in its own, marked `hist`), at most
    /// `MAX_METRICS` readings each.
    #[allow(clippy::too_many_arguments)]
    fn samples(
        &mut self,
        rule: usize,
        ours: &Ours,
        t: &sparkplug::Topic,
        device: Option<&str>,
        metrics: &[Sample],
        ts: i64,
        now_ms: i64,
        out: &mut Output,
    ) {
        let subject = |name: &str| match device {
            Some(d) => format!("{}/{}/{d}: {name}", t.group, t.edge),
            None => format!("{}/{}: {name}", t.group, t.edge),
        };
        // (historical timestamp or None for live, target, value)
        let mut mapped: Vec<(Option<i64>, Target, Value)> = Vec::new();
        for s in metrics {
            if is_session_metric(&s.name) {
                continue;
            }
            let Some(&(target, scale)) = self.rules[rule].metrics.get(&s.name) else {
                out.unmapped.push(Unmapped {
                    reason: "metric",
                    subject: subject(&s.name),
                });
                continue;
            };
            let value = match s.value {
                Scalar::Null => continue,
                Scalar::Unsupported(dt) => {
                    out.unmapped.push(Unmapped {
                        reason: "type",
                        subject: format!("{} (data type {dt})", subject(&s.name)),
                    });
                    continue;
                }
                Scalar::Bool(b) => match target.kind() {
                    ValueKind::Bool => Value::Bool(b),
                    _ => Value::Number(if b { 1.0 } else { 0.0 }),
                },
                Scalar::Number(n) => match target.kind() {
                    ValueKind::Bool => Value::Bool(n != 0.0),
                    _ => Value::Number(n * scale),
                },
            };
            if target.kind().check(value).is_err() {
                out.unmapped.push(Unmapped {
                    reason: "value",
                    subject: format!("{} = {value} (expected {})", subject(&s.name), target.kind()),
                });
                continue;
            }
            let hist = if s.historical {
                Some(s.timestamp.and_then(|v| i64::try_from(v).ok()).unwrap_or(ts))
            } else {
                None
            };
            mapped.push((hist, target, value));
        }
        let mut groups: Vec<Option<i64>> = mapped.iter().map(|(h, _, _)| *h).collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            let mut data: Option<Data> = None;
            for (_, target, value) in mapped.iter().filter(|(h, _, _)| *h == group) {
                let d = data.get_or_insert_with(|| self.new_data(ours, group.unwrap_or(ts), group.is_some()));
                let full = match target {
                    Target::Metric(m) => d.m.set(*m, *value).is_err(),
                    Target::Port(p, m) => set_port(d, *p, *m, *value),
                };
                if full {
                    // Full: this one goes on, the next message takes the rest.
                    if let Some(done) = data.take() {
                        out.messages.push(incoming(ours, Message::Data(done), now_ms));
                    }
                    let d = data.get_or_insert_with(|| self.new_data(ours, group.unwrap_or(ts), group.is_some()));
                    let _ = match target {
                        Target::Metric(m) => d.m.set(*m, *value).is_err(),
                        Target::Port(p, m) => set_port(d, *p, *m, *value),
                    };
                }
            }
            if let Some(d) = data {
                out.messages.push(incoming(ours, Message::Data(d), now_ms));
            }
        }
    }

    /// A `data` message of our device's session, its counter moved on.
    fn new_data(&mut self, ours: &Ours, ts: i64, hist: bool) -> Data {
        let (bdseq, seq) = self.sessions.entry(ours.clone()).or_insert((1, 0));
        *seq = seq.wrapping_add(1);
        let mut d = Data::new(*seq, Timestamp::from_millis(ts));
        d.bdseq = Some(*bdseq);
        d.hist = hist;
        d
    }
}

/// Sets a port reading; whether the message is full.
fn set_port(d: &mut Data, port: u8, m: PortMetric, v: Value) -> bool {
    let idx = if let Some(i) = d.ports.iter().position(|x| x.port == port) {
        i
    } else {
        if d.ports.push(protocol::PortReadings::new(port)).is_err() {
            return true;
        }
        d.ports.len() - 1
    };
    d.ports[idx].readings.set(m, v).is_err()
}

fn incoming(ours: &Ours, message: Message, now_ms: i64) -> Incoming {
    Incoming {
        topic: protocol::Topic::new(ours.site.clone(), ours.class, ours.device.clone(), message.kind()),
        message,
        received_ms: now_ms,
    }
}

/// A short text, cut at a character boundary to fit.
fn text(s: &str) -> protocol::readings::Text {
    let mut out = protocol::readings::Text::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The birth's `cfg`: a hash of its metric names, so a changed edge-node
/// configuration shows as drift like a node's.
fn config_hash(names: &[&str]) -> ConfigHash {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for n in names {
        h.update(n.as_bytes());
        h.update([0]);
    }
    let hex = hex::encode(&h.finalize()[..8]);
    let mut out = ConfigHash::new();
    let _ = out.push_str(&hex);
    out
}

/// `fm_sparkplug_*`.
#[derive(Clone, Default)]
pub struct SparkplugMetrics {
    /// Sparkplug messages taken, by type (`NBIRTH`, `DDATA`, ...).
    pub messages: Family<crate::metrics::KindLabel, Counter>,
    /// Publishes or parts refused, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// What no map covers, by reason (`device`, `id`, `metric`, `type`, `value`).
    pub unmapped: Family<ReasonLabel, Counter>,
    /// Rebirth requests sent (NCMD), by reason.
    pub rebirths: Family<ReasonLabel, Counter>,
    /// 1 while the host session is connected and subscribed.
    pub connected: Gauge,
}

impl SparkplugMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("sparkplug");
        r.register("messages", "Sparkplug B messages taken, by type", self.messages.clone());
        r.register(
            "rejected",
            "Sparkplug B publishes refused, or their parts, by reason",
            self.rejected.clone(),
        );
        r.register(
            "unmapped",
            "Sparkplug B devices, metrics and values no [[sparkplug.map]] covers, by reason",
            self.unmapped.clone(),
        );
        r.register(
            "rebirth_requests",
            "Rebirth requests (NCMD Node Control/Rebirth) sent, by reason",
            self.rebirths.clone(),
        );
        r.register(
            "connected",
            "1 while the Sparkplug host session is connected and subscribed",
            self.connected.clone(),
        );
        for reason in Reason::ALL {
            let _ = self.rebirths.get_or_create(&label(reason.label()));
        }
    }
}

fn label(reason: &str) -> ReasonLabel {
    ReasonLabel {
        reason: reason.to_owned(),
    }
}

/// At most one log line per subject per this long.
const LOG_EVERY: Duration = Duration::from_mins(1);

/// The client id of the host session on the embedded broker (reserved for
/// the gateway, like its other sessions).
pub const EMBEDDED_CLIENT_ID: &str = "fm-gateway-sparkplug";

/// Starts the Sparkplug host session when `[sparkplug]` is configured.
/// `gateway_password` is the gateway's own login on its embedded broker.
///
/// # Errors
/// TLS files of an outside broker that cannot be read.
pub(crate) fn start(
    config: &Config,
    gateway_password: &str,
    lanes: &Lanes,
    shared: &Shared,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(sp) = &config.sparkplug else {
        return Ok(None);
    };
    let mut opts = if let Some(b) = &config.mqtt.broker {
        let mut o = MqttOptions::new(format!("{}-sparkplug", b.client_id), &b.host, b.port);
        if let Some(u) = &b.username {
            o.set_credentials(u, b.password.clone().unwrap_or_default());
        }
        if b.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(crate::ingest::mqtt::tls_config(b)?));
        }
        o
    } else {
        let l = config.mqtt.listen;
        let host = if l.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            l.ip().to_string()
        };
        let mut o = MqttOptions::new(EMBEDDED_CLIENT_ID, host, l.port());
        o.set_credentials(crate::ingest::access::GATEWAY_USER, gateway_password);
        o
    };
    // Sparkplug 3.0: a host application connects with a clean session;
    // what it missed, it asks for again with rebirths.
    opts.set_clean_session(true);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(256 * 1024, 256 * 1024);
    opts.set_manual_acks(true);
    let state = sparkplug::topic::state_topic(&sp.host_id);
    let born = shared.clock().now_ms();
    opts.set_last_will(will(&state, born));
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    tracing::info!(host_id = %sp.host_id, maps = sp.map.len(), "Sparkplug B host application starting");
    Ok(Some(tokio::spawn(host_task(
        eventloop,
        Acker {
            client,
            order: Arc::default(),
        },
        Translator::new(sp),
        state,
        born,
        lanes.clone(),
        shared.clone(),
    ))))
}

fn will(state: &str, born_ms: i64) -> LastWill {
    let ts = u64::try_from(born_ms).unwrap_or_default();
    LastWill::new(
        state,
        sparkplug::payload::state_payload(false, ts),
        QoS::AtLeastOnce,
        true,
    )
}

/// At most one log line per key per [`LOG_EVERY`].
#[derive(Default)]
struct Throttle(HashMap<String, Instant>);

impl Throttle {
    fn ok(&mut self, key: String) -> bool {
        if self.0.get(&key).is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return false;
        }
        if self.0.len() > 10_000 {
            self.0.retain(|_, t| t.elapsed() < LOG_EVERY);
        }
        self.0.insert(key, Instant::now());
        true
    }
}

/// The host session: STATE at every connection, the subscriptions, and
/// every publish through the translator into the lanes.
async fn host_task(
    mut eventloop: rumqttc::EventLoop,
    acker: Acker,
    mut translator: Translator,
    state: String,
    mut born: i64,
    lanes: Lanes,
    shared: Shared,
) {
    let sm = shared.metrics().sparkplug.clone();
    let mut throttle = Throttle::default();
    loop {
        match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                acker.order().connected();
                let ts = u64::try_from(born).unwrap_or_default();
                // Retained, so an edge node that connects later sees its primary host online.
                let online = sparkplug::payload::state_payload(true, ts);
                if let Err(e) = acker.client.try_publish(&state, QoS::AtLeastOnce, true, online) {
                    tracing::warn!(error = %e, "Sparkplug STATE not published");
                }
                let subs = sparkplug::topic::host_filters()
                    .into_iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce));
                if let Err(e) = acker.client.try_subscribe_many(subs) {
                    tracing::error!(error = %e, "Sparkplug subscription failed");
                }
                tracing::info!(%state, "Sparkplug host online");
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                sm.connected.set(1);
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                if !take(&p, &acker, &mut translator, &lanes, &shared, &mut throttle).await {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = sm.connected.set(0);
                tracing::warn!(error = %e, "Sparkplug host session lost; reconnecting");
                // A new connection is a new host session: a new timestamp for STATE and its will.
                born = shared.clock().now_ms().max(born + 1);
                eventloop.mqtt_options.set_last_will(will(&state, born));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One Sparkplug publish: translated, counted, logged (throttled), its
/// rebirth request sent, its messages into the lanes with its
/// acknowledgement on the last. Whether the pipeline still takes input.
async fn take(
    p: &rumqttc::Publish,
    acker: &Acker,
    translator: &mut Translator,
    lanes: &Lanes,
    shared: &Shared,
    throttle: &mut Throttle,
) -> bool {
    let metrics = shared.metrics();
    let sm = &metrics.sparkplug;
    let mut ack = acker.received(p);
    let registry = shared.registry();
    let last = |site: &str, class: DeviceClass, device: &str| {
        let key = crate::registry::DeviceKey {
            site: site.to_owned(),
            class: class.to_string(),
            device: device.to_owned(),
        };
        registry.with(|r| r.get(&key).and_then(|d| d.bdseq))
    };
    let out = translator.take(&p.topic, &p.payload, shared.clock().now_ms(), &last);
    if let Some(k) = out.kind {
        sm.messages
            .get_or_create(&crate::metrics::KindLabel {
                kind: k.as_str().to_owned(),
            })
            .inc();
    }
    if let Some((reason, detail)) = &out.rejected {
        sm.rejected.get_or_create(&label(reason)).inc();
        if throttle.ok(format!("rejected {}", p.topic)) {
            tracing::warn!(topic = %p.topic, reason, %detail, "Sparkplug publish refused");
        }
    }
    for problem in &out.problems {
        sm.rejected.get_or_create(&label(problem)).inc();
        if throttle.ok(format!("{problem} {}", p.topic)) {
            tracing::warn!(topic = %p.topic, problem, "Sparkplug session rule broken");
        }
    }
    for u in &out.unmapped {
        sm.unmapped.get_or_create(&label(u.reason)).inc();
        if throttle.ok(format!("{} {}", u.reason, u.subject)) {
            tracing::warn!(
                reason = u.reason,
                subject = %u.subject,
                "Sparkplug data no [[sparkplug.map]] covers (counted; logged once a minute)"
            );
        }
    }
    if let (Some(w), Some((topic, bytes))) = (out.wanted, out.rebirth) {
        sm.rebirths.get_or_create(&label(w.reason.label())).inc();
        tracing::info!(%topic, reason = w.reason.label(), "asking a Sparkplug edge node for a rebirth");
        // QoS 0, as the specification has commands.
        if let Err(e) = acker.client.try_publish(topic, QoS::AtMostOnce, false, bytes) {
            tracing::warn!(error = %e, "rebirth request not published");
        }
    }
    let n = out.messages.len();
    for (i, m) in out.messages.into_iter().enumerate() {
        let priority = matches!(m.message, Message::Birth(_));
        // The publish is acknowledged with the last of its messages.
        let a = if i + 1 == n { ack.take() } else { None };
        if !lanes.send_to(priority, Input::Mapped(Box::new(m), a), metrics).await {
            return false;
        }
    }
    if let Some(a) = ack {
        // Nothing of ours came of it: done at once.
        a.release();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparkplug::payload::{BD_SEQ, DataType, Metric as SpMetric, MetricValue, Payload};

    fn config(toml_text: &str) -> SparkplugConfig {
        let c: SparkplugConfig = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.problems(), Vec::<(String, String)>::new());
        c
    }

    const PUMPS: &str = r#"
        [[map]]
        group = "lakeside"
        edge = "pumproom*"
        device = "pump-*"
        site = "{group}"
        class = "firepump"
        id = "FP-{device}"
        interval_s = 120
        metrics = [
          { name = "Pressure/Network", metric = "network_pressure_mpa", scale = 0.001 },
          { name = "Running", metric = "pump_running" },
          { name = "Auto", metric = "auto_mode" },
        ]

        [[map]]
        group = "*"
        edge = "bay-*"
        device = "*"
        site = "lakeside"
        class = "charger"
        metrics = [
          { name = "Smoke", metric = "smoke" },
          { name = "P3/Temp", metric = "temp_c", port = 3 },
          { name = "P3/State", metric = "state", port = 3 },
        ]
    "#;

    fn m(name: Option<&str>, alias: Option<u64>, v: MetricValue) -> SpMetric {
        let datatype = match &v {
            MetricValue::BooleanValue(_) => DataType::Boolean,
            MetricValue::LongValue(_) => DataType::Int64,
            MetricValue::IntValue(_) => DataType::Int32,
            MetricValue::StringValue(_) => DataType::String,
            _ => DataType::Double,
        };
        SpMetric {
            name: name.map(str::to_owned),
            alias,
            datatype: Some(datatype as u32),
            value: Some(v),
            ..SpMetric::default()
        }
    }

    fn pl(seq: Option<u64>, metrics: Vec<SpMetric>) -> Vec<u8> {
        sparkplug::encode(&Payload {
            timestamp: Some(1_700_000_000_000),
            metrics,
            seq,
            ..Payload::default()
        })
    }

    fn none(_: &str, _: DeviceClass, _: &str) -> Option<u32> {
        None
    }

    fn nbirth(t: &mut Translator, edge: &str, bd: u64) -> Output {
        t.take(
            &format!("spBv1.0/lakeside/NBIRTH/{edge}"),
            &pl(Some(0), vec![m(Some(BD_SEQ), None, MetricValue::LongValue(bd))]),
            5,
            &none,
        )
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("pump-*", "pump-1"));
        assert!(!glob("pump-*", "pum"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("*-1", "pump-1"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn a_device_birth_becomes_our_birth_and_its_values_our_data() {
        let mut t = Translator::new(&config(PUMPS));
        let out = nbirth(&mut t, "pumproom-b2", 0);
        // The edge node itself has no map: counted, not dropped silently.
        assert_eq!(out.unmapped[0].reason, "device");
        let out = t.take(
            "spBv1.0/lakeside/DBIRTH/pumproom-b2/pump-1",
            &pl(
                Some(1),
                vec![
                    m(Some("Pressure/Network"), Some(10), MetricValue::DoubleValue(280.0)),
                    m(Some("Running"), Some(11), MetricValue::BooleanValue(false)),
                    m(Some("Vendor/Serial"), Some(12), MetricValue::StringValue("X".into())),
                ],
            ),
            7,
            &|_, _, _| Some(41),
        );
        assert!(out.rebirth.is_none(), "{out:?}");
        assert_eq!(out.messages.len(), 2);
        let b = &out.messages[0];
        assert_eq!(b.topic.to_string(), "fm/v1/lakeside/firepump/FP-pump-1/birth");
        let Message::Birth(birth) = &b.message else { panic!() };
        // Our session follows the registry's last one.
        assert_eq!((birth.bdseq, birth.interval_s), (42, 120));
        assert_eq!(birth.cfg.len(), 16);
        let Message::Data(d) = &out.messages[1].message else {
            panic!()
        };
        assert_eq!(d.m.get(Metric::NetworkPressureMpa), Some(Value::Number(0.28)));
        assert_eq!(d.m.get(Metric::PumpRunning), Some(Value::Bool(false)));
        assert_eq!((d.seq, d.bdseq, d.hist), (1, Some(42), false));
        assert_eq!(d.ts.as_millis(), 1_700_000_000_000);
        assert_eq!(out.messages[1].received_ms, 7);
        assert_eq!(
            out.unmapped,
            vec![Unmapped {
                reason: "metric",
                subject: "lakeside/pumproom-b2/pump-1: Vendor/Serial".into()
            }]
        );
        // Data by alias: scaled, counted on.
        let out = t.take(
            "spBv1.0/lakeside/DDATA/pumproom-b2/pump-1",
            &pl(Some(2), vec![m(None, Some(10), MetricValue::DoubleValue(50.0))]),
            9,
            &none,
        );
        let Message::Data(d) = &out.messages[0].message else {
            panic!()
        };
        assert_eq!(d.m.get(Metric::NetworkPressureMpa), Some(Value::Number(0.05)));
        assert_eq!(d.seq, 2);
    }

    #[test]
    fn a_seq_gap_asks_the_edge_node_for_a_rebirth_by_ncmd() {
        let mut t = Translator::new(&config(PUMPS));
        nbirth(&mut t, "pumproom", 0);
        let out = t.take("spBv1.0/lakeside/NDATA/pumproom", &pl(Some(7), vec![]), 10, &none);
        let (topic, bytes) = out.rebirth.unwrap_or_else(|| panic!("{:?}", out.wanted));
        assert_eq!(topic, "spBv1.0/lakeside/NCMD/pumproom");
        let p = sparkplug::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.metrics[0].name.as_deref(), Some("Node Control/Rebirth"));
        assert_eq!(p.metrics[0].scalar(), Scalar::Bool(true));
        assert_eq!(out.wanted.map(|w| w.reason), Some(Reason::SeqGap));
    }

    #[test]
    fn ndeath_takes_every_device_of_ours_offline_with_its_session() {
        let mut t = Translator::new(&config(PUMPS));
        nbirth(&mut t, "pumproom", 3);
        for (seq, d) in [(1, "pump-1"), (2, "pump-2")] {
            t.take(
                &format!("spBv1.0/lakeside/DBIRTH/pumproom/{d}"),
                &pl(
                    Some(seq),
                    vec![m(Some("Running"), Some(1), MetricValue::BooleanValue(true))],
                ),
                0,
                &none,
            );
        }
        let out = t.take(
            "spBv1.0/lakeside/NDEATH/pumproom",
            &pl(None, vec![m(Some(BD_SEQ), None, MetricValue::LongValue(3))]),
            0,
            &none,
        );
        let deaths: Vec<String> = out.messages.iter().map(|i| i.topic.to_string()).collect();
        assert_eq!(
            deaths,
            [
                "fm/v1/lakeside/firepump/FP-pump-1/death",
                "fm/v1/lakeside/firepump/FP-pump-2/death"
            ]
        );
        assert!(matches!(
            out.messages[0].message,
            Message::Death(Death { bdseq: 1, .. })
        ));
        // Born again: a newer session, so the death of the old one is stale in the registry.
        nbirth(&mut t, "pumproom", 4);
        let out = t.take(
            "spBv1.0/lakeside/DBIRTH/pumproom/pump-1",
            &pl(Some(1), vec![]),
            0,
            &none,
        );
        assert!(matches!(&out.messages[0].message, Message::Birth(b) if b.bdseq == 2));
    }

    #[test]
    fn ports_bools_and_bad_values() {
        let mut t = Translator::new(&config(PUMPS));
        nbirth(&mut t, "bay-7", 0);
        let out = t.take(
            "spBv1.0/lakeside/DBIRTH/bay-7/BAY-07",
            &pl(
                Some(1),
                vec![
                    m(Some("Smoke"), Some(1), MetricValue::IntValue(1)),
                    m(Some("P3/Temp"), Some(2), MetricValue::DoubleValue(41.5)),
                    m(Some("P3/State"), Some(3), MetricValue::IntValue(9)),
                ],
            ),
            0,
            &none,
        );
        let Message::Birth(b) = &out.messages[0].message else {
            panic!()
        };
        assert_eq!(b.ports, Some(3));
        let Message::Data(d) = &out.messages[1].message else {
            panic!()
        };
        assert_eq!(d.m.get(Metric::Smoke), Some(Value::Bool(true)));
        assert_eq!(d.ports[0].port, 3);
        assert_eq!(d.ports[0].readings.get(PortMetric::TempC), Some(Value::Number(41.5)));
        assert_eq!(d.ports[0].readings.get(PortMetric::State), None);
        assert_eq!(out.unmapped[0].reason, "value");
        assert!(Message::Data(d.clone()).validate().is_ok());
    }

    #[test]
    fn historical_metrics_go_in_their_own_hist_message() {
        let mut t = Translator::new(&config(PUMPS));
        nbirth(&mut t, "pumproom", 0);
        t.take(
            "spBv1.0/lakeside/DBIRTH/pumproom/pump-1",
            &pl(
                Some(1),
                vec![m(Some("Running"), Some(1), MetricValue::BooleanValue(false))],
            ),
            0,
            &none,
        );
        let mut old = m(None, Some(1), MetricValue::BooleanValue(true));
        old.is_historical = Some(true);
        old.timestamp = Some(1_600_000_000_000);
        let out = t.take(
            "spBv1.0/lakeside/DDATA/pumproom/pump-1",
            &pl(Some(2), vec![old, m(None, Some(1), MetricValue::BooleanValue(false))]),
            0,
            &none,
        );
        let hist: Vec<(bool, i64)> = out
            .messages
            .iter()
            .map(|i| match &i.message {
                Message::Data(d) => (d.hist, d.ts.as_millis()),
                _ => panic!(),
            })
            .collect();
        assert_eq!(hist, [(false, 1_700_000_000_000), (true, 1_600_000_000_000)]);
    }

    #[test]
    fn refused_topics_and_payloads_are_said_so() {
        let mut t = Translator::new(&config(PUMPS));
        let out = t.take("spBv1.0/STATE/other-host", b"{}", 0, &none);
        assert_eq!(out.rejected.map(|r| r.0), Some("bad_topic"));
        let out = t.take("spBv1.0/lakeside/NDATA/e", &[0xff, 0xff], 0, &none);
        assert_eq!(out.rejected.map(|r| r.0), Some("bad_payload"));
        // A map that makes an invalid id of ours: counted as `id`.
        let mut t = Translator::new(&config(
            r#"
            [[map]]
            edge = "*"
            site = "lakeside"
            class = "firepump"
            "#,
        ));
        let out = nbirth(&mut t, "has space", 0);
        assert_eq!(out.unmapped[0].reason, "id");
        assert!(out.messages.is_empty());
    }

    proptest::proptest! {
        /// Whatever arrives, on whatever topic, in whatever order: no panic,
        /// and every message made is one our own decoder would accept.
        #[test]
        fn any_input_never_panics_and_makes_only_valid_messages(
            inputs in proptest::collection::vec(
                (0usize..8, proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0u64..300),
                1..24,
            )
        ) {
            let topics = [
                "spBv1.0/lakeside/NBIRTH/pumproom",
                "spBv1.0/lakeside/DBIRTH/pumproom/pump-1",
                "spBv1.0/lakeside/DDATA/pumproom/pump-1",
                "spBv1.0/lakeside/NDATA/pumproom",
                "spBv1.0/lakeside/DDEATH/pumproom/pump-1",
                "spBv1.0/lakeside/NDEATH/pumproom",
                "spBv1.0/lakeside/DDATA/bay-1/x",
                "spBv1.0/STATE/x",
            ];
            let mut t = Translator::new(&config(PUMPS));
            for (i, (topic, bytes, seq)) in inputs.into_iter().enumerate() {
                // Half garbage, half well-formed payloads with random values.
                let payload = if i % 2 == 0 {
                    bytes
                } else {
                    pl(Some(seq), bytes.iter().map(|b| m(
                        Some(["Pressure/Network", "Running", "Smoke", "P3/State", BD_SEQ][usize::from(*b) % 5]),
                        Some(u64::from(*b % 4)),
                        MetricValue::DoubleValue(f64::from(*b) - 100.0),
                    )).collect())
                };
                let out = t.take(topics[topic], &payload, 0, &none);
                for msg in &out.messages {
                    proptest::prop_assert!(msg.message.validate().is_ok(), "{msg:?}");
                }
            }
        }
    }

    #[test]
    fn the_configuration_is_checked() {
        let c: SparkplugConfig = toml::from_str(
            r#"
            host_id = "a/b"
            rebirth_every = "soon"
            [[map]]
            device = "pump+"
            site = "Lakeside"
            class = "firepump"
            id = "{devise}"
            interval_s = 0
            metrics = [
              { name = "a", metric = "floor" },
              { name = "a", metric = "no_such" },
              { name = "b", metric = "temp_c", port = 1 },
              { name = "c", metric = "network_pressure_mpa", scale = 0.0 },
            ]
            "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let fields: Vec<String> = c.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "sparkplug.host_id",
                "sparkplug.rebirth_every",
                "sparkplug.map[0].device",
                "sparkplug.map[0].site",
                "sparkplug.map[0].id",
                "sparkplug.map[0].interval_s",
                "sparkplug.map[0].metrics[0]",
                "sparkplug.map[0].metrics[1]",
                "sparkplug.map[0].metrics[1].name",
                "sparkplug.map[0].metrics[2]",
                "sparkplug.map[0].metrics[3].scale",
            ]
        );
    }
}
