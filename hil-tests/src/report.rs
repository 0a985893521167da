//! The runner's output: a coloured table a lab reads at the terminal, with
//! each detection's measured time next to the time allowed, and JUnit XML
//! (through `quick-junit`, the writer nextest uses) for the lab's CI.

use std::fmt::Write as _;
use std::time::Duration;

use console::Style;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::expect::Outcome;

/// One scenario's run.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// What it shows.
    pub about: String,
    /// `virtual` or `real`.
    pub clock: &'static str,
    /// Wall time the run took.
    pub elapsed: Duration,
    /// Scenario time it covered.
    pub covered: Duration,
    /// The verdicts (empty if it could not run).
    pub outcomes: Vec<Outcome>,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
}

impl ScenarioResult {
    /// Every expectation held and the run itself did not fail.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.outcomes.iter().all(|o| o.passed)
    }
}

fn secs(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The results as a table: one block per scenario, one line per
/// expectation, and a summary line. `colour` adds ANSI colours.
#[must_use]
pub fn table(results: &[ScenarioResult], colour: bool) -> String {
    let style = |s: Style| s.force_styling(colour);
    let (green, red, dim, bold) = (
        style(Style::new().green().bold()),
        style(Style::new().red().bold()),
        style(Style::new().dim()),
        style(Style::new().bold()),
    );
    let width = results
        .iter()
        .flat_map(|r| r.outcomes.iter().map(|o| o.what.chars().count()))
        .max()
        .unwrap_or(20)
        .clamp(20, 90);
    let mut out = String::new();
    for r in results {
        let verdict = if r.passed() {
            green.apply_to("PASS")
        } else {
            red.apply_to("FAIL")
        };
        let _ = writeln!(
            out,
            "{verdict} {}  {}",
            bold.apply_to(&r.name),
            dim.apply_to(format!(
                "{} of {} time in {}",
                secs(r.covered),
                r.clock,
                secs(r.elapsed)
            ))
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "     {} {e}", red.apply_to("error"));
        }
        let _ = writeln!(
            out,
            "     {:<4} {:<width$}  {:>9}  {:>9}  {}",
            "",
            dim.apply_to("expectation"),
            dim.apply_to("measured"),
            dim.apply_to("allowed"),
            dim.apply_to("detail"),
        );
        for o in &r.outcomes {
            let mark = if o.passed {
                green.apply_to("ok")
            } else {
                red.apply_to("FAIL")
            };
            let measured = o.measured.map(secs).unwrap_or_default();
            let limit = o.limit.map(secs).unwrap_or_default();
            let what: String = o.what.chars().take(width).collect();
            let _ = writeln!(
                out,
                "     {:<4} {:<width$}  {:>9}  {:>9}  {}",
                mark,
                what,
                measured,
                limit,
                if o.passed {
                    dim.apply_to(o.detail.as_str())
                } else {
                    red.apply_to(o.detail.as_str())
                }
            );
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let expectations: usize = results.iter().map(|r| r.outcomes.len()).sum();
    let elapsed: Duration = results.iter().map(|r| r.elapsed).sum();
    let covered: Duration = results.iter().map(|r| r.covered).sum();
    let summary = format!(
        "{} scenarios, {} failed; {expectations} expectations; {} of scenario time in {}",
        results.len(),
        failed,
        secs(covered),
        secs(elapsed)
    );
    let _ = writeln!(
        out,
        "{}",
        if failed == 0 {
            green.apply_to(summary)
        } else {
            red.apply_to(summary)
        }
    );
    out
}

/// The results as JUnit XML: a test suite per scenario, a test case per
/// expectation (a failure carries what was measured and why).
///
/// # Errors
/// If the XML cannot be written.
pub fn junit(results: &[ScenarioResult]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("hil");
    for r in results {
        let mut suite = TestSuite::new(r.name.as_str());
        suite.set_time(r.elapsed);
        suite.add_property(Property::new("file", r.file.as_str()));
        suite.add_property(Property::new("clock", r.clock));
        suite.add_property(Property::new("scenario_time_ms", r.covered.as_millis().to_string()));
        if let Some(e) = &r.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(e.as_str());
            let mut case = TestCase::new("run", status);
            case.set_classname(r.name.as_str());
            suite.add_test_case(case);
        }
        for o in &r.outcomes {
            let status = if o.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(o.detail.as_str());
                s.set_description(format!(
                    "line {}: measured {}, allowed {}",
                    o.line,
                    o.measured.map_or_else(|| "nothing".into(), secs),
                    o.limit.map_or_else(|| "-".into(), secs)
                ));
                s
            };
            let mut case = TestCase::new(o.what.as_str(), status);
            case.set_classname(r.name.as_str());
            if let Some(m) = o.measured {
                case.add_property(Property::new("measured_ms", m.as_millis().to_string()));
            }
            if let Some(l) = o.limit {
                case.add_property(Property::new("allowed_ms", l.as_millis().to_string()));
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}
