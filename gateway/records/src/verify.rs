//! Streaming verification of a chain (or of a filtered export's rows)
//! against its checkpoints.

use serde::{Deserialize, Serialize};

use crate::{Checkpoint, Entry, GENESIS, Tail};

/// What kind of tampering (or damage) a verification found. Serialized in
/// `snake_case` (`"bad_link"`), the names the API and `docs/records.md` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A row's hash does not match its fields: some field (body, time, seq,
    /// prev, ...) or the hash itself was changed after sealing.
    Edited,
    /// The seq jumps forward: rows were deleted from the middle.
    Missing,
    /// The seq goes back, repeats, or jumps and then comes back: rows were
    /// swapped, moved or duplicated.
    Reordered,
    /// The seq is contiguous but `prev` is not the previous row's hash: a row
    /// was forged or replaced (its own hash recomputed) without resealing the
    /// rest, or the chain was spliced.
    BadLink,
    /// A checkpoint's hash differs from the entry at its seq (the chain was
    /// rewritten and resealed), or its signature does not verify.
    BadCheckpoint,
    /// A valid checkpoint names a seq beyond the last row: rows were deleted
    /// from the end.
    Truncated,
    /// A checkpoint is signed by another key than the trusted one (or, with no
    /// trusted key, than the other checkpoints).
    UntrustedKey,
}

/// The first problem a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// 1-based position of the row, in the order fed, at which the problem
    /// shows; `count + 1` when it shows only after the last row (a truncated
    /// tail, a bad checkpoint beyond it); 0 for a checkpoint at seq 0 (the
    /// empty chain), which is checked before any row. Positions, not seqs,
    /// because a tampered seq cannot be trusted to locate the row.
    pub position: u64,
    /// The seq the problem is about: the edited, misplaced or badly linked
    /// row's stored seq, the first missing seq, or the checkpoint's seq.
    /// `None` is reserved for problems tied to no seq (none today).
    pub seq: Option<u64>,
    /// What was found.
    pub kind: ProblemKind,
    /// A sentence for a person, naming the seq.
    pub message: String,
}

/// The result of a verification; this is also the JSON body of
/// `GET /api/v1/records/verify`, hence the short field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// No problem found.
    pub ok: bool,
    /// Rows fed (all of them, also after a problem stopped the checks).
    pub count: u64,
    /// The seq and hash of the last row fed, as stored; the genesis tail
    /// (`{seq: 0, hash: GENESIS}`) when none was.
    pub head: Tail,
    /// Whether seq continuity, links and truncation were checked: true for a
    /// full chain, false for a filtered export, where only each row's own
    /// hash, the seq order and the checkpoints can be checked.
    pub links_checked: bool,
    /// Checkpoints verified (key, signature, and hash against the row at their
    /// seq where that row was fed).
    pub checkpoints: u64,
    /// The highest seq of a verified checkpoint, if any.
    pub last_checkpoint: Option<u64>,
    /// Rows after the last verified checkpoint: rows a key holder could still
    /// rewrite or drop undetectably (see `docs/records.md`). All rows when no
    /// checkpoint was verified.
    pub unsealed: u64,
    /// The public key (hex) checkpoints were verified against: the trusted key
    /// if one was given, else the key of the lowest-seq checkpoint; `None`
    /// with neither.
    pub key: Option<String>,
    /// The first problem, if any (checks stop there).
    pub problem: Option<Problem>,
}

/// A forward seq jump waiting for the next row to tell a deletion (the next
/// row continues upward) from a reordering (it comes back).
#[derive(Debug)]
struct Jump {
    position: u64,
    expected: u64,
    found: u64,
    after: u64,
}

/// Streaming verification: feed rows one at a time in stored order with
/// [`Verifier::push`], then [`Verifier::finish`].
///
/// It holds one row's worth of state (the previous tail) plus the
/// checkpoints, never the rows, so the gateway can stream years of rows
/// straight from SQLite.
#[derive(Debug)]
pub struct Verifier {
    links: bool,
    checkpoints: Vec<Checkpoint>,
    next_cp: usize,
    key: Option<String>,
    /// How messages name `key`: "the trusted key", "the export's key", ...
    key_name: &'static str,
    count: u64,
    head: Tail,
    good: Tail,
    pending: Option<Jump>,
    verified: u64,
    last_checkpoint: Option<u64>,
    unsealed: u64,
    problem: Option<Problem>,
}

impl Verifier {
    /// A verifier for a full chain, from seq 1.
    ///
    /// `checkpoints` may come in any order. With `trusted_key` (hex), every
    /// checkpoint must be signed by it; with `None`, they must all share one
    /// key, which is then reported, so the caller can compare it with the key
    /// the bureau holds.
    pub fn new(checkpoints: Vec<Checkpoint>, trusted_key: Option<&str>) -> Verifier {
        Self::build(true, checkpoints, trusted_key.map(|k| (k, "the trusted key")))
    }

    /// A verifier for a filtered selection of rows (one device, one site, one
    /// time range): rows are still in stored order but not contiguous, so
    /// only each row's own hash, increasing seqs, and the checkpoints
    /// (signature, and hash where the row at their seq is present) are
    /// checked; the result says `links_checked: false`.
    pub fn filtered(checkpoints: Vec<Checkpoint>, trusted_key: Option<&str>) -> Verifier {
        Self::build(false, checkpoints, trusted_key.map(|k| (k, "the trusted key")))
    }

    /// `key`: the expected key and how messages call it; `None`: whatever
    /// key the lowest-seq checkpoint has, shared by all.
    pub(crate) fn build(links: bool, mut checkpoints: Vec<Checkpoint>, key: Option<(&str, &'static str)>) -> Verifier {
        checkpoints.sort_by_key(|c| c.seq);
        let (key, key_name) = match key {
            Some((k, name)) => (Some(k.trim().to_ascii_lowercase()), name),
            None => (
                checkpoints.first().map(|c| c.public_key.to_ascii_lowercase()),
                "the other checkpoints' key",
            ),
        };
        let mut v = Verifier {
            links,
            checkpoints,
            next_cp: 0,
            key,
            key_name,
            count: 0,
            head: Tail::genesis(),
            good: Tail::genesis(),
            pending: None,
            verified: 0,
            last_checkpoint: None,
            unsealed: 0,
            problem: None,
        };
        // Checkpoints of the empty chain pin the genesis hash.
        v.settle_checkpoints(0, Some(GENESIS), 0);
        v
    }

    /// Feeds the next row, in stored order. After the first problem, rows are
    /// only counted.
    pub fn push(&mut self, e: &Entry) {
        self.count += 1;
        self.unsealed += 1;
        self.head = e.tail();
        let position = self.count;
        if self.problem.is_some() {
            return;
        }
        if let Some(j) = self.pending.take() {
            self.resolve_jump(&j, Some(e.seq));
            return;
        }
        if e.computed_hash() != e.hash {
            return self.fail(
                position,
                e.seq,
                ProblemKind::Edited,
                format!(
                    "the entry at position {position} (seq {}) does not match its hash: it was edited after sealing",
                    e.seq
                ),
            );
        }
        if e.seq <= self.good.seq {
            let after = self.good.seq;
            return self.fail(
                position,
                e.seq,
                ProblemKind::Reordered,
                format!(
                    "seq {} at position {position} comes after seq {after}: rows are out of order or repeated",
                    e.seq
                ),
            );
        }
        if self.links {
            let expected = self.good.seq + 1;
            if e.seq != expected {
                self.pending = Some(Jump {
                    position,
                    expected,
                    found: e.seq,
                    after: self.good.seq,
                });
                return;
            }
            if e.prev != self.good.hash {
                return self.fail(
                    position,
                    e.seq,
                    ProblemKind::BadLink,
                    format!(
                        "seq {} does not link to seq {}: its prev is {} but seq {} has hash {}",
                        e.seq, self.good.seq, e.prev, self.good.seq, self.good.hash
                    ),
                );
            }
        }
        self.good = e.tail();
        self.settle_checkpoints(e.seq, Some(&e.hash), position);
    }

    /// Checks every checkpoint up to `seq`: against `hash` for those at
    /// exactly `seq`, by key and signature only for earlier ones (which only
    /// a filtered selection leaves unmatched).
    fn settle_checkpoints(&mut self, seq: u64, hash: Option<&str>, position: u64) {
        while let Some(cp) = self.checkpoints.get(self.next_cp)
            && cp.seq <= seq
        {
            let row_hash = if cp.seq == seq { hash } else { None };
            if let Err((kind, message)) = self.check_checkpoint(cp, row_hash) {
                let cp_seq = cp.seq;
                return self.fail(position, cp_seq, kind, message);
            }
            self.verified += 1;
            self.last_checkpoint = Some(cp.seq);
            // Rows come in increasing seq: only the current one can lie beyond it.
            self.unsealed = u64::from(self.count > 0 && self.head.seq > cp.seq);
            self.next_cp += 1;
        }
    }

    /// Key, signature, then (when the row is known) the hash.
    fn check_checkpoint(&self, cp: &Checkpoint, row_hash: Option<&str>) -> Result<(), (ProblemKind, String)> {
        let signer = cp.public_key.to_ascii_lowercase();
        if let Some(key) = &self.key
            && *key != signer
        {
            return Err((
                ProblemKind::UntrustedKey,
                format!(
                    "the checkpoint at seq {} is signed by key {signer}, not by {} {key}",
                    cp.seq, self.key_name
                ),
            ));
        }
        cp.check_signature().map_err(|why| {
            (
                ProblemKind::BadCheckpoint,
                format!("the checkpoint at seq {} is not validly signed: {why}", cp.seq),
            )
        })?;
        if let Some(h) = row_hash
            && h != cp.hash
        {
            return Err((
                ProblemKind::BadCheckpoint,
                format!(
                    "the checkpoint at seq {} names hash {} but the entry at seq {} has hash {h}: \
                     the chain was rewritten up to there",
                    cp.seq, cp.hash, cp.seq
                ),
            ));
        }
        Ok(())
    }

    fn resolve_jump(&mut self, j: &Jump, next: Option<u64>) {
        let (position, expected, found, after) = (j.position, j.expected, j.found, j.after);
        match next {
            Some(n) if n < found => self.fail(
                position,
                found,
                ProblemKind::Reordered,
                format!(
                    "seq {found} at position {position} comes where seq {expected} belongs and seq {n} follows it: \
                     rows are out of order"
                ),
            ),
            _ => {
                let which = if found - expected == 1 {
                    format!("seq {expected} is missing")
                } else {
                    format!("seqs {expected} to {} are missing", found - 1)
                };
                self.fail(
                    position,
                    expected,
                    ProblemKind::Missing,
                    format!("{which}: seq {found} follows seq {after} at position {position}"),
                );
            }
        }
    }

    fn fail(&mut self, position: u64, seq: u64, kind: ProblemKind, message: String) {
        self.problem = Some(Problem {
            position,
            seq: Some(seq),
            kind,
            message,
        });
    }

    /// Ends the stream: resolves a pending jump, checks checkpoints beyond the
    /// last row (truncation for a full chain), and reports.
    pub fn finish(mut self) -> Verification {
        if self.problem.is_none() {
            if let Some(j) = self.pending.take() {
                self.resolve_jump(&j, None);
            } else if self.links {
                self.check_truncation();
            } else {
                self.settle_checkpoints(u64::MAX, None, self.count + 1);
            }
        }
        Verification {
            ok: self.problem.is_none(),
            count: self.count,
            head: self.head,
            links_checked: self.links,
            checkpoints: self.verified,
            last_checkpoint: self.last_checkpoint,
            unsealed: self.unsealed,
            key: self.key,
            problem: self.problem,
        }
    }

    /// A full chain's remaining checkpoints all name seqs beyond the last
    /// row: a validly signed one proves rows were dropped from the end.
    fn check_truncation(&mut self) {
        let Some(cp) = self.checkpoints.get(self.next_cp) else {
            return;
        };
        let position = self.count + 1;
        if let Err((kind, message)) = self.check_checkpoint(cp, None) {
            let seq = cp.seq;
            return self.fail(position, seq, kind, message);
        }
        let first_missing = self.good.seq + 1;
        let message = format!(
            "the records end at seq {} but the checkpoint signed at {} names seq {}: seqs {first_missing} to {} \
             were removed from the end (truncated)",
            self.good.seq, cp.at, cp.seq, cp.seq
        );
        self.fail(position, first_missing, ProblemKind::Truncated, message);
    }
}

/// Verifies a whole chain held in memory (or any iterator over it): a
/// convenience over [`Verifier`].
pub fn verify<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    checkpoints: Vec<Checkpoint>,
    trusted_key: Option<&str>,
) -> Verification {
    let mut v = Verifier::new(checkpoints, trusted_key);
    for e in entries {
        v.push(e);
    }
    v.finish()
}
