//! `gateway backup` and `gateway restore`: a copy of the store taken while
//! the gateway runs, and putting one back into an empty data directory.
//!
//! The backup is SQLite's online backup API (`rusqlite`'s `backup` feature,
//! no extra crate) over a read-only connection of its own, so it never takes
//! the data directory's lock and never writes the live database. It copies
//! every page in one step: in WAL mode that is one read transaction, a
//! consistent snapshot that the running gateway keeps committing beside.
//! Copied in smaller steps, every commit of the gateway (another process)
//! would restart the copy, and under steady ingest it would never finish.
//!
//! Restore is a command rather than "copy the file in", because copying by
//! hand is how stores get lost: over a running gateway's database, beside a
//! stale `gateway.sqlite-wal` that SQLite would then replay into the wrong
//! file, owned by root where the service runs as `fm-gateway`, or with a key
//! the chain was not signed with. `gateway restore` takes the data
//! directory's lock (so the gateway must be stopped), only fills a directory
//! that holds no store, checks the copy's integrity and its record chain
//! against the signing key before the file takes the store's name, and gives
//! the files the data directory's owner.

use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

/// Why a backup or restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Refused: nothing was written (exit 2).
    #[error("{0}")]
    Refused(String),
    /// A file or SQLite failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl BackupError {
    /// The command's exit code: 2 refused, 1 failed.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::Refused(_) => 2,
            BackupError::Failed(_) => 1,
        }
    }
}

/// What a backup or restore wrote, printed as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The file written.
    pub file: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Supervision records in it.
    pub records: u64,
    /// Alerts in it.
    pub alerts: u64,
    /// Work orders in it.
    pub work_orders: u64,
    /// Signed checkpoints verified (restore only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<u64>,
    /// How long it took.
    pub millis: u64,
}

fn failed(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> BackupError + '_ {
    move |e| BackupError::Failed(format!("{}: {e}", path.display()))
}

/// Copies `data_dir`'s store to `to` while a gateway may be running on it.
/// The file is written beside `to` as `….partial`, checked, made 0600 and
/// only then renamed to `to` (replacing an older backup there): a failed
/// backup never leaves a file that looks like a good one.
///
/// The signing key (`records.key`) is not in the file: it never changes, so
/// it is copied once, to somewhere safer than the backups (docs/operations.md).
///
/// # Errors
/// [`BackupError::Refused`] without a store in `data_dir`; otherwise
/// [`BackupError::Failed`] naming the file.
pub fn backup(data_dir: &Path, to: &Path) -> Result<Report, BackupError> {
    let started = Instant::now();
    let source = data_dir.join("gateway.sqlite");
    if !source.is_file() {
        return Err(BackupError::Refused(format!(
            "{}: no gateway.sqlite here",
            data_dir.display()
        )));
    }
    let partial = partial_of(to);
    let _ = std::fs::remove_file(&partial);
    let result = copy_checked(&source, &partial).and_then(|()| {
        sync_file(&partial)?;
        std::fs::rename(&partial, to).map_err(|e| failed(to)(&e))?;
        sync_parent(to);
        Ok(())
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let conn = open_read_only(to)?;
    report(&conn, to, None, started)
}

/// Restores a backup into `data_dir`, which must hold no store and have no
/// gateway running. A backup from an older version is migrated on the way
/// in (`store::schema`); one from a newer version is refused. `key` is the copy of the signing key kept apart from
/// the backups; without it, `data_dir/records.key` must already be there.
/// The chain must verify against that key, or nothing is restored.
///
/// # Errors
/// [`BackupError::Refused`]: a gateway runs, a store is already there, no
/// key, or the copy or its chain does not check out; [`BackupError::Failed`]
/// for a file or SQLite failure.
pub fn restore(from: &Path, data_dir: &Path, key: Option<&Path>) -> Result<Report, BackupError> {
    let started = Instant::now();
    if !from.is_file() {
        return Err(BackupError::Refused(format!("{}: no such file", from.display())));
    }
    let _lock = crate::store::DataDirLock::take(data_dir).map_err(BackupError::Refused)?;
    let target = data_dir.join("gateway.sqlite");
    for name in ["gateway.sqlite", "gateway.sqlite-wal", "gateway.sqlite-shm"] {
        if data_dir.join(name).exists() {
            return Err(BackupError::Refused(format!(
                "{}: holds a store already ({name}); restore into an empty data directory (move this one aside first)",
                data_dir.display()
            )));
        }
    }
    let here = data_dir.join("records.key");
    let signer = match (key, here.is_file()) {
        (Some(k), _) if !k.is_file() => {
            return Err(BackupError::Refused(format!("{}: no such key file", k.display())));
        }
        (Some(k), true) => {
            let (given, present) = (load_key(k)?, load_key(&here)?);
            if given.public_key_hex() != present.public_key_hex() {
                return Err(BackupError::Refused(format!(
                    "{} is not the key already in {}",
                    k.display(),
                    data_dir.display()
                )));
            }
            present
        }
        (Some(k), false) => load_key(k)?,
        (None, true) => load_key(&here)?,
        (None, false) => {
            return Err(BackupError::Refused(format!(
                "no signing key: give --key with the copy of records.key kept apart from the backups \
                 (a new key would not verify the chain's checkpoints), or put it in {} first",
                here.display()
            )));
        }
    };
    let partial = partial_of(&target);
    // Left by a restore that failed half-way (the lock is ours).
    let _ = std::fs::remove_file(&partial);
    let result = copy_checked(from, &partial).and_then(|()| {
        // An older backup is brought to this binary's schema now, so its
        // chain is read as the gateway will read it; a newer one is refused.
        let mut conn = Connection::open(&partial).map_err(|e| failed(&partial)(&e))?;
        crate::store::schema::migrate(&mut conn).map_err(|e| match e {
            e @ crate::store::schema::SchemaError::TooNew { .. } => {
                BackupError::Refused(format!("{}: {e}", from.display()))
            }
            e => failed(from)(&e),
        })?;
        drop(conn);
        let conn = open_read_only(&partial)?;
        let verified =
            crate::ops::supervision::verify(&conn, Some(&signer.public_key_hex())).map_err(|e| failed(from)(&e))?;
        if !verified.ok {
            let why = verified
                .problem
                .map_or_else(String::new, |p| format!(" at position {}: {}", p.position, p.message));
            return Err(BackupError::Refused(format!(
                "{}: the record chain does not verify with this key{why}",
                from.display()
            )));
        }
        drop(conn);
        Ok(verified.checkpoints)
    });
    let checkpoints = match result {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let (Some(k), false) = (key, here.is_file()) {
        let text = std::fs::read(k).map_err(|e| failed(k)(&e))?;
        write_private(&here, &text)?;
    }
    let owner = std::fs::metadata(data_dir).map_err(|e| failed(data_dir)(&e))?;
    let lock = data_dir.join("gateway.lock");
    for path in [&partial, &here, &lock] {
        if path.exists() {
            // Root restoring for the service's user: the files become the
            // data directory's owner's, as the gateway made them.
            std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).map_err(|e| failed(path)(&e))?;
        }
    }
    sync_file(&partial)?;
    std::fs::rename(&partial, &target).map_err(|e| failed(&target)(&e))?;
    sync_parent(&target);
    let conn = open_read_only(&target)?;
    report(&conn, &target, Some(checkpoints), started)
}

/// `FILE.partial`, beside it.
fn partial_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// A read-only connection: neither command ever writes the file it reads.
fn open_read_only(path: &Path) -> Result<Connection, BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| failed(path)(&e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| failed(path)(&e))?;
    Ok(conn)
}

/// Copies the database at `source` into a new file `dest` (mode 0600) with
/// the online backup API, makes the copy one self-contained file (rollback
/// journal, not WAL) and runs SQLite's integrity check on it.
fn copy_checked(source: &Path, dest: &Path) -> Result<(), BackupError> {
    let live = open_read_only(source)?;
    // Created 0600 before SQLite opens it: the copy holds device command keys.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| failed(dest)(&e))?;
    let mut copy_db = Connection::open(dest).map_err(|e| failed(dest)(&e))?;
    {
        use rusqlite::backup::StepResult;
        let copy = rusqlite::backup::Backup::new(&live, &mut copy_db).map_err(|e| failed(source)(&e))?;
        // All pages in one step (-1): one read transaction, one snapshot
        // (see the module's doc). Busy only while a checkpoint or recovery
        // holds the file: tried again for up to a minute.
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            match copy.step(-1).map_err(|e| failed(source)(&e))? {
                StepResult::Done => break,
                _ if Instant::now() > deadline => {
                    return Err(BackupError::Failed(format!("{}: busy for a minute", source.display())));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    drop(live);
    let mode: String = copy_db
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(|e| failed(dest)(&e))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(BackupError::Failed(format!(
            "{}: journal mode stayed {mode}",
            dest.display()
        )));
    }
    let check: String = copy_db
        .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
        .map_err(|e| failed(dest)(&e))?;
    if check != "ok" {
        return Err(BackupError::Refused(format!(
            "{}: the copy fails SQLite's integrity check: {check}",
            source.display()
        )));
    }
    copy_db.close().map_err(|(_, e)| failed(dest)(&e))?;
    // SQLite may have made it with the process umask after all.
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600)).map_err(|e| failed(dest)(&e))
}

fn load_key(path: &Path) -> Result<records::Signer, BackupError> {
    // Only ever read here (the path was checked to exist), never created.
    records::Signer::load_or_create(path).map_err(|e| BackupError::Refused(e.to_string()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| failed(path)(&e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| failed(path)(&e))
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| failed(path)(&e))
}

/// Makes a rename durable; best effort (some file systems refuse a directory fsync).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

fn report(conn: &Connection, file: &Path, checkpoints: Option<u64>, started: Instant) -> Result<Report, BackupError> {
    let count = |table: &str| -> Result<u64, BackupError> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| failed(file)(&e))
    };
    Ok(Report {
        file: file.to_owned(),
        bytes: std::fs::metadata(file).map_err(|e| failed(file)(&e))?.len(),
        records: count("records")?,
        alerts: count("alerts")?,
        work_orders: count("work_orders")?,
        checkpoints,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
