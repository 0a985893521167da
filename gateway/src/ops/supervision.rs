//! The supervision record chain's edge (智慧监督): what becomes a record,
//! and where records live. The chain itself (hashes, signed checkpoints,
//! verification, export formats) is the pure `records` crate; here its
//! entries meet SQLite, in the same transactions as the alert and work-order
//! changes they record, so a change is never stored without its record.
//!
//! Records are never pruned: telemetry retention does not touch them
//! (Hubei keeps maintenance records for at least four years).

use std::fmt::Write as _;
use std::path::Path;

use records::{Checkpoint, Entry, NewRecord, Signer, Tail};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// The chain as the pipeline writes it: its tail, its key, when the next
/// checkpoint is due.
pub struct Chain {
    tail: Tail,
    signer: Signer,
    every_ms: i64,
    every_records: u64,
    last_checkpoint: (u64, i64),
}

/// What one append wrote, adopted once its transaction committed.
#[derive(Debug)]
pub struct Appended {
    tail: Tail,
    checkpoint: Option<Checkpoint>,
    /// The entries, for the event stream.
    pub entries: Vec<Entry>,
}

impl Chain {
    /// The chain in `conn`, continuing from its last row.
    ///
    /// # Errors
    /// SQLite's.
    pub fn open(conn: &Connection, signer: Signer, every_ms: i64, every_records: u64) -> rusqlite::Result<Chain> {
        let tail = conn
            .query_row("SELECT seq, hash FROM records ORDER BY pos DESC LIMIT 1", [], |r| {
                Ok(Tail {
                    seq: r.get::<_, i64>(0).map(|s| u64::try_from(s).unwrap_or(0))?,
                    hash: r.get(1)?,
                })
            })
            .optional()?
            .unwrap_or_else(Tail::genesis);
        let last_checkpoint = conn
            .query_row("SELECT seq, at FROM checkpoints ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?))
            })
            .optional()?
            .unwrap_or((0, 0));
        Ok(Chain {
            tail,
            signer,
            every_ms,
            every_records,
            last_checkpoint,
        })
    }

    /// The last entry's seq and hash.
    #[must_use]
    pub fn tail(&self) -> &Tail {
        &self.tail
    }

    /// A keyed fingerprint of a secret value (`records::Signer::fingerprint`
    /// under the context `config`): what a redacted field shows.
    #[must_use]
    pub fn fingerprint(&self, value: &str) -> String {
        self.signer.fingerprint("config", value.as_bytes())
    }

    /// The public key checkpoints are signed with.
    #[must_use]
    pub fn public_key(&self) -> String {
        self.signer.public_key_hex()
    }

    /// Seals and inserts `recs` after the tail, and a checkpoint when one is
    /// due (every `checkpoint_records`, or `checkpoint_every` after the last
    /// while some are unsigned, or `force` with any unsigned). The tail moves
    /// only at [`Chain::adopt`], after the commit.
    ///
    /// # Errors
    /// SQLite's; the transaction should then be dropped.
    pub fn append(
        &self,
        tx: &Transaction<'_>,
        now: i64,
        recs: Vec<NewRecord>,
        force: bool,
    ) -> rusqlite::Result<Appended> {
        let mut tail = self.tail.clone();
        let mut entries = Vec::with_capacity(recs.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO records (seq, at, kind, site, class, device, subject, body, prev, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for r in recs {
                let e = Entry::seal(&tail, r);
                stmt.execute(params![
                    i64::try_from(e.seq).unwrap_or(i64::MAX),
                    e.at,
                    e.kind,
                    e.site,
                    e.class,
                    e.device,
                    e.subject,
                    e.body,
                    e.prev,
                    e.hash
                ])?;
                tail = e.tail();
                entries.push(e);
            }
        }
        let unsigned = tail.seq - self.last_checkpoint.0;
        let due =
            unsigned > 0 && (force || unsigned >= self.every_records || now - self.last_checkpoint.1 >= self.every_ms);
        let checkpoint = if due {
            let c = self.signer.checkpoint(&tail, now);
            tx.execute(
                "INSERT INTO checkpoints (seq, hash, at, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (seq) DO NOTHING",
                params![
                    i64::try_from(c.seq).unwrap_or(i64::MAX),
                    c.hash,
                    c.at,
                    c.public_key,
                    c.signature
                ],
            )?;
            Some(c)
        } else {
            None
        };
        Ok(Appended {
            tail,
            checkpoint,
            entries,
        })
    }

    /// Whether records wait for a checkpoint longer than `checkpoint_every`.
    #[must_use]
    pub fn checkpoint_due(&self, now: i64) -> bool {
        self.tail.seq > self.last_checkpoint.0 && now - self.last_checkpoint.1 >= self.every_ms
    }

    /// Takes what a committed append wrote as the new tail.
    pub fn adopt(&mut self, a: &Appended) {
        self.tail = a.tail.clone();
        if let Some(c) = &a.checkpoint {
            self.last_checkpoint = (c.seq, c.at);
        }
    }
}

/// Opens (creating once) the signing key.
///
/// # Errors
/// The key file's problem, naming it.
pub fn signer(path: &Path) -> Result<Signer, records::KeyError> {
    Signer::load_or_create(path)
}

/// A record query of `GET /api/v1/records`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// The device.
    pub device: Option<String>,
    /// The compounds in scope (all if `None`).
    pub sites: Option<Vec<String>>,
    /// The kind (`work_order_completed`).
    pub kind: Option<String>,
    /// The subject (`order:3`).
    pub subject: Option<String>,
    /// From (inclusive), ms.
    pub from: Option<i64>,
    /// To (exclusive), ms.
    pub to: Option<i64>,
    /// Only after this seq (paging).
    pub after: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

impl RecordQuery {
    /// Whether the query selects the whole chain (so links can be checked).
    #[must_use]
    pub fn is_whole_chain(&self) -> bool {
        self.device.is_none()
            && self.sites.is_none()
            && self.kind.is_none()
            && self.subject.is_none()
            && self.from.is_none()
            && self.to.is_none()
            && self.after.is_none()
    }

    /// The filter as text pairs, for an export's header.
    #[must_use]
    pub fn filter(&self) -> Vec<(String, String)> {
        let mut f = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                f.push((k.to_owned(), v));
            }
        };
        push("device", self.device.clone());
        push("sites", self.sites.as_ref().map(|s| s.join(",")));
        push("kind", self.kind.clone());
        push("subject", self.subject.clone());
        push("from", self.from.map(|v| v.to_string()));
        push("to", self.to.map(|v| v.to_string()));
        push("after", self.after.map(|v| v.to_string()));
        f
    }
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
        at: r.get(1)?,
        kind: r.get(2)?,
        site: r.get(3)?,
        class: r.get(4)?,
        device: r.get(5)?,
        subject: r.get(6)?,
        body: r.get(7)?,
        prev: r.get(8)?,
        hash: r.get(9)?,
    })
}

/// Hands the records a query selects, in stored order, to `f` as a lazy
/// iterator straight from SQLite (an export of years never sits in memory).
///
/// # Errors
/// SQLite's, preparing the query; errors of single rows are items.
pub fn scan<T>(
    conn: &Connection,
    q: &RecordQuery,
    f: impl FnOnce(&mut dyn Iterator<Item = rusqlite::Result<Entry>>) -> T,
) -> rusqlite::Result<T> {
    let sites = q.sites.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
    let mut stmt = conn.prepare(
        "SELECT seq, at, kind, site, class, device, subject, body, prev, hash FROM records
         WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR subject = ?3)
           AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5) AND (?6 IS NULL OR seq > ?6)
           AND (?7 IS NULL OR site IN (SELECT value FROM json_each(?7)))
         ORDER BY pos LIMIT ?8",
    )?;
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let after = q.after.map(|a| i64::try_from(a).unwrap_or(i64::MAX));
    let mut rows = stmt.query_map(
        params![q.device, q.kind, q.subject, q.from, q.to, after, sites, limit],
        entry,
    )?;
    Ok(f(&mut rows))
}

/// The records a query selects, in stored order, collected.
///
/// # Errors
/// SQLite's.
pub fn list(conn: &Connection, q: &RecordQuery) -> rusqlite::Result<Vec<Entry>> {
    scan(conn, q, |rows| rows.collect::<rusqlite::Result<Vec<_>>>())?
}

/// Every checkpoint, by seq.
///
/// # Errors
/// SQLite's.
pub fn checkpoints(conn: &Connection) -> rusqlite::Result<Vec<Checkpoint>> {
    let mut stmt = conn.prepare("SELECT seq, hash, at, public_key, signature FROM checkpoints ORDER BY seq")?;
    let rows = stmt.query_map([], |r| {
        Ok(Checkpoint {
            seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            hash: r.get(1)?,
            at: r.get(2)?,
            public_key: r.get(3)?,
            signature: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Verifies the whole chain in the database, streaming.
///
/// # Errors
/// SQLite's (a problem of the chain is in the answer, not an error).
pub fn verify(conn: &Connection, trusted_key: Option<&str>) -> rusqlite::Result<records::Verification> {
    verify_with_progress(conn, trusted_key, |_, _| {})
}

/// Records checked between two calls of a verification's `progress`.
pub const PROGRESS_EVERY: u64 = 5_000;

/// [`verify`], telling `progress(checked, total)` every [`PROGRESS_EVERY`]
/// records and at the end, so a person waiting sees it move.
///
/// # Errors
/// SQLite's.
pub fn verify_with_progress(
    conn: &Connection,
    trusted_key: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> rusqlite::Result<records::Verification> {
    let mut v = records::Verifier::new(checkpoints(conn)?, trusted_key);
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))?;
    let total = u64::try_from(total).unwrap_or(0);
    let all = RecordQuery {
        limit: usize::MAX,
        ..RecordQuery::default()
    };
    let mut checked = 0u64;
    scan(conn, &all, |rows| {
        for e in rows {
            v.push(&e?);
            checked += 1;
            if checked.is_multiple_of(PROGRESS_EVERY) {
                progress(checked, total.max(checked));
            }
        }
        Ok::<(), rusqlite::Error>(())
    })??;
    progress(checked, total.max(checked));
    Ok(v.finish())
}

/// The audited text of the configuration: the file as written with its
/// secrets redacted ([`crate::ops::redact`], `fingerprint` keyed by the
/// chain), then the built-in rule packs, so a change of either (an edit, an
/// upgrade that changes a pack) is a `config_changed` record with its diff.
#[must_use]
pub fn audited_config(path: Option<&Path>, text: &str, fingerprint: impl Fn(&str) -> String) -> String {
    let mut out = format!(
        "# configuration: {}\n{}",
        path.map_or_else(|| "(embedded defaults)".to_owned(), |p| p.display().to_string()),
        crate::ops::redact::redact(text, fingerprint)
    );
    if !out.ends_with('\n') {
        out.push('\n');
    }
    for (name, pack) in alerting::ruleset::PACKS {
        let _ = write!(out, "\n# built-in rule pack: {name}\n{pack}");
    }
    out
}

/// The record of a configuration change since the last start, if any: the
/// unified diff against the last recorded text (all of it on the first start).
///
/// # Errors
/// SQLite's.
pub fn config_change(
    conn: &Connection,
    now: i64,
    audited: &str,
    fingerprint: impl Fn(&str) -> String,
) -> rusqlite::Result<Option<NewRecord>> {
    let before: Option<String> = conn
        .query_row("SELECT text FROM config_state WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    // A text remembered before secrets were redacted is redacted too, so
    // the diff's old side never brings a secret into a new record.
    let before = crate::ops::redact::redact(&before.unwrap_or_default(), fingerprint);
    if before == audited {
        return Ok(None);
    }
    let diff = similar::TextDiff::from_lines(before.as_str(), audited)
        .unified_diff()
        .context_radius(2)
        .header("before", "after")
        .to_string();
    let kind = if before.is_empty() {
        "config_initial"
    } else {
        "config_changed"
    };
    let body = serde_json::json!({ "diff": diff, "lines": audited.lines().count() });
    Ok(Some(NewRecord {
        at: now,
        kind: kind.into(),
        site: String::new(),
        class: String::new(),
        device: String::new(),
        subject: "config".into(),
        body: body.to_string(),
    }))
}

/// Remembers the audited text, in the transaction that records its change.
///
/// # Errors
/// SQLite's.
pub fn save_config(tx: &Transaction<'_>, audited: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO config_state (id, text) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET text = excluded.text",
        params![audited],
    )
    .map(|_| ())
}

/// What a record is made of, its body still to be encoded: `(at, kind, site,
/// class, device, subject, body)`.
pub type Parts = (i64, String, String, String, String, String, serde_json::Result<String>);

/// A record from its parts; a body that did not encode is logged and left out.
#[must_use]
pub fn record((at, kind, site, class, device, subject, body): Parts) -> Option<NewRecord> {
    match body {
        Ok(body) => Some(NewRecord {
            at,
            kind,
            site,
            class,
            device,
            subject,
            body,
        }),
        Err(e) => {
            tracing::error!(error = %e, kind, "could not encode a record");
            None
        }
    }
}

/// The records of alerting effects: every alert transition but pending ones
/// (they live in memory), grouped notifications, and the engine's own
/// records (self-tests, replayed events). Work-order intents are recorded as
/// the orders they become.
#[must_use]
pub fn of_effects(effects: &[alerting::Effect]) -> Vec<NewRecord> {
    use alerting::{Change, Effect, State};
    let mut out = Vec::new();
    for e in effects {
        let parts: Parts = match e {
            Effect::Alert(c) => {
                if matches!(c.change, Change::Pending | Change::Cancelled) || c.alert.state == State::Pending {
                    continue;
                }
                let a = &c.alert;
                let at = a.resolved_at.or(a.acked_at).or(a.fired_at).unwrap_or(a.since);
                (
                    at,
                    format!("alert_{}", crate::ops::alerts::change_name(c.change)),
                    a.site.clone(),
                    a.class.clone(),
                    a.device.clone(),
                    format!("alert:{}", a.id),
                    serde_json::to_string(c),
                )
            }
            Effect::Notify(n) => (
                n.at,
                "notification".to_owned(),
                n.site.clone(),
                String::new(),
                String::new(),
                String::new(),
                serde_json::to_string(n),
            ),
            Effect::WorkOrder(_) => continue,
            Effect::Record(r) => (
                r.at,
                r.kind.clone(),
                r.site.clone(),
                r.class.clone(),
                r.device.clone(),
                String::new(),
                serde_json::to_string(r),
            ),
        };
        out.extend(record(parts));
    }
    out
}

/// Writes an export of `q` to `w`: JSON with the checkpoints and the key,
/// or CSV.
///
/// # Errors
/// The store's or the writer's, as text.
pub fn export(
    s: &crate::store::Store,
    q: &RecordQuery,
    key: Option<&str>,
    csv: bool,
    w: &mut impl std::io::Write,
) -> Result<(), String> {
    let conn = s.conn();
    let checkpoints = if csv {
        Vec::new()
    } else {
        crate::ops::supervision::checkpoints(conn).map_err(|e| e.to_string())?
    };
    let meta = records::ExportMeta {
        exported_at: crate::app::run::now_ms(),
        public_key: key.map(str::to_owned),
        filter: q.filter(),
    };
    crate::ops::supervision::scan(conn, q, |rows| {
        if csv {
            records::write_csv(&mut *w, rows)
        } else {
            records::write_json(&mut *w, &meta, rows, &checkpoints)
        }
    })
    .map_err(|e| e.to_string())?
    .map(|_| ())
    .map_err(|e| e.to_string())
}
