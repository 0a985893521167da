//! One client connection: its CONNECT, its loop, its end.
//!
//! A single task selects over the socket (read and write halves), the
//! publishes routed to it, the gateway's acknowledgements and the signals to
//! close. While a publish waits for room in the gateway's lane, the task
//! reads nothing more from the socket but still writes, acknowledges and
//! closes when told.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, LastWill, Packet, PubAck, PubComp, PubRec, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error, Protocol, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::order::AckQueue;
use super::router::{self, Attach, Link};
use super::{Ack, AckEvent, Hello, Inbound, Shared};
use crate::identity::{self, Principal};

/// A client's byte stream: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type Stream = Box<dyn Io>;

/// Unacknowledged QoS 1 publishes to a client at most; later ones wait.
const MAX_INFLIGHT: usize = 100;
/// Unwritten bytes beyond which no more routed publishes are taken in.
const WRITE_HIGH: usize = 64 * 1024;

/// A publish on its way into the gateway's lane.
type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a connection ended.
enum End {
    /// The client said DISCONNECT: no will.
    Disconnect,
    /// The broker shuts down: no will.
    Stop,
    /// Anything else: the will is published.
    Lost(&'static str),
}

enum Step {
    Go,
    Ingress(Pending),
    End(End),
}

/// Serves one accepted socket until it ends: over TLS first when `tls` is
/// given (the handshake within the CONNECT timeout).
pub(super) async fn accepted(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return serve(Box::new(stream), peer, None, shared, stop).await;
    };
    let stream = match tokio::time::timeout(shared.settings.connect_timeout, tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "MQTT TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    // The certificate the client proved it holds (the verifier checked its
    // signature over the handshake), by its SHA-256.
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| <sha2::Sha256 as sha2::Digest>::digest(c.as_ref()).into());
    serve(Box::new(stream), peer, certificate, shared, stop).await;
}

/// Serves one connection until it ends.
async fn serve(
    stream: Stream,
    peer: std::net::SocketAddr,
    certificate: Option<[u8; 32]>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<()>,
) {
    let opened = tokio::select! {
        c = open(stream, peer, certificate, &shared) => c,
        _ = stop.changed() => None,
    };
    if let Some(mut conn) = opened {
        let end = conn.run(&mut stop).await;
        conn.close(end, &mut stop).await;
    }
}

/// Reads one whole packet.
async fn read_packet(stream: &mut Stream, buf: &mut BytesMut, max: usize) -> Result<Packet, Error> {
    loop {
        match Packet::read(buf, max) {
            Err(Error::InsufficientBytes(_)) => {}
            r => return r,
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

fn kind(e: &Error) -> &'static str {
    if matches!(e, Error::PayloadSizeLimitExceeded(_)) {
        "oversized packet"
    } else {
        "malformed packet"
    }
}

/// Answers a CONNECT with a refusal.
async fn refuse(stream: &mut Stream, shared: &Shared, code: ConnectReturnCode) {
    shared.stats.refused_total.fetch_add(1, Relaxed);
    tracing::debug!(?code, "MQTT connection refused");
    let mut buf = BytesMut::new();
    if Packet::ConnAck(ConnAck::new(code, false))
        .write(&mut buf, usize::MAX)
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&buf)).await;
    }
}

/// Who a CONNECT is, and whether its will is its own to leave; None (and
/// CONNACK "not authorized", counted) when not.
async fn admit(
    stream: &mut Stream,
    shared: &Shared,
    connect: &rumqttc::mqttbytes::v4::Connect,
    peer: std::net::SocketAddr,
    certificate: Option<[u8; 32]>,
) -> Option<Principal> {
    let hello = Hello {
        client_id: connect.client_id.clone(),
        username: connect.login.as_ref().map(|l| l.username.clone()),
        password: connect.login.as_ref().map(|l| l.password.clone()),
        peer,
        certificate,
    };
    let denied = match (shared.settings.authenticate)(hello).await {
        Ok(p) => match connect
            .last_will
            .as_ref()
            .map(|w| (identity::may_will(&p, &w.topic), &w.topic))
        {
            Some((Err(reason), topic)) => (reason, format!("will on {topic}")),
            _ => return Some(p),
        },
        Err(reason) => {
            let who = connect.login.as_ref().map_or("", |l| l.username.as_str());
            (reason, format!("CONNECT from {peer} as `{who}`"))
        }
    };
    shared.deny(denied.0, &connect.client_id, &denied.1);
    refuse(stream, shared, ConnectReturnCode::NotAuthorized).await;
    None
}

/// The key of a connection's session. A device's sessions are keyed with
/// its user name: choosing another client's id reaches only a session of
/// one's own. An empty client id is `auto-{id}`.
fn session_key(principal: &Principal, client_id: String, id: u64) -> Arc<str> {
    let named = if client_id.is_empty() {
        format!("auto-{id}")
    } else {
        client_id
    };
    match principal {
        Principal::Device(who) => format!("{named}@{}", who.username()).into(),
        Principal::Gateway | Principal::Anonymous => named.into(),
    }
}

/// Takes the CONNECT and attaches the session; None when refused or gone.
async fn open(
    mut stream: Stream,
    peer: std::net::SocketAddr,
    certificate: Option<[u8; 32]>,
    shared: &Arc<Shared>,
) -> Option<Conn> {
    let settings = &shared.settings;
    let mut rbuf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(
        settings.connect_timeout,
        read_packet(&mut stream, &mut rbuf, settings.max_packet),
    )
    .await;
    let fail = |kind, detail: &dyn std::fmt::Display| {
        shared.protocol_error(kind, "", detail);
        None
    };
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Err(Error::InvalidProtocol | Error::InvalidProtocolLevel(_))) => {
            refuse(&mut stream, shared, ConnectReturnCode::RefusedProtocolVersion).await;
            return None;
        }
        // Closed before a CONNECT, or silent until the timeout: a port probe.
        Ok(Err(Error::Io(_))) => return None,
        Err(_) if rbuf.is_empty() => return None,
        Err(_) => return fail("incomplete packet", &"no whole CONNECT in time"),
        Ok(Err(e)) => return fail(kind(&e), &e),
        Ok(Ok(p)) => return fail("unexpected packet", &format!("{p:?} before CONNECT")),
    };
    let refusal = if connect.protocol != Protocol::V4 {
        Some(ConnectReturnCode::RefusedProtocolVersion)
    } else if connect.client_id.is_empty() && !connect.clean_session {
        Some(ConnectReturnCode::BadClientId)
    } else {
        None
    };
    if let Some(code) = refusal {
        refuse(&mut stream, shared, code).await;
        return None;
    }
    if let Some(will) = connect.last_will.as_ref().filter(|w| !router::valid_topic(&w.topic)) {
        return fail("invalid topic", &format!("will topic {}", will.topic));
    }
    let principal = admit(&mut stream, shared, &connect, peer, certificate).await?;
    let id = shared.next_id.fetch_add(1, Relaxed);
    let client = session_key(&principal, connect.client_id, id);
    let (tx, out_rx) = mpsc::channel(settings.outgoing_queue.max(1));
    let (kill, present, queued) = loop {
        let (kill_tx, kill_rx) = oneshot::channel();
        let link = Link {
            id,
            tx: tx.clone(),
            kill: Some(kill_tx),
        };
        let attach = shared
            .state()
            .attach(&client, connect.clean_session, link, settings, &shared.stats);
        match attach {
            Attach::Done { present, queued } => break (kill_rx, present, queued),
            Attach::Full => {
                refuse(&mut stream, shared, ConnectReturnCode::ServiceUnavailable).await;
                return None;
            }
            Attach::Busy { kill, tx } => {
                tracing::debug!(%client, "MQTT client id taken over by a new connection");
                if let Some(kill) = kill {
                    let _ = kill.send(());
                }
                // The old connection hands its session back, publishes its will, then closes its queue.
                tx.closed().await;
            }
        }
    };
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let keep_alive = (connect.keep_alive > 0).then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let (rd, wr) = tokio::io::split(stream);
    let mut conn = Conn {
        shared: shared.clone(),
        client,
        principal,
        id,
        rd,
        wr,
        rbuf,
        wbuf: BytesMut::new(),
        out_rx,
        kill,
        ack_tx,
        ack_rx,
        acks: AckQueue::default(),
        inflight: VecDeque::new(),
        waiting: VecDeque::new(),
        pkid: 0,
        keep_alive,
        will: connect.last_will,
    };
    shared.stats.connects_total.fetch_add(1, Relaxed);
    tracing::debug!(client = %conn.client, present, "MQTT client connected");
    conn.put(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, present)));
    for p in queued {
        conn.deliver(p);
    }
    Some(conn)
}

/// Waits for the pending publish, if any.
async fn wait(pending: &mut Option<Pending>) {
    match pending {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

struct Conn {
    shared: Arc<Shared>,
    client: Arc<str>,
    /// Who it proved to be: what it may publish and subscribe to.
    principal: Principal,
    id: u64,
    rd: ReadHalf<Stream>,
    wr: WriteHalf<Stream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Publishes routed to this client.
    out_rx: mpsc::Receiver<Publish>,
    kill: oneshot::Receiver<()>,
    ack_tx: mpsc::UnboundedSender<AckEvent>,
    ack_rx: mpsc::UnboundedReceiver<AckEvent>,
    acks: AckQueue,
    /// Sent QoS 1 publishes awaiting their PUBACK, oldest first.
    inflight: VecDeque<Publish>,
    /// QoS 1 publishes waiting for room in `inflight`.
    waiting: VecDeque<Publish>,
    pkid: u16,
    keep_alive: Option<Duration>,
    will: Option<LastWill>,
}

impl Conn {
    fn deadline(&self) -> Instant {
        Instant::now() + self.keep_alive.unwrap_or(Duration::from_hours(24))
    }

    async fn run(&mut self, stop: &mut watch::Receiver<()>) -> End {
        let mut pending: Option<Pending> = None;
        let mut deadline = self.deadline();
        loop {
            // Packets already read, in order, until one waits for the gateway.
            while pending.is_none() {
                match Packet::read(&mut self.rbuf, self.shared.settings.max_packet) {
                    Ok(packet) => {
                        deadline = self.deadline();
                        match self.handle(packet) {
                            Step::Go => {}
                            Step::Ingress(f) => pending = Some(f),
                            Step::End(end) => return end,
                        }
                    }
                    Err(Error::InsufficientBytes(_)) => break,
                    Err(e) => return self.protocol_error(kind(&e), &e),
                }
            }
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(4096);
            }
            let room = self.wbuf.len() < WRITE_HIGH && self.waiting.len() < self.shared.settings.outgoing_queue;
            tokio::select! {
                r = self.rd.read_buf(&mut self.rbuf), if pending.is_none() => match r {
                    Ok(0) => return End::Lost("closed by the client"),
                    Ok(_) => {}
                    Err(_) => return End::Lost("read error"),
                },
                () = wait(&mut pending), if pending.is_some() => {
                    pending = None;
                    // Not reading was the broker's doing: the node's silence meanwhile is no fault.
                    deadline = self.deadline();
                }
                r = self.wr.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => if r.is_err() {
                    return End::Lost("write error");
                },
                p = self.out_rx.recv(), if room => match p {
                    Some(p) => self.deliver(p),
                    None => return End::Lost("detached"),
                },
                Some(event) = self.ack_rx.recv() => match event {
                    AckEvent::Done(seq) => self.release(seq),
                    AckEvent::Dropped => {
                        tracing::warn!(client = %self.client, "the gateway dropped a message without committing it: closing, so the node sends it again");
                        return End::Lost("message dropped unacknowledged");
                    }
                },
                () = tokio::time::sleep_until(deadline), if pending.is_none() && self.keep_alive.is_some() => {
                    return End::Lost("keep-alive timeout");
                }
                _ = &mut self.kill => return End::Lost("taken over"),
                _ = stop.changed() => return End::Stop,
            }
        }
    }

    fn handle(&mut self, packet: Packet) -> Step {
        match packet {
            Packet::Publish(p) => return self.publish(p),
            Packet::PubAck(a) => self.acked(a.pkid),
            Packet::PubRel(r) => self.put(&Packet::PubComp(PubComp::new(r.pkid))),
            // Outbound QoS is at most 1: nothing of ours to complete.
            Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::Subscribe(s) => {
                let mut retained = Vec::new();
                let codes = {
                    let mut state = self.shared.state();
                    let (shared, principal, client) = (&self.shared, &self.principal, &self.client);
                    let mut grant = |path: &str, qos| {
                        if !router::valid_filter(path) {
                            return SubscribeReasonCode::Failure;
                        }
                        if let Err(reason) = identity::may_subscribe(principal, path) {
                            shared.deny(reason, client, path);
                            return SubscribeReasonCode::Failure;
                        }
                        let qos = router::min_qos(qos, QoS::AtLeastOnce);
                        retained.extend(state.subscribe(&self.client, path, qos));
                        SubscribeReasonCode::Success(qos)
                    };
                    s.filters.iter().map(|f| grant(&f.path, f.qos)).collect()
                };
                self.put(&Packet::SubAck(SubAck::new(s.pkid, codes)));
                for p in retained {
                    self.deliver(p);
                }
            }
            Packet::Unsubscribe(u) => {
                let mut state = self.shared.state();
                u.topics.iter().for_each(|f| state.unsubscribe(&self.client, f));
                drop(state);
                self.put(&Packet::UnsubAck(UnsubAck::new(u.pkid)));
            }
            Packet::PingReq => self.put(&Packet::PingResp),
            Packet::Disconnect => return Step::End(End::Disconnect),
            p @ (Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                return Step::End(self.protocol_error("unexpected packet", &format!("{p:?}")));
            }
        }
        Step::Go
    }

    /// A client's publish: to subscribers, and to the gateway's lane if it has one.
    fn publish(&mut self, p: Publish) -> Step {
        if !router::valid_topic(&p.topic) {
            return Step::End(self.protocol_error("invalid topic", &p.topic));
        }
        self.shared.stats.received_total.fetch_add(1, Relaxed);
        let seq = (p.qos != QoS::AtMostOnce).then(|| self.acks.received(p.pkid, p.qos));
        if let Err(reason) = identity::may_publish(&self.principal, &p.topic) {
            // Dropped, and acknowledged (MQTT 3.1.1 has no refusal for a
            // publish): a misconfigured node must not resend it forever.
            self.shared.deny(reason, &self.client, &p.topic);
            if let Some(seq) = seq {
                self.release(seq);
            }
            return Step::Go;
        }
        self.shared.route(&p);
        let Some(tx) = self.shared.ingress.sender(&p.topic).cloned() else {
            if let Some(seq) = seq {
                self.release(seq);
            }
            return Step::Go;
        };
        let ack = seq.map(|seq| Ack {
            tx: Some(self.ack_tx.clone()),
            seq,
        });
        match tx.try_send(Inbound::new(p, self.client.clone(), ack, false)) {
            Err(TrySendError::Full(inbound)) => Step::Ingress(Box::pin(async move { _ = tx.send(inbound).await })),
            // Taken; or the lane is closed, and the dropped ack closes this connection.
            _ => Step::Go,
        }
    }

    /// Publish number `seq` is done: send the acknowledgements now due.
    fn release(&mut self, seq: u64) {
        for (pkid, qos) in self.acks.done(seq) {
            let ack = if qos == QoS::ExactlyOnce {
                Packet::PubRec(PubRec::new(pkid))
            } else {
                Packet::PubAck(PubAck::new(pkid))
            };
            self.put(&ack);
        }
    }

    /// Sends a routed publish, within the inflight window for QoS 1.
    fn deliver(&mut self, mut p: Publish) {
        if p.qos != QoS::AtMostOnce {
            if self.inflight.len() >= MAX_INFLIGHT {
                self.waiting.push_back(p);
                return;
            }
            // A message resent from the session keeps its id, unless the id is taken.
            if p.pkid == 0 || self.inflight.iter().any(|q| q.pkid == p.pkid) {
                p.pkid = self.next_pkid();
            }
            self.inflight.push_back(p.clone());
        }
        self.put(&Packet::Publish(p));
        self.shared.stats.delivered_total.fetch_add(1, Relaxed);
    }

    fn next_pkid(&mut self) -> u16 {
        loop {
            self.pkid = self.pkid.wrapping_add(1).max(1);
            if !self.inflight.iter().any(|q| q.pkid == self.pkid) {
                return self.pkid;
            }
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some(i) = self.inflight.iter().position(|p| p.pkid == pkid) {
            self.inflight.remove(i);
        }
        while self.inflight.len() < MAX_INFLIGHT
            && let Some(p) = self.waiting.pop_front()
        {
            self.deliver(p);
        }
    }

    fn put(&mut self, packet: &Packet) {
        if let Err(e) = packet.write(&mut self.wbuf, usize::MAX) {
            tracing::debug!(client = %self.client, error = %e, "MQTT packet not encoded");
        }
    }

    fn protocol_error(&self, kind: &'static str, detail: &dyn std::fmt::Display) -> End {
        self.shared.protocol_error(kind, &self.client, detail);
        End::Lost("protocol error")
    }

    /// Hands undelivered QoS 1 messages back to the session, publishes the
    /// will if the client vanished, and only then lets a connection taking
    /// over proceed (by dropping `out_rx`), so the will comes before its CONNACK.
    async fn close(mut self, end: End, stop: &mut watch::Receiver<()>) {
        let why = match end {
            End::Disconnect => "disconnected",
            End::Stop => "broker shutdown",
            End::Lost(why) => why,
        };
        tracing::debug!(client = %self.client, why, "MQTT connection closed");
        drop((self.rd, self.wr));
        let mut left: Vec<Publish> = self.inflight.drain(..).map(|p| Publish { dup: true, ..p }).collect();
        left.extend(self.waiting.drain(..));
        {
            // Under the lock, so that nothing is routed here between drain and detach.
            let mut state = self.shared.state();
            while let Ok(p) = self.out_rx.try_recv() {
                left.push(p);
            }
            left.retain(|p| p.qos != QoS::AtMostOnce);
            state.detach(&self.client, self.id, left, &self.shared.settings, &self.shared.stats);
        }
        let Some(will) = self.will.take().filter(|_| matches!(end, End::Lost(_))) else {
            return;
        };
        self.shared.stats.wills_total.fetch_add(1, Relaxed);
        let mut p = Publish::from_bytes(will.topic, will.qos, will.message);
        p.retain = will.retain;
        self.shared.route(&p);
        if let Some(tx) = self.shared.ingress.sender(&p.topic) {
            let inbound = Inbound::new(p, self.client.clone(), None, true);
            tokio::select! {
                _ = tx.send(inbound) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
