//! Sealing, the hash encoding, and the serialized shape of entries.

use records::{Entry, GENESIS, NewRecord, Tail};
use sha2::{Digest, Sha256};

use crate::{chain, record};

#[test]
fn genesis_is_64_zeros_and_the_empty_tail() {
    assert_eq!(GENESIS.len(), 64);
    assert!(GENESIS.bytes().all(|b| b == b'0'));
    assert_eq!(
        Tail::genesis(),
        Tail {
            seq: 0,
            hash: GENESIS.to_owned()
        }
    );
    assert_eq!(Tail::default(), Tail::genesis());
}

#[test]
fn seal_numbers_links_and_hashes() {
    let entries = chain(5);
    assert_eq!(entries[0].seq, 1);
    assert_eq!(entries[0].prev, GENESIS);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev, pair[0].hash);
    }
    for e in &entries {
        assert_eq!(e.hash, e.computed_hash());
        assert_eq!(e.hash.len(), 64);
        assert!(
            e.hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{}",
            e.hash
        );
        assert_eq!(
            e.tail(),
            Tail {
                seq: e.seq,
                hash: e.hash.clone()
            }
        );
    }
    let r = record(3);
    assert_eq!(entries[2].body, r.body, "the body is stored as given");
}

#[test]
fn hash_is_sha256_over_length_prefixed_fields() {
    let e = Entry::seal(
        &Tail {
            seq: 41,
            hash: "ab".repeat(32),
        },
        NewRecord {
            at: -5,
            kind: "k".to_owned(),
            site: "s1".to_owned(),
            class: String::new(),
            device: "设备".to_owned(),
            subject: "order:3".to_owned(),
            body: "{\"a\": 1}".to_owned(),
        },
    );
    assert_eq!(e.seq, 42);
    let preimage = format!(
        "2:42\n2:-5\n1:k\n2:s1\n0:\n6:设备\n7:order:3\n8:{{\"a\": 1}}\n64:{}\n",
        "ab".repeat(32)
    );
    let expected = hex::encode(Sha256::digest(preimage.as_bytes()));
    assert_eq!(e.hash, expected);
    assert_eq!(e.computed_hash(), expected);
}

#[test]
fn moving_bytes_between_fields_changes_the_hash() {
    let base = Entry::seal(&Tail::genesis(), record(1));
    let mut a = base.clone();
    a.kind = "ab".to_owned();
    a.site = "c".to_owned();
    let mut b = base.clone();
    b.kind = "a".to_owned();
    b.site = "bc".to_owned();
    assert_ne!(a.computed_hash(), b.computed_hash());
    // A field that contains what looks like the next field's encoding.
    let mut c = base.clone();
    c.subject = String::new();
    c.body = format!("{}\n{}:{}", base.subject.len(), base.subject, base.body);
    let mut d = base.clone();
    d.subject = format!("{}\n{}:{}", base.subject, base.body.len(), base.body);
    d.body = String::new();
    assert_ne!(c.computed_hash(), base.computed_hash());
    assert_ne!(d.computed_hash(), base.computed_hash());
    assert_ne!(c.computed_hash(), d.computed_hash());
}

#[test]
fn entry_serializes_with_the_documented_field_names() {
    let e = Entry::seal(&Tail::genesis(), record(1));
    let v = serde_json::to_value(&e).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = [
        "seq", "at", "kind", "site", "class", "device", "subject", "body", "prev", "hash",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    // The text keeps the declared order (what exports show).
    let text = serde_json::to_string(&e).unwrap();
    assert!(text.starts_with("{\"seq\":1,\"at\":"), "{text}");
    assert!(
        text.contains(&format!("\"prev\":\"{GENESIS}\",\"hash\":\"{}\"}}", e.hash)),
        "{text}"
    );
    let back: Entry = serde_json::from_value(v).unwrap();
    assert_eq!(back, e);
    assert_eq!(back.computed_hash(), e.hash);
}

#[test]
fn body_is_hashed_byte_exact() {
    let mut r = record(1);
    r.body = "{\"b\":1,\"a\":2}".to_owned();
    let e1 = Entry::seal(&Tail::genesis(), r.clone());
    r.body = "{\"a\":2,\"b\":1}".to_owned();
    let e2 = Entry::seal(&Tail::genesis(), r.clone());
    r.body = "{\"b\": 1,\"a\":2}".to_owned();
    let e3 = Entry::seal(&Tail::genesis(), r);
    assert_ne!(e1.hash, e2.hash, "same JSON value, other key order: other bytes");
    assert_ne!(e1.hash, e3.hash, "one space more: other bytes");
}
