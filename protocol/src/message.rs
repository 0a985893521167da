//! The six payloads: `birth`, `death`, `data`, `event`, `cmd`, `ack`.
//!
//! Each struct mirrors its JSON object field for field, so the docs, the wire
//! and the code say the same thing. Serialization is written out by hand for
//! one reason: JSON leaves out empty optional fields (`hist: false`, no
//! `bdseq`), while the binary encoding, which has no field names, must write
//! every field in order.

use core::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::class::Kind;
use crate::cmdauth::Mac;
use crate::code::EventCode;
use crate::limits::{MAX_CMD_ID_LEN, MAX_ERROR_LEN, MAX_METRICS, MAX_PORTS, MAX_TEXT_LEN};
use crate::metric::Metric;
use crate::names::{NameString, Named, wire_names};
use crate::readings::{Detail, PortReadings, Readings, Scalar, Text};
use crate::time::Timestamp;

/// The payload schema version this crate speaks (`v`).
pub const SCHEMA_VERSION: u8 = 1;

/// The `v` field: always 1. A payload with another version is rejected, because
/// a reader that guessed at a newer schema could misread a safety signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(SCHEMA_VERSION)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            SCHEMA_VERSION => Ok(V1),
            other => Err(de::Error::custom(format_args!(
                "payload schema version `v` is {other}; only {SCHEMA_VERSION} is supported"
            ))),
        }
    }
}

/// Firmware version, model and similar short texts.
pub type ShortText = Text;
/// A config hash (`cfg`), e.g. 16 hex digits.
pub type ConfigHash = heapless::String<MAX_TEXT_LEN>;
/// A command id (`id`), e.g. a UUID.
pub type CmdId = heapless::String<MAX_CMD_ID_LEN>;
/// A node's error text in an `ack`.
pub type ErrorText = heapless::String<MAX_ERROR_LEN>;

/// A node's first message after (re)connecting (QoS 1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Birth {
    /// Schema version.
    pub v: V1,
    /// Message counter within this session (a birth is usually 0).
    pub seq: u32,
    /// Device clock.
    pub ts: Timestamp,
    /// Replayed from the node's buffer (never for a birth in practice).
    #[serde(default)]
    pub hist: bool,
    /// Session number: +1 per (re)connection; the matching `death` carries it too.
    pub bdseq: u32,
    /// Firmware version.
    pub fw: ShortText,
    /// Hardware model.
    pub model: ShortText,
    /// Hash of the node's configuration, to spot drift.
    pub cfg: ConfigHash,
    /// Reporting interval; offline is judged after 3 × this.
    pub interval_s: u32,
    /// Elevator: rated speed.
    #[serde(default)]
    pub rated_speed_mps: Option<f64>,
    /// Elevator: number of floors served.
    #[serde(default)]
    pub floors: Option<u16>,
    /// Charging bay: number of ports.
    #[serde(default)]
    pub ports: Option<u8>,
}

/// A node's last will, sent by the broker on loss (QoS 1). Only `v` and `bdseq`
/// mean anything: it was written when the node connected.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Death {
    /// Schema version.
    pub v: V1,
    /// The session that ended.
    pub bdseq: u32,
}

/// Telemetry samples.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Data {
    /// Schema version.
    pub v: V1,
    /// Message counter within the session.
    pub seq: u32,
    /// Device clock at sampling.
    pub ts: Timestamp,
    /// Replayed from the node's buffer: store, never alert as live.
    #[serde(default)]
    pub hist: bool,
    /// Session number, optional outside birth and death.
    #[serde(default)]
    pub bdseq: Option<u32>,
    /// Device-level metrics.
    #[serde(default)]
    pub m: Readings<Metric, MAX_METRICS>,
    /// Charging bays: per-port metrics.
    #[serde(default)]
    pub ports: crate::bounded::Bounded<PortReadings, MAX_PORTS>,
}

/// A fault or state change detected on the node (QoS 1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Event {
    /// Schema version.
    pub v: V1,
    /// Message counter within the session.
    pub seq: u32,
    /// Device clock when the node detected it.
    pub ts: Timestamp,
    /// Replayed from the node's buffer.
    #[serde(default)]
    pub hist: bool,
    /// Session number, optional.
    #[serde(default)]
    pub bdseq: Option<u32>,
    /// What happened.
    pub code: Named<EventCode>,
    /// Raised (`true`) or cleared (`false`).
    pub active: bool,
    /// Context: `port` for per-port codes, measured values, etc.
    #[serde(default)]
    pub detail: Detail,
}

wire_names! {
    /// What a command asks a node to do.
    pub enum Op ("command op") {
        /// Cut off a charging port (`args.port`), or all ports without one.
        CutOff = 0 => "cut_off",
        /// Clear a latched cut-off on a port (`args.port`), or on all ports.
        Clear = 1 => "clear",
        /// Start a self-test (a fire pump's weekly 巡检 run).
        SelfTest = 2 => "self_test",
        /// Set a node threshold (`args.name`, `args.value`).
        SetThreshold = 3 => "set_threshold",
        /// Hold an elevator car's doors open (`args.hold: true`), keeping the
        /// car at its landing, or release them (`args.hold: false`): the
        /// gateway's answer to an e-bike in the car (阻梯).
        HoldDoors = 4 => "hold_doors",
    }
}

/// A command's arguments. Typed, so a node decodes them without a heap; fields a
/// node does not know are ignored.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CmdArgs {
    /// 1-based port, for `cut_off` and `clear`.
    #[serde(default)]
    pub port: Option<u8>,
    /// Threshold name, for `set_threshold`.
    #[serde(default)]
    pub name: Option<NameString>,
    /// Threshold value, for `set_threshold`.
    #[serde(default)]
    pub value: Option<f64>,
    /// Hold (`true`) or release (`false`) the doors, for `hold_doors`.
    ///
    /// In the binary encoding it travels after `mac`, and only when present,
    /// so the binary form of every command without it is what it was before
    /// the op existed ([`crate::codec`]).
    #[serde(default)]
    pub hold: Option<bool>,
}

impl CmdArgs {
    fn is_empty(&self) -> bool {
        self.port.is_none() && self.name.is_none() && self.value.is_none() && self.hold.is_none()
    }
}

/// `args` as the binary encoding carries it: the three fields from before
/// `hold` existed (`hold` follows the `mac`; see [`CmdArgs::hold`]).
#[derive(Deserialize)]
pub(crate) struct BinaryArgs {
    port: Option<u8>,
    name: Option<NameString>,
    value: Option<f64>,
}

impl From<BinaryArgs> for CmdArgs {
    fn from(a: BinaryArgs) -> Self {
        CmdArgs {
            port: a.port,
            name: a.name,
            value: a.value,
            hold: None,
        }
    }
}

/// A command from the gateway to a node (QoS 1), answered by an [`Ack`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Cmd {
    /// Schema version.
    pub v: V1,
    /// The gateway's counter for this node.
    pub seq: u32,
    /// Gateway clock when sent.
    pub ts: Timestamp,
    /// Never set on commands; accepted for uniformity.
    #[serde(default)]
    pub hist: bool,
    /// The node session the command was meant for, if the gateway knew it.
    #[serde(default)]
    pub bdseq: Option<u32>,
    /// Command id, echoed in the ack.
    pub id: CmdId,
    /// What to do. An op this node does not know is kept so it can say so in its ack.
    pub op: Named<Op>,
    /// Arguments.
    #[serde(default)]
    pub args: CmdArgs,
    /// The gateway's command counter for this device, strictly increasing
    /// (signed; [`crate::cmdauth`]). Missing: the command is unsigned.
    #[serde(default)]
    pub ctr: Option<u64>,
    /// Gateway clock after which the command must not be carried out (signed).
    #[serde(default)]
    pub exp: Option<Timestamp>,
    /// HMAC-SHA256 over the command, `ctr` and `exp` with the device's
    /// command key ([`crate::cmdauth`]).
    #[serde(default)]
    pub mac: Option<Mac>,
}

/// The head of a binary `cmd`, through `args`. A body that ends here is the
/// layout from before commands were signed: still decoded, as an unsigned
/// command, so a node can answer it `unsigned` instead of dropping it as
/// malformed. `ctr`, `exp`, `mac` and then `hold` follow ([`crate::codec`]).
#[derive(Deserialize)]
pub(crate) struct UnsignedCmd {
    v: V1,
    seq: u32,
    ts: Timestamp,
    hist: bool,
    bdseq: Option<u32>,
    id: CmdId,
    op: Named<Op>,
    args: BinaryArgs,
}

impl From<UnsignedCmd> for Cmd {
    fn from(c: UnsignedCmd) -> Self {
        Cmd {
            v: c.v,
            seq: c.seq,
            ts: c.ts,
            hist: c.hist,
            bdseq: c.bdseq,
            id: c.id,
            op: c.op,
            args: c.args.into(),
            ctr: None,
            exp: None,
            mac: None,
        }
    }
}

/// A node's answer to a command.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Ack {
    /// Schema version.
    pub v: V1,
    /// Message counter within the session.
    pub seq: u32,
    /// Device clock.
    pub ts: Timestamp,
    /// Replayed from the node's buffer.
    #[serde(default)]
    pub hist: bool,
    /// Session number, optional.
    #[serde(default)]
    pub bdseq: Option<u32>,
    /// The command's id.
    pub id: CmdId,
    /// Whether the node did it.
    pub ok: bool,
    /// Why not.
    #[serde(default)]
    pub error: Option<ErrorText>,
}

/// Any payload. The topic's kind says which one a payload must be.
///
/// Not boxed: a node has no heap, and holds one message at a time.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// See [`Birth`].
    Birth(Birth),
    /// See [`Death`].
    Death(Death),
    /// See [`Data`].
    Data(Data),
    /// See [`Event`].
    Event(Event),
    /// See [`Cmd`].
    Cmd(Cmd),
    /// See [`Ack`].
    Ack(Ack),
}

/// The fields common to every payload, as one value for session tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message counter; `None` for a death.
    pub seq: Option<u32>,
    /// Device clock; `None` for a death.
    pub ts: Option<Timestamp>,
    /// Replayed from the node's buffer.
    pub hist: bool,
    /// Session number, where the message carries one.
    pub bdseq: Option<u32>,
}

impl Message {
    /// The kind this payload belongs on.
    #[must_use]
    pub fn kind(&self) -> Kind {
        match self {
            Message::Birth(_) => Kind::Birth,
            Message::Death(_) => Kind::Death,
            Message::Data(_) => Kind::Data,
            Message::Event(_) => Kind::Event,
            Message::Cmd(_) => Kind::Cmd,
            Message::Ack(_) => Kind::Ack,
        }
    }

    /// The common fields.
    #[must_use]
    pub fn header(&self) -> Header {
        let h = |seq, ts, hist, bdseq| Header {
            seq: Some(seq),
            ts: Some(ts),
            hist,
            bdseq,
        };
        match self {
            Message::Birth(m) => h(m.seq, m.ts, m.hist, Some(m.bdseq)),
            Message::Death(m) => Header {
                seq: None,
                ts: None,
                hist: false,
                bdseq: Some(m.bdseq),
            },
            Message::Data(m) => h(m.seq, m.ts, m.hist, m.bdseq),
            Message::Event(m) => h(m.seq, m.ts, m.hist, m.bdseq),
            Message::Cmd(m) => h(m.seq, m.ts, m.hist, m.bdseq),
            Message::Ack(m) => h(m.seq, m.ts, m.hist, m.bdseq),
        }
    }

    /// Checks what serde cannot: rules across fields and values that must be
    /// finite or non-zero. Run on every decode and before every encode.
    ///
    /// # Errors
    /// The first [`Invalid`] field found.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            Message::Birth(b) => {
                if b.interval_s == 0 {
                    return Err(Invalid::new("interval_s", "must be at least 1 second"));
                }
                if b.rated_speed_mps.is_some_and(|s| !s.is_finite() || s <= 0.0) {
                    return Err(Invalid::new("rated_speed_mps", "must be a positive finite number"));
                }
                if b.ports == Some(0) {
                    return Err(Invalid::new("ports", "must be at least 1"));
                }
                Ok(())
            }
            Message::Death(_) => Ok(()),
            Message::Data(d) => d.validate(),
            Message::Event(e) => e.validate(),
            Message::Cmd(c) => c.validate(),
            Message::Ack(a) => check_id(&a.id),
        }
    }
}

impl Data {
    /// A sample with no readings yet, outside any declared session.
    #[must_use]
    pub fn new(seq: u32, ts: Timestamp) -> Self {
        Data {
            v: V1,
            seq,
            ts,
            hist: false,
            bdseq: None,
            m: Readings::new(),
            ports: crate::bounded::Bounded::new(),
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.m.first_non_finite().is_some() {
            return Err(Invalid::new("m", "holds a NaN or infinite number"));
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.port == 0 {
                return Err(Invalid::new("ports", "has port 0; ports are 1-based"));
            }
            if self.ports[..i].iter().any(|q| q.port == p.port) {
                return Err(Invalid::new("ports", "lists the same port twice"));
            }
            if p.readings.first_non_finite().is_some() {
                return Err(Invalid::new("ports", "holds a NaN or infinite number"));
            }
        }
        Ok(())
    }
}

impl Event {
    /// The port an event concerns (`detail.port`), for per-port codes.
    #[must_use]
    pub fn port(&self) -> Option<u8> {
        match self.detail.get("port") {
            Some(Scalar::Number(n)) if *n >= 1.0 && *n <= 255.0 && crate::metric::is_whole(*n) => {
                // Checked: whole and in 1..=255.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(*n as u8)
            }
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self
            .detail
            .iter()
            .any(|(_, v)| matches!(v, Scalar::Number(n) if !n.is_finite()))
        {
            return Err(Invalid::new("detail", "holds a NaN or infinite number"));
        }
        if self.detail.get("port").is_some() && self.port().is_none() {
            return Err(Invalid::new("detail.port", "must be a whole number from 1 to 255"));
        }
        if self.code.known().is_some_and(EventCode::is_per_port) && self.port().is_none() {
            return Err(Invalid::new("detail.port", "is required for a per-port code"));
        }
        Ok(())
    }
}

impl Cmd {
    fn validate(&self) -> Result<(), Invalid> {
        check_id(&self.id)?;
        if self.args.port == Some(0) {
            return Err(Invalid::new("args.port", "is 1-based; 0 is not a port"));
        }
        if self.args.value.is_some_and(|v| !v.is_finite()) {
            return Err(Invalid::new("args.value", "must be a finite number"));
        }
        if self.op == Named::Known(Op::SetThreshold) && (self.args.name.is_none() || self.args.value.is_none()) {
            return Err(Invalid::new("args", "set_threshold needs `name` and `value`"));
        }
        if self.op == Named::Known(Op::HoldDoors) && self.args.hold.is_none() {
            return Err(Invalid::new("args", "hold_doors needs `hold`"));
        }
        Ok(())
    }
}

fn check_id(id: &str) -> Result<(), Invalid> {
    if id.is_empty() {
        return Err(Invalid::new("id", "is empty"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(Invalid::new("id", "may only hold [A-Za-z0-9._:-]"));
    }
    Ok(())
}

/// A field whose value breaks a rule serde cannot express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {reason}")]
pub struct Invalid {
    /// The field, as named on the wire.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Invalid {
    const fn new(field: &'static str, reason: &'static str) -> Self {
        Invalid { field, reason }
    }
}

/// Writes struct fields, leaving empty optional ones out of JSON only.
struct Fields<S> {
    out: S,
    compact: bool,
}

impl<S: SerializeStruct> Fields<S> {
    fn begin<T>(ser: T, name: &'static str, len: usize) -> Result<Self, S::Error>
    where
        T: Serializer<SerializeStruct = S, Error = S::Error>,
    {
        let compact = !ser.is_human_readable();
        Ok(Fields {
            out: ser.serialize_struct(name, len)?,
            compact,
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), S::Error> {
        self.out.serialize_field(key, v)
    }

    /// An `Option`: left out of JSON when `None`.
    fn opt<T: Serialize>(&mut self, key: &'static str, v: Option<&T>) -> Result<(), S::Error> {
        match (v, self.compact) {
            (_, true) => self.out.serialize_field(key, &v),
            (Some(x), false) => self.out.serialize_field(key, x),
            (None, false) => self.out.skip_field(key),
        }
    }

    /// A value with a default: left out of JSON when it is the default.
    fn unless<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T, is_default: bool) -> Result<(), S::Error> {
        if is_default && !self.compact {
            self.out.skip_field(key)
        } else {
            self.out.serialize_field(key, v)
        }
    }

    /// The header fields shared by all payloads but `death`.
    fn header(&mut self, seq: u32, ts: Timestamp, hist: bool) -> Result<(), S::Error> {
        self.field("v", &V1)?;
        self.field("seq", &seq)?;
        self.field("ts", &ts)?;
        self.unless("hist", &hist, !hist)
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.out.end()
    }
}

impl Serialize for Birth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "Birth", 12)?;
        f.header(self.seq, self.ts, self.hist)?;
        f.field("bdseq", &self.bdseq)?;
        f.field("fw", &self.fw)?;
        f.field("model", &self.model)?;
        f.field("cfg", &self.cfg)?;
        f.field("interval_s", &self.interval_s)?;
        f.opt("rated_speed_mps", self.rated_speed_mps.as_ref())?;
        f.opt("floors", self.floors.as_ref())?;
        f.opt("ports", self.ports.as_ref())?;
        f.end()
    }
}

impl Serialize for Death {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "Death", 2)?;
        f.field("v", &V1)?;
        f.field("bdseq", &self.bdseq)?;
        f.end()
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "Data", 7)?;
        f.header(self.seq, self.ts, self.hist)?;
        f.opt("bdseq", self.bdseq.as_ref())?;
        f.field("m", &self.m)?;
        f.unless("ports", &self.ports, self.ports.is_empty())?;
        f.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "Event", 8)?;
        f.header(self.seq, self.ts, self.hist)?;
        f.opt("bdseq", self.bdseq.as_ref())?;
        f.field("code", &self.code)?;
        f.field("active", &self.active)?;
        f.unless("detail", &self.detail, self.detail.is_empty())?;
        f.end()
    }
}

impl Serialize for CmdArgs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "CmdArgs", 4)?;
        f.opt("port", self.port.as_ref())?;
        f.opt("name", self.name.as_ref())?;
        f.opt("value", self.value.as_ref())?;
        // Binary: `hold` is written by the `Cmd`, after its `mac`.
        if !f.compact {
            f.opt("hold", self.hold.as_ref())?;
        }
        f.end()
    }
}

impl Serialize for Cmd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "Cmd", 12)?;
        f.header(self.seq, self.ts, self.hist)?;
        f.opt("bdseq", self.bdseq.as_ref())?;
        f.field("id", &self.id)?;
        f.field("op", &self.op)?;
        f.unless("args", &self.args, self.args.is_empty())?;
        f.opt("ctr", self.ctr.as_ref())?;
        f.opt("exp", self.exp.as_ref())?;
        f.opt("mac", self.mac.as_ref())?;
        // Binary only (JSON has it in `args`), and only when present: the
        // binary form of every other command ends at `mac`, as before.
        if f.compact && self.args.hold.is_some() {
            f.opt("hold", self.args.hold.as_ref())?;
        }
        f.end()
    }
}

impl Serialize for Ack {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "Ack", 8)?;
        f.header(self.seq, self.ts, self.hist)?;
        f.opt("bdseq", self.bdseq.as_ref())?;
        f.field("id", &self.id)?;
        f.field("ok", &self.ok)?;
        f.opt("error", self.error.as_ref())?;
        f.end()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.header();
        write!(f, "{}", self.kind())?;
        if let Some(seq) = h.seq {
            write!(f, " seq={seq}")?;
        }
        if let Some(b) = h.bdseq {
            write!(f, " bdseq={b}")?;
        }
        if h.hist {
            f.write_str(" hist")?;
        }
        Ok(())
    }
}

/// Borrowed telemetry: what a node sends as `data`, without building a [`Data`].
///
/// A [`Data`] has room for every limit (7.9 KiB); a node knows exactly which
/// canonical metrics it has and keeps them in its own compact state. It lends
/// them here and [`crate::codec::encode_sample`] writes the very bytes a
/// [`Data`] with the same readings would.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Message counter within the session.
    pub seq: u32,
    /// Device clock at sampling.
    pub ts: Timestamp,
    /// Replayed from the node's buffer.
    pub hist: bool,
    /// Session number, optional.
    pub bdseq: Option<u32>,
    /// Device-level metrics.
    pub m: &'a [(Metric, crate::metric::Value)],
    /// Charging bays: per-port metrics.
    pub ports: &'a [PortSample<'a>],
}

/// One port's metrics in a [`Sample`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PortSample<'a> {
    /// 1-based port number.
    pub port: u8,
    /// The port's metrics.
    pub m: &'a [(crate::metric::PortMetric, crate::metric::Value)],
}

impl Sample<'_> {
    /// The same checks [`Message::validate`] makes for a [`Data`], plus the
    /// ones a [`Readings`] enforces by construction (no repeats, capacities).
    ///
    /// # Errors
    /// The first [`Invalid`] field.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_pairs(self.m, MAX_METRICS, "m")?;
        if self.ports.len() > MAX_PORTS {
            return Err(Invalid::new("ports", "has more ports than one message may carry"));
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.port == 0 {
                return Err(Invalid::new("ports", "has port 0; ports are 1-based"));
            }
            if self.ports[..i].iter().any(|q| q.port == p.port) {
                return Err(Invalid::new("ports", "lists the same port twice"));
            }
            check_pairs(p.m, crate::limits::MAX_PORT_METRICS, "ports")?;
        }
        Ok(())
    }
}

fn check_pairs<M: crate::metric::MetricInfo>(
    pairs: &[(M, crate::metric::Value)],
    max: usize,
    field: &'static str,
) -> Result<(), Invalid> {
    if pairs.len() > max {
        return Err(Invalid::new(field, "has more metrics than one message may carry"));
    }
    for (i, (m, v)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == m) {
            return Err(Invalid::new(field, "repeats a metric"));
        }
        if m.kind().check(*v).is_err() {
            return Err(Invalid::new(field, "holds a value of the wrong kind, or NaN"));
        }
    }
    Ok(())
}

/// Serializes `(metric, value)` pairs exactly as [`Readings`] does.
struct Pairs<'a, M>(&'a [(M, crate::metric::Value)]);

impl<M: crate::names::WireName> Serialize for Pairs<'_, M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (m, v) in self.0 {
            map.serialize_entry(&Named::Known(*m), v)?;
        }
        map.end()
    }
}

impl Serialize for PortSample<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeTuple};
        if s.is_human_readable() {
            let mut map = s.serialize_map(Some(self.m.len() + 1))?;
            map.serialize_entry("port", &self.port)?;
            for (m, v) in self.m {
                map.serialize_entry(&Named::Known(*m), v)?;
            }
            map.end()
        } else {
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&self.port)?;
            t.serialize_element(&Pairs(self.m))?;
            t.end()
        }
    }
}

impl Serialize for Sample<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::begin(s, "Data", 7)?;
        f.header(self.seq, self.ts, self.hist)?;
        f.opt("bdseq", self.bdseq.as_ref())?;
        f.field("m", &Pairs(self.m))?;
        f.unless("ports", self.ports, self.ports.is_empty())?;
        f.end()
    }
}
