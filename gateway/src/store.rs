//! The embedded time-series store: SQLite (through `rusqlite`, bundled) in the
//! data directory.
//!
//! Why SQLite: one file, crash-safe transactions (WAL), ad-hoc SQL for the
//! console's queries and the bureau's reports, and the same engine can hold the
//! registry, alerts, work orders and the record chain of later issues in one
//! transaction. `redb` is a fine key-value store but would need every query
//! written by hand. Bundled, so no system library is needed.

use std::path::{Path, PathBuf};

use protocol::{Message, Value};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::ingest::Incoming;
use crate::registry::{Device, DeviceKey};

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
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS samples (
    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
    metric TEXT NOT NULL, port INTEGER NOT NULL DEFAULT 0,
    ts INTEGER NOT NULL, received INTEGER NOT NULL, value REAL NOT NULL, hist INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_series ON samples (device, metric, port, ts);
CREATE INDEX IF NOT EXISTS samples_received ON samples (received);
CREATE TABLE IF NOT EXISTS rejected (
    received INTEGER NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rejected_received ON rejected (received);
CREATE TABLE IF NOT EXISTS devices (
    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (site, class, device)
);
";

impl Store {
    /// Opens (creating if needed) the store in `data_dir`.
    ///
    /// # Errors
    /// [`StoreError`] if the directory or database cannot be opened.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("gateway.sqlite");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores the samples of a `data` message (other kinds have none); returns
    /// the number of values written.
    ///
    /// # Errors
    /// [`StoreError`]; nothing of the message is written then.
    pub fn insert(&mut self, incoming: &Incoming) -> Result<usize, StoreError> {
        let Message::Data(data) = &incoming.message else {
            return Ok(0);
        };
        let key = DeviceKey::of(incoming);
        let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO samples (site, class, device, metric, port, ts, received, value, hist)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
            let rows = data.m.iter().map(|r| (r.name.as_str(), 0u8, r.value)).chain(
                data.ports
                    .iter()
                    .flat_map(|p| p.readings.iter().map(|r| (r.name.as_str(), p.port, r.value))),
            );
            for (metric, port, value) in rows {
                stmt.execute(params![
                    key.site,
                    key.class,
                    key.device,
                    metric,
                    port,
                    data.ts.as_millis(),
                    incoming.received_ms,
                    as_f64(value),
                    data.hist
                ])
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
                n += 1;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Reads a series, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn series(&self, q: &SeriesQuery) -> Result<Vec<Point>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts, received, value, hist FROM samples
                 WHERE device = ?1 AND metric = ?2 AND port = ?3 AND ts >= ?4 AND ts < ?5
                   AND (?6 IS NULL OR site = ?6)
                 ORDER BY ts DESC, received DESC LIMIT ?7",
            )
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

    /// Deletes samples received before `before_ms`; returns how many.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM samples WHERE received < ?1", params![before_ms])
            .map_err(|e| self.err(e))
    }

    /// Persists a device's registry state.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn save_device(&self, device: &Device) -> Result<(), StoreError> {
        let state = serde_json::to_string(device).map_err(|source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        self.conn
            .execute(
                "INSERT INTO devices (site, class, device, state) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (site, class, device) DO UPDATE SET state = excluded.state",
                params![device.key.site, device.key.class, device.key.device, state],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
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

    /// Number of stored samples (for tests and `/metrics`).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn sample_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM samples", [], |r| r.get::<_, i64>(0))
            .optional()
            .map(|n| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
            .map_err(|e| self.err(e))
    }
}

fn as_f64(v: Value) -> f64 {
    match v {
        Value::Bool(b) => f64::from(u8::from(b)),
        Value::Number(n) => n,
    }
}
