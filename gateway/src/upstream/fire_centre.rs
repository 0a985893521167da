//! The fire remote-monitoring centre (城市消防远程监控中心, GB/T 26875.3):
//! the gateway as a user information transmission device (用户信息传输装置)
//! for the fire pumps, fire water and fire alarm inputs it watches.
//!
//! Two halves, as every connector ([`super`]):
//! - [`FireCentreMapper`] (pipeline thread, pure) turns the fire pumps'
//!   alert changes and data into component uploads: running status (type 2)
//!   when a component's status word changes, analog values (type 3) when a
//!   pressure or level moves. Each is an outbox row, stored in the commit of
//!   the change it is about, so an acknowledged fire alarm's upload survives
//!   a kill.
//! - [`FireCentre`] (a tokio task) holds the TCP link and the
//!   [`gb26875::Session`]: it connects (with back-off), sends each row as a
//!   frame and reports it delivered once the centre confirms it, resends
//!   unconfirmed frames and reconnects, answers the centre's time sync and
//!   queries, and sends heartbeats. A row waits for the centre however long
//!   it is away (it is never a dead letter for that); a row the centre
//!   denies is a dead letter (sending the same bytes again would be denied
//!   again).
//!
//! The mapping table and the frame layout are in docs/integrations.md.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use gb26875::data::{analog_type, component_status, component_type, system_type};
use gb26875::{Address, ComponentAnalog, ComponentStatus, Description, Event, Session, SessionConfig, TimeLabel, Unit};
use protocol::{DeviceClass, Message, Metric, Value};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::outbox::{Connector, Entry, Failure, Row};
use crate::clock::SharedClock;

/// The connector's name: its outbox rows, records and metrics.
pub const CONNECTOR: &str = "fire_centre";

/// `[upstream.fire_centre]`: the centre the gateway reports to.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FireCentreConfig {
    /// The centre's host name or IP address.
    pub host: String,
    /// Its TCP port.
    pub port: u16,
    /// The gateway's user-device address the centre assigned: 12 hex
    /// digits (6 bytes), most significant first.
    pub address: String,
    /// The centre's own address (`000000000000` unless it gave one).
    #[serde(default = "default_centre_address")]
    pub centre_address: String,
    /// The longest silence before a heartbeat (`60s`).
    #[serde(default = "default_heartbeat")]
    pub heartbeat: String,
    /// How long to wait for the centre's confirm before sending a frame
    /// again (`5s`).
    #[serde(default = "default_confirm_timeout")]
    pub confirm_timeout: String,
    /// Sends of one frame before the connection is dropped and made anew (`3`).
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// The system type of the pumps, pressure and tank (table 4: `11` fire
    /// hydrant system, `12` sprinkler system).
    #[serde(default = "default_system_type")]
    pub system_type: u8,
    /// The system address the centre knows the compound's fire water by (`1`).
    #[serde(default = "default_system_address")]
    pub system_address: u8,
    /// Fire pump devices and their numbers (component addresses are
    /// `number × 10 + component`); a device not listed is numbered from its id.
    #[serde(default)]
    pub devices: Vec<DeviceNumber>,
}

/// `[[upstream.fire_centre.devices]]`: a fire pump device's number at the centre.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceNumber {
    /// The device id (the topic's device segment).
    pub device: String,
    /// Its number, from 1 to 400,000,000.
    pub number: u32,
}

fn default_centre_address() -> String {
    "000000000000".into()
}
fn default_heartbeat() -> String {
    "60s".into()
}
fn default_confirm_timeout() -> String {
    "5s".into()
}
fn default_tries() -> u32 {
    3
}
fn default_system_type() -> u8 {
    system_type::HYDRANT
}
fn default_system_address() -> u8 {
    1
}

/// The largest device number: its components' addresses fit in 32 bits.
const MAX_NUMBER: u32 = 400_000_000;

fn millis(field: &str, text: &str) -> Result<i64, (String, String)> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        Ok(_) => Err((field.to_owned(), "must be longer than zero".into())),
        Err(e) => Err((field.to_owned(), format!("`{text}` is not a duration (5s, 1m): {e}"))),
    }
}

impl FireCentreConfig {
    /// The session's configuration.
    ///
    /// # Errors
    /// The field and message of the first bad value.
    pub fn session(&self) -> Result<SessionConfig, (String, String)> {
        let at = "upstream.fire_centre";
        let address = Address::from_hex(&self.address).map_err(|e| (format!("{at}.address"), e.to_string()))?;
        let centre =
            Address::from_hex(&self.centre_address).map_err(|e| (format!("{at}.centre_address"), e.to_string()))?;
        let mut s = SessionConfig::new(address, centre);
        s.heartbeat_ms = millis(&format!("{at}.heartbeat"), &self.heartbeat)?;
        s.confirm_timeout_ms = millis(&format!("{at}.confirm_timeout"), &self.confirm_timeout)?;
        if self.tries == 0 {
            return Err((format!("{at}.tries"), "must be at least 1".into()));
        }
        s.tries = self.tries;
        Ok(s)
    }
}

/// Every problem of the configuration, as (field, message).
#[must_use]
pub fn check(c: Option<&FireCentreConfig>) -> Vec<(String, String)> {
    let Some(c) = c else { return Vec::new() };
    let at = "upstream.fire_centre";
    let mut out = Vec::new();
    if c.host.trim().is_empty() {
        out.push((format!("{at}.host"), "must not be empty".into()));
    }
    if c.port == 0 {
        out.push((format!("{at}.port"), "must not be 0".into()));
    }
    for (field, text) in [("address", &c.address), ("centre_address", &c.centre_address)] {
        if let Err(e) = Address::from_hex(text) {
            out.push((format!("{at}.{field}"), e.to_string()));
        }
    }
    for (field, text) in [("heartbeat", &c.heartbeat), ("confirm_timeout", &c.confirm_timeout)] {
        if let Err(e) = millis(&format!("{at}.{field}"), text) {
            out.push(e);
        }
    }
    if c.tries == 0 {
        out.push((format!("{at}.tries"), "must be at least 1".into()));
    }
    for (i, d) in c.devices.iter().enumerate() {
        if !(1..=MAX_NUMBER).contains(&d.number) {
            out.push((
                format!("{at}.devices[{i}].number"),
                format!("must be from 1 to {MAX_NUMBER}"),
            ));
        }
        if c.devices[..i].iter().any(|o| o.device == d.device) {
            out.push((
                format!("{at}.devices[{i}].device"),
                format!("`{}` is listed twice", d.device),
            ));
        }
        if c.devices[..i].iter().any(|o| o.number == d.number) {
            out.push((
                format!("{at}.devices[{i}].number"),
                format!("{} is given twice", d.number),
            ));
        }
    }
    out
}

/// A fire pump device's components at the centre: the last digit of a
/// component address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum Component {
    /// The fire pump (消防水泵, type 91).
    Pump = 1,
    /// The network pressure (压力开关, type 99: the pressure point that starts the pump).
    Pressure = 2,
    /// The fire water tank (消防水箱, type 92).
    Tank = 3,
    /// The fire alarm panel's input to the pump room (火灾报警控制器, type 1).
    FireAlarm = 4,
}

impl Component {
    fn component_type(self) -> u8 {
        match self {
            Component::Pump => component_type::FIRE_PUMP,
            Component::Pressure => component_type::PRESSURE_SWITCH,
            Component::Tank => component_type::WATER_TANK,
            Component::FireAlarm => component_type::FIRE_ALARM_PANEL,
        }
    }

    /// Its description after the device id (Chinese: the centre's operators read it).
    fn name_zh(self) -> &'static str {
        match self {
            Component::Pump => "消防泵",
            Component::Pressure => "管网压力",
            Component::Tank => "消防水箱",
            Component::FireAlarm => "火警输入",
        }
    }

    /// The component and status bit an alert code sets while it fires.
    fn of_code(code: &str) -> Option<(Component, u16)> {
        Some(match code {
            "fire_alarm" => (Component::FireAlarm, component_status::FIRE_ALARM),
            "pump_fault" | "pump_fail_to_start" => (Component::Pump, component_status::FAULT),
            "main_power_fault" | "backup_power_fault" => (Component::Pump, component_status::POWER_FAULT),
            "low_pressure" => (Component::Pressure, component_status::FAULT),
            "low_tank_level" => (Component::Tank, component_status::FAULT),
            _ => return None,
        })
    }
}

/// An analog value the centre gets: which metric, on which component, as
/// which analog type, in that type's resolution, and how far it must move
/// to be sent before [`ANALOG_EVERY_MS`].
struct Analog {
    metric: Metric,
    component: Component,
    /// Its analog type (table 6).
    kind: u8,
    /// Units of the analog type per unit of the metric.
    scale: f64,
    /// The smallest change (metric units) sent at once.
    deadband: f64,
}

const ANALOGS: [Analog; 3] = [
    Analog {
        metric: Metric::OutletPressureMpa,
        component: Component::Pump,
        kind: analog_type::PRESSURE_KPA,
        scale: 10_000.0, // MPa to 0.1 kPa
        deadband: 0.02,
    },
    Analog {
        metric: Metric::NetworkPressureMpa,
        component: Component::Pressure,
        kind: analog_type::PRESSURE_KPA,
        scale: 10_000.0,
        deadband: 0.02,
    },
    Analog {
        metric: Metric::TankLevelM,
        component: Component::Tank,
        kind: analog_type::HEIGHT_CM,
        scale: 100.0, // m to 0.01 m
        deadband: 0.05,
    },
];

/// An analog value is sent again at least this often while it reports (5 min).
pub const ANALOG_EVERY_MS: i64 = 5 * 60 * 1000;

#[derive(Default)]
struct DeviceState {
    /// Codes firing per component.
    firing: HashMap<Component, BTreeSet<String>>,
    running: bool,
    self_test: bool,
    /// The status word last sent per component.
    sent: HashMap<Component, u16>,
    /// The analog value last sent, and when, per metric.
    analog: HashMap<Metric, (f64, i64)>,
}

/// Decides the centre's uploads on the pipeline thread (see the module).
pub struct FireCentreMapper {
    system_type: u8,
    system_address: u8,
    numbers: HashMap<String, u32>,
    devices: HashMap<(String, String), DeviceState>,
    seq: u64,
}

impl FireCentreMapper {
    /// The mapper of a configured centre.
    #[must_use]
    pub fn new(cfg: &FireCentreConfig) -> FireCentreMapper {
        FireCentreMapper {
            system_type: cfg.system_type,
            system_address: cfg.system_address,
            numbers: cfg.devices.iter().map(|d| (d.device.clone(), d.number)).collect(),
            devices: HashMap::new(),
            seq: 0,
        }
    }

    /// A device's number: configured, or the FNV-1a hash of its id (stable
    /// across restarts and gateways) folded into 1..=400,000,000.
    #[must_use]
    pub fn number(&self, device: &str) -> u32 {
        if let Some(n) = self.numbers.get(device) {
            return *n;
        }
        let h = device.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        u32::try_from(h % u64::from(MAX_NUMBER)).unwrap_or(0) + 1
    }

    fn address(&self, device: &str, c: Component) -> u32 {
        self.number(device) * 10 + c as u32
    }

    fn system(&self, c: Component) -> (u8, u8) {
        match c {
            Component::FireAlarm => (system_type::FIRE_ALARM, self.system_address),
            _ => (self.system_type, self.system_address),
        }
    }

    fn status(state: &DeviceState, c: Component) -> u16 {
        let mut s = component_status::NORMAL;
        if c == Component::Pump {
            if state.self_test {
                // A self-test run (巡检) is a test, not normal running.
                s &= !component_status::NORMAL;
            }
            if state.running {
                s |= component_status::STARTED;
            }
        }
        for code in state.firing.get(&c).into_iter().flatten() {
            if let Some((_, bit)) = Component::of_code(code) {
                s |= bit;
            }
        }
        s
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        now: i64,
        site: &str,
        device: &str,
        subject: String,
        unit: &Unit,
        urgent: bool,
        what: &str,
    ) -> Option<Entry> {
        let data = match unit.encode() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "a fire centre upload does not encode");
                return None;
            }
        };
        self.seq += 1;
        Some(Entry {
            connector: CONNECTOR.into(),
            key: format!("{site}/{device}/{now}/{}", self.seq),
            payload: serde_json::json!({ "unit": hex::encode(data), "urgent": urgent, "what": what }),
            site: site.to_owned(),
            class: DeviceClass::Firepump.as_str().to_owned(),
            device: device.to_owned(),
            subject,
            created: now,
        })
    }

    /// A row with the component's status word if it changed since the last.
    fn status_row(&mut self, now: i64, site: &str, device: &str, c: Component, subject: String) -> Option<Entry> {
        let key = (site.to_owned(), device.to_owned());
        let state = self.devices.entry(key).or_default();
        let status = Self::status(state, c);
        let before = state.sent.insert(c, status);
        // Before anything was sent, a component in its normal state is no news.
        if before == Some(status) || (before.is_none() && status == component_status::NORMAL) {
            return None;
        }
        let (st, sa) = self.system(c);
        let unit = Unit::ComponentStatus(vec![ComponentStatus {
            system_type: st,
            system_address: sa,
            component_type: c.component_type(),
            component_address: self.address(device, c),
            status,
            description: Description::from_text(&format!("{device}{}", c.name_zh())),
            time: TimeLabel::from_unix_ms(now, gb26875::CHINA_OFFSET_SECS),
        }]);
        self.row(
            now,
            site,
            device,
            subject,
            &unit,
            true,
            &format!("{c:?} status {status:#06x}"),
        )
    }

    fn alert(&mut self, now: i64, c: &alerting::AlertChange, rows: &mut Vec<Entry>) {
        let a = &c.alert;
        if a.class != DeviceClass::Firepump.as_str() {
            return;
        }
        let Some((component, _)) = Component::of_code(&a.code) else {
            return;
        };
        let state = self.devices.entry((a.site.clone(), a.device.clone())).or_default();
        let set = state.firing.entry(component).or_default();
        let changed = match c.change {
            alerting::Change::Fired => set.insert(a.code.clone()),
            alerting::Change::Resolved | alerting::Change::Cancelled => set.remove(&a.code),
            _ => false,
        };
        if changed && let Some(r) = self.status_row(now, &a.site, &a.device, component, format!("alert:{}", a.id)) {
            rows.push(r);
        }
    }

    fn data(&mut self, now: i64, site: &str, device: &str, d: &protocol::Data, rows: &mut Vec<Entry>) {
        let readings = &d.m;
        let flag = |m: Metric| match readings.get(m) {
            Some(Value::Bool(b)) => Some(b),
            Some(Value::Number(n)) => Some(n != 0.0),
            _ => None,
        };
        let state = self.devices.entry((site.to_owned(), device.to_owned())).or_default();
        let mut moved = false;
        if let Some(r) = flag(Metric::PumpRunning) {
            moved |= state.running != r;
            state.running = r;
        }
        if let Some(t) = flag(Metric::SelfTestRunning) {
            moved |= state.self_test != t;
            state.self_test = t;
        }
        if moved && let Some(r) = self.status_row(now, site, device, Component::Pump, format!("device:{device}")) {
            rows.push(r);
        }
        let mut values = Vec::new();
        for a in &ANALOGS {
            let Some(Value::Number(v)) = readings.get(a.metric) else {
                continue;
            };
            let state = self.devices.entry((site.to_owned(), device.to_owned())).or_default();
            let due = state
                .analog
                .get(&a.metric)
                .is_none_or(|(last, at)| (v - last).abs() >= a.deadband || now - at >= ANALOG_EVERY_MS);
            if !due {
                continue;
            }
            state.analog.insert(a.metric, (v, now));
            #[allow(clippy::cast_possible_truncation)]
            let value = (v * a.scale).round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
            let (st, sa) = self.system(a.component);
            values.push(ComponentAnalog {
                system_type: st,
                system_address: sa,
                component_type: a.component.component_type(),
                component_address: self.address(device, a.component),
                analog_type: a.kind,
                value,
                time: TimeLabel::from_unix_ms(now, gb26875::CHINA_OFFSET_SECS),
            });
        }
        if !values.is_empty() {
            let what = format!("{} analog values", values.len());
            if let Some(r) = self.row(
                now,
                site,
                device,
                format!("device:{device}"),
                &Unit::ComponentAnalog(values),
                false,
                &what,
            ) {
                rows.push(r);
            }
        }
    }
}

impl super::Mapper for FireCentreMapper {
    fn connector(&self) -> &str {
        CONNECTOR
    }

    fn map(&mut self, now: i64, effects: &[alerting::Effect], _outs: &[dispatch::Out], rows: &mut Vec<Entry>) {
        for e in effects {
            if let alerting::Effect::Alert(c) = e {
                self.alert(now, c, rows);
            }
        }
    }

    fn seed(&mut self, open: &[alerting::AlertView]) {
        // What fired before the restart is in the words the centre has (or
        // in the outbox): it stays in the words sent from now on.
        for a in open {
            if a.class != DeviceClass::Firepump.as_str()
                || !matches!(a.state, alerting::State::Firing | alerting::State::Acknowledged)
            {
                continue;
            }
            let Some((component, _)) = Component::of_code(&a.code) else {
                continue;
            };
            let state = self.devices.entry((a.site.clone(), a.device.clone())).or_default();
            state.firing.entry(component).or_default().insert(a.code.clone());
            let status = Self::status(state, component);
            state.sent.insert(component, status);
        }
    }

    fn message(&mut self, now: i64, incoming: &crate::ingest::Incoming, rows: &mut Vec<Entry>) {
        let t = &incoming.topic;
        if t.class != DeviceClass::Firepump {
            return;
        }
        // Replayed history is stored, not reported as the present.
        if let Message::Data(d) = &incoming.message
            && !d.hist
        {
            self.data(now, t.site.as_str(), t.device.as_str(), d, rows);
        }
    }
}

/// One row for the link task, and where its end goes.
struct Upload {
    id: u64,
    data: Vec<u8>,
    urgent: bool,
    done: oneshot::Sender<Result<(), Failure>>,
}

/// Sends rows to the centre through the link task (see the module).
pub struct FireCentre {
    tx: mpsc::Sender<Upload>,
}

/// The longest wait between connection attempts; the first is after 1 s, doubling.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

impl FireCentre {
    /// The connector and its link task (abort the task to stop).
    ///
    /// # Errors
    /// A bad address or duration (`gateway check` reports those first).
    pub fn start(
        cfg: &FireCentreConfig,
        clock: SharedClock,
    ) -> anyhow::Result<(FireCentre, tokio::task::JoinHandle<()>)> {
        let session = cfg.session().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
        let (tx, rx) = mpsc::channel(16);
        let target = format!("{}:{}", cfg.host, cfg.port);
        let task = tokio::spawn(link(target, Session::new(session), rx, clock));
        Ok((FireCentre { tx }, task))
    }
}

impl Connector for FireCentre {
    async fn deliver(&self, row: &Row) -> Result<(), Failure> {
        let unit = row.entry.payload["unit"].as_str().unwrap_or_default();
        let data = hex::decode(unit).map_err(|e| Failure::Permanent(format!("the row's unit is not hex: {e}")))?;
        let urgent = row.entry.payload["urgent"].as_bool().unwrap_or(true);
        let id = u64::try_from(row.id).map_err(|_| Failure::Permanent(format!("row id {}", row.id)))?;
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Upload { id, data, urgent, done })
            .await
            .map_err(|_| Failure::Retry("the fire centre link has stopped".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Failure::Retry("the fire centre link has stopped".into())))
    }
}

/// The link task: connects, drives the session, reconnects; uploads wait
/// in the session until the centre confirms or denies them.
async fn link(target: String, mut s: Session, mut rx: mpsc::Receiver<Upload>, clock: SharedClock) {
    let mut waiting: HashMap<u64, oneshot::Sender<Result<(), Failure>>> = HashMap::new();
    let mut backoff = Duration::from_secs(1);
    loop {
        let connect = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&target));
        tokio::pin!(connect);
        let stream = loop {
            tokio::select! {
                c = &mut connect => break c,
                // Rows are taken while connecting too: they wait in the session.
                Some(u) = rx.recv() => {
                    let _ = take(&mut s, &mut waiting, u, clock.now_ms());
                }
            }
        };
        let mut stream = match stream {
            Ok(Ok(st)) => st,
            Ok(Err(e)) => {
                tracing::warn!(centre = %target, error = %e, retry_in = ?backoff, "cannot reach the fire remote-monitoring centre");
                wait(&mut s, &mut waiting, &mut rx, &clock, backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
            Err(_) => {
                tracing::warn!(centre = %target, retry_in = ?backoff, "connecting to the fire remote-monitoring centre timed out");
                wait(&mut s, &mut waiting, &mut rx, &clock, backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::info!(centre = %target, "connected to the fire remote-monitoring centre");
        let mut events = s.connected(clock.now_ms());
        let mut buf = vec![0u8; 2048];
        let mut confirmed_here = false;
        let why = 'conn: loop {
            for e in events.drain(..) {
                match e {
                    Event::Send(bytes) => {
                        if let Err(e) = stream.write_all(&bytes).await {
                            break 'conn format!("write: {e}");
                        }
                    }
                    Event::Confirmed(id) => {
                        confirmed_here = true;
                        if let Some(d) = waiting.remove(&id) {
                            let _ = d.send(Ok(()));
                        }
                    }
                    Event::Denied(id) => {
                        if let Some(d) = waiting.remove(&id) {
                            let _ = d.send(Err(Failure::Permanent(
                                "the centre denied the frame (command 6)".into(),
                            )));
                        }
                    }
                    Event::Reconnect => break 'conn "no confirm after every try".to_owned(),
                    Event::ClockSet(offset) => tracing::info!(offset_ms = offset, "the fire centre set the clock"),
                    Event::Answered(t) => tracing::debug!(type_flag = t, "answered the fire centre's query"),
                    Event::Refused(c, t) => {
                        tracing::info!(command = c, type_flag = ?t, "denied a fire centre request the gateway does not serve");
                    }
                    Event::Garbage(g) => tracing::debug!(reason = %g, "garbage from the fire centre"),
                    Event::Ignored(why) => tracing::debug!(%why, "ignored a fire centre frame"),
                }
            }
            let wake = s.next_wake().unwrap_or(i64::MAX);
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) => break 'conn "the centre closed the connection".to_owned(),
                    Ok(n) => events = s.received(&buf[..n], clock.now_ms()),
                    Err(e) => break 'conn format!("read: {e}"),
                },
                Some(u) = rx.recv() => {
                    events = take(&mut s, &mut waiting, u, clock.now_ms());
                }
                () = clock.sleep_until(wake) => events = s.tick(clock.now_ms()),
            }
        };
        s.disconnected();
        if confirmed_here {
            backoff = Duration::from_secs(1);
        }
        tracing::warn!(centre = %target, reason = %why, retry_in = ?backoff, "lost the fire remote-monitoring centre; connecting again");
        wait(&mut s, &mut waiting, &mut rx, &clock, backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Hands a row to the session; its end is reported when the centre answers.
fn take(
    s: &mut Session,
    waiting: &mut HashMap<u64, oneshot::Sender<Result<(), Failure>>>,
    u: Upload,
    now: i64,
) -> Vec<Event> {
    waiting.insert(u.id, u.done);
    s.upload(u.id, u.data, u.urgent, now)
}

/// Waits out a back-off, still taking rows (they wait in the session).
async fn wait(
    s: &mut Session,
    waiting: &mut HashMap<u64, oneshot::Sender<Result<(), Failure>>>,
    rx: &mut mpsc::Receiver<Upload>,
    clock: &SharedClock,
    backoff: Duration,
) {
    let until = clock
        .now_ms()
        .saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
    let sleep = clock.sleep_until(until);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return,
            Some(u) = rx.recv() => { let _ = take(s, waiting, u, clock.now_ms()); }
        }
    }
}

/// The connector's mapper and its delivery loop's connector, for
/// [`super::start`].
///
/// # Errors
/// A bad address or duration.
pub fn build(
    cfg: &FireCentreConfig,
    clock: SharedClock,
) -> anyhow::Result<(FireCentreMapper, Arc<FireCentre>, tokio::task::JoinHandle<()>)> {
    let (centre, task) = FireCentre::start(cfg, clock)?;
    Ok((FireCentreMapper::new(cfg), Arc::new(centre), task))
}
