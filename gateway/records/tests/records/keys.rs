//! The signing key file and checkpoint signatures.

use std::os::unix::fs::PermissionsExt;

use records::{KeyError, Signer, Tail};

use crate::{chain, signer};

#[test]
fn creates_a_private_key_file_with_parent_dirs_and_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/records.key");
    let s1 = Signer::load_or_create(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
    assert!(text.ends_with('\n'));
    assert!(hex::decode(text.trim()).is_ok());
    let s2 = Signer::load_or_create(&path).unwrap();
    assert_eq!(s1.public_key_hex(), s2.public_key_hex(), "the same key, not a new one");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "an existing file is not rewritten"
    );

    let other = Signer::load_or_create(&dir.path().join("other.key")).unwrap();
    assert_ne!(other.public_key_hex(), s1.public_key_hex(), "fresh randomness per key");
}

#[test]
fn reads_a_seed_written_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(&path, format!("{}\n", "07".repeat(32))).unwrap();
    assert_eq!(
        Signer::load_or_create(&path).unwrap().public_key_hex(),
        signer().public_key_hex()
    );
    std::fs::write(&path, "07".repeat(32).to_uppercase()).unwrap();
    assert_eq!(
        Signer::load_or_create(&path).unwrap().public_key_hex(),
        signer().public_key_hex()
    );
}

#[test]
fn rfc8032_test_vector_public_key() {
    // RFC 8032, section 7.1, TEST 1.
    let seed: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        Signer::from_seed(seed).public_key_hex(),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
}

#[test]
fn key_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "abcd\n").unwrap();
    let err = Signer::load_or_create(&bad).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains(&bad.display().to_string()), "{err}");
    assert!(err.to_string().contains("64 hex"), "{err}");

    std::fs::write(&bad, "zz".repeat(32)).unwrap();
    assert!(matches!(Signer::load_or_create(&bad), Err(KeyError::Malformed { .. })));

    // A directory where the file should be.
    let err = Signer::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");

    // A parent that is a file.
    let under_file = bad.join("records.key");
    let err = Signer::load_or_create(&under_file).unwrap_err();
    assert!(
        matches!(err, KeyError::Read { .. } | KeyError::Create { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&under_file.display().to_string()), "{err}");
}

#[test]
fn debug_does_not_show_the_secret() {
    let text = format!("{:?}", signer());
    assert!(!text.contains(&"07".repeat(32)), "{text}");
    assert!(text.contains(&signer().public_key_hex()), "{text}");
}

#[test]
fn checkpoint_signs_the_documented_message() {
    let entries = chain(3);
    let cp = signer().checkpoint(&entries[2].tail(), 1_767_300_000_123);
    assert_eq!(
        (cp.seq, cp.hash.as_str(), cp.at),
        (3, entries[2].hash.as_str(), 1_767_300_000_123)
    );
    assert_eq!(
        cp.message(),
        format!("fm-records/1 checkpoint 3 {} 1767300000123", entries[2].hash)
    );
    assert_eq!(cp.public_key, signer().public_key_hex());
    assert_eq!(cp.public_key.len(), 64);
    assert_eq!(cp.signature.len(), 128);
    assert_eq!(cp.check_signature(), Ok(()));
    // ed25519 is deterministic: the same statement, the same signature.
    assert_eq!(signer().checkpoint(&entries[2].tail(), 1_767_300_000_123), cp);

    let mut c = cp.clone();
    c.seq = 2;
    assert!(c.check_signature().is_err());
    let mut c = cp.clone();
    c.hash = entries[1].hash.clone();
    assert!(c.check_signature().is_err());
    let mut c = cp.clone();
    c.public_key = Signer::from_seed([1; 32]).public_key_hex();
    assert!(c.check_signature().is_err());
    let mut c = cp;
    c.public_key = "00".repeat(31);
    assert!(c.check_signature().unwrap_err().contains("64 hex"));
}

#[test]
fn checkpoint_serializes_with_the_documented_field_names() {
    let cp = signer().checkpoint(&Tail::genesis(), 5);
    let v = serde_json::to_value(&cp).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "seq": 0, "hash": records::GENESIS, "at": 5,
            "public_key": signer().public_key_hex(), "signature": cp.signature,
        })
    );
    assert_eq!(serde_json::from_value::<records::Checkpoint>(v).unwrap(), cp);
}

/// A fingerprint is stable for one key and one value, differs when either
/// changes (or the context does), and is short hex that contains nothing of
/// the value.
#[test]
fn fingerprints_are_keyed_and_stable() {
    let a = records::Signer::from_seed([7; 32]);
    let b = records::Signer::from_seed([8; 32]);
    let f = a.fingerprint("config", b"hunter2");
    assert_eq!(f.len(), 16);
    assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(f, a.fingerprint("config", b"hunter2"), "stable");
    assert_ne!(f, a.fingerprint("config", b"hunter3"), "the value changed");
    assert_ne!(f, b.fingerprint("config", b"hunter2"), "another gateway's key");
    assert_ne!(f, a.fingerprint("other", b"hunter2"), "another context");
}
