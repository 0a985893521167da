//! The scenario file: a compound of simulated devices, a timeline of what
//! happens to them (people, faults, link faults) and what the gateway must
//! then have done (expectations). TOML, checked as a whole before anything
//! runs, with errors that name the file, line and field.
//!
//! ```toml
//! name = "trapped"
//! about = "A car sticks between floors with two people inside."
//! duration = "6m"
//!
//! [[device]]
//! site = "lakeside"
//! id = "EL-3"
//! class = "elevator"
//!
//! [[at]]
//! t = "10s"
//! device = "EL-3"
//! do = "inject"
//! fault = "stuck_between_floors"
//! label = "stuck"
//!
//! [[expect]]
//! alert = "trapped"
//! device = "EL-3"
//! after = "stuck"
//! within = "25s"
//! ```
//!
//! docs/hil.md has every key.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::DeviceClass;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sim::device::{Action, DeviceSpec, SimDevice};
use toml::Spanned;

/// 2026-12-01T08:00:00+08:00: where virtual time starts unless a scenario
/// says otherwise (a weekday morning in the compound's time zone).
pub const DEFAULT_START_MS: i64 = 1_796_083_200_000;

/// A scenario file that cannot be run, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The field (`at[2].fault`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Which broker the compound's nodes and the gateway meet at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Broker {
    /// The gateway's embedded broker (the zero-setup default).
    #[default]
    Embedded,
    /// Debian's Mosquitto, started for the run (it can be restarted).
    Mosquitto,
}

/// How a device reaches the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// MQTT to the broker, the node's own payloads.
    #[default]
    Mqtt,
    /// The node as a Modbus TCP slave, polled by the gateway.
    ModbusTcp,
    /// The node as a Modbus RTU slave on an RS-485 bus (a pty pair).
    ModbusRtu,
}

impl LinkKind {
    /// Its name in a scenario file.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Mqtt => "mqtt",
            LinkKind::ModbusTcp => "modbus-tcp",
            LinkKind::ModbusRtu => "modbus-rtu",
        }
    }
}

/// A device with its link.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceDecl {
    /// The device.
    pub spec: DeviceSpec,
    /// Its link.
    pub link: LinkKind,
    /// The RTU bus it hangs on (devices naming the same bus share it).
    pub bus: Option<String>,
    /// Modbus poll interval.
    pub poll: Duration,
}

/// What the timeline does.
#[derive(Clone, Debug, PartialEq)]
pub enum Happening {
    /// Something happens to a device.
    Device(Action),
    /// A fault on a device's link, or on a bus, or on the broker.
    Link(LinkAction),
    /// The device's Modbus slave answers every request with this Modbus
    /// exception (`do = "refuse"`, `exception` default 4, server device
    /// failure): it is there and refuses, unlike a muted one. Undone by
    /// `for` or `restore`.
    Refuse {
        /// The exception code (1–255).
        exception: u8,
    },
    /// A command sent through the gateway's API (`do = "api_command"`):
    /// `POST /api/v1/devices/{site}/{device}/commands` with `{"op",
    /// "args"}`, as a property engineer's console does. The gateway signs
    /// and publishes it; expectations name it by `name`.
    Api(ApiCommand),
}

/// A command for the gateway's API.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiCommand {
    /// What expectations call it (`as`, or else the step's label).
    pub name: String,
    /// The op.
    pub op: String,
    /// `args`, as the API takes them.
    pub args: serde_json::Map<String, serde_json::Value>,
}

/// A fault on a link (undone after `for`, when given).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkAction {
    /// The device's payloads are lost on the way (MQTT).
    Drop,
    /// The device's payloads arrive late (MQTT), or its slave answers late
    /// (Modbus).
    Delay {
        /// By how much.
        #[serde(with = "humantime_serde_compat")]
        by: Duration,
    },
    /// The device's link is cut (MQTT: the connection drops without a
    /// DISCONNECT, the broker sends the will).
    Partition,
    /// The device's Modbus slave stops answering (a slave timeout); with
    /// `bus`, every slave of the bus does (a dead bus).
    Mute,
    /// Undoes `drop`, `delay`, `partition` or `mute` on the device (or bus).
    Restore,
    /// The device's clock is off by `seconds` (negative: behind).
    Skew {
        /// Seconds off the true time.
        seconds: i64,
    },
    /// The broker stops and starts again (Mosquitto only), after `for`
    /// (default at once).
    BrokerRestart,
}

/// One entry of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// When, from the start.
    pub at: Duration,
    /// Its name, for expectations to measure from.
    pub label: Option<String>,
    /// The device it concerns (not for broker restarts or bus faults).
    pub device: Option<String>,
    /// The bus it concerns (for `mute`/`restore` of a whole bus).
    pub bus: Option<String>,
    /// Undo it after this long.
    pub lasts: Option<Duration>,
    /// What happens.
    pub what: Happening,
    /// Its line in the file.
    pub line: usize,
}

/// Where a measurement starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Anchor {
    /// The scenario's start.
    Start,
    /// A labelled step.
    Label(String),
    /// The first moment a charging port's true temperature reached this.
    PortTempAtLeast(f32),
    /// The first moment the node's own reading of a port's temperature
    /// reached this.
    NodePortTempAtLeast(f32),
    /// The first moment the node's own alarm for this code was raised.
    NodeEvent(String),
    /// The first moment the bay's smoke detector saw smoke.
    Smoke,
    /// The first moment the bay's leakage current reached this (mA).
    LeakageAtLeast(f32),
}

/// What the gateway (or the node) must have done.
#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    /// An alert fires for `device` (and `port`) with `code` within `within`
    /// of `after`; with `inhibited_by`, it must be suppressed by a parent
    /// whose name starts so.
    Alert {
        /// The code.
        code: String,
        /// The device (for root causes: `uplink`, `site`, `bus:<path>`).
        device: String,
        /// The charging port.
        port: Option<u8>,
        /// From when.
        after: Anchor,
        /// How long it may take.
        within: Duration,
        /// The parent that must inhibit it.
        inhibited_by: Option<String>,
    },
    /// An alert that fired resolves within `within` of `after`.
    Resolved {
        /// The code.
        code: String,
        /// The device.
        device: String,
        /// From when.
        after: Anchor,
        /// How long it may take.
        within: Duration,
    },
    /// A work order for `code` on `device` is dispatched to `contractor`
    /// within `within` of `after`, with these deadlines after its dispatch.
    Order {
        /// The code.
        code: String,
        /// The device.
        device: String,
        /// Who must have it.
        contractor: String,
        /// From when.
        after: Anchor,
        /// How long it may take.
        within: Duration,
        /// The respond deadline it must carry.
        respond: Option<Duration>,
        /// The arrive deadline it must carry.
        arrive: Option<Duration>,
        /// The complete deadline it must carry.
        complete: Option<Duration>,
        /// It must have been re-dispatched to this backup by the end.
        escalated_to: Option<String>,
    },
    /// The node cuts a charging port (or every port) within `within` of
    /// `after`, and keeps it cut until the step labelled `until` (or the
    /// end).
    Cut {
        /// The bay.
        device: String,
        /// The port; `None` for every port.
        port: Option<u8>,
        /// From when.
        after: Anchor,
        /// How long it may take.
        within: Duration,
        /// Kept cut until this step's label; `None`: the end of the run.
        until: Option<String>,
    },
    /// No alert fires that is not inhibited (for `devices`, or any), but
    /// those with a code in `except`.
    NoAlerts {
        /// Only these devices (empty: all).
        devices: Vec<String>,
        /// Codes allowed to fire.
        except: Vec<String>,
    },
    /// Nobody is told of an alert (no notification carries one) for
    /// `devices` (or any), but those with a code in `except`: alerts may
    /// open and close within the group wait.
    NoNotifications {
        /// Only these devices (empty: all).
        devices: Vec<String>,
        /// Codes people may be told of.
        except: Vec<String>,
    },
    /// Every alert of these devices that fires is inhibited by a parent
    /// whose name starts with `by`, so nobody is told of the children.
    Inhibited {
        /// The children.
        devices: Vec<String>,
        /// The parent's prefix (`bus:`, `uplink`, `offline:`).
        by: String,
    },
    /// Every payload the nodes sent reached the gateway, and the gateway
    /// counts none missing.
    NoLoss,
    /// The gateway counted at least `at_least` messages of `device` missing.
    Lost {
        /// The device.
        device: String,
        /// How many at least.
        at_least: u64,
    },
    /// The node answers the command `id` with an ack within `within` of
    /// `after`: `ok`, and with `error` when given (`bad_mac`, `replayed`, …).
    Ack {
        /// The node.
        device: String,
        /// The command id.
        id: String,
        /// What the ack must say.
        ok: bool,
        /// The ack's `error`, when given.
        error: Option<String>,
        /// From when.
        after: Anchor,
        /// How long it may take.
        within: Duration,
    },
    /// A charging port's relay is on at `after` and stays on until the step
    /// labelled `until` (or the end): nothing cut it.
    Powered {
        /// The bay.
        device: String,
        /// The port.
        port: u8,
        /// From when.
        after: Anchor,
        /// Until this step's label; `None`: the end of the run.
        until: Option<String>,
    },
    /// A periodic duty's order (`docs/workorders.md`: `self_test`,
    /// `maintenance`) on `device` is completed within `within` of `after`.
    Duty {
        /// The duty.
        duty: String,
        /// The device.
        device: String,
        /// Who must have completed it (`node` for a passing self-test).
        by: Option<String>,
        /// From when.
        after: Anchor,
        /// How long it may take.
        within: Duration,
    },
    /// A command the gateway sent (through its API, or of its own) ends
    /// in `status` (`sent`, `acked`, `refused`, `expired`), settled within
    /// `within` of `after` by the gateway's clock (`GET
    /// /api/v1/commands/{id}` at the end of the run: its `settled_at`).
    Command {
        /// An `api_command` step's name, or an op: then the first command of
        /// that op the gateway sent `device` (of its own: a policy, a rule)
        /// that reached the node after `after`.
        name: String,
        /// The device (needed for an op).
        device: Option<String>,
        /// The status it must end in.
        status: String,
        /// The `error` it must carry (the node's ack's).
        error: Option<String>,
        /// The `args.hold` it must carry (`hold_doors`).
        hold: Option<bool>,
        /// From when.
        after: Anchor,
        /// How long settling may take (not for `sent`).
        within: Option<Duration>,
    },
    /// The gateway shows the device's clock off by about `seconds`.
    Skew {
        /// The device.
        device: String,
        /// Seconds off (negative: behind).
        seconds: i64,
        /// Allowed difference, seconds.
        tolerance: i64,
    },
}

/// An expectation with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Expect {
    /// What.
    pub what: Expectation,
    /// Its line in the file.
    pub line: usize,
}

/// A whole scenario, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name (the file's stem unless given).
    pub name: String,
    /// What it shows, for the report.
    pub about: String,
    /// Where it came from.
    pub file: PathBuf,
    /// How long it runs (virtual or real).
    pub duration: Duration,
    /// The broker.
    pub broker: Broker,
    /// Where virtual time starts (epoch ms).
    pub start_ms: i64,
    /// Gateway configuration added to the bench's (contacts, dispatch,
    /// alerting overrides).
    pub gateway: String,
    /// The compound.
    pub devices: Vec<DeviceDecl>,
    /// The timeline, in time order.
    pub steps: Vec<Step>,
    /// The expectations.
    pub expects: Vec<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<String>,
    #[serde(default)]
    about: String,
    duration: Spanned<String>,
    #[serde(default)]
    broker: Broker,
    start: Option<Spanned<String>>,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    device: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    at: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    expect: Vec<Spanned<toml::Table>>,
}

/// Reads and checks a scenario file.
///
/// # Errors
/// [`ScenarioError`] naming the file, line and field.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_owned(),
        line: None,
        field: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// The scenario files of a directory (`*.toml`), in name order.
///
/// # Errors
/// If the directory cannot be read.
pub fn library(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Where problems are reported.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn err(&self, line: Option<usize>, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.file.to_owned(),
            line,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The line of `key` inside a table that starts at `line` (or the
    /// table's own line).
    fn key_line(&self, line: usize, key: &str) -> usize {
        self.text
            .lines()
            .enumerate()
            .skip(line.saturating_sub(1))
            .take_while(|(i, l)| *i + 1 == line || !l.trim_start().starts_with('['))
            .find(|(_, l)| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
            .map_or(line, |(i, _)| i + 1)
    }

    fn duration(&self, line: usize, field: &str, text: &str) -> Result<Duration, ScenarioError> {
        humantime::parse_duration(text).map_err(|e| {
            self.err(
                Some(line),
                field,
                format!("`{text}` is not a duration ({e}): write e.g. \"25s\", \"30m\", \"1h 30m\""),
            )
        })
    }

    fn typed<T: DeserializeOwned>(&self, table: toml::Table, line: usize, field: &str) -> Result<T, ScenarioError> {
        table.try_into::<T>().map_err(|e| {
            let msg = e.message().to_owned();
            // Point at the key the message names, when it names one.
            let key = msg.split('`').nth(1).unwrap_or_default();
            let at = if key.is_empty() { line } else { self.key_line(line, key) };
            self.err(Some(at), field, msg)
        })
    }
}

/// Parses and checks scenario text; `path` is for messages and the default name.
///
/// # Errors
/// [`ScenarioError`] naming the file, line and field.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let cx = Ctx { file: path, text };
    let raw: Raw = toml::from_str(text).map_err(|e| ScenarioError {
        file: path.to_owned(),
        line: e.span().map(|s| cx.line(s.start)),
        field: None,
        message: e.message().to_owned(),
    })?;
    let duration_line = cx.line(raw.duration.span().start);
    let duration = cx.duration(duration_line, "duration", raw.duration.get_ref())?;
    let start_ms = match &raw.start {
        None => DEFAULT_START_MS,
        Some(s) => {
            let t = time::OffsetDateTime::parse(s.get_ref(), &time::format_description::well_known::Rfc3339).map_err(
                |e| {
                    cx.err(
                        Some(cx.line(s.span().start)),
                        "start",
                        format!("`{}` is not an RFC 3339 time ({e})", s.get_ref()),
                    )
                },
            )?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(DEFAULT_START_MS)
        }
    };
    if !raw.gateway.is_empty() {
        check_gateway(&cx, &raw.gateway)?;
    }
    let devices = devices(&cx, raw.device)?;
    let ids: BTreeSet<&str> = devices.iter().map(|d| d.spec.id.as_str()).collect();
    let buses: BTreeSet<&str> = devices.iter().filter_map(|d| d.bus.as_deref()).collect();
    let mut steps = Vec::new();
    for (i, t) in raw.at.into_iter().enumerate() {
        steps.push(step(&cx, i, t, &devices, &buses)?);
    }
    steps.sort_by_key(|s| s.at);
    let labels: BTreeSet<&str> = steps.iter().filter_map(|s| s.label.as_deref()).collect();
    let mut api_names: BTreeSet<&str> = BTreeSet::new();
    for s in &steps {
        if let Happening::Api(a) = &s.what
            && !api_names.insert(a.name.as_str())
        {
            return Err(cx.err(
                Some(s.line),
                "at.as",
                format!("two `api_command` steps are called `{}`", a.name),
            ));
        }
    }
    let mut expects = Vec::new();
    for (i, t) in raw.expect.into_iter().enumerate() {
        expects.push(expectation(&cx, i, t, &ids, &labels, &api_names)?);
    }
    if expects.is_empty() {
        return Err(cx.err(None, "expect", "a scenario needs at least one [[expect]]"));
    }
    if raw.broker == Broker::Embedded
        && steps
            .iter()
            .any(|s| matches!(s.what, Happening::Link(LinkAction::BrokerRestart)))
    {
        return Err(cx.err(
            Some(cx.key_line(1, "broker")),
            "broker",
            "`broker_restart` needs `broker = \"mosquitto\"`: the embedded broker lives and dies with the gateway",
        ));
    }
    let name = raw.name.unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Scenario {
        name,
        about: raw.about,
        file: path.to_owned(),
        duration,
        broker: raw.broker,
        start_ms,
        gateway: raw.gateway,
        devices,
        steps,
        expects,
    })
}

/// What the scenario adds to the gateway's configuration must be valid for
/// the gateway, checked by the gateway's own parser now rather than when
/// the run starts. Its problems are reported at their line in the file.
fn check_gateway(cx: &Ctx<'_>, text: &str) -> Result<(), ScenarioError> {
    let at = cx.key_line(1, "gateway");
    let full = format!("{BENCH_SECTIONS}{text}");
    gateway::app::config::Config::parse(cx.file, &full)
        .map(drop)
        .map_err(|e| {
            let line = e.line.map(|l| at + l.saturating_sub(BENCH_SECTIONS.lines().count()));
            ScenarioError {
                file: cx.file.to_owned(),
                line: line.or(Some(at)),
                field: Some(format!("gateway.{}", e.field.unwrap_or_default())),
                message: e.message,
            }
        })
}

/// The sections the bench writes itself, before the scenario's own.
const BENCH_SECTIONS: &str =
    "[mqtt]\nlisten = \"127.0.0.1:1\"\n[http]\nlisten = \"127.0.0.1:1\"\n[storage]\ndata_dir = \"/nonexistent\"\n";

fn devices(cx: &Ctx<'_>, raw: Vec<Spanned<toml::Table>>) -> Result<Vec<DeviceDecl>, ScenarioError> {
    let mut out: Vec<DeviceDecl> = Vec::new();
    if raw.is_empty() {
        return Err(cx.err(None, "device", "a scenario needs at least one [[device]]"));
    }
    for (i, t) in raw.into_iter().enumerate() {
        let line = cx.line(t.span().start);
        let field = format!("device[{i}]");
        let mut table = t.into_inner();
        let link_kind = match table.remove("link") {
            None => LinkKind::Mqtt,
            Some(v) => v.try_into::<LinkKind>().map_err(|_| {
                cx.err(
                    Some(cx.key_line(line, "link")),
                    format!("{field}.link"),
                    "expected `mqtt`, `modbus-tcp` or `modbus-rtu`",
                )
            })?,
        };
        let bus = match table.remove("bus") {
            None => None,
            Some(toml::Value::String(s)) => Some(s),
            Some(_) => {
                return Err(cx.err(
                    Some(cx.key_line(line, "bus")),
                    format!("{field}.bus"),
                    "expected a bus name",
                ));
            }
        };
        let poll = match table.remove("poll") {
            None => Duration::from_secs(1),
            Some(toml::Value::String(s)) => cx.duration(cx.key_line(line, "poll"), &format!("{field}.poll"), &s)?,
            Some(_) => {
                return Err(cx.err(
                    Some(cx.key_line(line, "poll")),
                    format!("{field}.poll"),
                    "expected a duration",
                ));
            }
        };
        let spec: DeviceSpec = cx.typed(table, line, &field)?;
        check_device(cx, line, &field, &spec, link_kind, bus.as_deref(), &out)?;
        out.push(DeviceDecl {
            spec,
            link: link_kind,
            bus,
            poll,
        });
    }
    Ok(out)
}

/// What a declared device must be: unique, with valid ids, a unit id, a
/// bus exactly when it is on RTU, a plain sensor only on MQTT and never on a
/// bay, and a unit free on its bus.
fn check_device(
    cx: &Ctx<'_>,
    line: usize,
    field: &str,
    spec: &DeviceSpec,
    link_kind: LinkKind,
    bus: Option<&str>,
    out: &[DeviceDecl],
) -> Result<(), ScenarioError> {
    if out.iter().any(|d| d.spec.id == spec.id && d.spec.site == spec.site) {
        return Err(cx.err(
            Some(line),
            format!("{field}.id"),
            format!("`{}` is declared twice", spec.id),
        ));
    }
    if protocol::DeviceId::new(&spec.id).is_err() || protocol::SiteId::new(&spec.site).is_err() {
        return Err(cx.err(
            Some(line),
            format!("{field}.id"),
            "site and id must be valid topic segments",
        ));
    }
    if !(1..=247).contains(&spec.unit) {
        return Err(cx.err(
            Some(cx.key_line(line, "unit")),
            format!("{field}.unit"),
            "a Modbus unit id is 1–247",
        ));
    }
    match (link_kind, bus) {
        (LinkKind::ModbusRtu, None) => {
            return Err(cx.err(
                Some(line),
                format!("{field}.bus"),
                "a `modbus-rtu` device names its `bus`",
            ));
        }
        (LinkKind::Mqtt | LinkKind::ModbusTcp, Some(_)) => {
            return Err(cx.err(
                Some(cx.key_line(line, "bus")),
                format!("{field}.bus"),
                "only `modbus-rtu` devices hang on a bus",
            ));
        }
        _ => {}
    }
    if spec.node == sim::device::NodeKind::Sensor {
        let problem = match (spec.class, link_kind) {
            (DeviceClass::Charger, _) => Some("a charging bay needs our firmware node: its cut-offs are the node's"),
            (_, LinkKind::ModbusTcp | LinkKind::ModbusRtu) => {
                Some("a plain sensor reports over MQTT: it has no Modbus slave")
            }
            _ => None,
        };
        if let Some(message) = problem {
            return Err(cx.err(Some(cx.key_line(line, "node")), format!("{field}.node"), message));
        }
    }
    if let Some(b) = bus
        && out
            .iter()
            .any(|d| d.bus.as_deref() == Some(b) && d.spec.unit == spec.unit)
    {
        return Err(cx.err(
            Some(line),
            format!("{field}.unit"),
            format!("unit {} is taken on bus `{b}`", spec.unit),
        ));
    }
    Ok(())
}

const LINK_ACTIONS: &[&str] = &[
    "drop",
    "delay",
    "partition",
    "mute",
    "restore",
    "skew",
    "broker_restart",
];

fn step(
    cx: &Ctx<'_>,
    i: usize,
    t: Spanned<toml::Table>,
    devices: &[DeviceDecl],
    buses: &BTreeSet<&str>,
) -> Result<Step, ScenarioError> {
    let line = cx.line(t.span().start);
    let field = format!("at[{i}]");
    let mut table = t.into_inner();
    let text = |table: &mut toml::Table, key: &str| -> Result<Option<String>, ScenarioError> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(cx.err(
                Some(cx.key_line(line, key)),
                format!("{field}.{key}"),
                "expected a string",
            )),
        }
    };
    let at_text = text(&mut table, "t")?
        .ok_or_else(|| cx.err(Some(line), format!("{field}.t"), "every step says when: `t = \"30s\"`"))?;
    let at = cx.duration(cx.key_line(line, "t"), &format!("{field}.t"), &at_text)?;
    let label = text(&mut table, "label")?;
    let device = text(&mut table, "device")?;
    let bus = text(&mut table, "bus")?;
    let lasts = match text(&mut table, "for")? {
        None => None,
        Some(s) => Some(cx.duration(cx.key_line(line, "for"), &format!("{field}.for"), &s)?),
    };
    let what_name = match table.get("do") {
        Some(toml::Value::String(s)) => s.clone(),
        _ => {
            return Err(cx.err(
                Some(line),
                format!("{field}.do"),
                "every step says what it does: `do = \"inject\"`",
            ));
        }
    };
    let decl = match &device {
        Some(id) => Some(devices.iter().find(|d| &d.spec.id == id).ok_or_else(|| {
            cx.err(
                Some(cx.key_line(line, "device")),
                format!("{field}.device"),
                format!("no device `{id}` is declared"),
            )
        })?),
        None => None,
    };
    if let Some(b) = &bus
        && !buses.contains(b.as_str())
    {
        return Err(cx.err(
            Some(cx.key_line(line, "bus")),
            format!("{field}.bus"),
            format!("no device hangs on bus `{b}`"),
        ));
    }
    let what = if what_name == "refuse" {
        refuse_step(cx, line, &field, table, decl, bus.as_deref())?
    } else if what_name == "api_command" {
        api_step(cx, line, &field, table, decl, (label.as_deref(), lasts))?
    } else if LINK_ACTIONS.contains(&what_name.as_str()) {
        link_step(cx, line, &field, table, &what_name, decl, bus.as_deref())?
    } else {
        let d = decl.ok_or_else(|| {
            cx.err(
                Some(line),
                format!("{field}.device"),
                format!("`{what_name}` needs a `device`"),
            )
        })?;
        let a: Action = cx.typed(table, line, &field)?;
        SimDevice::check(&d.spec, &a).map_err(|e| {
            let (key, at) = match e {
                sim::device::ActionError::UnknownFault { .. } => ("fault", cx.key_line(line, "fault")),
                _ => ("do", line),
            };
            cx.err(Some(at), format!("{field}.{key}"), e.to_string())
        })?;
        if matches!(a, Action::Command { .. }) && d.link != LinkKind::Mqtt {
            return Err(cx.err(
                Some(line),
                format!("{field}.do"),
                format!("`command` goes over MQTT; {} is on a {} link", d.spec.id, d.link.name()),
            ));
        }
        if lasts.is_some() && !matches!(a, Action::Inject { .. }) {
            return Err(cx.err(
                Some(cx.key_line(line, "for")),
                format!("{field}.for"),
                "only an injected fault (or a link fault) is undone after `for`",
            ));
        }
        Happening::Device(a)
    };
    Ok(Step {
        at,
        label,
        device,
        bus,
        lasts,
        what,
        line,
    })
}

/// `do = "refuse"`: one Modbus device's slave answers only exceptions.
fn refuse_step(
    cx: &Ctx<'_>,
    line: usize,
    field: &str,
    table: toml::Table,
    decl: Option<&DeviceDecl>,
    bus: Option<&str>,
) -> Result<Happening, ScenarioError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawRefuse {
        #[serde(rename = "do")]
        _do: String,
        #[serde(default = "server_device_failure")]
        exception: u8,
    }
    fn server_device_failure() -> u8 {
        4
    }
    if bus.is_some() {
        return Err(cx.err(
            Some(cx.key_line(line, "bus")),
            format!("{field}.bus"),
            "`refuse` concerns one device's slave, not a bus",
        ));
    }
    let Some(d) = decl else {
        return Err(cx.err(Some(line), format!("{field}.device"), "`refuse` needs a `device`"));
    };
    if d.link == LinkKind::Mqtt {
        return Err(cx.err(
            Some(line),
            format!("{field}.do"),
            "`refuse` does not apply to a mqtt link",
        ));
    }
    let raw: RawRefuse = cx.typed(table, line, field)?;
    if raw.exception == 0 {
        return Err(cx.err(
            Some(cx.key_line(line, "exception")),
            format!("{field}.exception"),
            "a Modbus exception code is 1 to 255",
        ));
    }
    Ok(Happening::Refuse {
        exception: raw.exception,
    })
}

/// `do = "api_command"`: a command through the gateway's API.
fn api_step(
    cx: &Ctx<'_>,
    line: usize,
    field: &str,
    table: toml::Table,
    decl: Option<&DeviceDecl>,
    (label, lasts): (Option<&str>, Option<Duration>),
) -> Result<Happening, ScenarioError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawApi {
        #[serde(rename = "do")]
        _do: String,
        op: String,
        #[serde(rename = "as")]
        name: Option<String>,
        port: Option<u8>,
        #[serde(rename = "name")]
        threshold: Option<String>,
        value: Option<f64>,
        hold: Option<bool>,
    }
    if lasts.is_some() {
        return Err(cx.err(
            Some(cx.key_line(line, "for")),
            format!("{field}.for"),
            "only an injected fault (or a link fault) is undone after `for`",
        ));
    }
    let Some(d) = decl else {
        return Err(cx.err(Some(line), format!("{field}.device"), "`api_command` needs a `device`"));
    };
    if d.link != LinkKind::Mqtt {
        return Err(cx.err(
            Some(line),
            format!("{field}.do"),
            format!(
                "the gateway commands over MQTT; {} is on a {} link",
                d.spec.id,
                d.link.name()
            ),
        ));
    }
    let raw: RawApi = cx.typed(table, line, field)?;
    if protocol::Op::from_name(&raw.op).is_none() {
        let known: Vec<&str> = protocol::Op::ALL.iter().map(|o| o.as_str()).collect();
        return Err(cx.err(
            Some(cx.key_line(line, "op")),
            format!("{field}.op"),
            format!("`{}` is not an op ({})", raw.op, known.join(", ")),
        ));
    }
    let name = raw.name.or_else(|| label.map(str::to_owned)).ok_or_else(|| {
        cx.err(
            Some(line),
            format!("{field}.as"),
            "an `api_command` has a name for expectations: `as = \"cut-3\"` (or a `label`)",
        )
    })?;
    let mut args = serde_json::Map::new();
    if let Some(p) = raw.port {
        args.insert("port".into(), p.into());
    }
    if let Some(n) = raw.threshold {
        args.insert("name".into(), n.into());
    }
    if let Some(v) = raw.value {
        args.insert("value".into(), v.into());
    }
    if let Some(h) = raw.hold {
        args.insert("hold".into(), h.into());
    }
    Ok(Happening::Api(ApiCommand { name, op: raw.op, args }))
}

/// A link fault of the timeline, checked against what it concerns.
fn link_step(
    cx: &Ctx<'_>,
    line: usize,
    field: &str,
    table: toml::Table,
    what_name: &str,
    decl: Option<&DeviceDecl>,
    bus: Option<&str>,
) -> Result<Happening, ScenarioError> {
    let a: LinkAction = cx.typed(table, line, field)?;
    if bus.is_some() && !matches!(a, LinkAction::Mute | LinkAction::Restore | LinkAction::Delay { .. }) {
        return Err(cx.err(
            Some(cx.key_line(line, "bus")),
            format!("{field}.bus"),
            format!("a whole bus can be muted, delayed or restored, not given `{what_name}`"),
        ));
    }
    let needs_device = !matches!(a, LinkAction::BrokerRestart) && bus.is_none();
    if needs_device && decl.is_none() {
        return Err(cx.err(
            Some(line),
            format!("{field}.device"),
            format!("`{what_name}` needs a `device` (or a `bus`)"),
        ));
    }
    if let Some(d) = decl {
        let ok = match a {
            LinkAction::Drop | LinkAction::Partition => d.link == LinkKind::Mqtt,
            LinkAction::Mute => d.link != LinkKind::Mqtt,
            _ => true,
        };
        if !ok {
            return Err(cx.err(
                Some(line),
                format!("{field}.do"),
                format!("`{what_name}` does not apply to a {} link", d.link.name()),
            ));
        }
    }
    Ok(Happening::Link(a))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    alert: String,
    device: String,
    port: Option<u8>,
    after: Option<String>,
    within: String,
    inhibited_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolved {
    resolved: String,
    device: String,
    after: Option<String>,
    within: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrder {
    order: String,
    device: String,
    contractor: String,
    after: Option<String>,
    within: String,
    respond: Option<String>,
    arrive: Option<String>,
    complete: Option<String>,
    escalated_to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCut {
    cut: toml::Value,
    device: String,
    after: Option<String>,
    within: String,
    until: Option<String>,
}

/// `no_alerts = true` or `no_notifications = true`, with their scope.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuiet {
    #[serde(alias = "no_alerts", alias = "no_notifications")]
    on: bool,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInhibited {
    inhibited: Vec<String>,
    by: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNoLoss {
    no_loss: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLost {
    lost: String,
    at_least: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSkew {
    skew: String,
    seconds: i64,
    #[serde(default = "default_tolerance")]
    tolerance: i64,
}

fn default_tolerance() -> i64 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAck {
    ack: String,
    device: String,
    ok: bool,
    error: Option<String>,
    after: Option<String>,
    within: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDuty {
    duty: String,
    device: String,
    by: Option<String>,
    after: Option<String>,
    within: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    command: String,
    device: Option<String>,
    status: String,
    error: Option<String>,
    hold: Option<bool>,
    after: Option<String>,
    within: Option<String>,
}

/// What `GET /api/v1/commands/{id}` says a command came to (CONTRACT §9).
const COMMAND_STATUSES: &[&str] = &["sent", "acked", "refused", "expired"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPowered {
    powered: u8,
    device: String,
    after: Option<String>,
    until: Option<String>,
}

const EXPECT_KEYS: &[&str] = &[
    "alert",
    "resolved",
    "order",
    "cut",
    "powered",
    "ack",
    "command",
    "duty",
    "no_alerts",
    "no_notifications",
    "inhibited",
    "no_loss",
    "lost",
    "skew",
];

#[allow(clippy::too_many_lines)] // one arm per kind of expectation
fn expectation(
    cx: &Ctx<'_>,
    i: usize,
    t: Spanned<toml::Table>,
    ids: &BTreeSet<&str>,
    labels: &BTreeSet<&str>,
    api_names: &BTreeSet<&str>,
) -> Result<Expect, ScenarioError> {
    let line = cx.line(t.span().start);
    let field = format!("expect[{i}]");
    let table = t.into_inner();
    let kinds: Vec<&str> = EXPECT_KEYS.iter().copied().filter(|k| table.contains_key(*k)).collect();
    let [kind] = kinds[..] else {
        return Err(cx.err(
            Some(line),
            field,
            format!("an expectation has exactly one of: {}", EXPECT_KEYS.join(", ")),
        ));
    };
    let dur = |key: &str, s: &str| cx.duration(cx.key_line(line, key), &format!("{field}.{key}"), s);
    let opt_dur = |key: &str, s: Option<String>| s.map(|s| dur(key, &s)).transpose();
    let device = |id: &str| -> Result<String, ScenarioError> {
        // Root causes are the gateway's own "devices".
        if ids.contains(id) || id == "uplink" || id == "site" || id.starts_with("bus:") {
            Ok(id.to_owned())
        } else {
            Err(cx.err(
                Some(cx.key_line(line, "device")),
                format!("{field}.device"),
                format!("no device `{id}` is declared"),
            ))
        }
    };
    let anchor = |a: Option<String>| -> Result<Anchor, ScenarioError> {
        let Some(a) = a else { return Ok(Anchor::Start) };
        let bad = || {
            cx.err(Some(cx.key_line(line, "after")), format!("{field}.after"), format!("`{a}` is neither a step's label nor a condition (`port_temp_c >= 80`, `node_port_temp_c >= 65`, `node:over_temperature`, `smoke`, `leakage_ma >= 30`)"))
        };
        if labels.contains(a.as_str()) {
            return Ok(Anchor::Label(a));
        }
        if a == "smoke" {
            return Ok(Anchor::Smoke);
        }
        if let Some(code) = a.strip_prefix("node:") {
            return Ok(Anchor::NodeEvent(code.trim().to_owned()));
        }
        let (lhs, rhs) = a.split_once(">=").ok_or_else(bad)?;
        let v: f32 = rhs.trim().parse().map_err(|_| bad())?;
        match lhs.trim() {
            "port_temp_c" => Ok(Anchor::PortTempAtLeast(v)),
            "node_port_temp_c" => Ok(Anchor::NodePortTempAtLeast(v)),
            "leakage_ma" => Ok(Anchor::LeakageAtLeast(v)),
            _ => Err(bad()),
        }
    };
    let what = match kind {
        "alert" => {
            let r: RawAlert = cx.typed(table, line, &field)?;
            Expectation::Alert {
                device: device(&r.device)?,
                code: r.alert,
                port: r.port,
                after: anchor(r.after)?,
                within: dur("within", &r.within)?,
                inhibited_by: r.inhibited_by,
            }
        }
        "resolved" => {
            let r: RawResolved = cx.typed(table, line, &field)?;
            Expectation::Resolved {
                device: device(&r.device)?,
                code: r.resolved,
                after: anchor(r.after)?,
                within: dur("within", &r.within)?,
            }
        }
        "order" => {
            let r: RawOrder = cx.typed(table, line, &field)?;
            Expectation::Order {
                device: device(&r.device)?,
                code: r.order,
                contractor: r.contractor,
                after: anchor(r.after)?,
                within: dur("within", &r.within)?,
                respond: opt_dur("respond", r.respond)?,
                arrive: opt_dur("arrive", r.arrive)?,
                complete: opt_dur("complete", r.complete)?,
                escalated_to: r.escalated_to,
            }
        }
        "cut" => {
            let r: RawCut = cx.typed(table, line, &field)?;
            let port = match &r.cut {
                toml::Value::String(s) if s == "all" => None,
                toml::Value::Integer(p) => Some(
                    u8::try_from(*p)
                        .map_err(|_| cx.err(Some(cx.key_line(line, "cut")), format!("{field}.cut"), "a port number"))?,
                ),
                _ => {
                    return Err(cx.err(
                        Some(cx.key_line(line, "cut")),
                        format!("{field}.cut"),
                        "a port number, or \"all\"",
                    ));
                }
            };
            if let Some(u) = &r.until
                && !labels.contains(u.as_str())
            {
                return Err(cx.err(
                    Some(cx.key_line(line, "until")),
                    format!("{field}.until"),
                    format!("`{u}` is not a step's label"),
                ));
            }
            Expectation::Cut {
                device: device(&r.device)?,
                port,
                after: anchor(r.after)?,
                within: dur("within", &r.within)?,
                until: r.until,
            }
        }
        "no_alerts" | "no_notifications" => {
            let r: RawQuiet = cx.typed(table, line, &field)?;
            switch_on(cx, line, &field, kind, r.on)?;
            r.devices.iter().try_for_each(|d| device(d).map(drop))?;
            let (devices, except) = (r.devices, r.except);
            if kind == "no_alerts" {
                Expectation::NoAlerts { devices, except }
            } else {
                Expectation::NoNotifications { devices, except }
            }
        }
        "inhibited" => {
            let r: RawInhibited = cx.typed(table, line, &field)?;
            for d in &r.inhibited {
                device(d)?;
            }
            Expectation::Inhibited {
                devices: r.inhibited,
                by: r.by,
            }
        }
        "no_loss" => {
            let r: RawNoLoss = cx.typed(table, line, &field)?;
            switch_on(cx, line, &field, "no_loss", r.no_loss)?;
            Expectation::NoLoss
        }
        "ack" => {
            let r: RawAck = cx.typed(table, line, &field)?;
            Expectation::Ack {
                device: device(&r.device)?,
                id: r.ack,
                ok: r.ok,
                error: r.error,
                after: anchor(r.after)?,
                within: dur("within", &r.within)?,
            }
        }
        "duty" => {
            let r: RawDuty = cx.typed(table, line, &field)?;
            Expectation::Duty {
                device: device(&r.device)?,
                duty: r.duty,
                by: r.by,
                after: anchor(r.after)?,
                within: dur("within", &r.within)?,
            }
        }
        "command" => {
            let r: RawCommand = cx.typed(table, line, &field)?;
            if !COMMAND_STATUSES.contains(&r.status.as_str()) {
                return Err(cx.err(
                    Some(cx.key_line(line, "status")),
                    format!("{field}.status"),
                    format!(
                        "`{}` is not a command status ({})",
                        r.status,
                        COMMAND_STATUSES.join(", ")
                    ),
                ));
            }
            let by_op = !api_names.contains(r.command.as_str());
            if by_op && protocol::Op::from_name(&r.command).is_none() {
                return Err(cx.err(
                    Some(cx.key_line(line, "command")),
                    format!("{field}.command"),
                    format!("`{}` is neither an `api_command` step's name nor an op", r.command),
                ));
            }
            if by_op && r.device.is_none() {
                return Err(cx.err(
                    Some(line),
                    format!("{field}.device"),
                    "a command named by its op needs the `device` it was sent to",
                ));
            }
            let within = opt_dur("within", r.within)?;
            if within.is_none() && r.status != "sent" {
                return Err(cx.err(
                    Some(line),
                    format!("{field}.within"),
                    "say how long settling may take: `within = \"30s\"`",
                ));
            }
            Expectation::Command {
                device: r.device.as_deref().map(device).transpose()?,
                name: r.command,
                status: r.status,
                error: r.error,
                hold: r.hold,
                after: anchor(r.after)?,
                within,
            }
        }
        "powered" => {
            let r: RawPowered = cx.typed(table, line, &field)?;
            if let Some(u) = &r.until
                && !labels.contains(u.as_str())
            {
                return Err(cx.err(
                    Some(cx.key_line(line, "until")),
                    format!("{field}.until"),
                    format!("`{u}` is not a step's label"),
                ));
            }
            Expectation::Powered {
                device: device(&r.device)?,
                port: r.powered,
                after: anchor(r.after)?,
                until: r.until,
            }
        }
        "lost" => {
            let r: RawLost = cx.typed(table, line, &field)?;
            Expectation::Lost {
                device: device(&r.lost)?,
                at_least: r.at_least,
            }
        }
        _ => {
            let r: RawSkew = cx.typed(table, line, &field)?;
            Expectation::Skew {
                device: device(&r.skew)?,
                seconds: r.seconds,
                tolerance: r.tolerance,
            }
        }
    };
    Ok(Expect { what, line })
}

/// A flag kind of expectation (`no_loss = true`): `false` would read as
/// its opposite, which is not what it says.
fn switch_on(cx: &Ctx<'_>, line: usize, field: &str, key: &str, on: bool) -> Result<(), ScenarioError> {
    if on {
        Ok(())
    } else {
        Err(cx.err(
            Some(line),
            format!("{field}.{key}"),
            format!("write `{key} = true`, or leave it out"),
        ))
    }
}

/// `humantime` durations in serde, for the link actions' fields.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::Deserialize;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration: {e}")))
    }
}
