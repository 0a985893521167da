//! Sparkplug B for the gateway's ingest: the protobuf payload ([`payload`],
//! written from the public specification's schema with prost's derive), the
//! topics ([`topic`]), and the edge-node session rules a host application
//! keeps ([`session`]: births with aliases, `bdSeq` and `seq`, deaths,
//! rebirth requests).
//!
//! No I/O: the gateway's `ingest::sparkplug` subscribes, publishes and maps
//! what this crate decides to its own classes and metrics
//! (docs/integrations.md, "Sparkplug B ingest").
//!
//! ```
//! use sparkplug::{Payload, decode, encode, payload::rebirth_request};
//!
//! let bytes = encode(&rebirth_request(1_700_000_000_000));
//! let back: Payload = decode(&bytes)?;
//! assert_eq!(back.metrics[0].name.as_deref(), Some("Node Control/Rebirth"));
//! # Ok::<(), sparkplug::DecodeError>(())
//! ```

pub mod payload;
pub mod session;
pub mod topic;

pub use payload::{DataType, Metric, MetricValue, Payload, Scalar};
pub use session::{Event, Host, Reason, Rebirth, Sample, Step};
pub use topic::{MessageType, Topic, TopicError};

/// A payload that is not a Sparkplug B protobuf message.
#[derive(Debug, thiserror::Error)]
#[error("not a Sparkplug B payload: {0}")]
pub struct DecodeError(#[from] prost::DecodeError);

/// Decodes a payload.
///
/// # Errors
/// [`DecodeError`] for bytes that are not a protobuf `Payload` (a nesting
/// deeper than prost's limit of 100 included).
pub fn decode(bytes: &[u8]) -> Result<Payload, DecodeError> {
    Ok(<Payload as prost::Message>::decode(bytes)?)
}

/// Encodes a payload.
#[must_use]
pub fn encode(payload: &Payload) -> Vec<u8> {
    prost::Message::encode_to_vec(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{DataSet, DataSetRow, DataSetValue, DataSetValueKind, PropertySet, PropertyValue, Template};

    /// The bytes of one metric worked out by hand from the schema's field
    /// numbers and protobuf's wire format: name (1, length-delimited),
    /// alias (2, varint), datatype (4, varint), `boolean_value` (14, varint).
    #[test]
    fn field_numbers_are_the_specifications() {
        let p = Payload {
            timestamp: Some(1),
            metrics: vec![Metric {
                name: Some("a".into()),
                alias: Some(1),
                datatype: Some(DataType::Boolean as u32),
                value: Some(MetricValue::BooleanValue(true)),
                ..Metric::default()
            }],
            seq: Some(2),
            ..Payload::default()
        };
        let metric = [0x0a, 0x01, b'a', 0x10, 0x01, 0x20, 0x0b, 0x70, 0x01];
        let mut want = vec![0x08, 0x01, 0x12, 9];
        want.extend_from_slice(&metric);
        want.extend_from_slice(&[0x18, 0x02]);
        assert_eq!(encode(&p), want);
        assert_eq!(decode(&want).unwrap_or_else(|e| panic!("{e}")), p);
        // double_value is field 13 (fixed64), long_value 11, int_value 10, float 12, string 15.
        let m = |v| {
            encode(&Payload {
                metrics: vec![Metric {
                    value: Some(v),
                    ..Metric::default()
                }],
                ..Payload::default()
            })[2]
        };
        assert_eq!(m(MetricValue::IntValue(1)), 10 << 3);
        assert_eq!(m(MetricValue::LongValue(1)), 11 << 3);
        assert_eq!(m(MetricValue::FloatValue(1.0)), (12 << 3) | 5);
        assert_eq!(m(MetricValue::DoubleValue(1.0)), (13 << 3) | 1);
        assert_eq!(m(MetricValue::StringValue("x".into())), (15 << 3) | 2);
        assert_eq!(m(MetricValue::DatasetValue(DataSet::default())), (17 << 3) | 2);
        assert_eq!(m(MetricValue::TemplateValue(Template::default())), (18 << 3) | 2);
    }

    #[test]
    fn nested_types_round_trip() {
        let p = Payload {
            timestamp: Some(1_700_000_000_000),
            metrics: vec![
                Metric {
                    name: Some("table".into()),
                    datatype: Some(DataType::DataSet as u32),
                    value: Some(MetricValue::DatasetValue(DataSet {
                        num_of_columns: Some(1),
                        columns: vec!["c".into()],
                        types: vec![DataType::Int32 as u32],
                        rows: vec![DataSetRow {
                            elements: vec![DataSetValue {
                                value: Some(DataSetValueKind::IntValue(5)),
                            }],
                        }],
                    })),
                    properties: Some(PropertySet {
                        keys: vec!["engUnit".into()],
                        values: vec![PropertyValue {
                            r#type: Some(DataType::String as u32),
                            is_null: None,
                            value: Some(payload::PropertyValueKind::StringValue("MPa".into())),
                        }],
                    }),
                    ..Metric::default()
                },
                Metric {
                    name: Some("udt".into()),
                    datatype: Some(DataType::Template as u32),
                    value: Some(MetricValue::TemplateValue(Template {
                        metrics: vec![Metric {
                            name: Some("inner".into()),
                            value: Some(MetricValue::FloatValue(1.5)),
                            ..Metric::default()
                        }],
                        ..Template::default()
                    })),
                    ..Metric::default()
                },
            ],
            seq: Some(7),
            ..Payload::default()
        };
        assert_eq!(decode(&encode(&p)).unwrap_or_else(|e| panic!("{e}")), p);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode(b"{\"online\":true}").is_err());
        // Nesting past prost's recursion limit: templates within templates.
        let mut m = Metric::default();
        for _ in 0..200 {
            m = Metric {
                value: Some(MetricValue::TemplateValue(Template {
                    metrics: vec![m],
                    ..Template::default()
                })),
                ..Metric::default()
            };
        }
        let deep = encode(&Payload {
            metrics: vec![m],
            ..Payload::default()
        });
        assert!(decode(&deep).is_err());
    }

    #[test]
    fn scalars_read_signed_integers_by_their_declared_type() {
        let m = |dt: DataType, v: MetricValue| {
            Metric {
                datatype: Some(dt as u32),
                value: Some(v),
                ..Metric::default()
            }
            .scalar()
        };
        assert_eq!(m(DataType::Int8, MetricValue::IntValue(0xff)), Scalar::Number(-1.0));
        assert_eq!(m(DataType::Int16, MetricValue::IntValue(0xfffe)), Scalar::Number(-2.0));
        assert_eq!(
            m(DataType::Int32, MetricValue::IntValue(u32::MAX)),
            Scalar::Number(-1.0)
        );
        assert_eq!(
            m(DataType::UInt32, MetricValue::IntValue(u32::MAX)),
            Scalar::Number(4_294_967_295.0)
        );
        assert_eq!(
            m(DataType::Int64, MetricValue::LongValue(u64::MAX)),
            Scalar::Number(-1.0)
        );
        assert_eq!(m(DataType::Float, MetricValue::FloatValue(0.25)), Scalar::Number(0.25));
        assert_eq!(
            m(DataType::Boolean, MetricValue::BooleanValue(true)),
            Scalar::Bool(true)
        );
        assert_eq!(
            m(DataType::String, MetricValue::StringValue("x".into())),
            Scalar::Unsupported(12)
        );
        let null = Metric {
            is_null: Some(true),
            datatype: Some(DataType::Double as u32),
            value: Some(MetricValue::DoubleValue(1.0)),
            ..Metric::default()
        };
        assert_eq!(null.scalar(), Scalar::Null);
        assert_eq!(DataType::from_u32(34), Some(DataType::DateTimeArray));
        assert_eq!(DataType::from_u32(35), None);
        assert!(DataType::ALL.iter().enumerate().all(|(i, d)| *d as usize == i));
    }

    #[test]
    fn state_and_rebirth_payloads() {
        assert_eq!(
            payload::state_payload(true, 1_700_000_000_000),
            r#"{"online":true,"timestamp":1700000000000}"#
        );
        let r = payload::rebirth_request(5);
        assert_eq!(r.metrics[0].scalar(), Scalar::Bool(true));
        assert_eq!(r.metrics[0].datatype, Some(11));
    }
}
