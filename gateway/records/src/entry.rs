//! Entries and their hash: what one sealed record is, and how it links to the
//! one before it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first entry (seq 1): 64 `'0'` characters, the hash of
/// "nothing before". A fixed, documented value rather than an empty string, so
/// every `prev` has the same shape and a third party needs no special case.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the caller records, before it is sealed into the chain.
///
/// The gateway fills it from an alert change, a work-order step or an operator
/// action; this crate does not interpret any field, it only fixes them into the
/// chain. `body` is JSON text stored and hashed byte for byte as given, so the
/// caller's own serialization is what a regulator later reads, and no
/// re-encoding (key order, number formats) can change a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// When it happened, milliseconds since the Unix epoch (gateway clock).
    pub at: i64,
    /// What kind of record this is (`alert.fired`, `order.closed`, ...).
    pub kind: String,
    /// The compound (site) the record is about.
    pub site: String,
    /// The device class (`elevator`, `firepump`, `charger`), or empty.
    pub class: String,
    /// The device id, or empty for records not about one device.
    pub device: String,
    /// What the record is about within the gateway, e.g. `alert:12`,
    /// `order:3`, or empty: lets an auditor follow one alert or order.
    pub subject: String,
    /// JSON text with the details, hashed as is (byte-exact).
    pub body: String,
}

/// One sealed record, as stored, exported and verified.
///
/// Every field but `hash` goes into the hash (see [`Entry::computed_hash`]),
/// `prev` included, so changing any of them, or the order of entries, shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, 1-based and contiguous: a gap means a deleted row.
    pub seq: u64,
    /// When it happened, milliseconds since the Unix epoch.
    pub at: i64,
    /// See [`NewRecord::kind`].
    pub kind: String,
    /// See [`NewRecord::site`].
    pub site: String,
    /// See [`NewRecord::class`].
    pub class: String,
    /// See [`NewRecord::device`].
    pub device: String,
    /// See [`NewRecord::subject`].
    pub subject: String,
    /// See [`NewRecord::body`]: JSON text, byte-exact.
    pub body: String,
    /// The `hash` of the entry before (lowercase hex SHA-256), [`GENESIS`] for
    /// seq 1: the link that makes deleting or reordering rows detectable.
    pub prev: String,
    /// This entry's own hash (lowercase hex SHA-256 of the other fields).
    pub hash: String,
}

/// The end of a chain: what the next entry links to.
///
/// The gateway keeps it (or reads it back from its last row) so sealing the
/// next record needs no scan; a [`Checkpoint`](crate::Checkpoint) signs one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// The seq of the last entry, 0 for an empty chain.
    pub seq: u64,
    /// The hash of the last entry, [`GENESIS`] for an empty chain.
    pub hash: String,
}

impl Tail {
    /// The tail of an empty chain, `{seq: 0, hash: GENESIS}`: what the first
    /// entry links to.
    pub fn genesis() -> Tail {
        Tail {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl Default for Tail {
    /// An empty chain's tail (see [`Tail::genesis`]).
    fn default() -> Self {
        Tail::genesis()
    }
}

impl Entry {
    /// Seals `r` as the entry after `tail`: seq `tail.seq + 1`, prev
    /// `tail.hash`, and its hash computed. Pure: the caller stores the entry
    /// and keeps [`Entry::tail`] as the new tail, in one transaction.
    ///
    /// # Panics
    /// Only if `tail.seq` is `u64::MAX` (a chain cannot grow past it).
    pub fn seal(tail: &Tail, r: NewRecord) -> Entry {
        let mut e = Entry {
            seq: tail.seq.checked_add(1).expect("record chain seq overflow"),
            at: r.at,
            kind: r.kind,
            site: r.site,
            class: r.class,
            device: r.device,
            subject: r.subject,
            body: r.body,
            prev: tail.hash.clone(),
            hash: String::new(),
        };
        e.hash = e.computed_hash();
        e
    }

    /// The hash these fields should have, recomputed: lowercase hex SHA-256
    /// over the length-prefixed encoding of seq, at, kind, site, class, device,
    /// subject, body and prev (each `<byte length>:<bytes>\n`, numbers in
    /// decimal). Length prefixes make the encoding unambiguous: no two
    /// different entries encode to the same bytes, however their fields
    /// contain `:` or newlines. `docs/records.md` documents it byte for byte.
    pub fn computed_hash(&self) -> String {
        let mut h = Sha256::new();
        let seq = self.seq.to_string();
        let at = self.at.to_string();
        for field in [
            seq.as_str(),
            at.as_str(),
            &self.kind,
            &self.site,
            &self.class,
            &self.device,
            &self.subject,
            &self.body,
            &self.prev,
        ] {
            h.update(field.len().to_string().as_bytes());
            h.update(b":");
            h.update(field.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// The tail this entry makes when it is the last one.
    pub fn tail(&self) -> Tail {
        Tail {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}
