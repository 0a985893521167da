//! Exports for the bureau: one streamed JSON document (records and
//! checkpoints, verifiable on its own) and CSV for spreadsheets, both
//! readable back for re-verification.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Checkpoint, Entry, Verification, Verifier};

/// The `format` value of a JSON export: names the encoding (hash, signature
/// message, fields) so a future change can be told apart.
pub const FORMAT: &str = "fm-records/1";

/// The CSV header, in column order. `at_utc` is derived from `at` for people
/// reading the file; it is not hashed and is ignored on reading.
pub const CSV_HEADER: [&str; 11] = [
    "seq", "at", "at_utc", "kind", "site", "class", "device", "subject", "body", "prev", "hash",
];

/// What an export says about itself, besides its records and checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportMeta {
    /// When the export was made, ms since epoch.
    pub exported_at: i64,
    /// The gateway's signing key (hex), so the reader can compare it with the
    /// key the bureau was given.
    pub public_key: Option<String>,
    /// The selection, as the request gave it (`device`, `from`, ...); empty
    /// for the whole chain. A non-empty filter tells the reader the rows are
    /// not contiguous, so only their own hashes can be checked.
    pub filter: Vec<(String, String)>,
}

/// Why an export could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The record source (the gateway's database cursor) failed mid-export;
    /// the output is incomplete and must not be handed out.
    #[error("reading the records to export failed: {0}")]
    Source(#[source] Box<dyn StdError + Send + Sync + 'static>),
    /// Writing or reading the stream failed.
    #[error("export I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The JSON could not be written or is not a valid export.
    #[error("export JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The CSV could not be written or is not a valid export.
    #[error("export CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A JSON document of another format (or version).
    #[error("not an {FORMAT} export: its format is {0:?}")]
    Format(String),
    /// A CSV file whose header is not [`CSV_HEADER`].
    #[error("not a records CSV export: the header is {found:?}, expected {expected:?}", expected = CSV_HEADER.join(","))]
    Header {
        /// The header found, comma-joined.
        found: String,
    },
}

/// A JSON export read back: what a third party verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// Always [`FORMAT`] (checked by [`read_json`]).
    pub format: String,
    /// When it was made, ms since epoch.
    pub exported_at: i64,
    /// The key the gateway says it signs with (not trusted by itself: see
    /// [`Export::verify`]).
    #[serde(default)]
    pub public_key: Option<String>,
    /// The selection; empty for the whole chain.
    #[serde(default, with = "filter_map")]
    pub filter: Vec<(String, String)>,
    /// The rows, in stored order.
    pub records: Vec<Entry>,
    /// The checkpoints included (all of the gateway's, normally).
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
}

impl Export {
    /// Verifies the export on its own, without the database.
    ///
    /// An unfiltered export is checked as a full chain; a filtered one (a
    /// non-empty `filter`) row by row, with `links_checked: false`.
    /// `trusted_key` is the key the bureau holds; without it, checkpoints must
    /// be signed by the export's own `public_key` (if present), which only
    /// shows consistency, since whoever forges an export can change that too.
    pub fn verify(&self, trusted_key: Option<&str>) -> Verification {
        let key = match (trusted_key, &self.public_key) {
            (Some(k), _) => Some((k, "the trusted key")),
            (None, Some(k)) => Some((k.as_str(), "the export's key")),
            (None, None) => None,
        };
        let mut v = Verifier::build(self.filter.is_empty(), self.checkpoints.clone(), key);
        for e in &self.records {
            v.push(e);
        }
        v.finish()
    }
}

/// Streams a JSON export to `w`: one object
/// `{"format","exported_at","public_key","filter","records","checkpoints"}`
/// with one record per line, written as `entries` yields them, so an export of
/// years of rows never sits in memory. Returns the number of records written.
///
/// # Errors
/// [`ExportError::Source`] with the source's own error if `entries` yields
/// one (the output is then incomplete), or the write error.
pub fn write_json<W, E>(
    w: W,
    meta: &ExportMeta,
    entries: impl Iterator<Item = Result<Entry, E>>,
    checkpoints: &[Checkpoint],
) -> Result<u64, ExportError>
where
    W: Write,
    E: StdError + Send + Sync + 'static,
{
    let mut w = BufWriter::new(w);
    w.write_all(b"{\"format\":")?;
    serde_json::to_writer(&mut w, FORMAT)?;
    write!(w, ",\"exported_at\":{},\"public_key\":", meta.exported_at)?;
    serde_json::to_writer(&mut w, &meta.public_key)?;
    w.write_all(b",\"filter\":{")?;
    for (i, (k, v)) in meta.filter.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut w, k)?;
        w.write_all(b":")?;
        serde_json::to_writer(&mut w, v)?;
    }
    w.write_all(b"},\"records\":[")?;
    let mut n = 0u64;
    for item in entries {
        let e = item.map_err(|e| ExportError::Source(Box::new(e)))?;
        w.write_all(if n == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut w, &e)?;
        n += 1;
    }
    w.write_all(b"\n],\"checkpoints\":[")?;
    for (i, c) in checkpoints.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut w, c)?;
    }
    w.write_all(b"\n]}\n")?;
    w.flush()?;
    Ok(n)
}

/// Reads a JSON export (all of it, into memory: this is the reader's side).
///
/// # Errors
/// Invalid JSON or fields ([`ExportError::Json`], with line and column), or
/// another `format` ([`ExportError::Format`]).
pub fn read_json<R: Read>(r: R) -> Result<Export, ExportError> {
    let export: Export = serde_json::from_reader(BufReader::new(r))?;
    if export.format != FORMAT {
        return Err(ExportError::Format(export.format));
    }
    Ok(export)
}

/// Streams a CSV export (header [`CSV_HEADER`], one row per entry) to `w`,
/// for spreadsheets. Fields are written verbatim (quoted where needed), so
/// [`read_csv`] gets the exact bytes back and the rows re-verify. Returns the
/// number of rows written.
///
/// `at_utc` is RFC 3339 UTC with milliseconds, empty for times before 1970 or
/// after 9999 (which RFC 3339 cannot show); `at` is what counts.
///
/// # Errors
/// As [`write_json`].
pub fn write_csv<W, E>(w: W, entries: impl Iterator<Item = Result<Entry, E>>) -> Result<u64, ExportError>
where
    W: Write,
    E: StdError + Send + Sync + 'static,
{
    let mut out = csv::Writer::from_writer(w);
    out.write_record(CSV_HEADER)?;
    let mut n = 0u64;
    for item in entries {
        let e = item.map_err(|e| ExportError::Source(Box::new(e)))?;
        out.write_record([
            e.seq.to_string().as_str(),
            &e.at.to_string(),
            &rfc3339_millis(e.at),
            &e.kind,
            &e.site,
            &e.class,
            &e.device,
            &e.subject,
            &e.body,
            &e.prev,
            &e.hash,
        ])?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// `at` (ms since epoch) as RFC 3339 UTC with milliseconds, or empty outside
/// 1970..=9999.
fn rfc3339_millis(at: i64) -> String {
    // The first millisecond of the year 10000.
    const END: i64 = 253_402_300_800_000;
    match u64::try_from(at) {
        Ok(ms) if at < END => humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        _ => String::new(),
    }
}

/// One CSV row as read; `at_utc` is derived and ignored.
#[derive(Deserialize)]
struct CsvRow {
    seq: u64,
    at: i64,
    kind: String,
    site: String,
    class: String,
    device: String,
    subject: String,
    body: String,
    prev: String,
    hash: String,
}

/// Reads a CSV export back into entries, byte for byte, so it can be
/// verified like the JSON (with checkpoints obtained separately).
///
/// # Errors
/// A header other than [`CSV_HEADER`], or a malformed row (the error names
/// its line).
pub fn read_csv<R: Read>(r: R) -> Result<Vec<Entry>, ExportError> {
    let mut rdr = csv::Reader::from_reader(r);
    let header = rdr.headers()?;
    if header.iter().ne(CSV_HEADER) {
        return Err(ExportError::Header {
            found: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    rdr.deserialize::<CsvRow>()
        .map(|row| {
            let r = row?;
            Ok(Entry {
                seq: r.seq,
                at: r.at,
                kind: r.kind,
                site: r.site,
                class: r.class,
                device: r.device,
                subject: r.subject,
                body: r.body,
                prev: r.prev,
                hash: r.hash,
            })
        })
        .collect()
}

/// The filter as a JSON object whose order is kept (a `Vec` of pairs, not a
/// map, so what the request said is what the export shows).
mod filter_map {
    use super::{Deserializer, MapAccess, Serializer, Visitor, fmt};
    use serde::ser::SerializeMap;

    pub(super) fn serialize<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(pairs.len()))?;
        for (k, v) in pairs {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    out.push(pair);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Pairs)
    }
}
