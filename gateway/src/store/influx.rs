//! The InfluxDB 2 sink: what Grafana queries.
//!
//! Every batch goes through a disk spool before it is sent, as vector's disk
//! buffer does: the collector (fed by the pipeline after each commit) only
//! appends batches to `DATA_DIR/spool/`, and the shipper sends the oldest
//! files, deleting each on a 2xx. So an outage of any length (disk permitting)
//! loses nothing, the backlog drains oldest first, and a slow or dead server
//! never delays live processing.
//!
//! ```text
//! pipeline ─line protocol─► collector ─(size or time)─► spool/000…001.lp ─► shipper ─► POST /api/v2/write
//!  (bytes, once per commit)                                (fsync, rename)    │ ≤ `concurrency` in flight
//!                                                                             │ 429/5xx/network: back off, keep
//!                                                                             └ 400/413/422: spool/rejected/, count
//! ```
//!
//! The line protocol is written once, by the pipeline, into one buffer per
//! commit; the spool file is that text and the request body is that file, so
//! a point is formatted once and never parsed again. (The `influxdb2` crate
//! this replaced took typed points: every spooled line was parsed back into a
//! `DataPoint` and formatted again, one request at a time, which held the
//! sink to 5,000 points/s.)
//!
//! What is written (samples, node events, alert changes, the overview's
//! counts) and the table of it that the dashboards are tested against is
//! [`layout`] (see `docs/storage.md`, `docs/grafana.md`).

pub mod layout;

pub use layout::{Overview, Tally, encode, encode_alerts, lines, schema};

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

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
    /// Writes in flight at once while a backlog drains.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
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
fn default_concurrency() -> usize {
    2
}

/// Lines in a piece of line protocol (the loop vectorises; a crate for it
/// would buy nothing at one line per ~140 bytes).
#[allow(clippy::naive_bytecount)]
fn count_lines(text: &[u8]) -> usize {
    text.iter().filter(|&&b| b == b'\n').count()
}

/// The spool directory: numbered files of line protocol, oldest first.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
    /// The number of the next file: one past the highest found at open.
    next: Arc<AtomicU64>,
    /// Wakes the shipper when a file is added.
    added: Arc<Notify>,
}

impl Spool {
    /// Opens (creating) `dir`.
    ///
    /// # Errors
    /// If the directory cannot be created or read.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir.join("rejected"))?;
        let mut s = Spool {
            dir: dir.to_owned(),
            next: Arc::new(AtomicU64::new(1)),
            added: Arc::new(Notify::new()),
        };
        let last = s
            .files()?
            .last()
            .and_then(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .unwrap_or(0);
        s.next = Arc::new(AtomicU64::new(last + 1));
        Ok(s)
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

    /// Appends a batch of line protocol (whole lines) as a new file, written
    /// durably (write, fsync, rename).
    ///
    /// # Errors
    /// If the disk is full or unwritable.
    pub fn append(&self, text: &[u8]) -> std::io::Result<()> {
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{next:020}.tmp"));
        let write = || {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(format!("{next:020}.lp")))
        };
        let r = write();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        } else {
            self.added.notify_one();
        }
        r
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

/// Collects the pipeline's line protocol into batches of at most
/// `batch_points` lines and spools them; returns when the channel closes.
pub async fn collect(config: InfluxConfig, spool: Spool, mut rx: mpsc::Receiver<Vec<u8>>, metrics: Metrics) {
    let flush = Duration::from_millis(config.flush_ms.max(10));
    let max = config.batch_points.max(1);
    let mut batch: Vec<u8> = Vec::new();
    let mut points = 0usize;
    let mut deadline = tokio::time::Instant::now() + flush;
    loop {
        let closed = tokio::select! {
            got = rx.recv() => match got {
                Some(text) => {
                    points += count_lines(&text);
                    batch.extend_from_slice(&text);
                    false
                }
                None => true,
            },
            () = tokio::time::sleep_until(deadline) => false,
        };
        let due = tokio::time::Instant::now() >= deadline;
        let mut appended = false;
        while points >= max || ((due || closed) && points > 0) {
            appended = true;
            let cut = cut_after(&batch, max);
            let part: Vec<u8> = batch.drain(..cut).collect();
            let n = count_lines(&part);
            points -= n;
            let s = spool.clone();
            let written = tokio::task::spawn_blocking(move || s.append(&part)).await;
            let err = match written {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = err {
                // The disk is full: these points cannot be kept. Counted and logged.
                metrics.influx_dropped.inc_by(n as u64);
                tracing::error!(error = %e, points = n, "spool write failed; points dropped");
            }
        }
        if due {
            deadline = tokio::time::Instant::now() + flush;
        }
        // The directory is listed only when a file was added (the shipper
        // updates the gauge as it sends), not once per commit of the pipeline.
        if appended && let Ok(n) = spool.len() {
            metrics.influx_spooled.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if closed {
            return;
        }
    }
}

/// The length of the first `lines` lines of `text` (all of it if it has fewer).
fn cut_after(text: &[u8], lines: usize) -> usize {
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines.saturating_sub(1))
        .map_or(text.len(), |(i, _)| i + 1)
}

/// How a write went.
enum Sent {
    Ok,
    /// The server will never take it (400, 413, 422).
    Rejected(String),
    /// 401, 403, 429, 5xx, network: try again later.
    Retry(String),
}

/// The InfluxDB v2 write API: one client, its keep-alive connections reused.
struct Writer {
    client: reqwest::Client,
    url: String,
    org: String,
    bucket: String,
    token: String,
    gzip: bool,
}

impl Writer {
    fn new(config: &InfluxConfig) -> reqwest::Result<Writer> {
        Ok(Writer {
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            url: format!("{}/api/v2/write", config.url.trim_end_matches('/')),
            org: config.org.clone(),
            bucket: config.bucket.clone(),
            token: config.token.clone(),
            gzip: config.gzip,
        })
    }

    async fn send(&self, text: Vec<u8>) -> Sent {
        let body = if self.gzip {
            match tokio::task::spawn_blocking(move || gzip(&text)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Sent::Retry(format!("gzip: {e}")),
                Err(e) => return Sent::Retry(format!("gzip: {e}")),
            }
        } else {
            text
        };
        let mut req = self
            .client
            .post(&self.url)
            .query(&[("org", &*self.org), ("bucket", &*self.bucket), ("precision", "ms")])
            .header("Content-Type", "text/plain; charset=utf-8");
        if !self.token.is_empty() {
            req = req.header("Authorization", format!("Token {}", self.token));
        }
        if self.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        match req.body(body).send().await {
            Ok(r) if r.status().is_success() => Sent::Ok,
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let why = format!("{status}: {}", text.chars().take(300).collect::<String>());
                if matches!(status.as_u16(), 400 | 413 | 422) {
                    Sent::Rejected(why)
                } else {
                    Sent::Retry(why)
                }
            }
            Err(e) => Sent::Retry(e.to_string()),
        }
    }
}

fn gzip(text: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 4), flate2::Compression::fast());
    e.write_all(text)?;
    e.finish()
}

/// What became of one spool file.
enum Shipped {
    Written,
    Rejected,
    Retry(String),
}

/// Sends one spool file and settles it: deleted once written, moved to
/// `rejected/` if refused, left in place otherwise.
async fn ship_one(w: &Writer, spool: &Spool, path: PathBuf, metrics: &Metrics) -> Shipped {
    let text = match tokio::fs::read(&path).await {
        Ok(t) => t,
        Err(e) => return Shipped::Retry(format!("reading {}: {e}", path.display())),
    };
    let points = count_lines(&text) as u64;
    match w.send(text).await {
        Sent::Ok => {
            let _ = tokio::fs::remove_file(&path).await;
            metrics.influx_written.inc_by(points);
            Shipped::Written
        }
        Sent::Rejected(why) => {
            let dest = spool.dir.join("rejected").join(path.file_name().unwrap_or_default());
            let _ = tokio::fs::rename(&path, dest).await;
            metrics.influx_rejected.inc_by(points);
            tracing::error!(reason = %why, points, "InfluxDB refused a batch; kept in spool/rejected");
            Shipped::Rejected
        }
        Sent::Retry(why) => Shipped::Retry(why),
    }
}

/// Ships spooled batches, oldest first and up to `concurrency` at once,
/// until `stop` is set and the spool is empty (or for ever while the server
/// is away: the spool keeps the rest).
pub async fn ship(config: InfluxConfig, spool: Spool, metrics: Metrics, mut stop: tokio::sync::watch::Receiver<bool>) {
    let w = match Writer::new(&config) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the InfluxDB client; points stay spooled");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let files = spool.files().unwrap_or_default();
        if files.is_empty() {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = stop.changed() => {}
                () = spool.added.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        // Oldest first; a failure stops taking new files (those in flight finish).
        let mut failed = None;
        let mut sends = futures_util::stream::iter(files)
            .map(|path| ship_one(&w, &spool, path, &metrics))
            .buffer_unordered(config.concurrency.max(1));
        while let Some(outcome) = sends.next().await {
            match outcome {
                Shipped::Written => backoff = Duration::from_millis(200),
                Shipped::Rejected => {}
                Shipped::Retry(why) => {
                    failed = Some(why);
                    break;
                }
            }
        }
        drop(sends);
        if let Ok(n) = spool.len() {
            metrics.influx_spooled.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(why) = failed {
            metrics.influx_retries.inc();
            tracing::warn!(reason = %why, backoff_ms = backoff.as_millis(), "InfluxDB write failed; will retry");
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_always_floats() {
        let f = |v: f64| {
            let mut out = Vec::new();
            layout::number(v, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(f(41.0), "41.0");
        assert_eq!(f(-3.0), "-3.0");
        assert_eq!(f(0.28), "0.28");
        assert_eq!(f(1e-7), "0.0000001");
        assert_eq!(f(1e21), "1000000000000000000000.0");
    }

    #[test]
    fn batches_are_cut_at_whole_lines() {
        let t = b"a 1\nb 2\nc 3\n";
        assert_eq!(count_lines(t), 3);
        assert_eq!(&t[..cut_after(t, 1)], b"a 1\n");
        assert_eq!(&t[..cut_after(t, 2)], b"a 1\nb 2\n");
        assert_eq!(cut_after(t, 3), t.len());
        assert_eq!(cut_after(t, 10), t.len());
    }

    #[tokio::test]
    async fn the_collector_spools_batches_of_at_most_batch_points() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let config = InfluxConfig {
            url: "http://127.0.0.1:1".into(),
            org: "o".into(),
            bucket: "b".into(),
            token: String::new(),
            batch_points: 3,
            flush_ms: 60_000,
            gzip: false,
            concurrency: 1,
        };
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(collect(config, spool.clone(), rx, Metrics::default()));
        // Seven lines in commits of 2, 4 and 1: files of 3, 3 and, at close, 1.
        tx.send(b"m x=1.0 1\nm x=2.0 2\n".to_vec()).await.unwrap();
        tx.send(b"m x=3.0 3\nm x=4.0 4\nm x=5.0 5\nm x=6.0 6\n".to_vec())
            .await
            .unwrap();
        tx.send(b"m x=7.0 7\n".to_vec()).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let files: Vec<String> = spool
            .files()
            .unwrap()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(
            files,
            [
                "m x=1.0 1\nm x=2.0 2\nm x=3.0 3\n",
                "m x=4.0 4\nm x=5.0 5\nm x=6.0 6\n",
                "m x=7.0 7\n"
            ]
        );
    }

    /// A stand-in write endpoint: 503 to the first request, then 400 to a
    /// body holding `bad`, 204 to the rest; it returns the bodies it took.
    async fn picky_server() -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut bodies = Vec::new();
            let mut served = 0;
            while bodies.len() < 2 {
                let (mut c, _) = l.accept().await.unwrap();
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = c.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    buf.drain(..end + 4 + len);
                    served += 1;
                    let status = if served == 1 {
                        "503 Service Unavailable"
                    } else if body.contains("bad") {
                        "400 Bad Request"
                    } else {
                        "204 No Content"
                    };
                    if served > 1 {
                        bodies.push(body);
                    }
                    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    c.write_all(reply.as_bytes()).await.unwrap();
                    if bodies.len() >= 2 {
                        break;
                    }
                }
            }
            bodies
        });
        (port, task)
    }

    #[tokio::test]
    async fn a_refused_batch_is_kept_aside_and_a_failed_one_retried() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(b"m,site=s bad=x 1\n").unwrap();
        spool.append(b"m,site=s x=1.0 2\nm,site=s x=2.0 3\n").unwrap();
        let (port, server) = picky_server().await;
        let config = InfluxConfig {
            url: format!("http://127.0.0.1:{port}"),
            org: "o".into(),
            bucket: "b".into(),
            token: "secret".into(),
            batch_points: 10,
            flush_ms: 100,
            gzip: false,
            concurrency: 1,
        };
        let metrics = Metrics::default();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let shipper = tokio::spawn(ship(config, spool.clone(), metrics.clone(), stop_rx));
        let bodies = server.await.unwrap();
        assert_eq!(bodies, ["m,site=s bad=x 1\n", "m,site=s x=1.0 2\nm,site=s x=2.0 3\n"]);
        stop.send(true).unwrap();
        shipper.await.unwrap();
        assert_eq!(metrics.influx_retries.get(), 1, "the 503 is retried");
        assert_eq!(metrics.influx_rejected.get(), 1, "the refused batch's one point");
        assert_eq!(metrics.influx_written.get(), 2);
        assert!(spool.is_empty().unwrap());
        let kept: Vec<_> = std::fs::read_dir(dir.path().join("rejected")).unwrap().collect();
        assert_eq!(kept.len(), 1, "the refused batch is kept for inspection");
    }
}
