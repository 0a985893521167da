//! Commands to nodes (CONTRACT §9): the edge of the pure [`policy`] core,
//! where its decisions meet the store, the record chain, the device keys and
//! the broker.
//!
//! ```text
//! POST …/commands ─► api::commands ─► Control::Command ─┐
//! ack, event, birth ─► pipeline::handle ────────────────┼─► Commander ─► policy::Core
//! alert changes ─► pipeline::settle ────────────────────┤      │ Out
//! Control::Tick ────────────────────────────────────────┘      ▼
//!        ledger: `commands` rows, policy state, records ─(one commit)─► sign with the device's
//!        cmd_key, publish QoS 1 on fm/v1/{site}/{class}/{device}/cmd
//! ```
//!
//! A command is stored, with its `command_sent` record, before it is
//! published, as a work order is stored before its contractor is told: a
//! node never acts on a command the gateway could lose. The MAC is made at
//! publish time from the device's key in `device_credentials`; the key is
//! read there and never leaves this module (no record, log or answer holds
//! it). Every outcome (acked, refused, expired, a late ack) is a record too,
//! and counted in `fm_commands_total{op,status}`.

pub mod policy;

use std::collections::BTreeMap;

use protocol::message::{Cmd, CmdArgs, Op};
use protocol::{DeviceClass, Message, Named};
use records::NewRecord;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::metrics::{CommandLabel, Metrics};
use crate::store::credentials;
use crate::store::ledger::Ledger;
pub use policy::{Command, Device, Status};

/// `[commands]`: what the gateway commands on its own (docs/configuration.md).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// Cut every port of a bay whose `smoke` alert fires, unless its node
    /// reported that it cut them itself.
    pub cut_on_smoke: bool,
    /// Hold an elevator's doors open while its `ebike_in_car` alert fires.
    pub hold_doors_on_ebike: bool,
    /// When the fire pumps' weekly self-test is started.
    pub self_test: Option<SelfTestConfig>,
    /// Threshold overrides pushed to the nodes.
    pub thresholds: Vec<ThresholdConfig>,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            cut_on_smoke: true,
            hold_doors_on_ebike: false,
            self_test: None,
            thresholds: Vec::new(),
        }
    }
}

/// `[commands.self_test]`: a weekday and a time, China time.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SelfTestConfig {
    /// `monday` … `sunday` (or `mon` … `sun`).
    pub weekday: String,
    /// `HH:MM`, China time (UTC+8).
    pub time: String,
}

/// `[[commands.thresholds]]`: one node threshold for the devices matched.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// The compound (all if absent).
    #[serde(default)]
    pub site: Option<String>,
    /// The class.
    pub class: String,
    /// One device (all of the class if absent).
    #[serde(default)]
    pub device: Option<String>,
    /// The node's threshold name (docs/firmware.md).
    pub name: String,
    /// Its value.
    pub value: f64,
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl SelfTestConfig {
    /// The weekly moment.
    ///
    /// # Errors
    /// The field and what is wrong.
    pub fn weekly(&self) -> Result<policy::Weekly, (String, String)> {
        let day = self.weekday.trim().to_ascii_lowercase();
        let weekday = WEEKDAYS
            .iter()
            .position(|d| *d == day || (day.len() == 3 && d.starts_with(&day)))
            .ok_or_else(|| {
                (
                    "commands.self_test.weekday".to_owned(),
                    format!("`{}` is not a weekday (monday … sunday)", self.weekday),
                )
            })?;
        let bad = || {
            (
                "commands.self_test.time".to_owned(),
                format!("`{}` is not a time of day as HH:MM (China time)", self.time),
            )
        };
        let (h, m) = self.time.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        #[allow(clippy::cast_possible_truncation)]
        Ok(policy::Weekly {
            weekday: weekday as u8,
            minute: h * 60 + m,
        })
    }
}

impl CommandsConfig {
    /// The core's settings.
    ///
    /// # Errors
    /// The first problem ([`CommandsConfig::problems`] lists them all).
    pub fn settings(&self) -> Result<policy::Settings, (String, String)> {
        if let Some(p) = self.problems().into_iter().next() {
            return Err(p);
        }
        let mut thresholds = Vec::new();
        for t in &self.thresholds {
            if let Some(class) = DeviceClass::from_name(&t.class) {
                thresholds.push(policy::Threshold {
                    site: t.site.clone(),
                    class,
                    device: t.device.clone(),
                    name: t.name.clone(),
                    value: t.value,
                });
            }
        }
        Ok(policy::Settings {
            cut_on_smoke: self.cut_on_smoke,
            hold_doors_on_ebike: self.hold_doors_on_ebike,
            self_test: self.self_test.as_ref().map(SelfTestConfig::weekly).transpose()?,
            thresholds,
        })
    }

    /// Every problem: (field, message).
    #[must_use]
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(s) = &self.self_test
            && let Err(e) = s.weekly()
        {
            out.push(e);
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            let field = |f: &str| format!("commands.thresholds[{i}].{f}");
            if DeviceClass::from_name(&t.class).is_none() {
                out.push((
                    field("class"),
                    format!("`{}` is not elevator, firepump or charger", t.class),
                ));
            }
            if t.site.as_deref().is_some_and(|s| protocol::SiteId::new(s).is_err()) {
                out.push((field("site"), "is not a site id ([a-z0-9-]{1,32})".into()));
            }
            if t.device.as_deref().is_some_and(|d| protocol::DeviceId::new(d).is_err()) {
                out.push((field("device"), "is not a device id".into()));
            }
            if protocol::names::NameString::try_from(t.name.as_str()).is_err() || t.name.is_empty() {
                out.push((field("name"), "must be a threshold name of 1 to 32 bytes".into()));
            }
            if !t.value.is_finite() {
                out.push((field("value"), "must be a finite number".into()));
            }
        }
        out
    }
}

/// A command asked for over the API.
#[derive(Clone, Debug)]
pub struct Request {
    /// The compound.
    pub site: String,
    /// The device.
    pub device: String,
    /// What.
    pub op: Op,
    /// With what.
    pub args: CmdArgs,
    /// Who (the token's name).
    pub by: String,
}

/// Why a command was not sent.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No device of that name, provisioned or seen.
    #[error("no device {0}")]
    Unknown(String),
    /// The device has no key to sign with.
    #[error(
        "{0} has no credentials (never provisioned, or revoked): commands are signed with its key; provision it first (POST /api/v1/devices)"
    )]
    NoCredentials(String),
    /// The op is not one the class carries out.
    #[error("{op} is not a command for a {class}; a {class} takes {takes}")]
    NotForClass {
        /// The op.
        op: &'static str,
        /// The class.
        class: &'static str,
        /// What it takes.
        takes: String,
    },
    /// Taken, but the store failed: not sent.
    #[error("not stored: {0}")]
    NotStored(String),
}

/// The body of `POST /api/v1/devices/{site}/{device}/commands`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    op: String,
    #[serde(default)]
    args: Option<serde_json::Map<String, Value>>,
}

/// Reads and checks a command's body: a known op, and exactly the
/// arguments it takes, typed as the wire takes them.
///
/// # Errors
/// What is wrong, for people.
pub fn parse_body(bytes: &[u8]) -> Result<(Op, CmdArgs), String> {
    let body: Body = serde_json::from_slice(bytes).map_err(|e| format!("the body is not {{\"op\", \"args\"}}: {e}"))?;
    let op = Op::from_name(&body.op).ok_or_else(|| {
        let known: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
        format!("`{}` is not an op ({})", body.op, known.join(", "))
    })?;
    let map = body.args.unwrap_or_default();
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "port" | "name" | "value" | "hold"))
    {
        return Err(format!("`{k}` is not an argument of any op (port, name, value, hold)"));
    }
    let args: CmdArgs = serde_json::from_value(Value::Object(map)).map_err(|e| format!("args: {e}"))?;
    policy::check_args(op, &args)?;
    Ok((op, args))
}

/// Whether `op` is one a `class` node carries out.
///
/// # Errors
/// [`Refusal::NotForClass`].
pub fn check_class(class: DeviceClass, op: Op) -> Result<(), Refusal> {
    let ops = policy::ops_for(class);
    if ops.contains(&op) {
        return Ok(());
    }
    Err(Refusal::NotForClass {
        op: op.as_str(),
        class: class.as_str(),
        takes: ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", "),
    })
}

/// A command's arguments as JSON (only those given).
#[must_use]
pub fn args_json(a: &CmdArgs) -> Value {
    serde_json::to_value(a).unwrap_or_else(|_| json!({}))
}

/// A command as the API shows it.
#[must_use]
pub fn view(c: &Command) -> Value {
    json!({
        "id": c.id,
        "site": c.to.site,
        "class": c.to.class.as_str(),
        "device": c.to.device,
        "op": c.op.as_str(),
        "args": args_json(&c.args),
        "status": c.status.as_str(),
        "error": c.error,
        "by": c.by,
        "sent_at": c.sent_at,
        "expires_at": c.expires_at,
        "settled_at": c.settled_at,
    })
}

/// What waits for the pipeline's next commit: command rows (newest state
/// per id) and the policy's state.
#[derive(Debug, Default)]
pub struct Staged {
    rows: BTreeMap<String, Command>,
    state: BTreeMap<String, Option<String>>,
}

impl Staged {
    /// Whether nothing waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.state.is_empty()
    }
}

/// Writes what is staged, in the pipeline's transaction.
///
/// # Errors
/// SQLite's.
pub fn write(tx: &Transaction<'_>, s: &Staged) -> rusqlite::Result<()> {
    let mut put = tx.prepare_cached(
        "INSERT INTO commands (id, site, class, device, op, args, ctr, issuer, sent_at, expires_at, status, error, settled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, error = excluded.error, settled_at = excluded.settled_at",
    )?;
    for c in s.rows.values() {
        put.execute(params![
            c.id,
            c.to.site,
            c.to.class.as_str(),
            c.to.device,
            c.op.as_str(),
            args_json(&c.args).to_string(),
            i64::try_from(c.ctr).unwrap_or(i64::MAX),
            c.by,
            c.sent_at,
            c.expires_at,
            c.status.as_str(),
            c.error,
            c.settled_at,
        ])?;
    }
    let mut keep = tx.prepare_cached("INSERT OR REPLACE INTO command_policy (key, state) VALUES (?1, ?2)")?;
    let mut forget = tx.prepare_cached("DELETE FROM command_policy WHERE key = ?1")?;
    for (k, v) in &s.state {
        match v {
            Some(v) => keep.execute(params![k, v])?,
            None => forget.execute(params![k])?,
        };
    }
    Ok(())
}

const COLUMNS: &str = "id, site, class, device, op, args, ctr, issuer, sent_at, expires_at, status, error, settled_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Command>> {
    let (class, op, args, status): (String, String, String, String) = (r.get(2)?, r.get(4)?, r.get(5)?, r.get(10)?);
    let (Some(class), Some(op), Some(status)) = (
        DeviceClass::from_name(&class),
        Op::from_name(&op),
        Status::from_name(&status),
    ) else {
        // Written by a newer gateway (an op or class this one does not know).
        return Ok(None);
    };
    Ok(Some(Command {
        id: r.get(0)?,
        to: Device {
            site: r.get(1)?,
            class,
            device: r.get(3)?,
        },
        op,
        args: serde_json::from_str(&args).unwrap_or_default(),
        ctr: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        by: r.get(7)?,
        sent_at: r.get(8)?,
        expires_at: r.get(9)?,
        status,
        error: r.get(11)?,
        settled_at: r.get(12)?,
    }))
}

/// One command by id.
///
/// # Errors
/// SQLite's.
pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Command>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM commands WHERE id = ?1"))?
        .query_row(params![id], row)
        .optional()?
        .flatten())
}

/// What the core needs back at start: each device's last counter, the
/// commands still waiting, the policy's state.
///
/// # Errors
/// SQLite's.
pub fn load(conn: &Connection) -> rusqlite::Result<policy::Restored> {
    let mut r = policy::Restored::default();
    let mut q = conn.prepare("SELECT site, device, MAX(ctr) FROM commands GROUP BY site, device")?;
    for x in q.query_map([], |x| Ok(((x.get(0)?, x.get(1)?), x.get::<_, i64>(2)?)))? {
        let (k, ctr) = x?;
        r.counters.insert(k, u64::try_from(ctr).unwrap_or(0));
    }
    let mut q = conn.prepare(&format!("SELECT {COLUMNS} FROM commands WHERE status = 'sent'"))?;
    r.pending = q
        .query_map([], row)?
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    let mut q = conn.prepare("SELECT key, state FROM command_policy")?;
    for x in q.query_map([], |x| Ok((x.get(0)?, x.get(1)?)))? {
        let (k, v) = x?;
        r.state.insert(k, v);
    }
    Ok(r)
}

/// The live credential of `site`/`device`, if it has one.
fn live_key(conn: &Connection, site: &str, device: &str) -> Option<credentials::Credential> {
    match credentials::get(conn, site, device) {
        Ok(c) => c.filter(|c| c.revoked.is_none()),
        Err(e) => {
            tracing::warn!(site, device, error = %e, "cannot read a device's credential");
            None
        }
    }
}

/// The world as the core sees it from the pipeline: keys in the store,
/// ids from the OS's randomness.
struct Live<'a> {
    conn: &'a Connection,
    seq: &'a mut u64,
}

impl policy::Env for Live<'_> {
    fn new_id(&mut self) -> String {
        *self.seq += 1;
        // Unguessable ids; without randomness, unique ones all the same
        // (an id names a command, it grants nothing).
        crate::app::run::random_token().unwrap_or_else(|_| format!("c{}-{}", crate::app::run::now_ms(), self.seq))
    }

    fn can_command(&self, d: &Device) -> bool {
        live_key(self.conn, &d.site, &d.device).is_some_and(|c| c.identity.class == d.class.as_str())
    }

    fn firepumps(&self) -> Vec<Device> {
        match credentials::list(self.conn) {
            Ok(all) => all
                .into_iter()
                .filter(|c| c.revoked.is_none() && c.identity.class == DeviceClass::Firepump.as_str())
                .map(|c| Device {
                    site: c.identity.site,
                    class: DeviceClass::Firepump,
                    device: c.identity.device,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list device credentials for the self-test");
                Vec::new()
            }
        }
    }
}

/// The pipeline's side of commands: the core, and what waits to be sent
/// once stored.
pub struct Commander {
    core: policy::Core,
    client: Option<rumqttc::AsyncClient>,
    /// Issued, staged in the ledger; published after the commit.
    unsent: Vec<Command>,
    seq: u64,
}

impl std::fmt::Debug for Commander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commander")
            .field("pending", &self.core.pending().count())
            .field("unsent", &self.unsent.len())
            .finish_non_exhaustive()
    }
}

impl Commander {
    /// The commander of a starting gateway: settings from `[commands]`, the
    /// store's commands and policy state, and the MQTT client it publishes
    /// with (none: nothing is published, for tests of the core's edge).
    ///
    /// # Errors
    /// A configuration problem, or the store's.
    pub fn start(
        config: &CommandsConfig,
        conn: &Connection,
        client: Option<rumqttc::AsyncClient>,
        now: i64,
    ) -> anyhow::Result<Commander> {
        let settings = config.settings().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
        let restored = load(conn).map_err(|e| anyhow::anyhow!("reading the commands: {e}"))?;
        let core = policy::Core::new(settings, restored, now);
        if let Some(next) = core.next_self_test() {
            tracing::info!(next_ms = next, "weekly fire-pump self-test scheduled");
        }
        Ok(Commander {
            core,
            client,
            unsent: Vec::new(),
            seq: 0,
        })
    }

    /// A command asked for over the API: checked against the device's
    /// credential and class, issued, staged with its record. The caller
    /// commits, and [`Commander::release`] sends it.
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn request(
        &mut self,
        now: i64,
        conn: &Connection,
        known: bool,
        req: Request,
        ledger: &mut Ledger,
        m: &Metrics,
    ) -> Result<Command, Refusal> {
        let name = format!("{}/{}", req.site, req.device);
        let Some(cred) = live_key(conn, &req.site, &req.device) else {
            let provisioned = credentials::get(conn, &req.site, &req.device).ok().flatten().is_some();
            return Err(if known || provisioned {
                Refusal::NoCredentials(name)
            } else {
                Refusal::Unknown(name)
            });
        };
        let class = DeviceClass::from_name(&cred.identity.class).ok_or_else(|| Refusal::Unknown(name.clone()))?;
        check_class(class, req.op)?;
        let to = Device {
            site: req.site,
            class,
            device: req.device,
        };
        let mut out = Vec::new();
        let id = policy::Env::new_id(&mut Live {
            conn,
            seq: &mut self.seq,
        });
        let c = self.core.issue(now, id, to, req.op, req.args, &req.by, &mut out);
        self.apply(out, ledger, m);
        Ok(c)
    }

    /// A stored message of a node: its ack settles a command, its smoke
    /// event tells whether it cut its ports, its birth's `cfg` drives the
    /// threshold overrides.
    pub fn observe(
        &mut self,
        now: i64,
        conn: &Connection,
        incoming: &crate::ingest::Incoming,
        ledger: &mut Ledger,
        metrics: &Metrics,
    ) {
        let topic = &incoming.topic;
        let d = Device {
            site: topic.site.as_str().to_owned(),
            class: topic.class,
            device: topic.device.as_str().to_owned(),
        };
        let mut out = Vec::new();
        match &incoming.message {
            Message::Ack(a) => {
                let error = a.error.as_ref().map(|e| e.as_str().to_owned());
                if !self
                    .core
                    .ack(now, &d.site, &d.device, a.id.as_str(), a.ok, error, &mut out)
                {
                    tracing::debug!(id = %a.id, device = %d.device, "an ack for no command of this gateway");
                }
            }
            Message::Event(e) if !e.hist => {
                let cut = matches!(e.detail.get("cut_off"), Some(protocol::Scalar::Bool(true)));
                self.core.node_event(&d, e.code.as_str(), e.active, cut);
            }
            Message::Birth(b) => {
                let mut env = Live {
                    conn,
                    seq: &mut self.seq,
                };
                self.core.birth(now, &d, b.cfg.as_str(), &mut env, &mut out);
            }
            _ => return,
        }
        self.apply(out, ledger, metrics);
    }

    /// Alert changes of a step: the rules that answer them with commands.
    pub fn effects(
        &mut self,
        now: i64,
        conn: &Connection,
        effects: &[alerting::Effect],
        ledger: &mut Ledger,
        m: &Metrics,
    ) {
        let mut out = Vec::new();
        for e in effects {
            if let alerting::Effect::Alert(change) = e {
                let mut env = Live {
                    conn,
                    seq: &mut self.seq,
                };
                self.core.alert(now, change, &mut env, &mut out);
            }
        }
        self.apply(out, ledger, m);
    }

    /// Time passes: expiries and the weekly self-test.
    pub fn tick(&mut self, now: i64, conn: &Connection, ledger: &mut Ledger, m: &Metrics) {
        let mut out = Vec::new();
        let mut env = Live {
            conn,
            seq: &mut self.seq,
        };
        self.core.tick(now, &mut env, &mut out);
        self.apply(out, ledger, m);
    }

    /// The core's decisions into the ledger (rows, state, records) and the
    /// send queue; counted.
    fn apply(&mut self, out: Vec<policy::Out>, ledger: &mut Ledger, m: &Metrics) {
        use policy::Out;
        for o in out {
            match o {
                Out::Send(c) => {
                    count(m, &c);
                    ledger.record(record(&c, "command_sent", c.sent_at, None));
                    ledger.commands().rows.insert(c.id.clone(), c.clone());
                    self.unsent.push(c);
                }
                Out::Settled(c) => {
                    count(m, &c);
                    let kind = match c.status {
                        Status::Acked => "command_acked",
                        Status::Refused => "command_refused",
                        Status::Expired | Status::Sent => "command_expired",
                    };
                    ledger.record(record(&c, kind, c.settled_at.unwrap_or(c.sent_at), None));
                    ledger.commands().rows.insert(c.id.clone(), c);
                }
                Out::LateAck { command, at, ok, error } => {
                    tracing::warn!(id = %command.id, device = %command.to.device, ok, "an ack after the command expired");
                    let late = json!({ "ok": ok, "error": error });
                    ledger.record(record(&command, "command_late_ack", at, Some(late)));
                }
                Out::Keep { key, state } => {
                    ledger.commands().state.insert(key, state);
                }
                Out::Confirmed {
                    at,
                    to,
                    cfg,
                    thresholds,
                } => {
                    let list: Vec<Value> = thresholds.iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
                    ledger.record(NewRecord {
                        at,
                        kind: "thresholds_confirmed".into(),
                        site: to.site.clone(),
                        class: to.class.as_str().into(),
                        device: to.device.clone(),
                        subject: String::new(),
                        body: json!({ "cfg": cfg, "thresholds": list }).to_string(),
                    });
                }
            }
        }
    }

    /// After a commit: every command it stored and still waiting for its
    /// ack is signed with its device's key and published (QoS 1). One that
    /// cannot be (its device revoked meanwhile, the client's queue full)
    /// is logged and left to expire, which records it.
    pub fn release(&mut self, conn: &Connection, now: i64) {
        for c in std::mem::take(&mut self.unsent) {
            if !self.core.pending().any(|p| p.id == c.id) {
                continue;
            }
            let Some(client) = &self.client else { continue };
            let Some(cred) = live_key(conn, &c.to.site, &c.to.device) else {
                tracing::warn!(id = %c.id, device = %c.to.device, "no key to sign a command with: it will expire");
                continue;
            };
            match signed(&c, &cred.cmd_key, now) {
                Ok((topic, payload)) => {
                    if let Err(e) = client.try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload) {
                        tracing::warn!(id = %c.id, error = %e, "a command could not be handed to the broker: it will expire");
                    }
                }
                Err(e) => tracing::error!(id = %c.id, error = %e, "a command could not be encoded"),
            }
        }
    }
}

fn count(m: &Metrics, c: &Command) {
    m.commands
        .get_or_create(&CommandLabel {
            op: c.op.as_str().into(),
            status: c.status.as_str().into(),
        })
        .inc();
}

fn record(c: &Command, kind: &str, at: i64, extra: Option<Value>) -> NewRecord {
    let mut body = json!({
        "id": c.id,
        "op": c.op.as_str(),
        "args": args_json(&c.args),
        "by": c.by,
        "status": c.status.as_str(),
    });
    if kind == "command_sent" {
        body["ctr"] = json!(c.ctr);
        body["expires_at"] = json!(c.expires_at);
    }
    if let Some(e) = &c.error {
        body["error"] = json!(e);
    }
    if let Some(x) = extra {
        body["ack"] = x;
    }
    NewRecord {
        at,
        kind: kind.into(),
        site: c.to.site.clone(),
        class: c.to.class.as_str().into(),
        device: c.to.device.clone(),
        subject: format!("command:{}", c.id),
        body: body.to_string(),
    }
}

/// The signed `cmd` of `c`: its topic and JSON payload.
///
/// # Errors
/// A field the wire refuses (an id too long, …).
pub fn signed(c: &Command, key: &[u8; 32], now: i64) -> Result<(String, Vec<u8>), String> {
    let topic = protocol::Topic::new(
        protocol::SiteId::new(&c.to.site).map_err(|e| e.to_string())?,
        c.to.class,
        protocol::DeviceId::new(&c.to.device).map_err(|e| e.to_string())?,
        protocol::Kind::Cmd,
    );
    #[allow(clippy::cast_possible_truncation)]
    let mut cmd = Cmd {
        v: protocol::V1,
        // The wire's per-message counter: the low bits of the signed one.
        seq: c.ctr as u32,
        ts: protocol::Timestamp::from_millis(now),
        hist: false,
        bdseq: None,
        id: c
            .id
            .as_str()
            .try_into()
            .map_err(|_| format!("id `{}` is too long", c.id))?,
        op: Named::Known(c.op),
        args: c.args.clone(),
        ctr: None,
        exp: None,
        mac: None,
    };
    let key = protocol::CommandKey::from_bytes(*key);
    protocol::cmdauth::sign(
        &key,
        &protocol::cmdauth::Recipient::of(&topic),
        &mut cmd,
        c.ctr,
        protocol::Timestamp::from_millis(c.expires_at),
    );
    let payload = protocol::encode_to_vec(&Message::Cmd(cmd), protocol::Format::Json).map_err(|e| e.to_string())?;
    Ok((topic.to_string(), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_a_known_op_with_exactly_its_typed_args() {
        let ok = |s: &str| parse_body(s.as_bytes()).unwrap();
        let err = |s: &str| parse_body(s.as_bytes()).unwrap_err();
        assert_eq!(ok(r#"{"op":"cut_off","args":{"port":3}}"#).1.port, Some(3));
        assert_eq!(ok(r#"{"op":"cut_off"}"#).0, Op::CutOff);
        assert_eq!(ok(r#"{"op":"hold_doors","args":{"hold":true}}"#).1.hold, Some(true));
        assert!(err(r#"{"op":"explode"}"#).contains("is not an op"));
        assert!(err(r#"{"op":"cut_off","args":{"port":-1}}"#).starts_with("args:"));
        assert!(err(r#"{"op":"cut_off","args":{"bay":1}}"#).contains("`bay`"));
        assert!(err(r#"{"op":"self_test","args":{"port":1}}"#).contains("not an argument of self_test"));
        assert!(err(r#"{"op":"set_threshold","args":{"name":"over_temp_c"}}"#).contains("needs `value`"));
        assert!(err(r#"{"op":"cut_off","extra":1}"#).contains("unknown field"));
        assert!(err("").contains("the body"));
    }

    #[test]
    fn an_op_is_for_its_class() {
        assert!(check_class(DeviceClass::Charger, Op::CutOff).is_ok());
        let e = check_class(DeviceClass::Firepump, Op::CutOff).unwrap_err().to_string();
        assert_eq!(
            e,
            "cut_off is not a command for a firepump; a firepump takes self_test, set_threshold"
        );
    }

    #[test]
    fn the_weekday_and_time_are_read_in_china_time() {
        let w = |d: &str, t: &str| {
            SelfTestConfig {
                weekday: d.into(),
                time: t.into(),
            }
            .weekly()
        };
        assert_eq!(
            w("Monday", "09:30").unwrap(),
            policy::Weekly {
                weekday: 0,
                minute: 570
            }
        );
        assert_eq!(
            w("sun", "23:59").unwrap(),
            policy::Weekly {
                weekday: 6,
                minute: 1439
            }
        );
        assert_eq!(w("someday", "09:30").unwrap_err().0, "commands.self_test.weekday");
        assert_eq!(w("monday", "24:00").unwrap_err().0, "commands.self_test.time");
        assert_eq!(w("monday", "9").unwrap_err().0, "commands.self_test.time");
    }

    #[test]
    fn a_signed_command_verifies_with_the_devices_key_and_no_other() {
        let c = Command {
            id: "c1".into(),
            to: Device {
                site: "lakeside".into(),
                class: DeviceClass::Charger,
                device: "BAY-1".into(),
            },
            op: Op::CutOff,
            args: CmdArgs {
                port: Some(2),
                ..CmdArgs::default()
            },
            ctr: 7,
            by: "zhang".into(),
            sent_at: 1000,
            expires_at: 31_000,
            status: Status::Sent,
            error: None,
            settled_at: None,
        };
        let (topic, payload) = signed(&c, &[9; 32], 1000).unwrap();
        assert_eq!(topic, "fm/v1/lakeside/charger/BAY-1/cmd");
        let t = protocol::Topic::parse(&topic).unwrap();
        let Message::Cmd(cmd) = protocol::decode(protocol::Kind::Cmd, &payload).unwrap() else {
            panic!("not a cmd")
        };
        let to = protocol::cmdauth::Recipient::of(&t);
        assert_eq!(
            (cmd.ctr, cmd.exp.map(protocol::Timestamp::as_millis)),
            (Some(7), Some(31_000))
        );
        assert!(protocol::cmdauth::verify(&protocol::CommandKey::from_bytes([9; 32]), &to, &cmd).is_ok());
        assert!(protocol::cmdauth::verify(&protocol::CommandKey::from_bytes([8; 32]), &to, &cmd).is_err());
        let text = String::from_utf8(payload).unwrap();
        assert!(!text.contains(&hex::encode([9u8; 32])), "the key is never on the wire");
    }
}
