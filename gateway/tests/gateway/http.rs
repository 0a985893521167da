//! A minimal HTTP/1.1 GET for the tests: the API is plain JSON over HTTP, so a
//! socket and a request line are all a test needs.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on 127.0.0.1:`port`, with a bearer token if given; returns the
/// status code and the body.
pub(crate) async fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The body of an authorised `GET` with token `t`.
pub(crate) async fn body(port: u16, path: &str) -> String {
    get(port, path, Some("t")).await.1
}
