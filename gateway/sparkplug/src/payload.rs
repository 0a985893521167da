//! The Sparkplug B payload (`org.eclipse.tahu.protobuf.Payload`, proto2), written
//! from the Sparkplug 3.0 specification's schema with prost's derive.
//!
//! Why by hand: the schema is about a hundred lines whose field numbers are
//! facts of the specification, and deriving them needs neither `protoc` nor a
//! build script (CI is two cores; a code generator would be one more tool to
//! install and pin). The crates that ship the schema were weighed in
//! docs/architecture.md.
//!
//! Protobuf `extensions` ranges have no counterpart here: a field of an
//! extension is skipped on decoding, as protobuf requires of any unknown field.

/// One Sparkplug B message body: the metrics of a birth, a death, data or a command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// When the message was sent, ms since the Unix epoch (UTC).
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    /// The metrics.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// The edge node's message counter, 0–255 (absent on NDEATH).
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    /// An optional identifier of the payload's format.
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    /// An optional opaque body.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// One metric: a name (in births), or an alias (in data, after a birth gave
/// it), a type, and a value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// The metric's name, `/`-separated folders allowed (`Pump/Outlet Pressure`).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The number a birth assigned to the name; data may carry only this.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// When the value was taken, ms since the Unix epoch.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// A [`DataType`] number.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// Sent late, from the edge node's store.
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    /// Not to be stored by the host.
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    /// The value is null.
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// Multi-part and file metadata.
    #[prost(message, optional, tag = "8")]
    pub metadata: Option<MetaData>,
    /// Properties (engineering units, quality, ...).
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    /// The value.
    #[prost(oneof = "MetricValue", tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19")]
    pub value: Option<MetricValue>,
}

/// A metric's value: the protobuf `oneof value` of `Metric`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MetricValue {
    /// `Int8`, `Int16`, `Int32` (two's complement in 32 bits), `UInt8`, `UInt16`, `UInt32`.
    #[prost(uint32, tag = "10")]
    IntValue(u32),
    /// `Int64` (two's complement), `UInt64`, `DateTime`.
    #[prost(uint64, tag = "11")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "12")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "13")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "14")]
    BooleanValue(bool),
    /// String, Text, UUID.
    #[prost(string, tag = "15")]
    StringValue(String),
    /// Bytes, File, and the array types.
    #[prost(bytes = "vec", tag = "16")]
    BytesValue(Vec<u8>),
    /// `DataSet`.
    #[prost(message, tag = "17")]
    DatasetValue(DataSet),
    /// Template.
    #[prost(message, tag = "18")]
    TemplateValue(Template),
    /// An extension value (its fields are not read).
    #[prost(message, tag = "19")]
    ExtensionValue(Extension),
}

/// An empty message standing for the schema's `...Extension` messages.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Extension {}

/// Metadata of a metric (files, multi-part values).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaData {
    /// Part of a multi-part value.
    #[prost(bool, optional, tag = "1")]
    pub is_multi_part: Option<bool>,
    /// MIME type.
    #[prost(string, optional, tag = "2")]
    pub content_type: Option<String>,
    /// Size in bytes.
    #[prost(uint64, optional, tag = "3")]
    pub size: Option<u64>,
    /// The part's number.
    #[prost(uint64, optional, tag = "4")]
    pub seq: Option<u64>,
    /// File name.
    #[prost(string, optional, tag = "5")]
    pub file_name: Option<String>,
    /// File type.
    #[prost(string, optional, tag = "6")]
    pub file_type: Option<String>,
    /// MD5 of the content.
    #[prost(string, optional, tag = "7")]
    pub md5: Option<String>,
    /// Free text.
    #[prost(string, optional, tag = "8")]
    pub description: Option<String>,
}

/// Keys and values, pairwise (`keys[i]` names `values[i]`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    /// The keys.
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    /// The values.
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

/// A list of property sets.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySetList {
    /// The sets.
    #[prost(message, repeated, tag = "1")]
    pub propertyset: Vec<PropertySet>,
}

/// One property's value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    /// A [`DataType`] number.
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    /// The value is null.
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    /// The value.
    #[prost(oneof = "PropertyValueKind", tags = "3, 4, 5, 6, 7, 8, 9, 10, 11")]
    pub value: Option<PropertyValueKind>,
}

/// A property's value: the `oneof value` of `PropertyValue`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropertyValueKind {
    /// 32-bit integers.
    #[prost(uint32, tag = "3")]
    IntValue(u32),
    /// 64-bit integers.
    #[prost(uint64, tag = "4")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "5")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "6")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "7")]
    BooleanValue(bool),
    /// String.
    #[prost(string, tag = "8")]
    StringValue(String),
    /// A nested set.
    #[prost(message, tag = "9")]
    PropertysetValue(PropertySet),
    /// A list of sets.
    #[prost(message, tag = "10")]
    PropertysetsValue(PropertySetList),
    /// An extension value.
    #[prost(message, tag = "11")]
    ExtensionValue(Extension),
}

/// A table: named, typed columns and rows of values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataSet {
    /// How many columns.
    #[prost(uint64, optional, tag = "1")]
    pub num_of_columns: Option<u64>,
    /// Their names.
    #[prost(string, repeated, tag = "2")]
    pub columns: Vec<String>,
    /// Their [`DataType`] numbers.
    #[prost(uint32, repeated, packed = "false", tag = "3")]
    pub types: Vec<u32>,
    /// The rows.
    #[prost(message, repeated, tag = "4")]
    pub rows: Vec<DataSetRow>,
}

/// One row of a [`DataSet`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataSetRow {
    /// One value per column.
    #[prost(message, repeated, tag = "1")]
    pub elements: Vec<DataSetValue>,
}

/// One cell of a [`DataSet`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataSetValue {
    /// The value.
    #[prost(oneof = "DataSetValueKind", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<DataSetValueKind>,
}

/// A cell's value: the `oneof value` of `DataSetValue`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DataSetValueKind {
    /// 32-bit integers.
    #[prost(uint32, tag = "1")]
    IntValue(u32),
    /// 64-bit integers.
    #[prost(uint64, tag = "2")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "3")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "5")]
    BooleanValue(bool),
    /// String.
    #[prost(string, tag = "6")]
    StringValue(String),
    /// An extension value.
    #[prost(message, tag = "7")]
    ExtensionValue(Extension),
}

/// A user-defined type: a definition (in a birth) or an instance of one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Template {
    /// The template's version.
    #[prost(string, optional, tag = "1")]
    pub version: Option<String>,
    /// Its members.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// Its parameters.
    #[prost(message, repeated, tag = "3")]
    pub parameters: Vec<TemplateParameter>,
    /// The definition an instance is of.
    #[prost(string, optional, tag = "4")]
    pub template_ref: Option<String>,
    /// A definition, not an instance.
    #[prost(bool, optional, tag = "5")]
    pub is_definition: Option<bool>,
}

/// A parameter of a [`Template`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct TemplateParameter {
    /// Its name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// A [`DataType`] number.
    #[prost(uint32, optional, tag = "2")]
    pub r#type: Option<u32>,
    /// Its value.
    #[prost(oneof = "TemplateParameterValue", tags = "3, 4, 5, 6, 7, 8, 9")]
    pub value: Option<TemplateParameterValue>,
}

/// A template parameter's value.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TemplateParameterValue {
    /// 32-bit integers.
    #[prost(uint32, tag = "3")]
    IntValue(u32),
    /// 64-bit integers.
    #[prost(uint64, tag = "4")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "5")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "6")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "7")]
    BooleanValue(bool),
    /// String.
    #[prost(string, tag = "8")]
    StringValue(String),
    /// An extension value.
    #[prost(message, tag = "9")]
    ExtensionValue(Extension),
}

/// The Sparkplug B data types, by the numbers the specification gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)] // the names are the specification's, each its own description
pub enum DataType {
    Unknown = 0,
    Int8 = 1,
    Int16 = 2,
    Int32 = 3,
    Int64 = 4,
    UInt8 = 5,
    UInt16 = 6,
    UInt32 = 7,
    UInt64 = 8,
    Float = 9,
    Double = 10,
    Boolean = 11,
    String = 12,
    DateTime = 13,
    Text = 14,
    Uuid = 15,
    DataSet = 16,
    Bytes = 17,
    File = 18,
    Template = 19,
    PropertySet = 20,
    PropertySetList = 21,
    Int8Array = 22,
    Int16Array = 23,
    Int32Array = 24,
    Int64Array = 25,
    UInt8Array = 26,
    UInt16Array = 27,
    UInt32Array = 28,
    UInt64Array = 29,
    FloatArray = 30,
    DoubleArray = 31,
    BooleanArray = 32,
    StringArray = 33,
    DateTimeArray = 34,
}

impl DataType {
    /// Every type, in number order (`ALL[n]` is type `n`).
    pub const ALL: [DataType; 35] = [
        DataType::Unknown,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float,
        DataType::Double,
        DataType::Boolean,
        DataType::String,
        DataType::DateTime,
        DataType::Text,
        DataType::Uuid,
        DataType::DataSet,
        DataType::Bytes,
        DataType::File,
        DataType::Template,
        DataType::PropertySet,
        DataType::PropertySetList,
        DataType::Int8Array,
        DataType::Int16Array,
        DataType::Int32Array,
        DataType::Int64Array,
        DataType::UInt8Array,
        DataType::UInt16Array,
        DataType::UInt32Array,
        DataType::UInt64Array,
        DataType::FloatArray,
        DataType::DoubleArray,
        DataType::BooleanArray,
        DataType::StringArray,
        DataType::DateTimeArray,
    ];

    /// The type of a number, if the specification has one.
    #[must_use]
    pub fn from_u32(n: u32) -> Option<DataType> {
        usize::try_from(n).ok().and_then(|i| DataType::ALL.get(i)).copied()
    }
}

/// A metric's value as the gateway can use it: a flag, a number, or why not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    /// A Boolean.
    Bool(bool),
    /// Any integer or float type, as `f64` (64-bit integers beyond 2^53 round).
    Number(f64),
    /// `is_null`, or no value.
    Null,
    /// A type that is not a single number or flag (text, bytes, arrays,
    /// data sets, templates), by its [`DataType`] number.
    Unsupported(u32),
}

impl Metric {
    /// The value as a [`Scalar`], read by the declared data type where it
    /// changes the meaning (signed integers travel as unsigned two's
    /// complement), by the oneof field otherwise.
    #[must_use]
    #[allow(
        clippy::cast_possible_wrap,
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss
    )] // two's complement in the low bits, by the specification
    pub fn scalar(&self) -> Scalar {
        if self.is_null == Some(true) {
            return Scalar::Null;
        }
        let dt = self.datatype.and_then(DataType::from_u32);
        match (&self.value, dt) {
            (None, _) => Scalar::Null,
            (Some(MetricValue::BooleanValue(b)), _) => Scalar::Bool(*b),
            (Some(MetricValue::IntValue(v)), Some(DataType::Int8)) => Scalar::Number(f64::from(*v as u8 as i8)),
            (Some(MetricValue::IntValue(v)), Some(DataType::Int16)) => Scalar::Number(f64::from(*v as u16 as i16)),
            (Some(MetricValue::IntValue(v)), Some(DataType::Int32)) => Scalar::Number(f64::from(*v as i32)),
            (Some(MetricValue::IntValue(v)), Some(DataType::Boolean)) => Scalar::Bool(*v != 0),
            (Some(MetricValue::IntValue(v)), _) => Scalar::Number(f64::from(*v)),
            (Some(MetricValue::LongValue(v)), Some(DataType::Int64)) => Scalar::Number(*v as i64 as f64),
            (Some(MetricValue::LongValue(v)), _) => Scalar::Number(*v as f64),
            (Some(MetricValue::FloatValue(v)), _) => Scalar::Number(f64::from(*v)),
            (Some(MetricValue::DoubleValue(v)), _) => Scalar::Number(*v),
            (Some(_), _) => Scalar::Unsupported(self.datatype.unwrap_or(0)),
        }
    }
}

/// The name of the metric that carries the session number in NBIRTH and NDEATH.
pub const BD_SEQ: &str = "bdSeq";

/// The node control metric a host writes `true` to, to ask for a rebirth.
pub const REBIRTH: &str = "Node Control/Rebirth";

/// A host's request that an edge node publish its births again (an NCMD
/// payload): the metric `Node Control/Rebirth` = `true`.
#[must_use]
pub fn rebirth_request(timestamp_ms: u64) -> Payload {
    Payload {
        timestamp: Some(timestamp_ms),
        metrics: vec![Metric {
            name: Some(REBIRTH.to_owned()),
            timestamp: Some(timestamp_ms),
            datatype: Some(DataType::Boolean as u32),
            value: Some(MetricValue::BooleanValue(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    }
}

/// The body of a Sparkplug 3.0 primary host's STATE message (JSON, not
/// protobuf): `{"online":true|false,"timestamp":ms}`. The birth and its will
/// carry the same timestamp, so an edge node can tell an old will from the
/// host's current session.
#[must_use]
pub fn state_payload(online: bool, timestamp_ms: u64) -> String {
    format!("{{\"online\":{online},\"timestamp\":{timestamp_ms}}}")
}
