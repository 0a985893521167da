//! `hil`: runs scenarios of the simulated compound — the real firmware on
//! simulated hardware, real links, the real gateway — and judges them.
//!
//! ```text
//! hil run                         # the whole library (hil-tests/scenarios), virtual time
//! hil run scenarios/elevator-trapped.toml --real --http-port 8080
//! hil run --junit target/hil.xml  # and a JUnit report for the lab's CI
//! hil check                       # only read and check the files
//! hil list                        # what the library holds
//! ```
//!
//! Exit codes: 0 every scenario passed, 1 a scenario failed, 2 a file could
//! not be read or checked.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hil_tests::bench::{ClockMode, RunOptions};
use hil_tests::scenario::{self, Scenario};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The library shipped with the crate.
const LIBRARY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");

#[derive(Parser)]
#[command(
    name = "hil",
    version,
    about = "Runs HIL scenarios through the real firmware and the real gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs scenarios (files, or directories of `*.toml`; default: the library).
    Run {
        /// Scenario files or directories.
        paths: Vec<PathBuf>,
        /// Run in wall time (for a lab watching the console) instead of virtual time.
        #[arg(long)]
        real: bool,
        /// Write a JUnit XML report here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Serve the gateway's HTTP API and console on this port (with `--real`; default: a free port, printed).
        #[arg(long, value_name = "PORT")]
        http_port: Option<u16>,
        /// The gateway's admin token (default `hil`).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Only the scenarios whose name contains this.
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
        /// No colours, no progress bar.
        #[arg(long)]
        plain: bool,
    },
    /// Reads and checks scenario files without running them.
    Check {
        /// Scenario files or directories.
        paths: Vec<PathBuf>,
    },
    /// Lists the scenarios with what each shows.
    List {
        /// Scenario files or directories.
        paths: Vec<PathBuf>,
    },
}

/// The files named, directories expanded; the library if none.
fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(LIBRARY)]
    } else {
        paths.to_vec()
    };
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(scenario::library(&p).with_context(|| format!("{}: cannot list", p.display()))?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, ExitCode> {
    let files = files(paths).map_err(|e| {
        eprintln!("hil: {e:#}");
        ExitCode::from(2)
    })?;
    let mut out = Vec::new();
    let mut bad = false;
    for f in &files {
        match scenario::load(f) {
            Ok(s) => out.push(s),
            Err(e) => {
                eprintln!("hil: {e}");
                bad = true;
            }
        }
    }
    if bad { Err(ExitCode::from(2)) } else { Ok(out) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The gateway's own log, on stderr: warnings by default, `RUST_LOG=info`
    // for every alert and order as it happens.
    // rumqttd's own errors are about its clients coming and going (the
    // bench's port probe among them): off unless asked for.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Check { paths } => match load_all(&paths) {
            Ok(s) => {
                println!("{} scenarios check", s.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::List { paths } => match load_all(&paths) {
            Ok(all) => {
                for s in all {
                    println!(
                        "{:<36} {:>8}  {}",
                        s.name,
                        humantime::format_duration(s.duration).to_string(),
                        s.about
                    );
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run {
            paths,
            real,
            junit,
            http_port,
            token,
            only,
            plain,
        } => {
            let mut all = match load_all(&paths) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let Some(o) = &only {
                all.retain(|s| s.name.contains(o.as_str()));
                if all.is_empty() {
                    eprintln!("hil: no scenario's name contains `{o}`");
                    return ExitCode::from(2);
                }
            }
            run(&all, real, junit.as_deref(), http_port, token.as_deref(), plain)
        }
    }
}

fn run(
    all: &[Scenario],
    real: bool,
    junit: Option<&Path>,
    http_port: Option<u16>,
    token: Option<&str>,
    plain: bool,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hil: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let fancy = !plain && std::io::stderr().is_terminal();
    let total: u64 = all
        .iter()
        .map(|s| u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX))
        .sum();
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if fancy {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% of scenario time  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    // In wall time a lab watches the console: on the port asked for, or one
    // chosen now and printed.
    let http_port = if real {
        Some(http_port.unwrap_or_else(testkit::free_port))
    } else {
        http_port
    };
    let mut results = Vec::new();
    let mut done_before = 0u64;
    for s in all {
        bar.set_message(s.name.clone());
        if real {
            eprintln!(
                "running {} in real time: console at http://127.0.0.1:{}/#token={}",
                s.name,
                http_port.unwrap_or(0),
                token.unwrap_or("hil")
            );
        }
        let progress_bar = bar.clone();
        let base = done_before;
        let options = RunOptions {
            clock: if real { ClockMode::Real } else { ClockMode::Virtual },
            http_port,
            token: token.map(str::to_owned),
            progress: Some(Arc::new(move |ms| progress_bar.set_position(base + ms))),
        };
        let r = runtime.block_on(hil_tests::run(s, &options));
        done_before += u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX);
        bar.set_position(done_before);
        if !fancy {
            eprintln!("{} {}", if r.passed() { "pass" } else { "FAIL" }, r.name);
        }
        results.push(r);
    }
    bar.finish_and_clear();
    print!(
        "{}",
        hil_tests::report::table(&results, fancy || (!plain && std::io::stdout().is_terminal()))
    );
    if let Some(path) = junit {
        match hil_tests::report::junit(&results) {
            Ok(xml) => {
                if let Err(e) = std::fs::write(path, xml) {
                    eprintln!("hil: {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            Err(e) => {
                eprintln!("hil: the JUnit report: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if results.iter().all(hil_tests::report::ScenarioResult::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
