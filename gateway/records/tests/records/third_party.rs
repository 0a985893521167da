//! A third party verifies without Rust: `verify.py` (Python standard
//! library) for the hash chain, OpenSSL for a checkpoint signature.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use records::{Checkpoint, Entry, ExportMeta, write_json};

use crate::{chain, checkpoint_at, signer};

/// `/usr/bin/python3` if present, else `python3` from `PATH`.
fn python() -> PathBuf {
    let usr = Path::new("/usr/bin/python3");
    if usr.exists() {
        usr.to_owned()
    } else {
        PathBuf::from("python3")
    }
}

/// The shipped script, next to the crate's `Cargo.toml`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("verify.py")
}

/// Writes a JSON export of `entries` to `dir/name` and runs the script on it.
fn run_script(dir: &Path, name: &str, entries: &[Entry], cps: &[Checkpoint], filter: &[(&str, &str)]) -> Output {
    let path = dir.join(name);
    let meta = ExportMeta {
        exported_at: 1,
        public_key: Some(signer().public_key_hex()),
        filter: filter.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    };
    let file = std::fs::File::create(&path).unwrap();
    write_json(file, &meta, entries.iter().cloned().map(Ok::<_, Infallible>), cps).unwrap();
    Command::new(python())
        .arg(script())
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (python3 is needed for this test)",
                python().display()
            )
        })
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn python_script_accepts_a_good_export_and_names_the_bad_seq() {
    let dir = tempfile::tempdir().unwrap();
    let entries = chain(12);
    let cps = vec![checkpoint_at(&entries, 6), checkpoint_at(&entries, 12)];

    let o = run_script(dir.path(), "good.json", &entries, &cps, &[]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "ok 12");

    let mut edited = entries.clone();
    edited[6].body = edited[6].body.replace("E007", "E700");
    let o = run_script(dir.path(), "edited.json", &edited, &cps, &[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).starts_with("bad seq 7:"), "{}", stdout(&o));
    assert!(stdout(&o).contains("edited"), "{}", stdout(&o));

    let mut deleted = entries.clone();
    deleted.remove(3);
    let o = run_script(dir.path(), "deleted.json", &deleted, &cps, &[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).starts_with("bad seq 4: missing"), "{}", stdout(&o));

    let mut swapped = entries.clone();
    swapped.swap(2, 3);
    let o = run_script(dir.path(), "swapped.json", &swapped, &cps, &[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stdout(&o).starts_with("bad seq 3: missing or out of order, seq 4 follows seq 2"),
        "{}",
        stdout(&o)
    );

    let mut forged = entries.clone();
    forged[4].prev = "ab".repeat(32);
    forged[4].hash = forged[4].computed_hash();
    let o = run_script(dir.path(), "forged.json", &forged, &cps, &[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stdout(&o).starts_with("bad seq 5:") && stdout(&o).contains("bad link"),
        "{}",
        stdout(&o)
    );

    let o = run_script(dir.path(), "truncated.json", &entries[..9], &cps, &[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stdout(&o).starts_with("bad seq 10:") && stdout(&o).contains("truncated"),
        "{}",
        stdout(&o)
    );

    let mut lying = cps.clone();
    lying[0].hash = entries[4].hash.clone();
    let o = run_script(dir.path(), "rewritten.json", &entries, &lying, &[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).starts_with("bad seq 6:"), "{}", stdout(&o));

    // A filtered export: own hashes only.
    let device = entries[0].device.clone();
    let rows: Vec<Entry> = entries.iter().filter(|e| e.device == device).cloned().collect();
    let o = run_script(dir.path(), "filtered.json", &rows, &cps, &[("device", &device)]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "ok 6");
    assert!(String::from_utf8_lossy(&o.stderr).contains("links between records were not checked"));
}

#[test]
fn python_script_reimplements_the_hash_on_awkward_bytes() {
    // Non-ASCII, quotes, CR/LF, an empty field and a negative time: the same
    // hashes from an independent implementation.
    let dir = tempfile::tempdir().unwrap();
    let mut tail = records::Tail::genesis();
    let entries: Vec<Entry> = ["{\"note\":\"困人,\\\"门\\\"\"}", "a\r\nb", "", "\u{1F6A8}"]
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let e = Entry::seal(
                &tail,
                records::NewRecord {
                    at: -7 * i64::try_from(i).unwrap(),
                    kind: "k".to_owned(),
                    site: "武汉".to_owned(),
                    class: String::new(),
                    device: "d:1\n2:".to_owned(),
                    subject: String::new(),
                    body: (*body).to_owned(),
                },
            );
            tail = e.tail();
            e
        })
        .collect();
    let o = run_script(dir.path(), "awkward.json", &entries, &[], &[]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "ok 4");
}

/// Minimal standard base64 for the PEM (the test needs no crate for it).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

/// The SPKI PEM of a raw ed25519 public key (hex): DER prefix
/// `302a300506032b6570032100` followed by the 32 key bytes.
fn spki_pem(public_key_hex: &str) -> String {
    let der = hex::decode(format!("302a300506032b6570032100{public_key_hex}")).unwrap();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64(&der)
    )
}

#[test]
fn openssl_verifies_a_checkpoint_signature() {
    let version = Command::new("openssl").arg("version").output();
    let Ok(version) = version
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    else {
        eprintln!("SKIPPED (openssl part only): `openssl` is not installed, checkpoint signatures not checked by it");
        return;
    };
    if !version.starts_with("OpenSSL 3") {
        eprintln!("SKIPPED (openssl part only): needs OpenSSL 3 for `pkeyutl -rawin`, found {version:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let entries = chain(5);
    let cp = checkpoint_at(&entries, 5);
    let pem = dir.path().join("records.pub.pem");
    std::fs::write(&pem, spki_pem(&cp.public_key)).unwrap();
    let sig = dir.path().join("sig");
    std::fs::write(&sig, hex::decode(&cp.signature).unwrap()).unwrap();
    let msg = dir.path().join("msg");
    let verify = |message: &str| {
        std::fs::write(&msg, message).unwrap();
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(&pem)
            .arg("-rawin")
            .arg("-in")
            .arg(&msg)
            .arg("-sigfile")
            .arg(&sig)
            .output()
            .unwrap()
    };
    let o = verify(&format!("fm-records/1 checkpoint {} {} {}", cp.seq, cp.hash, cp.at));
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Signature Verified Successfully"),
        "{o:?}"
    );
    // Another seq: the same signature does not verify.
    let o = verify(&format!("fm-records/1 checkpoint 4 {} {}", cp.hash, cp.at));
    assert!(!o.status.success(), "{o:?}");
}
