//! `gateway run`: the embedded (or outside) broker, MQTT ingest, the pipeline
//! into the registry and store, and the HTTP API, wired by bounded channels
//! and stopped together.
//!
//! ```text
//! broker ──► mqtt task ──(bounded 8192, awaits when full)──► pipeline thread ──► registry + SQLite
//!                                                                 │
//! HTTP (axum) ◄── registry snapshot, read-only SQLite connection ◄┘
//! ```
//!
//! Backpressure: when the pipeline is behind, the MQTT task waits instead of
//! dropping, so the broker holds QoS 1 messages; nothing is dropped between
//! the broker and the store.
//!
//! Delivery: acks are manual. A QoS 1 message is acknowledged to the broker
//! only once it is in the store (or was refused, or is a duplicate): a gateway
//! killed between receipt and write gets it again from its persistent session.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
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
/// Pipeline queue length.
pub const QUEUE: usize = 8192;
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
    /// The admin bearer token.
    pub admin_token: Arc<str>,
}

/// Gateway clock in ms since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts the embedded broker on its own thread (`rumqttd` blocks and has no
/// shutdown: it ends with the process).
///
/// # Errors
/// If the address is taken.
pub fn start_embedded_broker(listen: SocketAddr) -> anyhow::Result<()> {
    // rumqttd reports a taken port only in its own thread: check first.
    drop(TcpListener::bind(listen).with_context(|| format!("mqtt.listen {listen} is not available"))?);
    let text = format!(
        r#"id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 200
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text).context("embedded broker configuration")?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "embedded MQTT broker stopped");
        }
    })?;
    Ok(())
}

fn mqtt_options(config: &Config) -> anyhow::Result<(MqttOptions, String)> {
    let (mut opts, filter) = if let Some(b) = &config.mqtt.broker {
        {
            let mut o = MqttOptions::new(&b.client_id, &b.host, b.port);
            if let (Some(u), Some(p)) = (&b.username, &b.password) {
                o.set_credentials(u, p);
            } else if let Some(u) = &b.username {
                o.set_credentials(u, "");
            }
            let filter = b
                .share_group
                .as_ref()
                .map_or_else(|| FILTER.to_owned(), |g| format!("$share/{g}/{FILTER}"));
            if b.tls {
                o.set_transport(rumqttc::Transport::tls_with_config(tls_config(b)?));
            }
            (o, filter)
        }
    } else {
        let l = config.mqtt.listen;
        let host = if l.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            l.ip().to_string()
        };
        (MqttOptions::new("fm-gateway", host, l.port()), FILTER.to_owned())
    };
    // A persistent session: QoS 1 messages queued while the gateway is away are kept.
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(256 * 1024, 256 * 1024);
    opts.set_manual_acks(true);
    Ok((opts, filter))
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

/// A publish on its way to the pipeline, acknowledged there once handled.
struct Publish {
    packet: rumqttc::Publish,
    received_ms: i64,
}

/// What the pipeline handles: a publish to decode, or a message the Modbus
/// poller built.
enum Input {
    Mqtt(Publish),
    Polled(Box<crate::ingest::Incoming>),
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
    let store = Store::open(&config.storage.data_dir)?;
    let registry = Registry::restore(store.load_devices()?);
    let shared = Shared {
        registry: Arc::new(Mutex::new(registry)),
        metrics: Metrics::default(),
        data_dir: config.storage.data_dir.clone(),
        admin_token: admin_token.into(),
    };
    if config.mqtt.broker.is_none() {
        start_embedded_broker(config.mqtt.listen)?;
        tracing::info!(listen = %config.mqtt.listen, "embedded MQTT broker started");
    }
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen {} is not available", config.http.listen))?;
    tracing::info!(listen = %config.http.listen, "HTTP API listening");

    let (tx, rx) = mpsc::channel::<Input>(QUEUE);
    let pipeline_tx = tx.clone();
    let retention_ms = i64::from(config.storage.retention_days) * 86_400_000;
    let (influx_tx, influx_tasks) = start_influx(&config, &shared)?;
    let (opts, filter) = mqtt_options(&config)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let pipeline = {
        let shared = shared.clone();
        let acker = client.clone();
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || pipeline(store, rx, &acker, influx_tx.as_ref(), &shared, retention_ms))?
    };
    let metrics = shared.metrics.clone();
    let mqtt = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("connected to the MQTT broker");
                    if let Err(e) = client.subscribe(filter.clone(), QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, "subscribe failed");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Publish {
                        packet: p,
                        received_ms: now_ms(),
                    };
                    metrics.queue_depth.inc();
                    if tx.send(Input::Mqtt(msg)).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.mqtt_disconnects.inc();
                    tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });

    let pollers = start_pollers(&config, &pipeline_tx, &shared);
    drop(pipeline_tx);

    let app = crate::http::router(shared.clone());
    axum::serve(http, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")?;
    tracing::info!("shutting down: draining the pipeline");
    mqtt.abort();
    let _ = mqtt.await;
    for p in pollers {
        p.abort();
        let _ = p.await;
    }
    let result = match pipeline.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the pipeline thread panicked"),
    };
    if let Some((collector, shipper, stop)) = influx_tasks {
        // The pipeline is gone, so the collector flushes and ends; the shipper
        // sends what it can for a few seconds, the rest stays spooled.
        let _ = collector.await;
        let _ = stop.send(true);
        if tokio::time::timeout(Duration::from_secs(5), shipper).await.is_err() {
            tracing::warn!("InfluxDB backlog left in the spool for the next start");
        }
    }
    result
}

/// The pipeline: owns the store's write connection.
fn pipeline(
    mut store: Store,
    mut rx: mpsc::Receiver<Input>,
    acker: &AsyncClient,
    influx: Option<&InfluxSender>,
    shared: &Shared,
    retention_ms: i64,
) -> anyhow::Result<()> {
    let m = &shared.metrics;
    let mut last_log: HashMap<String, Instant> = HashMap::new();
    let mut last_prune = Instant::now();
    let ack = |p: Option<&Publish>| {
        if let Some(p) = p
            && let Err(e) = acker.try_ack(&p.packet)
        {
            tracing::warn!(error = %e, "could not acknowledge a message; the broker will send it again");
        }
    };
    while let Some(input) = rx.blocking_recv() {
        m.queue_depth.dec();
        let (incoming, p) = match input {
            Input::Polled(incoming) => (*incoming, None),
            Input::Mqtt(p) => match ingest(&p.packet.topic, &p.packet.payload, p.received_ms) {
                Ok(i) => (i, Some(p)),
                Err(r) => {
                    note_rejected(&store, m, &mut last_log, &r, &p);
                    ack(Some(&p));
                    continue;
                }
            },
        };
        m.ingested
            .get_or_create(&KindLabel {
                kind: incoming.topic.kind.to_string(),
            })
            .inc();
        let (obs, device) = {
            let mut reg = shared
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
        if obs.duplicate {
            m.duplicates.inc();
            ack(p.as_ref());
            continue;
        }
        match store.insert(&incoming) {
            Ok(n) => {
                m.stored.inc_by(n as u64);
                #[allow(clippy::cast_precision_loss)]
                m.pipeline_seconds
                    .observe((now_ms() - incoming.received_ms).max(0) as f64 / 1000.0);
                if let Some(tx) = influx {
                    let lines = crate::influx::lines(&incoming);
                    if !lines.is_empty() && tx.blocking_send(lines).is_err() {
                        tracing::error!("the InfluxDB collector has stopped");
                    }
                }
                ack(p.as_ref());
            }
            Err(e) => {
                // Not acknowledged: the broker keeps it for the next session.
                m.store_errors.inc();
                tracing::error!(error = %e, topic = %incoming.topic, "could not store a message");
            }
        }
        let persist = obs.came_online || !matches!(incoming.message, protocol::Message::Data(_));
        if let (true, Some(d)) = (persist, device)
            && let Err(e) = store.save_device(&d)
        {
            tracing::error!(error = %e, "could not persist the registry");
        }
        if last_prune.elapsed() > Duration::from_hours(1) {
            last_prune = Instant::now();
            match store.prune(now_ms() - retention_ms) {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned telemetry past retention"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "prune failed"),
            }
        }
    }
    // Persist the whole registry on the way out: last-seen times survive a restart.
    let reg = shared
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for d in reg.iter() {
        store.save_device(d)?;
    }
    Ok(())
}

/// Counts a rejected publish; once a minute per topic also logs it and keeps
/// an audit row, so a flood of garbage cannot fill the log or the disk.
fn note_rejected(
    store: &Store,
    m: &Metrics,
    last_log: &mut HashMap<String, Instant>,
    r: &crate::ingest::Rejected,
    p: &Publish,
) {
    m.rejected
        .get_or_create(&ReasonLabel {
            reason: r.reason.to_owned(),
        })
        .inc();
    if last_log.get(&r.topic).is_some_and(|t| t.elapsed() < REJECT_LOG_EVERY) {
        return;
    }
    tracing::warn!(topic = %r.topic, reason = r.reason, detail = %r.detail, "rejected input");
    last_log.insert(r.topic.clone(), Instant::now());
    if let Err(e) = store.record_rejected(p.received_ms, r, &p.packet.payload) {
        tracing::error!(error = %e, "could not record rejected input");
    }
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

/// Starts one polling task per Modbus TCP device and one per RTU bus,
/// forwarding what they build into the pipeline.
fn start_pollers(
    config: &Config,
    pipeline_tx: &mpsc::Sender<Input>,
    shared: &Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let forward = |rx: mpsc::Receiver<crate::ingest::Incoming>| {
        let tx = pipeline_tx.clone();
        let metrics = shared.metrics.clone();
        let mut rx = rx;
        tokio::spawn(async move {
            while let Some(incoming) = rx.recv().await {
                metrics.queue_depth.inc();
                if tx.send(Input::Polled(Box::new(incoming))).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut buses: Vec<(crate::modbus::SerialConfig, Vec<_>)> = Vec::new();
    for device in config.modbus.devices.clone() {
        // Validated at load: the map resolves.
        let Ok(points) = device.points() else { continue };
        if let Some(serial) = device.serial.clone() {
            match buses.iter_mut().find(|(s, _)| s.path == serial.path) {
                Some((_, list)) => list.push((device, points)),
                None => buses.push((serial, vec![(device, points)])),
            }
            continue;
        }
        let (ptx, prx) = mpsc::channel(64);
        tracing::info!(device = %device.device, "polling over Modbus TCP");
        tasks.push(tokio::spawn(crate::modbus::poll_device(
            device,
            points,
            ptx,
            shared.metrics.clone(),
        )));
        tasks.push(forward(prx));
    }
    for (serial, devices) in buses {
        let (ptx, prx) = mpsc::channel(64);
        tracing::info!(path = %serial.path, devices = devices.len(), "polling a Modbus RTU bus");
        tasks.push(tokio::spawn(crate::modbus::poll_bus(
            serial,
            devices,
            ptx,
            shared.metrics.clone(),
        )));
        tasks.push(forward(prx));
    }
    tasks
}
