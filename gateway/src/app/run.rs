//! `gateway run`: opens the store, restores the engine, the desk and the
//! chain, starts the broker side (the embedded broker or the sessions with
//! an outside one), the pipeline thread, the Modbus pollers, the InfluxDB
//! sink and the HTTP API, and stops them together.
//!
//! ```text
//!                           ┌─ priority lane (events, births, acks; 1024) ─┐
//! broker ──► ingest::mqtt ──┤  or ingest::embedded                         ├─► pipeline thread ──► one SQLite commit per batch
//! Modbus ──► pollers ───────┴─ bulk lane (data, deaths; 8192) ─────────────┘        │                    └──► PUBACKs
//! HTTP, ticker, broker state ── control (acks, ticks, uplink; 256) ──────────►──────┘
//! HTTP (axum) ◄── registry, open alerts, event stream, read-only SQLite
//! ```
//!
//! The pipeline itself is `crate::pipeline`; delivery and readiness are
//! described in `docs/reliability.md`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rumqttc::AsyncClient;
use tokio::sync::mpsc;

use crate::app::config::Config;
use crate::app::shared::{Options, Shared};
use crate::ingest::lanes::{CONTROL_QUEUE, Input, Lanes, PRIORITY_QUEUE, QUEUE, Receivers};
use crate::ingest::mqtt::Clients;
use crate::metrics::Metrics;
use crate::pipeline::Owned;
use crate::registry::Registry;
use crate::store::Store;

/// How long [`Running::sync`] waits, in real time, for the Modbus polls due
/// at the clock's now: longer than any sane request timeout times a bus's
/// devices, short enough that a wedged poller fails a test instead of hanging it.
pub(crate) const SYNC_POLLS_LIMIT: Duration = Duration::from_secs(30);

/// A gateway started in this process (the HIL simulation's handle on it).
pub struct Running {
    /// What the HTTP side sees: registry, metrics, open alerts, the clock.
    pub shared: Shared,
    pub(crate) control: mpsc::Sender<crate::ops::alerts::Control>,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Lets time pass: the engine's and the desk's deadlines are judged at
    /// the clock's now.
    ///
    /// # Errors
    /// If the pipeline has stopped.
    pub async fn tick(&self) -> anyhow::Result<()> {
        self.control
            .send(crate::ops::alerts::Control::Tick)
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
            .polls()
            .settled(&**self.shared.clock(), SYNC_POLLS_LIMIT)
            .await
            .map_err(|device| {
                anyhow::anyhow!(
                    "the Modbus poll of {device} due at {} ms has not landed after {SYNC_POLLS_LIMIT:?}",
                    self.shared.clock().now_ms()
                )
            })?;
        let (reply, done) = tokio::sync::oneshot::channel();
        self.control
            .send(crate::ops::alerts::Control::Sync(reply))
            .await
            .map_err(|_| anyhow::anyhow!("the pipeline has stopped"))?;
        done.await.map_err(|_| anyhow::anyhow!("the pipeline has stopped"))
    }

    /// Waits (up to `max` of real time) until the broker has acknowledged the
    /// gateway's subscription: nodes that connect before would lose their
    /// birth. Whether it did.
    pub async fn subscribed(&self, max: Duration) -> bool {
        let until = Instant::now() + max;
        while self.shared.metrics().mqtt_subscribed.get() == 0 {
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
pub(crate) type Ready = tokio::sync::oneshot::Sender<(Shared, mpsc::Sender<crate::ops::alerts::Control>)>;

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
    // Held while the gateway runs: offline writers (`gateway devices add`)
    // refuse rather than fork the record chain. Another gateway on the same
    // directory is an operator's error said loudly, not a reason to stop.
    let _lock = crate::store::DataDirLock::take(&config.storage.data_dir)
        .inspect_err(|e| tracing::error!("{e}: is another gateway running on it?"))
        .ok();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let key_path = config.records.key_path(&config.storage.data_dir);
    let signer = crate::ops::supervision::signer(&key_path).context("the record chain's signing key")?;
    warn_if_shared(&config.storage.data_dir, "the data directory", 0o700);
    warn_if_shared(&key_path, "the record chain's signing key", 0o600);
    let shared = shared_state(&config, &mut store, &admin_token, &options, &signer, &control_tx)?;
    let mut engine = start_engine(&config, &mut store, &shared)?;
    let (desk, ledger) = start_desk(&config, &store, &mut engine, signer, &shared)?;
    // The embedded broker's port is taken now, before anything else can
    // fail: its nodes are admitted once the lanes exist (below).
    let listener = match &config.mqtt.broker {
        None => Some(crate::ingest::embedded::Listeners::bind(&config.mqtt).await?),
        Some(_) => None,
    };
    // The API's limits, certificate and port: checked and taken now, too.
    let http = crate::api::serve::Server::bind(&config.http).await?;
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
    courier.restore(crate::ops::workorders::load_outbox(store.conn()).context("reading the notification outbox")?);
    // The platforms upstream: their rows are decided by the pipeline and
    // sent by these loops, which read what a previous run left too.
    let (mut upstream, upstream_tasks) = crate::upstream::start(&config, &control_tx, shared.clock())?;
    upstream.seed(&engine.alerts());
    // Commands to nodes, published on the alarm session (it never waits
    // behind telemetry's back-pressure).
    let commands = crate::ops::commands::Commander::start(
        &config.commands,
        store.conn(),
        Some(clients.notifier()),
        shared.clock().now_ms(),
    )?;
    // The judgement from history, where the last run left it.
    let judgement = crate::ops::judgement::Judgement::load(
        store.conn(),
        config.judgement.settings().map_err(|e| anyhow::anyhow!("{e}"))?,
    )
    .context("restoring the judgement from history")?;
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
        upstream,
        commands,
        judgement,
        influx: influx_tx,
        shared: shared.clone(),
        retention_ms,
        min_free: shared.min_free(),
    };
    let rt = tokio::runtime::Handle::current();
    let pipeline = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || owned.run(&rt, rx))?;
    let gateway_password = clients.gateway_password();
    let mut mqtt = clients.start(listener, &lanes, &control_tx, &shared).await;
    let sparkplug = crate::ingest::sparkplug::start(&config, &gateway_password, &lanes, &shared)?;
    mqtt.extend(sparkplug);
    let ticker = options.ticker.then(|| tokio::spawn(ticker(control_tx.clone())));
    if let Some(r) = ready {
        let _ = r.send((shared.clone(), control_tx.clone()));
    }
    let pollers = start_pollers(&config, &pipeline_tx, &shared);
    drop(pipeline_tx);
    let hub = shared.alerts().clone();
    http.run(shared.clone(), async move {
        shutdown.await;
        let _ = hub.closing.send(true);
    })
    .await
    .context("HTTP server")?;
    tracing::info!("shutting down: draining the pipeline");
    // An upstream request cut off here is sent again at the next start,
    // with its idempotency key.
    for t in mqtt.into_iter().chain(ticker).chain(pollers).chain(upstream_tasks) {
        t.abort();
        let _ = t.await;
    }
    let _ = control_tx.send(crate::ops::alerts::Control::Stop).await;
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
pub(crate) async fn stop_influx((collector, shipper, stop): InfluxTasks) {
    let _ = collector.await;
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(5), shipper).await.is_err() {
        tracing::warn!("InfluxDB backlog left in the spool for the next start");
    }
}

/// What the HTTP side and the tasks share, restored from the store.
pub(crate) fn shared_state(
    config: &Config,
    store: &mut Store,
    admin_token: &str,
    options: &Options,
    signer: &records::Signer,
    control: &mpsc::Sender<crate::ops::alerts::Control>,
) -> anyhow::Result<Shared> {
    Ok(Shared::new(crate::app::shared::Parts {
        registry: Registry::restore(store.load_devices()?),
        metrics: Metrics::default(),
        data_dir: config.storage.data_dir.clone(),
        tokens: crate::api::auth::Tokens::new(admin_token, &config.http.tokens),
        records_key: signer.public_key_hex().into(),
        alerts: crate::ops::alerts::Hub::new(control.clone()),
        clock: options.clock.clone(),
        polls: crate::ingest::modbus::Schedule::new(
            config.modbus.devices.iter().map(|d| d.device.clone()).collect(),
            options.clock.now_ms(),
        ),
        min_free: config.storage.min_free_mb.saturating_mul(1 << 20),
        directory: crate::directory::Directory::new(&config.sites, &config.alerting.buildings, &config.contacts),
        judgement: config.judgement.settings().map_err(|e| anyhow::anyhow!("{e}"))?,
    }))
}

/// Lets the engine's time pass, once a second.
pub(crate) async fn ticker(control: mpsc::Sender<crate::ops::alerts::Control>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        // A tick the pipeline has no room for is covered by the next one.
        if let Err(mpsc::error::TrySendError::Closed(_)) = control.try_send(crate::ops::alerts::Control::Tick) {
            break;
        }
    }
}

/// Checked at every start: the data directory and the signing key are the
/// gateway user's alone (the gateway creates them so: 0700 and 0600). One
/// that others can read or write is logged as an error, with the command
/// that fixes it; the gateway still starts (a safety system that refused to
/// run over a file mode would be the worse failure).
pub(crate) fn warn_if_shared(path: &std::path::Path, what: &str, mode: u32) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let others = meta.permissions().mode() & 0o077;
    if others != 0 {
        tracing::error!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            fix = format!("chmod {mode:o} {}", path.display()),
            "{what} is open to other users"
        );
    }
    others != 0
}

/// The alerting engine from the configuration, restored from the store.
pub(crate) fn start_engine(config: &Config, store: &mut Store, shared: &Shared) -> anyhow::Result<alerting::Engine> {
    let built = config
        .alerting
        .build()
        .map_err(|p| anyhow::anyhow!("{}: {}", p.field, p.message))?;
    let mut engine = alerting::Engine::new(built.rules, built.settings);
    engine.set_windows(built.windows);
    engine.set_buildings(built.buildings);
    engine.restore(store.load_engine().context("restoring the alerting state")?);
    let now = shared.clock().now_ms();
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
    shared.alerts().reset(engine.alerts());
    shared
        .metrics()
        .alerts_open
        .set(i64::try_from(engine.alerts().len()).unwrap_or(i64::MAX));
    tracing::info!(open = engine.alerts().len(), "alerting state restored");
    Ok(engine)
}

/// The dispatch desk (restored from the store, its policy from the config,
/// its duties begun for every known device, maintenance windows of open
/// orders back on the engine), and the ledger over the record chain, with a
/// record of the configuration if it changed since the last start.
pub(crate) fn start_desk(
    config: &Config,
    store: &Store,
    engine: &mut alerting::Engine,
    signer: records::Signer,
    shared: &Shared,
) -> anyhow::Result<(dispatch::Desk, crate::store::ledger::Ledger)> {
    let mut policy = config
        .dispatch
        .build()
        .map_err(|p| anyhow::anyhow!("{}: {}", p.field, p.message))?;
    policy.set_areas(crate::directory::areas(&config.sites));
    let mut desk = dispatch::Desk::new(policy);
    let (state, open) = crate::ops::workorders::load(store.conn()).context("restoring the work orders")?;
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
    let chain = crate::ops::supervision::Chain::open(store.conn(), signer, every, config.records.checkpoint_records)
        .context("opening the record chain")?;
    tracing::info!(records = chain.tail().seq, key = %chain.public_key(), "record chain opened");
    let mut ledger = crate::store::ledger::Ledger::new(chain);
    let now = shared.clock().now_ms();
    let (path, text) = config
        .source
        .as_ref()
        .map_or((None, ""), |(p, t)| (Some(p.as_path()), t.as_str()));
    let fingerprint = |v: &str| ledger.chain().fingerprint(v);
    let audited = crate::ops::supervision::audited_config(path, text, fingerprint);
    let change = crate::ops::supervision::config_change(store.conn(), now, &audited, fingerprint)
        .context("reading the last configuration")?;
    if let Some(r) = change {
        tracing::info!(kind = %r.kind, "configuration change recorded");
        ledger.config(r, audited);
    }
    let known: Vec<(String, String, String)> = shared.registry().with(|r| {
        r.iter()
            .map(|d| (d.key.site.clone(), d.key.class.clone(), d.key.device.clone()))
            .collect()
    });
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
pub(crate) fn start_courier(
    config: &Config,
    client: &AsyncClient,
    control: &mpsc::Sender<crate::ops::alerts::Control>,
) -> anyhow::Result<crate::ops::workorders::Courier> {
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
    // The groups and phones property staff in China read (docs/notifications.md).
    channels.push(Arc::new(
        notify::Wecom::new(&n.wecom, timeout).context("the WeCom channel")?,
    ));
    channels.push(Arc::new(
        notify::Dingtalk::new(&n.dingtalk, timeout).context("the DingTalk channel")?,
    ));
    if let Some(sms) = &n.sms {
        channels.push(Arc::new(
            notify::Sms::new(sms.clone(), timeout).context("the SMS channel")?,
        ));
    }
    let retry = n.retry().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
    let (outbox, mut outcomes, _task) = notify::Outbox::start(channels, retry, n.queue, 16);
    let control = control.clone();
    tokio::spawn(async move {
        while let Some(o) = outcomes.recv().await {
            if control.send(crate::ops::alerts::Control::Delivered(o)).await.is_err() {
                break;
            }
        }
    });
    Ok(crate::ops::workorders::Courier::new(Some(outbox), &config.contacts))
}

/// A random 32-hex-digit token (128 bits) from the OS's generator (`getrandom`).
///
/// # Errors
/// When the OS has no randomness to give: the caller then has no token,
/// rather than a guessable one.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    // The OS's generator, or no token at all: a token guessed from the
    // clock and the process id would be a door anyone could open.
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS for a token: {e}"))?;
    Ok(bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// The running InfluxDB sink: its collector, its shipper, and the shipper's stop signal.
pub(crate) type InfluxTasks = (
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
);

/// Starts the InfluxDB collector and shipper when `[influx]` is configured.
pub(crate) fn start_influx(
    config: &Config,
    shared: &Shared,
) -> anyhow::Result<(Option<crate::pipeline::InfluxSender>, Option<InfluxTasks>)> {
    let Some(ic) = &config.influx else {
        return Ok((None, None));
    };
    let spool = crate::store::influx::Spool::open(&config.storage.data_dir.join("spool"))
        .with_context(|| format!("spool directory in {}", config.storage.data_dir.display()))?;
    let (itx, irx) = mpsc::channel(1024);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let collector = tokio::spawn(crate::store::influx::collect(
        ic.clone(),
        spool.clone(),
        irx,
        shared.metrics().clone(),
    ));
    let shipper = tokio::spawn(crate::store::influx::ship(
        ic.clone(),
        spool,
        shared.metrics().clone(),
        stop_rx,
    ));
    tracing::info!(url = %ic.url, bucket = %ic.bucket, "copying telemetry to InfluxDB");
    Ok((Some(itx), Some((collector, shipper, stop_tx))))
}

/// Starts one polling task per Modbus TCP device and one per RTU bus, on
/// the gateway's clock, forwarding what they build into the pipeline. A
/// device's slot in [`Shared::polls`] is its index in the configuration.
pub(crate) fn start_pollers(config: &Config, pipeline_tx: &Lanes, shared: &Shared) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let schedule = shared.polls();
    let forward = |rx: mpsc::Receiver<crate::ingest::modbus::Batch>, slots: Vec<usize>| {
        let lanes = pipeline_tx.clone();
        let metrics = shared.metrics().clone();
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
    let mut buses: Vec<(crate::ingest::modbus::SerialConfig, Vec<_>)> = Vec::new();
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
        tasks.push(tokio::spawn(crate::ingest::modbus::poll_device(
            device,
            points,
            slot,
            shared.clock().clone(),
            ptx,
            shared.metrics().clone(),
        )));
        tasks.push(forward(prx, vec![slot]));
    }
    for (serial, devices) in buses {
        let (ptx, prx) = mpsc::channel(64);
        tracing::info!(path = %serial.path, devices = devices.len(), "polling a Modbus RTU bus");
        let slots = devices.iter().map(|(_, _, slot)| *slot).collect();
        tasks.push(tokio::spawn(crate::ingest::modbus::poll_bus(
            serial,
            devices,
            shared.clock().clone(),
            ptx,
            shared.metrics().clone(),
        )));
        tasks.push(forward(prx, slots));
    }
    tasks
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_128_random_bits_in_hex() {
        let a = super::random_token().unwrap();
        let b = super::random_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
