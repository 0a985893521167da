//! Hardware-in-the-loop in simulation: scenarios of faults on a simulated
//! compound ([`sim`]), run through the real firmware, real links and the real
//! gateway, with expectations checked against what the gateway did.
//!
//! - [`scenario`]: the scenario file (devices, timeline, expectations), read
//!   and checked with errors naming file, line and field.
//! - [`bench`]: runs one scenario in virtual or real time and writes down
//!   what happened.
//! - [`expect`]: judges the expectations against that, with timings.
//! - [`report`]: the runner's table and JUnit XML.

pub mod bench;
pub mod expect;
pub mod report;
pub mod scenario;

use std::time::{Duration, Instant};

/// Runs one scenario and judges it: what the `hil` runner and the test
/// suite both do for each file.
pub async fn run(scenario: &scenario::Scenario, options: &bench::RunOptions) -> report::ScenarioResult {
    let started = Instant::now();
    let (outcomes, error, covered) = match bench::run(scenario, options).await {
        Ok(j) => (
            expect::judge(&scenario.expects, &j),
            None,
            Duration::from_millis(j.ran_ms),
        ),
        Err(e) => (Vec::new(), Some(format!("{e:#}")), Duration::ZERO),
    };
    report::ScenarioResult {
        name: scenario.name.clone(),
        file: scenario.file.display().to_string(),
        about: scenario.about.clone(),
        clock: match options.clock {
            bench::ClockMode::Virtual => "virtual",
            bench::ClockMode::Real => "real",
        },
        elapsed: started.elapsed(),
        covered,
        outcomes,
        error,
    }
}
