//! The upstream outbox: rows kept in the store's `upstream_outbox` table from
//! the commit that decided them until their delivery or dead letter, and the
//! delivery loop of one connector (see the module above for the whole
//! picture).
//!
//! The table is the queue: the loop reads its rows from SQLite (its own
//! read connection), so rows left by a killed run are simply there at the
//! next start, and a row whose commit failed is never seen before it is
//! stored. Only the pipeline writes the table (with the records), so the
//! chain and the table never disagree about what was delivered.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use records::NewRecord;
use rusqlite::{Connection, Transaction, params};
use tokio::sync::{Notify, mpsc};

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::ops::alerts::Control;

/// A row to add, decided on the pipeline thread and written with the change
/// it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The connector that sends it (`elevator:wuhan-96333`).
    pub connector: String,
    /// Its idempotency key, unique per connector: a second row with the
    /// same key is not added, and the platform drops a resend by it.
    pub key: String,
    /// What the connector needs to send it: all it gets.
    pub payload: serde_json::Value,
    /// The compound, class, device and subject (`alert:12`, `order:3`) its
    /// records name.
    pub site: String,
    /// See `site`.
    pub class: String,
    /// See `site`.
    pub device: String,
    /// See `site`.
    pub subject: String,
    /// When it was decided (gateway ms); the first try is due then.
    pub created: i64,
}

/// A row as stored, handed to [`Connector::deliver`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Its place in the table: rows of a connector go out in this order.
    pub id: i64,
    /// What was decided.
    pub entry: Entry,
    /// Attempts made so far (this one included, in `deliver`).
    pub attempts: u32,
    /// When the next attempt is due (gateway ms).
    pub next_try: i64,
}

/// Why a delivery failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Worth another try (a timeout, a refused connection, HTTP 5xx, 408, 429).
    #[error("{0}")]
    Retry(String),
    /// Never going to work (HTTP 4xx: the platform refuses this payload): a
    /// dead letter at once.
    #[error("{0}")]
    Permanent(String),
}

/// Sends rows of one connector. A connector holds its own session (a token,
/// a TCP link) and is called for one row at a time, in order.
pub trait Connector: Send + Sync + 'static {
    /// Sends one row; `Ok` once the platform has taken it.
    fn deliver(&self, row: &Row) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// What a delivery loop reports to the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The platform took it: the row goes, `upstream_delivered` is recorded.
    Delivered(Row),
    /// It failed and is tried again at `row.next_try`: the attempt count and
    /// the time are stored, so a restart keeps the back-off.
    Retry {
        /// The row, with its attempts so far and its next try.
        row: Row,
        /// The error.
        error: String,
    },
    /// It never will: the row goes, `upstream_dead_letter` is recorded with
    /// the payload, counted and logged.
    Dead {
        /// The row.
        row: Row,
        /// The last error.
        error: String,
    },
}

/// What the next commit changes in the table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Rows to add.
    pub put: Vec<Entry>,
    /// Rows rescheduled: id, attempts, next try, last error.
    pub retry: Vec<(i64, u32, i64, String)>,
    /// Rows finished.
    pub done: Vec<i64>,
}

/// One outcome's change to the table.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Reschedule.
    Retry(i64, u32, i64, String),
    /// Forget.
    Done(i64),
}

impl Changes {
    /// Whether nothing waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.retry.is_empty() && self.done.is_empty()
    }

    /// Adds an outcome's change.
    pub fn apply(&mut self, c: Change) {
        match c {
            Change::Retry(id, attempts, next, error) => self.retry.push((id, attempts, next, error)),
            Change::Done(id) => self.done.push(id),
        }
    }
}

/// Writes the changes in the caller's transaction (the pipeline's commit).
/// A row whose key its connector already has is not added again.
///
/// # Errors
/// SQLite's, or a payload that does not encode.
pub fn save(tx: &Transaction<'_>, c: &Changes) -> rusqlite::Result<()> {
    if c.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO upstream_outbox
            (connector, key, payload, site, class, device, subject, attempts, next_try, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8)",
    )?;
    for e in &c.put {
        let payload =
            serde_json::to_string(&e.payload).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        insert.execute(params![
            e.connector,
            e.key,
            payload,
            e.site,
            e.class,
            e.device,
            e.subject,
            e.created
        ])?;
    }
    let mut update =
        tx.prepare_cached("UPDATE upstream_outbox SET attempts = ?2, next_try = ?3, last_error = ?4 WHERE id = ?1")?;
    for (id, attempts, next, error) in &c.retry {
        update.execute(params![id, attempts, next, error])?;
    }
    let mut delete = tx.prepare_cached("DELETE FROM upstream_outbox WHERE id = ?1")?;
    for id in &c.done {
        delete.execute(params![id])?;
    }
    Ok(())
}

/// A connector's rows after `after` (by id), oldest first, at most `limit`.
///
/// # Errors
/// SQLite's, or a payload that does not parse.
pub fn load(conn: &Connection, connector: &str, after: i64, limit: usize) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, key, payload, site, class, device, subject, attempts, next_try, created
         FROM upstream_outbox WHERE connector = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![connector, after, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            let payload: String = r.get(2)?;
            let payload = serde_json::from_str(&payload)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
            Ok(Row {
                id: r.get(0)?,
                entry: Entry {
                    connector: connector.to_owned(),
                    key: r.get(1)?,
                    payload,
                    site: r.get(3)?,
                    class: r.get(4)?,
                    device: r.get(5)?,
                    subject: r.get(6)?,
                    created: r.get(9)?,
                },
                attempts: r.get(7)?,
                next_try: r.get(8)?,
            })
        },
    )?;
    rows.collect()
}

/// The table change and the record of an outcome; dead letters are
/// counted and logged.
pub fn settle(now: i64, o: &Outcome, m: &Metrics) -> (Change, Option<NewRecord>) {
    let (row, kind, error) = match o {
        Outcome::Retry { row, error } => {
            m.upstream_retries
                .get_or_create(&crate::metrics::ConnectorLabel {
                    connector: row.entry.connector.clone(),
                })
                .inc();
            tracing::warn!(connector = %row.entry.connector, key = %row.entry.key, attempts = row.attempts, error = %error, "upstream delivery failed; tried again later");
            return (Change::Retry(row.id, row.attempts, row.next_try, error.clone()), None);
        }
        Outcome::Delivered(row) => (row, "upstream_delivered", None),
        Outcome::Dead { row, error } => {
            m.upstream_dead_letters.inc();
            tracing::error!(connector = %row.entry.connector, key = %row.entry.key, attempts = row.attempts, error = %error, "upstream delivery is a dead letter");
            (row, "upstream_dead_letter", Some(error))
        }
    };
    m.upstream_deliveries
        .get_or_create(&crate::metrics::UpstreamLabel {
            connector: row.entry.connector.clone(),
            result: if error.is_none() { "delivered" } else { "dead_letter" }.to_owned(),
        })
        .inc();
    let mut body = serde_json::json!({
        "connector": row.entry.connector,
        "key": row.entry.key,
        "attempts": row.attempts,
        "decided_at": row.entry.created,
    });
    if let Some(e) = error {
        // The payload travels with a dead letter: what the platform never got
        // stays on record, to be sent by hand.
        body["error"] = serde_json::Value::String(e.clone());
        body["payload"] = row.entry.payload.clone();
    }
    let record = NewRecord {
        at: now,
        kind: kind.into(),
        site: row.entry.site.clone(),
        class: row.entry.class.clone(),
        device: row.entry.device.clone(),
        subject: row.entry.subject.clone(),
        body: body.to_string(),
    };
    (Change::Done(row.id), Some(record))
}

/// How a delivery loop runs.
#[derive(Clone)]
pub struct LoopConfig {
    /// The connector's name (its rows' `connector`).
    pub connector: String,
    /// The store's directory (the loop reads its rows with its own connection).
    pub data_dir: PathBuf,
    /// Attempts and back-off.
    pub retry: notify::RetryPolicy,
    /// The gateway's clock.
    pub clock: SharedClock,
}

/// Rows read at once.
const PAGE: usize = 64;

/// Looks at the table this often even unwoken (a commit's bell is never
/// lost, this is only a guard).
const IDLE: Duration = Duration::from_secs(30);

/// The delivery loop of one connector: takes its rows in order, each until
/// it is delivered or dead, and reports every outcome to the pipeline on
/// `report`. Ends when the pipeline is gone; aborted at shutdown (a row cut
/// off is sent again at the next start, with its key).
pub async fn deliver<C: Connector>(c: Arc<C>, cfg: LoopConfig, wake: Arc<Notify>, report: mpsc::Sender<Control>) {
    let mut after = 0i64;
    loop {
        let (dir, name) = (cfg.data_dir.clone(), cfg.connector.clone());
        let read = tokio::task::spawn_blocking(move || {
            crate::store::Store::open(&dir)
                .map_err(|e| e.to_string())
                .and_then(|s| load(s.conn(), &name, after, PAGE).map_err(|e| e.to_string()))
        })
        .await;
        let rows = match read {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(connector = %cfg.connector, error = %e, "cannot read the upstream outbox; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        };
        if rows.is_empty() {
            let _ = tokio::time::timeout(IDLE, wake.notified()).await;
            continue;
        }
        for row in rows {
            after = row.id;
            if !one(&*c, &cfg, row, &report).await {
                return;
            }
        }
    }
}

/// Delivers one row to its end; `false` when the pipeline is gone.
async fn one<C: Connector>(c: &C, cfg: &LoopConfig, mut row: Row, report: &mpsc::Sender<Control>) -> bool {
    let limit = cfg.retry.attempts.max(1);
    loop {
        // A next try stored by an earlier run is kept, within the longest back-off.
        let now = cfg.clock.now_ms();
        let longest = i64::try_from(cfg.retry.max.as_millis()).unwrap_or(i64::MAX);
        let due = row.next_try.min(now.saturating_add(longest));
        if due > now {
            cfg.clock.sleep_until(due).await;
        }
        row.attempts += 1;
        let outcome = match c.deliver(&row).await {
            Ok(()) => Outcome::Delivered(row.clone()),
            Err(Failure::Retry(error)) if row.attempts < limit => {
                let wait = i64::try_from(cfg.retry.delay(row.attempts).as_millis()).unwrap_or(i64::MAX);
                row.next_try = cfg.clock.now_ms().saturating_add(wait);
                Outcome::Retry {
                    row: row.clone(),
                    error,
                }
            }
            Err(Failure::Retry(error) | Failure::Permanent(error)) => Outcome::Dead {
                row: row.clone(),
                error,
            },
        };
        let again = matches!(outcome, Outcome::Retry { .. });
        if report.send(Control::Upstream(Box::new(outcome))).await.is_err() {
            return false;
        }
        if !again {
            return true;
        }
    }
}
