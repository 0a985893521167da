//! A maintenance log as configuration: `gateway duties import FILE` reads a
//! CSV of past visits (the contractor's log, the pump room's self-test
//! book) and prints `[[dispatch.last_done]]` tables to add to the
//! configuration, so each device's first duty falls due one period after its
//! last visit instead of a period after the gateway first saw it.
//!
//! Why configuration and not a write into the store: a last visit sets
//! deadlines the bureau audits, so it goes where `gateway check` reviews it
//! and where every change is a configuration record with its diff in the
//! chain; and the store has one writer, the running gateway.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::policy::LastDoneConfig;

/// A row that could not be taken, with its line in the file (1 is the header).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ImportProblem {
    /// The line.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// Columns the file must have (in any order; others are ignored: logs carry
/// the technician, the checklist, remarks).
pub const COLUMNS: [&str; 4] = ["site", "device", "duty", "at"];

/// Reads a log: every row's visit, the latest per (site, device, duty).
///
/// `at` is RFC 3339 with an offset (`2026-11-20T09:30:00+08:00`) or a day
/// (`2026-11-20`, taken at 00:00 China time: a visit of unknown hour counts
/// from the start of its day, so its next one is never due late).
///
/// # Errors
/// Every problem, each with its line: a missing column, an empty field, a
/// time that does not parse.
pub fn read_log(csv_text: &[u8]) -> Result<Vec<LastDoneConfig>, Vec<ImportProblem>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(csv_text);
    let problem = |line: u64, message: String| ImportProblem { line, message };
    let headers = reader
        .headers()
        .map_err(|e| vec![problem(1, format!("no header: {e}"))])?
        .clone();
    let mut index = [0_usize; 4];
    let mut problems = Vec::new();
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        match headers.iter().position(|h| h.eq_ignore_ascii_case(name)) {
            Some(i) => *slot = i,
            None => problems.push(problem(1, format!("no `{name}` column (needs {})", COLUMNS.join(", ")))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut latest: BTreeMap<(String, String, String), (i64, String)> = BTreeMap::new();
    for row in reader.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                problems.push(problem(line, e.to_string()));
                continue;
            }
        };
        let line = row.position().map_or(0, csv::Position::line);
        let field = |i: usize| row.get(index[i]).unwrap_or_default().to_owned();
        let [site, device, duty, at] = [field(0), field(1), field(2), field(3)];
        let mut ok = true;
        for (name, v) in COLUMNS.iter().zip([&site, &device, &duty, &at]) {
            if v.is_empty() {
                problems.push(problem(line, format!("`{name}` is empty")));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        let at = if is_day(&at) {
            format!("{at}T00:00:00+08:00")
        } else {
            at
        };
        match alerting::config::parse_time(&at) {
            Ok(ms) => {
                let e = latest.entry((site, device, duty)).or_insert((ms, at.clone()));
                if ms > e.0 {
                    *e = (ms, at);
                }
            }
            Err(e) => problems.push(problem(line, format!("`at`: {e}, or a day (2026-12-01)"))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(latest
        .into_iter()
        .map(|((site, device, duty), (_, at))| LastDoneConfig { site, device, duty, at })
        .collect())
}

fn is_day(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The visits as `[[dispatch.last_done]]` tables, to add to the configuration.
#[must_use]
pub fn to_toml(visits: &[LastDoneConfig]) -> String {
    // A JSON string is a valid TOML basic string (the same escapes).
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::new();
    for v in visits {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "[[dispatch.last_done]]\nsite = {}\ndevice = {}\nduty = {}\nat = {}\n\n",
            q(&v.site),
            q(&v.device),
            q(&v.duty),
            q(&v.at)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_becomes_the_latest_visit_per_duty_with_every_problem_by_line() {
        let log = "technician,Site,device,duty,at\n\
                   li,lakeside,EL-1,maintenance,2026-11-20\n\
                   wang,lakeside,EL-1,maintenance,2026-11-05T10:00:00+08:00\n\
                   li,lakeside,\"EL-\"\"2\",maintenance,2026-11-21T09:30:00+08:00\n";
        let visits = read_log(log.as_bytes()).expect("valid");
        assert_eq!(visits.len(), 2);
        let el1 = visits.iter().find(|v| v.device == "EL-1").expect("EL-1");
        assert_eq!(
            el1.at, "2026-11-20T00:00:00+08:00",
            "the later visit, from China's midnight"
        );
        let text = to_toml(&visits);
        assert!(text.contains("device = \"EL-\\\"2\"\n"), "{text}");
        let back: toml::Table = text.parse().expect("TOML");
        assert_eq!(back["dispatch"]["last_done"].as_array().map(Vec::len), Some(2));

        let bad = "site,device,duty,at\nlakeside,EL-1,maintenance,yesterday\nlakeside,,maintenance,2026-11-20\n";
        let e = read_log(bad.as_bytes()).expect_err("bad");
        let lines: Vec<u64> = e.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3], "{e:?}");
        assert!(e[0].message.contains("RFC 3339"), "{e:?}");
        let e = read_log(b"site,device,when\n").expect_err("columns");
        assert!(e.iter().any(|p| p.message.contains("`duty`")), "{e:?}");
    }
}
