//! A simulated node's MQTT link: a real MQTT client to a real broker (the
//! gateway's embedded one, or Mosquitto), carrying exactly what the firmware
//! node queues — its birth on connect, its will, its data, events and acks,
//! on its own topics — and handing it the commands the gateway sends. The
//! node's payloads are the bytes the board would put on the wire.
//!
//! The link follows the broker connection as the board's does: when the
//! connection drops (a broker restart, a partition) the node is told, keeps
//! its samples in its outbox, and on the next connection announces a new
//! session and sends what it kept.
//!
//! Faults a scenario injects on the link ([`LinkFaults`]): payloads lost on
//! the way (the node believes them sent; the gateway must notice the gap),
//! payloads delayed, and a partition (the connection cut without a
//! DISCONNECT, so the broker publishes the will).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use firmware::hal::Millis;
use protocol::DeviceClass;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::device::NodeLink;

/// Why the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The broker refused or dropped the request.
    #[error("mqtt: {0}")]
    Client(#[from] rumqttc::ClientError),
    /// The node could not encode a payload.
    #[error("encode: {0:?}")]
    Encode(protocol::EncodeError),
    /// No CONNACK in time.
    #[error("no connection to the broker at {0}")]
    Connect(String),
}

/// Faults injected on the link, set by the scenario's timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFaults {
    /// Payloads are lost on the way (the node believes them sent).
    pub drop: bool,
    /// Payloads arrive this many virtual ms late.
    pub delay_ms: u64,
    /// The link is cut: nothing goes through, the broker has the will.
    pub partitioned: bool,
}

/// What went over the link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Payloads handed to the broker connection (births included).
    pub published: u64,
    /// Payloads lost to an injected drop.
    pub dropped: u64,
    /// Sessions started (the first connection and every reconnection).
    pub sessions: u64,
    /// Commands handed to the node.
    pub commands: u64,
}

/// The connection as the client's event loop sees it.
#[derive(Debug, Default)]
struct Connection {
    up: AtomicBool,
    /// CONNACKs so far: a new one is a new session to announce.
    acks: AtomicU64,
}

/// A payload waiting for its time (an injected delay) or for room in the
/// client's queue.
struct Held {
    due: u64,
    topic: String,
    payload: Vec<u8>,
}

/// One node's link.
pub struct Uplink {
    host: String,
    port: u16,
    client_id: String,
    base: String,
    client: AsyncClient,
    conn: Arc<Connection>,
    announced: u64,
    commands: mpsc::UnboundedReceiver<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
    held: VecDeque<Held>,
    buf: Vec<u8>,
    /// The faults in force.
    pub faults: LinkFaults,
    /// What went over it.
    pub stats: LinkStats,
}

impl Uplink {
    /// Connects the node `site/class/device` to the broker at `host:port`
    /// with its will, waits for the broker's CONNACK (up to 5 s) and
    /// publishes the node's birth.
    ///
    /// # Errors
    /// [`LinkError`].
    pub async fn connect(
        host: &str,
        port: u16,
        ids: (&str, DeviceClass, &str),
        node: &mut dyn NodeLink,
        now: Millis,
    ) -> Result<Uplink, LinkError> {
        let mut link = Uplink::start(host, port, ids, node)?;
        link.wait_connected().await?;
        link.pump(node, now.0)?;
        Ok(link)
    }

    /// Starts the node's MQTT client towards `host:port`, with its will;
    /// it connects in the background ([`Uplink::wait_connected`]), and the
    /// first [`Uplink::pump`] after that announces the session. For callers
    /// that share the node and must not hold it while waiting.
    ///
    /// # Errors
    /// [`LinkError`] if the will does not encode.
    pub fn start(
        host: &str,
        port: u16,
        (site, class, device): (&str, DeviceClass, &str),
        node: &mut dyn NodeLink,
    ) -> Result<Uplink, LinkError> {
        let base = format!("fm/v1/{site}/{}/{device}", class.as_str());
        let client_id = format!("hil-{site}-{device}");
        let (client, conn, commands, task) = open(host, port, &client_id, &base, node)?;
        Ok(Uplink {
            host: host.into(),
            port,
            client_id,
            base,
            client,
            conn,
            announced: 0,
            commands,
            task,
            held: VecDeque::new(),
            buf: vec![0u8; 8192],
            faults: LinkFaults::default(),
            stats: LinkStats::default(),
        })
    }

    /// Waits (up to 5 s) for the broker's CONNACK.
    ///
    /// # Errors
    /// [`LinkError::Connect`] if none came.
    pub async fn wait_connected(&self) -> Result<(), LinkError> {
        for _ in 0..500 {
            if self.conn.acks.load(Ordering::SeqCst) > 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Err(LinkError::Connect(format!("{}:{}", self.host, self.port)))
    }

    /// Whether the broker connection is up.
    #[must_use]
    pub fn connected(&self) -> bool {
        self.conn.up.load(Ordering::SeqCst) && !self.faults.partitioned
    }

    /// Moves the link on at the node's virtual `now_ms`: follows the
    /// connection (telling the node it went down, or announcing a new
    /// session with its birth), then hands the client what the node queued
    /// and what a delay held back, as the faults in force allow. Returns how
    /// many payloads went to the broker connection. Never waits: a payload
    /// the client cannot take yet waits in the link, in order.
    ///
    /// # Errors
    /// [`LinkError`]; what was not published stays in the node's outbox.
    pub fn pump(&mut self, node: &mut dyn NodeLink, now_ms: u64) -> Result<u64, LinkError> {
        if !self.connected() {
            if node.link_up() {
                node.on_disconnect();
            }
            return Ok(0);
        }
        let before = self.stats.published;
        let acks = self.conn.acks.load(Ordering::SeqCst);
        if acks != self.announced {
            self.announced = acks;
            self.stats.sessions += 1;
            // A new session: the subscription and the birth again.
            self.client
                .try_subscribe(format!("{}/cmd", self.base), QoS::AtLeastOnce)?;
            let birth = node
                .on_connect(Millis(now_ms), &mut self.buf)
                .map_err(LinkError::Encode)?;
            let payload = self.buf[..birth.len].to_vec();
            self.queue(format!("{}/birth", self.base), payload, now_ms);
        }
        while let Some(out) = node.next_payload(&mut self.buf) {
            let topic = format!("{}/{}", self.base, out.kind.as_str());
            let payload = self.buf[..out.len].to_vec();
            // Handed to the client's QoS 1 session (which resends it after a
            // reconnection until the broker's PUBACK), or lost on purpose.
            node.published();
            if self.faults.drop {
                self.stats.dropped += 1;
                continue;
            }
            self.queue(topic, payload, now_ms);
        }
        while self.held.front().is_some_and(|h| h.due <= now_ms) {
            let Some(h) = self.held.pop_front() else { break };
            match self
                .client
                .try_publish(h.topic.clone(), QoS::AtLeastOnce, false, h.payload.clone())
            {
                Ok(()) => self.stats.published += 1,
                Err(rumqttc::ClientError::TryRequest(_)) => {
                    // The client's queue is full: keep it, and the order.
                    self.held.push_front(h);
                    break;
                }
                Err(e) => {
                    self.held.push_front(h);
                    return Err(e.into());
                }
            }
        }
        Ok(self.stats.published - before)
    }

    fn queue(&mut self, topic: String, payload: Vec<u8>, now_ms: u64) {
        self.held.push_back(Held {
            due: now_ms + self.faults.delay_ms,
            topic,
            payload,
        });
    }

    /// Cuts the link as a failing radio or router would: the TCP connection
    /// is dropped without a DISCONNECT, so the broker publishes the will.
    pub fn partition(&mut self) {
        self.faults.partitioned = true;
        self.task.abort();
        self.conn.up.store(false, Ordering::SeqCst);
    }

    /// Heals a partition: a new connection (and so, on the next
    /// [`Uplink::pump`], a new session with its birth).
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn heal(&mut self, node: &mut dyn NodeLink) -> Result<(), LinkError> {
        if !self.faults.partitioned {
            return Ok(());
        }
        let (client, conn, commands, task) = open(&self.host, self.port, &self.client_id, &self.base, node)?;
        self.client = client;
        self.conn = conn;
        self.announced = 0;
        self.commands = commands;
        self.task = task;
        self.faults.partitioned = false;
        Ok(())
    }

    /// Hands the node the commands that arrived.
    pub fn commands(&mut self, node: &mut dyn NodeLink, now: Millis) -> usize {
        let mut n = 0;
        while let Ok(c) = self.commands.try_recv() {
            node.on_command(now, &c);
            n += 1;
        }
        self.stats.commands += n as u64;
        n
    }
}

type Opened = (
    AsyncClient,
    Arc<Connection>,
    mpsc::UnboundedReceiver<Vec<u8>>,
    tokio::task::JoinHandle<()>,
);

/// A client with the node's will and the task that drives its event loop
/// (reconnecting after errors, as rumqttc does on the next poll).
fn open(host: &str, port: u16, client_id: &str, base: &str, node: &mut dyn NodeLink) -> Result<Opened, LinkError> {
    let mut buf = [0u8; 2048];
    let will_len = node.will(&mut buf).map_err(LinkError::Encode)?;
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_last_will(LastWill::new(
        format!("{base}/death"),
        buf[..will_len].to_vec(),
        QoS::AtLeastOnce,
        false,
    ));
    opts.set_keep_alive(std::time::Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let conn = Arc::new(Connection::default());
    let (tx, commands) = mpsc::unbounded_channel();
    let cmd_topic = format!("{base}/cmd");
    let state = Arc::clone(&conn);
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    state.acks.fetch_add(1, Ordering::SeqCst);
                    state.up.store(true, Ordering::SeqCst);
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                    if tx.send(p.payload.to_vec()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    state.up.store(false, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok((client, conn, commands, task))
}

impl Drop for Uplink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
