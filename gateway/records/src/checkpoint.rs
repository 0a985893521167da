//! Signed checkpoints and the gateway's signing key.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::Tail;

/// A signed statement "the chain up to `seq` has head hash `hash`".
///
/// The hash chain alone shows edits inside the chain, but whoever holds the
/// database can rewrite it from some row on and reseal every later hash, or
/// drop rows at the end. A checkpoint handed to the bureau pins the chain as it
/// was: an export can then be checked by a third party without the database,
/// and a rewritten or truncated stretch before the checkpoint shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The seq of the entry the checkpoint pins (0: the empty chain).
    pub seq: u64,
    /// That entry's hash ([`GENESIS`](crate::GENESIS) for seq 0).
    pub hash: String,
    /// When it was signed, milliseconds since the Unix epoch.
    pub at: i64,
    /// The signer's ed25519 public key, lowercase hex (32 bytes).
    pub public_key: String,
    /// The ed25519 signature of [`Checkpoint::message`], lowercase hex (64 bytes).
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed: the ASCII line
    /// `fm-records/1 checkpoint <seq> <hash> <at>` (no newline), so a third
    /// party can rebuild it and check the signature with any ed25519 tool.
    pub fn message(&self) -> String {
        message(self.seq, &self.hash, self.at)
    }

    /// Whether `signature` is a valid ed25519 signature of [`Checkpoint::message`]
    /// by `public_key` (strict verification: no malleable or weak-key forms).
    /// Malformed hex counts as invalid, with the reason.
    ///
    /// # Errors
    /// A sentence saying what is wrong (bad key, bad signature encoding, or
    /// a signature that does not verify).
    pub fn check_signature(&self) -> Result<(), String> {
        let key: [u8; 32] = decode_fixed(&self.public_key)
            .ok_or_else(|| format!("public key {:?} is not 64 hex characters", self.public_key))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| format!("public key {} is not an ed25519 key", self.public_key))?;
        let sig: [u8; 64] = decode_fixed(&self.signature).ok_or("signature is not 128 hex characters")?;
        key.verify_strict(self.message().as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| "signature does not verify".to_owned())
    }
}

/// The signed message for a checkpoint (see [`Checkpoint::message`]).
fn message(seq: u64, hash: &str, at: i64) -> String {
    format!("fm-records/1 checkpoint {seq} {hash} {at}")
}

/// Decodes exactly `N` bytes of hex (either case), or `None`.
fn decode_fixed<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Why the signing key could not be loaded or created. Every variant names
/// the path, because the operator's fix is always about that file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file exists but could not be read.
    #[error("cannot read record signing key {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The key file (or its directory) could not be created or written.
    #[error("cannot create record signing key {}: {source}", path.display())]
    Create {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The key file does not hold a 32-byte hex seed.
    #[error("record signing key {} is malformed: {reason}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// The OS would not give randomness for a new key.
    #[error("no OS randomness for a new record signing key {}: {reason}", path.display())]
    Random {
        /// The key file that was to be created.
        path: PathBuf,
        /// What `getrandom` said.
        reason: String,
    },
}

/// The gateway's checkpoint signing key (ed25519).
///
/// One key per gateway, kept in a file beside the database: the bureau is
/// given its public key once and checks every later checkpoint against it.
/// `Debug` shows only the public key, so the secret never reaches a log.
pub struct Signer {
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the hex seed (32 bytes as 64 hex characters; surrounding
    /// whitespace, such as a trailing newline, is ignored) from `path`, or,
    /// when the file does not exist, creates it from fresh OS randomness with
    /// mode 0600 (parent directories too), so a first start needs no setup and
    /// the secret is readable by the gateway's user only.
    ///
    /// The file is created with `create_new`: if two processes race, one
    /// writes and the other reads what was written, never a second key.
    ///
    /// # Errors
    /// [`KeyError`], naming the path: unreadable, malformed, not creatable, or
    /// no randomness.
    pub fn load_or_create(path: &Path) -> Result<Signer, KeyError> {
        match fs::read_to_string(path) {
            Ok(text) => return Self::parse(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let create = |source| KeyError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(create)?;
        }
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut file = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f,
            // Another process created it first: use its key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                return Self::parse(path, &text);
            }
            Err(source) => return Err(create(source)),
        };
        let mut text = hex::encode(seed);
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(create)?;
        Ok(Signer::from_seed(seed))
    }

    /// Parses a key file's text.
    fn parse(path: &Path, text: &str) -> Result<Signer, KeyError> {
        let text = text.trim();
        decode_fixed::<32>(text)
            .map(Signer::from_seed)
            .ok_or_else(|| KeyError::Malformed {
                path: path.to_owned(),
                reason: format!(
                    "expected 64 hex characters (a 32-byte seed), found {} characters",
                    text.len()
                ),
            })
    }

    /// A signer from a known seed: for tests and for keys kept elsewhere.
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A short keyed fingerprint of `data` (16 hex characters): the same
    /// value gives the same fingerprint on this gateway, so a record can show
    /// that a secret changed without showing the secret, and nobody without
    /// the key can test guesses against it (a plain hash of a short password
    /// could be). The key is derived one way from the signing key, under a
    /// `context` (what is fingerprinted), so it reveals nothing of it.
    #[must_use]
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> String {
        use hmac::Mac as _;
        use sha2::Digest as _;
        let mut derive = sha2::Sha256::new();
        derive.update(b"fm-records fingerprint v1\0");
        derive.update(self.key.to_bytes());
        derive.update(context.as_bytes());
        let key = derive.finalize();
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else {
            // HMAC takes a key of any length: not reached.
            return String::new();
        };
        mac.update(data);
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// The public key, lowercase hex (32 bytes): what the bureau is given to
    /// check checkpoints with.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs "the chain up to `tail.seq` has head `tail.hash`" at time `at`
    /// (ms since epoch). The gateway stores the checkpoint and hands it, or an
    /// export containing it, to the bureau.
    pub fn checkpoint(&self, tail: &Tail, at: i64) -> Checkpoint {
        let msg = message(tail.seq, &tail.hash, at);
        let sig = self.key.sign(msg.as_bytes());
        Checkpoint {
            seq: tail.seq,
            hash: tail.hash.clone(),
            at,
            public_key: self.public_key_hex(),
            signature: hex::encode(sig.to_bytes()),
        }
    }
}
