//! Just enough HTTP/1.1 to read what the systems under test expose: a GET
//! (`/readyz`, `/metrics`, Node-RED's count) and a Server-Sent Events stream
//! (`/api/v1/events`), over a raw TCP connection so the time an event is read
//! is the time it arrived.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;

/// `GET path` on 127.0.0.1:`port`: the status and the body (at most 5 s).
pub(crate) async fn get(port: u16, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(5), get_inner(port, path, token))
        .await
        .with_context(|| format!("GET {path} timed out"))?
}

async fn get_inner(port: u16, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(request(port, path, token).as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let end = find(&raw, b"\r\n\r\n").context("no end of the response headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = status(&head)?;
    let body = &raw[end + 4..];
    let body = if chunked(&head) {
        let mut d = Chunked::default();
        let mut out = Vec::new();
        d.feed(body, &mut out);
        out
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `POST path` of `body` (line protocol) on 127.0.0.1:`port`: the status and
/// the body (at most 60 s), on a connection of its own.
pub(crate) async fn post(port: u16, path: &str, body: &[u8]) -> Result<(u16, String)> {
    tokio::time::timeout(Duration::from_mins(1), async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let end = find(&raw, b"\r\n\r\n").context("no end of the response headers")?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        Ok((status(&head)?, String::from_utf8_lossy(&raw[end + 4..]).into_owned()))
    })
    .await
    .with_context(|| format!("POST {path} timed out"))?
}

fn request(port: u16, path: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn status(head: &str) -> Result<u16> {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {head:.80}"))
}

fn chunked(head: &str) -> bool {
    head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    })
}

/// A streaming decoder of `Transfer-Encoding: chunked`.
#[derive(Default)]
struct Chunked {
    /// The hex size line being read (`None` while in data or its CRLF).
    size_line: Option<Vec<u8>>,
    /// Data bytes left in the current chunk.
    left: usize,
    /// CRLF bytes left after the chunk's data.
    crlf: usize,
    /// Seen the last (empty) chunk.
    done: bool,
    started: bool,
}

impl Chunked {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.size_line = Some(Vec::new());
        }
        while !input.is_empty() && !self.done {
            if let Some(line) = self.size_line.as_mut() {
                let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                    line.extend_from_slice(input);
                    return;
                };
                line.extend_from_slice(&input[..nl]);
                input = &input[nl + 1..];
                let text = String::from_utf8_lossy(line);
                let hex = text.trim().split(';').next().unwrap_or("").trim().to_owned();
                if hex.is_empty() {
                    // The CRLF of the previous chunk when it came split; read the next line.
                    line.clear();
                    continue;
                }
                let size = usize::from_str_radix(&hex, 16).unwrap_or(0);
                self.size_line = None;
                if size == 0 {
                    self.done = true;
                    return;
                }
                self.left = size;
            } else if self.left > 0 {
                let n = self.left.min(input.len());
                out.extend_from_slice(&input[..n]);
                input = &input[n..];
                self.left -= n;
                if self.left == 0 {
                    self.crlf = 2;
                }
            } else if self.crlf > 0 {
                let n = self.crlf.min(input.len());
                input = &input[n..];
                self.crlf -= n;
                if self.crlf == 0 {
                    self.size_line = Some(Vec::new());
                }
            } else {
                self.size_line = Some(Vec::new());
            }
        }
    }
}

/// One Server-Sent Event, stamped when its blank line was read.
#[derive(Debug)]
pub(crate) struct SseEvent {
    /// `event:` (default `message`).
    pub(crate) name: String,
    /// `data:` lines joined by newlines.
    pub(crate) data: String,
    /// When it was complete.
    pub(crate) at: Instant,
}

/// Connects to an SSE stream and sends every event to `tx` until the stream
/// ends or `tx` is closed. Answers once the response headers are read (the
/// subscription is in place), with the task reading the rest.
pub(crate) async fn sse(
    port: u16,
    path: &str,
    token: Option<&str>,
    tx: UnboundedSender<SseEvent>,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(request(port, path, token).as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("{path}: the connection closed before the headers");
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(e) = find(&raw, b"\r\n\r\n") {
            break e;
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let code = status(&head)?;
    if code != 200 {
        bail!("{path}: HTTP {code}");
    }
    let is_chunked = chunked(&head);
    let rest = raw[end + 4..].to_vec();
    Ok(tokio::spawn(async move {
        let mut dechunk = Chunked::default();
        let mut lines = SseLines::default();
        let mut body = Vec::new();
        let mut pending = rest;
        loop {
            body.clear();
            if is_chunked {
                dechunk.feed(&pending, &mut body);
            } else {
                body.extend_from_slice(&pending);
            }
            let now = Instant::now();
            for ev in lines.feed(&body, now) {
                if tx.send(ev).is_err() {
                    return;
                }
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending = buf[..n].to_vec(),
            }
        }
    }))
}

/// Splits a byte stream into SSE events.
#[derive(Default)]
struct SseLines {
    line: Vec<u8>,
    name: String,
    data: String,
}

impl SseLines {
    fn feed(&mut self, mut bytes: &[u8], now: Instant) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..nl]);
            bytes = &bytes[nl + 1..];
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                if !self.name.is_empty() || !self.data.is_empty() {
                    let name = std::mem::take(&mut self.name);
                    out.push(SseEvent {
                        name: if name.is_empty() { "message".into() } else { name },
                        data: std::mem::take(&mut self.data),
                        at: now,
                    });
                }
            } else if let Some(v) = line.strip_prefix(b"event:") {
                String::from_utf8_lossy(v).trim_start().clone_into(&mut self.name);
            } else if let Some(v) = line.strip_prefix(b"data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data
                    .push_str(&String::from_utf8_lossy(v.strip_prefix(b" ").unwrap_or(v)));
            }
            self.line = line;
            self.line.clear();
        }
        self.line.extend_from_slice(bytes);
        out
    }
}

/// The sum of a metric's samples in a Prometheus/OpenMetrics text, over the
/// samples whose labels include `label` (`kind="data"`), or all of them.
pub(crate) fn metric_sum(text: &str, name: &str, label: Option<&str>) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some(close) = r.find('}') else { continue };
            (&r[..close], r[close + 1..].trim())
        } else if rest.starts_with(' ') {
            ("", rest.trim())
        } else {
            continue;
        };
        if label.is_some_and(|l| !labels.split(',').any(|x| x == l)) {
            continue;
        }
        if let Some(v) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_across_reads() {
        let body = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut d = Chunked::default();
            let mut out = Vec::new();
            d.feed(&body[..split], &mut out);
            d.feed(&body[split..], &mut out);
            assert_eq!(out, b"hello, world", "split at {split}");
        }
    }

    #[test]
    fn sse_events() {
        let mut l = SseLines::default();
        let now = Instant::now();
        let evs = l.feed(
            b"event: alert\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: work_order\r\ndata: x\r\n",
            now,
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].name, "alert");
        assert_eq!(evs[0].data, "{\"a\":1}");
        let evs = l.feed(b"\r\n", now);
        assert_eq!(evs[0].name, "work_order");
    }

    #[test]
    fn metrics() {
        let text = "# TYPE fm_ingest_messages counter\nfm_ingest_messages_total{kind=\"data\"} 12\n\
                    fm_ingest_messages_total{kind=\"birth\"} 3\nfm_ingest_messages_totalx 9\nfm_mqtt_subscribed 1\n# EOF\n";
        assert_eq!(
            metric_sum(text, "fm_ingest_messages_total", Some("kind=\"data\"")),
            12.0
        );
        assert_eq!(metric_sum(text, "fm_ingest_messages_total", None), 15.0);
        assert_eq!(metric_sum(text, "fm_mqtt_subscribed", None), 1.0);
    }
}
