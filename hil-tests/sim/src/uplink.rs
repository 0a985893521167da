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
//!
//! The node logs in as `{site}/{device}` with its password when its
//! credentials have one (contract §8). The commands the simulated gateway
//! signs for the node ([`crate::device::Action::Command`]) are published on
//! the node's `cmd` topic by a client of their own (`hil-gw-{site}-{device}`,
//! standing in for the gateway's session), so they reach the node through
//! the broker as the gateway's would; the node's acks are noted as they
//! leave ([`Uplink::acks`]) for the scenario's `ack` expectations.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use firmware::hal::Millis;
use protocol::{DeviceClass, Kind, Message};
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
    /// Commands received on the node's `cmd` topic so far.
    commands: AtomicU64,
}

/// Publishes a command (topic, payload) on the gateway's behalf.
pub type CommandSink = Box<dyn Fn(&str, Vec<u8>) + Send + Sync>;

/// The QoS commands go out with (contract §1: `cmd` is QoS 1).
pub const COMMAND_QOS: QoS = QoS::AtLeastOnce;

/// An `ack` the node published, as the link saw it leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckSeen {
    /// The node's virtual ms when it was handed to the link.
    pub at_ms: u64,
    /// The command id.
    pub id: String,
    /// Whether the node did it.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

/// A `cmd` the link handed to the node (from the simulated gateway or the
/// real one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSeen {
    /// The node's virtual ms when it got it.
    pub at_ms: u64,
    /// The command id.
    pub id: String,
    /// The op, as on the wire.
    pub op: String,
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
    /// The simulated gateway's client for this node's commands, made at the
    /// first command.
    commander: Option<(AsyncClient, tokio::task::JoinHandle<()>)>,
    /// Where commands go instead, when the broker is the gateway's own and
    /// only the gateway may publish on `cmd` ([`Uplink::send_commands_with`]).
    command_sink: Option<CommandSink>,
    /// Commands published for the node, and those given up on (sent while
    /// it could not receive them).
    commands_sent: u64,
    commands_lost: u64,
    acks: Vec<AckSeen>,
    received: Vec<CommandSeen>,
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
            commander: None,
            command_sink: None,
            commands_sent: 0,
            commands_lost: 0,
            acks: Vec::new(),
            received: Vec::new(),
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
        // The gateway's commands go out whatever the node's link does: the
        // gateway's session is not the node's.
        for cmd in node.gateway_commands() {
            self.send_command(cmd)?;
        }
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
            if out.kind == Kind::Ack
                && let Ok(Message::Ack(a)) = protocol::decode(Kind::Ack, &payload)
            {
                self.acks.push(AckSeen {
                    at_ms: now_ms,
                    id: a.id.to_string(),
                    ok: a.ok,
                    error: a.error.map(|e| e.to_string()),
                });
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

    /// The acks the node published, in order.
    #[must_use]
    pub fn acks(&self) -> &[AckSeen] {
        &self.acks
    }

    /// Sends the node's commands through `sink` (topic, payload) instead of
    /// a client of the link's own: for the gateway's embedded broker with
    /// `auth = "devices"`, where only the gateway publishes on `cmd` (the
    /// bench hands its in-process publish here).
    pub fn send_commands_with(&mut self, sink: CommandSink) {
        self.command_sink = Some(sink);
    }

    /// Publishes a command for the node on its `cmd` topic (QoS 1), from the
    /// simulated gateway's own client (or the sink given).
    ///
    /// # Errors
    /// [`LinkError::Client`] if the client's queue refuses it.
    pub fn send_command(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        if let Some(sink) = &self.command_sink {
            sink(&format!("{}/cmd", self.base), payload);
            self.commands_sent += 1;
            return Ok(());
        }
        let client = if let Some((c, _)) = &self.commander {
            c.clone()
        } else {
            let id = self.client_id.replacen("hil-", "hil-gw-", 1);
            let mut opts = MqttOptions::new(id, self.host.clone(), self.port);
            opts.set_keep_alive(std::time::Duration::from_secs(30));
            let (client, mut eventloop) = AsyncClient::new(opts, 64);
            let task = tokio::spawn(async move {
                loop {
                    if eventloop.poll().await.is_err() {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            });
            self.commander = Some((client.clone(), task));
            client
        };
        client.try_publish(format!("{}/cmd", self.base), QoS::AtLeastOnce, false, payload)?;
        self.commands_sent += 1;
        Ok(())
    }

    /// Whether a command published for the node has not reached its client
    /// yet.
    #[must_use]
    pub fn commands_in_flight(&self) -> bool {
        self.conn.commands.load(Ordering::SeqCst) + self.commands_lost < self.commands_sent
    }

    /// Waits (real time, up to `max`) until every command published for the
    /// node has reached its client, so that in virtual time a command is
    /// carried out in the step it was sent, run after run. What does not
    /// arrive in time (the node was cut off) is given up on.
    pub async fn settle_commands(&mut self, max: std::time::Duration) {
        let until = tokio::time::Instant::now() + max;
        while self.commands_in_flight() && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let arrived = self.conn.commands.load(Ordering::SeqCst);
        self.commands_lost = self.commands_sent.saturating_sub(arrived);
    }

    /// Commands that reached the node's client so far, whoever sent them
    /// (the simulated gateway through this link, or the real gateway).
    #[must_use]
    pub fn commands_arrived(&self) -> u64 {
        self.conn.commands.load(Ordering::SeqCst)
    }

    /// Commands the simulated gateway published through this link.
    #[must_use]
    pub fn commands_sent(&self) -> u64 {
        self.commands_sent
    }

    /// The commands handed to the node, in order (those that decode).
    #[must_use]
    pub fn received(&self) -> &[CommandSeen] {
        &self.received
    }

    /// Hands the node the commands that arrived.
    pub fn commands(&mut self, node: &mut dyn NodeLink, now: Millis) -> usize {
        let mut n = 0;
        while let Ok(c) = self.commands.try_recv() {
            if let Ok(Message::Cmd(cmd)) = protocol::decode(Kind::Cmd, &c) {
                self.received.push(CommandSeen {
                    at_ms: now.0,
                    id: cmd.id.to_string(),
                    op: cmd.op.as_str().to_owned(),
                });
            }
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
    if let Some((user, password)) = node.login() {
        opts.set_credentials(user, password);
    }
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
                    state.commands.fetch_add(1, Ordering::SeqCst);
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
        if let Some((_, task)) = &self.commander {
            task.abort();
        }
    }
}
