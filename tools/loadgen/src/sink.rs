//! The InfluxDB sink, measured from outside: how fast the gateway hands a
//! time-series server its points, beside what that server takes alone.
//!
//! One run, on Debian's VictoriaMetrics (it speaks the InfluxDB v2 write API;
//! no InfluxDB 2 server can be installed here):
//!
//! 1. The gateway, on its embedded broker, with `[influx]` pointing at a port
//!    where the server is not running yet: a burst of samples is consumed and
//!    spooled (the outage a compound's uplink has). Its ingest rate with the
//!    sink on is the first figure.
//! 2. The server starts; the gateway's shipper drains the spool into it. The
//!    drain rate is taken from the gateway's own counter of points the server
//!    accepted (`fm_influx_points_written_total`), from the first accepted
//!    batch to the last, so the shipper's back-off before the server came up
//!    is not counted.
//! 3. A fresh server is sent the very same batches (the spool files, copied
//!    before the drain) by this tool, as many at once as the sink sends, each
//!    on a connection of its own: what the server takes alone.
//!
//! Both sides send the same bytes uncompressed, in the same batch size, with
//! the same number in flight; the ratio drain / alone is the sink's cost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;

use crate::http;
use crate::load::{self, RunResult, Spec};
use crate::proc::{Proc, free_port, wait_port};
use crate::report::{f, u};
use crate::sut::{Programs, Target};

/// How the sink is set up for the bench.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SinkSpec {
    /// Points per write (`batch_points`).
    pub(crate) batch: usize,
    /// Writes in flight (`concurrency`).
    pub(crate) concurrency: usize,
}

/// One run's figures.
#[derive(Clone, Debug)]
pub(crate) struct SinkResult {
    /// Points the gateway spooled and the server accepted from it.
    pub(crate) points: u64,
    /// The gateway's ingest while spooling (msg/s).
    pub(crate) ingest_msg_s: f64,
    /// Points/s from the gateway's spool into the server (`None`: the
    /// drain took less than one poll, too few points to time it).
    pub(crate) drain_points_s: Option<f64>,
    /// Points/s the server took from this tool alone.
    pub(crate) alone_points_s: f64,
    /// Points dropped or refused on the gateway's side.
    pub(crate) lost: u64,
}

/// A VictoriaMetrics server on `port` with its data in `dir`.
fn start_server(dir: &Path, port: u16, name: &str) -> Result<Proc> {
    let data = dir.join(name);
    std::fs::create_dir_all(&data)?;
    let mut cmd = Command::new("victoria-metrics");
    cmd.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", data.display()))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR");
    let mut p = Proc::spawn(name, cmd, dir, false).context("victoria-metrics (scripts/install-test-deps.sh)")?;
    wait_port(port, &mut p, Duration::from_secs(30))?;
    Ok(p)
}

/// The spool's files, oldest first, with their contents.
fn spool_files(spool: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(spool)
        .with_context(|| format!("{}", spool.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "lp"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read(&p)?;
            Ok((p, text))
        })
        .collect()
}

#[allow(clippy::naive_bytecount)] // vectorised; one line per ~140 bytes
fn lines(text: &[u8]) -> u64 {
    u(text.iter().filter(|&&b| b == b'\n').count())
}

/// One run: the gateway spools a burst, drains it into a server that comes
/// up afterwards, and the same batches go to a fresh server from here.
pub(crate) async fn run(
    dir: &Path,
    programs: &Programs,
    spec: &Spec,
    sink: SinkSpec,
    run: usize,
    bar: &ProgressBar,
) -> Result<SinkResult> {
    std::fs::create_dir_all(dir)?;
    let vm_port = free_port()?;
    let programs = Programs {
        gateway_config: format!(
            "[influx]\nurl = \"http://127.0.0.1:{vm_port}\"\norg = \"fm\"\nbucket = \"bench\"\nbatch_points = {}\nflush_ms = 200\ngzip = false\nconcurrency = {}\n",
            sink.batch, sink.concurrency
        ),
        ..programs.clone()
    };
    let spool = dir.join("gateway-data").join("spool");
    let (ingest, points, drain, lost, batches) =
        load::with_target(Target::GatewayEmbedded, dir, &programs, 1, async |sut| {
            let r: RunResult = load::run(sut, spec, run, bar).await?;
            // Every data message is one line; wait until the collector has spooled them all.
            let expected = r.consumed;
            let deadline = Instant::now() + Duration::from_mins(1);
            let batches = loop {
                let files = spool_files(&spool)?;
                let n: u64 = files.iter().map(|(_, t)| lines(t)).sum();
                if n >= expected {
                    break files.into_iter().map(|(_, t)| t).collect::<Vec<_>>();
                }
                if Instant::now() > deadline {
                    bail!("the spool holds {n} of {expected} points after a minute");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let written = async || -> Result<(u64, u64)> {
                let m = sut.metrics().await?;
                let c = |name: &str| as_count(http::metric_sum(&m, name, None));
                Ok((
                    c("fm_influx_points_written_total"),
                    c("fm_influx_points_dropped_total") + c("fm_influx_points_rejected_total"),
                ))
            };
            let _server = start_server(dir, vm_port, "victoria-drain")?;
            let deadline = Instant::now() + Duration::from_mins(3);
            let mut first: Option<(Instant, u64)> = None;
            let (done_at, lost) = loop {
                let (w, lost) = written().await?;
                let now = Instant::now();
                if w > 0 && first.is_none() {
                    first = Some((now, w));
                }
                if w >= expected {
                    break (now, lost);
                }
                if now > deadline {
                    bail!("the gateway wrote {w} of {expected} points in 3 minutes");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let (t0, w0) = first.unwrap_or((done_at, expected));
            let secs = done_at.duration_since(t0).as_secs_f64();
            let drain = (w0 < expected && secs > 0.0).then(|| f(expected - w0) / secs);
            Ok((r.msg_s, expected, drain, lost, batches))
        })
        .await?;

    // The same batches from here to a fresh server.
    let port = free_port()?;
    let _server = start_server(dir, port, "victoria-alone")?;
    let queue = Arc::new(Mutex::new(batches.into_iter().rev().collect::<Vec<_>>()));
    let path = "/api/v2/write?org=fm&bucket=bench&precision=ms";
    let t0 = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..sink.concurrency.max(1) {
        let queue = queue.clone();
        senders.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let Some(body) = next else { return anyhow::Ok(()) };
                let (code, text) = http::post(port, path, &body).await?;
                if !(200..300).contains(&code) {
                    bail!("the server answered {code}: {text:.200}");
                }
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r??;
    }
    let alone = f(points) / t0.elapsed().as_secs_f64().max(1e-6);
    Ok(SinkResult {
        points,
        ingest_msg_s: ingest,
        drain_points_s: drain,
        alone_points_s: alone,
        lost,
    })
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // counters
fn as_count(x: f64) -> u64 {
    x.max(0.0) as u64
}
