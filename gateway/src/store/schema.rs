//! The store's schema, as a numbered list of steps.
//!
//! The version is SQLite's own `PRAGMA user_version` (four bytes in the
//! file's header: reading it costs nothing, and the API opens a connection
//! per request). Each step runs once, in its own `BEGIN IMMEDIATE`
//! transaction that also records its number, so a step is either wholly
//! there with its number or not there at all: a gateway killed (or a step
//! failing) halfway leaves the store at the last whole step, and the next
//! open goes on from there. The version is read again inside that
//! transaction, so two connections opening a store at once never run a step
//! twice. A store whose version is higher than [`VERSION`] was written by a
//! newer gateway and is refused, never opened: this binary does not know
//! what the newer steps mean.
//!
//! Stores written before the version existed (`user_version` 0 with tables
//! in them) are recognised by their tables ([`legacy_version`]) and go on
//! from the step their layout shows. The steps before 10 are that history:
//! the layouts the gateway created from its first commit on, with the
//! conversions it used to make ad hoc at open (the wide `samples` table, the
//! rowid `points`, the desk's one JSON document).
//!
//! Why not `rusqlite_migration`: it keeps the version in the same place and
//! would do the bookkeeping, but runs every pending step in one transaction
//! (a kill in a long conversion throws away the steps before it), does not
//! re-read the version under the write lock, knows nothing of stores from
//! before versions (which need the adoption below anyway), and pins a
//! `rusqlite` minor version, so each `rusqlite` upgrade would wait for it.
//! What is left to write by hand is this file.

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// One schema step.
#[derive(Clone, Copy)]
pub struct Step {
    /// Its number: the store's version once it has run.
    pub version: u32,
    /// What it does, for messages and `docs/storage.md`.
    pub what: &'static str,
    /// The step, inside its transaction.
    pub run: fn(&Transaction<'_>) -> rusqlite::Result<()>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} ({})", self.version, self.what)
    }
}

/// Why a store's schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Written by a newer gateway.
    #[error(
        "schema version {found} is newer than this gateway's {known}: the store was written by a newer \
         gateway. Run that version (or newer), or restore the backup taken before the upgrade; \
         this one will not open it"
    )]
    TooNew {
        /// The store's version.
        found: u32,
        /// The newest this binary knows.
        known: u32,
    },
    /// A step failed; the store stays at the version before it.
    #[error("schema step {version} ({what}) failed, the store stays at version {stays}: {source}")]
    Step {
        /// The step.
        version: u32,
        /// What it does.
        what: &'static str,
        /// The version the store keeps.
        stays: u32,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading or writing the version.
    #[error("schema version: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn sql(tx: &Transaction<'_>, text: &str) -> rusqlite::Result<()> {
    tx.execute_batch(text)
}

/// Every step, in order; a new one is added at the end, never changed once
/// released (a store that ran it will not run it again).
pub const STEPS: &[Step] = &[
    Step {
        version: 1,
        what: "samples and the registry (the first layout, e2d6799)",
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS samples (
                    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
                    metric TEXT NOT NULL, port INTEGER NOT NULL DEFAULT 0,
                    ts INTEGER NOT NULL, received INTEGER NOT NULL, value REAL NOT NULL, hist INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS samples_series ON samples (device, metric, port, ts);
                 CREATE INDEX IF NOT EXISTS samples_received ON samples (received);
                 CREATE TABLE IF NOT EXISTS devices (
                    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL,
                    PRIMARY KEY (site, class, device)
                 );",
            )
        },
    },
    Step {
        version: 2,
        what: "rejected input kept for audit (3eacb54)",
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS rejected (
                    received INTEGER NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
                    payload BLOB NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS rejected_received ON rejected (received);",
            )
        },
    },
    Step {
        version: 3,
        what: "alerts and the alerting engine's state (586381d)",
        // 586381d also made `alert_log`, which 27c863b stopped writing (the
        // record chain replaced it); a store that has it keeps it and its
        // rows, read by nothing. New stores never had a use for it.
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS alerts (
                    id INTEGER PRIMARY KEY, site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
                    code TEXT NOT NULL, port INTEGER, severity TEXT NOT NULL, state TEXT NOT NULL,
                    since INTEGER NOT NULL, changed INTEGER NOT NULL, view TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, changed);
                 CREATE INDEX IF NOT EXISTS alerts_device ON alerts (device, changed);
                 CREATE TABLE IF NOT EXISTS engine_devices (
                    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL, ord INTEGER NOT NULL,
                    state TEXT NOT NULL,
                    PRIMARY KEY (site, class, device)
                 );
                 CREATE TABLE IF NOT EXISTS engine_globals (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);",
            )
        },
    },
    Step {
        version: 4,
        what: "work orders and the supervision record chain (27c863b)",
        // `pos` is the physical order, `seq` the chain's own: a row moved
        // shows as a seq out of order.
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS records (
                    pos INTEGER PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL,
                    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL, subject TEXT NOT NULL,
                    body TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS records_device ON records (device, at);
                 CREATE INDEX IF NOT EXISTS records_at ON records (at);
                 CREATE INDEX IF NOT EXISTS records_subject ON records (subject);
                 CREATE TABLE IF NOT EXISTS checkpoints (
                    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, at INTEGER NOT NULL,
                    public_key TEXT NOT NULL, signature TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS config_state (id INTEGER PRIMARY KEY CHECK (id = 1), text TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS work_orders (
                    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, site TEXT NOT NULL, class TEXT NOT NULL,
                    device TEXT NOT NULL, code TEXT NOT NULL, status TEXT NOT NULL, contractor TEXT,
                    primary_contractor TEXT, created INTEGER NOT NULL, due INTEGER NOT NULL, changed INTEGER NOT NULL,
                    view TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS work_orders_status ON work_orders (status, changed);
                 CREATE INDEX IF NOT EXISTS work_orders_site ON work_orders (site, created);
                 CREATE TABLE IF NOT EXISTS desk_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);",
            )
        },
    },
    Step {
        version: 5,
        what: "the notification outbox (85378ca)",
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, at INTEGER NOT NULL, queued TEXT NOT NULL);",
            )
        },
    },
    Step {
        version: 6,
        what: "samples as integer-keyed points of a series (a2cddc8)",
        // A row's `rowid` is kept: the next step makes it the point's `n`,
        // which tells apart two samples of a series at one device time.
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS series (
                    id INTEGER PRIMARY KEY, site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
                    metric TEXT NOT NULL, port INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (site, class, device, metric, port)
                 );
                 CREATE INDEX IF NOT EXISTS series_device ON series (device, metric, port);
                 CREATE TABLE IF NOT EXISTS points (
                    series INTEGER NOT NULL, ts INTEGER NOT NULL, received INTEGER NOT NULL, value REAL NOT NULL,
                    hist INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS points_series ON points (series, ts);
                 CREATE INDEX IF NOT EXISTS points_received ON points (received);
                 INSERT OR IGNORE INTO series (site, class, device, metric, port)
                    SELECT DISTINCT site, class, device, metric, port FROM samples ORDER BY site, class, device, metric, port;
                 INSERT INTO points (rowid, series, ts, received, value, hist)
                    SELECT x.rowid, s.id, x.ts, x.received, x.value, x.hist
                    FROM samples x JOIN series s USING (site, class, device, metric, port) ORDER BY x.rowid;
                 DROP TABLE samples;",
            )
        },
    },
    Step {
        version: 7,
        what: "points in one B-tree, samples landing in an inbox (a2672bf)",
        // Inbox ids are never reused (AUTOINCREMENT), so they start after
        // the last moved row: `n` stays unique.
        run: |tx| {
            sql(
                tx,
                "ALTER TABLE points RENAME TO points_v1;
                 CREATE TABLE points (
                    series INTEGER NOT NULL, ts INTEGER NOT NULL, n INTEGER NOT NULL,
                    received INTEGER NOT NULL, value REAL NOT NULL, hist INTEGER NOT NULL,
                    PRIMARY KEY (series, ts, n)
                 ) WITHOUT ROWID;
                 INSERT INTO points (series, ts, n, received, value, hist)
                    SELECT series, ts, rowid, received, value, hist FROM points_v1 ORDER BY series, ts, rowid;
                 CREATE TABLE IF NOT EXISTS inbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    series INTEGER NOT NULL, ts INTEGER NOT NULL, received INTEGER NOT NULL, value REAL NOT NULL,
                    hist INTEGER NOT NULL
                 );
                 INSERT INTO sqlite_sequence (name, seq) SELECT 'inbox', COALESCE(MAX(rowid), 0) FROM points_v1;
                 DROP TABLE points_v1;
                 CREATE TABLE IF NOT EXISTS inbox_cycle (
                    id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL, watermark INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS desk_meta (id INTEGER PRIMARY KEY CHECK (id = 1), next_id INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS desk_duties (key TEXT PRIMARY KEY, state TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS desk_dispatched (alert INTEGER PRIMARY KEY, at INTEGER NOT NULL);",
            )
        },
    },
    Step {
        version: 8,
        what: "device credentials for the embedded broker (b419bbd)",
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS device_credentials (
                    site TEXT NOT NULL, device TEXT NOT NULL, class TEXT NOT NULL,
                    password_hash TEXT NOT NULL, cmd_key BLOB NOT NULL,
                    created INTEGER NOT NULL, revoked INTEGER, certificate TEXT,
                    PRIMARY KEY (site, device)
                 );
                 CREATE INDEX IF NOT EXISTS device_credentials_certificate ON device_credentials (certificate);",
            )
        },
    },
    Step {
        version: 9,
        what: "the dispatch desk's state as rows, not one JSON document",
        // Until versions, this move was made at the desk's first load
        // (a2672bf..); a store written in between may still hold the
        // document. Rows already there are newer than it and are kept.
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS desk_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
                 INSERT OR IGNORE INTO desk_meta (id, next_id)
                    SELECT 1, json_extract(state, '$.next_id') FROM desk_state WHERE id = 1;
                 INSERT OR IGNORE INTO desk_duties (key, state)
                    SELECT j.key, j.value FROM desk_state d, json_each(d.state, '$.duties') j;
                 INSERT OR IGNORE INTO desk_dispatched (alert, at)
                    SELECT CAST(j.key AS INTEGER), j.value FROM desk_state d, json_each(d.state, '$.dispatched') j;
                 DROP TABLE desk_state;",
            )
        },
    },
    Step {
        version: 10,
        what: "commands to nodes and the command policy's state (issue 16)",
        // Each device's counter is the largest `ctr` of its commands: a
        // command is stored before it is sent, so the counter never goes back.
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS commands (
                    id TEXT PRIMARY KEY, site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
                    op TEXT NOT NULL, args TEXT NOT NULL, ctr INTEGER NOT NULL, issuer TEXT NOT NULL,
                    sent_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, status TEXT NOT NULL, error TEXT,
                    settled_at INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS commands_device ON commands (site, device, ctr);
                 CREATE INDEX IF NOT EXISTS commands_status ON commands (status);
                 CREATE TABLE IF NOT EXISTS command_policy (key TEXT PRIMARY KEY, state TEXT NOT NULL);",
            )
        },
    },
    Step {
        version: 11,
        what: "the upstream platforms' outbox (issue 16)",
        // `id` is never reused (AUTOINCREMENT): a connector's delivery loop
        // reads on from the last id it took, so a row deleted and a new one
        // added never trade places.
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS upstream_outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    connector TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL,
                    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL, subject TEXT NOT NULL,
                    attempts INTEGER NOT NULL, next_try INTEGER NOT NULL, last_error TEXT,
                    created INTEGER NOT NULL,
                    UNIQUE (connector, key)
                 );
                 CREATE INDEX IF NOT EXISTS upstream_outbox_connector ON upstream_outbox (connector, id);",
            )
        },
    },
    Step {
        version: 12,
        what: "the judgement from history's state per device (issue 17)",
        // One JSON document per device (`judgement::DeviceState`): the
        // judge is restored whole at start and reads nothing else.
        run: |tx| {
            sql(
                tx,
                "CREATE TABLE IF NOT EXISTS judgement_devices (
                    site TEXT NOT NULL, class TEXT NOT NULL, device TEXT NOT NULL,
                    state TEXT NOT NULL, saved INTEGER NOT NULL,
                    PRIMARY KEY (site, class, device)
                 );",
            )
        },
    },
];

/// The newest schema version this binary knows.
pub const VERSION: u32 = STEPS[STEPS.len() - 1].version;

/// The store's recorded version.
///
/// # Errors
/// SQLite's.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// The step a store from before versions had reached, told by its tables
/// (each layout added one; every open created the whole layout of its
/// time). 0 for an empty database.
///
/// # Errors
/// SQLite's.
pub fn legacy_version(conn: &Connection) -> rusqlite::Result<u32> {
    let has = |table: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )
    };
    // Newest first; the desk's move (9) is judged by its step, which
    // does nothing to a store that made it already but drops the table.
    for (table, version) in [
        ("device_credentials", 8),
        ("inbox", 7),
        ("series", 6),
        ("outbox", 5),
        ("records", 4),
        ("alerts", 3),
        ("rejected", 2),
        ("devices", 1),
    ] {
        if has(table)? {
            return Ok(version);
        }
    }
    Ok(0)
}

/// Brings the store up to [`VERSION`] with [`STEPS`]; returns the version it had.
///
/// # Errors
/// [`SchemaError`]; the store keeps the last whole step then.
pub fn migrate(conn: &mut Connection) -> Result<u32, SchemaError> {
    migrate_with(conn, STEPS)
}

/// [`migrate`] with the steps given: for tests of a step that fails.
///
/// # Errors
/// As [`migrate`]; [`SchemaError::TooNew`] past the last of `steps`.
pub fn migrate_with(conn: &mut Connection, steps: &[Step]) -> Result<u32, SchemaError> {
    let known = steps.last().map_or(0, |s| s.version);
    let found = version(conn)?;
    if found > known {
        return Err(SchemaError::TooNew { found, known });
    }
    if found == known && found > 0 {
        return Ok(found);
    }
    let from = if found == 0 {
        // No version yet: an empty file, or a store from before versions.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = version(&tx)?;
        let from = if now == 0 { legacy_version(&tx)? } else { now };
        if from != now {
            tx.pragma_update(None, "user_version", from)?;
        }
        tx.commit()?;
        from
    } else {
        found
    };
    for step in steps.iter().filter(|s| s.version > from) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = version(&tx)?;
        if now >= step.version {
            // Another connection ran it meanwhile.
            continue;
        }
        (step.run)(&tx)
            .and_then(|()| tx.pragma_update(None, "user_version", step.version))
            .and_then(|()| tx.commit())
            .map_err(|source| SchemaError::Step {
                version: step.version,
                what: step.what,
                stays: now,
                source,
            })?;
    }
    Ok(from)
}
