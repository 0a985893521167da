//! The alerting core's one integration-test binary: golden rule tests for
//! every code of every pack, the lifecycle (acknowledgement, flapping,
//! inhibition, maintenance, grouping), configuration, restarts, the
//! condition language, and properties over random streams.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod config;
mod docs;
mod expr;
mod golden;
mod judged;
mod lifecycle;
mod props;
mod restart;

use alerting::series::SeriesTest;
use alerting::{Engine, RuleSet, Settings};

/// An engine with the built-in packs and default timings.
fn engine() -> Engine {
    Engine::new(RuleSet::builtin(), Settings::default())
}

/// Runs a test text; panics with the differences.
fn check_with(e: &mut Engine, text: &str) {
    let t = SeriesTest::parse(text).unwrap_or_else(|err| panic!("{err}"));
    if let Err(report) = t.check(e) {
        panic!("{report}");
    }
}

/// Runs a test text on a fresh built-in engine; panics with the differences.
fn check(text: &str) {
    check_with(&mut engine(), text);
}
