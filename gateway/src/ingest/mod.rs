//! Ingest: how messages reach the pipeline. MQTT from an outside broker
//! (two sessions, [`mqtt`]) or from the gateway's own embedded broker
//! ([`embedded`]), Modbus polling ([`modbus`], vendors'
//! register maps decoded in [`modbus_map`]), Sparkplug B edge nodes
//! ([`sparkplug`]), the lanes into the
//! pipeline ([`lanes`]), acknowledgements held until the commit ([`acks`]),
//! and the pure decoding of a publish ([`decode`]).

pub mod access;
pub mod acks;
pub mod decode;
pub mod embedded;
pub mod lanes;
pub mod modbus;
pub mod modbus_map;
pub mod mqtt;
pub mod sparkplug;

pub use decode::{Incoming, REASONS, Rejected, ingest};
