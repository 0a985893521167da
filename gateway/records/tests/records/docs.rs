//! `docs/records.md` stays true: its worked examples are recomputed here,
//! and it names every problem kind.

use std::fmt::Write as _;

use records::{Checkpoint, Entry, NewRecord, Tail};

use crate::signer;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/records.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fenced block right after the marker comment `<!-- test: NAME -->`.
fn block(doc: &str, name: &str) -> String {
    let marker = format!("<!-- test: {name} -->");
    let rest = &doc[doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/records.md"))..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

/// The documented example entry: the first row of a fresh chain.
fn example() -> Entry {
    Entry::seal(
        &Tail::genesis(),
        NewRecord {
            at: 1_767_225_600_000,
            kind: "alert.fired".to_owned(),
            site: "wuhan-01".to_owned(),
            class: "elevator".to_owned(),
            device: "31104201002019000123".to_owned(),
            subject: "alert:12".to_owned(),
            body: "{\"code\":\"E101\",\"floor\":7}".to_owned(),
        },
    )
}

#[test]
fn worked_entry_example_is_right() {
    let doc = doc();
    let e = example();
    let documented: Entry = serde_json::from_str(&block(&doc, "entry")).unwrap();
    assert_eq!(
        documented,
        e,
        "the documented entry should be: {}",
        serde_json::to_string(&e).unwrap()
    );
    let preimage = block(&doc, "preimage");
    let mut expected = String::new();
    for f in [
        &e.seq.to_string(),
        &e.at.to_string(),
        &e.kind,
        &e.site,
        &e.class,
        &e.device,
        &e.subject,
        &e.body,
        &e.prev,
    ] {
        writeln!(expected, "{}:{f}", f.len()).unwrap();
    }
    assert_eq!(preimage, expected);
}

#[test]
fn worked_checkpoint_example_is_right() {
    let doc = doc();
    let cp = signer().checkpoint(&example().tail(), 1_767_229_200_000);
    let documented: Checkpoint = serde_json::from_str(&block(&doc, "checkpoint")).unwrap();
    assert_eq!(
        documented,
        cp,
        "the documented checkpoint should be: {}",
        serde_json::to_string(&cp).unwrap()
    );
    assert_eq!(block(&doc, "message").trim_end(), cp.message());
    // The openssl example uses the same key and signature.
    assert!(doc.contains("printf '302a300506032b6570032100%s' \"$KEY\""));
    assert!(
        doc.contains(&format!("KEY={}", cp.public_key)),
        "the openssl example's key"
    );
    assert!(
        doc.contains(&format!("SIG={}", cp.signature)),
        "the openssl example's signature"
    );
}

#[test]
fn every_problem_kind_is_documented() {
    let doc = doc();
    for kind in [
        "edited",
        "missing",
        "reordered",
        "bad_link",
        "bad_checkpoint",
        "truncated",
        "untrusted_key",
    ] {
        assert!(
            doc.contains(&format!("`{kind}`")),
            "docs/records.md does not explain `{kind}`"
        );
    }
    assert!(doc.contains("## Where records come from"));
}
