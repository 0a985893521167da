//! The MQTT uplink: one broker connection at a time, on [`minimq`].
//!
//! Why minimq: it is a maintained, `no_std`, heap-free MQTT 5 client with
//! caller-owned buffers and no `unsafe` needed on our side. `rust-mqtt` (the
//! other candidate) needs either a heap or an `unsafe` reset of its bump
//! buffer after every received packet, which our `forbid(unsafe_code)` rules
//! out on a long-running node. minimq's cost is `embassy-time` for keepalive
//! timing: the board provides its time driver (host tests use embassy-time's
//! `std` driver).
//!
//! The CONNECT carries the node's credentials when it has a password
//! (username `{site}/{device}`, contract §8). The link is plain TCP: TLS
//! would sit under `minimq::Io` (see `docs/firmware.md` for its cost).
//!
//! What we add on top (what no client does): the Sparkplug-style session — a
//! new `bdseq` in the last will of every connection (so each connection gets a
//! fresh minimq session), the birth first, commands routed to the node, and
//! payloads leaving the node's outbox only when the broker acknowledged them.
//!
//! ```text
//! connect(will: death bdseq=n) → birth(bdseq=n) → subscribe cmd
//!   loop: publish outbox front (QoS 1) → PUBACK → pop
//!         poll ≤ 100 ms → cmd? → node.on_command → ack queued
//! any error → node.on_disconnect() (queued payloads become replays) → caller reconnects
//! ```

use core::cell::RefCell;

use embassy_time::{Duration, with_timeout};
use minimq::{Buffers, ConfigBuilder, Publication, QoS, Session, TopicFilter, Will};
use protocol::limits::NODE_RX_BUFFER;
use protocol::topic::MAX_TOPIC_LEN;
use protocol::{Kind, Topic};

use crate::hal::Millis;
use crate::node::{ClassLogic, MAX_PAYLOAD, Node};

/// How long one poll for inbound traffic waits before the outbox is looked at again.
pub const POLL_MS: u64 = 100;
/// Keepalive announced to the broker.
pub const KEEPALIVE_S: u16 = 30;

/// Why a connection ended.
#[derive(Debug)]
pub enum LinkError<E> {
    /// The client id or a topic does not fit minimq's limits.
    Config(minimq::ConfigError),
    /// The broker or the transport failed.
    Mqtt(minimq::Error<E>),
    /// The node could not encode its will or birth.
    Encode(protocol::EncodeError),
}

impl<E> From<minimq::Error<E>> for LinkError<E> {
    fn from(e: minimq::Error<E>) -> Self {
        LinkError::Mqtt(e)
    }
}

impl<P, E> From<minimq::PubError<P, E>> for LinkError<E> {
    fn from(e: minimq::PubError<P, E>) -> Self {
        match e {
            minimq::PubError::Session(e) => LinkError::Mqtt(e),
            // Our payloads are plain bytes: serialization cannot fail.
            minimq::PubError::Payload(_) => LinkError::Mqtt(minimq::Error::InvalidRequest),
        }
    }
}

/// The node's topics, built once.
#[derive(Clone, Debug)]
pub struct NodeTopics {
    base: Topic,
}

impl NodeTopics {
    /// Topics for the node identified by `topic` (its kind is ignored).
    #[must_use]
    pub fn new(topic: Topic) -> Self {
        NodeTopics { base: topic }
    }

    /// The topic for one kind.
    #[must_use]
    pub fn topic(&self, kind: Kind) -> heapless::String<MAX_TOPIC_LEN> {
        self.base.with_kind(kind).to_heapless()
    }
}

/// Runs one broker connection over an established transport until it fails.
///
/// The node is shared with the sampling loop through a `RefCell`; it is never
/// borrowed across an `await`. On return (or when the future is dropped) the
/// node has been told the link is down, so what it queues from now on is replayed as history; the caller
/// reconnects (with backoff) and calls this again.
///
/// `buffer` holds minimq's receive and transmit buffers (`rx_len` bytes for
/// receive, at least [`NODE_RX_BUFFER`] plus topic and header).
pub async fn run_connection<L: ClassLogic, IO: minimq::Io>(
    node: &RefCell<Node<L>>,
    now: impl Fn() -> Millis,
    topics: &NodeTopics,
    client_id: &str,
    io: IO,
    buffer: &mut [u8],
    rx_len: usize,
) -> LinkError<IO::Error> {
    // Also on cancellation: a dropped future must still mark the link down.
    let _down = LinkDown(node);
    let result = serve(node, &now, topics, client_id, io, buffer, rx_len).await;
    match result {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Tells the node its link is down when the connection ends, however it ends.
struct LinkDown<'a, L: ClassLogic>(&'a RefCell<Node<L>>);

impl<L: ClassLogic> Drop for LinkDown<'_, L> {
    fn drop(&mut self) {
        // Never borrowed across an await, so free whenever a future is dropped.
        if let Ok(mut node) = self.0.try_borrow_mut() {
            node.on_disconnect();
        }
    }
}

/// An empty type: [`serve`] only ever returns an error.
enum Never {}

async fn serve<L: ClassLogic, IO: minimq::Io>(
    node: &RefCell<Node<L>>,
    now: &impl Fn() -> Millis,
    topics: &NodeTopics,
    client_id: &str,
    io: IO,
    buffer: &mut [u8],
    rx_len: usize,
) -> Result<Never, LinkError<IO::Error>> {
    let mut will_buf = [0u8; 32];
    let will_len = node.borrow().will(&mut will_buf).map_err(LinkError::Encode)?;
    let death_topic = topics.topic(Kind::Death);
    let will = Will::new(&death_topic, &will_buf[..will_len], &[])
        .map_err(LinkError::Config)?
        .qos(QoS::AtLeastOnce);
    // Contract §8: a broker with `auth = "devices"` takes `{site}/{device}`
    // and the password the gateway issued; without one configured the node
    // connects anonymously (a loopback broker with `auth = "none"`).
    let login = node
        .borrow()
        .credentials()
        .and_then(|c| Some((c.username(), c.password.clone()?)));
    let mut config = ConfigBuilder::new(Buffers::split(buffer, rx_len).map_err(LinkError::Config)?)
        .client_id(client_id)
        .and_then(|c| c.will(will))
        .map_err(LinkError::Config)?
        .keepalive_interval(KEEPALIVE_S);
    if let Some((user, password)) = &login {
        config = config
            .auth(user.as_str(), password.as_bytes())
            .map_err(LinkError::Config)?;
    }
    let mut session = Session::new(config);
    let mut conn = session.connect(io).await?;

    let mut payload = [0u8; MAX_PAYLOAD];
    let birth = node
        .borrow_mut()
        .on_connect(now(), &mut payload)
        .map_err(LinkError::Encode)?;
    let op = conn
        .publish(Publication::bytes(&topics.topic(Kind::Birth), &payload[..birth.len]).qos(QoS::AtLeastOnce))
        .await?;
    let cmd_topic = topics.topic(Kind::Cmd);
    let mut inbound = [0u8; NODE_RX_BUFFER];
    // The birth is not in the outbox: its completion pops nothing.
    let mut in_flight = op.map(|op| (op, false));
    conn.subscribe(&[TopicFilter::new(&cmd_topic)], &[]).await?;
    loop {
        // One QoS 1 publish in flight at a time keeps the outbox in order.
        match &in_flight {
            Some((op, _)) if conn.is_invalidated(op) => return Err(LinkError::Mqtt(minimq::Error::Disconnected)),
            Some((op, from_outbox)) if conn.is_complete(op) => {
                if *from_outbox {
                    node.borrow_mut().published();
                }
                in_flight = None;
            }
            _ => {}
        }
        if in_flight.is_none() {
            let next = node.borrow_mut().next_payload(&mut payload);
            if let Some(out) = next {
                let topic = topics.topic(out.kind);
                let op = conn
                    .publish(Publication::bytes(&topic, &payload[..out.len]).qos(QoS::AtLeastOnce))
                    .await?;
                match op {
                    Some(op) => in_flight = Some((op, true)),
                    // A QoS 1 publish always has an op; without one it is already sent.
                    None => node.borrow_mut().published(),
                }
                continue;
            }
        }
        if let Ok(polled) = with_timeout(Duration::from_millis(POLL_MS), conn.poll()).await
            && let Some(publish) = polled?
            && publish.topic() == cmd_topic.as_str()
        {
            let bytes = publish.payload();
            if let Some(dst) = inbound.get_mut(..bytes.len()) {
                dst.copy_from_slice(bytes);
                let len = bytes.len();
                node.borrow_mut().on_command(now(), &inbound[..len]);
            } else {
                // Oversized: counted like any undecodable command.
                node.borrow_mut().on_command(now(), &[]);
            }
        }
    }
}
