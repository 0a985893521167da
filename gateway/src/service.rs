//! `gateway run`: the embedded (or outside) broker, MQTT ingest, the pipeline
//! into the registry and store, and the HTTP API, wired by bounded channels
//! and stopped together.
//!
//! ```text
//!                      ┌─ priority lane (events, births, acks; 1024) ─┐
//! broker ──► mqtt task ┤                                              ├─► pipeline thread ──► registry + SQLite
//!                      └─ bulk lane (data, deaths; 8192) ─────────────┘        │   └──► alerting engine
//! HTTP, ticker, broker state ── control (acks, ticks, uplink; 256) ──►─┘        │          │ effects
//! HTTP (axum) ◄── registry, open alerts, event stream, read-only SQLite ◄──────┴──────────┘
//! ```
//!
//! Backpressure: when the pipeline is behind, the MQTT task waits instead of
//! dropping, so the broker holds QoS 1 messages; nothing is dropped between
//! the broker and the store.
//!
//! Priority: the pipeline always takes controls first, then the priority
//! lane, then bulk telemetry, so a node's `trapped` event or an
//! acknowledgement never waits behind thousands of queued samples. Deaths
//! travel with the data so that a will is never judged before the samples
//! the node sent ahead of it.
//!
//! Delivery: acks are manual. A QoS 1 message is acknowledged to the broker
//! only once it is in the store (or was refused, or is a duplicate): a gateway
//! killed between receipt and write gets it again from its persistent session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::ingest::ingest;
use crate::metrics::{KindLabel, Metrics, ReasonLabel};
use crate::registry::Registry;
use crate::store::Store;

/// The topic filter of everything nodes send (commands are filtered out on ingest).
pub const FILTER: &str = "fm/v1/+/+/+/+";
/// Bulk lane length (telemetry).
pub const QUEUE: usize = 8192;
/// Priority lane length (events, births, acks).
pub const PRIORITY_QUEUE: usize = 1024;
/// Control channel length (HTTP acknowledgements, ticks, broker state).
pub const CONTROL_QUEUE: usize = 256;
/// How long [`Running::sync`] waits, in real time, for the Modbus polls due
/// at the clock's now: longer than any sane request timeout times a bus's
/// devices, short enough that a wedged poller fails a test instead of hanging it.
const SYNC_POLLS_LIMIT: Duration = Duration::from_secs(30);
/// How often the whole alerting state is saved besides the changes.
const SAVE_EVERY: Duration = Duration::from_mins(5);
/// At most one log line per topic per this long for rejected input.
const REJECT_LOG_EVERY: Duration = Duration::from_mins(1);

/// What the HTTP side shares with the pipeline.
#[derive(Clone)]
pub struct Shared {
    /// The device registry, updated by the pipeline.
    pub registry: Arc<Mutex<Registry>>,
    /// The metrics.
    pub metrics: Metrics,
    /// The data directory (HTTP opens its own read connection).
    pub data_dir: PathBuf,
    /// The bearer tokens: the admin's and the configured ones.
    pub tokens: crate::http::auth::Tokens,
    /// The public key of the record chain's checkpoints.
    pub records_key: Arc<str>,
    /// Open alerts, the event stream, and the way to the engine.
    pub alerts: crate::alerts::Hub,
    /// Whose time the gateway judges by (the system's, or virtual time).
    pub clock: crate::clock::SharedClock,
    /// When each Modbus device is next polled: the first half of
    /// [`Running::sync`]'s barrier.
    pub polls: Arc<crate::modbus::Schedule>,
    /// The disk headroom kept for events (bytes), judged by `/readyz`.
    pub min_free: u64,
}

/// How to run the gateway: whose clock, and whether it ticks itself.
#[derive(Clone)]
pub struct Options {
    /// The clock (default: the system's).
    pub clock: crate::clock::SharedClock,
    /// Whether a task ticks the pipeline every second (default). Without it
    /// the caller ticks through [`Running::tick`] as it moves virtual time.
    pub ticker: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(crate::clock::SystemClock),
            ticker: true,
        }
    }
}

/// A gateway started in this process (the HIL simulation's handle on it).
pub struct Running {
    /// What the HTTP side sees: registry, metrics, open alerts, the clock.
    pub shared: Shared,
    control: mpsc::Sender<crate::alerts::Control>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Lets time pass: the engine's and the desk's deadlines are judged at
    /// the clock's now.
    ///
    /// # Errors
    /// If the pipeline has stopped.
    pub async fn tick(&self) -> anyhow::Result<()> {
        self.control
            .send(crate::alerts::Control::Tick)
            .await
            .map_err(|_| anyhow::anyhow!("the pipeline has stopped"))
    }

    /// Waits until every Modbus poll due at the clock's now has handed its
    /// messages to the pipeline, then until everything in the pipeline's
    /// lanes is judged and stored. On virtual time that makes "move the
    /// clock, sync" see the polls the move made due, as it sees what MQTT
    /// delivered.
    ///
    /// # Errors
    /// If the pipeline has stopped, or a device's poll has not landed within
    /// 30 s of real time (its name is in the error).
    pub async fn sync(&self) -> anyhow::Result<()> {
        self.shared
            .polls
            .settled(&*self.shared.clock, SYNC_POLLS_LIMIT)
            .await
            .map_err(|device| {
                anyhow::anyhow!(
                    "the Modbus poll of {device} due at {} ms has not landed after {SYNC_POLLS_LIMIT:?}",
                    self.shared.clock.now_ms()
                )
            })?;
        let (reply, done) = tokio::sync::oneshot::channel();
        self.control
            .send(crate::alerts::Control::Sync(reply))
            .await
            .map_err(|_| anyhow::anyhow!("the pipeline has stopped"))?;
        done.await.map_err(|_| anyhow::anyhow!("the pipeline has stopped"))
    }

    /// Waits (up to `max` of real time) until the broker has acknowledged the
    /// gateway's subscription: nodes that connect before would lose their
    /// birth. Whether it did.
    pub async fn subscribed(&self, max: Duration) -> bool {
        let until = Instant::now() + max;
        while self.shared.metrics.mqtt_subscribed.get() == 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Shuts down as SIGTERM would and waits for the end.
    ///
    /// # Errors
    /// What the run ended with.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("the gateway task failed: {e}"))?
    }
}

/// Starts the gateway in this process and returns once it serves.
///
/// # Errors
/// Start-up failures, as [`run`].
pub async fn start(config: Config, admin_token: String, options: Options) -> anyhow::Result<Running> {
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_with(config, admin_token, options, Some(ready_tx), async {
        let _ = stop_rx.await;
    }));
    match ready.await {
        Ok((shared, control)) => Ok(Running {
            shared,
            control,
            stop: Some(stop),
            task,
        }),
        Err(_) => match task.await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(anyhow::anyhow!("the gateway ended before it started")),
            Err(e) => Err(anyhow::anyhow!("the gateway task failed: {e}")),
        },
    }
}

/// Gateway clock in ms since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The kinds the alarm session takes: they never wait behind telemetry,
/// not even in the broker's queue to the gateway. Deaths go with the data,
/// so a will is never judged before the samples the node sent ahead of it.
pub const ALARM_KINDS: [&str; 3] = ["event", "birth", "ack"];
/// The kinds the telemetry session takes.
pub const TELEMETRY_KINDS: [&str; 2] = ["data", "death"];

/// One of the gateway's two sessions with its broker: telemetry, and
/// alarms (events, births, acks) on a connection of their own, so a backlog
/// of samples at the broker or in the telemetry lane never delays an alarm.
struct Session {
    opts: MqttOptions,
    filters: Vec<String>,
    /// Its bit in the subscribed mask.
    bit: u8,
}

/// The two sessions: telemetry under the configured client id, alarms
/// under the same id with `-alarms`.
fn sessions(config: &Config) -> anyhow::Result<[Session; 2]> {
    let (host, port, client_id, share) = if let Some(b) = &config.mqtt.broker {
        (b.host.clone(), b.port, b.client_id.clone(), b.share_group.clone())
    } else {
        let l = config.mqtt.listen;
        let host = if l.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            l.ip().to_string()
        };
        (host, l.port(), "fm-gateway".to_owned(), None)
    };
    let filters = |kinds: &[&str]| -> Vec<String> {
        kinds
            .iter()
            .map(|k| {
                let f = format!("fm/v1/+/+/+/{k}");
                share.as_ref().map_or(f.clone(), |g| format!("$share/{g}/{f}"))
            })
            .collect()
    };
    let options = |id: String| -> anyhow::Result<MqttOptions> {
        let mut o = MqttOptions::new(id, &host, port);
        if let Some(b) = &config.mqtt.broker {
            if let (Some(u), Some(p)) = (&b.username, &b.password) {
                o.set_credentials(u, p);
            } else if let Some(u) = &b.username {
                o.set_credentials(u, "");
            }
            if b.tls {
                o.set_transport(rumqttc::Transport::tls_with_config(tls_config(b)?));
            }
        }
        // A persistent session: QoS 1 messages queued while the gateway is away are kept.
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(256 * 1024, 256 * 1024);
        o.set_manual_acks(true);
        Ok(o)
    };
    Ok([
        Session {
            opts: options(client_id.clone())?,
            filters: filters(&TELEMETRY_KINDS),
            bit: 1,
        },
        Session {
            opts: options(format!("{client_id}-alarms"))?,
            filters: filters(&ALARM_KINDS),
            bit: 2,
        },
    ])
}

/// The TLS settings of an outside broker, from its PEM files.
fn tls_config(b: &crate::config::BrokerConfig) -> anyhow::Result<rumqttc::TlsConfiguration> {
    // rumqttc leaves the crypto provider to us: ring (aws-lc, its default, is a slow C build).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |f: &std::path::Path| std::fs::read(f).with_context(|| format!("reading {}", f.display()));
    let ca = match &b.ca_file {
        Some(f) => read(f)?,
        None => bail!("mqtt.broker.ca_file is required with tls"),
    };
    let client_auth = match (&b.client_cert_file, &b.client_key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    Ok(rumqttc::TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

/// A publish on its way to the pipeline, acknowledged there once what it
/// caused is committed.
struct Publish {
    topic: String,
    payload: bytes::Bytes,
    received_ms: i64,
    /// How to acknowledge it (QoS 1 and 2).
    ack: Option<Done>,
}

/// The acknowledgement of one message, sent once its batch is committed.
enum Done {
    /// A PUBACK to the broker the gateway is a client of, in arrival order.
    Client {
        acker: Acker,
        ticket: crate::acks::Ticket,
        qos: QoS,
    },
    /// A PUBACK from the embedded broker to the node itself.
    Node(crate::broker::Ack),
}

impl Done {
    /// Sends the acknowledgement (and those it held back).
    fn release(self) {
        match self {
            Done::Client { acker, ticket, qos } => acker.done(ticket, qos),
            Done::Node(ack) => ack.done(),
        }
    }
}

/// The broker connection's acknowledgements: sent in arrival order, each
/// once its message (and every one before it) is done.
#[derive(Clone)]
struct Acker {
    client: AsyncClient,
    order: Arc<Mutex<crate::acks::AckOrder>>,
}

impl Acker {
    fn order(&self) -> std::sync::MutexGuard<'_, crate::acks::AckOrder> {
        self.order.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a place in the order for a message that needs acknowledging.
    fn received(&self, p: &rumqttc::Publish) -> Option<Done> {
        (p.qos != QoS::AtMostOnce).then(|| Done::Client {
            acker: self.clone(),
            ticket: self.order().received(p.pkid),
            qos: p.qos,
        })
    }

    /// The message is done: acknowledges what may be acknowledged now.
    fn done(&self, ticket: crate::acks::Ticket, qos: QoS) {
        let ids = self.order().done(ticket);
        for pkid in ids {
            let mut ack = rumqttc::Publish::new("", qos, Vec::new());
            ack.pkid = pkid;
            if let Err(e) = self.client.try_ack(&ack) {
                tracing::warn!(error = %e, "could not acknowledge a message; the broker will send it again");
            }
        }
    }
}

/// What the pipeline handles: a publish to decode, or a message the Modbus
/// poller built.
enum Input {
    Mqtt(Publish),
    Polled(Box<crate::ingest::Incoming>),
}

/// The lane of a message kind: events and births are never queued behind
/// bulk telemetry; deaths stay in order with the data before them.
#[must_use]
pub fn priority_lane(kind: &str) -> bool {
    !matches!(kind, "data" | "death")
}

/// The two lanes into the pipeline.
#[derive(Clone)]
struct Lanes {
    priority: mpsc::Sender<Input>,
    bulk: mpsc::Sender<Input>,
}

impl Lanes {
    async fn send(&self, kind: &str, input: Input, m: &Metrics) -> bool {
        m.queue_depth.inc();
        if priority_lane(kind) {
            m.priority_queue_depth.inc();
            self.priority.send(input).await.is_ok()
        } else {
            self.bulk.send(input).await.is_ok()
        }
    }
}

/// Runs the gateway until `shutdown` resolves.
///
/// # Errors
/// Start-up failures (store, broker address, HTTP address); runtime failures
/// of single messages are counted and logged, never fatal.
pub async fn run(
    config: Config,
    admin_token: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, admin_token, Options::default(), None, shutdown).await
}

/// What [`start`] is told once the gateway serves.
type Ready = tokio::sync::oneshot::Sender<(Shared, mpsc::Sender<crate::alerts::Control>)>;

/// [`run`] with a clock and ticking of the caller's choice.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: Config,
    admin_token: String,
    options: Options,
    ready: Option<Ready>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut store = Store::open(&config.storage.data_dir)?;
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let key_path = config.records.key_path(&config.storage.data_dir);
    let signer = crate::supervision::signer(&key_path).context("the record chain's signing key")?;
    let shared = shared_state(&config, &mut store, admin_token, &options, &signer, &control_tx)?;
    let mut engine = start_engine(&config, &mut store, &shared)?;
    let (desk, ledger) = start_desk(&config, &store, &mut engine, signer, &shared)?;
    // The embedded broker's port is taken now, before anything else can
    // fail: its nodes are admitted once the lanes exist (below).
    let listener = match &config.mqtt.broker {
        None => Some(
            tokio::net::TcpListener::bind(config.mqtt.listen)
                .await
                .with_context(|| format!("mqtt.listen {} is not available", config.mqtt.listen))?,
        ),
        Some(_) => None,
    };
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen {} is not available", config.http.listen))?;
    tracing::info!(listen = %config.http.listen, "HTTP API listening");
    let (prio_tx, prio_rx) = mpsc::channel::<Input>(PRIORITY_QUEUE);
    let (bulk_tx, bulk_rx) = mpsc::channel::<Input>(QUEUE);
    let lanes = Lanes {
        priority: prio_tx,
        bulk: bulk_tx,
    };
    let pipeline_tx = lanes.clone();
    let retention_ms = i64::from(config.storage.retention_days) * 86_400_000;
    let (influx_tx, influx_tasks) = start_influx(&config, &shared)?;
    let clients = Clients::new(&config)?;
    let mut courier = start_courier(&config, &clients.notifier(), &control_tx)?;
    courier.restore(crate::workorders::load_outbox(store.conn()).context("reading the notification outbox")?);
    let rx = Receivers {
        control: control_rx,
        priority: prio_rx,
        bulk: bulk_rx,
    };
    let owned = Owned {
        store,
        engine,
        desk,
        ledger,
        courier,
        influx: influx_tx,
        shared: shared.clone(),
        retention_ms,
        min_free: shared.min_free,
    };
    let rt = tokio::runtime::Handle::current();
    let pipeline = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || owned.run(&rt, rx))?;
    let mqtt = clients.start(listener, &lanes, &control_tx, &shared).await;
    let ticker = options.ticker.then(|| tokio::spawn(ticker(control_tx.clone())));
    if let Some(r) = ready {
        let _ = r.send((shared.clone(), control_tx.clone()));
    }
    let pollers = start_pollers(&config, &pipeline_tx, &shared);
    drop(pipeline_tx);
    let app = crate::http::router(shared.clone());
    let hub = shared.alerts.clone();
    axum::serve(http, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = hub.closing.send(true);
        })
        .await
        .context("HTTP server")?;
    tracing::info!("shutting down: draining the pipeline");
    for t in mqtt.into_iter().chain(ticker).chain(pollers) {
        t.abort();
        let _ = t.await;
    }
    let _ = control_tx.send(crate::alerts::Control::Stop).await;
    let result = match pipeline.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the pipeline thread panicked"),
    };
    if let Some(tasks) = influx_tasks {
        stop_influx(tasks).await;
    }
    result
}

/// The pipeline is gone, so the collector flushes and ends; the shipper
/// sends what it can for a few seconds, the rest stays spooled.
async fn stop_influx((collector, shipper, stop): InfluxTasks) {
    let _ = collector.await;
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(5), shipper).await.is_err() {
        tracing::warn!("InfluxDB backlog left in the spool for the next start");
    }
}

/// What the HTTP side and the tasks share, restored from the store.
fn shared_state(
    config: &Config,
    store: &mut Store,
    admin_token: String,
    options: &Options,
    signer: &records::Signer,
    control: &mpsc::Sender<crate::alerts::Control>,
) -> anyhow::Result<Shared> {
    Ok(Shared {
        registry: Arc::new(Mutex::new(Registry::restore(store.load_devices()?))),
        metrics: Metrics::default(),
        data_dir: config.storage.data_dir.clone(),
        tokens: crate::http::auth::Tokens::new(admin_token.into(), &config.http.tokens),
        records_key: signer.public_key_hex().into(),
        alerts: crate::alerts::Hub::new(control.clone()),
        clock: options.clock.clone(),
        polls: Arc::new(crate::modbus::Schedule::new(
            config.modbus.devices.iter().map(|d| d.device.clone()).collect(),
            options.clock.now_ms(),
        )),
        min_free: config.storage.min_free_mb.saturating_mul(1 << 20),
    })
}

/// The lane of a node's publish on the embedded broker: the gateway takes
/// every topic of the node-to-gateway shape (`fm/v1/{site}/{class}/{device}/{kind}`,
/// a bad kind included, so it is refused and counted); commands and the
/// gateway's own notifications are only routed to their subscribers.
fn node_lane(topic: &str) -> crate::broker::Lane {
    use crate::broker::Lane;
    let mut parts = topic.split('/');
    let shape = parts.next() == Some("fm") && parts.next() == Some("v1");
    let rest: Vec<&str> = parts.collect();
    match (shape, rest.as_slice()) {
        (true, [_, _, _, "cmd"]) | (false, _) => Lane::None,
        (true, [_, _, _, kind]) if priority_lane(kind) => Lane::Priority,
        (true, [_, _, _, _]) => Lane::Bulk,
        (true, _) => Lane::None,
    }
}

/// The embedded broker on `listener`, its nodes' publishes forwarded into
/// the lanes (the broker hands them over with their PUBACK still owed), and
/// the gateway's own publishing client of it (notifications). The gateway
/// is subscribed from the first instant: nothing a node sends can miss it.
async fn start_embedded(
    listener: tokio::net::TcpListener,
    mut client_loop: rumqttc::EventLoop,
    lanes: &Lanes,
    control: &mpsc::Sender<crate::alerts::Control>,
    shared: &Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (ptx, prx) = mpsc::channel(64);
    let (btx, brx) = mpsc::channel(64);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (broker, served) = crate::broker::Broker::start(
        listener,
        crate::broker::Settings::default(),
        crate::broker::Ingress {
            priority: ptx,
            bulk: btx,
            lane: node_lane,
        },
        async move {
            let _ = stopped.await;
        },
    );
    shared.metrics.mqtt_subscribed.set(1);
    let _ = control.send(crate::alerts::Control::Uplink(true)).await;
    tracing::info!("embedded MQTT broker serving; a node's PUBACK waits for the gateway's commit");
    let forward = |mut rx: mpsc::Receiver<crate::broker::Inbound>, kind_of: &'static str| {
        let lanes = lanes.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(i) = rx.recv().await {
                let msg = Publish {
                    topic: i.topic,
                    payload: i.payload,
                    received_ms: shared.clock.now_ms(),
                    ack: i.ack.map(Done::Node),
                };
                if !lanes.send(kind_of, Input::Mqtt(msg), &shared.metrics).await {
                    break;
                }
            }
        })
    };
    let publisher = tokio::spawn(async move {
        // Keeps the notification client connected; it subscribes to nothing.
        loop {
            if let Err(e) = client_loop.poll().await {
                tracing::debug!(error = %e, "notification client of the embedded broker: reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let stats = {
        let metrics = shared.metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                metrics.broker.copy(broker.stats());
            }
        })
    };
    let closer = tokio::spawn(async move {
        // Ends with the others (aborted at shutdown): the broker stops too.
        let _stop = stop;
        let _ = served.await;
    });
    vec![forward(prx, "event"), forward(brx, "data"), publisher, stats, closer]
}

/// The gateway's MQTT clients: made before the pipeline (its courier
/// publishes notifications on the alarm session, which never waits on the
/// telemetry's back-pressure) and started after it.
struct Clients {
    sessions: [(Session, rumqttc::EventLoop, Acker); 2],
}

impl Clients {
    fn new(config: &Config) -> anyhow::Result<Clients> {
        let [telemetry, alarms] = sessions(config)?;
        let client = |s: Session| {
            let (client, eventloop) = AsyncClient::new(s.opts.clone(), 1024);
            let acker = Acker {
                client,
                order: Arc::default(),
            };
            (s, eventloop, acker)
        };
        Ok(Clients {
            sessions: [client(telemetry), client(alarms)],
        })
    }

    /// The client notifications are published with.
    fn notifier(&self) -> AsyncClient {
        self.sessions[1].2.client.clone()
    }

    /// With the embedded broker (`listener`), the broker and the notifier's
    /// connection to it; otherwise the telemetry and alarm sessions.
    async fn start(
        self,
        listener: Option<tokio::net::TcpListener>,
        lanes: &Lanes,
        control: &mpsc::Sender<crate::alerts::Control>,
        shared: &Shared,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let [telemetry, alarms] = self.sessions;
        if let Some(listener) = listener {
            return start_embedded(listener, alarms.1, lanes, control, shared).await;
        }
        let subscribed = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let task = |(s, eventloop, acker): (Session, rumqttc::EventLoop, Acker), uplink| {
            tokio::spawn(mqtt_task(
                eventloop,
                acker,
                s.filters,
                (s.bit, subscribed.clone()),
                lanes.clone(),
                uplink,
                shared.clone(),
            ))
        };
        // The telemetry session tells the engine when the broker comes and goes.
        vec![task(telemetry, Some(control.clone())), task(alarms, None)]
    }
}

/// Receives one session from the broker into the lanes; the telemetry
/// session (the one given `uplink`) tells the engine when the broker comes
/// and goes. `fm_mqtt_subscribed` is 1 once both sessions are subscribed.
async fn mqtt_task(
    mut eventloop: rumqttc::EventLoop,
    acker: Acker,
    filters: Vec<String>,
    (bit, subscribed): (u8, Arc<std::sync::atomic::AtomicU8>),
    lanes: Lanes,
    uplink: Option<mpsc::Sender<crate::alerts::Control>>,
    shared: Shared,
) {
    use std::sync::atomic::Ordering;
    let metrics = shared.metrics.clone();
    let mark = |up: bool| {
        let mask = if up {
            subscribed.fetch_or(bit, Ordering::SeqCst) | bit
        } else {
            subscribed.fetch_and(!bit, Ordering::SeqCst) & !bit
        };
        metrics.mqtt_subscribed.set(i64::from(mask == 3));
    };
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(filters = ?filters, "connected to the MQTT broker");
                acker.order().connected();
                if let Some(u) = &uplink {
                    let _ = u.send(crate::alerts::Control::Uplink(true)).await;
                }
                let subs = filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(e) = acker.client.subscribe_many(subs).await {
                    tracing::error!(error = %e, "subscribe failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => mark(true),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let kind = p.topic.rsplit('/').next().unwrap_or_default().to_owned();
                let msg = Publish {
                    ack: acker.received(&p),
                    topic: p.topic,
                    payload: p.payload,
                    received_ms: shared.clock.now_ms(),
                };
                if !lanes.send(&kind, Input::Mqtt(msg), &metrics).await {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_disconnects.inc();
                mark(false);
                if let Some(u) = &uplink {
                    let _ = u.try_send(crate::alerts::Control::Uplink(false));
                }
                tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Lets the engine's time pass, once a second.
async fn ticker(control: mpsc::Sender<crate::alerts::Control>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        // A tick the pipeline has no room for is covered by the next one.
        if let Err(mpsc::error::TrySendError::Closed(_)) = control.try_send(crate::alerts::Control::Tick) {
            break;
        }
    }
}

/// The alerting engine from the configuration, restored from the store.
fn start_engine(config: &Config, store: &mut Store, shared: &Shared) -> anyhow::Result<alerting::Engine> {
    let built = config
        .alerting
        .build()
        .map_err(|p| anyhow::anyhow!("{}: {}", p.field, p.message))?;
    let mut engine = alerting::Engine::new(built.rules, built.settings);
    engine.set_windows(built.windows);
    engine.set_buildings(built.buildings);
    engine.restore(store.load_engine().context("restoring the alerting state")?);
    let now = shared.clock.now_ms();
    // The gateway itself was away, and has no broker yet.
    engine.resume(now);
    engine.uplink(now, false, &mut Vec::new());
    // Polled devices hang on their bus: an RS-485 line, or the address of a
    // Modbus TCP server (a TCP gateway to a line has several behind it). So
    // the engine knows they are not reached through the broker.
    for d in &config.modbus.devices {
        let r = alerting::DeviceRef {
            site: &d.site,
            class: d.class,
            device: &d.device,
        };
        match (&d.serial, d.address) {
            (Some(serial), _) => engine.attach(r, &serial.path, now),
            (None, Some(addr)) => engine.attach(r, &format!("tcp:{addr}"), now),
            (None, None) => {}
        }
    }
    shared.alerts.reset(engine.alerts());
    shared
        .metrics
        .alerts_open
        .set(i64::try_from(engine.alerts().len()).unwrap_or(i64::MAX));
    tracing::info!(open = engine.alerts().len(), "alerting state restored");
    Ok(engine)
}

/// The dispatch desk (restored from the store, its policy from the config,
/// its duties begun for every known device, maintenance windows of open
/// orders back on the engine), and the ledger over the record chain, with a
/// record of the configuration if it changed since the last start.
fn start_desk(
    config: &Config,
    store: &Store,
    engine: &mut alerting::Engine,
    signer: records::Signer,
    shared: &Shared,
) -> anyhow::Result<(dispatch::Desk, crate::ledger::Ledger)> {
    let policy = config
        .dispatch
        .build()
        .map_err(|p| anyhow::anyhow!("{}: {}", p.field, p.message))?;
    let mut desk = dispatch::Desk::new(policy);
    let (state, open) = crate::workorders::load(store.conn()).context("restoring the work orders")?;
    for o in open
        .iter()
        .filter(|o| o.code == "maintenance" && o.arrived_at.is_some())
    {
        engine.add_window(alerting::Window {
            site: Some(o.site.clone()),
            class: protocol::DeviceClass::from_name(&o.class),
            device: Some(o.device.clone()),
            from: o.arrived_at.unwrap_or(0),
            to: i64::MAX,
            reason: format!("order:{}", o.id),
        });
    }
    desk.restore(state, open);
    let every = humantime::parse_duration(&config.records.checkpoint_every)
        .map_or(3_600_000, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let chain = crate::supervision::Chain::open(store.conn(), signer, every, config.records.checkpoint_records)
        .context("opening the record chain")?;
    tracing::info!(records = chain.tail().seq, key = %chain.public_key(), "record chain opened");
    let mut ledger = crate::ledger::Ledger::new(chain);
    let now = shared.clock.now_ms();
    let (path, text) = config
        .source
        .as_ref()
        .map_or((None, ""), |(p, t)| (Some(p.as_path()), t.as_str()));
    let audited = crate::supervision::audited_config(path, text);
    if let Some(r) =
        crate::supervision::config_change(store.conn(), now, &audited).context("reading the last configuration")?
    {
        tracing::info!(kind = %r.kind, "configuration change recorded");
        ledger.config(r, audited);
    }
    let known: Vec<(String, String, String)> = shared
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|d| (d.key.site.clone(), d.key.class.clone(), d.key.device.clone()))
        .collect();
    let mut outs = Vec::new();
    for (site, class, device) in known {
        desk.device_seen(now, &site, &class, &device, &mut outs);
    }
    desk.tick(now, &mut outs);
    // What start-up decided is stored with the first commit of the pipeline.
    ledger.hold(outs);
    tracing::info!(open = desk.open().count(), "work orders restored");
    Ok((desk, ledger))
}

/// The notification outbox over the configured channels, its outcomes
/// forwarded to the pipeline (which records them).
fn start_courier(
    config: &Config,
    client: &AsyncClient,
    control: &mpsc::Sender<crate::alerts::Control>,
) -> anyhow::Result<crate::workorders::Courier> {
    let n = &config.notify;
    let timeout = humantime::parse_duration(&n.webhook_timeout).unwrap_or(Duration::from_secs(10));
    let mut channels: Vec<Arc<dyn notify::Channel>> = vec![
        Arc::new(notify::Webhook::new(timeout).context("the webhook channel")?),
        Arc::new(notify::Mqtt::new(client.clone(), n.mqtt_prefix.clone())),
    ];
    if let Some(smtp) = &n.smtp {
        channels.push(Arc::new(
            notify::Email::new(smtp.clone()).context("the e-mail channel")?,
        ));
    }
    let retry = n.retry().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
    let (outbox, mut outcomes, _task) = notify::Outbox::start(channels, retry, n.queue, 16);
    let control = control.clone();
    tokio::spawn(async move {
        while let Some(o) = outcomes.recv().await {
            if control.send(crate::alerts::Control::Delivered(o)).await.is_err() {
                break;
            }
        }
    });
    Ok(crate::workorders::Courier::new(Some(outbox), &config.contacts))
}

/// The pipeline's inputs, taken in priority order.
struct Receivers {
    control: mpsc::Receiver<crate::alerts::Control>,
    priority: mpsc::Receiver<Input>,
    bulk: mpsc::Receiver<Input>,
}

enum Next {
    Control(crate::alerts::Control),
    Message(Input, bool),
    /// Nothing came before the deadline (a failed commit is due again).
    Wake,
}

impl Receivers {
    /// What is queued, without waiting: controls first, then the priority
    /// lane, then bulk (when `bulk` is open).
    fn try_next(&mut self, bulk: bool) -> Option<Next> {
        if let Ok(c) = self.control.try_recv() {
            return Some(Next::Control(c));
        }
        if let Ok(i) = self.priority.try_recv() {
            return Some(Next::Message(i, true));
        }
        if bulk && let Ok(i) = self.bulk.try_recv() {
            return Some(Next::Message(i, false));
        }
        None
    }

    /// The next input, waiting for one (until `until`, if given): controls
    /// first, then the priority lane, then bulk (when `bulk` is open: while
    /// too many samples wait for a failing store, telemetry stays with the
    /// broker and events still come through). `None` once every sender is gone.
    fn next(&mut self, rt: &tokio::runtime::Handle, bulk: bool, until: Option<Instant>) -> Option<Next> {
        if let Some(n) = self.try_next(bulk) {
            return Some(n);
        }
        rt.block_on(async {
            let deadline = async {
                match until {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(c) = self.control.recv() => Some(Next::Control(c)),
                Some(i) = self.priority.recv() => Some(Next::Message(i, true)),
                Some(i) = self.bulk.recv(), if bulk => Some(Next::Message(i, false)),
                () = deadline, if until.is_some() => Some(Next::Wake),
                else => None,
            }
        })
    }
}

/// What the pipeline thread is given to own.
struct Owned {
    store: Store,
    engine: alerting::Engine,
    desk: dispatch::Desk,
    ledger: crate::ledger::Ledger,
    courier: crate::workorders::Courier,
    influx: Option<InfluxSender>,
    shared: Shared,
    retention_ms: i64,
    min_free: u64,
}

impl Owned {
    fn run(self, rt: &tokio::runtime::Handle, rx: Receivers) -> anyhow::Result<()> {
        pipeline(
            rt,
            Pipeline {
                store: self.store,
                engine: self.engine,
                desk: self.desk,
                ledger: self.ledger,
                courier: self.courier,
                influx: self.influx.as_ref(),
                shared: &self.shared,
                retention_ms: self.retention_ms,
                batch: crate::batch::Batch::new(),
                min_free: self.min_free,
                disk_low: false,
                disk_checked: Instant::now(),
            },
            rx,
        )
    }
}

/// What the pipeline thread owns and uses.
struct Pipeline<'a> {
    store: Store,
    engine: alerting::Engine,
    desk: dispatch::Desk,
    ledger: crate::ledger::Ledger,
    courier: crate::workorders::Courier,
    influx: Option<&'a InfluxSender>,
    shared: &'a Shared,
    retention_ms: i64,
    /// The messages of the next commit: their acknowledgements, receive
    /// times and time-series lines (the ledger stages what they wrote).
    batch: crate::batch::Batch<Done, crate::influx::Line>,
    /// The headroom kept for events (bytes).
    min_free: u64,
    /// Whether the data directory's disk is below that headroom.
    disk_low: bool,
    /// When it was last measured.
    disk_checked: Instant,
}

/// How often the pipeline measures the disk's headroom at most (besides
/// every tick and every failed commit): one `statvfs` per quarter second.
const DISK_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Samples waiting for a failing store beyond which the pipeline stops
/// taking telemetry (the broker holds it); events, births and controls
/// still come through.
const MAX_STAGED: usize = 200_000;

/// The pipeline: owns the store's write connection, the alerting engine,
/// the dispatch desk and the record chain. Messages are judged as they are
/// taken and committed in batches ([`crate::batch`]); their
/// acknowledgements go out after the commit.
fn pipeline(rt: &tokio::runtime::Handle, mut p: Pipeline<'_>, mut rx: Receivers) -> anyhow::Result<()> {
    let p_clock = p.shared.clock.clone();
    let mut last_log: HashMap<String, Instant> = HashMap::new();
    let mut last_prune = Instant::now();
    let mut last_save = Instant::now();
    // The engine's clock: the gateway's, never going back (a message queued
    // for a while is judged when it is taken, not before the last tick).
    let now = || p_clock.now_ms();
    let mut clock = now();
    let mut effects = Vec::new();
    let mut outs = p.ledger.take_held();
    let mut stopping = false;
    check_disk(&mut p);
    loop {
        let next = if stopping {
            // Stop: finish what is queued, controls and lanes alike.
            match rx.priority.try_recv().or_else(|_| rx.bulk.try_recv()) {
                Ok(i) => Next::Message(i, false),
                Err(_) => break,
            }
        } else if let Some(n) = rx.try_next(takes_telemetry(&p)) {
            n
        } else {
            // Nothing queued: the batch is complete.
            flush(&mut p, clock, &mut effects, &mut outs, false);
            p.shared.metrics.pipeline_lag_ms.set(0);
            match rx.next(rt, takes_telemetry(&p), p.batch.retry_at()) {
                Some(n) => n,
                None => break,
            }
        };
        match next {
            Next::Wake => {}
            Next::Control(c) => {
                clock = clock.max(now());
                if let crate::alerts::Control::Sync(reply) = c {
                    // Everything already queued is judged and stored first.
                    while let Some(i) = rx
                        .priority
                        .try_recv()
                        .ok()
                        .map(|i| (i, true))
                        .or_else(|| rx.bulk.try_recv().ok().map(|i| (i, false)))
                    {
                        taken(&p.shared.metrics, i.1);
                        clock = clock.max(handle(&mut p, i.0, &mut last_log, &mut effects, &mut outs, clock));
                    }
                    flush(&mut p, clock, &mut effects, &mut outs, false);
                    let _ = reply.send(());
                    continue;
                }
                stopping |= control(&mut p, c, clock, &mut effects, &mut outs);
            }
            Next::Message(input, priority) => {
                taken(&p.shared.metrics, priority);
                let received = handle(&mut p, input, &mut last_log, &mut effects, &mut outs, clock);
                clock = clock.max(received);
                p.shared.metrics.pipeline_lag_ms.set((now() - received).max(0));
            }
        }
        if p.batch.due(Instant::now()) {
            flush(&mut p, clock, &mut effects, &mut outs, false);
        }
        if last_save.elapsed() > SAVE_EVERY {
            last_save = Instant::now();
            crate::alerts::save_all(&mut p.store, &p.engine, &p.shared.metrics);
        }
        if last_prune.elapsed() > Duration::from_hours(1) {
            last_prune = Instant::now();
            match p.store.prune(now() - p.retention_ms) {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned telemetry past retention"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "prune failed"),
            }
        }
    }
    close_courier(&mut p, rt, &mut rx.control);
    let _ = settle(&mut p, clock.max(now()), &mut effects, &mut outs, true);
    crate::alerts::save_all(&mut p.store, &p.engine, &p.shared.metrics);
    // Persist the whole registry on the way out: last-seen times survive a restart.
    let reg = p
        .shared
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let devices: Vec<_> = reg.iter().cloned().collect();
    drop(reg);
    p.store.transact(|tx| crate::store::write_devices(tx, &devices))?;
    Ok(())
}

/// Measures the data directory's free space against the headroom kept for
/// events; telemetry is held back below it.
fn check_disk(p: &mut Pipeline<'_>) {
    p.disk_checked = Instant::now();
    match crate::ready::disk_free(&p.shared.data_dir) {
        Ok(free) => {
            p.shared
                .metrics
                .disk_free_bytes
                .set(i64::try_from(free).unwrap_or(i64::MAX));
            let low = free < p.min_free;
            if low != p.disk_low {
                if low {
                    tracing::warn!(
                        free_mib = free >> 20,
                        "disk headroom low: telemetry held back at the broker, events still stored"
                    );
                } else {
                    tracing::info!(free_mib = free >> 20, "disk headroom back: telemetry taken again");
                }
            }
            p.disk_low = low;
        }
        Err(e) => tracing::warn!(error = %e, "cannot measure the data directory's free space"),
    }
}

/// Deliveries in flight get a moment; what is left comes back as dead
/// letters, recorded with the final commit and its signed checkpoint.
fn close_courier(
    p: &mut Pipeline<'_>,
    rt: &tokio::runtime::Handle,
    control: &mut mpsc::Receiver<crate::alerts::Control>,
) {
    let now = || p.shared.clock.now_ms();
    p.courier.close(Duration::from_secs(2));
    let until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        // Nothing in flight: only outcomes already on their way are left.
        let idle = p.courier.pending() == 0;
        let wait = if idle {
            left.min(Duration::from_millis(100))
        } else {
            left
        };
        match rt.block_on(async { tokio::time::timeout(wait, control.recv()).await }) {
            Ok(Some(crate::alerts::Control::Delivered(o))) => delivered(p, now(), &o),
            Ok(None) => break,
            Err(_) if idle => break,
            Ok(Some(_)) | Err(_) => {}
        }
    }
}

/// Whether the pipeline takes telemetry now: it waits at the broker while
/// the disk is below its headroom or too much waits for a failing store;
/// events, births and controls never do.
fn takes_telemetry(p: &Pipeline<'_>) -> bool {
    let takes = p.ledger.staged_samples() < MAX_STAGED && !p.disk_low;
    p.shared.metrics.telemetry_held.set(i64::from(!takes));
    takes
}

/// A delivery's outcome on one channel: its record, and the outbox row
/// forgotten once its last channel has reported.
fn delivered(p: &mut Pipeline<'_>, now: i64, o: &notify::Outcome) {
    let (record, done) = p.courier.outcome(now, o, &p.shared.metrics);
    if let Some(r) = record {
        p.ledger.record(r);
    }
    if let Some(id) = done {
        p.ledger.outbox_done(id);
    }
}

/// A message left its lane: the queue gauges follow.
fn taken(m: &Metrics, priority: bool) {
    m.queue_depth.dec();
    if priority {
        m.priority_queue_depth.dec();
    }
}

/// Commits the batch if a commit may be tried now (a failing store is tried
/// again only after its back-off), whatever [`settle`] found.
fn flush(
    p: &mut Pipeline<'_>,
    clock: i64,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
    force: bool,
) {
    if p.disk_checked.elapsed() >= DISK_CHECK_EVERY {
        check_disk(p);
    }
    if p.batch.may_try(Instant::now()) || force {
        let _ = settle(p, clock, effects, outs, force);
    }
}

/// Handles one control; whether it asks the pipeline to stop.
fn control(
    p: &mut Pipeline<'_>,
    c: crate::alerts::Control,
    clock: i64,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
) -> bool {
    use crate::alerts::{Control, Refusal};
    match c {
        Control::Stop => return true,
        // Taken by the pipeline's loop, which owns the lanes.
        Control::Sync(reply) => {
            let _ = reply.send(());
        }
        Control::Tick => {
            check_disk(p);
            p.engine.tick(clock, effects);
            p.desk.tick(clock, outs);
        }
        Control::Uplink(up) => p.engine.uplink(clock, up, effects),
        Control::Delivered(o) => delivered(p, clock, &o),
        Control::Ack { id, by, reply } => {
            let answer = p.engine.ack(clock, id, &by, effects);
            // Stored before the answer: an acknowledged ack survives a crash.
            let stored = settle(p, clock, effects, outs, false);
            let _ = reply.send(match (answer, stored) {
                (Err(e), _) => Err(Refusal::Refused(e)),
                (Ok(_), Err(e)) => Err(Refusal::NotStored(e)),
                (Ok(v), Ok(())) => Ok(v),
            });
        }
        Control::Step {
            id,
            step,
            by,
            note,
            reply,
        } => {
            let answer = p.desk.step(clock, id, step, &by, note, outs);
            let stored = settle(p, clock, effects, outs, false);
            let _ = reply.send(match (answer, stored) {
                (Err(e), _) => Err(Refusal::Refused(e)),
                (Ok(_), Err(e)) => Err(Refusal::NotStored(e)),
                (Ok(o), Ok(())) => Ok(o),
            });
        }
    }
    false
}

/// What follows from a step's effects, stored in one transaction: work
/// orders from intents (with the store's evidence), duties fulfilled by
/// self-tests, notifications to the managers, maintenance windows, then the
/// commit and what the desk says to tell. `force` signs a checkpoint.
fn settle(
    p: &mut Pipeline<'_>,
    clock: i64,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
    force: bool,
) -> Result<(), String> {
    use alerting::Effect;
    let m = &p.shared.metrics;
    for e in effects.iter() {
        match e {
            Effect::WorkOrder(intent) => {
                let series = match intent {
                    alerting::WorkOrderIntent::Open { alert } => evidence(p, alert),
                    alerting::WorkOrderIntent::Close { .. } => Vec::new(),
                };
                p.desk.intent(clock, intent, series, outs);
            }
            Effect::Record(r) if r.kind == "self_test" => {
                let ok = r.detail.iter().any(|(k, v)| k == "ok" && v == "true");
                p.desk.self_test(clock, &r.site, &r.class, &r.device, ok, outs);
            }
            Effect::Notify(n) => {
                let managers = p.desk.policy().managers(&n.site);
                for r in p.courier.notification(n, &managers, m) {
                    p.ledger.record(r);
                }
            }
            _ => {}
        }
    }
    for o in outs.iter() {
        match o {
            dispatch::Out::Maintenance {
                site,
                class,
                device,
                order,
                active,
            } => {
                let reason = format!("order:{order}");
                if *active {
                    p.engine.add_window(alerting::Window {
                        site: Some(site.clone()),
                        class: protocol::DeviceClass::from_name(class),
                        device: Some(device.clone()),
                        from: clock,
                        to: i64::MAX,
                        reason,
                    });
                } else {
                    p.engine.end_window(&reason, clock);
                }
            }
            dispatch::Out::Tell(_) | dispatch::Out::Order { .. } => {}
        }
    }
    // What the desk says to tell is decided now and kept in the outbox
    // table with the change it is about; it is handed to the channels only
    // once stored: a contractor is never sent an order the gateway could
    // lose, and a kill after the commit does not lose the message.
    for o in outs.iter() {
        if let dispatch::Out::Tell(t) = o {
            let order = outs
                .iter()
                .rev()
                .find_map(|o| match o {
                    dispatch::Out::Order { order, .. } if order.id == t.order => Some(&**order),
                    _ => None,
                })
                .or_else(|| p.desk.order(t.order));
            if let Some(r) = p.courier.tell(clock, t, order, m) {
                p.ledger.record(r);
            }
        }
    }
    p.ledger.stage_outbox(p.courier.take_unwritten());
    let stored = p
        .ledger
        .commit(
            &mut p.store,
            &p.engine,
            &p.desk,
            &p.shared.alerts,
            m,
            clock,
            effects,
            outs,
            force,
        )
        .map_err(|e| e.to_string());
    if stored.is_ok() {
        let (records, done) = p.courier.release(clock, m);
        for r in records {
            p.ledger.record(r);
        }
        for id in done {
            p.ledger.outbox_done(id);
        }
        release(p);
    } else {
        failed(p);
    }
    effects.clear();
    outs.clear();
    stored
}

/// The samples before an alert that a work order carries as its evidence:
/// stored ones and those of the batch not yet committed.
fn evidence(p: &Pipeline<'_>, alert: &alerting::AlertView) -> Vec<dispatch::Sample> {
    let trigger = alert.fired_at.unwrap_or(alert.since).min(alert.since);
    p.ledger
        .recent(
            &p.store,
            &alert.site,
            &alert.device,
            trigger - crate::workorders::EVIDENCE_BEFORE_MS,
            crate::workorders::EVIDENCE_SAMPLES,
        )
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no evidence series for a work order");
            Vec::new()
        })
}

/// The batch's commit failed: it stays, unacknowledged, and is tried again
/// after a back-off; the disk is measured (a full one holds telemetry back).
fn failed(p: &mut Pipeline<'_>) {
    let wait = p.batch.failed(Instant::now());
    let m = &p.shared.metrics;
    m.store_errors.inc();
    m.commit_failures.set(i64::from(p.batch.failures()));
    tracing::warn!(
        messages = p.batch.len(),
        failures = p.batch.failures(),
        retry_in = ?wait,
        "the batch is not stored; its messages stay unacknowledged and are tried again"
    );
    check_disk(p);
}

/// The batch is committed: its acknowledgements go out (in the order the
/// messages were taken; each connection's in arrival order), its lines go
/// to the time-series copy, and its latency is measured.
fn release(p: &mut Pipeline<'_>) {
    let r = p.batch.committed();
    let m = &p.shared.metrics;
    m.commit_failures.set(0);
    let now = p.shared.clock.now_ms();
    for received in r.received {
        #[allow(clippy::cast_precision_loss)]
        m.pipeline_seconds.observe((now - received).max(0) as f64 / 1000.0);
    }
    for ack in r.acks {
        ack.release();
    }
    if let Some(tx) = p.influx
        && !r.lines.is_empty()
        && tx.blocking_send(r.lines).is_err()
    {
        tracing::error!("the InfluxDB collector has stopped");
    }
}

/// One message through ingest, registry and the alerting engine, staged for
/// the batch's commit with its acknowledgement; returns its receive time.
fn handle(
    p: &mut Pipeline<'_>,
    input: Input,
    last_log: &mut HashMap<String, Instant>,
    effects: &mut Vec<alerting::Effect>,
    outs: &mut Vec<dispatch::Out>,
    clock: i64,
) -> i64 {
    let m = &p.shared.metrics;
    let (incoming, ack) = match input {
        Input::Polled(incoming) => (*incoming, None),
        Input::Mqtt(pb) => match ingest(&pb.topic, &pb.payload, pb.received_ms) {
            Ok(i) => (i, pb.ack),
            Err(r) => {
                if let Some(rec) = note_rejected(&p.store, m, last_log, &r, &pb) {
                    p.ledger.record(rec);
                }
                // Refused, and acknowledged with the batch: the record of
                // the refusal (if any) is committed first.
                p.batch.add(Instant::now(), pb.received_ms, pb.ack, []);
                return pb.received_ms;
            }
        },
    };
    m.ingested
        .get_or_create(&KindLabel {
            kind: incoming.topic.kind.to_string(),
        })
        .inc();
    let (obs, device) = {
        let mut reg = p
            .shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let obs = reg.observe(&incoming);
        (obs, reg.get(&crate::registry::DeviceKey::of(&incoming)).cloned())
    };
    m.lost.inc_by(u64::from(obs.lost));
    if obs.reordered {
        m.reordered.inc();
    }
    if obs.skewed {
        m.skewed.inc();
    }
    let received = incoming.received_ms;
    if obs.duplicate {
        // Stored before (or in this batch): acknowledged with the batch.
        m.duplicates.inc();
        p.batch.add(Instant::now(), received, ack, []);
        return received;
    }
    judge(&mut p.engine, &incoming, obs, device.as_ref(), effects, clock);
    if obs.came_online {
        // Its periodic duties begin (no-op when they run already).
        let t = &incoming.topic;
        p.desk
            .device_seen(clock, t.site.as_str(), t.class.as_str(), t.device.as_str(), outs);
    }
    let lines = if p.influx.is_some() {
        crate::influx::lines(&incoming)
    } else {
        Vec::new()
    };
    // The registry's state goes with the samples: a device's last sequence
    // number is durable exactly when the message that moved it is.
    if let Some(d) = device {
        p.ledger.stage_device(d);
    }
    p.ledger.stage(incoming);
    p.batch.add(Instant::now(), received, ack, lines);
    received
}

/// Feeds a stored message to the alerting engine, with what the registry
/// found: a gap before it, a will that is stale (ignored).
fn judge(
    engine: &mut alerting::Engine,
    incoming: &crate::ingest::Incoming,
    obs: crate::registry::Observation,
    device: Option<&crate::registry::Device>,
    effects: &mut Vec<alerting::Effect>,
    clock: i64,
) {
    let d = alerting::DeviceRef {
        site: incoming.topic.site.as_str(),
        class: incoming.topic.class,
        device: incoming.topic.device.as_str(),
    };
    let now = clock.max(incoming.received_ms);
    if obs.lost > 0 {
        engine.observe(now, d, alerting::Input::Gap, effects);
    }
    // A will of an older session: the node is already back.
    if matches!(incoming.message, protocol::Message::Death(_)) && !device.is_some_and(|d| d.died) {
        return;
    }
    engine.observe(now, d, alerting::Input::Message(&incoming.message), effects);
}

/// Counts a rejected publish; once a minute per topic also logs it, keeps an
/// audit row and returns a supervision record of it, so a flood of garbage
/// cannot fill the log, the disk or the chain.
fn note_rejected(
    store: &Store,
    m: &Metrics,
    last_log: &mut HashMap<String, Instant>,
    r: &crate::ingest::Rejected,
    p: &Publish,
) -> Option<records::NewRecord> {
    m.rejected
        .get_or_create(&ReasonLabel {
            reason: r.reason.to_owned(),
        })
        .inc();
    if last_log.get(&r.topic).is_some_and(|t| t.elapsed() < REJECT_LOG_EVERY) {
        return None;
    }
    tracing::warn!(topic = %r.topic, reason = r.reason, detail = %r.detail, "rejected input");
    last_log.insert(r.topic.clone(), Instant::now());
    if let Err(e) = store.record_rejected(p.received_ms, r, &p.payload) {
        tracing::error!(error = %e, "could not record rejected input");
    }
    // fm/v1/{site}/{class}/{device}/{kind}, when the topic has that shape.
    let parts: Vec<&str> = r.topic.split('/').collect();
    let (site, class, device) = match parts.as_slice() {
        ["fm", "v1", site, class, device, _] => ((*site).to_owned(), (*class).to_owned(), (*device).to_owned()),
        _ => (String::new(), String::new(), String::new()),
    };
    Some(records::NewRecord {
        at: p.received_ms,
        kind: "rejected_input".into(),
        site,
        class,
        device,
        subject: String::new(),
        body: serde_json::json!({
            "topic": r.topic, "reason": r.reason, "detail": r.detail, "bytes": p.payload.len(),
        })
        .to_string(),
    })
}

/// A random 32-hex-digit token from the OS's randomness (`/dev/urandom`), or
/// the clock and process id where that is missing.
#[must_use]
pub fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_err() {
        let seed = now_ms().to_le_bytes();
        let pid = std::process::id().to_le_bytes();
        bytes[..8].copy_from_slice(&seed);
        bytes[8..12].copy_from_slice(&pid);
    }
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where the pipeline hands InfluxDB its lines.
type InfluxSender = mpsc::Sender<Vec<crate::influx::Line>>;

/// The running InfluxDB sink: its collector, its shipper, and the shipper's stop signal.
type InfluxTasks = (
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
);

/// Starts the InfluxDB collector and shipper when `[influx]` is configured.
fn start_influx(config: &Config, shared: &Shared) -> anyhow::Result<(Option<InfluxSender>, Option<InfluxTasks>)> {
    let Some(ic) = &config.influx else {
        return Ok((None, None));
    };
    let spool = crate::influx::Spool::open(&config.storage.data_dir.join("spool"))
        .with_context(|| format!("spool directory in {}", config.storage.data_dir.display()))?;
    let (itx, irx) = mpsc::channel(1024);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let collector = tokio::spawn(crate::influx::collect(
        ic.clone(),
        spool.clone(),
        irx,
        shared.metrics.clone(),
    ));
    let shipper = tokio::spawn(crate::influx::ship(ic.clone(), spool, shared.metrics.clone(), stop_rx));
    tracing::info!(url = %ic.url, bucket = %ic.bucket, "copying telemetry to InfluxDB");
    Ok((Some(itx), Some((collector, shipper, stop_tx))))
}

/// Starts one polling task per Modbus TCP device and one per RTU bus, on
/// the gateway's clock, forwarding what they build into the pipeline. A
/// device's slot in [`Shared::polls`] is its index in the configuration.
fn start_pollers(config: &Config, pipeline_tx: &Lanes, shared: &Shared) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let schedule = &shared.polls;
    let forward = |rx: mpsc::Receiver<crate::modbus::Batch>, slots: Vec<usize>| {
        let lanes = pipeline_tx.clone();
        let metrics = shared.metrics.clone();
        let schedule = schedule.clone();
        let mut rx = rx;
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for incoming in batch.messages {
                    let kind = incoming.topic.kind.to_string();
                    if !lanes.send(&kind, Input::Polled(Box::new(incoming)), &metrics).await {
                        schedule.close();
                        return;
                    }
                }
                // Only now: a barrier that sees the new due time finds the
                // poll's messages in the lanes.
                schedule.set(batch.slot, batch.next_ms);
            }
            for slot in slots {
                schedule.retire(slot);
            }
        })
    };
    let mut buses: Vec<(crate::modbus::SerialConfig, Vec<_>)> = Vec::new();
    for (slot, device) in config.modbus.devices.iter().cloned().enumerate() {
        // Validated at load: the map resolves.
        let Ok(points) = device.points() else {
            schedule.retire(slot);
            continue;
        };
        if let Some(serial) = device.serial.clone() {
            match buses.iter_mut().find(|(s, _)| s.path == serial.path) {
                Some((_, list)) => list.push((device, points, slot)),
                None => buses.push((serial, vec![(device, points, slot)])),
            }
            continue;
        }
        let (ptx, prx) = mpsc::channel(64);
        tracing::info!(device = %device.device, "polling over Modbus TCP");
        tasks.push(tokio::spawn(crate::modbus::poll_device(
            device,
            points,
            slot,
            shared.clock.clone(),
            ptx,
            shared.metrics.clone(),
        )));
        tasks.push(forward(prx, vec![slot]));
    }
    for (serial, devices) in buses {
        let (ptx, prx) = mpsc::channel(64);
        tracing::info!(path = %serial.path, devices = devices.len(), "polling a Modbus RTU bus");
        let slots = devices.iter().map(|(_, _, slot)| *slot).collect();
        tasks.push(tokio::spawn(crate::modbus::poll_bus(
            serial,
            devices,
            shared.clock.clone(),
            ptx,
            shared.metrics.clone(),
        )));
        tasks.push(forward(prx, slots));
    }
    tasks
}

#[cfg(test)]
mod lanes {
    use super::{Input, Next, Receivers};
    use tokio::sync::mpsc;

    fn polled(kind: &str, seq: u32) -> Input {
        let payload = match kind {
            "data" => format!(r#"{{"v":1,"seq":{seq},"ts":0,"m":{{"pump_fault":false}}}}"#),
            _ => format!(r#"{{"v":1,"seq":{seq},"ts":0,"code":"fire_alarm","active":true}}"#),
        };
        let incoming = crate::ingest::ingest(&format!("fm/v1/s/firepump/P/{kind}"), payload.as_bytes(), 0)
            .unwrap_or_else(|r| panic!("{r:?}"));
        Input::Polled(Box::new(incoming))
    }

    fn label(n: Option<Next>) -> String {
        match n {
            Some(Next::Control(c)) => format!("control {c:?}"),
            Some(Next::Message(Input::Polled(i), lane)) => {
                format!(
                    "{} {} seq {:?}",
                    if lane { "priority" } else { "bulk" },
                    i.topic.kind,
                    i.message.header().seq
                )
            }
            Some(Next::Message(Input::Mqtt(_), _)) => "mqtt".into(),
            Some(Next::Wake) => "wake".into(),
            None => "closed".into(),
        }
    }

    /// A fire alarm queued behind bulk telemetry is taken before it, and an
    /// acknowledgement (a control) before both; each lane keeps its order.
    #[test]
    fn controls_then_the_priority_lane_then_bulk() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let (ctx, control) = mpsc::channel(4);
        let (ptx, priority) = mpsc::channel(4);
        let (btx, bulk) = mpsc::channel(8);
        for seq in 1..=3 {
            btx.try_send(polled("data", seq))
                .unwrap_or_else(|_| panic!("bulk full"));
        }
        ptx.try_send(polled("event", 10))
            .unwrap_or_else(|_| panic!("priority full"));
        ptx.try_send(polled("event", 11))
            .unwrap_or_else(|_| panic!("priority full"));
        ctx.try_send(crate::alerts::Control::Tick)
            .unwrap_or_else(|_| panic!("control full"));
        let mut rx = Receivers {
            control,
            priority,
            bulk,
        };
        let order: Vec<String> = (0..6).map(|_| label(rx.next(rt.handle(), true, None))).collect();
        assert_eq!(
            order,
            [
                "control Tick",
                "priority event seq Some(10)",
                "priority event seq Some(11)",
                "bulk data seq Some(1)",
                "bulk data seq Some(2)",
                "bulk data seq Some(3)",
            ]
        );
        drop((ctx, ptx, btx));
        assert_eq!(label(rx.next(rt.handle(), true, None)), "closed");
    }

    /// While the bulk lane is closed (too many samples wait for a failing
    /// store) events still come through, telemetry stays queued, and a
    /// deadline wakes the pipeline to try the store again.
    #[test]
    fn a_closed_bulk_lane_lets_events_through_and_a_deadline_wakes() {
        // A handle's block_on drives timers only on a multi-thread runtime
        // (the gateway's own).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let (_ctx, control) = mpsc::channel(4);
        let (ptx, priority) = mpsc::channel(4);
        let (btx, bulk) = mpsc::channel(4);
        btx.try_send(polled("data", 1)).unwrap_or_else(|_| panic!("bulk full"));
        ptx.try_send(polled("event", 2))
            .unwrap_or_else(|_| panic!("priority full"));
        let mut rx = Receivers {
            control,
            priority,
            bulk,
        };
        let soon = Some(std::time::Instant::now() + std::time::Duration::from_millis(20));
        assert_eq!(label(rx.next(rt.handle(), false, soon)), "priority event seq Some(2)");
        assert_eq!(label(rx.next(rt.handle(), false, soon)), "wake");
        assert_eq!(label(rx.next(rt.handle(), true, None)), "bulk data seq Some(1)");
    }
}
