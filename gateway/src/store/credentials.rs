//! Device credentials in SQLite: who may connect to the embedded broker
//! (the `device_credentials` table, made by [`crate::store::schema`]).
//!
//! A row per provisioned device: its Argon2id password hash (never the
//! password) and its command key (the gateway must sign with it, so it is
//! kept as the record chain's signing key is: in the 0700 data directory).
//! Revoking keeps the row with its time, so `gateway devices list` shows
//! who was revoked when; provisioning again replaces it with new secrets.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::identity::Identity;

/// One device's stored credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// Whose.
    pub identity: Identity,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The command key.
    pub cmd_key: [u8; 32],
    /// Provisioned at (ms).
    pub created: i64,
    /// Revoked at (ms), if it was.
    pub revoked: Option<i64>,
    /// The SHA-256 (hex) of a client certificate the device may log in with
    /// on the TLS listener instead of its password.
    pub certificate: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("identity", &self.identity)
            .field("created", &self.created)
            .field("revoked", &self.revoked)
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

/// A change to the credentials, written in the pipeline's transaction with its record.
#[derive(Clone, Debug)]
pub enum Change {
    /// Provisioned (or provisioned again: new secrets).
    Put(Credential),
    /// Revoked at this time.
    Revoke {
        /// The compound.
        site: String,
        /// The device.
        device: String,
        /// When.
        at: i64,
    },
}

/// Writes `changes`.
///
/// # Errors
/// SQLite's.
pub fn write(tx: &Transaction<'_>, changes: &[Change]) -> rusqlite::Result<()> {
    for c in changes {
        match c {
            Change::Put(c) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO device_credentials
                     (site, device, class, password_hash, cmd_key, created, revoked, certificate)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
                )?
                .execute(params![
                    c.identity.site,
                    c.identity.device,
                    c.identity.class,
                    c.password_hash,
                    &c.cmd_key[..],
                    c.created,
                    c.certificate
                ])?;
            }
            Change::Revoke { site, device, at } => {
                tx.prepare_cached(
                    "UPDATE device_credentials SET revoked = ?3 WHERE site = ?1 AND device = ?2 AND revoked IS NULL",
                )?
                .execute(params![site, device, at])?;
            }
        }
    }
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Credential> {
    let key: Vec<u8> = r.get(4)?;
    Ok(Credential {
        identity: Identity {
            site: r.get(0)?,
            device: r.get(1)?,
            class: r.get(2)?,
        },
        password_hash: r.get(3)?,
        cmd_key: key.try_into().unwrap_or([0; 32]),
        created: r.get(5)?,
        revoked: r.get(6)?,
        certificate: r.get(7)?,
    })
}

const COLUMNS: &str = "site, device, class, password_hash, cmd_key, created, revoked, certificate";

/// The credential of `site`/`device`, revoked or not.
///
/// # Errors
/// SQLite's.
pub fn get(conn: &Connection, site: &str, device: &str) -> rusqlite::Result<Option<Credential>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM device_credentials WHERE site = ?1 AND device = ?2"
    ))?
    .query_row(params![site, device], row)
    .optional()
}

/// The live (not revoked) credential whose client certificate has this SHA-256 (hex).
///
/// # Errors
/// SQLite's.
pub fn by_certificate(conn: &Connection, sha256_hex: &str) -> rusqlite::Result<Option<Credential>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM device_credentials WHERE certificate = ?1 AND revoked IS NULL"
    ))?
    .query_row(params![sha256_hex], row)
    .optional()
}

/// Every credential, by site and device.
///
/// # Errors
/// SQLite's.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Credential>> {
    conn.prepare(&format!(
        "SELECT {COLUMNS} FROM device_credentials ORDER BY site, device"
    ))?
    .query_map([], row)?
    .collect()
}
