//! The operations the pipeline's judgements lead to: alert state and its
//! live views ([`alerts`]), work orders and notifications ([`workorders`]),
//! and the supervision record chain ([`supervision`]). Each is the edge of a
//! pure crate (`alerting`, `dispatch`, `notify`, `records`) where its answers
//! meet SQLite and sockets.

pub mod alerts;
pub mod redact;
pub mod supervision;
pub mod workorders;
