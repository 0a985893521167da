//! Bounded maps carried in payloads: a message's metrics (`m`), a charging
//! port's metrics (`ports[]`), and an event's `detail`.
//!
//! They are fixed-capacity so a node builds and encodes them without a heap; the
//! capacities are protocol limits (see [`crate::limits`]) and a payload over them
//! is rejected with a message saying which limit.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_DETAIL_FIELDS, MAX_PORT_METRICS, MAX_TEXT_LEN};
use crate::metric::{Expect, MetricInfo, PortMetric, Value, ValueSeed};
use crate::names::{NameString, Named, WireName, parse_name};

/// A bounded container is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("more than {max} entries")]
pub struct CapacityError {
    /// The container's capacity.
    pub max: usize,
}

/// One metric and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading<M> {
    /// The metric (possibly one this version does not know).
    pub name: Named<M>,
    /// Its value, checked against the metric's kind when the metric is known.
    pub value: Value,
}

/// Metric → value, at most `N` entries, each metric at most once, in the
/// order they were inserted (and so in the order they appear on the wire).
#[derive(Clone, Debug, PartialEq)]
pub struct Readings<M, const N: usize> {
    items: crate::bounded::Bounded<Reading<M>, N>,
}

impl<M, const N: usize> Default for Readings<M, N> {
    fn default() -> Self {
        Readings {
            items: crate::bounded::Bounded::new(),
        }
    }
}

impl<M: MetricInfo, const N: usize> Readings<M, N> {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a metric's value, replacing an earlier one.
    ///
    /// # Errors
    /// [`CapacityError`] when the metric is new and the set is full.
    pub fn set(&mut self, name: impl Into<Named<M>>, value: impl Into<Value>) -> Result<(), CapacityError> {
        let name = name.into();
        let value = value.into();
        if let Some(r) = self.items.iter_mut().find(|r| r.name == name) {
            r.value = value;
            return Ok(());
        }
        self.items
            .push(Reading { name, value })
            .map_err(|_| CapacityError { max: N })
    }

    /// The value of a known metric.
    #[must_use]
    pub fn get(&self, metric: M) -> Option<Value> {
        self.items
            .iter()
            .find(|r| r.name.known() == Some(metric))
            .map(|r| r.value)
    }

    /// The value of a metric by wire name, known or not.
    #[must_use]
    pub fn get_by_name(&self, name: &str) -> Option<Value> {
        self.items.iter().find(|r| r.name.as_str() == name).map(|r| r.value)
    }

    /// All readings, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = &Reading<M>> {
        self.items.iter()
    }

    /// Number of readings.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether any value is a NaN or infinite number (which cannot be encoded).
    pub(crate) fn first_non_finite(&self) -> Option<&str> {
        self.items
            .iter()
            .find(|r| matches!(r.value, Value::Number(n) if !n.is_finite()))
            .map(|r| r.name.as_str())
    }
}

impl<M: MetricInfo, const N: usize> Serialize for Readings<M, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.items.len()))?;
        for r in &self.items {
            map.serialize_entry(&r.name, &r.value)?;
        }
        map.end()
    }
}

impl<'de, M: MetricInfo, const N: usize> Deserialize<'de> for Readings<M, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ReadingsVisitor(PhantomData))
    }
}

struct ReadingsVisitor<M, const N: usize>(PhantomData<M>);

impl<'de, M: MetricInfo, const N: usize> Visitor<'de> for ReadingsVisitor<M, N> {
    type Value = Readings<M, N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object of at most {N} {} values", M::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Readings::<M, N>::new();
        while let Some(name) = map.next_key::<Named<M>>()? {
            insert_reading(&mut out, name, &mut map)?;
        }
        Ok(out)
    }
}

/// Reads the value for `name` from `map` and adds it, rejecting duplicates and overflow.
fn insert_reading<'de, M: MetricInfo, const N: usize, A: MapAccess<'de>>(
    out: &mut Readings<M, N>,
    name: Named<M>,
    map: &mut A,
) -> Result<(), A::Error> {
    let expect = name.known().map(Expect::of);
    let value = map.next_value_seed(ValueSeed { expect })?;
    if out.items.iter().any(|r| r.name == name) {
        return Err(de::Error::custom(format_args!(
            "{} `{}` appears twice",
            M::WHAT,
            name.as_str()
        )));
    }
    out.items
        .push(Reading { name, value })
        .map_err(|_| de::Error::custom(format_args!("more than {N} {} values in one object", M::WHAT)))
}

/// The metrics of one charging port, as one element of `data.ports`.
///
/// JSON writes it flat, `{"port": 3, "state": 1, "power_w": 120.5}`, as the
/// contract shows; the binary encoding writes `(port, metrics)`.
#[derive(Clone, Debug, PartialEq)]
pub struct PortReadings {
    /// 1-based port number.
    pub port: u8,
    /// The port's metrics.
    pub readings: Readings<PortMetric, MAX_PORT_METRICS>,
}

impl PortReadings {
    /// An empty reading set for a port.
    #[must_use]
    pub fn new(port: u8) -> Self {
        PortReadings {
            port,
            readings: Readings::new(),
        }
    }
}

impl Serialize for PortReadings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut map = s.serialize_map(Some(self.readings.len() + 1))?;
            map.serialize_entry("port", &self.port)?;
            for r in self.readings.iter() {
                map.serialize_entry(&r.name, &r.value)?;
            }
            map.end()
        } else {
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&self.port)?;
            t.serialize_element(&self.readings)?;
            t.end()
        }
    }
}

impl<'de> Deserialize<'de> for PortReadings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let port = if d.is_human_readable() {
            d.deserialize_map(PortVisitor)?
        } else {
            d.deserialize_tuple(2, PortVisitor)?
        };
        if port.port == 0 {
            return Err(de::Error::custom("`port` is 1-based; 0 is not a port"));
        }
        Ok(port)
    }
}

struct PortVisitor;

/// A key inside a JSON port object: `port` or a port metric.
enum PortKey {
    Port,
    Metric(Named<PortMetric>),
}

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = PortKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`port` or a port metric name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortKey, E> {
                if v == "port" {
                    return Ok(PortKey::Port);
                }
                Named::parse(v)
                    .map(PortKey::Metric)
                    .map_err(|e| E::custom(format_args!("bad port metric `{v}`: {e}")))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for PortVisitor {
    type Value = PortReadings;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port object with a 1-based `port` and its metrics")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PortReadings, A::Error> {
        let mut port = None;
        let mut readings = Readings::new();
        while let Some(key) = map.next_key::<PortKey>()? {
            match key {
                PortKey::Port if port.is_some() => return Err(de::Error::custom("`port` appears twice")),
                PortKey::Port => port = Some(map.next_value::<u8>()?),
                PortKey::Metric(name) => insert_reading(&mut readings, name, &mut map)?,
            }
        }
        let port = port.ok_or_else(|| de::Error::missing_field("port"))?;
        Ok(PortReadings { port, readings })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PortReadings, A::Error> {
        let port = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let readings = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok(PortReadings { port, readings })
    }
}

/// A short text value in an event's `detail`.
pub type Text = heapless::String<MAX_TEXT_LEN>;

/// A value in an event's `detail`: a number, a flag or a short text.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A flag.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// A text of at most [`MAX_TEXT_LEN`] bytes.
    Text(Text),
}

impl From<Value> for Scalar {
    fn from(v: Value) -> Self {
        match v {
            Value::Bool(b) => Scalar::Bool(b),
            Value::Number(n) => Scalar::Number(n),
        }
    }
}

/// Binary form of [`Scalar`].
#[derive(Serialize, Deserialize)]
enum WireScalar<'a> {
    Value(Value),
    Text(&'a str),
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self, s.is_human_readable()) {
            (Scalar::Bool(b), true) => Value::Bool(*b).serialize(s),
            (Scalar::Number(n), true) => Value::Number(*n).serialize(s),
            (Scalar::Text(t), true) => s.serialize_str(t),
            (Scalar::Bool(b), false) => WireScalar::Value(Value::Bool(*b)).serialize(s),
            (Scalar::Number(n), false) => WireScalar::Value(Value::Number(*n)).serialize(s),
            (Scalar::Text(t), false) => WireScalar::Text(t).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let scalar = if d.is_human_readable() {
            d.deserialize_any(ScalarVisitor)?
        } else {
            match WireScalar::deserialize(d)? {
                WireScalar::Value(v) => v.into(),
                WireScalar::Text(t) => ScalarVisitor.visit_str(t)?,
            }
        };
        match scalar {
            Scalar::Number(n) if !n.is_finite() => Err(de::Error::custom("a number is NaN or infinite")),
            s => Ok(s),
        }
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a number, a boolean or a text of at most {MAX_TEXT_LEN} bytes")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Number(v as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        let mut t = Text::new();
        t.push_str(v).map_err(|_| {
            E::custom(format_args!(
                "text is {} bytes, at most {MAX_TEXT_LEN} allowed",
                v.len()
            ))
        })?;
        Ok(Scalar::Text(t))
    }
}

/// An event's `detail`: name → scalar, at most [`MAX_DETAIL_FIELDS`] entries.
///
/// Flat by design: a node can build it without a heap, and every field can be a
/// column in a supervision record export.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detail {
    items: heapless::Vec<(NameString, Scalar), MAX_DETAIL_FIELDS>,
}

impl Detail {
    /// An empty detail.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a field, replacing an earlier one.
    ///
    /// # Errors
    /// [`DetailError`] if the name is not a wire name or the detail is full.
    pub fn set(&mut self, name: &str, value: impl Into<Scalar>) -> Result<(), DetailError> {
        let name = parse_name(name)?;
        let value = value.into();
        if let Some(slot) = self.items.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
            return Ok(());
        }
        self.items
            .push((name, value))
            .map_err(|_| DetailError::Full(CapacityError { max: MAX_DETAIL_FIELDS }))
    }

    /// A field by name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Scalar> {
        self.items.iter().find(|(n, _)| n.as_str() == name).map(|(_, v)| v)
    }

    /// All fields, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Scalar)> {
        self.items.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Whether there are no fields.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl From<bool> for Scalar {
    fn from(b: bool) -> Self {
        Scalar::Bool(b)
    }
}

impl From<f64> for Scalar {
    fn from(n: f64) -> Self {
        Scalar::Number(n)
    }
}

impl From<u8> for Scalar {
    fn from(n: u8) -> Self {
        Scalar::Number(f64::from(n))
    }
}

impl From<i32> for Scalar {
    fn from(n: i32) -> Self {
        Scalar::Number(f64::from(n))
    }
}

/// Why a detail field could not be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    /// The field name is not a wire name.
    #[error("bad detail name: {0}")]
    Name(#[from] crate::names::NameError),
    /// The detail already has [`MAX_DETAIL_FIELDS`] fields.
    #[error("detail is full: {0}")]
    Full(CapacityError),
}

impl Serialize for Detail {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.items.len()))?;
        for (n, v) in &self.items {
            map.serialize_entry(n.as_str(), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DetailVisitor)
    }
}

struct DetailVisitor;

/// A detail key, checked as a wire name.
struct DetailKey(NameString);

impl<'de> Deserialize<'de> for DetailKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = DetailKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a detail field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DetailKey, E> {
                parse_name(v)
                    .map(DetailKey)
                    .map_err(|e| E::custom(format_args!("bad detail name `{v}`: {e}")))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for DetailVisitor {
    type Value = Detail;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object of at most {MAX_DETAIL_FIELDS} scalar fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Detail, A::Error> {
        let mut out = Detail::new();
        while let Some(DetailKey(name)) = map.next_key()? {
            let value: Scalar = map.next_value()?;
            if out.items.iter().any(|(n, _)| *n == name) {
                return Err(de::Error::custom(format_args!(
                    "detail `{}` appears twice",
                    name.as_str()
                )));
            }
            out.items
                .push((name, value))
                .map_err(|_| de::Error::custom(format_args!("more than {MAX_DETAIL_FIELDS} detail fields")))?;
        }
        Ok(out)
    }
}

impl<M: WireName> Reading<M> {
    /// A reading of a known metric.
    pub fn new(metric: M, value: impl Into<Value>) -> Self {
        Reading {
            name: Named::Known(metric),
            value: value.into(),
        }
    }
}
