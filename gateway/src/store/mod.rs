//! The embedded time-series store: SQLite (through `rusqlite`, bundled) in the
//! data directory.
//!
//! Why SQLite: one file, crash-safe transactions (WAL), ad-hoc SQL for the
//! console's queries and the bureau's reports, and the same engine can hold the
//! registry, alerts, work orders and the record chain of later issues in one
//! transaction. `redb` is a fine key-value store but would need every query
//! written by hand. Bundled, so no system library is needed.

pub mod credentials;
pub mod influx;
pub mod ledger;
pub mod schema;

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use protocol::Message;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::ingest::Incoming;
use crate::registry::Device;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no (disk full, corruption, locked).
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date, or is newer than this binary.
    #[error("database {path}: {source}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// What happened.
        source: schema::SchemaError,
    },
    /// A persisted row could not be read back.
    #[error("database {path}: bad stored device state: {source}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// One stored value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Device time, ms since the Unix epoch.
    pub ts: i64,
    /// Gateway receive time, ms since the Unix epoch.
    pub received: i64,
    /// The value (flags as 0/1).
    pub value: f64,
    /// Replayed from the node's buffer.
    pub hist: bool,
}

/// A series query.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesQuery {
    /// Device id.
    pub device: String,
    /// Site, to tell apart equal device ids on two sites.
    pub site: Option<String>,
    /// Metric name.
    pub metric: String,
    /// Charging port (1-based), for port metrics.
    pub port: Option<u8>,
    /// From (inclusive), device time in ms.
    pub from: i64,
    /// To (exclusive), device time in ms.
    pub to: i64,
    /// At most this many points (the newest are kept).
    pub limit: usize,
}

/// The store: one SQLite connection (not shared between threads; open one per thread).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    series: Series,
}

/// The ids of the series (site, class, device, metric, port) known to this
/// connection, so a sample is written as one integer-keyed row: the text of
/// its series is stored once, in `series`, not in every row (the write path
/// spent most of its time comparing and copying those strings).
#[derive(Debug, Default)]
pub struct Series {
    ids: std::collections::HashMap<String, i64>,
    /// Ids given out in the transaction under way: forgotten if it rolls back.
    fresh: Vec<String>,
    /// The lookup key, built in place (no allocation for a known series).
    key: String,
    /// Rows in `inbox`, and the gateway time the oldest was written.
    inbox: Inbox,
    /// Whether `inbox` was read from the database (on the first write).
    inbox_loaded: bool,
    /// The same before the transaction under way (restored if it rolls back).
    inbox_before: Inbox,
}

/// What waits in the `inbox` table for the next compaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inbox {
    /// Rows (those a compaction under way has copied already included).
    pub rows: usize,
    /// When the oldest was written (gateway ms), if any.
    pub since: Option<i64>,
    /// A compaction under way.
    pub cycle: Option<Cycle>,
}

/// A compaction under way, one range of series per commit: the inbox rows
/// with `id <= upto` and `series < watermark` are in `points` already (and
/// readers skip them); the rest of the rows up to `upto` follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The last inbox row the compaction takes (rows after it wait for the next).
    pub upto: i64,
    /// Series ids below this are done.
    pub watermark: i64,
}

/// Series a compaction step moves: a step rewrites about one `points` page
/// per series, so this bounds the time a commit spends compacting (tens of
/// milliseconds) whatever the number of devices.
pub const SERIES_PER_STEP: i64 = 512;

/// The rows of `inbox` (aliased `p`) a reader must still see: not those a
/// compaction under way has copied into `points`.
const INBOX_UNMOVED: &str = "NOT (p.id <= IFNULL((SELECT upto FROM inbox_cycle), -1)
     AND p.series < IFNULL((SELECT watermark FROM inbox_cycle), -1))";

/// How far a device's clock may lag its receipt for a stored sample to
/// still count as evidence of "recent" (the table is read by series and
/// device time; receipt time filters after).
const EVIDENCE_CLOCK_SLACK_MS: i64 = 3_600_000;

/// Rows in the inbox past which the next commit compacts it.
pub const COMPACT_ROWS: usize = 50_000;
/// How long a row waits in the inbox at most (a compound's trickle is
/// compacted this often).
pub const COMPACT_AFTER_MS: i64 = 30_000;

impl Inbox {
    /// Whether the next commit at `now_ms` should take a compaction step:
    /// one is under way, or the inbox is full or old enough to start one.
    #[must_use]
    pub fn due(&self, now_ms: i64) -> bool {
        self.cycle.is_some() || self.rows >= COMPACT_ROWS || self.since.is_some_and(|t| now_ms - t >= COMPACT_AFTER_MS)
    }
}

impl Series {
    /// The id of a series, inserted (in the caller's transaction) if new.
    fn id(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        site: &str,
        class: &str,
        device: &str,
        metric: &str,
        port: u8,
    ) -> rusqlite::Result<i64> {
        use std::fmt::Write as _;
        self.key.clear();
        let _ = write!(self.key, "{site}/{class}/{device}/{metric}/{port}");
        if let Some(id) = self.ids.get(self.key.as_str()) {
            return Ok(*id);
        }
        let id = tx
            .prepare_cached(
                "INSERT INTO series (site, class, device, metric, port) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (site, class, device, metric, port) DO UPDATE SET port = excluded.port
                 RETURNING id",
            )?
            .query_row(params![site, class, device, metric, port], |r| r.get(0))?;
        self.ids.insert(self.key.clone(), id);
        self.fresh.push(self.key.clone());
        Ok(id)
    }
}

/// Settings of every connection (the tables are [`schema`]'s).
const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
-- 32 MiB of page cache (SQLite's default is 2 MiB): a compaction touches the
-- last index page of every series, and reading those back from the OS on
-- every compaction was a tenth of the pipeline's time.
PRAGMA cache_size = -32768;
";

/// Creates the data directory (and its parents) readable by the gateway's
/// user only: it holds the registry, every order and record, the
/// notification outbox, device credentials and the signing key.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// An exclusive lock on a data directory (`gateway.lock`, `flock`): the
/// gateway holds it while it runs, and offline writers (`gateway devices
/// add|revoke`) take it or refuse, so the record chain has one writer.
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code, reason = "held for its lock, released on drop")] std::fs::File);

impl DataDirLock {
    /// Takes the lock, without waiting.
    ///
    /// # Errors
    /// The directory cannot be made, or another process holds the lock (a gateway runs on it).
    pub fn take(dir: &Path) -> Result<DataDirLock, String> {
        private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("gateway.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
            format!(
                "{}: a gateway is running on this data directory; stop it, or use the HTTP API (POST /api/v1/devices)",
                dir.display()
            )
        })?;
        Ok(DataDirLock(file))
    }
}

/// An alert query of the HTTP API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// `pending`, `firing`, `acknowledged` or `resolved`.
    pub state: Option<String>,
    /// The compound.
    pub site: Option<String>,
    /// The class (`gateway` for root causes).
    pub class: Option<String>,
    /// The device.
    pub device: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// At most this many, newest change first.
    pub limit: usize,
    /// Only alerts that changed before this `(changed, id)` (a page's cursor).
    pub before: Option<(i64, u64)>,
}

/// One engine device state to persist: its position, key and snapshot.
pub type EngineDevice = (u32, alerting::DeviceSnapshot);

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, bringing its
    /// schema up to date ([`schema`]).
    ///
    /// # Errors
    /// [`StoreError`] if the directory or database cannot be opened, a
    /// schema step fails, or the store was written by a newer gateway.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("gateway.sqlite");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        private_dir(data_dir).map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let mut conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(PRAGMAS).map_err(err)?;
        schema::migrate(&mut conn).map_err(|source| StoreError::Schema {
            path: path.clone(),
            source,
        })?;
        Ok(Store {
            conn,
            path,
            series: Series::default(),
        })
    }

    /// Reads what a previous run left in the inbox (it goes with the next
    /// compaction), once per connection, on its first write: the API opens a
    /// connection per request and never writes, so it never counts.
    fn load_inbox(&mut self) -> rusqlite::Result<()> {
        if self.series.inbox_loaded {
            return Ok(());
        }
        let (rows, since): (i64, Option<i64>) =
            self.conn
                .query_row("SELECT COUNT(*), MIN(received) FROM inbox", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let cycle = self
            .conn
            .query_row("SELECT upto, watermark FROM inbox_cycle WHERE id = 1", [], |r| {
                Ok(Cycle {
                    upto: r.get(0)?,
                    watermark: r.get(1)?,
                })
            })
            .optional()?;
        self.series.inbox = Inbox {
            rows: usize::try_from(rows).unwrap_or(0),
            since,
            cycle,
        };
        self.series.inbox_loaded = true;
        Ok(())
    }

    /// What waits in the inbox for the next compaction.
    ///
    /// # Errors
    /// [`StoreError`] if it cannot be read.
    pub fn inbox(&mut self) -> Result<Inbox, StoreError> {
        self.load_inbox().map_err(|e| self.err(e))?;
        Ok(self.series.inbox)
    }

    /// Compacts the inbox now, in a transaction of its own; returns the rows moved.
    ///
    /// # Errors
    /// [`StoreError`]; the inbox then stays as it was.
    pub fn compact(&mut self) -> Result<usize, StoreError> {
        self.transact_series(|tx, series| {
            let mut moved = 0;
            if series.inbox.cycle.is_none() && series.inbox.rows > 0 {
                start_cycle(tx, series)?;
            }
            while series.inbox.cycle.is_some() {
                moved += compact_step(tx, series)?;
            }
            Ok(moved)
        })
    }

    /// Names this database in an error of a query run by another module.
    #[must_use]
    pub fn sql_error(&self, source: rusqlite::Error) -> StoreError {
        self.err(source)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores the samples of a `data` message (other kinds have none) in a
    /// transaction of its own; returns the number of values written. The
    /// pipeline writes its batches with [`write_samples`] instead.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of the message is written then.
    pub fn insert(&mut self, incoming: &Incoming) -> Result<usize, StoreError> {
        self.transact_series(|tx, series| write_samples(tx, series, std::slice::from_ref(incoming)))
    }

    /// Reads a series, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn series(&self, q: &SeriesQuery) -> Result<Vec<Point>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT ts, received, value, hist FROM (
                   SELECT p.ts, p.received, p.value, p.hist FROM points p JOIN series s ON p.series = s.id
                   WHERE s.device = ?1 AND s.metric = ?2 AND s.port = ?3 AND p.ts >= ?4 AND p.ts < ?5
                     AND (?6 IS NULL OR s.site = ?6)
                   UNION ALL
                   SELECT p.ts, p.received, p.value, p.hist FROM inbox p JOIN series s ON p.series = s.id
                   WHERE s.device = ?1 AND s.metric = ?2 AND s.port = ?3 AND p.ts >= ?4 AND p.ts < ?5
                     AND (?6 IS NULL OR s.site = ?6) AND {INBOX_UNMOVED}
                 )
                 ORDER BY ts DESC, received DESC LIMIT ?7"
            ))
            .map_err(|e| self.err(e))?;
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![q.device, q.metric, q.port.unwrap_or(0), q.from, q.to, q.site, limit],
                |r| {
                    Ok(Point {
                        ts: r.get(0)?,
                        received: r.get(1)?,
                        value: r.get(2)?,
                        hist: r.get(3)?,
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        let mut points = rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))?;
        points.reverse();
        Ok(points)
    }

    /// Keeps a rejected publish for audit (the first 1 KiB of its payload).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn record_rejected(
        &self,
        received_ms: i64,
        r: &crate::ingest::Rejected,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let keep = &payload[..payload.len().min(1024)];
        self.conn
            .execute(
                "INSERT INTO rejected (received, topic, reason, detail, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![received_ms, r.topic, r.reason, r.detail, keep],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Rejected publishes kept for audit: `(received, topic, reason)`, newest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn rejected(&self, limit: usize) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT received, topic, reason FROM rejected ORDER BY received DESC, rowid DESC LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Deletes samples whose device time is before `before_ms` (retention);
    /// returns how many.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn prune(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        // Series by series, along the table's own order: no index by time to keep up.
        let ids: Vec<i64> = {
            let mut stmt = self.conn.prepare("SELECT id FROM series").map_err(|e| self.err(e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let mut points = 0;
        for id in ids {
            points += self
                .conn
                .prepare_cached("DELETE FROM points WHERE series = ?1 AND ts < ?2")
                .and_then(|mut st| st.execute(params![id, before_ms]))
                .map_err(|e| self.err(e))?;
        }
        let waiting = self
            .conn
            .execute("DELETE FROM inbox WHERE ts < ?1", params![before_ms])
            .map_err(|e| self.err(e))?;
        if waiting > 0 && self.series.inbox_loaded {
            self.series.inbox.rows = self.series.inbox.rows.saturating_sub(waiting);
        }
        Ok(points + waiting)
    }

    /// Persists a device's registry state.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn save_device(&mut self, device: &Device) -> Result<(), StoreError> {
        self.transact(|tx| write_devices(tx, std::iter::once(device)))
    }

    /// Every persisted device, to restore the registry at start.
    ///
    /// # Errors
    /// [`StoreError`], also for a row that does not parse.
    pub fn load_devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT state FROM devices ORDER BY site, class, device")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        self.parse_rows(rows)
    }

    /// Reads rows of one JSON column back into values; a row that does not
    /// parse is corruption, named with the database.
    fn parse_rows<T: serde::de::DeserializeOwned>(
        &self,
        rows: impl Iterator<Item = rusqlite::Result<String>>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                source,
            })?);
        }
        Ok(out)
    }

    /// Runs `f` in one transaction, committed if it succeeds.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of it is written then.
    pub fn transact<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let out = f(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Runs `f` in one transaction with the series ids, committed if it
    /// succeeds; a series first written by a transaction that rolls back is
    /// forgotten with it.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of it is written then.
    pub fn transact_series<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &mut Series) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.load_inbox().map_err(|e| self.err(e))?;
        let series = &mut self.series;
        series.fresh.clear();
        series.inbox_before = series.inbox;
        let result = (|| {
            let tx = self.conn.transaction()?;
            let out = f(&tx, series)?;
            tx.commit()?;
            Ok(out)
        })();
        if result.is_err() {
            for key in series.fresh.drain(..) {
                series.ids.remove(&key);
            }
            series.inbox = series.inbox_before;
        }
        result.map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// The connection, for the readers of other modules (records, orders).
    #[must_use]
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Persists the whole engine state (periodically and at shutdown).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn save_engine(&mut self, devices: &[EngineDevice], globals: &alerting::Globals) -> Result<(), StoreError> {
        self.transact(|tx| write_engine(tx, devices, globals))
    }

    /// Recent samples of a device (every metric), oldest first: the evidence
    /// of a work order.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn recent(
        &self,
        site: &str,
        device: &str,
        from: i64,
        limit: usize,
    ) -> Result<Vec<dispatch::Sample>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT metric, port, received, value FROM (
                   SELECT s.metric, s.port, p.received, p.value, p.n AS r
                   FROM points p JOIN series s ON p.series = s.id
                   WHERE s.site = ?1 AND s.device = ?2 AND p.ts >= ?3 - ?5 AND p.received >= ?3
                   UNION ALL
                   SELECT s.metric, s.port, p.received, p.value, p.id AS r
                   FROM inbox p JOIN series s ON p.series = s.id
                   WHERE s.site = ?1 AND s.device = ?2 AND p.received >= ?3 AND {INBOX_UNMOVED}
                 )
                 ORDER BY received DESC, r DESC LIMIT ?4"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    site,
                    device,
                    from,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    EVIDENCE_CLOCK_SLACK_MS
                ],
                |r| {
                    Ok(dispatch::Sample {
                        metric: r.get(0)?,
                        port: r.get::<_, u8>(1).map(|p| (p > 0).then_some(p))?,
                        at: r.get(2)?,
                        value: r.get(3)?,
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        let mut out = rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))?;
        out.reverse();
        Ok(out)
    }

    /// The persisted engine state, devices in their engine order.
    ///
    /// # Errors
    /// [`StoreError`], also for a row that does not parse.
    pub fn load_engine(&self) -> Result<alerting::Snapshot, StoreError> {
        let corrupt = |source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        };
        let globals: Option<String> = self
            .conn
            .query_row("SELECT state FROM engine_globals WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        let globals = globals
            .map(|g| serde_json::from_str(&g))
            .transpose()
            .map_err(corrupt)?
            .unwrap_or_default();
        let mut stmt = self
            .conn
            .prepare("SELECT state FROM engine_devices ORDER BY ord")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        let devices = self.parse_rows(rows)?;
        Ok(alerting::Snapshot { globals, devices })
    }

    /// Alerts as stored (every state but pending), newest change first,
    /// each with the time of its change (a page's cursor).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn alerts(&self, q: &AlertQuery) -> Result<Vec<(i64, alerting::AlertView)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT changed, view FROM alerts
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR site = ?2) AND (?3 IS NULL OR class = ?3)
                   AND (?4 IS NULL OR device = ?4) AND (?5 IS NULL OR code = ?5)
                   AND (?7 IS NULL OR changed < ?7 OR (changed = ?7 AND id < ?8))
                 ORDER BY changed DESC, id DESC LIMIT ?6",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    q.state,
                    q.site,
                    q.class,
                    q.device,
                    q.code,
                    i64::try_from(q.limit).unwrap_or(i64::MAX),
                    q.before.map(|(changed, _)| changed),
                    q.before.map(|(_, id)| i64::try_from(id).unwrap_or(i64::MAX)),
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (changed, view) = row.map_err(|e| self.err(e))?;
            let view: alerting::AlertView = serde_json::from_str(&view).map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                source,
            })?;
            out.push((changed, view.labelled()));
        }
        Ok(out)
    }

    /// Number of stored samples (for tests and `/metrics`).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn sample_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT (SELECT COUNT(*) FROM points) + (SELECT COUNT(*) FROM inbox p WHERE {INBOX_UNMOVED})"),
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
            .map_err(|e| self.err(e))
    }
}

/// Writes alert rows of alerting effects (pending alerts live in memory
/// only: an elevator stopping with people inside is pending for a second).
///
/// # Errors
/// SQLite's, or a view that does not encode.
pub fn write_alerts(tx: &rusqlite::Transaction<'_>, effects: &[alerting::Effect]) -> rusqlite::Result<()> {
    use alerting::{Change, Effect, State};
    for e in effects {
        let Effect::Alert(c) = e else { continue };
        if matches!(c.change, Change::Pending | Change::Cancelled) || c.alert.state == State::Pending {
            continue;
        }
        let a = &c.alert;
        let changed = a.resolved_at.or(a.acked_at).or(a.fired_at).unwrap_or(a.since);
        let changed = if c.change == Change::Updated {
            changed.max(a.since)
        } else {
            changed
        };
        let view = serde_json::to_string(a).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        tx.prepare_cached(
            "INSERT INTO alerts (id, site, class, device, code, port, severity, state, since, changed, view)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, severity = excluded.severity,
               changed = excluded.changed, view = excluded.view",
        )?
        .execute(params![
            i64::try_from(a.id).unwrap_or(i64::MAX),
            a.site,
            a.class,
            a.device,
            a.code,
            a.port,
            a.severity.as_str(),
            a.state.as_str(),
            a.since,
            changed,
            view
        ])?;
    }
    Ok(())
}

/// Writes engine device snapshots and the globals.
///
/// # Errors
/// SQLite's, or a snapshot that does not encode.
pub fn write_engine(
    tx: &rusqlite::Transaction<'_>,
    devices: &[EngineDevice],
    globals: &alerting::Globals,
) -> rusqlite::Result<()> {
    let enc = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    for (ord, d) in devices {
        let class = d.class.map_or("gateway", protocol::DeviceClass::as_str);
        tx.prepare_cached(
            "INSERT INTO engine_devices (site, class, device, ord, state) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (site, class, device) DO UPDATE SET ord = excluded.ord, state = excluded.state",
        )?
        .execute(params![
            d.site,
            class,
            d.device,
            ord,
            serde_json::to_string(d).map_err(enc)?
        ])?;
    }
    tx.execute(
        "INSERT INTO engine_globals (id, state) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        params![serde_json::to_string(globals).map_err(enc)?],
    )?;
    Ok(())
}

/// The values of a `data` message, one stored row each: (metric, port,
/// value), port 0 for the device's own metrics.
pub fn values(data: &protocol::Data) -> impl Iterator<Item = (&str, u8, protocol::Value)> + '_ {
    data.m.iter().map(|r| (r.name.as_str(), 0u8, r.value)).chain(
        data.ports
            .iter()
            .flat_map(|p| p.readings.iter().map(|r| (r.name.as_str(), p.port, r.value))),
    )
}

/// Writes the samples of `data` messages (other kinds have none) inside the
/// caller's transaction, through one cached prepared statement: the batch
/// of a group commit. Returns the number of values written.
///
/// # Errors
/// SQLite's; the caller's transaction is rolled back then.
pub fn write_samples(
    tx: &rusqlite::Transaction<'_>,
    series: &mut Series,
    messages: &[Incoming],
) -> rusqlite::Result<usize> {
    let mut stmt =
        tx.prepare_cached("INSERT INTO inbox (series, ts, received, value, hist) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let mut n = 0;
    for incoming in messages {
        let Message::Data(data) = &incoming.message else {
            continue;
        };
        let t = &incoming.topic;
        for (metric, port, value) in values(data) {
            let id = series.id(tx, t.site.as_str(), t.class.as_str(), t.device.as_str(), metric, port)?;
            stmt.execute(params![
                id,
                data.ts.as_millis(),
                incoming.received_ms,
                value.to_number(),
                data.hist
            ])?;
            n += 1;
            series.inbox.since.get_or_insert(incoming.received_ms);
        }
    }
    series.inbox.rows += n;
    Ok(n)
}

/// Takes one step of a compaction inside the caller's transaction (starting
/// one if none is under way): the rows of the next [`SERIES_PER_STEP`]
/// series move from the inbox into `points`, sorted by series and time; after
/// the last series the moved rows leave the inbox. Returns the rows moved.
///
/// Why two tables: `points` is ordered by (series, ts) for the readers, and
/// samples of a thousand devices arrive interleaved, so writing each commit's
/// rows straight into that order touched one page per row: every commit
/// rewrote hundreds of 4 KiB pages into the WAL, about 12 KB written per
/// 139-byte message, and the disk, not the processor, set the pace. The
/// inbox takes rows in arrival order (each commit appends to its last pages);
/// a compaction inserts them in order, so a page is written once per
/// compaction, not once per row. Why in steps: a whole compaction rewrites
/// the last page of every series at once, 100–400 ms with 4,000 series, and
/// an alarm taken meanwhile would wait for it; a step is a few tens of
/// milliseconds, and a commit that carries an alarm takes none
/// ([`crate::store::ledger::Ledger::allow_compaction`]). Readers read both
/// tables and skip the inbox rows a step has copied ([`Cycle`]).
///
/// # Errors
/// SQLite's; the transaction then rolls back and the inbox stays as it was.
pub fn compact_step(tx: &rusqlite::Transaction<'_>, series: &mut Series) -> rusqlite::Result<usize> {
    let Some(c) = series.inbox.cycle else {
        start_cycle(tx, series)?;
        return Ok(0);
    };
    let hi = c.watermark.saturating_add(SERIES_PER_STEP);
    let moved = tx
        .prepare_cached(
            "INSERT INTO points (series, ts, n, received, value, hist)
             SELECT series, ts, id, received, value, hist FROM inbox
             WHERE id <= ?1 AND series >= ?2 AND series < ?3 ORDER BY series, ts, id",
        )?
        .execute(params![c.upto, c.watermark, hi])?;
    let last: i64 = tx.query_row("SELECT IFNULL(MAX(id), 0) FROM series", [], |r| r.get(0))?;
    if hi > last {
        let gone = tx
            .prepare_cached("DELETE FROM inbox WHERE id <= ?1")?
            .execute(params![c.upto])?;
        tx.execute("DELETE FROM inbox_cycle", [])?;
        series.inbox.rows = series.inbox.rows.saturating_sub(gone);
        series.inbox.since = tx.query_row("SELECT MIN(received) FROM inbox", [], |r| r.get(0))?;
        series.inbox.cycle = None;
    } else {
        tx.prepare_cached("UPDATE inbox_cycle SET watermark = ?1 WHERE id = 1")?
            .execute(params![hi])?;
        series.inbox.cycle = Some(Cycle { watermark: hi, ..c });
    }
    Ok(moved)
}

/// Starts a compaction of every row in the inbox now (none if it is empty).
fn start_cycle(tx: &rusqlite::Transaction<'_>, series: &mut Series) -> rusqlite::Result<()> {
    let upto: Option<i64> = tx.query_row("SELECT MAX(id) FROM inbox", [], |r| r.get(0))?;
    let Some(upto) = upto else {
        series.inbox = Inbox::default();
        return Ok(());
    };
    tx.execute(
        "INSERT INTO inbox_cycle (id, upto, watermark) VALUES (1, ?1, 0)",
        params![upto],
    )?;
    series.inbox.cycle = Some(Cycle { upto, watermark: 0 });
    Ok(())
}

/// Writes devices' registry state inside the caller's transaction, so a
/// device's last sequence number is durable exactly when the message that
/// moved it is: a redelivery after a crash is then never taken for a
/// duplicate of a message that was lost.
///
/// # Errors
/// SQLite's (a state that does not serialise is reported as a conversion failure).
pub fn write_devices<'d>(
    tx: &rusqlite::Transaction<'_>,
    devices: impl IntoIterator<Item = &'d Device>,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO devices (site, class, device, state) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (site, class, device) DO UPDATE SET state = excluded.state",
    )?;
    for device in devices {
        let state = serde_json::to_string(device).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        stmt.execute(params![device.key.site, device.key.class, device.key.device, state])?;
    }
    Ok(())
}
