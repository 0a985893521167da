//! The record chain's one integration-test binary: the hash encoding, every
//! kind of tampering, keys and checkpoints, exports in both formats, a third
//! party's verification without Rust (Python, OpenSSL), the documentation's
//! worked example, and properties over random chains.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod docs;
mod entry;
mod export;
mod keys;
mod props;
mod tamper;
mod third_party;

use records::{Checkpoint, Entry, NewRecord, Signer, Tail};

/// A deterministic signer for tests.
fn signer() -> Signer {
    Signer::from_seed([7; 32])
}

/// Record number `i` (1-based): varied devices, subjects and JSON bodies.
fn record(i: u64) -> NewRecord {
    let device = if i.is_multiple_of(2) {
        "31104201002019000123"
    } else {
        "31104201002019000456"
    };
    NewRecord {
        at: 1_767_225_600_000 + i64::try_from(i).unwrap() * 1000,
        kind: if i.is_multiple_of(3) {
            "order.opened"
        } else {
            "alert.fired"
        }
        .to_owned(),
        site: "wuhan-01".to_owned(),
        class: "elevator".to_owned(),
        device: device.to_owned(),
        subject: format!("alert:{i}"),
        body: format!("{{\"code\":\"E{i:03}\",\"note\":\"困人 {i}\"}}"),
    }
}

/// A chain of `n` entries.
fn chain(n: u64) -> Vec<Entry> {
    let mut tail = Tail::genesis();
    (1..=n)
        .map(|i| {
            let e = Entry::seal(&tail, record(i));
            tail = e.tail();
            e
        })
        .collect()
}

/// A checkpoint by [`signer`] at the entry with `seq` (1-based) of `entries`.
fn checkpoint_at(entries: &[Entry], seq: u64) -> Checkpoint {
    let e = &entries[usize::try_from(seq).unwrap() - 1];
    signer().checkpoint(&e.tail(), 1_767_300_000_000 + i64::try_from(seq).unwrap())
}
