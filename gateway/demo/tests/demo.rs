//! `gateway-demo` as a newcomer runs it: the console and tokens printed, a
//! compound reporting through the real firmware, the first fault an alert
//! and an order, a port cut off through the API and acknowledged by the
//! firmware, the console page served, SIGTERM ends it.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

// Tests panic on purpose when something is off; unwrapping is the assertion.

use std::process::Command;
use std::time::Duration;

use testkit::free_port;

/// The demo binary on these ports and data directory, admin token `testkit::ADMIN_TOKEN`; its
/// stdout piped.
fn demo(args: &[&str], mqtt: u16, http: u16, data: &std::path::Path) -> std::process::Child {
    testkit::spawn_gateway(env!("CARGO_BIN_EXE_gateway-demo"), args, mqtt, http, data)
}

async fn get(http: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let (path, token) = (path.to_owned(), token.map(str::to_owned));
    tokio::task::spawn_blocking(move || testkit::http_get(http, &path, token.as_deref()))
        .await
        .unwrap()
}

async fn body(http: u16, path: &str) -> String {
    get(http, path, Some(testkit::ADMIN_TOKEN)).await.1
}

/// `POST path` with a JSON body and the admin token: status and body.
async fn post(http: u16, path: &str, json: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        testkit::ADMIN_TOKEN,
        json.len()
    );
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        testkit::parse_response(&raw)
    })
    .await
    .unwrap()
}

/// The value of `"key":"..."` in a JSON text.
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    json[at..].split('"').next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_a_compound_with_faults_alerts_orders_and_records() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    let mut child = demo(&["--first-fault", "1s", "--fault-every", "1h"], mqtt, http, dir.path());
    // What a newcomer reads: the console and the tokens.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("faults ") {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{printed}");
        printed.push_str(&line);
    }
    assert!(
        printed.contains(&format!("console      http://127.0.0.1:{http}/")),
        "{printed}"
    );
    assert!(printed.contains("admin token  t"), "{printed}");
    let contractor = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("contractor"))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    // The compound reports through the real firmware: six devices online.
    let mut devices = String::new();
    for _ in 0..200 {
        devices = body(http, "/api/v1/devices").await;
        if ["B1-EL-1", "B1-EL-2", "B2-EL-1", "FP-1", "BAY-1", "BAY-2"]
            .iter()
            .all(|d| devices.contains(d))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(devices.contains("BAY-2") && devices.contains("B2-EL-1"), "{devices}");
    // The first fault, smoke in a bay, is an alert and an order at once.
    let mut orders = String::new();
    for _ in 0..300 {
        orders = body(http, "/api/v1/work-orders?kind=corrective").await;
        if orders.contains("\"code\":\"smoke\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        orders.contains("\"code\":\"smoke\"") && orders.contains("demo-bays"),
        "{orders}"
    );
    // A command from the console's API: a port of a bay cut off, carried
    // out by the real firmware with the key the demo provisioned, and acked.
    let (status, sent) = post(
        http,
        "/api/v1/devices/demo-garden/BAY-2/commands",
        r#"{"op":"cut_off","args":{"port":1}}"#,
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let id = field(&sent, "id").unwrap().to_owned();
    let mut command = String::new();
    for _ in 0..300 {
        command = body(http, &format!("/api/v1/commands/{id}")).await;
        if field(&command, "status") != Some("sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(field(&command, "status"), Some("acked"), "{command}");
    assert!(
        printed.contains("/api/v1/devices/demo-garden/BAY-2/commands"),
        "{printed}"
    );
    let verify = body(http, "/api/v1/records/verify").await;
    assert!(verify.contains("\"ok\":true"), "{verify}");
    // The console the demo points at is served, without a token.
    let (status, page) = get(http, "/", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("facility-safety console") && page.contains("/api/v1/alerts"),
        "{page}"
    );
    // The printed contractor token works, within its scope.
    let (status, _) = get(http, "/api/v1/work-orders", Some(&contractor)).await;
    assert_eq!(status, 200);
    // The console itself, in a real browser and per role, is tested by
    // scripts/browser-test.sh against a gateway of known tokens and faults.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            assert_eq!(s.code(), Some(0));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("the demo did not stop within 10 s of SIGTERM");
}
