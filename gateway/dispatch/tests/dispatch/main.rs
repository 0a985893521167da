//! The work-order core, driven by a manual clock: every status path, every
//! deadline and escalation, restarts in between, periodic duties, the
//! policy's defaults and errors, the monthly report.

mod desk;
mod duties;
mod policy;
mod props;
mod report;
mod support;
