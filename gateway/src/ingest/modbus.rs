//! Modbus polling: nodes and third-party controllers read over Modbus TCP,
//! turned into the same `data` messages MQTT brings, so everything downstream
//! is shared.
//!
//! The core is pure and tested without a socket: [`plan`] turns a register
//! map into the fewest read requests (contiguous runs, Modbus limits), and
//! [`Sample::finish`] turns the answers into a `Data`. [`poll_device`] is the
//! I/O: one task per device, so a dead or slow slave never delays another;
//! every request has a timeout; a Modbus exception (the slave said no) is told
//! apart from a transport failure (the slave may be dead); after a transport
//! failure the connection is dropped and re-opened, which also clears a
//! transaction id stuck on a late answer; after three failures in a row a
//! circuit breaker backs off exponentially to 60 s.
//!
//! What a vendor's register means (a bit of a status word, a normally-closed
//! contact, an enumeration, a fault code, raw 4–20 mA counts) is decoded by
//! [`super::modbus_map`]; the event codes its registers raise are sent as
//! `event` messages after the poll's `data`, on their edges.
//!
//! A device's reachability is expressed with the protocol's own session
//! messages: the first good poll is a `birth` (with the poll interval), a
//! breaker opening is a `death` of that session, so the registry and the
//! offline rules treat a Modbus device like any node.
//!
//! # A slave that only refuses
//!
//! An exception is an answer (tokio-modbus's `Result<Result<T,
//! ExceptionCode>, Error>`): the slave is there and says no. It never counts
//! towards the breaker, so such a slave is never `offline` and never part of
//! a `bus_down`. But a slave whose every read is refused, [`REFUSING_AFTER`]
//! polls in a row, gives the gateway nothing: it is not up
//! (`fm_modbus_up` 0), and the poller raises the device's own fault,
//! `modbus_exception`, as an `event` of the session, with the last exception
//! in its detail. The first poll that reads a value again clears it. Some
//! reads refused and others answered is a map that does not fit the
//! device, not a device fault: counted (`exception`), logged, still up.
//!
//! ```text
//!            every read refused × REFUSING_AFTER
//!   up ─────────────────────────────────────────► refusing (up 0, event active)
//!    ▲                                                 │
//!    └──────────── a poll that reads a value ◄─────────┘ (event cleared)
//!   a timeout or a broken link: neither; the breaker judges those
//! ```
//!
//! # Whose time
//!
//! Polls are due, and samples, births and deaths are stamped, in the
//! gateway's clock ([`crate::clock`]); the breaker's back-off counts in it
//! too. On virtual time a poll therefore happens when the caller moves the
//! clock past it, however fast that is. Request and connect timeouts stay
//! real time: they are about the peer answering, which no clock of ours
//! speeds up. Each poller publishes when it is next due in a [`Schedule`],
//! after its poll's messages are in the pipeline's lanes, which is what lets
//! [`crate::app::run::Running::sync`] wait for every poll due at the clock's
//! now before its lane barrier.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use protocol::metric::{Metric, PortMetric, Value};
use protocol::modbus::{DataType, Point, Register, Table, map_for};
use protocol::{
    Birth, Data, Death, Detail, DeviceClass, DeviceId, Event, EventCode, Message, Named, PortReadings, Scalar, SiteId,
    Timestamp, Topic, V1,
};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};

use super::modbus_map::{Decode, EventState, Verdict};
pub use super::modbus_map::{OrderName, RegisterConfig, TableName, TypeName};
use crate::clock::SharedClock;
use crate::ingest::Incoming;
use crate::metrics::{Metrics, ModbusLabel};

/// Most registers in one read (Modbus limit).
pub const MAX_WORDS: u16 = 125;
/// Most bits in one read (Modbus limit).
pub const MAX_BITS: u16 = 2000;
/// Failures in a row that open the circuit breaker.
pub const BREAKER_AFTER: u32 = 3;
/// Longest back-off of an open breaker.
pub const MAX_BACKOFF: Duration = Duration::from_mins(1);
/// Polls in a row with every read refused before the slave is judged to be
/// refusing (`modbus_exception`). The breaker's patience for timeouts: a
/// slave busy for a poll or two (`ServerDeviceBusy`, `Acknowledge`, a node
/// just booted with no sample yet) is not a fault, three polls in a row
/// is, and both faults of a slave are then judged on the same time scale
/// (3 s at the default 1 s interval, as a dead slave's breaker opens).
pub const REFUSING_AFTER: u32 = BREAKER_AFTER;
/// How often a slave that keeps refusing some reads (and answering others)
/// is logged again, in the gateway clock's milliseconds.
const PARTIAL_LOG_EVERY_MS: i64 = 3_600_000;

/// One polled device, as configured.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The compound.
    pub site: String,
    /// The device id (its topic segment).
    pub device: String,
    /// Its class: selects our firmware's built-in map unless `registers` is given.
    pub class: DeviceClass,
    /// Modbus TCP address (or `serial` for RTU).
    pub address: Option<SocketAddr>,
    /// Modbus RTU serial line (or `address` for TCP); devices with the same
    /// `serial.path` share one bus.
    pub serial: Option<SerialConfig>,
    /// Unit id.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Poll interval.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Timeout of one request (and of connecting).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Ports (charging bays with the built-in map).
    #[serde(default)]
    pub ports: u8,
    /// A vendor's map instead of the built-in one.
    pub registers: Option<Vec<RegisterConfig>>,
    /// With the built-in map: poll also the points our own nodes do not
    /// measure (`protocol::modbus::NOT_MEASURED_BY_NODES`), for a vendor's
    /// controller that implements the whole map.
    #[serde(default)]
    pub poll_all: bool,
}

fn default_unit() -> u8 {
    1
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    500
}

/// An RS-485 line.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// The device, e.g. `/dev/ttyUSB0`.
    pub path: String,
    /// Baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// `none`, `even` (the Modbus default) or `odd`.
    #[serde(default = "default_parity")]
    pub parity: String,
    /// 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
}

fn default_baud() -> u32 {
    19_200
}
fn default_parity() -> String {
    "even".into()
}
fn default_stop_bits() -> u8 {
    1
}

impl SerialConfig {
    /// Checks parity and stop bits.
    ///
    /// # Errors
    /// What is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.parity.as_str(), "none" | "even" | "odd") {
            return Err(format!("parity `{}` must be none, even or odd", self.parity));
        }
        if !matches!(self.stop_bits, 1 | 2) {
            return Err(format!("stop_bits {} must be 1 or 2", self.stop_bits));
        }
        if self.baud == 0 {
            return Err("baud must be positive".into());
        }
        Ok(())
    }

    /// Opens the port, 8 data bits.
    ///
    /// # Errors
    /// The OS's error.
    pub fn open(&self) -> tokio_serial::Result<tokio_serial::SerialStream> {
        let parity = match self.parity.as_str() {
            "none" => tokio_serial::Parity::None,
            "odd" => tokio_serial::Parity::Odd,
            _ => tokio_serial::Parity::Even,
        };
        let stop = if self.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        };
        let builder = tokio_serial::new(&self.path, self.baud)
            .parity(parity)
            .stop_bits(stop)
            .data_bits(tokio_serial::DataBits::Eight);
        tokio_serial::SerialStream::open(&builder)
    }
}

/// Where a polled value goes in the `data` message.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A device-level metric.
    Metric(Named<Metric>),
    /// A port's metric.
    Port(u8, Named<PortMetric>),
}

/// One value to poll.
#[derive(Clone, Debug, PartialEq)]
pub struct PolledPoint {
    /// Where and how to read it.
    pub register: Register,
    /// Where its value goes; `None` for a register that only raises events.
    pub target: Option<Target>,
    /// From its raw number to the value and the events it raises.
    pub decode: Decode,
}

/// Why a register of a device's map cannot be polled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("register #{} (address {address}): `{key}` {message}", index + 1)]
pub struct MapError {
    /// Its index in the device's `registers`.
    pub index: usize,
    /// Its address.
    pub address: u16,
    /// The key at fault (`bit`, `faults`, …).
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl DeviceConfig {
    /// The points to poll: the configured map, or our firmware's built-in one.
    ///
    /// # Errors
    /// The first [`MapError`] of a configured map that cannot work
    /// ([`DeviceConfig::map_problems`] has them all).
    pub fn points(&self) -> Result<Vec<PolledPoint>, MapError> {
        let Some(regs) = &self.registers else {
            return Ok(map_for(self.class)
                .entries(self.ports)
                .filter_map(|e| {
                    let target = match (e.register.point, e.port) {
                        (Point::Metric(m), _)
                            if !self.poll_all && protocol::modbus::NOT_MEASURED_BY_NODES.contains(&(self.class, m)) =>
                        {
                            return None;
                        }
                        (Point::Metric(m), _) => Target::Metric(Named::Known(m)),
                        (Point::PortMetric(m), Some(p)) => Target::Port(p, Named::Known(m)),
                        _ => return None,
                    };
                    let boolean = e.register.data_type == DataType::Bool;
                    Some(PolledPoint {
                        decode: Decode::plain(e.register.address, e.register.scale, boolean),
                        register: e.register,
                        target: Some(target),
                    })
                })
                .collect());
        };
        let mut out = Vec::with_capacity(regs.len());
        for (index, r) in regs.iter().enumerate() {
            let resolved = r.resolve(self.class).map_err(|mut all| {
                let (key, message) = all.remove(0);
                MapError {
                    index,
                    address: r.address,
                    key,
                    message,
                }
            })?;
            out.push(PolledPoint {
                register: Register {
                    table: resolved.table,
                    address: r.address,
                    data_type: resolved.data_type,
                    scale: r.scale.unwrap_or(1.0),
                    // The point is only used for docs in the built-in maps; a metric stands in here.
                    point: Point::Metric(Metric::Running),
                },
                target: resolved.target,
                decode: resolved.decode,
            });
        }
        Ok(out)
    }

    /// Every problem of a configured map, for `gateway check`.
    #[must_use]
    pub fn map_problems(&self) -> Vec<MapError> {
        let mut out = Vec::new();
        for (index, r) in self.registers.iter().flatten().enumerate() {
            if let Err(all) = r.resolve(self.class) {
                out.extend(all.into_iter().map(|(key, message)| MapError {
                    index,
                    address: r.address,
                    key,
                    message,
                }));
            }
        }
        out
    }
}

/// One read request and the points it answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The table.
    pub table: Table,
    /// First address.
    pub address: u16,
    /// Registers or bits.
    pub count: u16,
    /// Indexes into the point list, with their offset in the answer.
    pub points: Vec<(usize, u16)>,
}

/// Groups points into the fewest reads: contiguous runs of one table, within
/// the Modbus limits. Gaps are never read across (a slave may refuse them).
#[must_use]
pub fn plan(points: &[PolledPoint]) -> Vec<Request> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].register.table, points[i].register.address));
    let mut out: Vec<Request> = Vec::new();
    for i in order {
        let r = &points[i].register;
        let words = r.data_type.words();
        let limit = if r.table.is_bit() { MAX_BITS } else { MAX_WORDS };
        match out.last_mut() {
            Some(req)
                if req.table == r.table
                    && req.address.checked_add(req.count) == Some(r.address)
                    && req.count + words <= limit =>
            {
                req.points.push((i, req.count));
                req.count += words;
            }
            // The same register read twice (two metrics from one address): reuse it.
            Some(req)
                if req.table == r.table && r.address >= req.address && r.address + words <= req.address + req.count =>
            {
                req.points.push((i, r.address - req.address));
            }
            _ => out.push(Request {
                table: r.table,
                address: r.address,
                count: words,
                points: vec![(i, 0)],
            }),
        }
    }
    out
}

/// Values collected over one poll, finished into a `data` message, and
/// what the poll's registers say about their events.
#[derive(Debug, Default)]
pub struct Sample {
    values: Vec<(usize, Value)>,
    verdicts: Vec<(usize, Verdict)>,
}

impl Sample {
    /// Records the answer of one request.
    pub fn answer(&mut self, points: &[PolledPoint], req: &Request, words: &[u16]) {
        for &(i, offset) in &req.points {
            let point = &points[i];
            let start = usize::from(offset);
            let Some(slice) = words.get(start..start + usize::from(point.register.data_type.words())) else {
                continue;
            };
            // A NaN or infinite f32 is no reading at all.
            let Some(raw) = point.register.data_type.decode(slice).ok().filter(|v| v.is_finite()) else {
                continue;
            };
            let decoded = point.decode.apply(raw);
            if let Some(v) = decoded.value.filter(|v| v.to_number().is_finite())
                && point.target.is_some()
            {
                self.values.push((i, v));
            }
            self.verdicts.extend(decoded.verdicts.into_iter().map(|v| (i, v)));
        }
    }

    /// What this poll's registers said about their event codes, each with
    /// the index of its point (for [`EventState::update`]).
    pub fn take_verdicts(&mut self) -> Vec<(usize, Verdict)> {
        std::mem::take(&mut self.verdicts)
    }

    /// The `data` message of this poll.
    #[must_use]
    pub fn finish(self, points: &[PolledPoint], seq: u32, ts: Timestamp) -> Data {
        let mut data = Data::new(seq, ts);
        for (i, v) in self.values {
            // A number into a flag (a register that is 0/1): as on the wire.
            let flag = |kind: protocol::ValueKind| match v {
                Value::Number(n) if kind == protocol::ValueKind::Bool => Value::Bool(n != 0.0),
                v => v,
            };
            match &points[i].target {
                Some(Target::Metric(m)) => {
                    let value = m.known().map_or(v, |k| flag(protocol::MetricInfo::kind(k)));
                    let _ = data.m.set(m.clone(), value);
                }
                Some(Target::Port(p, m)) => {
                    let value = m.known().map_or(v, |k| flag(protocol::MetricInfo::kind(k)));
                    let pos = data.ports.iter().position(|x| x.port == *p);
                    let idx = if let Some(idx) = pos {
                        idx
                    } else {
                        if data.ports.push(PortReadings::new(*p)).is_err() {
                            continue;
                        }
                        data.ports.len() - 1
                    };
                    let _ = data.ports[idx].readings.set(m.clone(), value);
                }
                None => {}
            }
        }
        data
    }
}

/// How one request went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// The slave answered with an exception: alive, but it refused.
    Exception,
    /// No answer in time.
    Timeout,
    /// The connection failed.
    Transport,
}

impl Outcome {
    /// The metrics label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Exception => "exception",
            Outcome::Timeout => "timeout",
            Outcome::Transport => "transport",
        }
    }
}

/// What one read got.
enum Reply {
    /// The registers (or bits, as 0/1).
    Words(Vec<u16>),
    /// An exception: the slave is there and refused.
    Refused(ExceptionCode),
    /// A timeout or a transport failure.
    Failed(Outcome),
}

impl Reply {
    const fn outcome(&self) -> Outcome {
        match self {
            Reply::Words(_) => Outcome::Ok,
            Reply::Refused(_) => Outcome::Exception,
            Reply::Failed(o) => *o,
        }
    }
}

/// An exception answer, and the read it refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The exception.
    pub exception: ExceptionCode,
    /// The read's function code (1 coils, 2 discrete inputs, 3 holding, 4 input registers).
    pub function: u8,
    /// The read's first address (PDU, 0-based).
    pub address: u16,
}

/// What the reads of one poll that reached its end got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answers {
    /// Reads answered with values.
    pub ok: u32,
    /// Reads answered with an exception.
    pub refused: u32,
    /// The last exception.
    pub last: Option<Refusal>,
}

impl Answers {
    /// Every read was refused: the slave answers and gives no value.
    #[must_use]
    pub const fn all_refused(&self) -> bool {
        self.ok == 0 && self.refused > 0
    }

    /// Some reads were refused, others answered.
    #[must_use]
    pub const fn partly_refused(&self) -> bool {
        self.ok > 0 && self.refused > 0
    }
}

/// The name of a Modbus exception, as tokio-modbus spells it (the alert's
/// detail, the logs).
#[must_use]
pub fn exception_name(code: ExceptionCode) -> String {
    match code {
        ExceptionCode::IllegalFunction => "IllegalFunction".into(),
        ExceptionCode::IllegalDataAddress => "IllegalDataAddress".into(),
        ExceptionCode::IllegalDataValue => "IllegalDataValue".into(),
        ExceptionCode::ServerDeviceFailure => "ServerDeviceFailure".into(),
        ExceptionCode::Acknowledge => "Acknowledge".into(),
        ExceptionCode::ServerDeviceBusy => "ServerDeviceBusy".into(),
        ExceptionCode::MemoryParityError => "MemoryParityError".into(),
        ExceptionCode::GatewayPathUnavailable => "GatewayPathUnavailable".into(),
        ExceptionCode::GatewayTargetDevice => "GatewayTargetDevice".into(),
        ExceptionCode::Custom(c) => format!("Exception{c:02X}"),
    }
}

async fn read(ctx: &mut Context, req: &Request, timeout: Duration) -> Reply {
    let bits = |r: Result<Result<Vec<bool>, ExceptionCode>, tokio_modbus::Error>| {
        r.map(|x| x.map(|b| b.into_iter().map(u16::from).collect::<Vec<_>>()))
    };
    let fut = async {
        match req.table {
            Table::Coil => bits(ctx.read_coils(req.address, req.count).await),
            Table::DiscreteInput => bits(ctx.read_discrete_inputs(req.address, req.count).await),
            Table::InputRegister => ctx.read_input_registers(req.address, req.count).await,
            Table::HoldingRegister => ctx.read_holding_registers(req.address, req.count).await,
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(Ok(words))) => Reply::Words(words),
        Ok(Ok(Err(exception))) => Reply::Refused(exception),
        Ok(Err(_)) => Reply::Failed(Outcome::Transport),
        Err(_) => Reply::Failed(Outcome::Timeout),
    }
}

/// One slave's polling state: its read plan, its session and its breaker.
pub struct Poller {
    config: DeviceConfig,
    points: Vec<PolledPoint>,
    requests: Vec<Request>,
    site: SiteId,
    device: DeviceId,
    timeout: Duration,
    interval: Duration,
    bdseq: u32,
    seq: u32,
    /// Transport failures in a row (the breaker).
    failures: u32,
    /// A session is open (a `birth` sent, no `death` since).
    up: bool,
    /// Polls in a row with every read refused.
    refused: u32,
    /// Polls in a row with some reads refused and others answered.
    partial: u32,
    /// Whether `modbus_exception` stands raised for this slave; `None` until
    /// the first verdict, since the alerting state restored at start may
    /// hold it from before a restart.
    refusing: Option<bool>,
    /// When partly refused reads were last logged (gateway ms).
    partial_logged: Option<i64>,
    /// The vendor map's events: raised while a register says so.
    events: EventState,
    clock: SharedClock,
    slot: usize,
    /// When this slave is next due, in the gateway clock's milliseconds.
    pub next_ms: i64,
}

impl Poller {
    /// A poller for a validated device, first due now, publishing its due
    /// times in `slot` of the gateway's [`Schedule`]; `None` if its ids are
    /// not valid.
    #[must_use]
    pub fn new(config: DeviceConfig, points: Vec<PolledPoint>, clock: SharedClock, slot: usize) -> Option<Poller> {
        let site = SiteId::new(&config.site).ok()?;
        let device = DeviceId::new(&config.device).ok()?;
        let next_ms = clock.now_ms();
        Some(Poller {
            requests: plan(&points),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            interval: Duration::from_millis(config.interval_ms.max(100)),
            config,
            points,
            site,
            device,
            bdseq: 0,
            seq: 0,
            failures: 0,
            up: false,
            refused: 0,
            partial: 0,
            refusing: None,
            partial_logged: None,
            events: EventState::default(),
            clock,
            slot,
            next_ms,
        })
    }

    /// What one poll hands on: its messages and when this slave is due next.
    fn batch(&self, messages: Vec<Incoming>) -> Batch {
        Batch {
            messages,
            slot: self.slot,
            next_ms: self.next_ms,
        }
    }

    /// Polls once over `ctx` (addressed to this slave, or `None` if the link
    /// could not be opened); returns the messages to send and whether the
    /// transport failed (the caller then re-opens the link).
    pub async fn poll(&mut self, ctx: Option<&mut Context>, metrics: &Metrics) -> (Vec<Incoming>, bool) {
        let started = tokio::time::Instant::now();
        // The poll's moment on the gateway's clock: its stamps and its next due time.
        let now = self.clock.now_ms();
        let mut sample = Sample::default();
        let answers = match ctx {
            Some(c) => {
                read_all(
                    c,
                    &self.requests,
                    &self.points,
                    &mut sample,
                    self.timeout,
                    &self.config.device,
                    metrics,
                )
                .await
            }
            None => None,
        };
        let failed = answers.is_none();
        let out = self.after(sample, answers, metrics, now);
        metrics.modbus_poll_seconds.observe(started.elapsed().as_secs_f64());
        let wait = if self.failures >= BREAKER_AFTER {
            let exp = (self.failures - BREAKER_AFTER).min(10);
            (self.interval * 2u32.pow(exp)).min(MAX_BACKOFF)
        } else {
            self.interval
        };
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        self.next_ms = now.saturating_add(wait_ms);
        (out, failed)
    }

    /// The session side of a poll: birth on the first success, death when the
    /// breaker opens, `modbus_exception` raised or cleared, data otherwise.
    /// `answers` is `None` for a poll cut short by a transport failure.
    fn after(&mut self, mut sample: Sample, answers: Option<Answers>, metrics: &Metrics, now_ms: i64) -> Vec<Incoming> {
        let now = Timestamp::from_millis(now_ms);
        let label = ModbusLabel {
            device: self.config.device.clone(),
        };
        let (site, device, class) = (self.site.clone(), self.device.clone(), self.config.class);
        let wrap = |msg: Message| Incoming {
            topic: Topic::new(site.clone(), class, device.clone(), msg.kind()),
            message: msg,
            received_ms: now.as_millis(),
        };
        let mut out = Vec::new();
        let Some(answers) = answers else {
            self.failures += 1;
            if self.up && self.failures >= BREAKER_AFTER {
                self.up = false;
                // A new session counts its refusals afresh; a raised
                // `modbus_exception` stays until a value is read.
                self.refused = 0;
                metrics.modbus_up.get_or_create(&label).set(0);
                out.push(wrap(Message::Death(Death {
                    v: V1,
                    bdseq: self.bdseq,
                })));
            }
            return out;
        };
        self.failures = 0;
        if !self.up {
            self.up = true;
            self.bdseq = self.bdseq.wrapping_add(1);
            self.seq = 0;
            metrics
                .modbus_up
                .get_or_create(&label)
                .set(i64::from(self.refusing != Some(true)));
            out.push(wrap(Message::Birth(synthetic_birth(
                now,
                self.bdseq,
                self.interval,
                self.config.ports,
            ))));
        }
        if let Some(refusing) = self.judge_refusals(&answers, now_ms) {
            metrics.modbus_up.get_or_create(&label).set(i64::from(!refusing));
            self.seq = self.seq.wrapping_add(1);
            out.push(wrap(Message::Event(refusal_event(
                refusing,
                answers.last.filter(|_| refusing),
                self.seq,
                self.bdseq,
                now,
            ))));
        }
        // Also while refusing: an answer is a sign of life, so the device
        // stays online (never `offline`, never part of a `bus_down`).
        let verdicts = sample.take_verdicts();
        self.seq = self.seq.wrapping_add(1);
        let mut data = sample.finish(&self.points, self.seq, now);
        data.bdseq = Some(self.bdseq);
        out.push(wrap(Message::Data(data)));
        // After the data: an alert's evidence then holds the values of the
        // poll that raised it.
        for change in self.events.update(verdicts) {
            self.seq = self.seq.wrapping_add(1);
            out.push(wrap(Message::Event(Event {
                v: V1,
                seq: self.seq,
                ts: now,
                hist: false,
                bdseq: Some(self.bdseq),
                code: change.code,
                active: change.active,
                detail: change.detail,
            })));
        }
        out
    }

    /// Counts a poll that reached its end: `Some(true)` when the slave is now
    /// judged refusing (every read refused, [`REFUSING_AFTER`] polls in a
    /// row), `Some(false)` when a poll read a value again (or for the first
    /// time since the start), `None` when nothing changes.
    fn judge_refusals(&mut self, answers: &Answers, now_ms: i64) -> Option<bool> {
        let device = &self.config.device;
        let last = answers.last.map(|r| exception_name(r.exception)).unwrap_or_default();
        let (function, address) = answers.last.map_or((0, 0), |r| (r.function, r.address));
        if answers.all_refused() {
            self.refused = self.refused.saturating_add(1);
            if self.refused < REFUSING_AFTER || self.refusing == Some(true) {
                return None;
            }
            tracing::warn!(
                device = %device,
                polls = self.refused,
                exception = %last,
                function,
                address,
                "the Modbus slave answers every read with an exception: not up, modbus_exception raised"
            );
            self.refusing = Some(true);
            return Some(true);
        }
        self.refused = 0;
        // Logged once it persists as long as a refusal must (one of our
        // nodes refuses its registers until its first sample, not its bits),
        // then at most hourly.
        self.partial = if answers.partly_refused() {
            self.partial.saturating_add(1)
        } else {
            0
        };
        if self.partial >= REFUSING_AFTER && self.partial_logged.is_none_or(|t| now_ms - t >= PARTIAL_LOG_EVERY_MS) {
            self.partial_logged = Some(now_ms);
            tracing::warn!(
                device = %device,
                refused = answers.refused,
                answered = answers.ok,
                exception = %last,
                function,
                address,
                "the Modbus slave refuses some reads (does the register map fit the device?); it stays up"
            );
        }
        if answers.ok == 0 || self.refusing == Some(false) {
            return None;
        }
        if self.refusing == Some(true) {
            tracing::info!(device = %device, "the Modbus slave answers with values again: modbus_exception cleared");
        }
        self.refusing = Some(false);
        Some(false)
    }
}

/// The `event` that raises (with the last exception in its detail) or clears
/// `modbus_exception`.
fn refusal_event(active: bool, last: Option<Refusal>, seq: u32, bdseq: u32, now: Timestamp) -> Event {
    let mut detail = Detail::new();
    if let Some(r) = last {
        if let Ok(name) = protocol::readings::Text::try_from(exception_name(r.exception).as_str()) {
            let _ = detail.set("exception", Scalar::Text(name));
        }
        let _ = detail.set("function", f64::from(r.function));
        let _ = detail.set("address", f64::from(r.address));
    }
    Event {
        v: V1,
        seq,
        ts: now,
        hist: false,
        bdseq: Some(bdseq),
        code: Named::Known(EventCode::ModbusException),
        active,
        detail,
    }
}

/// What one poll hands to the pipeline: its messages, then when its slave is
/// next due. Whoever forwards the messages into the pipeline's lanes records
/// `next_ms` in the [`Schedule`] only after them, so a barrier that sees the
/// new due time knows the poll's messages are queued.
#[derive(Debug)]
pub struct Batch {
    /// `birth`, `death` and `data`, as if they came over MQTT.
    pub messages: Vec<Incoming>,
    /// The slave's slot in the [`Schedule`].
    pub slot: usize,
    /// When it is due next, in the gateway clock's milliseconds.
    pub next_ms: i64,
}

/// Where the pollers go once they stop: nothing is ever due.
const NEVER: i64 = i64::MAX;

impl Batch {
    /// A slave that will never be polled (its ids are not valid).
    fn retired(slot: usize) -> Batch {
        Batch {
            messages: Vec::new(),
            slot,
            next_ms: NEVER,
        }
    }
}

/// When each configured Modbus device is next polled, in the gateway clock's
/// milliseconds: the barrier [`crate::app::run::Running::sync`] waits on, so
/// that on virtual time every poll due at the clock's now has landed in the
/// pipeline before the caller looks.
#[derive(Debug)]
pub struct Schedule {
    devices: Vec<String>,
    due: Box<[AtomicI64]>,
    closed: AtomicBool,
    changed: watch::Sender<()>,
}

impl Schedule {
    /// One slot per device, in configuration order, all due at `now_ms`.
    #[must_use]
    pub fn new(devices: Vec<String>, now_ms: i64) -> Schedule {
        let due = devices.iter().map(|_| AtomicI64::new(now_ms)).collect();
        Schedule {
            devices,
            due,
            closed: AtomicBool::new(false),
            changed: watch::Sender::new(()),
        }
    }

    /// Records when `slot` is due next (only once the poll's messages are
    /// in the lanes).
    pub fn set(&self, slot: usize, next_ms: i64) {
        if let Some(d) = self.due.get(slot) {
            d.store(next_ms, Ordering::SeqCst);
            self.changed.send_replace(());
        }
    }

    /// `slot` is not polled (any more): it never holds up the barrier.
    pub fn retire(&self, slot: usize) {
        self.set(slot, NEVER);
    }

    /// The pipeline is gone: no poll will land, so there is nothing to wait for.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.changed.send_replace(());
    }

    /// The first device with a poll due at `now_ms` (not yet in the lanes).
    #[must_use]
    pub fn due_at(&self, now_ms: i64) -> Option<&str> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        self.devices
            .iter()
            .zip(&self.due)
            .find(|(_, d)| d.load(Ordering::SeqCst) <= now_ms)
            .map(|(name, _)| name.as_str())
    }

    /// Waits until no poll is due at the clock's now, for at most `limit` of
    /// real time.
    ///
    /// # Errors
    /// The device still due when `limit` ran out.
    pub async fn settled(&self, clock: &dyn crate::clock::Clock, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let Some(device) = self.due_at(clock.now_ms()) else {
                return Ok(());
            };
            // The clock may also move while we wait; a change of any slot
            // (or the deadline) re-reads it.
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(device.to_owned());
            }
        }
    }
}

/// Polls one Modbus TCP device until the channel closes, on the gateway's
/// clock. Sends its `birth`, `death` and `data` messages with its next due time.
pub async fn poll_device(
    config: DeviceConfig,
    points: Vec<PolledPoint>,
    slot: usize,
    clock: SharedClock,
    tx: mpsc::Sender<Batch>,
    metrics: Metrics,
) {
    let unit = config.unit;
    let (Some(address), Some(mut poller)) = (config.address, Poller::new(config, points, clock.clone(), slot)) else {
        let _ = tx.send(Batch::retired(slot)).await;
        return;
    };
    let mut ctx: Option<Context> = None;
    loop {
        clock.sleep_until(poller.next_ms).await;
        if ctx.is_none() {
            let connect = tokio_modbus::client::tcp::connect_slave(address, Slave(unit));
            if let Ok(Ok(c)) = tokio::time::timeout(poller.timeout, connect).await {
                ctx = Some(c);
            }
        }
        let (out, failed) = poller.poll(ctx.as_mut(), &metrics).await;
        if failed {
            // A late answer would be taken for the next request: start a fresh connection.
            ctx = None;
        }
        if tx.send(poller.batch(out)).await.is_err() {
            return;
        }
    }
}

/// Polls every device on one RS-485 bus (Modbus RTU), one request at a time,
/// on the gateway's clock: a dead slave costs the bus only its own timeout
/// slot. Each device comes with its slot in the [`Schedule`].
pub async fn poll_bus(
    serial: SerialConfig,
    devices: Vec<(DeviceConfig, Vec<PolledPoint>, usize)>,
    clock: SharedClock,
    tx: mpsc::Sender<Batch>,
    metrics: Metrics,
) {
    let mut pollers: Vec<(u8, Poller)> = Vec::new();
    for (c, p, slot) in devices {
        let unit = c.unit;
        match Poller::new(c, p, clock.clone(), slot) {
            Some(poller) => pollers.push((unit, poller)),
            None => {
                if tx.send(Batch::retired(slot)).await.is_err() {
                    return;
                }
            }
        }
    }
    let mut ctx: Option<Context> = None;
    loop {
        let Some((unit, poller)) = pollers.iter_mut().min_by_key(|(_, p)| p.next_ms) else {
            return;
        };
        clock.sleep_until(poller.next_ms).await;
        if ctx.is_none() {
            match serial.open() {
                Ok(port) => ctx = Some(tokio_modbus::client::rtu::attach_slave(port, Slave(*unit))),
                Err(e) => tracing::warn!(path = %serial.path, error = %e, "cannot open the serial port"),
            }
        }
        if let Some(c) = ctx.as_mut() {
            tokio_modbus::prelude::SlaveContext::set_slave(c, Slave(*unit));
        }
        let (out, failed) = poller.poll(ctx.as_mut(), &metrics).await;
        if failed {
            // Drop whatever half frame is left on the line: re-open the port.
            ctx = None;
        }
        if tx.send(poller.batch(out)).await.is_err() {
            return;
        }
    }
}

/// The `birth` that stands for a Modbus device becoming reachable.
fn synthetic_birth(now: Timestamp, bdseq: u32, interval: Duration, ports: u8) -> Birth {
    Birth {
        v: V1,
        seq: 0,
        ts: now,
        hist: false,
        bdseq,
        fw: "modbus".try_into().unwrap_or_default(),
        model: "modbus-tcp".try_into().unwrap_or_default(),
        cfg: protocol::message::ConfigHash::new(),
        interval_s: u32::try_from(interval.as_secs().max(1)).unwrap_or(u32::MAX),
        rated_speed_mps: None,
        floors: None,
        ports: (ports > 0).then_some(ports),
    }
}

/// Runs every request of one poll: what they got, or `None` at the first
/// transport failure.
async fn read_all(
    ctx: &mut Context,
    requests: &[Request],
    points: &[PolledPoint],
    sample: &mut Sample,
    timeout: Duration,
    device: &str,
    metrics: &Metrics,
) -> Option<Answers> {
    let mut answers = Answers::default();
    for req in requests {
        let reply = read(ctx, req, timeout).await;
        let label = crate::metrics::ModbusOutcomeLabel {
            device: device.to_owned(),
            outcome: reply.outcome().as_str().into(),
        };
        metrics.modbus_requests.get_or_create(&label).inc();
        match reply {
            Reply::Words(w) => {
                answers.ok += 1;
                sample.answer(points, req, &w);
            }
            Reply::Refused(exception) => {
                answers.refused += 1;
                answers.last = Some(Refusal {
                    exception,
                    function: req.table.read_function(),
                    address: req.address,
                });
            }
            Reply::Failed(_) => return None,
        }
    }
    Some(answers)
}
