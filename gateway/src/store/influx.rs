//! The InfluxDB 2 sink, through the `influxdb2` crate: what Grafana queries.
//!
//! Every batch goes through a disk spool before it is sent, as vector's disk
//! buffer does: the collector (fed by the pipeline) only appends batches to
//! `DATA_DIR/spool/`, and the shipper sends the oldest file, deleting it on a
//! 2xx. So an outage of any length (disk permitting) loses nothing, the backlog
//! drains in order, and a slow or dead server never delays live processing.
//!
//! ```text
//! pipeline ─points─► collector ─(size or time)─► spool/000…001.lp ─► shipper ─► /api/v2/write
//!                                                                     │ 429/5xx/network: back off, keep
//!                                                                     └ 400: move to spool/rejected/, count
//! ```
//!
//! Layout (see `docs/storage.md`): measurement = device class, tags `site`,
//! `device`, `port` (port metrics only) and `hist` (replays only), one field per
//! metric (flags as 0/1), timestamp = device time in ms.

use std::path::{Path, PathBuf};
use std::time::Duration;

use influxdb2::models::DataPoint;
use protocol::{Message, Value};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::ingest::Incoming;
use crate::metrics::Metrics;

/// The `[influx]` configuration section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Server URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Organization.
    pub org: String,
    /// Bucket.
    pub bucket: String,
    /// API token.
    #[serde(default)]
    pub token: String,
    /// Points per write at most.
    #[serde(default = "default_batch")]
    pub batch_points: usize,
    /// A partial batch is written after this long.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Compress writes with gzip.
    #[serde(default = "default_true")]
    pub gzip: bool,
}

fn default_batch() -> usize {
    5000
}
fn default_flush_ms() -> u64 {
    1000
}
fn default_true() -> bool {
    true
}

/// One point, as stored in the spool: a line of line protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct Line(pub String);

/// The line-protocol lines of a `data` message (nothing for other kinds).
#[must_use]
pub fn lines(incoming: &Incoming) -> Vec<Line> {
    let Message::Data(d) = &incoming.message else {
        return Vec::new();
    };
    let t = &incoming.topic;
    let tags = |port: Option<u8>| {
        let mut s = format!("{},site={},device={}", t.class, t.site, t.device);
        if let Some(p) = port {
            use std::fmt::Write as _;
            let _ = write!(s, ",port={p}");
        }
        if d.hist {
            s.push_str(",hist=true");
        }
        s
    };
    let fields = |it: &mut dyn Iterator<Item = (&str, Value)>| {
        it.map(|(name, v)| format!("{name}={}", number(v)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let ts = d.ts.as_millis();
    let mut out = Vec::new();
    if !d.m.is_empty() {
        let f = fields(&mut d.m.iter().map(|r| (r.name.as_str(), r.value)));
        out.push(Line(format!("{} {f} {ts}", tags(None))));
    }
    for p in &d.ports {
        if p.readings.is_empty() {
            continue;
        }
        let f = fields(&mut p.readings.iter().map(|r| (r.name.as_str(), r.value)));
        out.push(Line(format!("{} {f} {ts}", tags(Some(p.port)))));
    }
    out
}

/// A value as a line-protocol float (names and ids are already safe: the
/// protocol allows no spaces, commas or quotes in them).
fn number(v: Value) -> String {
    let s = format!("{}", v.to_number());
    if s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// The spool directory: numbered files of line protocol, oldest first.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating) `dir`.
    ///
    /// # Errors
    /// If the directory cannot be created.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir.join("rejected"))?;
        Ok(Spool { dir: dir.to_owned() })
    }

    fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "lp"))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Appends a batch as a new file, written durably (write, fsync, rename).
    ///
    /// # Errors
    /// If the disk is full or unwritable.
    pub fn append(&self, lines: &[Line]) -> std::io::Result<()> {
        use std::io::Write;
        let next = self
            .files()?
            .last()
            .and_then(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .map_or(1, |n| n + 1);
        let tmp = self.dir.join(format!("{next:020}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        for l in lines {
            writeln!(f, "{}", l.0)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(format!("{next:020}.lp")))
    }

    /// Batches waiting.
    ///
    /// # Errors
    /// If the directory cannot be read.
    pub fn len(&self) -> std::io::Result<usize> {
        self.files().map(|f| f.len())
    }

    /// Whether nothing waits.
    ///
    /// # Errors
    /// If the directory cannot be read.
    pub fn is_empty(&self) -> std::io::Result<bool> {
        self.len().map(|n| n == 0)
    }
}

/// Collects points into batches and spools them; returns when the channel closes.
pub async fn collect(config: InfluxConfig, spool: Spool, mut rx: mpsc::Receiver<Vec<Line>>, metrics: Metrics) {
    let flush = Duration::from_millis(config.flush_ms.max(10));
    let mut batch: Vec<Line> = Vec::new();
    let mut deadline = tokio::time::Instant::now() + flush;
    loop {
        let closed = tokio::select! {
            got = rx.recv() => match got {
                Some(lines) => { batch.extend(lines); false }
                None => true,
            },
            () = tokio::time::sleep_until(deadline) => false,
        };
        let due = tokio::time::Instant::now() >= deadline;
        while batch.len() >= config.batch_points.max(1) || ((due || closed) && !batch.is_empty()) {
            let take = batch.len().min(config.batch_points.max(1));
            let part: Vec<Line> = batch.drain(..take).collect();
            if let Err(e) = spool.append(&part) {
                // The disk is full: these points cannot be kept. Counted and logged.
                metrics.influx_dropped.inc_by(part.len() as u64);
                tracing::error!(error = %e, points = part.len(), "spool write failed; points dropped");
            }
        }
        if due {
            deadline = tokio::time::Instant::now() + flush;
        }
        if let Ok(n) = spool.len() {
            metrics.influx_spooled.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if closed {
            return;
        }
    }
}

/// How a write went.
enum Sent {
    Ok,
    /// 400: the server will never take it.
    Rejected(String),
    /// 429, 5xx, network: try again later.
    Retry(String),
}

async fn send(client: &influxdb2::Client, bucket: &str, text: &str) -> Sent {
    let points: Vec<DataPoint> = match text.lines().map(parse_line).collect::<Option<Vec<_>>>() {
        Some(p) => p,
        None => return Sent::Rejected("unparseable spool file".into()),
    };
    let stream = futures_util::stream::iter(points);
    match client
        .write_with_precision(bucket, stream, influxdb2::api::write::TimestampPrecision::Milliseconds)
        .await
    {
        Ok(()) => Sent::Ok,
        Err(influxdb2::RequestError::Http { status, text }) if status.as_u16() == 400 => {
            Sent::Rejected(format!("{status}: {text}"))
        }
        Err(e) => Sent::Retry(e.to_string()),
    }
}

/// Parses one of our own lines back into a point for the client.
fn parse_line(line: &str) -> Option<DataPoint> {
    let mut parts = line.split(' ');
    let (series, fields, ts) = (parts.next()?, parts.next()?, parts.next()?);
    let mut tags = series.split(',');
    let mut b = DataPoint::builder(tags.next()?);
    for t in tags {
        let (k, v) = t.split_once('=')?;
        b = b.tag(k, v);
    }
    for f in fields.split(',') {
        let (k, v) = f.split_once('=')?;
        b = b.field(k, v.parse::<f64>().ok()?);
    }
    b.timestamp(ts.parse().ok()?).build().ok()
}

/// Ships spooled batches, oldest first, until `stop` is set and the spool is empty
/// (or for ever while the server is away: the spool keeps the rest).
pub async fn ship(config: InfluxConfig, spool: Spool, metrics: Metrics, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut builder = influxdb2::ClientBuilder::new(&config.url, &config.org, &config.token);
    if config.gzip {
        builder = builder.gzip(true);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the InfluxDB client; points stay spooled");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let oldest = spool.files().ok().and_then(|f| f.into_iter().next());
        let Some(path) = oldest else {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        let points = text.lines().count() as u64;
        match send(&client, &config.bucket, &text).await {
            Sent::Ok => {
                let _ = std::fs::remove_file(&path);
                metrics.influx_written.inc_by(points);
                backoff = Duration::from_millis(200);
            }
            Sent::Rejected(why) => {
                let dest = spool.dir.join("rejected").join(path.file_name().unwrap_or_default());
                let _ = std::fs::rename(&path, dest);
                metrics.influx_rejected.inc_by(points);
                tracing::error!(reason = %why, points, "InfluxDB refused a batch; kept in spool/rejected");
            }
            Sent::Retry(why) => {
                metrics.influx_retries.inc();
                tracing::warn!(reason = %why, backoff_ms = backoff.as_millis(), "InfluxDB write failed; will retry");
                if *stop.borrow() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if let Ok(n) = spool.len() {
            metrics.influx_spooled.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
