//! `gateway backup` while a gateway runs and ingests, `gateway restore` into
//! a fresh data directory, and a gateway started on the restored store: its
//! alerts, work orders and records are there and the chain verifies.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::http::{body, free_addr, get, publish};

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

fn config(mqtt: u16, http: u16, data: &Path) -> gateway::app::config::Config {
    let text = format!(
        r#"{}
[[contacts]]
id = "acme"
mqtt = true
[dispatch]
no_builtin_duties = true
[[dispatch.assign]]
site = "lakeside"
contractor = "acme"
"#,
        crate::http::base_config(mqtt, http, data)
    );
    gateway::app::config::Config::parse(Path::new("test.toml"), &text).unwrap()
}

/// `gateway ARGS`: exit code and JSON report (stdout) or error (stderr).
fn cli(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let text = if out.status.success() { out.stdout } else { out.stderr };
    (out.status.code(), String::from_utf8_lossy(&text).into_owned())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn count(http: u16, path: &str, key: &str) -> impl std::future::Future<Output = usize> {
    let path = path.to_owned();
    let key = key.to_owned();
    async move { json(&body(http, &path).await)[&key].as_array().map_or(0, Vec::len) }
}

/// Stops the load when the test ends, by a failed assertion too.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_into_a_gateway_whose_chain_verifies() {
    let root = tempfile::tempdir().unwrap();
    let (live, fresh) = (root.path().join("live"), root.path().join("fresh"));
    let file = root.path().join("backups/fm.sqlite");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let gw = crate::http::start(config(mqtt.port(), http.port(), &live)).await;
    testkit::wait_port(mqtt.port());

    // An alert, its work order, their records: smoke in bay CH-1.
    let mut orders = 0;
    for seq in 1..200 {
        let smoke = format!(r#"{{"v":1,"seq":{seq},"ts":1763798400000,"m":{{"smoke":true}}}}"#);
        publish(mqtt, "fm/v1/lakeside/charger/CH-1/data", &smoke).await;
        orders = count(http.port(), "/api/v1/work-orders", "work_orders").await;
        if orders > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(orders, 1, "no work order for the smoke");

    // Load: one mosquitto_pub -l streaming QoS 1 samples of a lift until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_panic = StopOnDrop(stop.clone());
    let mut pubber = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &mqtt.port().to_string(), "-q", "1"])
        .args(["-t", "fm/v1/lakeside/elevator/EL-1/data", "-l"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub: run scripts/install-test-deps.sh");
    let mut stdin = pubber.stdin.take().unwrap();
    let feeding = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let ts = gateway::app::run::now_ms();
                if writeln!(stdin, r#"{{"v":1,"seq":{seq},"ts":{ts},"m":{{"floor":{}}}}}"#, seq % 20).is_err() {
                    break;
                }
                if seq.is_multiple_of(50) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            seq
        })
    };
    let stored = |min: u64| async move {
        for _ in 0..400 {
            let m = get(http.port(), "/metrics", Some(testkit::ADMIN_TOKEN)).await.1;
            let n = m
                .lines()
                .find_map(|l| l.strip_prefix("fm_store_values_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if n >= min {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway never stored {min} values");
    };
    let before = stored(500).await;

    // Backups while it ingests: no lock taken, the store keeps growing.
    let (code, text) = tokio::task::spawn_blocking({
        let (live, file) = (live.clone(), file.clone());
        move || {
            cli(&[
                "backup",
                "--data-dir",
                live.to_str().unwrap(),
                "--to",
                file.to_str().unwrap(),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{text}");
    let report = json(&text);
    assert!(report["records"].as_u64().unwrap() >= 2, "{report}");
    assert!(report["alerts"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["work_orders"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(stored(before + 500).await > before, "ingest went on during the backup");
    // A second one replaces the first in place.
    let (code, text) = cli(&[
        "backup",
        "--data-dir",
        live.to_str().unwrap(),
        "--to",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!root.path().join("backups/fm.sqlite.partial").exists());

    // Restore refuses the running gateway's directory (it holds the lock).
    let (code, text) = cli(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        live.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("running"), "{text}");

    stop.store(true, Ordering::Relaxed);
    let sent = feeding.join().unwrap();
    let _ = pubber.wait();
    assert!(sent > 0);
    let key = live.join("records.key");
    gw.stop().await;

    // Into a fresh directory: the signing key is needed, then it goes.
    let (code, text) = cli(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("--key"), "{text}");
    let wrong = root.path().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).unwrap();
    let (code, text) = cli(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
        "--key",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("does not verify"), "{text}");
    assert!(!fresh.join("gateway.sqlite").exists());
    let restore = [
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let (code, text) = cli(&restore);
    assert_eq!(code, Some(0), "{text}");
    let restored = json(&text);
    assert!(restored["work_orders"].as_u64().unwrap() >= 1, "{restored}");
    assert!(restored["checkpoints"].as_u64().is_some(), "{restored}");
    assert_eq!(
        std::fs::read_to_string(fresh.join("records.key")).unwrap(),
        std::fs::read_to_string(&key).unwrap()
    );
    // Never over a store.
    let (code, text) = cli(&restore);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("holds a store"), "{text}");

    // A gateway on the restored store has what was there, and the chain verifies.
    let (mqtt, http) = (free_addr(), free_addr());
    let gw = crate::http::start(config(mqtt.port(), http.port(), &fresh)).await;
    let http = http.port();
    let alerts = json(&body(http, "/api/v1/alerts").await);
    let alerts = alerts["alerts"].as_array().unwrap();
    assert!(
        alerts.iter().any(|a| a["device"] == "CH-1" && a["code"] == "smoke"),
        "{alerts:?}"
    );
    let orders = json(&body(http, "/api/v1/work-orders").await);
    let orders = orders["work_orders"].as_array().unwrap();
    assert!(orders.iter().any(|o| o["device"] == "CH-1"), "{orders:?}");
    assert!(count(http, "/api/v1/records", "records").await >= 2);
    let floors = json(&body(http, "/api/v1/series?device=EL-1&metric=floor&from=0&limit=100000").await);
    assert!(!floors["points"].as_array().unwrap().is_empty(), "{floors}");
    let (status, verified) = get(http, "/api/v1/records/verify", Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(json(&verified)["ok"], true, "{verified}");
    gw.stop().await;
}

#[test]
fn a_backup_from_a_newer_gateway_is_not_restored() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    drop(gateway::store::Store::open(&live).unwrap());
    let file = root.path().join("fm.sqlite");
    let (code, text) = cli(&[
        "backup",
        "--data-dir",
        live.to_str().unwrap(),
        "--to",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let newer = gateway::store::schema::VERSION + 1;
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {newer}"))
        .unwrap();
    let key = root.path().join("records.key");
    std::fs::write(&key, format!("{}\n", "cd".repeat(32))).unwrap();
    let fresh = root.path().join("fresh");
    let (code, text) = cli(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("newer"), "{text}");
    assert!(!fresh.join("gateway.sqlite").exists() && !fresh.join("records.key").exists());
}
