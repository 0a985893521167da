//! JSON and CSV exports: round trips, streaming errors, filtered exports.

use std::convert::Infallible;
use std::io;

use records::{
    CSV_HEADER, Entry, ExportError, ExportMeta, FORMAT, NewRecord, ProblemKind, Signer, Tail, read_csv, read_json,
    write_csv, write_json,
};

use crate::{chain, checkpoint_at, signer};

/// `entries` as the infallible source the writers take.
fn ok_source(entries: &[Entry]) -> impl Iterator<Item = Result<Entry, Infallible>> + '_ {
    entries.iter().cloned().map(Ok)
}

fn meta(filter: &[(&str, &str)]) -> ExportMeta {
    ExportMeta {
        exported_at: 1_767_400_000_000,
        public_key: Some(signer().public_key_hex()),
        filter: filter.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

/// A chain whose fields hold what CSV and JSON must escape.
fn awkward_chain() -> Vec<Entry> {
    let bodies = [
        "{\"note\":\"comma, \\\"quote\\\" and\\nnewline\"}",
        "{ \"spaced\" : [1, 2.50, 3e2] }",
        "line one\r\nline two, \"quoted\"",
        "",
        "  leading and trailing spaces  ",
    ];
    let mut tail = Tail::genesis();
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let e = Entry::seal(
                &tail,
                NewRecord {
                    at: if i == 3 {
                        -1500
                    } else {
                        1_767_225_601_000 + i64::try_from(i).unwrap()
                    },
                    kind: "operator.note".to_owned(),
                    site: "武汉,一号".to_owned(),
                    class: String::new(),
                    device: if i % 2 == 0 { "d1".to_owned() } else { "d2".to_owned() },
                    subject: "\"order:3\"".to_owned(),
                    body: (*body).to_owned(),
                },
            );
            tail = e.tail();
            e
        })
        .collect()
}

#[test]
fn json_export_round_trips_and_verifies() {
    let entries = chain(25);
    let cps = vec![checkpoint_at(&entries, 10), checkpoint_at(&entries, 25)];
    let mut out = Vec::new();
    let n = write_json(&mut out, &meta(&[]), ok_source(&entries), &cps).unwrap();
    assert_eq!(n, 25);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.starts_with("{\"format\":\"fm-records/1\",\"exported_at\":1767400000000,"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("{\"seq\":") && l.contains("\"body\":"))
            .count(),
        25,
        "one record per line"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["filter"], serde_json::json!({}));
    assert_eq!(v["records"].as_array().unwrap().len(), 25);
    assert_eq!(v["checkpoints"].as_array().unwrap().len(), 2);

    let export = read_json(out.as_slice()).unwrap();
    assert_eq!(export.format, FORMAT);
    assert_eq!(export.exported_at, 1_767_400_000_000);
    assert_eq!(export.public_key, Some(signer().public_key_hex()));
    assert!(export.filter.is_empty());
    assert_eq!(export.records, entries);
    assert_eq!(export.checkpoints, cps);
    let v = export.verify(Some(&signer().public_key_hex()));
    assert!(v.ok, "{v:?}");
    assert!(v.links_checked);
    assert_eq!((v.count, v.checkpoints, v.unsealed), (25, 2, 0));
}

#[test]
fn json_export_keeps_awkward_bytes() {
    let entries = awkward_chain();
    let mut out = Vec::new();
    write_json(&mut out, &meta(&[]), ok_source(&entries), &[]).unwrap();
    let export = read_json(out.as_slice()).unwrap();
    assert_eq!(export.records, entries);
    assert!(export.verify(None).ok);
}

#[test]
fn empty_json_export() {
    let mut out = Vec::new();
    let m = ExportMeta {
        exported_at: 0,
        public_key: None,
        filter: Vec::new(),
    };
    assert_eq!(write_json(&mut out, &m, ok_source(&[]), &[]).unwrap(), 0);
    let export = read_json(out.as_slice()).unwrap();
    assert!(export.records.is_empty());
    assert_eq!(export.public_key, None);
    let v = export.verify(None);
    assert!(v.ok && v.count == 0, "{v:?}");
}

#[test]
fn tampered_json_export_fails() {
    let entries = chain(10);
    let mut out = Vec::new();
    write_json(
        &mut out,
        &meta(&[]),
        ok_source(&entries),
        &[checkpoint_at(&entries, 10)],
    )
    .unwrap();
    let mut export = read_json(out.as_slice()).unwrap();
    export.records.remove(4);
    let v = export.verify(None);
    assert_eq!(v.problem.unwrap().kind, ProblemKind::Missing);
    let mut export = read_json(out.as_slice()).unwrap();
    export.records.truncate(8);
    assert_eq!(export.verify(None).problem.unwrap().kind, ProblemKind::Truncated);
}

#[test]
fn export_keys_must_agree() {
    let entries = chain(4);
    let mut out = Vec::new();
    write_json(&mut out, &meta(&[]), ok_source(&entries), &[checkpoint_at(&entries, 4)]).unwrap();
    let mut export = read_json(out.as_slice()).unwrap();
    // The bureau's key is another one.
    let bureau = Signer::from_seed([3; 32]).public_key_hex();
    let v = export.verify(Some(&bureau));
    assert_eq!(v.problem.unwrap().kind, ProblemKind::UntrustedKey);
    // The export's header names another key than the checkpoints carry.
    export.public_key = Some(bureau.clone());
    let v = export.verify(None);
    let p = v.problem.unwrap();
    assert_eq!(p.kind, ProblemKind::UntrustedKey);
    assert!(p.message.contains("the export's key"), "{}", p.message);
    assert_eq!(v.key, Some(bureau));
    // Without any header key, the checkpoints' own key is used.
    export.public_key = None;
    let v = export.verify(None);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.key, Some(signer().public_key_hex()));
}

#[test]
fn filtered_export_checks_rows_only() {
    let entries = chain(20);
    let device = entries[0].device.clone();
    let rows: Vec<Entry> = entries.iter().filter(|e| e.device == device).cloned().collect();
    assert_eq!(rows.len(), 10);
    let cps = vec![checkpoint_at(&entries, 10), checkpoint_at(&entries, 20)];
    let mut out = Vec::new();
    write_json(
        &mut out,
        &meta(&[("device", &device), ("from", "0")]),
        ok_source(&rows),
        &cps,
    )
    .unwrap();
    let export = read_json(out.as_slice()).unwrap();
    assert_eq!(
        export.filter,
        vec![
            ("device".to_owned(), device.clone()),
            ("from".to_owned(), "0".to_owned())
        ]
    );
    let v = export.verify(None);
    assert!(v.ok, "{v:?}");
    assert!(!v.links_checked);
    assert_eq!(v.count, 10);
    assert_eq!(v.checkpoints, 2);

    let mut edited = export.clone();
    edited.records[3].at += 1;
    let p = edited.verify(None).problem.unwrap();
    assert_eq!((p.position, p.kind), (4, ProblemKind::Edited));

    // The same rows claimed as a full chain do not verify.
    let mut unfiltered = export;
    unfiltered.filter.clear();
    assert_eq!(unfiltered.verify(None).problem.unwrap().kind, ProblemKind::Missing);
}

#[test]
fn source_errors_are_carried() {
    let entries = chain(5);
    let source = entries.iter().cloned().enumerate().map(|(i, e)| {
        if i == 3 {
            Err(io::Error::other("database is locked"))
        } else {
            Ok(e)
        }
    });
    let mut out = Vec::new();
    let err = write_json(&mut out, &meta(&[]), source.clone(), &[]).unwrap_err();
    let ExportError::Source(inner) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        inner.downcast_ref::<io::Error>().unwrap().to_string(),
        "database is locked"
    );
    assert!(err.to_string().contains("database is locked"), "{err}");
    assert!(
        read_json(out.as_slice()).is_err(),
        "an interrupted export is not a valid document"
    );

    let err = write_csv(Vec::new(), source).unwrap_err();
    assert!(matches!(err, ExportError::Source(_)), "{err:?}");
}

#[test]
fn write_errors_are_reported() {
    struct Full;
    impl io::Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let entries = chain(3);
    assert!(write_json(Full, &meta(&[]), ok_source(&entries), &[]).is_err());
    assert!(write_csv(Full, ok_source(&entries)).is_err());
}

#[test]
fn other_documents_are_refused() {
    let err =
        read_json(&br#"{"format":"fm-records/2","exported_at":1,"records":[],"checkpoints":[]}"#[..]).unwrap_err();
    assert!(matches!(&err, ExportError::Format(f) if f == "fm-records/2"), "{err:?}");
    let err = read_json(&b"{\"format\":\"fm-records/1\",\"exported_at\":1,\"records\":[{\"seq\":1}]}"[..]).unwrap_err();
    assert!(matches!(err, ExportError::Json(_)), "{err:?}");
    assert!(read_json(&b"not json"[..]).is_err());
}

#[test]
fn csv_export_round_trips_byte_exact() {
    let entries = awkward_chain();
    let mut out = Vec::new();
    assert_eq!(write_csv(&mut out, ok_source(&entries)).unwrap(), 5);
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.lines().next().unwrap(), CSV_HEADER.join(","));
    assert_eq!(
        text.lines().next().unwrap(),
        "seq,at,at_utc,kind,site,class,device,subject,body,prev,hash"
    );
    let back = read_csv(out.as_slice()).unwrap();
    assert_eq!(back, entries);
    assert!(records::verify(&back, Vec::new(), None).ok);

    let mut rdr = csv::Reader::from_reader(out.as_slice());
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(&rows[0][2], "2026-01-01T00:00:01.000Z");
    assert_eq!(&rows[1][2], "2026-01-01T00:00:01.001Z");
    assert_eq!(&rows[3][2], "", "before 1970: no RFC 3339 form");
    assert_eq!(&rows[3][1], "-1500");
}

#[test]
fn csv_export_of_a_tampered_row_fails_verification() {
    let entries = chain(6);
    let mut out = Vec::new();
    write_csv(&mut out, ok_source(&entries)).unwrap();
    let text = String::from_utf8(out).unwrap().replace("E004", "E040");
    let back = read_csv(text.as_bytes()).unwrap();
    let v = records::verify(&back, vec![checkpoint_at(&entries, 6)], None);
    let p = v.problem.unwrap();
    assert_eq!((p.position, p.seq, p.kind), (4, Some(4), ProblemKind::Edited));
}

#[test]
fn csv_with_another_header_is_refused() {
    let err = read_csv(&b"seq,at,kind\n1,2,x\n"[..]).unwrap_err();
    assert!(
        matches!(&err, ExportError::Header { found } if found == "seq,at,kind"),
        "{err:?}"
    );
    assert!(err.to_string().contains("seq,at,at_utc,kind"), "{err}");
    let mut bad = CSV_HEADER.join(",");
    bad.push_str("\nnot-a-number,1,,k,s,c,d,x,{},p,h\n");
    let err = read_csv(bad.as_bytes()).unwrap_err();
    assert!(matches!(err, ExportError::Csv(_)), "{err:?}");
}
