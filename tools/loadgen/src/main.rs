//! `loadgen`: the end-to-end benchmark, measured from outside the processes.
//!
//! Simulated fire pumps publish samples over MQTT (rate or burst, QoS 0 or 1,
//! JSON or binary) with fire alarms injected among them, against a bare
//! subscriber on Mosquitto, the gateway behind Mosquitto, the gateway on its
//! embedded broker, and Node-RED with the checked-in flow; then an event
//! storm. Each target is started here, on free ports in a temporary
//! directory, measured through `/proc` and what it exposes, and stopped.
//! See docs/performance.md, "End to end, measured from outside".

mod http;
mod load;
mod mqtt;
mod proc;
mod report;
mod sink;
mod sut;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use load::{Format, RunResult, Spec, StormResult};
use report::Checks;
use sut::{Programs, Target};

/// End-to-end benchmark: simulated devices against Mosquitto, the gateway and Node-RED.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Throughput, CPU per message, peak memory and alarm latency against one target.
    Run {
        /// What to measure.
        #[arg(long, value_enum)]
        target: Target,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        common: Common,
    },
    /// The event storm against one target: N devices raise a fire alarm at once.
    Storm {
        /// What to measure.
        #[arg(long, value_enum)]
        target: Target,
        /// Devices raising the alarm together.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[command(flatten)]
        common: Common,
    },
    /// The InfluxDB sink: the gateway drains a spooled burst into VictoriaMetrics, beside
    /// what VictoriaMetrics takes alone from the same batches.
    Sink {
        #[command(flatten)]
        load: LoadArgs,
        /// Points per write (the gateway's `batch_points`, and this tool's batches).
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Writes in flight (the gateway's `concurrency`, and this tool's connections).
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Every target (runs at each QoS, then the storm), with ratios and the goals.
    All {
        /// The targets (default: all four; with --smoke: bare, gateway-embedded, gateway-mosquitto).
        #[arg(long, value_enum, value_delimiter = ',')]
        targets: Option<Vec<Target>>,
        #[command(flatten)]
        load: LoadArgs,
        /// Devices in the storm.
        #[arg(long, default_value_t = 10_000)]
        storm_events: usize,
        /// Leave out the storm.
        #[arg(long)]
        no_storm: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Simulated fire pumps.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Samples to publish per run.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Messages per second in all; without it, as fast as possible (burst).
    #[arg(long, conflicts_with = "burst")]
    rate: Option<f64>,
    /// As fast as possible (the default).
    #[arg(long)]
    burst: bool,
    /// QoS of the samples, one or both (`0,1`). Default: 1 for `run`, `0,1` for `all`.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Option<Vec<u8>>,
    /// Encoding of the samples (births and alarms are JSON).
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Fire alarms injected during each run, evenly among the samples, each for its own device.
    #[arg(long, default_value_t = 50)]
    events: usize,
    /// One sample in this many reports low pressure (the rule goes pending, then cancels); 0: none.
    #[arg(long, default_value_t = 0)]
    low_every: u64,
}

#[derive(Debug, Args)]
struct Common {
    /// Measured runs per target (min / median / max are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A seconds-long check: 200 devices, 5,000 samples at QoS 1, 10 alarms, a storm of 200,
    /// one run; exits non-zero if anything was lost.
    #[arg(long)]
    smoke: bool,
    /// The gateway binary.
    #[arg(long, default_value = "target/release/gateway")]
    gateway_bin: PathBuf,
    /// The npm prefix Node-RED is installed in (`npm install --prefix DIR node-red@4`).
    #[arg(long, default_value = "target/node-red")]
    node_red: PathBuf,
    /// Publishing connections (devices are spread over them).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// QoS 1 messages in flight per connection.
    #[arg(long, default_value_t = 100)]
    inflight: usize,
    /// Write every run, raw, to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw msg/s and alarm p99 per target as an SVG bar chart.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress bar (also without a terminal).
    #[arg(long)]
    plain: bool,
    /// Keep the temporary directory (logs, configurations, the gateway's data).
    #[arg(long)]
    keep: bool,
    /// A label written into the JSON (the commit measured, the machine).
    #[arg(long)]
    label: Option<String>,
}

/// What to do, resolved from the command line.
struct Plan {
    targets: Vec<Target>,
    qos: Vec<u8>,
    spec: Option<Spec>,
    storm: Option<usize>,
    sink: Option<sink::SinkSpec>,
    common: Common,
}

fn plan(cmd: Cmd) -> Plan {
    let spec = |l: &LoadArgs, c: &Common| Spec {
        devices: if c.smoke { 200 } else { l.devices.max(1) },
        messages: if c.smoke { 5_000 } else { l.messages.max(1) },
        rate: l.rate.filter(|r| *r > 0.0),
        qos: 1,
        format: l.format,
        events: if c.smoke { 10 } else { l.events },
        low_every: l.low_every,
        connections: c.connections.max(1),
        inflight: c.inflight.max(1),
    };
    let smoke_targets = vec![Target::Bare, Target::GatewayEmbedded, Target::GatewayMosquitto];
    match cmd {
        Cmd::Run { target, load, common } => Plan {
            targets: vec![target],
            qos: load.qos.clone().unwrap_or_else(|| vec![1]),
            spec: Some(spec(&load, &common)),
            storm: None,
            sink: None,
            common,
        },
        Cmd::Sink {
            load,
            batch,
            concurrency,
            common,
        } => Plan {
            targets: vec![Target::GatewayEmbedded],
            qos: vec![1],
            spec: Some(Spec {
                events: 0,
                ..spec(&load, &common)
            }),
            storm: None,
            sink: Some(sink::SinkSpec {
                batch: batch.clamp(1, 100_000),
                concurrency: concurrency.clamp(1, 64),
            }),
            common,
        },
        Cmd::Storm { target, events, common } => Plan {
            targets: vec![target],
            qos: vec![1],
            spec: None,
            storm: Some(if common.smoke { 200 } else { events.max(1) }),
            sink: None,
            common,
        },
        Cmd::All {
            targets,
            load,
            storm_events,
            no_storm,
            common,
        } => Plan {
            targets: targets.unwrap_or_else(|| {
                if common.smoke {
                    smoke_targets
                } else {
                    vec![
                        Target::Bare,
                        Target::GatewayMosquitto,
                        Target::GatewayEmbedded,
                        Target::NodeRed,
                    ]
                }
            }),
            qos: load
                .qos
                .clone()
                .unwrap_or_else(|| if common.smoke { vec![1] } else { vec![0, 1] }),
            spec: Some(spec(&load, &common)),
            storm: (!no_storm).then_some(if common.smoke { 200 } else { storm_events.max(1) }),
            sink: None,
            common,
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = plan(cli.command);
    let result = runtime.block_on(async {
        // On Ctrl-C or SIGTERM the plan is dropped, and with it every
        // process it started (each is stopped when dropped).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = execute(&plan) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    // Whatever is still running (a stream reader) ends with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn new_bar(plain: bool, len: u64, prefix: String) -> ProgressBar {
    if plain || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{prefix:<40} [{bar:30}] {pos:>7}/{len:7} {msg}") {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix(prefix);
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

/// Runs the plan; whether everything that was asked for was measured (and,
/// in a smoke run, every check passed).
#[allow(clippy::too_many_lines)] // the plan, step by step
async fn execute(plan: &Plan) -> Result<bool> {
    let c = &plan.common;
    let runs = if c.smoke { 1 } else { c.runs.max(1) };
    let programs = Programs {
        gateway: c.gateway_bin.clone(),
        node_red: c.node_red.clone(),
        gateway_config: String::new(),
    };
    let tmp = tempfile::Builder::new()
        .prefix("loadgen-")
        .tempdir()
        .context("a temporary directory")?;
    let dir = tmp.path().to_path_buf();
    let mut results: Vec<RunResult> = Vec::new();
    let mut storms: Vec<StormResult> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut checks = Checks::default();

    if let (Some(spec), Some(sink)) = (&plan.spec, plan.sink) {
        return execute_sink(plan, spec, sink, &programs, &dir, runs).await;
    }
    if let Some(spec) = &plan.spec {
        eprintln!(
            "loadgen: {} devices, {} samples per run ({}; {} bytes each, {}), {} alarms, {} connections, {} run(s)",
            spec.devices,
            spec.messages,
            spec.rate.map_or_else(|| "burst".to_owned(), |r| format!("{r} msg/s")),
            {
                let mut one = Vec::new();
                load::sample_bytes(&mut one, spec.format)
            },
            spec.format.name(),
            spec.events,
            spec.connections,
            runs
        );
        for run in 0..runs {
            for &qos in &plan.qos {
                for &target in &plan.targets {
                    if target == Target::NodeRed && spec.format == Format::Binary {
                        if run == 0 && qos == plan.qos[0] {
                            eprintln!("node-red: left out with --format binary (the flow reads JSON only)");
                        }
                        continue;
                    }
                    let spec = Spec { qos, ..spec.clone() };
                    let label = format!("{target} qos {qos} run {}/{runs}", run + 1);
                    let bar = new_bar(c.plain, spec.messages, label.clone());
                    let d = dir.join(format!("{target}-q{qos}-run{}", run + 1));
                    let r = load::with_target(target, &d, &programs, qos, async |sut| {
                        load::run(sut, &spec, run, &bar).await
                    })
                    .await;
                    bar.finish_and_clear();
                    match r {
                        Ok(r) => {
                            eprintln!(
                                "{label}: {:.0} msg/s, {} of {} consumed in {:.2} s, {:.2} cores, {} of {} alarms{}",
                                r.msg_s,
                                r.consumed,
                                r.sent,
                                r.secs,
                                r.consumer_cpu_s / r.secs.max(1e-9),
                                r.latencies_ms.len(),
                                r.alarms_sent,
                                report::percentile(&sorted(&r.latencies_ms), 99.0)
                                    .map_or_else(String::new, |p| format!(", p99 {p:.1} ms"))
                            );
                            results.push(r);
                        }
                        Err(e) => {
                            eprintln!("{label}: error: {e:#}");
                            errors.push(format!("{label}: {e:#}"));
                            checks.check(format!("{label}: ran"), false);
                        }
                    }
                }
            }
        }
    }
    if let Some(events) = plan.storm {
        for run in 0..runs {
            for &target in &plan.targets {
                let label = format!("{target} storm of {events} run {}/{runs}", run + 1);
                let bar = new_bar(c.plain, report::u(events), label.clone());
                let d = dir.join(format!("{target}-storm-run{}", run + 1));
                let r = load::with_target(target, &d, &programs, 1, async |sut| {
                    load::storm(sut, events, c.connections.max(1), run, &bar).await
                })
                .await;
                bar.finish_and_clear();
                match r {
                    Ok(s) => {
                        eprintln!(
                            "{label}: published in {:.3} s, {} alerts (last at {}){}",
                            s.publish_secs,
                            s.alerts,
                            s.alert_secs.map_or_else(|| "—".into(), |a| format!("{a:.3} s")),
                            s.orders.map_or_else(String::new, |o| format!(
                                ", {o} work orders (last at {})",
                                s.order_secs.map_or_else(|| "—".into(), |a| format!("{a:.3} s"))
                            ))
                        );
                        storms.push(s);
                    }
                    Err(e) => {
                        eprintln!("{label}: error: {e:#}");
                        errors.push(format!("{label}: {e:#}"));
                        checks.check(format!("{label}: ran"), false);
                    }
                }
            }
        }
    }

    // A smoke run is too short to judge the goals by.
    println!("{}", report::table(&results, &storms, !c.smoke));
    if !errors.is_empty() {
        println!("errors:");
        for e in &errors {
            println!("  {}", e.lines().next().unwrap_or(""));
        }
    }
    if let Some(path) = &c.json {
        let meta = serde_json::json!({
            "label": c.label,
            "unix_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "spec": plan.spec.as_ref().map(|s| format!("{s:?}")),
            "storm_events": plan.storm,
            "runs": runs,
            "errors": errors,
        });
        let text = serde_json::to_string_pretty(&report::json(&results, &storms, &meta))?;
        std::fs::write(path, text).with_context(|| format!("{}", path.display()))?;
        eprintln!("raw runs written to {}", path.display());
    }
    if let Some(path) = &c.plot {
        std::fs::write(path, report::svg(&results)).with_context(|| format!("{}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    if c.keep {
        let kept = tmp.keep();
        eprintln!("logs and data kept in {}", kept.display());
    }
    if c.smoke {
        checks.runs(&results);
        checks.storms(&storms);
        let (line, ok) = checks.summary();
        println!("{line}");
        return Ok(ok);
    }
    Ok(errors.is_empty())
}

/// The sink bench: its runs, its table, and in a smoke run its checks.
async fn execute_sink(
    plan: &Plan,
    spec: &Spec,
    sink: sink::SinkSpec,
    programs: &Programs,
    dir: &std::path::Path,
    runs: usize,
) -> Result<bool> {
    let c = &plan.common;
    eprintln!(
        "loadgen sink: {} devices, {} samples per run at QoS 1, batches of {}, {} in flight, {} run(s)",
        spec.devices, spec.messages, sink.batch, sink.concurrency, runs
    );
    let mut results = Vec::new();
    let mut checks = Checks::default();
    for run in 0..runs {
        let label = format!("sink run {}/{runs}", run + 1);
        let bar = new_bar(c.plain, spec.messages, label.clone());
        let r = sink::run(
            &dir.join(format!("sink-run{}", run + 1)),
            programs,
            spec,
            sink,
            run,
            &bar,
        )
        .await;
        bar.finish_and_clear();
        match r {
            Ok(r) => {
                eprintln!(
                    "{label}: ingest {:.0} msg/s while spooling; {} points drained at {} points/s; the server alone {:.0} points/s",
                    r.ingest_msg_s,
                    r.points,
                    r.drain_points_s.map_or_else(|| "—".into(), |d| format!("{d:.0}")),
                    r.alone_points_s
                );
                checks.check(
                    format!(
                        "{label}: {} of {} points written, {} lost",
                        r.points, spec.messages, r.lost
                    ),
                    r.points >= spec.messages && r.lost == 0,
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("{label}: error: {e:#}");
                checks.check(format!("{label}: ran"), false);
            }
        }
    }
    println!("{}", report::sink_table(&results, !c.smoke));
    let (line, ok) = checks.summary();
    if c.smoke {
        println!("{line}");
    }
    Ok(ok)
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}
