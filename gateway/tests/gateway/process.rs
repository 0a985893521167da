//! The `gateway` binary as an operator runs it: embedded defaults with
//! overrides, the admin token from the environment, SIGTERM ends it with exit 0
//! after persisting what it knows.

use std::process::Command;
use std::time::Duration;

use testkit::free_port;

/// The binary with `args`, on these ports and data directory, with the
/// admin token `testkit::ADMIN_TOKEN`; its stdout piped.
fn gateway(args: &[&str], mqtt: u16, http: u16, data: &std::path::Path) -> std::process::Child {
    testkit::spawn_gateway(env!("CARGO_BIN_EXE_gateway"), args, mqtt, http, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    let mut child = gateway(&["run"], mqtt, http, dir.path());
    testkit::wait_port(http);
    testkit::wait_port(mqtt);
    let birth = r#"{"v":1,"seq":0,"ts":0,"bdseq":1,"fw":"9","model":"m","cfg":"c","interval_s":10}"#;
    let mut seen = false;
    for _ in 0..100 {
        assert!(crate::http::try_publish(mqtt, "fm/v1/s/charger/B-1/birth", birth).await);
        if crate::http::body(http, "/api/v1/devices").await.contains("B-1") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen);
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the gateway did not stop within 10 s of SIGTERM")
    });
    assert_eq!(status.code(), Some(0));
    let store = gateway::store::Store::open(dir.path()).unwrap();
    let devices = store.load_devices().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].fw.as_deref(), Some("9"));
}
