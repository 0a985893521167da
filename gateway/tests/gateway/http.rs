//! A minimal HTTP/1.1 GET for the tests: the API is plain JSON over HTTP, so a
//! socket and a request line are all a test needs.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free port on 127.0.0.1 (bound and released).
pub(crate) fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A real `mosquitto_pub` of one QoS 1 message to the broker on `port`
/// (its errors to /dev/null), ready to run.
pub(crate) fn mosquitto_pub(port: u16, topic: &str, payload: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("mosquitto_pub");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
        "-m",
        payload,
    ])
    .stderr(std::process::Stdio::null());
    c
}

/// Publishes one QoS 1 message with a real `mosquitto_pub`; whether the
/// broker took it.
pub(crate) async fn try_publish(port: u16, topic: &str, payload: &str) -> bool {
    mosquitto_pub(port, topic, payload)
        .status()
        .await
        .expect("mosquitto_pub is not installed: run scripts/install-test-deps.sh")
        .success()
}

/// Publishes one QoS 1 message with a real `mosquitto_pub`.
pub(crate) async fn publish(mqtt: std::net::SocketAddr, topic: &str, payload: &str) {
    assert!(
        try_publish(mqtt.port(), topic, payload).await,
        "mosquitto_pub to {topic}"
    );
}

/// Sends a whole request and reads the whole answer: status code and body.
async fn exchange(port: u16, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    testkit::parse_response(&out)
}

/// `GET path` on 127.0.0.1:`port`, with a bearer token if given; returns the
/// status code and the body.
pub(crate) async fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
}

/// The body of an authorised `GET` with the admin token.
pub(crate) async fn body(port: u16, path: &str) -> String {
    get(port, path, Some(testkit::ADMIN_TOKEN)).await.1
}

/// A gateway running in this process for one test, with admin the admin token.
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts `gateway::app::run::run` and waits until its HTTP API listens.
pub(crate) async fn start(config: gateway::app::config::Config) -> Running {
    let http = config.http.listen.port();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway::app::run::run(config, testkit::ADMIN_TOKEN.into(), async {
        let _ = stop_rx.await;
    }));
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", http)).await.is_ok() {
            return Running { stop, task };
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the gateway's HTTP API never listened on {http}");
}

impl Running {
    /// Shuts the gateway down as SIGTERM would and checks it ended cleanly.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(std::time::Duration::from_secs(15), self.task).await;
        ended
            .expect("the gateway did not stop within 15 s")
            .expect("the gateway task panicked")
            .expect("run failed");
    }
}

/// Polls an authorised `GET path` until `pred` holds on the body (10 s at
/// most); returns the last body either way, for the caller's assertion.
pub(crate) async fn wait_for(http: u16, path: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        let (status, body) = get(http, path, Some(testkit::ADMIN_TOKEN)).await;
        if status == 200 && pred(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}

/// The start of a test configuration: the embedded broker on `mqtt`, HTTP on
/// `http`, data under `data`. Tests append their own sections.
pub(crate) fn base_config(mqtt: u16, http: u16, data: &std::path::Path) -> String {
    format!(
        "[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n[storage]\ndata_dir = \"{}\"\n",
        data.display()
    )
}

/// `method path` with a JSON body and the admin token; returns status and body.
pub(crate) async fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        testkit::ADMIN_TOKEN,
        body.len()
    );
    exchange(port, &req).await
}

/// `POST path` with a JSON body and the admin token; returns status and body.
pub(crate) async fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    post_as(port, path, body, testkit::ADMIN_TOKEN).await
}

/// `POST path` with a JSON body and `token`; returns status and body.
pub(crate) async fn post_as(port: u16, path: &str, body: &str, token: &str) -> (u16, String) {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(port, &req).await
}

/// Opens `/api/v1/events` with the admin token; the stream's bytes arrive on the
/// returned channel as they come.
pub(crate) async fn events(port: u16) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    events_as(port, testkit::ADMIN_TOKEN).await
}

/// Opens `/api/v1/events` with `token`.
pub(crate) async fn events_as(port: u16, token: &str) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });
    rx
}
