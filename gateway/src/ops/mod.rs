//! The operations the pipeline's judgements lead to: alert state and its
//! live views ([`alerts`]), work orders and notifications ([`workorders`]),
//! the supervision record chain ([`supervision`]), and device credentials
//! ([`provisioning`]). Each is the edge of a
//! pure crate (`alerting`, `dispatch`, `notify`, `records`) where its answers
//! meet SQLite and sockets.

pub mod alerts;
pub mod backup;
pub mod commands;
pub mod judgement;
pub mod provisioning;
pub mod redact;
pub mod supervision;
pub mod workorders;
