//! What the fuzz targets (`gateway/fuzz`, `scripts/fuzz.sh`) found, each
//! kept as a test against a real gateway over a real socket.

use gateway::app::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::free_addr;

/// `GET target` with the admin token: status and the lower-cased head.
async fn get_head(port: u16, target: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        testkit::ADMIN_TOKEN
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head)
}

/// Found by the `api` target (`bureau GET /api/v1/reports/monthly?site=
/// lakesi\0de&month=2026-12&format=csv`): the CSV report put the `site` of
/// the query, as given, into its `Content-Disposition` file name. A control
/// character made the answer a 500 ("failed to parse header value"), and a
/// quote could add parameters of its own to the header. A site is a compound
/// id (`[a-z0-9-]{1,32}`); anything else is refused, or at least never
/// reaches the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_report_of_a_site_that_is_no_compound_id_never_breaks_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.mqtt.listen = free_addr();
    cfg.http.listen = free_addr();
    dir.path().join("data").clone_into(&mut cfg.storage.data_dir);
    let http = cfg.http.listen.port();
    let gw = crate::http::start(cfg).await;

    // Judged after the gateway stops: a failed assertion with it running
    // would leave the test waiting on the runtime's shutdown.
    let mut wrong = Vec::new();
    let (status, head) = get_head(http, "/api/v1/reports/monthly?site=lakeside&month=2026-12&format=csv").await;
    if status != 200 || !head.contains("content-disposition: attachment; filename=\"report-lakeside-2026-12.csv\"") {
        wrong.push(format!("site=lakeside: {head}"));
    }
    for site in [
        "lakesi%00de",
        "lake%0D%0Aside",
        "a%22%3B%20filename%3D%22evil.sh",
        "%E6%B9%96%E6%BB%A8",
        "LAKE%20side",
    ] {
        let (status, head) = get_head(
            http,
            &format!("/api/v1/reports/monthly?site={site}&month=2026-12&format=csv"),
        )
        .await;
        let disposition = head
            .lines()
            .find_map(|l| l.strip_prefix("content-disposition: "))
            .unwrap_or_default();
        let safe_name = disposition
            .strip_prefix("attachment; filename=\"")
            .and_then(|n| n.strip_suffix('"'))
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        match status {
            400 => {}
            200 if safe_name => {}
            _ => wrong.push(format!("site={site}: {}", head.lines().next().unwrap_or_default())),
        }
    }
    gw.stop().await;
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Found while writing the `config` target's seeds from the docs' examples,
/// whose table headers carry comments (`[[dispatch.assign]]   # who gets
/// the orders`): behind such a header an error lost its line and column, or
/// named its field without the table (`listen` for `http.listen`).
#[test]
fn a_comment_after_a_table_header_does_not_lose_the_errors_place() {
    use std::path::Path;
    let e = Config::parse(Path::new("c.toml"), "[http]   # the API\nlisten = \"nowhere\"\n").unwrap_err();
    assert_eq!((e.field.as_deref(), e.line), (Some("http.listen"), Some(2)), "{e}");
    let e = Config::parse(
        Path::new("c.toml"),
        "[dispatch]\n[[dispatch.assign]]   # who gets the orders\ncontractor = \"acme\"\n",
    )
    .unwrap_err();
    assert_eq!(
        (e.field.as_deref(), e.line),
        (Some("dispatch.assign[0].contractor"), Some(3)),
        "{e}"
    );
}
