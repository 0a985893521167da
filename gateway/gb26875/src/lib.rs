//! GB/T 26875.3-2011 (城市消防远程监控系统 第3部分：报警传输网络通信协议):
//! the frames a user information transmission device (用户信息传输装置)
//! exchanges with a fire remote-monitoring centre, and the device's side of
//! the exchange.
//!
//! The gateway is such a device for the fire pumps, fire water and fire
//! alarm inputs it watches. This crate is pure (no I/O, no clock, no
//! `unsafe`) so the frames can be fuzzed and checked byte for byte against
//! frames built by hand from the standard's layout, and the session (serial
//! numbers, confirms, resends, time sync, queries, heartbeats) can be driven
//! by a manual clock in tests:
//!
//! - [`frame`]: `@@`, the control unit, application data, checksum, `##`;
//!   [`Decoder`] finds frames in a byte stream and resynchronises on the next
//!   `@@` after anything else.
//! - [`data`]: the application data units (type flag, object count,
//!   objects) for the types the device sends and the requests it answers.
//! - [`session`]: stop and wait with resends, deny handling, answers,
//!   heartbeats.
//!
//! `docs/integrations.md` describes the layout, the checksum and the mapping
//! of the gateway's data to components.
#![forbid(unsafe_code)]

pub mod data;
pub mod frame;
pub mod session;

pub use data::{ComponentAnalog, ComponentStatus, DataError, Description, DeviceStatus, SystemStatus, Unit};
pub use frame::{
    Address, AddressError, CHINA_OFFSET_SECS, Command, Decoder, EncodeError, Frame, Garbage, Parsed, TimeLabel,
    Version, checksum, parse,
};
pub use session::{Event, Session, SessionConfig};
