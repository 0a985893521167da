//! The wire contract shared by the sensor nodes (`firmware`) and the `gateway`:
//! topics, payloads, canonical metrics and event codes, the two encodings, and
//! the Modbus register maps.
//!
//! `#![no_std]` and heap-free by default, so the same types run on a Cortex-M4
//! node and in the gateway; the `std` feature adds the `serde_json` decoder the
//! gateway uses. One crate for both sides, so the two can never drift apart.
//!
//! ```
//! use protocol::{decode, Kind, Message, Metric, Topic, Value};
//!
//! let topic = Topic::parse("fm/v1/lakeside/elevator/EL-3/data")?;
//! let msg = decode(topic.kind, br#"{"v":1,"seq":7,"ts":1700000000000,"m":{"running":false}}"#)?;
//! let Message::Data(data) = msg else { unreachable!() };
//! assert_eq!(data.m.get(Metric::Running), Some(Value::Bool(false)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod bounded;
pub mod class;
pub mod cmdauth;
pub mod code;
pub mod codec;
pub mod limits;
pub mod message;
pub mod metric;
pub mod modbus;
pub mod names;
pub mod readings;
pub mod time;
pub mod topic;

/// The `heapless` version the payload types are built on, so callers name the same types.
pub use heapless;

pub use bounded::Bounded;
pub use class::{DeviceClass, Kind};
pub use cmdauth::{CommandKey, Refusal};
pub use code::{EventCode, Severity};
#[cfg(feature = "alloc")]
pub use codec::encode_to_vec;
pub use codec::{BINARY_MARKER, DecodeError, EncodeError, Format, decode, encode, encode_sample, mark_hist};
pub use message::{Ack, Birth, Cmd, CmdArgs, Data, Death, Event, Header, Invalid, Message, Op, PortSample, Sample, V1};
pub use metric::{Direction, Metric, MetricInfo, PortMetric, PortState, ServiceMode, Unit, Value, ValueKind};
pub use names::{Named, WireName};
pub use readings::{Detail, PortReadings, Reading, Readings, Scalar};
pub use time::Timestamp;
pub use topic::{DeviceId, SiteId, Topic, TopicError};
