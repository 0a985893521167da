//! A publishing MQTT 3.1.1 connection, written by hand: many PUBLISH packets
//! go out in one write (a client library writes and flushes each one), so the
//! load generator spends little of the machine's two cores on itself. QoS 1
//! keeps a window of unacknowledged messages, like a client's `inflight`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

/// Flush the write buffer beyond this many bytes.
const FLUSH_AT: usize = 64 * 1024;

/// One publishing connection.
pub(crate) struct Conn {
    w: OwnedWriteHalf,
    buf: Vec<u8>,
    pkid: u16,
    acks: Arc<Acks>,
}

/// What the reading side saw.
struct Acks {
    /// PUBACKs received.
    acked: AtomicU64,
    /// Room in the QoS 1 window.
    window: Semaphore,
    /// The broker closed the connection.
    closed: AtomicBool,
}

impl Conn {
    /// Connects (clean session) as `client_id` with a QoS 1 window of `inflight`.
    pub(crate) async fn connect(port: u16, client_id: &str, inflight: usize) -> Result<Conn> {
        let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(("127.0.0.1", port)))
            .await
            .context("connect timed out")??;
        s.set_nodelay(true)?;
        let (mut r, mut w) = s.into_split();
        w.write_all(&connect_packet(client_id)).await?;
        let mut connack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut connack))
            .await
            .context("no CONNACK within 10 s")??;
        if connack[0] != 0x20 || connack[3] != 0 {
            bail!("broker refused {client_id}: CONNACK {connack:02x?}");
        }
        let acks = Arc::new(Acks {
            acked: AtomicU64::new(0),
            window: Semaphore::new(inflight.clamp(1, 60_000)),
            closed: AtomicBool::new(false),
        });
        let a = acks.clone();
        tokio::spawn(async move {
            let _ = read_acks(r, &a).await;
            a.closed.store(true, Relaxed);
            // Wake a publisher waiting for room: it sees the connection closed.
            a.window.close();
        });
        Ok(Conn {
            w,
            buf: Vec::with_capacity(FLUSH_AT + 1024),
            pkid: 0,
            acks,
        })
    }

    /// Queues a PUBLISH (sent at the next flush, or once the buffer is full).
    /// At QoS 1 it first waits for room in the window.
    pub(crate) async fn publish(&mut self, topic: &str, payload: &[u8], qos: u8) -> Result<()> {
        let pkid = if qos > 0 {
            let acks = self.acks.clone();
            let permit = if let Ok(p) = acks.window.try_acquire() {
                p
            } else {
                // Our own unsent messages may hold the window: send them first.
                self.flush().await?;
                acks.window
                    .acquire()
                    .await
                    .map_err(|_| anyhow::anyhow!("the broker closed the connection"))?
            };
            permit.forget();
            self.pkid = self.pkid.checked_add(1).unwrap_or(1);
            Some(self.pkid)
        } else {
            None
        };
        encode_publish(&mut self.buf, topic, payload, pkid);
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
            // A socket that takes everything never makes the task wait: let
            // the other connections have their turn.
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// Writes everything queued.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if self.acks.closed.load(Relaxed) {
            bail!("the broker closed the connection");
        }
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// PUBACKs received so far.
    pub(crate) fn acked(&self) -> u64 {
        self.acks.acked.load(Relaxed)
    }

    /// Waits until `n` PUBACKs have arrived (at most `within`).
    pub(crate) async fn wait_acked(&self, n: u64, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while self.acked() < n {
            if self.acks.closed.load(Relaxed) {
                bail!(
                    "the broker closed the connection with {} of {n} acknowledged",
                    self.acked()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} of {n} QoS 1 messages acknowledged after {within:?}", self.acked());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Sends DISCONNECT (so no will is published) and closes.
    pub(crate) async fn close(mut self) {
        self.buf.extend_from_slice(&[0xE0, 0x00]);
        let _ = self.flush().await;
        let _ = self.w.shutdown().await;
    }
}

/// A blocking connection on its own thread, for publishing one message at a
/// precise instant (an alarm among the samples) whatever the async
/// publishers are doing. Its PUBACKs are read and dropped by a second thread.
pub(crate) struct BlockingConn {
    s: std::net::TcpStream,
    buf: Vec<u8>,
    pkid: u16,
}

impl BlockingConn {
    /// Connects (clean session) as `client_id`.
    pub(crate) fn connect(port: u16, client_id: &str) -> Result<BlockingConn> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(&connect_packet(client_id))?;
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack).context("no CONNACK within 10 s")?;
        if connack[0] != 0x20 || connack[3] != 0 {
            bail!("broker refused {client_id}: CONNACK {connack:02x?}");
        }
        s.set_read_timeout(None)?;
        let mut r = s.try_clone()?;
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
        });
        Ok(BlockingConn {
            s,
            buf: Vec::with_capacity(512),
            pkid: 0,
        })
    }

    /// Sends one QoS 1 PUBLISH now.
    pub(crate) fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<()> {
        use std::io::Write as _;
        self.pkid = self.pkid.checked_add(1).unwrap_or(1);
        self.buf.clear();
        encode_publish(&mut self.buf, topic, payload, Some(self.pkid));
        self.s.write_all(&self.buf)?;
        Ok(())
    }

    /// Sends DISCONNECT and closes.
    pub(crate) fn close(mut self) {
        use std::io::Write as _;
        let _ = self.s.write_all(&[0xE0, 0x00]);
        let _ = self.s.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads packets until the connection ends, counting PUBACKs.
async fn read_acks(mut r: tokio::net::tcp::OwnedReadHalf, acks: &Acks) -> Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some((kind, len, header)) = packet_at(&buf[at..]) {
            if kind == 4 {
                acks.acked.fetch_add(1, Relaxed);
                acks.window.add_permits(1);
            }
            at += header + len;
        }
        buf.drain(..at);
    }
}

/// The packet type, remaining length and header length of a complete packet at the start of `b`.
fn packet_at(b: &[u8]) -> Option<(u8, usize, usize)> {
    let first = *b.first()?;
    let mut len = 0usize;
    let mut shift = 0;
    for (i, &byte) in b.iter().enumerate().skip(1).take(4) {
        len |= usize::from(byte & 0x7F) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            let header = i + 1;
            return (b.len() >= header + len).then_some((first >> 4, len, header));
        }
    }
    None
}

fn remaining_length(buf: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = u8::try_from(len % 128).unwrap_or(0);
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn string(buf: &mut Vec<u8>, s: &[u8]) {
    let n = u16::try_from(s.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&n.to_be_bytes());
    buf.extend_from_slice(&s[..usize::from(n)]);
}

/// CONNECT, MQTT 3.1.1, clean session, keep-alive 30 min (a run never idles
/// that long, so no PINGREQ is needed).
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&1800u16.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    let mut p = vec![0x10];
    remaining_length(&mut p, body.len());
    p.extend_from_slice(&body);
    p
}

/// A PUBLISH packet (QoS 1 with `pkid`, QoS 0 without), appended to `buf`.
fn encode_publish(buf: &mut Vec<u8>, topic: &str, payload: &[u8], pkid: Option<u16>) {
    buf.push(if pkid.is_some() { 0x32 } else { 0x30 });
    let len = 2 + topic.len() + pkid.map_or(0, |_| 2) + payload.len();
    remaining_length(buf, len);
    string(buf, topic.as_bytes());
    if let Some(id) = pkid {
        buf.extend_from_slice(&id.to_be_bytes());
    }
    buf.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips_through_the_header_parser() {
        let mut b = Vec::new();
        let payload = vec![7u8; 300];
        encode_publish(&mut b, "fm/v1/bench/firepump/P-1/data", &payload, Some(9));
        let (kind, len, header) = packet_at(&b).expect("a whole packet");
        assert_eq!(kind, 3);
        assert_eq!(header + len, b.len());
        assert_eq!(header, 3, "300+ bytes take two length bytes");
        assert!(packet_at(&b[..b.len() - 1]).is_none());
        assert_eq!(&b[header + 2 + 29..header + 2 + 29 + 2], &[0, 9]);
    }

    #[test]
    fn connect_is_well_formed() {
        let c = connect_packet("loadgen-1");
        let (kind, len, header) = packet_at(&c).expect("a whole packet");
        assert_eq!((kind, header + len), (1, c.len()));
    }
}
