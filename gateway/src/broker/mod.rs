//! The gateway's own MQTT 3.1.1 broker, where a PUBACK means durable.
//!
//! A general-purpose broker acknowledges a node's QoS 1 message once it is in
//! its memory, which dies with the process; and it drops what a node sends
//! before the gateway has subscribed. This one hands every node publish
//! straight to the gateway ([`Ingress`]) and sends the PUBACK only when the
//! gateway calls [`Ack::done`], after its commit. While the gateway's lane is
//! full, the connection stops reading its socket: TCP carries the back-pressure
//! to the node, and the broker buffers nothing.
//!
//! ```text
//! node ─► connection task ─┬─► ingress lane (send().await) ─► gateway ─► Ack::done ─┐
//!    ◄── PUBACK, in order ─┼───────────────────────────────────────────────────────┘
//!                          └─► router (sessions, subscriptions, retained) ─► subscribers
//! ```
//!
//! Supported: MQTT 3.1.1 (protocol level 4) over plain TCP and TLS; QoS 0 and 1 both
//! ways; inbound QoS 2 (PUBREC once committed, PUBCOMP on PUBREL; delivered at
//! least once, like QoS 1: a resend after a lost PUBREC is handed over again,
//! and the gateway deduplicates by `seq`); subscriptions with `+` and `#`,
//! granted at most QoS 1; `$` topics never match a leading wildcard; retained
//! messages (at most [`Settings::max_retained`]); wills, published when a
//! connection ends without DISCONNECT (socket error or EOF, keep-alive
//! timeout, protocol error, takeover by the same client id) but not on broker
//! shutdown; clean and persistent sessions (QoS 1 messages kept while offline,
//! unacknowledged ones resent with DUP on reconnect); keep-alive (1.5 ×);
//! an authentication hook ([`Settings::authenticate`]) and per-principal
//! rules on publish, subscribe and will ([`crate::identity`]); a device's
//! sessions are its own (their key carries its user name), so no client can
//! take over another's session by choosing its client id.
//!
//! Not supported: MQTT 3.1 (`MQIsdp`, answered "unacceptable protocol
//! version") and 5; outbound QoS 2; shared subscriptions; WebSocket;
//! sessions and retained messages survive only as long as the process (they
//! live in memory); QoS 0 messages are not kept for offline sessions. A
//! client gets at most 100 unacknowledged QoS 1 publishes at a time (more
//! wait in its queue). A generated client id (empty id, clean session) is
//! `auto-N`; a client choosing such an id itself may be taken over.

mod conn;
mod order;
mod router;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::identity::{Denial, Principal};

/// What a CONNECT presents, for the [`Authenticator`].
#[derive(Clone)]
pub struct Hello {
    /// Its client id (empty for a generated one).
    pub client_id: String,
    /// Its user name, if any.
    pub username: Option<String>,
    /// Its password, if any.
    pub password: Option<String>,
    /// Where it connects from.
    pub peer: SocketAddr,
    /// The SHA-256 of the client certificate it proved it holds (TLS listener only).
    pub certificate: Option<[u8; 32]>,
}

impl std::fmt::Debug for Hello {
    // The password stays out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Decides who a CONNECT is, or why it may not connect. Asynchronous: a
/// password check may take a blocking thread (Argon2) without holding up
/// the connections already served.
pub type Authenticator =
    Arc<dyn Fn(Hello) -> Pin<Box<dyn Future<Output = Result<Principal, Denial>> + Send>> + Send + Sync>;

/// Limits and hooks of the broker.
#[derive(Clone)]
pub struct Settings {
    /// Largest packet taken (remaining length); a larger one closes the connection (a protocol error).
    pub max_packet: usize,
    /// Connected clients at most; beyond, CONNACK "server unavailable" (counted as refused).
    pub max_connections: usize,
    /// Publishes queued per connection for sending; beyond, a publish to it is dropped and counted,
    /// so one slow subscriber never holds up the others.
    pub outgoing_queue: usize,
    /// QoS 1 messages kept per offline persistent session; beyond, the oldest is dropped and counted.
    pub session_queue: usize,
    /// Time a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// Retained messages at most; a new topic beyond is not retained (counted).
    pub max_retained: usize,
    /// Asked for every CONNECT; a denial refuses it with "not authorized". By default everyone
    /// is [`Principal::Anonymous`]; device identity (CONTRACT §8, [`crate::identity`]) plugs in here.
    /// What a principal may publish, subscribe to and leave as a will is
    /// [`crate::identity`]'s rules.
    pub authenticate: Authenticator,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_packet: 256 * 1024,
            max_connections: 10_000,
            outgoing_queue: 1024,
            session_queue: 1000,
            connect_timeout: Duration::from_secs(10),
            max_retained: 10_000,
            authenticate: Arc::new(|_| Box::pin(std::future::ready(Ok(Principal::Anonymous)))),
        }
    }
}

/// Which lane of the gateway a publish goes to, or none (only routed to subscribers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Events, births, deaths: never wait behind telemetry.
    Priority,
    /// Telemetry.
    Bulk,
    /// Not for the gateway.
    None,
}

/// A node's publish handed to the gateway.
#[derive(Debug)]
pub struct Inbound {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The publishing client.
    pub client_id: Arc<str>,
    /// Some for QoS 1 (and QoS 2) publishes: call `done()` once committed; the PUBACK then goes out
    /// on that connection, in arrival order with the connection's other QoS 1 publishes (MQTT 3.1.1
    /// §4.6: a `done()` of a later message waits for every earlier message of that connection to be done).
    /// Dropped without `done()`: no PUBACK ever, and the broker closes that connection so the node
    /// resends after reconnecting. If the connection is gone, `done()` is a no-op.
    pub ack: Option<Ack>,
    /// Whether this is a will the broker published for a client that vanished.
    pub will: bool,
}

impl Inbound {
    fn new(p: Publish, client_id: Arc<str>, ack: Option<Ack>, will: bool) -> Self {
        Self {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            client_id,
            ack,
            will,
        }
    }
}

/// What an [`Ack`] tells its connection.
#[derive(Debug)]
enum AckEvent {
    Done(u64),
    Dropped,
}

/// The acknowledgement a node waits for; see [`Inbound::ack`].
#[derive(Debug)]
pub struct Ack {
    tx: Option<mpsc::UnboundedSender<AckEvent>>,
    seq: u64,
}

impl Ack {
    /// The message is committed: its PUBACK may go out.
    pub fn done(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(AckEvent::Done(self.seq));
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(AckEvent::Dropped);
        }
    }
}

/// Where the broker hands publishes the gateway takes.
pub struct Ingress {
    /// The priority lane.
    pub priority: mpsc::Sender<Inbound>,
    /// The bulk lane.
    pub bulk: mpsc::Sender<Inbound>,
    /// Chooses the lane from the topic.
    pub lane: fn(&str) -> Lane,
}

impl Ingress {
    fn sender(&self, topic: &str) -> Option<&mpsc::Sender<Inbound>> {
        match (self.lane)(topic) {
            Lane::Priority => Some(&self.priority),
            Lane::Bulk => Some(&self.bulk),
            Lane::None => None,
        }
    }
}

/// Counters, read by the gateway's /metrics (plain atomics; the gateway copies them into Prometheus).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connected clients (a gauge).
    pub connections: AtomicI64,
    /// Connections accepted (CONNACK success).
    pub connects_total: AtomicU64,
    /// Connections refused by CONNACK (protocol version, client id, authentication, capacity).
    pub refused_total: AtomicU64,
    /// Publishes received from clients.
    pub received_total: AtomicU64,
    /// Publishes sent to subscribers.
    pub delivered_total: AtomicU64,
    /// QoS 0 publishes not sent: the subscriber's queue was full.
    pub dropped_qos0_total: AtomicU64,
    /// QoS 1 publishes not sent: queue full, or the oldest of a full offline session.
    pub dropped_qos1_total: AtomicU64,
    /// Retained messages not kept: `max_retained` reached.
    pub dropped_retained_total: AtomicU64,
    /// Connections closed for a malformed, oversized or unexpected packet.
    pub protocol_errors_total: AtomicU64,
    /// Wills published.
    pub wills_total: AtomicU64,
    /// Refusals by [`Denial`] (in [`Denial::ALL`] order): CONNECTs, publishes, subscriptions.
    pub denied: [AtomicU64; Denial::ALL.len()],
}

impl Stats {
    /// Refusals for `reason` so far.
    pub fn denied(&self, reason: Denial) -> u64 {
        Denial::ALL
            .iter()
            .position(|d| *d == reason)
            .map_or(0, |i| self.denied[i].load(Relaxed))
    }
}

/// What the acceptor and every connection share.
struct Shared {
    settings: Settings,
    ingress: Ingress,
    stats: Stats,
    state: Mutex<router::State>,
    next_id: AtomicU64,
    /// Kinds of protocol error already logged at warn.
    warned: Mutex<HashSet<&'static str>>,
    /// When each denial reason was last logged at warn (ms since start).
    denial_logged: Mutex<[Option<std::time::Instant>; Denial::ALL.len()]>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, router::State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self, p: &Publish) {
        self.state().publish(p, &self.settings, &self.stats);
    }

    /// Counts a refusal, and logs it: at warn at most once a minute per
    /// reason (a guesser or a misconfigured fleet must not flood the log),
    /// the rest at debug.
    fn deny(&self, reason: Denial, client: &str, detail: &str) {
        let Some(i) = Denial::ALL.iter().position(|d| *d == reason) else {
            return;
        };
        self.stats.denied[i].fetch_add(1, Relaxed);
        let now = std::time::Instant::now();
        let loud = {
            let mut last = self.denial_logged.lock().unwrap_or_else(PoisonError::into_inner);
            let due = last[i].is_none_or(|t| now.duration_since(t) >= Duration::from_mins(1));
            if due {
                last[i] = Some(now);
            }
            due
        };
        if loud {
            tracing::warn!(
                reason = reason.label(),
                client,
                detail,
                "MQTT refused (more of this reason within a minute are logged at debug; all are counted in fm_mqtt_denied_total)"
            );
        } else {
            tracing::debug!(reason = reason.label(), client, detail, "MQTT refused");
        }
    }

    /// Counts a protocol error; the first of each kind is a warning, the
    /// rest per-client noise.
    fn protocol_error(&self, kind: &'static str, client: &str, detail: &dyn std::fmt::Display) {
        self.stats.protocol_errors_total.fetch_add(1, Relaxed);
        if self.warned.lock().unwrap_or_else(PoisonError::into_inner).insert(kind) {
            tracing::warn!(client, %detail, "MQTT {kind}; the connection is closed (later ones are logged at debug)");
        } else {
            tracing::debug!(client, %detail, "MQTT {kind}; the connection is closed");
        }
    }
}

/// A handle on a running broker.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// Serves MQTT on `listener` until `shutdown` resolves (then closes every connection without
    /// publishing wills, and returns).
    ///
    /// Publishes from clients: if `(ingress.lane)(topic)` is Priority/Bulk, the publish is sent into
    /// that channel with `send().await`; meanwhile that connection reads nothing more from its
    /// socket. Every publish is also routed to matching subscribers (QoS = min(publish, subscription)).
    pub fn start(
        listener: TcpListener,
        settings: Settings,
        ingress: Ingress,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (Broker, JoinHandle<()>) {
        let shared = Arc::new(Shared {
            settings,
            ingress,
            stats: Stats::default(),
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            warned: Mutex::default(),
            denial_logged: Mutex::default(),
        });
        let task = tokio::spawn(accept(listener, shared.clone(), None, shutdown));
        (Broker { shared }, task)
    }

    /// The broker's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Closes every connection of `username` (a revoked device) at once;
    /// its next CONNECT is checked again.
    pub fn kick(&self, username: &str) {
        self.shared.state().kick(&format!("@{username}"));
    }

    /// Serves MQTT over TLS on `listener` too, until `shutdown`: the same
    /// sessions, rules and lanes as the plain listener.
    pub fn serve_tls(
        &self,
        listener: TcpListener,
        tls: tokio_rustls::TlsAcceptor,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(accept(listener, self.shared.clone(), Some(tls), shutdown))
    }

    /// Publishes from inside the process (routed to subscribers only; not to the ingress).
    /// An invalid topic or a payload over `max_packet` is dropped with a warning.
    pub fn publish(&self, topic: &str, payload: Bytes, qos: QoS, retain: bool) {
        if !router::valid_topic(topic) || payload.len() > self.shared.settings.max_packet {
            tracing::warn!(
                topic,
                len = payload.len(),
                "invalid topic or payload too large: not published"
            );
            return;
        }
        let mut p = Publish::from_bytes(topic, qos, payload);
        p.retain = retain;
        self.shared.route(&p);
    }
}

/// Accepts connections until `shutdown`, then stops them all and waits for them.
async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = watch::channel(());
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "an MQTT connection task failed");
                }
            }
            r = listener.accept() => match r {
                Ok((stream, peer)) => _ = tasks.spawn(conn::accepted(stream, peer, tls.clone(), shared.clone(), stopped.clone())),
                Err(e) => {
                    // Out of file descriptors, typically: let some connections end first.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(stop);
    while tasks.join_next().await.is_some() {}
}
