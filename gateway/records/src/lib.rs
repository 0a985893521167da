//! The supervision record chain (监督): the tamper-evident history of alerts,
//! work orders and operator actions that the bureau audits.
//!
//! Hubei's rules want supervision records kept for at least four years and
//! never pruned, and a regulator must be able to trust an export without
//! trusting the property company's database. So every record is sealed into a
//! hash chain ([`Entry::seal`]): each entry's SHA-256 covers its fields and the
//! previous entry's hash, so an edited, deleted, swapped or forged row shows
//! ([`Verifier`]). Signed [`Checkpoint`]s pin the head of the chain at a
//! moment; handed to the bureau, they make a rewritten or truncated chain
//! show too, and let a third party verify an export ([`write_json`],
//! [`read_json`], [`Export::verify`], or `verify.py` without Rust).
//!
//! This crate is pure: no database, no async, no clock. The gateway stores the
//! entries and checkpoints in SQLite, keeps the [`Tail`], and calls in here to
//! seal, sign, verify (streaming, row by row) and export. The encodings are
//! documented byte for byte in `docs/records.md`.

mod checkpoint;
mod entry;
mod export;
mod verify;

pub use checkpoint::{Checkpoint, KeyError, Signer};
pub use entry::{Entry, GENESIS, NewRecord, Tail};
pub use export::{CSV_HEADER, Export, ExportError, ExportMeta, FORMAT, read_csv, read_json, write_csv, write_json};
pub use verify::{Problem, ProblemKind, Verification, Verifier, verify};
