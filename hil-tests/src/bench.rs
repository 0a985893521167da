//! The bench: runs one [`Scenario`] — the compound's simulated devices with
//! the real firmware, their links (MQTT to a real broker, Modbus TCP or RTU
//! polled by the gateway), and the real gateway in this process — and
//! writes down what happened ([`Journal`]) for the expectations to judge.
//!
//! Two clock modes:
//!
//! - **virtual**: the gateway runs on a [`ManualClock`]. Every 100 ms of
//!   scenario time the devices step, what they published reaches the
//!   gateway, and every virtual second the gateway ticks and is synced (its
//!   Modbus polls due by then are done, its lanes drained and stored). A day
//!   runs in seconds, and a run is the same run every time.
//! - **real**: the gateway runs on the system clock with its own ticker and
//!   the devices step in wall time, for a lab watching the console.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use gateway::app::run::Running;
use gateway::app::shared::Options;
use gateway::clock::ManualClock;
use gateway::metrics::KindLabel;
use sim::device::SimDevice;
use sim::modbus::{LinkControl, RtuBus, SharedResponder, TcpSlave};
use sim::uplink::{LinkStats, Uplink};

use crate::scenario::{Anchor, Broker, DeviceDecl, Expectation, Happening, LinkAction, LinkKind, Scenario, Step};

/// Scenario time per step of the devices.
pub const STEP_MS: u64 = 100;
/// A charging bay is observed every firmware tick, so a cut-off is timed to
/// the tick it happened in.
const BAY_TICK_MS: u64 = 10;
/// How long the bench waits in real time for the gateway to take what was
/// published before it moves on (a broker that is down holds it longer).
const INGEST_WAIT: Duration = Duration::from_secs(3);

/// Whose time the run goes by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockMode {
    /// Virtual time, as fast as the machine goes (CI).
    #[default]
    Virtual,
    /// Wall time (a lab watching the console).
    Real,
}

/// Told how far a run has got (scenario ms), every scenario second.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How to run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// The clock mode.
    pub clock: ClockMode,
    /// Keep the gateway's HTTP API on this port (real mode, for the
    /// console); a free port otherwise.
    pub http_port: Option<u16>,
    /// The admin token of the gateway (default `hil`).
    pub token: Option<String>,
    /// Told how far the run has got.
    pub progress: Option<Progress>,
}

/// One alert change from the gateway's event stream.
#[derive(Clone, Debug)]
pub struct AlertSeen {
    /// `fired`, `resolved`, `updated`, ...
    pub change: String,
    /// The alert after it (the API's JSON).
    pub alert: serde_json::Value,
}

/// What happened during a run, for the expectations.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    /// Epoch ms of scenario time 0 (the gateway's clock then).
    pub start_ms: i64,
    /// How long it ran, scenario ms.
    pub ran_ms: u64,
    /// Every alert change, in order.
    pub alerts: Vec<AlertSeen>,
    /// Every work-order change (`{change, order}`), in order.
    pub orders: Vec<serde_json::Value>,
    /// Every alert people were told of (the notifications' firing lists).
    pub notified: Vec<serde_json::Value>,
    /// Scenario ms of each labelled step.
    pub labels: BTreeMap<String, u64>,
    /// Scenario ms at which an anchor condition first held, by (device,
    /// port, anchor text).
    pub conditions: BTreeMap<(String, Option<u8>, String), u64>,
    /// Each charging port's relay changes: (device, port) → [(ms, on)],
    /// starting with its state at 0.
    pub relays: BTreeMap<(String, u8), Vec<(u64, bool)>>,
    /// What each MQTT link carried.
    pub links: BTreeMap<String, LinkStats>,
    /// The acks each MQTT node published, in order.
    pub acks: BTreeMap<String, Vec<sim::uplink::AckSeen>>,
    /// The commands each MQTT node was handed, in order.
    pub received: BTreeMap<String, Vec<sim::uplink::CommandSeen>>,
    /// The commands sent through the gateway's API, by their step's name.
    pub api: BTreeMap<String, ApiSent>,
    /// What the gateway's API says of each command it knows at the end
    /// (`GET /api/v1/commands/{id}`), by id: those sent through the API
    /// and those its nodes were handed.
    pub commands: BTreeMap<String, serde_json::Value>,
    /// The gateway's registry at the end (the API's device JSON).
    pub registry: Vec<gateway::registry::Device>,
    /// Events the bench missed because it read the stream too late.
    pub lagged: u64,
    /// Messages the gateway ingested, by the end.
    pub ingested: u64,
    /// Whether the supervision records verified after the run, and how many.
    pub records: Option<(bool, u64)>,
    /// The gateway's device id of each bus's root cause (`bus:<path>`), by
    /// the scenario's bus name.
    pub buses: BTreeMap<String, String>,
    /// Notes on the run (a slow ingest, a refused action).
    pub notes: Vec<String>,
}

/// A command the bench sent through the gateway's API.
#[derive(Clone, Debug)]
pub struct ApiSent {
    /// The device.
    pub device: String,
    /// Scenario ms of the request.
    pub at_ms: u64,
    /// The id the gateway gave it (202), if it took it.
    pub id: Option<String>,
}

/// A device on the bench with its link.
struct Bench {
    decl: DeviceDecl,
    dev: Arc<Mutex<SimDevice>>,
    uplink: Option<Uplink>,
    /// A Modbus link's fault controls.
    control: Option<Arc<LinkControl>>,
}

/// The simulated Modbus side: the nodes' TCP servers and RTU buses, and
/// the gateway's `[[modbus.devices]]` for them.
#[derive(Default)]
struct ModbusSide {
    tcp: Vec<TcpSlave>,
    rtu: Vec<RtuBus>,
    ptys: Vec<testkit::PtyPair>,
    config: String,
    /// Scenario bus name → the gateway's `bus:<path>`.
    names: BTreeMap<String, String>,
}

/// How long a poll request may take before the gateway calls the slave dead
/// (real time: the simulated slaves answer in microseconds).
const MODBUS_TIMEOUT_MS: u64 = 200;

/// Starts the Modbus links of every Modbus device and writes the gateway's
/// configuration for them.
async fn modbus_side(benches: &mut [Bench], dir: &std::path::Path) -> anyhow::Result<ModbusSide> {
    use std::fmt::Write as _;
    let mut side = ModbusSide::default();
    let mut entry = |b: &Bench, place: String| {
        let s = &b.decl.spec;
        let _ = write!(
            side.config,
            "[[modbus.devices]]\nsite = \"{}\"\ndevice = \"{}\"\nclass = \"{}\"\nunit = {}\ninterval_ms = {}\ntimeout_ms = {MODBUS_TIMEOUT_MS}\nports = {}\n{place}\n",
            s.site,
            s.id,
            s.class.as_str(),
            s.unit,
            b.decl.poll.as_millis(),
            if s.class == protocol::DeviceClass::Charger {
                s.ports
            } else {
                0
            },
        );
    };
    for b in benches.iter_mut().filter(|b| b.decl.link == LinkKind::ModbusTcp) {
        let control = LinkControl::new();
        let responder: SharedResponder = b.dev.clone();
        let slave = TcpSlave::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            responder,
            control.clone(),
        )
        .await
        .with_context(|| format!("{}: its Modbus TCP server", b.decl.spec.id))?;
        entry(b, format!("address = \"{}\"", slave.addr()));
        b.control = Some(control);
        side.tcp.push(slave);
    }
    let buses: std::collections::BTreeSet<String> = benches.iter().filter_map(|b| b.decl.bus.clone()).collect();
    for (i, bus) in buses.iter().enumerate() {
        let pty_dir = dir.join(format!("bus-{i}"));
        std::fs::create_dir_all(&pty_dir)?;
        let pty = testkit::PtyPair::open(&pty_dir);
        let mut slaves: Vec<(SharedResponder, Arc<LinkControl>)> = Vec::new();
        for b in benches.iter_mut().filter(|b| b.decl.bus.as_ref() == Some(bus)) {
            let control = LinkControl::new();
            let responder: SharedResponder = b.dev.clone();
            slaves.push((responder, control.clone()));
            entry(
                b,
                format!(
                    "serial = {{ path = \"{}\", baud = 19200, parity = \"none\" }}",
                    pty.b.display()
                ),
            );
            b.control = Some(control);
        }
        side.rtu
            .push(RtuBus::start(&pty.a, 19_200, slaves).with_context(|| format!("bus `{bus}`"))?);
        side.names.insert(bus.clone(), format!("bus:{}", pty.b.display()));
        side.ptys.push(pty);
    }
    Ok(side)
}

fn lock(dev: &Mutex<SimDevice>) -> std::sync::MutexGuard<'_, SimDevice> {
    dev.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The gateway's configuration for the scenario: its own listeners and
/// store, the broker, the Modbus devices, then what the scenario adds.
/// Provisions `spec` in the gateway's data directory before it starts (as
/// `gateway devices add` does); its password and command key.
fn provision(data: &std::path::Path, spec: &sim::device::DeviceSpec) -> anyhow::Result<(String, String)> {
    let answer = gateway::app::cli::add_device_offline(
        data,
        gateway::ops::provisioning::NewDevice {
            site: spec.site.clone(),
            class: spec.class.as_str().to_owned(),
            device: spec.id.clone(),
            certificate_sha256: None,
            rotate: false,
        },
    )
    .map_err(|e| anyhow::anyhow!("provisioning {}/{}: {e}", spec.site, spec.id))?;
    let field = |k: &str| {
        answer[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("provisioning {}/{} gave no {k}", spec.site, spec.id))
    };
    Ok((field("password")?, field("cmd_key")?))
}

fn gateway_config(s: &Scenario, mqtt: &MqttSide, http: u16, dir: &std::path::Path, modbus: &str) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    match mqtt {
        MqttSide::Embedded(port) => {
            let _ = writeln!(t, "[mqtt]\nlisten = \"127.0.0.1:{port}\"\nauth = \"devices\"");
        }
        MqttSide::Mosquitto(m) => {
            let _ = writeln!(
                t,
                "[mqtt.broker]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"fm-gateway-hil\"",
                m.port
            );
        }
    }
    let _ = writeln!(
        t,
        "[http]\nlisten = \"127.0.0.1:{http}\"\n[storage]\ndata_dir = \"{}\"",
        dir.display()
    );
    t.push_str(modbus);
    t.push_str(&s.gateway);
    t.push('\n');
    t
}

enum MqttSide {
    Embedded(u16),
    Mosquitto(testkit::Mosquitto),
}

impl MqttSide {
    fn port(&self) -> u16 {
        match self {
            MqttSide::Embedded(p) => *p,
            MqttSide::Mosquitto(m) => m.port,
        }
    }
}

/// What nodes publish themselves (deaths are the broker's wills).
pub const NODE_KINDS: &[&str] = &["birth", "data", "event", "ack"];

/// Messages of these kinds the gateway has ingested so far: the bench's
/// measure of "the gateway has what was published".
#[must_use]
pub fn ingested(gw: &Running, kinds: &[&str]) -> u64 {
    kinds
        .iter()
        .map(|k| {
            gw.shared
                .metrics()
                .ingested
                .get_or_create(&KindLabel { kind: (*k).into() })
                .get()
        })
        .sum()
}

/// A fault on a Modbus link: the slave stops answering, or answers late.
fn modbus_fault(c: &LinkControl, a: &LinkAction, undo: bool) {
    match (a, undo) {
        (LinkAction::Mute, u) => c.set_mute(!u),
        (LinkAction::Delay { by }, false) => c.set_delay_ms(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)),
        (LinkAction::Delay { .. }, true) => c.set_delay_ms(0),
        (LinkAction::Restore, _) => {
            c.set_mute(false);
            c.set_refuse(None);
            c.set_delay_ms(0);
        }
        _ => {}
    }
}

fn deaths(gw: &Running) -> u64 {
    ingested(gw, &["death"])
}

/// An undo due later: a fault with `for`.
struct Undo {
    at: u64,
    step: Step,
}

/// Runs `scenario` and returns what happened.
///
/// # Errors
/// If the bench cannot be set up (a broker that does not start, a gateway
/// that refuses the configuration) or the gateway stops under it.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> anyhow::Result<Journal> {
    let dir = tempfile::tempdir().context("a temporary data directory")?;
    let mqtt = match scenario.broker {
        Broker::Embedded => MqttSide::Embedded(testkit::free_port()),
        Broker::Mosquitto => MqttSide::Mosquitto(testkit::Mosquitto::start(dir.path())),
    };
    let http = options.http_port.unwrap_or_else(testkit::free_port);
    let data = dir.path().join("data");
    let virtual_time = options.clock == ClockMode::Virtual;
    let start_ms = if virtual_time {
        scenario.start_ms
    } else {
        gateway::app::run::now_ms()
    };
    let mut benches = Vec::new();
    for decl in &scenario.devices {
        let mut spec = decl.spec.clone();
        // On the embedded broker authentication is on, as on a compound's
        // LAN: every node is provisioned first and logs in with its password.
        if matches!(mqtt, MqttSide::Embedded(_)) && spec.password.is_none() {
            let (password, cmd_key) = provision(&data, &spec)?;
            spec.password = Some(password);
            // The node verifies commands with the key the gateway holds,
            // unless the scenario gives its own (a forged-key scenario).
            spec.cmd_key.get_or_insert(cmd_key);
        }
        let dev = Arc::new(Mutex::new(SimDevice::new(spec, start_ms)));
        benches.push(Bench {
            decl: decl.clone(),
            dev,
            uplink: None,
            control: None,
        });
    }
    let modbus = modbus_side(&mut benches, dir.path()).await?;
    let text = gateway_config(scenario, &mqtt, http, &data, &modbus.config);
    let config = gateway::app::config::Config::parse(&scenario.file, &text)
        .map_err(|e| anyhow::anyhow!("the gateway refused the scenario's configuration: {e}"))?;
    let clock = ManualClock::new(start_ms);
    let gw_options = if virtual_time {
        Options {
            clock: Arc::new(clock.clone()),
            ticker: false,
        }
    } else {
        Options::default()
    };
    let token = options.token.clone().unwrap_or_else(|| "hil".into());
    let gw = gateway::app::run::start(config, token.clone(), gw_options).await?;
    // (The embedded broker is up once the gateway has subscribed at it:
    // `connect_all` waits for that.)
    let mut events = gw.shared.alerts().events.subscribe();
    let mut journal = Journal {
        start_ms,
        buses: modbus.names.clone(),
        ..Journal::default()
    };
    connect_all(&gw, &mqtt, &mut benches).await?;
    let mut runner = Runner {
        scenario,
        gw,
        clock,
        virtual_time,
        benches,
        mqtt,
        journal: &mut journal,
        undo: Vec::new(),
        next_step: 0,
        real_start: Instant::now(),
        progress: options.progress.clone(),
        broker_changed: false,
        links_changed: false,
        expect_deaths: None,
        api: Api {
            port: http,
            token: token.clone(),
        },

        api_due: Vec::new(),
        commands_lost: 0,
    };
    let result = runner.run(&mut events).await;
    let Runner { gw, benches, mqtt, .. } = runner;
    note_links(&mut journal, &benches);
    if result.is_ok() {
        command_views(&Api { port: http, token }, &mut journal).await;
    }
    journal.ingested = ingested(&gw, NODE_KINDS);
    journal.registry = gw.shared.registry().snapshot();
    drop(benches);
    gw.stop().await?;
    drop(mqtt);
    for t in modbus.tcp {
        t.stop().await;
    }
    for r in modbus.rtu {
        r.stop().await;
    }
    drop(modbus.ptys);
    result?;
    journal.records = gateway::app::cli::verify_data_dir(&data).ok().map(|v| (v.ok, v.count));
    Ok(journal)
}

/// What each MQTT link carried: its counts, the acks its node published, the
/// commands it handed the node.
fn note_links(journal: &mut Journal, benches: &[Bench]) {
    for b in benches {
        if let Some(u) = &b.uplink {
            let id = &b.decl.spec.id;
            journal.links.insert(id.clone(), u.stats);
            journal.acks.insert(id.clone(), u.acks().to_vec());
            journal.received.insert(id.clone(), u.received().to_vec());
        }
    }
}

/// The gateway's HTTP API, as a console or a script uses it.
struct Api {
    port: u16,
    token: String,
}

impl Api {
    /// One request (HTTP/1.1, the admin's bearer token); the status code and
    /// the body as JSON (`null` if it is not JSON).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let body = body.map(ToString::to_string).unwrap_or_default();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .context("the gateway's API")?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .context("the gateway's API did not answer within 10 s")??;
        let (status, text) = testkit::parse_response(&raw);
        Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
    }
}

/// The commands the gateway's API knows of at the end of a run: every one
/// sent through it, and every one a node was handed (the gateway's own;
/// those the simulated gateway sent are not the real gateway's and answer
/// 404).
async fn command_views(api: &Api, journal: &mut Journal) {
    let ids: std::collections::BTreeSet<String> = journal
        .api
        .values()
        .filter_map(|a| a.id.clone())
        .chain(journal.received.values().flatten().map(|c| c.id.clone()))
        .collect();
    for id in ids {
        match api.call("GET", &format!("/api/v1/commands/{id}"), None).await {
            Ok((200, v)) => {
                journal.commands.insert(id, v);
            }
            Ok(_) => {}
            Err(e) => journal.notes.push(format!("reading command {id}: {e}")),
        }
    }
}

/// Commands the gateway has published so far, whatever their op
/// (`fm_commands_total{status="sent"}`): in virtual time the bench waits
/// until they reached the nodes' links, so a command is carried out in the
/// step it was sent, run after run.
fn gateway_commands_sent(gw: &Running) -> u64 {
    protocol::Op::ALL
        .iter()
        .map(|op| {
            gw.shared
                .metrics()
                .commands
                .get_or_create(&gateway::metrics::CommandLabel {
                    op: op.as_str().into(),
                    status: "sent".into(),
                })
                .get()
        })
        .sum()
}

/// Connects every MQTT device, once the gateway receives from its broker
/// (it subscribes only after it has connected).
async fn connect_all(gw: &Running, mqtt: &MqttSide, benches: &mut [Bench]) -> anyhow::Result<()> {
    if !gw.subscribed(Duration::from_secs(10)).await {
        bail!("the gateway never subscribed at its broker");
    }
    for b in benches.iter_mut().filter(|b| b.decl.link == LinkKind::Mqtt) {
        let spec = b.decl.spec.clone();
        let mut link = {
            let mut dev = lock(&b.dev);
            Uplink::start("127.0.0.1", mqtt.port(), (&spec.site, spec.class, &spec.id), dev.node())
                .with_context(|| format!("{}: its MQTT client", spec.id))?
        };
        // Scenario commands: on the embedded broker only the gateway may
        // publish on `cmd`, so they go out through its in-process publish.
        if let Some(broker) = gw.shared.broker().cloned() {
            link.send_commands_with(Box::new(move |topic, payload| {
                broker.publish(topic, payload.into(), sim::uplink::COMMAND_QOS, false);
            }));
        }
        link.wait_connected()
            .await
            .with_context(|| format!("{}: connecting to the broker", spec.id))?;
        {
            let mut dev = lock(&b.dev);
            let now = dev.now();
            link.pump(dev.node(), now)?;
        }
        b.uplink = Some(link);
    }
    Ok(())
}

/// Waits (in real time, up to `max`) until the gateway has ingested `want`
/// messages. A message takes well under a millisecond from the link to the
/// pipeline, and tokio's timers tick in whole milliseconds, so the bench
/// yields for the first few milliseconds rather than sleeping: a day of a
/// compound publishes some 40,000 messages.
async fn wait_for(gw: &Running, want: u64, max: Duration) -> bool {
    let start = Instant::now();
    loop {
        if ingested(gw, NODE_KINDS) >= want {
            return true;
        }
        let waited = start.elapsed();
        if waited >= max {
            return false;
        }
        if waited < Duration::from_millis(5) {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

struct Runner<'a> {
    scenario: &'a Scenario,
    gw: Running,
    clock: ManualClock,
    virtual_time: bool,
    benches: Vec<Bench>,
    mqtt: MqttSide,
    journal: &'a mut Journal,
    undo: Vec<Undo>,
    next_step: usize,
    real_start: Instant,
    progress: Option<Progress>,
    /// The broker stopped or started in this step.
    broker_changed: bool,
    /// A link was cut or healed in this step.
    links_changed: bool,
    /// The deaths the gateway must have had once the cut links' wills are through.
    expect_deaths: Option<u64>,
    /// The gateway's API.
    api: Api,
    /// `api_command` steps due, sent after the step's other happenings.
    api_due: Vec<(u64, Step)>,
    /// Commands (the bench's or the gateway's) that never reached a node's
    /// link (it was cut off): given up on.
    commands_lost: u64,
}

impl Runner<'_> {
    async fn run(
        &mut self,
        events: &mut tokio::sync::broadcast::Receiver<gateway::ops::alerts::StreamEvent>,
    ) -> anyhow::Result<()> {
        let total = u64::try_from(self.scenario.duration.as_millis()).unwrap_or(u64::MAX);
        let watched = self.watched();
        self.observe(0, &watched);
        let mut t = 0;
        let mut sent_total: u64 = self
            .benches
            .iter()
            .filter_map(|b| b.uplink.as_ref())
            .map(|u| u.stats.published)
            .sum();
        while t < total {
            self.happen(t)?;
            self.send_api_commands().await;
            if self.virtual_time && std::mem::take(&mut self.broker_changed) {
                self.settle_broker().await?;
            }
            if self.virtual_time && std::mem::take(&mut self.links_changed) {
                self.settle_links().await;
            }
            for b in &self.benches {
                let mut dev = lock(&b.dev);
                if b.decl.spec.class == protocol::DeviceClass::Charger {
                    for sub in 1..=STEP_MS / BAY_TICK_MS {
                        dev.advance(BAY_TICK_MS);
                        observe(self.journal, &dev, t + sub * BAY_TICK_MS, &watched);
                    }
                } else {
                    dev.advance(STEP_MS);
                    observe(self.journal, &dev, t + STEP_MS, &watched);
                }
            }
            t += STEP_MS;
            if self.virtual_time {
                self.clock
                    .set(self.journal.start_ms + i64::try_from(t).unwrap_or(i64::MAX));
            } else {
                tokio::time::sleep_until((self.real_start + Duration::from_millis(t)).into()).await;
            }
            let mut sent = 0;
            for b in &mut self.benches {
                if let Some(u) = &mut b.uplink {
                    let mut dev = lock(&b.dev);
                    let now = dev.now();
                    match u.pump(dev.node(), now) {
                        Ok(n) => sent += n,
                        Err(e) => self.journal.notes.push(format!("{} at {t} ms: {e}", b.decl.spec.id)),
                    }
                }
            }
            // A command sent by now (the simulated gateway's this step, the
            // real gateway's since the last) reaches its node this step.
            if self.virtual_time {
                self.settle_commands().await;
            }
            for b in &mut self.benches {
                if let Some(u) = &mut b.uplink {
                    let mut dev = lock(&b.dev);
                    let now = dev.now();
                    u.commands(dev.node(), firmware::hal::Millis(now));
                }
            }
            sent_total += sent;
            if sent > 0 && !wait_for(&self.gw, sent_total, INGEST_WAIT).await && self.broker_up() {
                self.journal.notes.push(format!(
                    "at {t} ms the gateway had not taken every published payload after {INGEST_WAIT:?}"
                ));
            }
            if self.virtual_time && (t % 1000 == 0 || sent > 0) {
                if t % 1000 == 0 {
                    self.gw.tick().await?;
                }
                self.gw.sync().await?;
            }
            self.drain(events);
            if t % 1000 == 0
                && let Some(p) = &self.progress
            {
                p(t);
            }
        }
        // Whatever is still on its way: wait for it, then the last word.
        let _ = wait_for(&self.gw, sent_total, INGEST_WAIT).await;
        if self.virtual_time {
            self.gw.tick().await?;
        }
        self.gw.sync().await?;
        self.drain(events);
        self.journal.ran_ms = t;
        Ok(())
    }

    /// In virtual time a broker that stops or starts must be seen to have
    /// done so before time moves on: reconnections take real time, and a
    /// virtual second is a millisecond. Waits (in real time) until the
    /// gateway and every node's link agree with the broker.
    async fn settle_broker(&self) -> anyhow::Result<()> {
        let up = self.broker_up();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let gateway = (self.gw.shared.metrics().mqtt_subscribed.get() == 1) == up;
            let nodes = self
                .benches
                .iter()
                .filter_map(|b| b.uplink.as_ref())
                .filter(|u| !u.faults.partitioned)
                .all(|u| u.connected() == up);
            if gateway && nodes {
                return Ok(());
            }
            if Instant::now() > until {
                bail!(
                    "the gateway and the nodes never noticed the broker {}",
                    if up { "back" } else { "gone" }
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// In virtual time a cut link's will, and a healed link's connection,
    /// must be through before time moves on (both take real milliseconds):
    /// waits until every healed link is connected and the gateway has had
    /// a death for every cut one.
    async fn settle_links(&mut self) {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let healed = self
                .benches
                .iter()
                .filter_map(|b| b.uplink.as_ref())
                .filter(|u| !u.faults.partitioned)
                .all(Uplink::connected);
            let wills = self.expect_deaths.is_none_or(|n| deaths(&self.gw) >= n);
            if healed && wills {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.expect_deaths = None;
    }

    /// Waits (real time, up to [`INGEST_WAIT`]) until every command
    /// published so far, by the simulated gateway or the real one, has
    /// reached its node's link; what does not arrive (the node is cut off)
    /// is given up on.
    async fn settle_commands(&mut self) {
        let expected = |r: &Self| {
            r.benches
                .iter()
                .filter_map(|b| b.uplink.as_ref())
                .map(Uplink::commands_sent)
                .sum::<u64>()
                + gateway_commands_sent(&r.gw)
        };
        let arrived = |r: &Self| {
            r.benches
                .iter()
                .filter_map(|b| b.uplink.as_ref())
                .map(Uplink::commands_arrived)
                .sum::<u64>()
                + r.commands_lost
        };
        if arrived(self) >= expected(self) {
            return;
        }
        let until = Instant::now() + INGEST_WAIT;
        while arrived(self) < expected(self) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.commands_lost += expected(self).saturating_sub(arrived(self));
    }

    /// Sends the `api_command` steps due, through the gateway's API.
    async fn send_api_commands(&mut self) {
        for (t, step) in std::mem::take(&mut self.api_due) {
            let (Happening::Api(a), Some(device)) = (&step.what, &step.device) else {
                continue;
            };
            let Some(b) = self.benches.iter().find(|b| &b.decl.spec.id == device) else {
                continue;
            };
            let path = format!("/api/v1/devices/{}/{}/commands", b.decl.spec.site, device);
            let body = serde_json::json!({ "op": a.op, "args": a.args });
            let id = match self.api.call("POST", &path, Some(&body)).await {
                Ok((202, v)) => v["id"].as_str().map(str::to_owned),
                Ok((status, v)) => {
                    self.journal
                        .notes
                        .push(format!("line {}: the API answered {status}: {v}", step.line));
                    None
                }
                Err(e) => {
                    self.journal.notes.push(format!("line {}: {e:#}", step.line));
                    None
                }
            };
            self.journal.api.insert(
                a.name.clone(),
                ApiSent {
                    device: device.clone(),
                    at_ms: t,
                    id,
                },
            );
        }
    }

    fn broker_up(&self) -> bool {
        !matches!(&self.mqtt, MqttSide::Mosquitto(m) if !m.running())
    }

    /// The anchor conditions the expectations measure from, by device.
    fn watched(&self) -> Vec<(String, Option<u8>, Anchor)> {
        let mut out = Vec::new();
        for e in &self.scenario.expects {
            let (device, port, after) = match &e.what {
                Expectation::Cut {
                    device, port, after, ..
                }
                | Expectation::Alert {
                    device, port, after, ..
                } => (device, *port, after),
                Expectation::Resolved { device, after, .. } | Expectation::Order { device, after, .. } => {
                    (device, None, after)
                }
                _ => continue,
            };
            if !matches!(after, Anchor::Start | Anchor::Label(_)) {
                out.push((device.clone(), port, after.clone()));
            }
        }
        out
    }

    fn observe(&mut self, t: u64, watched: &[(String, Option<u8>, Anchor)]) {
        for b in &self.benches {
            let dev = lock(&b.dev);
            observe(self.journal, &dev, t, watched);
        }
    }

    /// Does what the timeline says is due at `t`, and undoes what has lasted.
    fn happen(&mut self, t: u64) -> anyhow::Result<()> {
        while let Some(step) = self.scenario.steps.get(self.next_step) {
            if u64::try_from(step.at.as_millis()).unwrap_or(u64::MAX) > t {
                break;
            }
            self.next_step += 1;
            if let Some(l) = &step.label {
                self.journal.labels.insert(l.clone(), t);
            }
            if matches!(step.what, Happening::Api(_)) {
                self.api_due.push((t, step.clone()));
            } else {
                self.apply(step, false)?;
            }
            if let Some(d) = step.lasts {
                self.undo.push(Undo {
                    at: t + u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    step: step.clone(),
                });
            }
        }
        let (due, later): (Vec<Undo>, Vec<Undo>) = self.undo.drain(..).partition(|u| u.at <= t);
        self.undo = later;
        for u in due {
            self.apply(&u.step, true)?;
        }
        Ok(())
    }

    fn bench(&mut self, id: Option<&String>) -> Option<&mut Bench> {
        let id = id?;
        self.benches.iter_mut().find(|b| &b.decl.spec.id == id)
    }

    fn apply(&mut self, step: &Step, undo: bool) -> anyhow::Result<()> {
        match &step.what {
            Happening::Device(action) => {
                let Some(b) = self.bench(step.device.as_ref()) else {
                    return Ok(());
                };
                let mut dev = lock(&b.dev);
                let result = if undo {
                    match action {
                        sim::device::Action::Inject { fault, port, .. } => dev.act(&sim::device::Action::Clear {
                            fault: fault.clone(),
                            port: *port,
                        }),
                        _ => Ok(()),
                    }
                } else {
                    dev.act(action)
                };
                drop(dev);
                if let Err(e) = result {
                    self.journal.notes.push(format!("line {}: {e}", step.line));
                }
            }
            // Sent by `send_api_commands`, which can wait for the answer.
            Happening::Api(_) => {}
            Happening::Refuse { exception } => {
                if let Some(c) = self.bench(step.device.as_ref()).and_then(|b| b.control.as_ref()) {
                    c.set_refuse((!undo).then_some(*exception));
                }
            }
            Happening::Link(LinkAction::BrokerRestart) => {
                if let MqttSide::Mosquitto(m) = &mut self.mqtt {
                    self.broker_changed = true;
                    match (step.lasts, undo) {
                        (None, _) => m.restart(),
                        (Some(_), false) => m.stop(),
                        (Some(_), true) => m.start_again(),
                    }
                }
            }
            Happening::Link(LinkAction::Skew { seconds }) => {
                if let Some(b) = self.bench(step.device.as_ref()) {
                    lock(&b.dev).set_skew(if undo { 0 } else { seconds * 1000 });
                }
            }
            Happening::Link(a) if step.bus.is_some() => {
                for b in self.benches.iter().filter(|b| b.decl.bus == step.bus) {
                    if let Some(c) = &b.control {
                        modbus_fault(c, a, undo);
                    }
                }
            }
            Happening::Link(a) => {
                let deaths_now = self.expect_deaths.unwrap_or_else(|| deaths(&self.gw));
                let mut cut = false;
                let mut changed = false;
                let Some(b) = self.bench(step.device.as_ref()) else {
                    return Ok(());
                };
                if let Some(c) = &b.control {
                    modbus_fault(c, a, undo);
                }
                if let Some(u) = &mut b.uplink {
                    let mut dev = lock(&b.dev);
                    match (a, undo) {
                        (LinkAction::Drop, u_) => u.faults.drop = !u_,
                        (LinkAction::Delay { by }, u_) => {
                            u.faults.delay_ms = if u_ {
                                0
                            } else {
                                u64::try_from(by.as_millis()).unwrap_or(u64::MAX)
                            };
                        }
                        (LinkAction::Partition, false) => {
                            u.partition();
                            cut = true;
                        }
                        (LinkAction::Partition, true) | (LinkAction::Restore, _) => {
                            u.faults.drop = false;
                            u.faults.delay_ms = 0;
                            u.heal(dev.node())?;
                            changed = true;
                        }
                        _ => {}
                    }
                }
                if cut {
                    self.expect_deaths = Some(deaths_now + 1);
                }
                self.links_changed |= cut || changed;
            }
        }
        Ok(())
    }

    fn drain(&mut self, events: &mut tokio::sync::broadcast::Receiver<gateway::ops::alerts::StreamEvent>) {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match events.try_recv() {
                Ok(e) => {
                    let v: serde_json::Value = serde_json::from_str(&e.json).unwrap_or_default();
                    match e.name {
                        "alert" => self.journal.alerts.push(AlertSeen {
                            change: v["change"].as_str().unwrap_or_default().to_owned(),
                            alert: v["alert"].clone(),
                        }),
                        "work_order" => self.journal.orders.push(v),
                        "notification" => {
                            if let Some(list) = v["firing"].as_array() {
                                self.journal.notified.extend(list.iter().cloned());
                            }
                        }
                        _ => {}
                    }
                }
                Err(TryRecvError::Lagged(n)) => self.journal.lagged += n,
                Err(_) => return,
            }
        }
    }
}

/// Notes a bay's relays, and the anchor conditions that now hold for a
/// device.
fn observe(journal: &mut Journal, dev: &SimDevice, t: u64, watched: &[(String, Option<u8>, Anchor)]) {
    let id = &dev.spec.id;
    for port in 1..=dev.spec.ports {
        let Some(on) = dev.relay(port) else { break };
        let changes = journal.relays.entry((id.clone(), port)).or_default();
        if changes.last().is_none_or(|(_, was)| *was != on) {
            changes.push((t, on));
        }
    }
    for (device, port, anchor) in watched {
        if device != id {
            continue;
        }
        let key = (device.clone(), *port, anchor_text(anchor));
        if journal.conditions.contains_key(&key) {
            continue;
        }
        let holds = match anchor {
            Anchor::PortTempAtLeast(v) => match port {
                Some(p) => dev.port_temp_c(*p).is_some_and(|c| c >= *v),
                None => (1..=dev.spec.ports).any(|p| dev.port_temp_c(p).is_some_and(|c| c >= *v)),
            },
            Anchor::NodePortTempAtLeast(v) => match port {
                Some(p) => dev.node_port_temp_c(*p).is_some_and(|c| c >= *v),
                None => (1..=dev.spec.ports).any(|p| dev.node_port_temp_c(p).is_some_and(|c| c >= *v)),
            },
            Anchor::NodeEvent(code) => dev.node_active(code),
            Anchor::Smoke => dev.bay().is_some_and(|(s, _)| s),
            Anchor::LeakageAtLeast(v) => dev.bay().is_some_and(|(_, l)| l >= *v),
            Anchor::Start | Anchor::Label(_) => false,
        };
        if holds {
            journal.conditions.insert(key, t);
        }
    }
}

/// The key an anchor condition is journalled under.
#[must_use]
pub fn anchor_text(a: &Anchor) -> String {
    match a {
        Anchor::Start => "start".into(),
        Anchor::Label(l) => l.clone(),
        Anchor::PortTempAtLeast(v) => format!("port_temp_c >= {v}"),
        Anchor::NodePortTempAtLeast(v) => format!("node_port_temp_c >= {v}"),
        Anchor::NodeEvent(c) => format!("node:{c}"),
        Anchor::Smoke => "smoke".into(),
        Anchor::LeakageAtLeast(v) => format!("leakage_ma >= {v}"),
    }
}
