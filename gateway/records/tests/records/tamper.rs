//! Verification: an untouched chain, and one test per kind of tampering,
//! with the position, seq and kind reported.

use records::{Entry, GENESIS, NewRecord, ProblemKind, Signer, Tail, Verification, Verifier, verify};

use crate::{chain, checkpoint_at, record, signer};

/// The problem's (position, seq, kind), or a panic showing the verification.
fn problem(v: &Verification) -> (u64, Option<u64>, ProblemKind) {
    assert!(!v.ok, "expected a problem: {v:?}");
    let p = v.problem.as_ref().unwrap();
    (p.position, p.seq, p.kind)
}

/// The problem's message.
fn message(v: &Verification) -> &str {
    &v.problem.as_ref().unwrap().message
}

/// Reseals `entries[from..]` so every hash and link is consistent again:
/// what someone with the database (but no key) can do.
fn reseal_from(entries: &mut [Entry], from: usize) {
    for i in from..entries.len() {
        let tail = if i == 0 { Tail::genesis() } else { entries[i - 1].tail() };
        let e = &entries[i];
        let r = NewRecord {
            at: e.at,
            kind: e.kind.clone(),
            site: e.site.clone(),
            class: e.class.clone(),
            device: e.device.clone(),
            subject: e.subject.clone(),
            body: e.body.clone(),
        };
        entries[i] = Entry::seal(&tail, r);
    }
}

#[test]
fn untouched_chain_verifies_with_figures() {
    let entries = chain(20);
    let cps = vec![
        checkpoint_at(&entries, 15),
        checkpoint_at(&entries, 5),
        checkpoint_at(&entries, 10),
    ];
    let key = signer().public_key_hex();
    let v = verify(&entries, cps, Some(&key));
    assert!(v.ok, "{v:?}");
    assert_eq!(v.count, 20);
    assert_eq!(v.head, entries[19].tail());
    assert!(v.links_checked);
    assert_eq!(v.checkpoints, 3);
    assert_eq!(v.last_checkpoint, Some(15));
    assert_eq!(v.unsealed, 5);
    assert_eq!(v.key.as_deref(), Some(key.as_str()));
    assert_eq!(v.problem, None);
}

#[test]
fn checkpoint_at_the_head_leaves_nothing_unsealed() {
    let entries = chain(7);
    let v = verify(&entries, vec![checkpoint_at(&entries, 7)], None);
    assert!(v.ok, "{v:?}");
    assert_eq!((v.checkpoints, v.last_checkpoint, v.unsealed), (1, Some(7), 0));
    assert_eq!(v.key, Some(signer().public_key_hex()), "the shared key is reported");
}

#[test]
fn no_checkpoints_means_everything_unsealed() {
    let entries = chain(4);
    let v = verify(&entries, Vec::new(), None);
    assert!(v.ok, "{v:?}");
    assert_eq!(
        (v.checkpoints, v.last_checkpoint, v.unsealed, v.key),
        (0, None, 4, None)
    );
}

#[test]
fn empty_chain_is_ok() {
    let v = verify([], Vec::new(), None);
    assert!(v.ok);
    assert_eq!(v.count, 0);
    assert_eq!(v.head, Tail::genesis());
    assert_eq!(v.unsealed, 0);
    // A checkpoint of the empty chain pins the genesis hash.
    let cp = signer().checkpoint(&Tail::genesis(), 1);
    let v = verify([], vec![cp], None);
    assert!(v.ok, "{v:?}");
    assert_eq!((v.checkpoints, v.last_checkpoint), (1, Some(0)));
    let wrong = signer().checkpoint(
        &Tail {
            seq: 0,
            hash: "ab".repeat(32),
        },
        1,
    );
    let v = verify(&chain(2), vec![wrong], None);
    assert_eq!(problem(&v), (0, Some(0), ProblemKind::BadCheckpoint));
    assert_eq!(v.count, 2, "rows are still counted");
}

#[test]
fn edited_body_is_found_at_its_position() {
    let mut entries = chain(10);
    entries[5].body = entries[5].body.replace("E006", "E007");
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (6, Some(6), ProblemKind::Edited));
    assert!(message(&v).contains("seq 6"), "{}", message(&v));
    assert_eq!(v.count, 10, "rows after the problem are still counted");
    assert_eq!(v.head, entries[9].tail());
}

#[test]
fn every_edited_field_is_found() {
    type Edit = (&'static str, fn(&mut Entry));
    let edits: [Edit; 10] = [
        ("seq", |e| e.seq += 100),
        ("at", |e| e.at += 1),
        ("kind", |e| e.kind.push('x')),
        ("site", |e| e.site = "wuhan-02".to_owned()),
        ("class", |e| e.class = "firepump".to_owned()),
        ("device", |e| e.device.truncate(3)),
        ("subject", |e| e.subject = "alert:99".to_owned()),
        ("body", |e| e.body.insert(1, ' ')),
        ("prev", |e| e.prev = "0".repeat(64)),
        ("hash", |e| e.hash = e.hash.to_uppercase()),
    ];
    for (field, edit) in edits {
        let mut entries = chain(6);
        edit(&mut entries[3]);
        let v = verify(&entries, Vec::new(), None);
        assert_eq!(
            problem(&v),
            (4, Some(entries[3].seq), ProblemKind::Edited),
            "field {field}"
        );
    }
}

#[test]
fn deleted_middle_row_is_missing() {
    let mut entries = chain(10);
    entries.remove(3); // seq 4
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (4, Some(4), ProblemKind::Missing));
    assert!(message(&v).contains("seq 4 is missing"), "{}", message(&v));
    assert!(message(&v).contains("seq 5 follows seq 3"), "{}", message(&v));

    let mut entries = chain(10);
    entries.drain(3..6); // seqs 4, 5, 6
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (4, Some(4), ProblemKind::Missing));
    assert!(message(&v).contains("seqs 4 to 6 are missing"), "{}", message(&v));

    // The first row deleted.
    let v = verify(&chain(3)[1..], Vec::new(), None);
    assert_eq!(problem(&v), (1, Some(1), ProblemKind::Missing));
}

#[test]
fn deleted_second_to_last_row_is_missing_even_at_the_end() {
    let mut entries = chain(5);
    entries.remove(3); // seq 4; seq 5 is the last row
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (4, Some(4), ProblemKind::Missing));
}

#[test]
fn swapped_rows_are_reordered() {
    let mut entries = chain(10);
    entries.swap(3, 4); // seq 5 now before seq 4
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (4, Some(5), ProblemKind::Reordered));
    assert!(message(&v).contains("seq 5 at position 4"), "{}", message(&v));

    // Far apart: seq 8 at position 3 (a jump), seq 3 later (back).
    let mut entries = chain(10);
    entries.swap(2, 7);
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (3, Some(8), ProblemKind::Reordered));

    // The last two.
    let mut entries = chain(6);
    entries.swap(4, 5);
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (5, Some(6), ProblemKind::Reordered));
}

#[test]
fn repeated_row_is_reordered() {
    let mut entries = chain(5);
    let dup = entries[2].clone();
    entries.insert(3, dup); // seq 3 twice
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (4, Some(3), ProblemKind::Reordered));
    assert!(
        message(&v).contains("seq 3 at position 4 comes after seq 3"),
        "{}",
        message(&v)
    );
}

#[test]
fn forged_row_with_its_own_hash_recomputed_is_a_bad_link() {
    // Replaced row 4 sealed onto a made-up tail: own hash fine, link wrong.
    let mut entries = chain(8);
    let mut forged = record(4);
    forged.body = "{\"code\":\"none\"}".to_owned();
    entries[3] = Entry::seal(
        &Tail {
            seq: 3,
            hash: "12".repeat(32),
        },
        forged.clone(),
    );
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (4, Some(4), ProblemKind::BadLink));
    assert!(message(&v).contains("seq 4 does not link to seq 3"), "{}", message(&v));

    // Sealed properly onto row 3: then row 5 no longer links.
    let mut entries = chain(8);
    entries[3] = Entry::seal(&entries[2].tail(), forged);
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (5, Some(5), ProblemKind::BadLink));

    // The first row must link to the genesis.
    let mut entries = chain(3);
    entries[0].prev = "ff".repeat(32);
    entries[0].hash = entries[0].computed_hash();
    let v = verify(&entries, Vec::new(), None);
    assert_eq!(problem(&v), (1, Some(1), ProblemKind::BadLink));
}

#[test]
fn rows_deleted_at_the_end_are_truncated_when_a_checkpoint_names_them() {
    let entries = chain(10);
    let cp = checkpoint_at(&entries, 10);
    let v = verify(&entries[..7], vec![checkpoint_at(&entries, 5), cp], None);
    assert_eq!(problem(&v), (8, Some(8), ProblemKind::Truncated));
    assert!(message(&v).contains("end at seq 7"), "{}", message(&v));
    assert!(message(&v).contains("names seq 10"), "{}", message(&v));
    assert_eq!((v.count, v.checkpoints, v.last_checkpoint), (7, 1, Some(5)));

    // Everything deleted.
    let v = verify([], vec![checkpoint_at(&entries, 3)], None);
    assert_eq!(problem(&v), (1, Some(1), ProblemKind::Truncated));
}

#[test]
fn a_forged_checkpoint_beyond_the_end_is_bad_not_truncated() {
    let entries = chain(10);
    let mut cp = checkpoint_at(&entries, 10);
    cp.seq = 12;
    let v = verify(&entries, vec![cp], None);
    assert_eq!(problem(&v), (11, Some(12), ProblemKind::BadCheckpoint));
}

#[test]
fn tail_deleted_after_the_last_checkpoint_is_not_detectable() {
    // The honest limit (docs/records.md): without a later anchor, a shorter
    // chain is a valid chain.
    let entries = chain(10);
    let v = verify(&entries[..8], vec![checkpoint_at(&entries, 6)], None);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.unsealed, 2);
}

#[test]
fn rewritten_and_resealed_chain_fails_at_the_next_checkpoint() {
    let mut entries = chain(12);
    let cps = vec![checkpoint_at(&entries, 3), checkpoint_at(&entries, 9)];
    entries[4].body = "{\"code\":\"nothing happened\"}".to_owned();
    reseal_from(&mut entries, 4);
    let v = verify(&entries, cps.clone(), None);
    assert_eq!(problem(&v), (9, Some(9), ProblemKind::BadCheckpoint));
    assert!(message(&v).contains("checkpoint at seq 9"), "{}", message(&v));
    assert_eq!((v.checkpoints, v.last_checkpoint), (1, Some(3)));

    // After the last checkpoint the same rewrite goes unnoticed (the limit).
    let mut entries = chain(12);
    entries[10].body = "{}".to_owned();
    reseal_from(&mut entries, 10);
    assert!(verify(&entries, cps, None).ok);
}

/// A named change to a checkpoint.
type Tamper = (&'static str, fn(&mut records::Checkpoint));

#[test]
fn bad_signatures_are_bad_checkpoints() {
    let entries = chain(6);
    let good = checkpoint_at(&entries, 4);
    let tampers: [Tamper; 4] = [
        ("signature byte", |c| {
            let flipped = if c.signature.starts_with('0') { '1' } else { '0' };
            c.signature.replace_range(0..1, &flipped.to_string());
        }),
        ("signed time", |c| c.at += 1),
        ("signature not hex", |c| c.signature = "zz".repeat(64)),
        ("signature short", |c| c.signature.truncate(100)),
    ];
    for (what, tamper) in tampers {
        let mut cp = good.clone();
        tamper(&mut cp);
        let v = verify(&entries, vec![cp], None);
        assert_eq!(problem(&v), (4, Some(4), ProblemKind::BadCheckpoint), "{what}");
        assert!(message(&v).contains("seq 4"), "{what}: {}", message(&v));
    }
    // A validly signed checkpoint whose hash is not the entry's.
    let cp = signer().checkpoint(
        &Tail {
            seq: 4,
            hash: entries[2].hash.clone(),
        },
        9,
    );
    let v = verify(&entries, vec![cp], None);
    assert_eq!(problem(&v), (4, Some(4), ProblemKind::BadCheckpoint));
    assert!(message(&v).contains(&entries[3].hash), "{}", message(&v));
}

#[test]
fn another_key_is_untrusted() {
    let entries = chain(6);
    let other = Signer::from_seed([9; 32]);
    let foreign = other.checkpoint(&entries[4].tail(), 5);
    let trusted = signer().public_key_hex();

    let v = verify(
        &entries,
        vec![checkpoint_at(&entries, 2), foreign.clone()],
        Some(&trusted),
    );
    assert_eq!(problem(&v), (5, Some(5), ProblemKind::UntrustedKey));
    assert!(message(&v).contains(&other.public_key_hex()), "{}", message(&v));
    assert!(message(&v).contains("trusted key"), "{}", message(&v));

    // Without a trusted key, checkpoints must agree on one.
    let v = verify(&entries, vec![foreign.clone(), checkpoint_at(&entries, 2)], None);
    assert_eq!(problem(&v), (5, Some(5), ProblemKind::UntrustedKey));
    assert_eq!(
        v.key,
        Some(trusted.clone()),
        "the lowest-seq checkpoint's key is the one used"
    );

    // All by the other key: consistent, and the key is reported for the
    // caller to compare with the bureau's.
    let v = verify(&entries, vec![foreign], None);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.key, Some(other.public_key_hex()));

    // The trusted key may be given in upper case, with a newline.
    let v = verify(
        &entries,
        vec![checkpoint_at(&entries, 3)],
        Some(&format!("{}\n", trusted.to_uppercase())),
    );
    assert!(v.ok, "{v:?}");
}

#[test]
fn a_malformed_trusted_key_trusts_nothing() {
    let entries = chain(3);
    let v = verify(&entries, vec![checkpoint_at(&entries, 2)], Some("not a key"));
    assert_eq!(problem(&v), (2, Some(2), ProblemKind::UntrustedKey));
}

#[test]
fn streaming_equals_the_convenience() {
    let mut entries = chain(30);
    let cps = vec![checkpoint_at(&entries, 10), checkpoint_at(&entries, 20)];
    for damaged in [false, true] {
        if damaged {
            entries.remove(14);
        }
        let mut s = Verifier::new(cps.clone(), None);
        for e in &entries {
            s.push(e);
        }
        assert_eq!(s.finish(), verify(&entries, cps.clone(), None));
    }
}

#[test]
fn filtered_rows_check_own_hashes_order_and_checkpoints() {
    let entries = chain(12);
    let key = signer().public_key_hex();
    let cps = vec![
        checkpoint_at(&entries, 4),
        checkpoint_at(&entries, 7),
        checkpoint_at(&entries, 12),
    ];
    let even: Vec<Entry> = entries.iter().filter(|e| e.seq % 2 == 0).cloned().collect();
    let run = |rows: &[Entry], cps: Vec<records::Checkpoint>| {
        let mut v = Verifier::filtered(cps, Some(&key));
        for e in rows {
            v.push(e);
        }
        v.finish()
    };
    let v = run(&even, cps.clone());
    assert!(v.ok, "{v:?}");
    assert!(!v.links_checked);
    assert_eq!(
        (v.count, v.checkpoints, v.last_checkpoint, v.unsealed),
        (6, 3, Some(12), 0)
    );
    // The same rows as a full chain are missing rows.
    assert_eq!(problem(&verify(&even, cps.clone(), Some(&key))).2, ProblemKind::Missing);

    let mut edited = even.clone();
    edited[2].body.push(' ');
    assert_eq!(problem(&run(&edited, cps.clone())), (3, Some(6), ProblemKind::Edited));

    let mut swapped = even.clone();
    swapped.swap(1, 2);
    assert_eq!(
        problem(&run(&swapped, cps.clone())),
        (3, Some(4), ProblemKind::Reordered)
    );

    // A checkpoint at a seq that is present still has its hash compared.
    let lying = signer().checkpoint(
        &Tail {
            seq: 4,
            hash: entries[4].hash.clone(),
        },
        1,
    );
    assert_eq!(
        problem(&run(&even, vec![lying])),
        (2, Some(4), ProblemKind::BadCheckpoint)
    );
    // One at an absent seq only has its signature checked.
    let mut bad = checkpoint_at(&entries, 7);
    bad.at += 1;
    assert_eq!(
        problem(&run(&even, vec![bad])),
        (4, Some(7), ProblemKind::BadCheckpoint)
    );
    // Truncation cannot be judged on a selection.
    let v = run(&even[..3], cps);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.unsealed, 0);
}

#[test]
fn verification_json_is_the_api_body() {
    let entries = chain(3);
    let cp = checkpoint_at(&entries, 2);
    let v = verify(&entries, vec![cp], None);
    let key = signer().public_key_hex();
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        serde_json::json!({
            "ok": true, "count": 3, "head": {"seq": 3, "hash": entries[2].hash},
            "links_checked": true, "checkpoints": 1, "last_checkpoint": 2, "unsealed": 1,
            "key": key, "problem": null,
        })
    );
    let mut entries = entries;
    entries.remove(1);
    let v = verify(&entries, Vec::new(), None);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["key"], serde_json::Value::Null);
    assert_eq!(json["last_checkpoint"], serde_json::Value::Null);
    assert_eq!(
        json["problem"],
        serde_json::json!({"position": 2, "seq": 2, "kind": "missing", "message": "seq 2 is missing: seq 3 follows seq 1 at position 2"})
    );
    let back: Verification = serde_json::from_value(json).unwrap();
    assert_eq!(back, v);
    for (kind, name) in [
        (ProblemKind::Edited, "edited"),
        (ProblemKind::Missing, "missing"),
        (ProblemKind::Reordered, "reordered"),
        (ProblemKind::BadLink, "bad_link"),
        (ProblemKind::BadCheckpoint, "bad_checkpoint"),
        (ProblemKind::Truncated, "truncated"),
        (ProblemKind::UntrustedKey, "untrusted_key"),
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), name);
    }
}

#[test]
fn genesis_prev_constant_is_what_seq_one_links_to() {
    let e = &chain(1)[0];
    assert_eq!(e.prev, GENESIS);
    let mut bad = e.clone();
    bad.prev = String::new();
    bad.hash = bad.computed_hash();
    assert_eq!(
        problem(&verify([&bad], Vec::new(), None)),
        (1, Some(1), ProblemKind::BadLink)
    );
}
