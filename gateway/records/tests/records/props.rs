//! Properties over random chains: any single-byte edit of any field of any
//! row is found at that row; an untouched chain always verifies (and
//! survives both export formats); deletions and swaps are always found.

use std::convert::Infallible;

use proptest::prelude::*;
use records::{Entry, ExportMeta, NewRecord, ProblemKind, Tail, read_csv, read_json, verify, write_csv, write_json};

use crate::signer;

/// Field text with the characters the encoding and CSV care about.
fn text() -> impl Strategy<Value = String> {
    "[ -~\n\r:,\"中门]{0,12}"
}

fn new_record() -> impl Strategy<Value = NewRecord> {
    (any::<i64>(), text(), text(), text(), text(), text(), text()).prop_map(
        |(at, kind, site, class, device, subject, body)| NewRecord {
            at,
            kind,
            site,
            class,
            device,
            subject,
            body,
        },
    )
}

fn sealed(records: Vec<NewRecord>) -> Vec<Entry> {
    let mut tail = Tail::genesis();
    records
        .into_iter()
        .map(|r| {
            let e = Entry::seal(&tail, r);
            tail = e.tail();
            e
        })
        .collect()
}

/// A single-byte edit of a text field: replace, insert or delete one ASCII
/// byte (a whole character where a multi-byte one is replaced or deleted,
/// so the field stays UTF-8).
fn edit_text(s: &mut String, op: u8, at: usize, byte: u8) {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let c = char::from(byte);
    match op {
        0 if !chars.is_empty() => {
            let (i, old) = chars[at % chars.len()];
            let new = if old == c { if c == 'a' { 'b' } else { 'a' } } else { c };
            s.replace_range(i..i + old.len_utf8(), &new.to_string());
        }
        1 if !chars.is_empty() => {
            let (i, old) = chars[at % chars.len()];
            s.replace_range(i..i + old.len_utf8(), "");
        }
        _ => {
            let i = chars.get(at % (chars.len() + 1)).map_or(s.len(), |(i, _)| *i);
            s.insert(i, c);
        }
    }
}

/// Applies edit number `field` (0..10 over seq, at, kind, site, class,
/// device, subject, body, prev, hash) to `e`.
fn edit(e: &mut Entry, field: usize, op: u8, at: usize, byte: u8) {
    // A nonzero byte xored into one of a number's eight bytes.
    let flip = u64::from(byte | 1) << (8 * (at % 8));
    match field {
        0 => e.seq ^= flip,
        1 => e.at ^= i64::from_ne_bytes(flip.to_ne_bytes()),
        2 => edit_text(&mut e.kind, op, at, byte),
        3 => edit_text(&mut e.site, op, at, byte),
        4 => edit_text(&mut e.class, op, at, byte),
        5 => edit_text(&mut e.device, op, at, byte),
        6 => edit_text(&mut e.subject, op, at, byte),
        7 => edit_text(&mut e.body, op, at, byte),
        8 => edit_text(&mut e.prev, op, at, byte),
        _ => edit_text(&mut e.hash, op, at, byte),
    }
}

proptest! {
    #[test]
    fn any_single_edit_is_found_at_its_row(
        records in prop::collection::vec(new_record(), 1..8),
        row in any::<prop::sample::Index>(),
        field in 0usize..10,
        op in 0u8..3,
        at in any::<usize>(),
        byte in 0x20u8..0x7f,
    ) {
        let mut entries = sealed(records);
        let i = row.index(entries.len());
        let before = entries[i].clone();
        edit(&mut entries[i], field, op, at, byte);
        prop_assert_ne!(&entries[i], &before);
        let v = verify(&entries, Vec::new(), None);
        let p = v.problem.expect("an edit must be found");
        prop_assert_eq!(p.kind, ProblemKind::Edited);
        prop_assert_eq!(p.position, i as u64 + 1);
        prop_assert_eq!(v.count, entries.len() as u64);
    }

    #[test]
    fn deletions_and_swaps_are_always_found(
        records in prop::collection::vec(new_record(), 2..10),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let entries = sealed(records);
        let n = entries.len();
        let head = signer().checkpoint(&entries[n - 1].tail(), 0);

        let i = a.index(n);
        let mut deleted = entries.clone();
        deleted.remove(i);
        let p = verify(&deleted, vec![head.clone()], None).problem.expect("a deletion must be found");
        if i == n - 1 {
            prop_assert_eq!((p.kind, p.position, p.seq), (ProblemKind::Truncated, n as u64, Some(n as u64)));
        } else {
            prop_assert_eq!((p.kind, p.position, p.seq), (ProblemKind::Missing, i as u64 + 1, Some(i as u64 + 1)));
        }

        let (x, y) = (a.index(n), b.index(n));
        prop_assume!(x != y);
        let (x, y) = (x.min(y), x.max(y));
        let mut swapped = entries;
        swapped.swap(x, y);
        let p = verify(&swapped, vec![head], None).problem.expect("a swap must be found");
        prop_assert_eq!((p.kind, p.position, p.seq), (ProblemKind::Reordered, x as u64 + 1, Some(y as u64 + 1)));
    }
}

proptest! {
    // Signatures are slow in unoptimized builds: fewer cases here.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn untouched_chain_always_verifies_and_survives_export(
        records in prop::collection::vec(new_record(), 0..10),
        marks in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        let entries = sealed(records);
        let s = signer();
        let mut at: Vec<usize> = if entries.is_empty() { Vec::new() } else { marks.iter().map(|m| m.index(entries.len())).collect() };
        at.sort_unstable();
        at.dedup();
        let cps: Vec<_> = at.iter().map(|&i| s.checkpoint(&entries[i].tail(), entries[i].at)).collect();
        let v = verify(&entries, cps.clone(), Some(&s.public_key_hex()));
        prop_assert!(v.ok, "{:?}", v);
        prop_assert_eq!(v.count, entries.len() as u64);
        prop_assert_eq!(v.checkpoints, cps.len() as u64);
        let last = cps.iter().map(|c| c.seq).max();
        prop_assert_eq!(v.last_checkpoint, last);
        prop_assert_eq!(v.unsealed, entries.len() as u64 - last.unwrap_or(0));

        let meta = ExportMeta { exported_at: 1, public_key: Some(s.public_key_hex()), filter: Vec::new() };
        let mut json = Vec::new();
        write_json(&mut json, &meta, entries.iter().cloned().map(Ok::<_, Infallible>), &cps).unwrap();
        let export = read_json(json.as_slice()).unwrap();
        prop_assert_eq!(&export.records, &entries);
        prop_assert_eq!(export.verify(None), v.clone());

        let mut csv = Vec::new();
        write_csv(&mut csv, entries.iter().cloned().map(Ok::<_, Infallible>)).unwrap();
        let back = read_csv(csv.as_slice()).unwrap();
        prop_assert_eq!(&back, &entries);
        prop_assert_eq!(verify(&back, cps, None).ok, true);
    }
}
