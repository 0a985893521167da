//! What the InfluxDB sink writes, as line protocol: the layout Grafana
//! queries (`docs/storage.md`, `docs/grafana.md`).
//!
//! | measurement | what | time |
//! |---|---|---|
//! | `elevator`, `firepump`, `charger` | a device's samples, one field per metric | the device's |
//! | `fm_event` | a node's event (raised or cleared), with its detail | the device's |
//! | `fm_alert` | an alert's change (pending, fired, acknowledged, resolved, ...) | the gateway's |
//! | `fm_gateway_state` | per site and class: devices online, open alerts by severity, open orders | the gateway's |
//!
//! Every measurement, tag and field is named once here, by the constants the
//! encoders write, and [`schema`] lists them from the same constants and the
//! protocol's own tables. The dashboards' test (`gateway/tests/gateway/grafana.rs`)
//! checks every query against [`schema`], and this module's tests check
//! that the encoders write nothing [`schema`] does not list: a rename breaks
//! a test, not a dashboard in the field.
//!
//! Ids (an alert's episode, a message's `seq`) are fields, never tags: a tag
//! per id would make a series per alert and grow the index without bound.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use alerting::{AlertChange, AlertView, Change, Effect, State};
use protocol::{DeviceClass, EventCode, Message, Metric, PortMetric, Severity, Value};

use crate::ingest::Incoming;

/// Tag keys.
pub mod tag {
    /// The compound.
    pub const SITE: &str = "site";
    /// The device class (`elevator`, `firepump`, `charger`; `gateway` for root causes).
    pub const CLASS: &str = "class";
    /// The device id.
    pub const DEVICE: &str = "device";
    /// The 1-based charging port.
    pub const PORT: &str = "port";
    /// `true` on what a node replayed from its buffer; absent on live data.
    pub const HIST: &str = "hist";
    /// The event code.
    pub const CODE: &str = "code";
    /// The severity (`critical`, `major`, `minor`, `info`).
    pub const SEVERITY: &str = "severity";
    /// What happened to an alert (`fired`, `resolved`, ...).
    pub const CHANGE: &str = "change";
    /// An alert's state after the change (`firing`, `resolved`, ...).
    pub const STATE: &str = "state";
    /// The building an alert's device is assigned to.
    pub const BUILDING: &str = "building";
    /// Whether a node's event raised (`true`) or cleared (`false`) its code.
    pub const ACTIVE: &str = "active";
}

/// The measurement of node events.
pub const EVENT: &str = "fm_event";
/// The measurement of alert changes.
pub const ALERT: &str = "fm_alert";
/// The measurement of the overview's counts.
pub const STATE: &str = "fm_gateway_state";

/// Fields of [`EVENT`].
pub mod event {
    /// The message's `seq` (integer).
    pub const SEQ: &str = "seq";
    /// The code's Chinese label (string; the code itself for a code this build does not know).
    pub const LABEL_ZH: &str = "label_zh";
    /// The code's English label (string).
    pub const LABEL_EN: &str = "label_en";
    /// Prefix of the detail's numbers and flags (`detail_temp_c`, `detail_ok`; float, flags 0/1).
    pub const DETAIL: &str = "detail_";
    /// Prefix of the detail's texts (`text_exception`; string). Another
    /// prefix than [`DETAIL`], so a number and a text can never land in one
    /// field (a type conflict would make the server refuse the batch).
    pub const TEXT: &str = "text_";
}

/// Fields of [`ALERT`].
pub mod alert {
    /// The alert's id (its episode, as in the API; integer).
    pub const ID: &str = "id";
    /// The code's Chinese label (string).
    pub const LABEL_ZH: &str = "label_zh";
    /// The code's English label (string).
    pub const LABEL_EN: &str = "label_en";
    /// When its condition started, ms (integer): with the point's time, a
    /// region for an annotation.
    pub const SINCE: &str = "since";
    /// Seconds from `since` to this change (float): how long it had lasted.
    pub const DURATION_S: &str = "duration_s";
    /// Held open because it flaps (0/1).
    pub const FLAPPING: &str = "flapping";
    /// Its device is in a maintenance window (0/1).
    pub const MAINTENANCE: &str = "maintenance";
    /// Its notification is suppressed by a failed parent (0/1).
    pub const INHIBITED: &str = "inhibited";
}

/// Fields of [`STATE`] (all integers).
pub mod state {
    /// Devices the gateway knows.
    pub const DEVICES: &str = "devices";
    /// Of those, online (messages arrive; the API's `online`).
    pub const DEVICES_ONLINE: &str = "devices_online";
    /// Open alerts: pending, firing, acknowledged.
    pub const ALERTS_OPEN: &str = "alerts_open";
    /// Of those, firing (acknowledged or not).
    pub const ALERTS_FIRING: &str = "alerts_firing";
    /// Of those, firing and not acknowledged: nobody has taken them.
    pub const ALERTS_UNACKED: &str = "alerts_unacked";
    /// Prefix of the open alerts by severity (`alerts_critical`, ...).
    pub const ALERTS_BY: &str = "alerts_";
    /// Open work orders.
    pub const ORDERS_OPEN: &str = "orders_open";
}

/// The class of alerts the gateway raises about itself (root causes).
pub const GATEWAY_CLASS: &str = "gateway";

/// Every `change` an alert point carries, as [`change_name`] writes it.
pub const CHANGES: [&str; 6] = ["pending", "fired", "acknowledged", "resolved", "cancelled", "updated"];

/// Every `state` an alert point carries.
pub const STATES: [&str; 4] = [
    State::Pending.as_str(),
    State::Firing.as_str(),
    State::Acknowledged.as_str(),
    State::Resolved.as_str(),
];

/// The name of a change, as the API's stream spells it.
#[must_use]
pub const fn change_name(c: Change) -> &'static str {
    match c {
        Change::Pending => CHANGES[0],
        Change::Fired => CHANGES[1],
        Change::Acknowledged => CHANGES[2],
        Change::Resolved => CHANGES[3],
        Change::Cancelled => CHANGES[4],
        Change::Updated => CHANGES[5],
    }
}

/// How a field is typed on the wire. A field keeps one type for ever (the
/// server refuses a point that changes it), so the writer never mixes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `1.0`: samples, flags (0/1), durations.
    Float,
    /// `1i`: ids, counts, ms.
    Integer,
    /// `"…"`: labels, texts.
    String,
}

/// A field, or a family of fields sharing a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSchema {
    /// The name, or the prefix when `prefix`.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
    /// `name` is a prefix: the rest is a name a node chose (an event's detail).
    pub prefix: bool,
}

/// A tag and, where they are a closed set, its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSchema {
    /// The key.
    pub name: &'static str,
    /// The values the gateway's own tables give (what a dashboard may name;
    /// a configured rule may add a code of its own); `None` for names that
    /// come from the field (sites, devices, buildings, ports).
    pub values: Option<Vec<&'static str>>,
}

/// One measurement: its tags and fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// The measurement.
    pub name: &'static str,
    /// Its tags.
    pub tags: Vec<TagSchema>,
    /// Its fields.
    pub fields: Vec<FieldSchema>,
}

impl Measurement {
    /// A tag by key.
    #[must_use]
    pub fn tag(&self, name: &str) -> Option<&TagSchema> {
        self.tags.iter().find(|t| t.name == name)
    }

    /// The field a name is (exactly, or by its prefix).
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| {
            if f.prefix {
                name.strip_prefix(f.name.as_str())
                    .is_some_and(|rest| protocol::names::parse_name(rest).is_ok())
            } else {
                f.name == name
            }
        })
    }
}

fn open(name: &'static str) -> TagSchema {
    TagSchema { name, values: None }
}

fn closed(name: &'static str, values: impl IntoIterator<Item = &'static str>) -> TagSchema {
    TagSchema {
        name,
        values: Some(values.into_iter().collect()),
    }
}

fn field(name: &str, ty: FieldType) -> FieldSchema {
    FieldSchema {
        name: name.to_owned(),
        ty,
        prefix: false,
    }
}

fn classes() -> impl Iterator<Item = &'static str> {
    DeviceClass::ALL.iter().map(|c| c.as_str())
}

/// Everything the sink writes: the measurements, their tags (with their
/// values where the gateway's tables fix them) and fields. Telemetry fields
/// are the protocol's canonical metrics; a newer node's unknown metric is
/// written too, but no dashboard may rely on one.
#[must_use]
pub fn schema() -> Vec<Measurement> {
    let mut out: Vec<Measurement> = DeviceClass::ALL
        .iter()
        .map(|&class| {
            let mut fields: Vec<FieldSchema> = Metric::of_class(class)
                .chain(Metric::ALL.iter().copied().filter(|m| m.class().is_none()))
                .map(|m| field(m.as_str(), FieldType::Float))
                .collect();
            let mut tags = vec![open(tag::SITE), open(tag::DEVICE), closed(tag::HIST, ["true"])];
            if class == DeviceClass::Charger {
                fields.extend(PortMetric::ALL.iter().map(|m| field(m.as_str(), FieldType::Float)));
                tags.push(open(tag::PORT));
            }
            Measurement {
                name: class.as_str(),
                tags,
                fields,
            }
        })
        .collect();
    let codes = || EventCode::ALL.iter().map(|c| c.as_str());
    let severities = || Severity::ALL.iter().map(|s| s.as_str());
    out.push(Measurement {
        name: EVENT,
        tags: vec![
            open(tag::SITE),
            closed(tag::CLASS, classes()),
            open(tag::DEVICE),
            closed(tag::CODE, codes()),
            closed(tag::SEVERITY, severities()),
            closed(tag::ACTIVE, ["true", "false"]),
            open(tag::PORT),
            closed(tag::HIST, ["true"]),
        ],
        fields: vec![
            field(event::SEQ, FieldType::Integer),
            field(event::LABEL_ZH, FieldType::String),
            field(event::LABEL_EN, FieldType::String),
            FieldSchema {
                name: event::DETAIL.into(),
                ty: FieldType::Float,
                prefix: true,
            },
            FieldSchema {
                name: event::TEXT.into(),
                ty: FieldType::String,
                prefix: true,
            },
        ],
    });
    out.push(Measurement {
        name: ALERT,
        tags: vec![
            open(tag::SITE),
            closed(tag::CLASS, classes().chain([GATEWAY_CLASS])),
            open(tag::DEVICE),
            closed(tag::CODE, codes()),
            closed(tag::SEVERITY, severities()),
            closed(tag::CHANGE, CHANGES),
            closed(tag::STATE, STATES),
            open(tag::PORT),
            open(tag::BUILDING),
        ],
        fields: vec![
            field(alert::ID, FieldType::Integer),
            field(alert::LABEL_ZH, FieldType::String),
            field(alert::LABEL_EN, FieldType::String),
            field(alert::SINCE, FieldType::Integer),
            field(alert::DURATION_S, FieldType::Float),
            field(alert::FLAPPING, FieldType::Float),
            field(alert::MAINTENANCE, FieldType::Float),
            field(alert::INHIBITED, FieldType::Float),
        ],
    });
    let mut counts: Vec<FieldSchema> = [
        state::DEVICES,
        state::DEVICES_ONLINE,
        state::ALERTS_OPEN,
        state::ALERTS_FIRING,
        state::ALERTS_UNACKED,
        state::ORDERS_OPEN,
    ]
    .iter()
    .map(|f| field(f, FieldType::Integer))
    .collect();
    counts.extend(severities().map(|s| field(&format!("{}{s}", state::ALERTS_BY), FieldType::Integer)));
    out.push(Measurement {
        name: STATE,
        tags: vec![open(tag::SITE), closed(tag::CLASS, classes().chain([GATEWAY_CLASS]))],
        fields: counts,
    });
    out
}

/// One line being written: tags first, then fields, then the time. Keys
/// and values are escaped as line protocol wants (names from the field,
/// such as a building's, may hold spaces or commas).
struct Line<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    fields: usize,
}

impl<'a> Line<'a> {
    fn new(out: &'a mut Vec<u8>, measurement: &str) -> Line<'a> {
        let start = out.len();
        escape(measurement, b",  ", out);
        Line { out, start, fields: 0 }
    }

    /// A tag; left out when empty (line protocol has no empty tag value).
    fn tag(&mut self, key: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.out.push(b',');
            escape(key, b",= ", self.out);
            self.out.push(b'=');
            escape(value, b",= ", self.out);
        }
        self
    }

    fn key(&mut self, prefix: &str, name: &str) {
        self.out.push(if self.fields == 0 { b' ' } else { b',' });
        self.fields += 1;
        escape(prefix, b",= ", self.out);
        escape(name, b",= ", self.out);
        self.out.push(b'=');
    }

    /// A float field; a value that is not finite is left out (line
    /// protocol has none, and one would get the whole batch refused).
    fn float(&mut self, prefix: &str, name: &str, v: f64) -> &mut Self {
        if v.is_finite() {
            self.key(prefix, name);
            number(v, self.out);
        }
        self
    }

    fn flag(&mut self, name: &str, v: bool) -> &mut Self {
        self.float("", name, if v { 1.0 } else { 0.0 })
    }

    fn int(&mut self, name: &str, v: i64) -> &mut Self {
        self.key("", name);
        let _ = write!(self.out, "{v}i");
        self
    }

    fn string(&mut self, prefix: &str, name: &str, v: &str) -> &mut Self {
        self.key(prefix, name);
        self.out.push(b'"');
        escape(v, b"\"\\", self.out);
        self.out.push(b'"');
        self
    }

    /// Ends the line at `ts` (ms); a line without fields is taken back.
    /// Whether it was written.
    fn finish(&mut self, ts: i64) -> bool {
        if self.fields == 0 {
            self.out.truncate(self.start);
            return false;
        }
        let _ = writeln!(self.out, " {ts}");
        true
    }
}

/// `text` with a backslash before each of `special`; line breaks become
/// spaces (a line is a point).
fn escape(text: &str, special: &[u8], out: &mut Vec<u8>) {
    if !text.bytes().any(|b| special.contains(&b) || b == b'\n' || b == b'\r') {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for b in text.bytes() {
        match b {
            b'\n' | b'\r' => out.push(b' '),
            b if special.contains(&b) => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

/// A finite value as a line-protocol float: Rust's shortest round-trip
/// form, with `.0` added to whole numbers so the field is typed float (an
/// integer-looking first write would type the field integer in InfluxDB).
pub(crate) fn number(v: f64, out: &mut Vec<u8>) {
    let start = out.len();
    let _ = write!(out, "{v}");
    if !out[start..].contains(&b'.') {
        out.extend_from_slice(b".0");
    }
}

/// The labels of a code: Chinese and English, the code itself for one this
/// build does not know (a newer node's, or a rule's own).
fn labels(code: &str) -> (&str, &str) {
    EventCode::from_name(code).map_or((code, code), |c| (c.label_zh(), c.label_en()))
}

/// Appends the line-protocol lines of a message to `out` and returns how
/// many it wrote: a `data` message's samples (one line for the device, one
/// per port), an `event` as one [`EVENT`] point; nothing for other kinds.
pub fn encode(incoming: &Incoming, out: &mut Vec<u8>) -> usize {
    match &incoming.message {
        Message::Data(d) => encode_data(incoming, d, out),
        Message::Event(e) => usize::from(encode_event(incoming, e, out)),
        _ => 0,
    }
}

fn encode_data(incoming: &Incoming, d: &protocol::Data, out: &mut Vec<u8>) -> usize {
    let t = &incoming.topic;
    let ts = d.ts.as_millis();
    let mut n = 0;
    // Topic segments are checked names (no space, comma or `=`): written
    // as they are, the hot path of the sink.
    let mut line = |port: Option<u8>, fields: &mut dyn Iterator<Item = (&str, Value)>| {
        let start = out.len();
        let _ = write!(out, "{},{}={},{}={}", t.class, tag::SITE, t.site, tag::DEVICE, t.device);
        if let Some(p) = port {
            let _ = write!(out, ",{}={p}", tag::PORT);
        }
        if d.hist {
            let _ = write!(out, ",{}=true", tag::HIST);
        }
        let mut sep = b' ';
        for (name, v) in fields {
            let v = v.to_number();
            // Line protocol has no NaN or infinity; the decoder refuses them
            // already, and one such field must not get the batch refused.
            if !v.is_finite() {
                continue;
            }
            out.push(sep);
            sep = b',';
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            number(v, out);
        }
        if sep == b' ' {
            out.truncate(start);
            return;
        }
        let _ = writeln!(out, " {ts}");
        n += 1;
    };
    if !d.m.is_empty() {
        line(None, &mut d.m.iter().map(|r| (r.name.as_str(), r.value)));
    }
    for p in &d.ports {
        if !p.readings.is_empty() {
            line(Some(p.port), &mut p.readings.iter().map(|r| (r.name.as_str(), r.value)));
        }
    }
    n
}

fn encode_event(incoming: &Incoming, e: &protocol::Event, out: &mut Vec<u8>) -> bool {
    let t = &incoming.topic;
    let code = e.code.as_str();
    let (zh, en) = labels(code);
    let port = e.port().map(|p| p.to_string()).unwrap_or_default();
    let mut l = Line::new(out, EVENT);
    l.tag(tag::SITE, t.site.as_str())
        .tag(tag::CLASS, t.class.as_str())
        .tag(tag::DEVICE, t.device.as_str())
        .tag(tag::CODE, code)
        .tag(tag::SEVERITY, e.code.known().map_or("", |c| c.severity().as_str()))
        .tag(tag::ACTIVE, if e.active { "true" } else { "false" })
        .tag(tag::PORT, &port)
        .tag(tag::HIST, if e.hist { "true" } else { "" });
    l.int(event::SEQ, i64::from(e.seq))
        .string("", event::LABEL_ZH, zh)
        .string("", event::LABEL_EN, en);
    for (name, v) in e.detail.iter() {
        match v {
            // The port is the point's tag.
            _ if name == tag::PORT => {}
            protocol::Scalar::Number(x) => {
                l.float(event::DETAIL, name, *x);
            }
            protocol::Scalar::Bool(b) => {
                l.float(event::DETAIL, name, if *b { 1.0 } else { 0.0 });
            }
            protocol::Scalar::Text(s) => {
                l.string(event::TEXT, name, s);
            }
        }
    }
    l.finish(e.ts.as_millis())
}

/// When an alert change happened: the time the alert itself keeps for it,
/// else `now` (the step's clock).
fn change_time(c: &AlertChange, now: i64) -> i64 {
    let a = &c.alert;
    match c.change {
        Change::Pending => a.since,
        Change::Fired => a.fired_at.unwrap_or(now),
        Change::Acknowledged => a.acked_at.unwrap_or(now),
        Change::Resolved => a.resolved_at.unwrap_or(now),
        Change::Cancelled | Change::Updated => now,
    }
}

/// Appends one [`ALERT`] point per alert change among `effects` (at the
/// change's own time, `now` where the alert keeps none); returns how many.
pub fn encode_alerts(effects: &[Effect], now: i64, out: &mut Vec<u8>) -> usize {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Alert(c) => Some(c),
            _ => None,
        })
        .filter(|c| encode_alert(c, now, out))
        .count()
}

fn encode_alert(c: &AlertChange, now: i64, out: &mut Vec<u8>) -> bool {
    let a: &AlertView = &c.alert;
    let at = change_time(c, now);
    let (zh, en) = labels(&a.code);
    let port = a.port.map(|p| p.to_string()).unwrap_or_default();
    #[allow(clippy::cast_precision_loss)]
    let duration_s = if a.since <= at {
        (at - a.since) as f64 / 1000.0
    } else {
        0.0
    };
    let mut l = Line::new(out, ALERT);
    l.tag(tag::SITE, &a.site)
        .tag(tag::CLASS, &a.class)
        .tag(tag::DEVICE, &a.device)
        .tag(tag::CODE, &a.code)
        .tag(tag::SEVERITY, a.severity.as_str())
        .tag(tag::CHANGE, change_name(c.change))
        .tag(tag::STATE, a.state.as_str())
        .tag(tag::PORT, &port)
        .tag(tag::BUILDING, a.building.as_deref().unwrap_or(""));
    l.int(alert::ID, i64::try_from(a.id).unwrap_or(i64::MAX))
        .string("", alert::LABEL_ZH, zh)
        .string("", alert::LABEL_EN, en)
        .int(alert::SINCE, a.since)
        .float("", alert::DURATION_S, duration_s)
        .flag(alert::FLAPPING, a.flapping)
        .flag(alert::MAINTENANCE, a.maintenance)
        .flag(alert::INHIBITED, a.inhibited_by.is_some());
    l.finish(at)
}

/// The overview's counts of one site and class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Devices known.
    pub devices: u64,
    /// Devices online.
    pub devices_online: u64,
    /// Open alerts.
    pub alerts_open: u64,
    /// Open alerts firing.
    pub alerts_firing: u64,
    /// Firing alerts nobody has acknowledged.
    pub alerts_unacked: u64,
    /// Open alerts by severity, in [`Severity::ALL`]'s order.
    pub alerts_by: [u64; Severity::ALL.len()],
    /// Open work orders.
    pub orders_open: u64,
}

/// Counts per (site, class), gathered from the registry, the engine and the desk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<(String, String), Counts>);

impl Tally {
    fn at(&mut self, site: &str, class: &str) -> &mut Counts {
        self.0.entry((site.to_owned(), class.to_owned())).or_default()
    }

    /// A device, online or not.
    pub fn device(&mut self, site: &str, class: &str, online: bool) {
        let c = self.at(site, class);
        c.devices += 1;
        c.devices_online += u64::from(online);
    }

    /// An open alert.
    pub fn alert(&mut self, a: &AlertView) {
        let c = self.at(&a.site, &a.class);
        c.alerts_open += 1;
        let firing = matches!(a.state, State::Firing | State::Acknowledged);
        c.alerts_firing += u64::from(firing);
        c.alerts_unacked += u64::from(a.state == State::Firing);
        if let Some(n) = c.alerts_by.get_mut(usize::from(a.severity.id())) {
            *n += 1;
        }
    }

    /// An open work order.
    pub fn order(&mut self, site: &str, class: &str) {
        self.at(site, class).orders_open += 1;
    }

    /// The counts of one site and class.
    #[must_use]
    pub fn get(&self, site: &str, class: &str) -> Option<&Counts> {
        self.0.get(&(site.to_owned(), class.to_owned()))
    }
}

/// When the overview's counts ([`STATE`]) are written: at start, every
/// [`Overview::EVERY_MS`], and [`Overview::CHANGED_MS`] after a change at
/// the soonest (an alert, an order, a birth, a death or an event), so the
/// overview follows within seconds without a point per commit in a storm.
#[derive(Debug, Default)]
pub struct Overview {
    last: Option<i64>,
    dirty: bool,
    /// Every (site, class) written so far: one that empties is written as
    /// zeros, not left at its last count.
    seen: BTreeSet<(String, String)>,
}

impl Overview {
    /// The longest a count goes unwritten (gateway ms).
    pub const EVERY_MS: i64 = 60_000;
    /// The shortest time between two writes after changes.
    pub const CHANGED_MS: i64 = 2_000;

    /// Whether the counts are due at `now`; `changed` says this step
    /// changed something they count (remembered until written).
    pub fn due(&mut self, now: i64, changed: bool) -> bool {
        self.dirty |= changed;
        self.last.is_none_or(|last| {
            let since = now.saturating_sub(last);
            since >= Self::EVERY_MS || (self.dirty && since >= Self::CHANGED_MS)
        })
    }

    /// Writes the counts at `now`, one [`STATE`] point per site and class
    /// (zeros for those seen before and empty now); returns how many.
    pub fn write(&mut self, now: i64, tally: &Tally, out: &mut Vec<u8>) -> usize {
        self.last = Some(now);
        self.dirty = false;
        self.seen.extend(tally.0.keys().cloned());
        let mut n = 0;
        for (site, class) in &self.seen {
            let c = tally.get(site, class).copied().unwrap_or_default();
            let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let mut l = Line::new(out, STATE);
            l.tag(tag::SITE, site).tag(tag::CLASS, class);
            l.int(state::DEVICES, int(c.devices))
                .int(state::DEVICES_ONLINE, int(c.devices_online))
                .int(state::ALERTS_OPEN, int(c.alerts_open))
                .int(state::ALERTS_FIRING, int(c.alerts_firing))
                .int(state::ALERTS_UNACKED, int(c.alerts_unacked));
            for (s, v) in Severity::ALL.iter().zip(c.alerts_by) {
                l.key(state::ALERTS_BY, s.as_str());
                let _ = write!(l.out, "{}i", int(v));
            }
            l.int(state::ORDERS_OPEN, int(c.orders_open));
            n += usize::from(l.finish(now));
        }
        n
    }
}

/// The lines of a message, one string each (for tests and tools; the
/// pipeline uses [`encode`]).
#[must_use]
pub fn lines(incoming: &Incoming) -> Vec<String> {
    let mut out = Vec::new();
    encode(incoming, &mut out);
    String::from_utf8_lossy(&out).lines().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(topic: &str, payload: &str) -> Incoming {
        crate::ingest::ingest(topic, payload.as_bytes(), 1_763_798_500_000).unwrap()
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn an_event_is_one_point_with_its_detail_and_labels() {
        let ev = incoming(
            "fm/v1/lakeside/charger/BAY-07/event",
            r#"{"v":1,"seq":9002,"ts":1763798400000,"code":"over_temperature","active":true,"detail":{"port":4,"temp_c":67.5,"cut_off":true}}"#,
        );
        assert_eq!(
            lines(&ev),
            [
                "fm_event,site=lakeside,class=charger,device=BAY-07,code=over_temperature,severity=major,active=true,port=4 \
                 seq=9002i,label_zh=\"端口过温\",label_en=\"Port over temperature\",detail_temp_c=67.5,detail_cut_off=1.0 1763798400000"
            ]
        );
        // A replayed clear of a code this build does not know, with a text detail.
        let ev = incoming(
            "fm/v1/lakeside/firepump/PUMP-B2/event",
            r#"{"v":1,"seq":3,"ts":1763798300000,"hist":true,"code":"valve_stuck","active":false,"detail":{"exception":"IllegalDataAddress","ok":false}}"#,
        );
        assert_eq!(
            lines(&ev),
            [
                "fm_event,site=lakeside,class=firepump,device=PUMP-B2,code=valve_stuck,active=false,hist=true \
                 seq=3i,label_zh=\"valve_stuck\",label_en=\"valve_stuck\",text_exception=\"IllegalDataAddress\",detail_ok=0.0 1763798300000"
            ]
        );
    }

    #[test]
    fn names_from_the_field_are_escaped() {
        let mut out = Vec::new();
        let mut l = Line::new(&mut out, ALERT);
        l.tag(tag::BUILDING, "3 号楼, east=1").tag(tag::PORT, "");
        l.string("", alert::LABEL_ZH, "say \"hi\" \\ bye\nnow");
        assert!(l.finish(5));
        assert_eq!(
            text(&out),
            "fm_alert,building=3\\ 号楼\\,\\ east\\=1 label_zh=\"say \\\"hi\\\" \\\\ bye now\" 5\n"
        );
        // No field: no line.
        let mut out = Vec::new();
        let mut l = Line::new(&mut out, ALERT);
        l.tag(tag::SITE, "s").float("", "x", f64::NAN);
        assert!(!l.finish(5));
        assert!(out.is_empty());
    }

    /// Alert changes from the real engine and its built-in rules: smoke in a
    /// bay fires at once, is acknowledged, and resolves on fresh data.
    #[test]
    fn alert_changes_are_points_at_their_own_time() {
        let mut engine = alerting::Engine::new(alerting::RuleSet::builtin(), alerting::Settings::default());
        let dev = alerting::DeviceRef {
            site: "lakeside",
            class: DeviceClass::Charger,
            device: "BAY-07",
        };
        let mut effects = Vec::new();
        let smoke = incoming(
            "fm/v1/lakeside/charger/BAY-07/data",
            r#"{"v":1,"seq":1,"ts":1763798400000,"m":{"smoke":true}}"#,
        );
        engine.observe(1_000_000, dev, alerting::Input::Message(&smoke.message), &mut effects);
        let id = engine.alerts()[0].id;
        engine.ack(1_005_000, id, "li.wei", &mut effects).unwrap();
        let clear = incoming(
            "fm/v1/lakeside/charger/BAY-07/data",
            r#"{"v":1,"seq":2,"ts":1763798460000,"m":{"smoke":false}}"#,
        );
        engine.observe(1_060_000, dev, alerting::Input::Message(&clear.message), &mut effects);
        let mut out = Vec::new();
        let n = encode_alerts(&effects, 2_000_000, &mut out);
        let got = text(&out);
        assert_eq!(n, got.lines().count());
        let head = "fm_alert,site=lakeside,class=charger,device=BAY-07,code=smoke,severity=critical";
        let tail = format!("id={id}i,label_zh=\"烟雾报警\",label_en=\"Smoke\",since=1000000i");
        assert_eq!(
            got.lines().collect::<Vec<_>>(),
            [
                format!(
                    "{head},change=fired,state=firing {tail},duration_s=0.0,flapping=0.0,maintenance=0.0,inhibited=0.0 1000000"
                ),
                format!(
                    "{head},change=acknowledged,state=acknowledged {tail},duration_s=5.0,flapping=0.0,maintenance=0.0,inhibited=0.0 1005000"
                ),
                format!(
                    "{head},change=resolved,state=resolved {tail},duration_s=60.0,flapping=0.0,maintenance=0.0,inhibited=0.0 1060000"
                ),
            ]
        );
    }

    #[test]
    fn change_names_are_the_streams() {
        for c in [
            Change::Pending,
            Change::Fired,
            Change::Acknowledged,
            Change::Resolved,
            Change::Cancelled,
            Change::Updated,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), change_name(c));
        }
    }

    #[test]
    fn the_overview_is_written_at_start_after_changes_and_every_minute() {
        let mut o = Overview::default();
        let mut tally = Tally::default();
        tally.device("lakeside", "elevator", true);
        tally.device("lakeside", "elevator", false);
        tally.order("lakeside", "elevator");
        tally.device("hillside", "charger", true);
        assert!(o.due(0, false), "at start");
        let mut out = Vec::new();
        assert_eq!(o.write(0, &tally, &mut out), 2);
        assert_eq!(
            text(&out),
            "fm_gateway_state,site=hillside,class=charger devices=1i,devices_online=1i,alerts_open=0i,alerts_firing=0i,\
             alerts_unacked=0i,alerts_critical=0i,alerts_major=0i,alerts_minor=0i,alerts_info=0i,orders_open=0i 0\n\
             fm_gateway_state,site=lakeside,class=elevator devices=2i,devices_online=1i,alerts_open=0i,alerts_firing=0i,\
             alerts_unacked=0i,alerts_critical=0i,alerts_major=0i,alerts_minor=0i,alerts_info=0i,orders_open=1i 0\n"
        );
        assert!(!o.due(1_000, true), "a change waits out CHANGED_MS");
        assert!(o.due(Overview::CHANGED_MS, false), "and is remembered until then");
        let mut out = Vec::new();
        // The hillside bay is gone: written as zeros, not left at 1.
        let mut tally = Tally::default();
        tally.device("lakeside", "elevator", true);
        assert_eq!(o.write(Overview::CHANGED_MS, &tally, &mut out), 2);
        assert!(text(&out).starts_with("fm_gateway_state,site=hillside,class=charger devices=0i,devices_online=0i,"));
        assert!(!o.due(Overview::CHANGED_MS + 10_000, false), "nothing changed");
        assert!(
            o.due(Overview::CHANGED_MS + Overview::EVERY_MS, false),
            "every minute regardless"
        );
    }
}
