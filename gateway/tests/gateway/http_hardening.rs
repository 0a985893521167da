//! The HTTP API under abuse, over real sockets (issue 14, "The API holds"):
//! half-open connections are closed after the header timeout and starve
//! nobody meanwhile, the event stream outlives that timeout, excess
//! connections are closed at once, a flood of wrong tokens from one address
//! is answered 429 while other addresses go on, bodies over the limit or too
//! slow are refused with the API's JSON error, TLS serves HTTPS only, every
//! response carries the security headers, and the console runs under its
//! Content-Security-Policy in a real browser.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use gateway::app::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::free_addr;

/// The address the tests' ordinary requests come from.
const HOME: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Another client: Linux answers all of 127.0.0.0/8 on loopback.
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A gateway on free ports with the test's `[http]` settings, admin token `testkit::ADMIN_TOKEN`.
async fn gateway(dir: &std::path::Path, edit: impl FnOnce(&mut Config)) -> (crate::http::Running, Config) {
    let mut cfg = Config::default();
    cfg.mqtt.listen = free_addr();
    cfg.http.listen = free_addr();
    dir.join("data").clone_into(&mut cfg.storage.data_dir);
    edit(&mut cfg);
    let gw = crate::http::start(cfg.clone()).await;
    (gw, cfg)
}

/// An answer: status, head (lower-cased names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let (status, body) = testkit::parse_response(raw);
        let text = String::from_utf8_lossy(raw);
        let head = text.split_once("\r\n\r\n").map_or(&*text, |(h, _)| h).to_owned();
        Answer { status, head, body }
    }

    /// A header's value.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A connection to the gateway from `src`.
async fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((src, 0).into()).unwrap();
    socket.connect((HOME, port).into()).await.unwrap()
}

/// Reads until the peer closes (a reset after the answer ends it too).
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One whole request from `src`, read to the end (`Connection: close`).
async fn send_from(src: Ipv4Addr, port: u16, request: &str) -> Answer {
    let mut s = connect_from(src, port).await;
    s.write_all(request.as_bytes()).await.unwrap();
    Answer::parse(&read_all(&mut s).await)
}

/// `GET path` from `src` with `token`.
async fn get_from(src: Ipv4Addr, port: u16, path: &str, token: Option<&str>) -> Answer {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    send_from(
        src,
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
}

/// A metric's value as `/metrics` shows it to the admin from `src`.
async fn metric(port: u16, src: Ipv4Addr, name: &str) -> f64 {
    let a = get_from(src, port, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(a.status, 200, "{a:?}");
    a.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{}", a.body))
}

/// The event stream as read so far.
struct Stream {
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    read: String,
}

impl Stream {
    async fn until(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.read.contains(needle) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(chunk)) => self.read.push_str(&chunk),
                _ => return false,
            }
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_starve_nobody_and_are_closed_after_the_header_timeout() {
    const HELD: u32 = 300;
    let header_timeout = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let (gw, cfg) = gateway(dir.path(), |c| c.http.header_timeout = "3s".into()).await;
    let (http, mqtt) = (cfg.http.listen.port(), cfg.mqtt.listen);
    // An event stream, opened first: it must outlive the header timeout.
    let mut events = Stream {
        rx: crate::http::events(http).await,
        read: String::new(),
    };
    assert!(events.until("200 OK", Duration::from_secs(5)).await, "{}", events.read);

    // 300 clients that start a request and never finish it: a third send
    // nothing, a third half a request line, a third the line and a header.
    let started = Instant::now();
    let mut held = Vec::new();
    for i in 0..HELD {
        let mut s = connect_from(HOME, http).await;
        match i % 3 {
            0 => {}
            1 => s.write_all(b"GET /api/v1/dev").await.unwrap(),
            _ => s
                .write_all(b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-0123456789abcdef\r\n")
                .await
                .unwrap(),
        }
        held.push(s);
    }
    let opened = started.elapsed();

    // Meanwhile the API answers an authenticated request at once, and the
    // gateway itself holds the 300 (they are not just queued in the kernel).
    let asked = Instant::now();
    let (status, body) = crate::http::get(http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN)).await;
    let answered_in = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    // Held by the gateway: the 300, the event stream, the metrics request.
    let mut open = 0.0;
    while started.elapsed() < header_timeout {
        open = metric(http, HOME, "fm_http_connections_open").await;
        if open >= f64::from(HELD + 2) {
            break;
        }
    }
    let checked = started.elapsed();
    assert!(
        checked < header_timeout,
        "the check must run while the 300 are held: {checked:?}"
    );
    assert!(open >= f64::from(HELD + 2), "the gateway holds {open} connections");

    // Each of them is closed once the header timeout has passed, not before.
    let mut closed_after = Vec::new();
    for mut s in held {
        let got = tokio::time::timeout(header_timeout + Duration::from_secs(5), read_all(&mut s))
            .await
            .expect("a half-open connection outlived the header timeout by 5 s");
        closed_after.push(started.elapsed());
        assert!(
            !String::from_utf8_lossy(&got).contains("200 OK"),
            "a half-open request was answered"
        );
    }
    let first = closed_after.iter().min().copied().unwrap();
    let last = closed_after.iter().max().copied().unwrap();
    assert!(
        first + Duration::from_millis(20) >= header_timeout,
        "closed before the header timeout: {first:?}"
    );
    eprintln!(
        "{HELD} half-open connections opened in {opened:?}; an authenticated GET meanwhile answered in \
         {answered_in:?}; the gateway held {open} connections; all closed between {first:?} and {last:?} \
         after the first was opened (header_timeout {header_timeout:?})"
    );
    // The server counts a timeout as it closes the connection: the client
    // may see the last close a moment before the count moves (a clean-clone
    // run read 299 of 300 once), so the count is polled for a while.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut timeouts = metric(http, HOME, "fm_http_header_timeouts_total").await;
    while timeouts < f64::from(HELD) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        timeouts = metric(http, HOME, "fm_http_header_timeouts_total").await;
    }
    assert!(timeouts >= f64::from(HELD), "fm_http_header_timeouts_total {timeouts}");
    // The same for the gauge of open connections, which moves last.
    let mut open = metric(http, HOME, "fm_http_connections_open").await;
    while open > 3.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        open = metric(http, HOME, "fm_http_connections_open").await;
    }
    assert!(open <= 3.0, "connections still open: {open}");

    // The event stream, open and idle for longer than the header timeout,
    // still carries what happens: smoke in a bay fires an alert.
    let smoke = r#"{"v":1,"seq":1,"ts":1763798400000,"m":{"smoke":true,"leakage_ma":2}}"#;
    let mut fired = false;
    for _ in 0..100 {
        crate::http::publish(mqtt, "fm/v1/lakeside/charger/BAY-07/data", smoke).await;
        if events.until("\"change\":\"fired\"", Duration::from_millis(100)).await {
            fired = true;
            break;
        }
    }
    assert!(fired, "the event stream was cut:\n{}", events.read);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, cfg) = gateway(dir.path(), |c| {
        c.http.max_connections = 20;
        c.http.header_timeout = "30s".into();
    })
    .await;
    let http = cfg.http.listen.port();
    // Only the metrics request itself is open before the test begins.
    while metric(http, HOME, "fm_http_connections_open").await > 1.0 {
        tokio::task::yield_now().await;
    }
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from(HOME, http).await);
    }
    // The 21st is closed at once, long before any timeout.
    let t = Instant::now();
    let mut extra = connect_from(HOME, http).await;
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let got = tokio::time::timeout(Duration::from_secs(5), read_all(&mut extra))
        .await
        .expect("the connection over the cap was not closed");
    let closed_in = t.elapsed();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // Once some close, new connections are served again.
    held.truncate(15);
    let mut status = 0;
    for _ in 0..200 {
        status = get_from(HOME, http, "/healthz", None).await.status;
        if status == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 200);
    let refused = metric(http, HOME, "fm_http_connections_refused_total").await;
    assert!(refused >= 1.0, "{refused}");
    eprintln!("a connection over max_connections = 20 was closed {closed_in:?} after it was opened");
    // Shutdown does not wait for connections that never sent a request:
    // some silent, some half a request line.
    for s in held.iter_mut().step_by(2) {
        s.write_all(b"GET /api/v1/dev").await.unwrap();
    }
    let t = Instant::now();
    gw.stop().await;
    let stopped_in = t.elapsed();
    assert!(stopped_in < Duration::from_secs(5), "{stopped_in:?}");
    eprintln!("stopped in {stopped_in:?} with 15 idle or half-open connections held");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_held_to_its_share_of_connections_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, cfg) = gateway(dir.path(), |c| {
        c.http.max_connections_per_client = Some(5);
        c.http.header_timeout = "30s".into();
    })
    .await;
    let http = cfg.http.listen.port();
    while metric(http, OTHER, "fm_http_connections_open").await > 1.0 {
        tokio::task::yield_now().await;
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(HOME, http).await);
    }
    // The sixth from the same address is closed at once; another address is served.
    let mut extra = connect_from(HOME, http).await;
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let got = tokio::time::timeout(Duration::from_secs(5), read_all(&mut extra))
        .await
        .expect("the connection over the address's share was not closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(get_from(OTHER, http, "/healthz", None).await.status, 200);
    assert!(metric(http, OTHER, "fm_http_connections_refused_per_client_total").await >= 1.0);
    assert_eq!(metric(http, OTHER, "fm_http_connections_refused_total").await, 0.0);
    // One closes: the address has a place again.
    held.truncate(4);
    let mut status = 0;
    for _ in 0..200 {
        status = get_from(HOME, http, "/healthz", None).await.status;
        if status == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 200);
    drop(held);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_answered_429_per_address_while_other_clients_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, cfg) = gateway(dir.path(), |c| {
        c.http.auth_failure_limit = 5;
        c.http.auth_failure_window = "5s".into();
    })
    .await;
    let http = cfg.http.listen.port();
    // Five wrong tokens are answered as always: 401.
    for i in 0..5 {
        let a = get_from(HOME, http, "/api/v1/devices", Some(&format!("guess-{i}"))).await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    // The sixth, and then even the right token, from the same address: 429,
    // with Retry-After and the API's JSON error.
    let a = get_from(HOME, http, "/api/v1/devices", Some("guess-5")).await;
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.json()["error"], "too_many_requests");
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let a = get_from(HOME, http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(a.status, 429, "the flooding address is held whatever it sends: {a:?}");
    // Another address is not held: its right token works, its wrong ones
    // have their own budget.
    assert_eq!(
        get_from(OTHER, http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN))
            .await
            .status,
        200
    );
    assert_eq!(get_from(OTHER, http, "/api/v1/devices", Some("nope")).await.status, 401);
    // A flood while held is answered 429 without a token being looked at,
    // and does not prolong the hold.
    let t = Instant::now();
    let mut limited = 0;
    for i in 0..200 {
        if get_from(HOME, http, "/api/v1/alerts", Some(&format!("flood-{i}")))
            .await
            .status
            == 429
        {
            limited += 1;
        }
    }
    let flood = t.elapsed();
    assert_eq!(limited, 200);
    // Health and the console need no token and are never held.
    assert_eq!(get_from(HOME, http, "/healthz", None).await.status, 200);
    assert_eq!(get_from(HOME, http, "/", None).await.status, 200);
    // Retry-After seconds after the last counted failure, the right token works again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let a = get_from(HOME, http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        metric(http, OTHER, "fm_http_auth_failures_total").await,
        6.0,
        "five from the flooder, one from the other"
    );
    let rate_limited = metric(http, OTHER, "fm_http_auth_rate_limited_total").await;
    assert!(rate_limited >= 202.0, "{rate_limited}");
    eprintln!("200 requests from a held address answered 429 in {flood:?} (one connection each)");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_and_bodies_over_the_limit_or_too_slow_are_refused_and_the_api_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, cfg) = gateway(dir.path(), |c| c.http.body_timeout = "1s".into()).await;
    let http = cfg.http.listen.port();
    let post = |len: usize, token: &str, extra: &str| {
        format!(
            "POST /api/v1/alerts/999/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    // A request head over 16 KiB: 431, the connection closed.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    assert_eq!(send_from(HOME, http, &big).await.status, 431);
    // Declared over 16 KiB: 413 without the body being sent or read.
    let t = Instant::now();
    let a = send_from(HOME, http, &post(16 * 1024 + 1, testkit::ADMIN_TOKEN, "")).await;
    let refused_in = t.elapsed();
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.json()["error"], "payload_too_large");
    assert!(a.json()["detail"].as_str().unwrap().contains("16384"), "{a:?}");
    assert_eq!(a.header("connection").as_deref(), Some("close"));
    // Undeclared (chunked) and over: 413 once the limit is passed.
    let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
    let chunked = format!(
        "POST /api/v1/alerts/999/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-0123456789abcdef\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(5)
    );
    let a = send_from(HOME, http, &chunked).await;
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.json()["error"], "payload_too_large");
    // Without a valid token the body is never read: 401 at once, even for 10 MB.
    let a = send_from(HOME, http, &post(10 << 20, "wrong-token", "")).await;
    assert_eq!(a.status, 401, "{a:?}");
    // A body that stops coming: 408 after body_timeout.
    let mut s = connect_from(HOME, http).await;
    s.write_all(post(100, testkit::ADMIN_TOKEN, "").as_bytes())
        .await
        .unwrap();
    s.write_all(b"{\"by\":").await.unwrap();
    let t = Instant::now();
    let a = Answer::parse(
        &tokio::time::timeout(Duration::from_secs(6), read_all(&mut s))
            .await
            .expect("a stalled body was never answered"),
    );
    let timed_out_in = t.elapsed();
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.json()["error"], "request_timeout");
    assert!(timed_out_in >= Duration::from_millis(900), "{timed_out_in:?}");
    // The API goes on: a small body is read and judged (no alert 999).
    let (status, body) = crate::http::post(http, "/api/v1/alerts/999/ack", r#"{"by":"li.wei"}"#).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = crate::http::get(http, "/api/v1/devices", Some(testkit::ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric(http, HOME, "fm_http_body_too_large_total").await, 2.0);
    assert_eq!(metric(http, HOME, "fm_http_body_timeouts_total").await, 1.0);
    eprintln!(
        "413 on a declared length in {refused_in:?}; 408 on a stalled body after {timed_out_in:?} (body_timeout 1s)"
    );
    gw.stop().await;
}

/// `curl` with `args`; its exit code and output (headers with `-D -`).
async fn curl(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl is not installed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_only_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = testkit::Tls::generate(dir.path());
    let (gw, cfg) = gateway(dir.path(), |c| {
        c.http.tls_cert_file = Some(tls.cert.clone());
        c.http.tls_key_file = Some(tls.key.clone());
        c.http.header_timeout = "1s".into();
    })
    .await;
    let http = cfg.http.listen.port();
    let ca = tls.ca.to_str().unwrap();
    let base = format!("https://127.0.0.1:{http}");
    // HTTPS with the CA that signed the certificate: served, with HSTS.
    let t = Instant::now();
    let (code, out) = curl(&["--cacert", ca, "-D", "-", &format!("{base}/healthz")]).await;
    let first = t.elapsed();
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("ok"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
    let (code, out) = curl(&[
        "--cacert",
        ca,
        "-H",
        "Authorization: Bearer t-0123456789abcdef",
        &format!("{base}/api/v1/devices"),
    ])
    .await;
    assert_eq!((code, out.as_str()), (0, r#"{"devices":[],"next":null}"#));
    // A client that does not trust it refuses it (curl's "peer certificate" failure).
    let (code, _) = curl(&[&format!("{base}/healthz")]).await;
    assert_eq!(code, 60);
    // Plain HTTP to the TLS port: no answer, the connection is closed at once.
    let (code, out) = curl(&[&format!("http://127.0.0.1:{http}/healthz")]).await;
    assert_ne!(code, 0, "{out}");
    let t = Instant::now();
    let a = get_from(HOME, http, "/healthz", None).await;
    let closed_in = t.elapsed();
    assert_eq!(a.status, 0, "{a:?}");
    assert!(closed_in < Duration::from_millis(900), "{closed_in:?}");
    // A client that never starts its handshake is closed after the header timeout.
    let mut idle = connect_from(HOME, http).await;
    tokio::time::timeout(Duration::from_secs(6), read_all(&mut idle))
        .await
        .expect("a silent TLS client outlived the header timeout");
    let (code, out) = curl(&[
        "--cacert",
        ca,
        "-H",
        "Authorization: Bearer t-0123456789abcdef",
        &format!("{base}/metrics"),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let failures: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("fm_http_tls_handshake_failures_total ")?.parse().ok())
        .unwrap();
    assert!(failures >= 3.0, "{out}");
    eprintln!(
        "first HTTPS request with curl (process start included) {first:?}; plain HTTP to the TLS port closed in {closed_in:?}"
    );
    gw.stop().await;
}

#[test]
fn http_limits_and_tls_mistakes_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let tls = testkit::Tls::generate(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let wrong = testkit::Tls::generate(&other);
    let field = |text: String| {
        gateway::app::config::Config::parse(std::path::Path::new("gw.toml"), &text)
            .err()
            .and_then(|e| e.field.map(|f| (f, e.line, e.message)))
    };
    let http = |body: &str| format!("[http]\nlisten = \"127.0.0.1:8080\"\n{body}\n");
    let ok = http(&format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        tls.cert.display(),
        tls.key.display()
    ));
    assert_eq!(field(ok), None);
    for (body, expected) in [
        ("max_connections = 0", "http.max_connections"),
        (
            "max_connections = 100\nmax_connections_per_client = 101",
            "http.max_connections_per_client",
        ),
        ("header_timeout = \"soon\"", "http.header_timeout"),
        ("header_timeout = \"1h\"", "http.header_timeout"),
        ("body_timeout = \"0s\"", "http.body_timeout"),
        ("max_body_bytes = 10", "http.max_body_bytes"),
        ("max_body_bytes = 100000000", "http.max_body_bytes"),
        ("auth_failure_limit = 0", "http.auth_failure_limit"),
        ("auth_failure_window = \"10ms\"", "http.auth_failure_window"),
        ("auth_failure_clients = 1", "http.auth_failure_clients"),
    ] {
        let (f, line, message) = field(http(body)).unwrap_or_else(|| panic!("{body} was taken"));
        assert_eq!(
            (f.as_str(), line),
            (expected, Some(2 + body.lines().count())),
            "{body}: {message}"
        );
    }
    let cert_only = http(&format!("tls_cert_file = \"{}\"", tls.cert.display()));
    assert_eq!(field(cert_only).unwrap().0, "http.tls_key_file");
    let missing = http(&format!(
        "tls_cert_file = \"{}/none.pem\"\ntls_key_file = \"{}\"",
        dir.path().display(),
        tls.key.display()
    ));
    assert_eq!(field(missing).unwrap().0, "http.tls_cert_file");
    let mismatched = http(&format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        tls.cert.display(),
        wrong.key.display()
    ));
    let (f, _, message) = field(mismatched).unwrap();
    assert_eq!(f, "http.tls_key_file", "{message}");
    let not_a_key = http(&format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        tls.cert.display(),
        tls.ca.display()
    ));
    assert_eq!(field(not_a_key).unwrap().0, "http.tls_key_file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, cfg) = gateway(dir.path(), |_| {}).await;
    let http = cfg.http.listen.port();
    let common = |a: &Answer| {
        assert_eq!(a.header("x-frame-options").as_deref(), Some("DENY"), "{a:?}");
        assert_eq!(a.header("x-content-type-options").as_deref(), Some("nosniff"), "{a:?}");
        assert_eq!(a.header("referrer-policy").as_deref(), Some("no-referrer"), "{a:?}");
        assert_eq!(a.header("cache-control").as_deref(), Some("no-store"), "{a:?}");
        assert!(
            a.header("strict-transport-security").is_none(),
            "HSTS over plain HTTP: {a:?}"
        );
        let csp = a.header("content-security-policy").unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
            "{csp}"
        );
        csp
    };
    // The console: its own script and style files only, nothing inline.
    let page = get_from(HOME, http, "/", None).await;
    let csp = common(&page);
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(
        page.body
            .contains(r#"<script type="module" src="/console.js"></script>"#),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<script>") && !page.body.contains("<style") && !page.body.contains(" onclick="),
        "inline script or style: {}",
        page.body
    );
    let js = get_from(HOME, http, "/console.js", None).await;
    common(&js);
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().starts_with("text/javascript"));
    // The token goes to sessionStorage only (localStorage keeps just the
    // language and the mute switch; the browser test checks no token lands there).
    assert!(js.body.contains("sessionStorage.setItem(TOKEN") && !js.body.contains("localStorage.setItem(TOKEN"));
    assert!(!js.body.contains("onclick"));
    let css = get_from(HOME, http, "/console.css", None).await;
    common(&css);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    // The API, its errors, and the router's own 404: data, never a document.
    for (path, token, status) in [
        ("/api/v1/devices", Some(testkit::ADMIN_TOKEN), 200),
        ("/api/v1/devices", None, 401),
        ("/api/v1/alerts?state=burning", Some(testkit::ADMIN_TOKEN), 400),
        ("/nowhere", None, 404),
        ("/healthz", None, 200),
    ] {
        let a = get_from(HOME, http, path, token).await;
        assert_eq!(a.status, status, "{path}: {a:?}");
        let csp = common(&a);
        assert!(csp.contains("default-src 'none'") && csp.contains("sandbox"), "{csp}");
    }
    gw.stop().await;
}

// The console under its policy, and stopping on a refused token, are tested
// in a real browser by scripts/browser-test.sh (scenarios 8 and 9).
