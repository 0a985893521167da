//! The systems under test: each started on free ports in its own directory,
//! waited for until it takes messages, asked how much it consumed, watched
//! for the alerts it raises, measured and stopped.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::http;
use crate::proc::{Proc, Usage, free_port, wait_port};

/// The checked-in Node-RED flow and its settings.
const FLOW: &str = include_str!("../node-red/flows.json");
const SETTINGS: &str = include_str!("../node-red/settings.js");

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, PartialOrd, Ord)]
pub(crate) enum Target {
    /// `mosquitto_sub` on Mosquitto: what a subscriber that does nothing receives.
    Bare,
    /// The gateway connected to Mosquitto.
    GatewayMosquitto,
    /// The gateway on its embedded broker.
    GatewayEmbedded,
    /// Node-RED on Mosquitto with the checked-in flow.
    NodeRed,
}

impl Target {
    /// Its name on the command line and in the tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Bare => "bare",
            Target::GatewayMosquitto => "gateway-mosquitto",
            Target::GatewayEmbedded => "gateway-embedded",
            Target::NodeRed => "node-red",
        }
    }

    /// Whether it is the gateway.
    pub(crate) fn is_gateway(self) -> bool {
        matches!(self, Target::GatewayMosquitto | Target::GatewayEmbedded)
    }

    /// Whether a Mosquitto broker runs beside it.
    fn uses_mosquitto(self) -> bool {
        !matches!(self, Target::GatewayEmbedded)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the programs are.
#[derive(Clone, Debug)]
pub(crate) struct Programs {
    /// The gateway binary.
    pub(crate) gateway: PathBuf,
    /// The npm prefix Node-RED is installed in (`DIR/node_modules/node-red`).
    pub(crate) node_red: PathBuf,
    /// TOML appended to the gateway's configuration (the sink bench's `[influx]`).
    pub(crate) gateway_config: String,
}

/// Messages consumed so far, by kind, and when that was known.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) data: u64,
    pub(crate) birth: u64,
    /// When the last counted data message was seen (exact for the bare
    /// subscriber; the answer's arrival for the others, polled).
    pub(crate) at: Instant,
}

/// Alerts and work orders seen, per device, first time each.
#[derive(Default)]
pub(crate) struct Seen {
    inner: Mutex<SeenInner>,
}

#[derive(Default)]
struct SeenInner {
    alerts: HashMap<String, Instant>,
    orders: HashMap<String, Instant>,
    lagged: u64,
}

impl Seen {
    fn alert(&self, device: &str, at: Instant) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.alerts.entry(device.to_owned()).or_insert(at);
    }

    fn order(&self, device: &str, at: Instant) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.orders.entry(device.to_owned()).or_insert(at);
    }

    fn lagged(&self, n: u64) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).lagged += n;
    }

    /// When the alert of `device` was seen.
    pub(crate) fn alert_at(&self, device: &str) -> Option<Instant> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .alerts
            .get(device)
            .copied()
    }

    /// Alerts and orders seen, of any device.
    pub(crate) fn totals(&self) -> (usize, usize) {
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (s.alerts.len(), s.orders.len())
    }

    /// How many of `devices` have an alert, and an order, and the latest of each.
    pub(crate) fn progress(&self, devices: &[String]) -> (usize, Option<Instant>, usize, Option<Instant>) {
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut na, mut la, mut no, mut lo) = (0, None::<Instant>, 0, None::<Instant>);
        for d in devices {
            if let Some(&t) = s.alerts.get(d) {
                na += 1;
                la = Some(la.map_or(t, |l| l.max(t)));
            }
            if let Some(&t) = s.orders.get(d) {
                no += 1;
                lo = Some(lo.map_or(t, |l| l.max(t)));
            }
        }
        (na, la, no, lo)
    }

    /// Events the gateway's stream said this reader missed.
    pub(crate) fn lagged_total(&self) -> u64 {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).lagged
    }
}

/// What the bare subscriber's output reader counts.
#[derive(Default)]
struct BareCounts {
    data: AtomicU64,
    birth: AtomicU64,
    /// Readiness probes seen (`loadgen/probe`).
    probes: AtomicU64,
    last_data: Mutex<Option<Instant>>,
}

/// A started system under test.
pub(crate) struct Sut {
    pub(crate) target: Target,
    /// Where devices publish.
    pub(crate) mqtt_port: u16,
    /// The HTTP port (gateway, Node-RED).
    http_port: u16,
    token: String,
    /// The consumer: `mosquitto_sub`, the gateway or Node-RED.
    consumer: Proc,
    /// Mosquitto, when the target has it.
    broker: Option<Proc>,
    bare: Option<Arc<BareCounts>>,
    /// Alerts and orders seen.
    pub(crate) seen: Arc<Seen>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sut {
    /// Starts `target` under `dir`, with subscriptions at `qos`, and waits until it is ready.
    pub(crate) async fn start(target: Target, dir: &Path, programs: &Programs, qos: u8) -> Result<Sut> {
        std::fs::create_dir_all(dir)?;
        let broker = if target.uses_mosquitto() {
            Some(start_mosquitto(dir)?)
        } else {
            None
        };
        let broker_port = broker.as_ref().map(|b| b.1);
        let broker = broker.map(|b| b.0);
        let seen = Arc::new(Seen::default());
        let mut tasks = Vec::new();
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let (consumer, mqtt_port, http_port, bare) = match target {
            Target::Bare => {
                let port = broker_port.context("no broker")?;
                let (p, counts) = start_bare(dir, port, qos, seen.clone()).await?;
                (p, port, 0, Some(counts))
            }
            Target::GatewayMosquitto | Target::GatewayEmbedded => {
                let (p, mqtt, http) = start_gateway(dir, programs, broker_port, &token).await?;
                (p, mqtt, http, None)
            }
            Target::NodeRed => {
                let port = broker_port.context("no broker")?;
                let (p, http, task) = start_node_red(dir, &programs.node_red, port, qos, seen.clone()).await?;
                tasks.push(task);
                (p, port, http, None)
            }
        };
        let mut sut = Sut {
            target,
            mqtt_port,
            http_port,
            token,
            consumer,
            broker,
            bare,
            seen,
            tasks,
        };
        if target.is_gateway() {
            sut.watch_gateway_events().await?;
        }
        Ok(sut)
    }

    /// Reads the gateway's event stream into [`Seen`]: alerts that fired,
    /// corrective work orders dispatched.
    async fn watch_gateway_events(&mut self) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = http::sse(self.http_port, "/api/v1/events", Some(&self.token), tx).await?;
        let seen = self.seen.clone();
        self.tasks.push(reader);
        self.tasks.push(tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                match ev.name.as_str() {
                    "alert" if ev.data.starts_with("{\"change\":\"fired\"") => {
                        if let Some(d) = json_str(&ev.data, &["alert", "device"]) {
                            seen.alert(&d, ev.at);
                        }
                    }
                    "work_order" if ev.data.contains("\"change\":\"dispatched\"") => {
                        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
                        let order = &v["order"];
                        if v["change"]["change"] == "dispatched"
                            && order["kind"] == "corrective"
                            && let Some(d) = order["device"].as_str()
                        {
                            seen.order(d, ev.at);
                        }
                    }
                    "lagged" => {
                        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
                        seen.lagged(v["missed"].as_u64().unwrap_or(1));
                    }
                    _ => {}
                }
            }
        }));
        Ok(())
    }

    /// Messages consumed so far.
    pub(crate) async fn counts(&self) -> Result<Counts> {
        match self.target {
            Target::Bare => {
                let b = self.bare.as_ref().context("no counter")?;
                let at = b
                    .last_data
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unwrap_or_else(Instant::now);
                Ok(Counts {
                    data: b.data.load(Relaxed),
                    birth: b.birth.load(Relaxed),
                    at,
                })
            }
            Target::GatewayMosquitto | Target::GatewayEmbedded => {
                let m = self.metrics().await?;
                let kind = |k: &str| {
                    as_count(http::metric_sum(
                        &m,
                        "fm_ingest_messages_total",
                        Some(&format!("kind=\"{k}\"")),
                    ))
                };
                Ok(Counts {
                    data: kind("data"),
                    birth: kind("birth"),
                    at: Instant::now(),
                })
            }
            Target::NodeRed => {
                let (code, body) = http::get(self.http_port, "/bench/count", None).await?;
                if code != 200 {
                    bail!("Node-RED /bench/count: HTTP {code}");
                }
                let v: serde_json::Value = serde_json::from_str(&body).context("Node-RED /bench/count")?;
                let n = |k: &str| v[k].as_u64().unwrap_or(0);
                Ok(Counts {
                    data: n("data"),
                    birth: n("birth"),
                    at: Instant::now(),
                })
            }
        }
    }

    /// The gateway's `/metrics` text.
    pub(crate) async fn metrics(&self) -> Result<String> {
        let (code, body) = http::get(self.http_port, "/metrics", Some(&self.token)).await?;
        if code != 200 {
            bail!("GET /metrics: HTTP {code}");
        }
        Ok(body)
    }

    /// Waits until what the last messages caused is done: for the gateway,
    /// its queues empty and its records, orders and alert changes unchanged
    /// for a second; for the others a moment.
    pub(crate) async fn settle(&self, within: Duration) -> Result<()> {
        if !self.target.is_gateway() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Ok(());
        }
        let deadline = Instant::now() + within;
        let mut last = None;
        let mut since = Instant::now();
        loop {
            let m = self.metrics().await?;
            let depth = http::metric_sum(&m, "fm_pipeline_queue_depth", None);
            let now = (
                as_count(http::metric_sum(&m, "fm_records_total", None)),
                as_count(http::metric_sum(&m, "fm_work_order_changes_total", None)),
                as_count(http::metric_sum(&m, "fm_alert_changes_total", None)),
                as_count(http::metric_sum(&m, "fm_ingest_messages_total", None)),
            );
            if last != Some(now) || depth > 0.0 {
                last = Some(now);
                since = Instant::now();
            } else if since.elapsed() >= Duration::from_secs(1) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the gateway did not settle within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CPU and peak memory of the consumer.
    pub(crate) fn consumer_usage(&self) -> Usage {
        self.consumer.usage()
    }

    /// CPU and peak memory of Mosquitto, when there is one.
    pub(crate) fn broker_usage(&self) -> Option<Usage> {
        self.broker.as_ref().map(Proc::usage)
    }

    /// An error if the consumer or the broker has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        self.consumer.check_alive()?;
        if let Some(b) = self.broker.as_mut() {
            b.check_alive()?;
        }
        Ok(())
    }

    /// Stops everything (the consumer first, then the broker).
    pub(crate) fn stop(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.consumer.stop();
        if let Some(b) = self.broker.as_mut() {
            b.stop();
        }
    }
}

/// A whole-number counter from a metric's float.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // counters are whole and non-negative
fn as_count(v: f64) -> u64 {
    v.max(0.0).round() as u64
}

/// A string at `path` in a JSON text.
fn json_str(text: &str, path: &[&str]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut at = &v;
    for p in path {
        at = at.get(p)?;
    }
    at.as_str().map(str::to_owned)
}

/// Mosquitto with the queue and in-flight limits lifted (mosquitto.conf(5):
/// `max_queued_messages 0` and `max_inflight_messages 0` are "no maximum";
/// `max_queued_bytes` is unlimited by default), so a slow subscriber costs
/// memory, never messages.
fn start_mosquitto(dir: &Path) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n\
             max_queued_messages 0\nmax_inflight_messages 0\nmax_queued_bytes 0\n\
             log_type error\nlog_type warning\nlog_dest stderr\n"
        ),
    )?;
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(&conf);
    let mut p = Proc::spawn("mosquitto", cmd, dir, false).context("mosquitto (Debian package `mosquitto`)")?;
    wait_port(port, &mut p, Duration::from_secs(10))?;
    Ok((p, port))
}

/// `mosquitto_sub` printing each message's topic; a thread counts the lines.
/// Ready once a probe published to it comes out.
async fn start_bare(dir: &Path, port: u16, qos: u8, seen: Arc<Seen>) -> Result<(Proc, Arc<BareCounts>)> {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", &qos.to_string()])
        .args(["-i", "loadgen-bare", "-F", "%t", "-t", "fm/v1/#", "-t", "loadgen/probe"]);
    let mut p =
        Proc::spawn("mosquitto_sub", cmd, dir, true).context("mosquitto_sub (Debian package `mosquitto-clients`)")?;
    let out = p.take_stdout().context("mosquitto_sub's output")?;
    let counts = Arc::new(BareCounts::default());
    let c = counts.clone();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::with_capacity(256 * 1024, out);
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let topic = line.strip_suffix(b"\n").unwrap_or(&line);
            if topic.ends_with(b"/data") {
                c.data.fetch_add(1, Relaxed);
                *c.last_data.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            } else if topic.ends_with(b"/event") {
                // fm/v1/{site}/{class}/{device}/event
                if let Some(device) = topic.split(|&b| b == b'/').nth(4) {
                    seen.alert(&String::from_utf8_lossy(device), Instant::now());
                }
            } else if topic.ends_with(b"/birth") {
                c.birth.fetch_add(1, Relaxed);
            } else if topic == b"loadgen/probe" {
                c.probes.fetch_add(1, Relaxed);
            }
        }
    });
    let mut probe = crate::mqtt::Conn::connect(port, "loadgen-probe", 10).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts.probes.load(Relaxed) == 0 {
        p.check_alive()?;
        if Instant::now() > deadline {
            bail!("mosquitto_sub receives nothing after 30 s; its log:\n{}", p.log_tail());
        }
        probe.publish("loadgen/probe", b"probe", 0).await?;
        probe.flush().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    probe.close().await;
    Ok((p, counts))
}

/// The gateway on an outside broker (`broker_port`) or its embedded one,
/// with its own data directory and admin token; ready on `/readyz`.
async fn start_gateway(
    dir: &Path,
    programs: &Programs,
    broker_port: Option<u16>,
    token: &str,
) -> Result<(Proc, u16, u16)> {
    let bin = &programs.gateway;
    if !bin.exists() {
        bail!(
            "no gateway binary at {} (cargo build -p gateway --release --bin gateway, or --gateway-bin)",
            bin.display()
        );
    }
    let http = free_port()?;
    let data = dir.join("gateway-data");
    std::fs::create_dir_all(&data)?;
    let (mqtt, mqtt_section) = if let Some(p) = broker_port {
        (
            p,
            format!("[mqtt.broker]\nhost = \"127.0.0.1\"\nport = {p}\nclient_id = \"fm-gateway-bench\"\n"),
        )
    } else {
        let p = free_port()?;
        (p, format!("[mqtt]\nlisten = \"127.0.0.1:{p}\"\n"))
    };
    let conf = dir.join("gateway.toml");
    std::fs::write(
        &conf,
        format!(
            "{mqtt_section}\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n[storage]\ndata_dir = \"{}\"\n\n{}",
            data.display(),
            programs.gateway_config
        ),
    )?;
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--config")
        .arg(&conf)
        .env("GATEWAY_ADMIN_TOKEN", token);
    let mut p = Proc::spawn("gateway", cmd, dir, false)?;
    wait_port(http, &mut p, Duration::from_mins(1))?;
    // /readyz: subscribed and the store takes writes. An older gateway
    // without it: /healthz and its subscription in /metrics.
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        p.check_alive()?;
        let (code, _) = http::get(http, "/readyz", None).await?;
        if code == 200 {
            break;
        }
        if code == 404 {
            let (h, _) = http::get(http, "/healthz", None).await?;
            let (_, m) = http::get(http, "/metrics", Some(token)).await?;
            if h == 200 && http::metric_sum(&m, "fm_mqtt_subscribed", None) >= 1.0 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the gateway is not ready after 60 s (/readyz {code}); its log:\n{}",
                p.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if broker_port.is_none() {
        wait_port(mqtt, &mut p, Duration::from_secs(10))?;
    }
    Ok((p, mqtt, http))
}

/// Node-RED from the npm prefix `prefix` with the checked-in settings and
/// flow; ready once `/bench/count` answers and its MQTT birth message
/// (`bench/ready`, sent after it subscribed) has arrived. The task it returns
/// subscribes to `bench/#` and records alerts.
async fn start_node_red(
    dir: &Path,
    prefix: &Path,
    broker: u16,
    qos: u8,
    seen: Arc<Seen>,
) -> Result<(Proc, u16, tokio::task::JoinHandle<()>)> {
    let red = prefix.join("node_modules/node-red/red.js");
    if !red.exists() {
        bail!(
            "no Node-RED at {} (npm install --prefix {} node-red@4, or --node-red)",
            red.display(),
            prefix.display()
        );
    }
    let user = dir.join("node-red");
    std::fs::create_dir_all(&user)?;
    std::fs::write(user.join("flows.json"), FLOW)?;
    let settings = dir.join("node-red-settings.js");
    std::fs::write(&settings, SETTINGS)?;
    let http = free_port()?;

    // Subscribe before Node-RED starts: its birth message is retained anyway.
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let mut opts = rumqttc::MqttOptions::new("loadgen-alerts", "127.0.0.1", broker);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 64);
    client.subscribe("bench/#", rumqttc::QoS::AtLeastOnce).await?;
    let task = tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let at = Instant::now();
                    if p.topic == "bench/ready" {
                        let _ = ready_tx.send(true);
                    } else if let Some(device) = p.topic.strip_prefix("bench/alerts/") {
                        let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                        if v["change"] == "fired" {
                            seen.alert(device, at);
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });

    let mut cmd = Command::new("node");
    cmd.arg(&red)
        .arg("--settings")
        .arg(&settings)
        .arg("--userDir")
        .arg(&user)
        .env("BENCH_MQTT_PORT", broker.to_string())
        .env("BENCH_HTTP_PORT", http.to_string())
        .env("BENCH_QOS", qos.to_string());
    let mut p = Proc::spawn("node-red", cmd, dir, false)?;
    wait_port(http, &mut p, Duration::from_mins(1))?;
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        p.check_alive()?;
        let counted = matches!(http::get(http, "/bench/count", None).await, Ok((200, _)));
        if counted && *ready_rx.borrow_and_update() {
            break;
        }
        if Instant::now() > deadline {
            bail!("Node-RED is not ready after 60 s; its log:\n{}", p.log_tail());
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), ready_rx.changed()).await;
    }
    Ok((p, http, task))
}
