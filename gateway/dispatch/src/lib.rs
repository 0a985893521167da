//! The pure work-order core (智慧派单): which judged alerts become work,
//! who gets it, by when, and what happens when a deadline passes.
//!
//! Like the alerting core it is fed and answers, never touching a socket or
//! the wall clock: the gateway hands it the alerting core's work-order
//! intents, contractors' steps, the devices it sees, node self-tests and a
//! clock, and stores, records and sends what it answers.
//!
//! - [`policy`]: `[dispatch]` of the configuration, with the contract's SLA
//!   table built in: which codes dispatch, who is sent and who is told,
//!   with which deadlines (by the compound's area), duties and their notice.
//! - [`order`]: a work order and the rules of its steps.
//! - [`desk`]: the state machine: one open order per device and fault, SLA
//!   clocks, escalation, periodic duties.
//! - [`report`]: the bureau's monthly report.
//! - [`import`]: a maintenance log (CSV) as `[[dispatch.last_done]]`.

pub mod desk;
pub mod import;
pub mod order;
pub mod policy;
pub mod report;

pub use desk::{Desk, DeskState, DutyState, OrderChange, Out, StateChanges, Tell};
pub use order::{
    Action, Actor, Deadline, Deadlines, Escalation, Evidence, Kind, Order, Sample, Status, StepError, StepKind,
};
pub use policy::{Area, LastDoneConfig, Policy, PolicyConfig, PolicyProblem, Role};
pub use report::{Fired, Month, MonthlyReport};
