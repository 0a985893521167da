//! Protocol limits: capacities of the bounded containers and payload sizes.
//!
//! They are part of the contract (a payload over them is rejected with a message
//! naming the limit), and they decide the node's RAM: a [`crate::Data`] is a
//! fixed-size value. `tests/limits.rs` asserts that the largest message of each
//! kind fits [`NODE_TX_BUFFER`] in both encodings.

/// Most device-level metrics in one `data` message (the largest class has 13
/// canonical ones; the rest is room for a vendor's own).
pub const MAX_METRICS: usize = 24;
/// Most ports in one `data` message (a bay has 8–12).
pub const MAX_PORTS: usize = 12;
/// Most metrics per port (6 canonical, 2 spare).
pub const MAX_PORT_METRICS: usize = 8;
/// Most fields in an event's `detail`.
pub const MAX_DETAIL_FIELDS: usize = 8;
/// Longest text in `detail`, `fw`, `model` and `cfg`.
pub const MAX_TEXT_LEN: usize = 32;
/// Longest command id (a UUID is 36).
pub const MAX_CMD_ID_LEN: usize = 36;
/// Longest error text in an `ack`.
pub const MAX_ERROR_LEN: usize = 64;

/// Largest payload the gateway accepts (contract: 64 KiB); larger is rejected
/// before parsing.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The node's transmit buffer: every message a node can build encodes into this
/// many bytes, in JSON and in binary, whatever its contents.
pub const NODE_TX_BUFFER: usize = 8 * 1024;

/// The node's receive buffer for `cmd` payloads.
pub const NODE_RX_BUFFER: usize = 512;
