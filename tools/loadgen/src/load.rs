//! The load: simulated fire pumps publishing samples (rate or burst) with
//! alarms injected during the burst, and the event storm.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use indicatif::ProgressBar;
use protocol::{Metric, Sample, Timestamp, Value};

use crate::mqtt::Conn;
use crate::proc::Usage;
use crate::report::{f, u};
use crate::sut::{Programs, Sut, Target};

/// The compound every simulated device is in.
const SITE: &str = "bench";

/// How samples are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// JSON, the reference encoding.
    Json,
    /// The compact binary encoding (docs/protocol.md), from the protocol crate.
    Binary,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Binary => "binary",
        }
    }
}

/// The shape of one measured run.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// Simulated fire pumps (`P-0` ...).
    pub(crate) devices: usize,
    /// Samples to publish in all.
    pub(crate) messages: u64,
    /// Messages per second in all; `None`: as fast as possible (burst).
    pub(crate) rate: Option<f64>,
    /// QoS of the samples (and of the subscriptions of the bare subscriber and Node-RED).
    pub(crate) qos: u8,
    pub(crate) format: Format,
    /// Alarms injected during the run (devices `A-0` ...), QoS 1.
    pub(crate) events: usize,
    /// One sample in this many has low pressure (0: none).
    pub(crate) low_every: u64,
    /// Publishing connections.
    pub(crate) connections: usize,
    /// QoS 1 window per connection.
    pub(crate) inflight: usize,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub(crate) struct RunResult {
    pub(crate) target: Target,
    pub(crate) qos: u8,
    pub(crate) format: Format,
    pub(crate) run: usize,
    pub(crate) sent: u64,
    pub(crate) consumed: u64,
    /// First publish to last consumed.
    pub(crate) secs: f64,
    pub(crate) msg_s: f64,
    /// When the publishers had handed everything to their sockets.
    pub(crate) publish_secs: f64,
    /// Consumer CPU over the run.
    pub(crate) consumer_cpu_s: f64,
    pub(crate) consumer_rss: u64,
    pub(crate) broker_cpu_s: Option<f64>,
    pub(crate) broker_rss: Option<u64>,
    /// The load generator's own CPU over the run.
    pub(crate) loadgen_cpu_s: f64,
    /// Publish to alert, per injected alarm that arrived.
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) alarms_sent: usize,
    /// Events the gateway's stream said this reader missed.
    pub(crate) lagged: u64,
    /// The most samples published but not yet consumed at one poll: the
    /// backlog in sockets, the broker and the consumer's queues.
    pub(crate) max_backlog: u64,
    /// Bytes of one sample.
    pub(crate) sample_bytes: usize,
}

/// What one storm measured.
#[derive(Clone, Debug)]
pub(crate) struct StormResult {
    pub(crate) target: Target,
    pub(crate) run: usize,
    pub(crate) events: usize,
    /// All events handed to the sockets.
    pub(crate) publish_secs: f64,
    pub(crate) alerts: usize,
    pub(crate) alert_secs: Option<f64>,
    pub(crate) orders: Option<usize>,
    pub(crate) order_secs: Option<f64>,
    /// `sse`, `metrics` (the stream lagged: counters polled every 10 ms) or `mqtt`/`stdout`.
    pub(crate) source: &'static str,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn topic(device: &str, kind: &str) -> String {
    format!("fm/v1/{SITE}/firepump/{device}/{kind}")
}

fn birth(ts: i64) -> Vec<u8> {
    // A long interval: no device goes stale while a run waits.
    format!(r#"{{"v":1,"seq":0,"ts":{ts},"bdseq":1,"fw":"loadgen","model":"bench-pump","cfg":"0","interval_s":3600}}"#)
        .into_bytes()
}

fn fire_alarm(seq: u32, ts: i64) -> Vec<u8> {
    format!(r#"{{"v":1,"seq":{seq},"ts":{ts},"bdseq":1,"code":"fire_alarm","active":true}}"#).into_bytes()
}

/// One fire pump's sample: the four metrics of docs/performance.md's core bench.
fn sample(buf: &mut Vec<u8>, format: Format, seq: u32, ts: i64, low: bool) {
    let pressure = if low { 0.05 } else { 0.35 };
    buf.clear();
    match format {
        Format::Json => {
            use std::io::Write as _;
            let _ = write!(
                buf,
                r#"{{"v":1,"seq":{seq},"ts":{ts},"bdseq":1,"m":{{"network_pressure_mpa":{pressure},"tank_level_m":2.5,"start_signal":false,"pump_running":false}}}}"#
            );
        }
        Format::Binary => {
            let m = [
                (Metric::NetworkPressureMpa, Value::Number(pressure)),
                (Metric::TankLevelM, Value::Number(2.5)),
                (Metric::StartSignal, Value::Bool(false)),
                (Metric::PumpRunning, Value::Bool(false)),
            ];
            let s = Sample {
                seq,
                ts: Timestamp::from_millis(ts),
                hist: false,
                bdseq: Some(1),
                m: &m,
                ports: &[],
            };
            buf.resize(256, 0);
            let n = protocol::encode_sample(&s, protocol::Format::Binary, buf).unwrap_or(0);
            buf.truncate(n);
        }
    }
}

/// The size of one sample in `format` (written into `buf`).
pub(crate) fn sample_bytes(buf: &mut Vec<u8>, format: Format) -> usize {
    sample(buf, format, 1, now_ms(), false);
    buf.len()
}

/// Publishes a birth for each device (QoS 1) and waits until the target has
/// counted them and what they caused is done.
async fn announce(sut: &Sut, devices: &[String], connections: usize, settle: Duration) -> Result<()> {
    let before = sut.counts().await?.birth;
    let ts = now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, chunk) in devices
        .chunks(devices.len().div_ceil(connections.max(1)).max(1))
        .enumerate()
    {
        let port = sut.mqtt_port;
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            let mut conn = Conn::connect(port, &format!("loadgen-birth-{c}"), 1000).await?;
            let payload = birth(ts);
            for d in &chunk {
                conn.publish(&topic(d, "birth"), &payload, 1).await?;
            }
            conn.flush().await?;
            conn.wait_acked(u(chunk.len()), Duration::from_mins(2)).await?;
            conn.close().await;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let want = before + u(devices.len());
    let deadline = Instant::now() + settle;
    loop {
        let n = sut.counts().await?.birth;
        if n >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{}: {} of {} births consumed after {settle:?}",
                sut.target,
                n - before,
                devices.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sut.settle(settle).await
}

/// One measured run against a started target: births, then the samples
/// with the alarms injected among them.
#[allow(clippy::too_many_lines)] // one procedure, read top to bottom
pub(crate) async fn run(sut: &mut Sut, spec: &Spec, run: usize, bar: &ProgressBar) -> Result<RunResult> {
    let pumps: Vec<String> = (0..spec.devices).map(|i| format!("P-{i}")).collect();
    let alarms: Vec<String> = (0..spec.events).map(|k| format!("A-{k}")).collect();
    let mut all = pumps.clone();
    all.extend(alarms.iter().cloned());
    announce(sut, &all, spec.connections, Duration::from_mins(2)).await?;

    // Connections first, so the clock starts with the first publish.
    let conns = spec.connections.clamp(1, spec.devices.max(1));
    // The publishers run on threads of their own, so the readers that stamp
    // consumption and alerts (this runtime) never wait behind them.
    let pub_rt = publisher_runtime()?;
    let mut pubs = Vec::with_capacity(conns);
    for c in 0..conns {
        let (port, inflight) = (sut.mqtt_port, spec.inflight);
        let conn = pub_rt.spawn(async move { Conn::connect(port, &format!("loadgen-pub-{c}"), inflight).await });
        pubs.push(conn.await??);
    }
    let injector = crate::mqtt::BlockingConn::connect(sut.mqtt_port, "loadgen-alarms")?;
    let base = sut.counts().await?;
    let consumer0 = sut.consumer_usage();
    let broker0 = sut.broker_usage();
    let self0 = Usage::of("self");

    let sent = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, mut conn) in pubs.into_iter().enumerate() {
        let devices: Vec<(String, usize)> = (c..spec.devices)
            .step_by(conns)
            .map(|i| (topic(&pumps[i], "data"), i))
            .collect();
        let share = spec.messages / u(conns) + u64::from(u(c) < spec.messages % u(conns));
        let rate = spec.rate.map(|r| r / f(u(conns)));
        let (sent, format, qos, low_every) = (sent.clone(), spec.format, spec.qos, spec.low_every);
        tasks.spawn_on(
            async move {
                let mut seqs = vec![1u32; devices.len()];
                let mut payload = Vec::with_capacity(256);
                let mut unreported = 0;
                for j in 0..share {
                    let i = usize::try_from(j % u(devices.len())).unwrap_or(0);
                    let (topic, dev) = &devices[i];
                    let seq = seqs[i];
                    seqs[i] += 1;
                    let low = low_every > 0 && (u64::from(seq) + u(*dev)).is_multiple_of(low_every);
                    sample(&mut payload, format, seq, now_ms(), low);
                    conn.publish(topic, &payload, qos).await?;
                    unreported += 1;
                    if unreported == 256 {
                        sent.fetch_add(unreported, Relaxed);
                        unreported = 0;
                    }
                    if let Some(r) = rate {
                        let due = t0 + Duration::from_secs_f64(f(j + 1) / r);
                        if due > Instant::now() {
                            conn.flush().await?;
                            tokio::time::sleep_until(due.into()).await;
                        }
                    }
                }
                conn.flush().await?;
                sent.fetch_add(unreported, Relaxed);
                anyhow::Ok((conn, Instant::now()))
            },
            pub_rt.handle(),
        );
    }
    // The alarms: one every messages/events samples, each for its own
    // device, from a thread of their own, stamped as they are written.
    let stop = Arc::new(AtomicBool::new(false));
    let alarm_pubs = {
        let (sent, alarms, n, stop) = (sent.clone(), alarms.clone(), spec.messages, stop.clone());
        let mut injector = injector;
        std::thread::spawn(move || {
            let mut stamps = Vec::with_capacity(alarms.len());
            let k_n = u(alarms.len());
            for (k, d) in alarms.iter().enumerate() {
                let threshold = (2 * u(k) + 1) * n / (2 * k_n);
                while sent.load(Relaxed) < threshold {
                    if stop.load(Relaxed) {
                        return anyhow::Ok((stamps, injector));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                let payload = fire_alarm(1, now_ms());
                let at = Instant::now();
                injector.publish(&topic(d, "event"), &payload)?;
                stamps.push((d.clone(), at));
            }
            anyhow::Ok((stamps, injector))
        })
    };

    // Consumption, polled.
    let want = spec.messages;
    let mut last = base.data;
    let mut grew = base.at.max(t0);
    let mut published: Option<Instant> = None;
    let mut end;
    let mut max_backlog = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(if sut.target == Target::Bare { 5 } else { 25 })).await;
        sut.check_alive()?;
        let c = sut.counts().await?;
        end = c;
        let got = c.data - base.data;
        max_backlog = max_backlog.max(sent.load(Relaxed).saturating_sub(got));
        bar.set_position(got);
        bar.set_message(format!("sent {}", sent.load(Relaxed)));
        if got >= want {
            break;
        }
        if c.data > last {
            last = c.data;
            grew = c.at;
        }
        while let Some(r) = tasks.try_join_next() {
            let (conn, done) = r.context("a publisher panicked")??;
            published = Some(published.map_or(done, |p| p.max(done)));
            conn.close().await;
        }
        let quiet = grew.elapsed();
        if (tasks.is_empty() && quiet > Duration::from_secs(5)) || quiet > Duration::from_secs(30) {
            break;
        }
    }
    let consumer1 = sut.consumer_usage();
    let broker1 = sut.broker_usage();
    let self1 = Usage::of("self");
    let complete = end.data - base.data >= want;
    if !complete {
        // Publishers waiting for a window that will not open, and the alarms waiting for them.
        tasks.abort_all();
        stop.store(true, Relaxed);
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Ok((conn, done))) = r {
            published = Some(published.map_or(done, |p| p.max(done)));
            conn.close().await;
        }
    }
    // Alarms still on their way get 10 s after the samples are in.
    let (stamps, injector) = alarm_pubs
        .join()
        .map_err(|_| anyhow::anyhow!("the alarm thread panicked"))??;
    drop(pub_rt);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stamps.iter().any(|(d, _)| sut.seen.alert_at(d).is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    injector.close();
    let latencies_ms: Vec<f64> = stamps
        .iter()
        .filter_map(|(d, at)| {
            sut.seen
                .alert_at(d)
                .map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();

    let consumed = end.data - base.data;
    let secs = if complete { end.at } else { grew }
        .saturating_duration_since(t0)
        .as_secs_f64();
    let mut one = Vec::new();
    Ok(RunResult {
        target: sut.target,
        qos: spec.qos,
        format: spec.format,
        run,
        sent: spec.messages,
        consumed,
        secs,
        msg_s: if secs > 0.0 { f(consumed) / secs } else { 0.0 },
        publish_secs: published.map_or(secs, |p| p.saturating_duration_since(t0).as_secs_f64()),
        consumer_cpu_s: consumer1.cpu_s - consumer0.cpu_s,
        consumer_rss: consumer1.hwm,
        broker_cpu_s: broker0.zip(broker1).map(|(a, b)| b.cpu_s - a.cpu_s),
        broker_rss: broker1.map(|b| b.hwm),
        loadgen_cpu_s: self1.cpu_s - self0.cpu_s,
        latencies_ms,
        alarms_sent: stamps.len(),
        lagged: sut.seen.lagged_total(),
        max_backlog,
        sample_bytes: sample_bytes(&mut one, spec.format),
    })
}

#[allow(clippy::too_many_lines)] // one procedure, read top to bottom
/// The storm against a started target: `events` devices, announced first,
/// each raise a fire alarm at once, from `connections` connections.
pub(crate) async fn storm(
    sut: &Sut,
    events: usize,
    connections: usize,
    run: usize,
    bar: &ProgressBar,
) -> Result<StormResult> {
    let devices: Vec<String> = (0..events).map(|k| format!("S-{k}")).collect();
    announce(sut, &devices, connections, Duration::from_mins(5)).await?;
    let conns = connections.clamp(1, events.max(1));
    let per = events.div_ceil(conns);
    let pub_rt = publisher_runtime()?;
    let mut ready = Vec::new();
    for (c, chunk) in devices.chunks(per).enumerate() {
        // A window as large as the share: every event goes out at once.
        let (port, n) = (sut.mqtt_port, chunk.len());
        let conn = pub_rt.spawn(async move { Conn::connect(port, &format!("loadgen-storm-{c}"), n).await });
        ready.push((conn.await??, chunk.to_vec()));
    }
    let metrics0 = if sut.target.is_gateway() {
        Some(storm_counters(&sut.metrics().await?))
    } else {
        None
    };
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut conn, chunk) in ready {
        tasks.spawn_on(
            async move {
                let ts = now_ms();
                for d in &chunk {
                    conn.publish(&topic(d, "event"), &fire_alarm(1, ts), 1).await?;
                }
                conn.flush().await?;
                anyhow::Ok((conn, Instant::now(), chunk.len()))
            },
            pub_rt.handle(),
        );
    }
    let mut published = t0;
    let mut open = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (conn, done, n) = r.context("a storm publisher panicked")??;
        published = published.max(done);
        open.push((conn, n));
    }
    // Watch: the stream (or the subscriber), and for the gateway its counters
    // too, in case the stream lagged.
    let gateway = sut.target.is_gateway();
    let deadline = Instant::now() + Duration::from_mins(2);
    let (mut m_alert, mut m_order) = (None, None);
    let mut last_poll = Instant::now();
    loop {
        // Only the storm's devices raise alerts and corrective orders here:
        // the totals say when to look at each device.
        let (na, no) = sut.seen.totals();
        bar.set_position(u(na));
        bar.set_message(format!("orders {no}"));
        if na >= events && (!gateway || no >= events) {
            let (na, _, no, _) = sut.seen.progress(&devices);
            if na == events && (!gateway || no == events) {
                break;
            }
        }
        if let Some(base) = metrics0
            && last_poll.elapsed() >= Duration::from_millis(10)
        {
            last_poll = Instant::now();
            let (fired, dispatched) = storm_counters(&sut.metrics().await?);
            let now = Instant::now();
            if m_alert.is_none() && fired - base.0 >= u(events) {
                m_alert = Some(now);
            }
            if m_order.is_none() && dispatched - base.1 >= u(events) {
                m_order = Some(now);
            }
            if m_alert.is_some() && m_order.is_some() && sut.seen.lagged_total() > 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (conn, _) in open {
        conn.close().await;
    }
    drop(pub_rt);
    let (na, la, no, lo) = sut.seen.progress(&devices);
    let secs = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(t0).as_secs_f64());
    let lagged = gateway && sut.seen.lagged_total() > 0 && (na < events || no < events);
    Ok(StormResult {
        target: sut.target,
        run,
        events,
        publish_secs: published.saturating_duration_since(t0).as_secs_f64(),
        alerts: if lagged && m_alert.is_some() { events } else { na },
        alert_secs: if lagged { secs(m_alert) } else { secs(la) },
        orders: gateway.then_some(if lagged && m_order.is_some() { events } else { no }),
        order_secs: if !gateway {
            None
        } else if lagged {
            secs(m_order)
        } else {
            secs(lo)
        },
        source: match sut.target {
            _ if lagged => "metrics",
            Target::Bare => "stdout",
            Target::NodeRed => "mqtt",
            _ => "sse",
        },
    })
}

/// Two threads for the publishing connections, shut down without waiting
/// when dropped (also when a run is abandoned inside the main runtime).
struct Publishers {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl Publishers {
    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn publisher_runtime() -> Result<Publishers> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("publisher")
        .enable_all()
        .build()
        .context("the publishers' runtime")?;
    Ok(Publishers {
        handle: rt.handle().clone(),
        rt: Some(rt),
    })
}

/// Alerts fired and orders dispatched, from the gateway's counters.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // whole, non-negative counters
fn storm_counters(metrics: &str) -> (u64, u64) {
    let c = |name: &str, label: &str| crate::http::metric_sum(metrics, name, Some(label)).max(0.0) as u64;
    (
        c("fm_alert_changes_total", "change=\"fired\""),
        c("fm_work_order_changes_total", "change=\"work_order_dispatched\""),
    )
}

/// Starts the target for one run and stops it afterwards, whatever happens.
pub(crate) async fn with_target<T>(
    target: Target,
    dir: &Path,
    programs: &Programs,
    qos: u8,
    body: impl AsyncFnOnce(&mut Sut) -> Result<T>,
) -> Result<T> {
    let mut sut = Sut::start(target, dir, programs, qos).await?;
    let r = body(&mut sut).await;
    sut.stop();
    r
}
