//! The decisions about commands to nodes, pure: which command goes to which
//! node and when, its counter and expiry, and what its outcome is. Fed
//! requests, acks, alert changes, node events, births and the clock; it
//! answers with [`Out`]s the edge ([`super`]) stores, records and sends. No
//! I/O, no wall clock, no randomness (ids and what the store knows of keys
//! come through [`Env`]), so every rule is tested here in microseconds.
//!
//! ```text
//! API request ─┐                                   ┌─► Send (store, record, then sign and publish)
//! alert change ─┤                                   ├─► Settled (acked, refused, expired: store, record)
//! node event ───┼─► Core: pending commands, rules ──┼─► LateAck (record)
//! birth (cfg) ──┤    counters, schedule, syncs      ├─► Keep (policy state to store)
//! ack, tick ────┘                                   └─► Confirmed (thresholds in place: record)
//! ```
//!
//! The rules (docs/integrations.md, "Commands to nodes"):
//! - a charger's `smoke` alert cuts every port of the bay (`cut_off`, no
//!   port), unless the node's own `smoke` event said it cut them already;
//! - the fire pumps' weekly self-test is started at a configured weekday and
//!   time, China time (its outcome, the node's `self_test` event, fulfils
//!   the duty at the dispatch desk as before);
//! - an `ebike_in_car` alert holds the car's doors open (`hold_doors`,
//!   `hold: true`) until it resolves (`hold: false`), when configured;
//! - configured threshold overrides are pushed (`set_threshold`) at a birth
//!   whose `cfg` is not the one confirmed after the last push; the first
//!   birth after every override was acked, with a `cfg` other than the one
//!   before the push, confirms them.

use std::collections::{BTreeMap, BTreeSet};

use protocol::DeviceClass;
use protocol::message::{CmdArgs, Op};
use serde::{Deserialize, Serialize};

/// How long a command lives: signed to expire this long after it is sent,
/// and judged expired on the gateway's clock when no ack came by then
/// (CONTRACT §9).
pub const ACK_TIMEOUT_MS: i64 = 30_000;

/// How late the weekly self-test may still be started after its time (the
/// gateway was down then): later than this it waits for the next week, as a
/// pump starting hours after its announced time would surprise people on site.
pub const SELF_TEST_CATCH_UP_MS: i64 = 3_600_000;

/// How long an expired command is remembered for a late ack's record.
pub const LATE_ACK_MS: i64 = 3_600_000;

/// The largest counter a command may carry: 2^53 − 1, the largest integer
/// every JSON reader (JavaScript's numbers, doubles) reads exactly.
pub const MAX_CTR: u64 = (1 << 53) - 1;

const DAY_MS: i64 = 86_400_000;
/// China Standard Time, UTC+8 all year (no daylight saving since 1991).
const CHINA_MS: i64 = 8 * 3_600_000;

/// A device commands go to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Device {
    /// The compound.
    pub site: String,
    /// The class.
    pub class: DeviceClass,
    /// The device id.
    pub device: String,
}

impl Device {
    fn key(&self) -> (String, String) {
        (self.site.clone(), self.device.clone())
    }

    fn state_key(&self, what: &str) -> String {
        format!("{what}/{}/{}", self.site, self.device)
    }
}

/// Where a command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Published, no ack yet.
    Sent,
    /// The node did it (`ok: true`).
    Acked,
    /// The node refused it (`ok: false`, with its `error`).
    Refused,
    /// No ack within [`ACK_TIMEOUT_MS`] on the gateway's clock.
    Expired,
}

impl Status {
    /// Every status, as the API names them.
    pub const ALL: [Status; 4] = [Status::Sent, Status::Acked, Status::Refused, Status::Expired];

    /// The API's and the store's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Acked => "acked",
            Status::Refused => "refused",
            Status::Expired => "expired",
        }
    }

    /// The status of a name.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One command and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Its id, echoed by the node's ack.
    pub id: String,
    /// To whom.
    pub to: Device,
    /// What.
    pub op: Op,
    /// With what.
    pub args: CmdArgs,
    /// The device's counter it is signed with.
    pub ctr: u64,
    /// Who issued it: a token's name, or `rule:smoke`, `rule:ebike_in_car`,
    /// `rule:thresholds`, `schedule:self_test`.
    pub by: String,
    /// Sent at (gateway ms).
    pub sent_at: i64,
    /// Signed to expire at; judged expired then without an ack.
    pub expires_at: i64,
    /// Where it stands.
    pub status: Status,
    /// The node's reason for a refusal.
    pub error: Option<String>,
    /// When its outcome came (ms).
    pub settled_at: Option<i64>,
}

/// What the core decided; the edge stores, records and sends it.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    /// A new command: store it with its record, then sign and publish it.
    Send(Command),
    /// A command's outcome (acked, refused or expired): store and record it.
    Settled(Command),
    /// An ack for a command already expired: recorded, its status stays.
    LateAck {
        /// The command.
        command: Command,
        /// When the ack came.
        at: i64,
        /// What the node said.
        ok: bool,
        /// Why not.
        error: Option<String>,
    },
    /// Policy state to keep across restarts (`None`: forget it).
    Keep {
        /// Its key.
        key: String,
        /// Its JSON text.
        state: Option<String>,
    },
    /// A device's threshold overrides are confirmed in place: its ack came
    /// and its next birth shows a changed `cfg`.
    Confirmed {
        /// When.
        at: i64,
        /// The device.
        to: Device,
        /// Its `cfg` now.
        cfg: String,
        /// The overrides, name and value.
        thresholds: Vec<(String, f64)>,
    },
}

/// What the core asks of the world: fresh ids, and which devices have a
/// key to sign with.
pub trait Env {
    /// A new, unique command id (`[A-Za-z0-9._:-]`, at most 36 bytes).
    fn new_id(&mut self) -> String;
    /// Whether commands can be signed for `d` (it is provisioned and not revoked).
    fn can_command(&self, d: &Device) -> bool;
    /// The fire pumps commands can be signed for.
    fn firepumps(&self) -> Vec<Device>;
}

/// A weekly moment in China time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weekly {
    /// 0 Monday … 6 Sunday.
    pub weekday: u8,
    /// Minutes after midnight.
    pub minute: u32,
}

impl Weekly {
    /// The first such moment strictly after `t` (ms since the epoch).
    #[must_use]
    pub fn next_after(&self, t: i64) -> i64 {
        let local = t + CHINA_MS;
        let day = local.div_euclid(DAY_MS);
        // 1970-01-01 was a Thursday (3 with Monday 0).
        let weekday = (day + 3).rem_euclid(7);
        let offset = i64::from(self.minute) * 60_000;
        let mut days = (i64::from(self.weekday) - weekday).rem_euclid(7);
        loop {
            let at = (day + days) * DAY_MS + offset - CHINA_MS;
            if at > t {
                return at;
            }
            days += 7;
        }
    }
}

/// A threshold override for the nodes a site, class and device match.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The compound (every one if absent).
    pub site: Option<String>,
    /// The class.
    pub class: DeviceClass,
    /// The device (every one of the class if absent).
    pub device: Option<String>,
    /// The node's threshold name (`over_temp_c`).
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// The rules' settings (`[commands]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// Cut a smoking bay's ports unless its node did.
    pub cut_on_smoke: bool,
    /// Hold a car's doors open while an e-bike is in it.
    pub hold_doors_on_ebike: bool,
    /// When the fire pumps' weekly self-test is started.
    pub self_test: Option<Weekly>,
    /// Threshold overrides pushed to the nodes.
    pub thresholds: Vec<Threshold>,
}

impl Settings {
    /// The overrides for `d`: per name, the most specific match (a device
    /// over a site over all), the later of equals.
    #[must_use]
    pub fn thresholds_for(&self, d: &Device) -> Vec<(String, f64)> {
        let mut best: BTreeMap<&str, (u8, f64)> = BTreeMap::new();
        for t in &self.thresholds {
            if t.class != d.class
                || t.site.as_ref().is_some_and(|s| *s != d.site)
                || t.device.as_ref().is_some_and(|x| *x != d.device)
            {
                continue;
            }
            let rank = u8::from(t.site.is_some()) + 2 * u8::from(t.device.is_some());
            match best.get(t.name.as_str()) {
                Some((r, _)) if *r > rank => {}
                _ => {
                    best.insert(&t.name, (rank, t.value));
                }
            }
        }
        best.into_iter().map(|(n, (_, v))| (n.to_owned(), v)).collect()
    }
}

/// Which ops a class's node carries out: chargers cut off and clear ports,
/// fire pumps self-test, elevators hold their doors; every class takes
/// thresholds.
#[must_use]
pub fn ops_for(class: DeviceClass) -> &'static [Op] {
    match class {
        DeviceClass::Charger => &[Op::CutOff, Op::Clear, Op::SetThreshold],
        DeviceClass::Firepump => &[Op::SelfTest, Op::SetThreshold],
        DeviceClass::Elevator => &[Op::HoldDoors, Op::SetThreshold],
    }
}

/// Checks `args` against `op`: the arguments it takes and no others
/// (`port` for cut-off and clear; `name` and `value` for thresholds;
/// `hold` for the doors).
///
/// # Errors
/// What is wrong, for people.
pub fn check_args(op: Op, args: &CmdArgs) -> Result<(), String> {
    let given = [
        ("port", args.port.is_some()),
        ("name", args.name.is_some()),
        ("value", args.value.is_some()),
        ("hold", args.hold.is_some()),
    ];
    let (takes, needs): (&[&str], &[&str]) = match op {
        Op::CutOff | Op::Clear => (&["port"], &[]),
        Op::SelfTest => (&[], &[]),
        Op::SetThreshold => (&["name", "value"], &["name", "value"]),
        Op::HoldDoors => (&["hold"], &["hold"]),
    };
    for (name, present) in given {
        if present && !takes.contains(&name) {
            return Err(format!("`{name}` is not an argument of {}", op.as_str()));
        }
    }
    for name in needs {
        if !given.iter().any(|(n, p)| n == name && *p) {
            return Err(format!("{} needs `{name}`", op.as_str()));
        }
    }
    if args.port == Some(0) {
        return Err("`port` is 1-based; 0 is not a port".into());
    }
    if args.value.is_some_and(|v| !v.is_finite()) {
        return Err("`value` must be a finite number".into());
    }
    Ok(())
}

/// Where a device's threshold overrides stand, kept across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sync {
    /// The overrides last pushed (`name=value;…`): a change in the
    /// configuration pushes again.
    pub pushed: String,
    /// The `cfg` of the birth that started the push.
    pub before: String,
    /// Ids of the push's commands without an ack yet (empty once all came).
    #[serde(default)]
    pub waiting: BTreeSet<String>,
    /// Every command of the push was acked.
    #[serde(default)]
    pub acked: bool,
    /// A command of the push was refused or expired: the next birth pushes again.
    #[serde(default)]
    pub failed: bool,
    /// The `cfg` the overrides were confirmed with.
    #[serde(default)]
    pub confirmed: Option<String>,
}

/// The weekly self-test's memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct SelfTestState {
    last: i64,
}

/// What the store gives back at start.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// The last counter of each device, by (site, device).
    pub counters: BTreeMap<(String, String), u64>,
    /// Commands still `sent`.
    pub pending: Vec<Command>,
    /// The policy's kept state, by key.
    pub state: BTreeMap<String, String>,
}

/// The core: commands in flight, counters, and the rules' state.
#[derive(Debug)]
pub struct Core {
    settings: Settings,
    counters: BTreeMap<(String, String), u64>,
    pending: BTreeMap<String, Command>,
    /// Recently expired, for a late ack's record.
    expired: BTreeMap<String, Command>,
    /// Bays whose node reported its own smoke cut-off.
    node_cut: BTreeSet<(String, String)>,
    /// Cars whose doors the gateway holds.
    holds: BTreeSet<(String, String)>,
    syncs: BTreeMap<(String, String), Sync>,
    next_self_test: Option<i64>,
}

fn fingerprint(t: &[(String, f64)]) -> String {
    t.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(";")
}

impl Core {
    /// A core with `settings`, restored from what the store kept, at `now`.
    #[must_use]
    pub fn new(settings: Settings, restored: Restored, now: i64) -> Core {
        let mut holds = BTreeSet::new();
        let mut syncs = BTreeMap::new();
        let mut last_self_test = None;
        for (key, state) in &restored.state {
            let mut parts = key.splitn(3, '/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("hold"), Some(site), Some(device)) => {
                    holds.insert((site.to_owned(), device.to_owned()));
                }
                (Some("thresholds"), Some(site), Some(device)) => {
                    if let Ok(s) = serde_json::from_str::<Sync>(state) {
                        syncs.insert((site.to_owned(), device.to_owned()), s);
                    }
                }
                (Some("self_test"), None, None) => {
                    last_self_test = serde_json::from_str::<SelfTestState>(state).ok().map(|s| s.last);
                }
                _ => {}
            }
        }
        let next_self_test = settings.self_test.map(|w| match last_self_test {
            // Never run: the first is the next one to come.
            None => w.next_after(now),
            Some(last) => {
                let next = w.next_after(last);
                if next < now - SELF_TEST_CATCH_UP_MS {
                    w.next_after(now)
                } else {
                    next
                }
            }
        });
        Core {
            settings,
            counters: restored.counters,
            pending: restored.pending.into_iter().map(|c| (c.id.clone(), c)).collect(),
            expired: BTreeMap::new(),
            node_cut: BTreeSet::new(),
            holds,
            syncs,
            next_self_test,
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// When the weekly self-test is next started, if it is configured.
    #[must_use]
    pub fn next_self_test(&self) -> Option<i64> {
        self.next_self_test
    }

    /// Commands waiting for their ack.
    pub fn pending(&self) -> impl Iterator<Item = &Command> {
        self.pending.values()
    }

    /// Issues a command (already checked: the op is the class's, the args
    /// the op's, the device has a key): its counter is above every one the
    /// device was sent before and at least `now` (so a store restored from
    /// an old backup still counts up), its expiry [`ACK_TIMEOUT_MS`] ahead.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &mut self,
        now: i64,
        id: String,
        to: Device,
        op: Op,
        args: CmdArgs,
        by: &str,
        out: &mut Vec<Out>,
    ) -> Command {
        let last = self.counters.get(&to.key()).copied().unwrap_or(0);
        let floor = u64::try_from(now).unwrap_or(0);
        let ctr = last.saturating_add(1).max(floor).min(MAX_CTR);
        self.counters.insert(to.key(), ctr);
        let c = Command {
            id,
            to,
            op,
            args,
            ctr,
            by: by.to_owned(),
            sent_at: now,
            expires_at: now + ACK_TIMEOUT_MS,
            status: Status::Sent,
            error: None,
            settled_at: None,
        };
        self.pending.insert(c.id.clone(), c.clone());
        out.push(Out::Send(c.clone()));
        c
    }

    /// A node's ack, from `site`/`device` (the topic it came on): it settles
    /// the command of that id sent to that device, if one waits; an ack
    /// after the expiry is recorded as late. Whether it matched a command.
    #[allow(clippy::too_many_arguments)]
    pub fn ack(
        &mut self,
        now: i64,
        site: &str,
        device: &str,
        id: &str,
        ok: bool,
        error: Option<String>,
        out: &mut Vec<Out>,
    ) -> bool {
        let mine = |c: &Command| c.to.site == site && c.to.device == device;
        if self.pending.get(id).is_some_and(|c| mine(c) && now >= c.expires_at) {
            self.expire(now, id, out);
        }
        if let Some(c) = self.pending.get(id).filter(|c| mine(c)).cloned() {
            self.pending.remove(id);
            let c = Command {
                status: if ok { Status::Acked } else { Status::Refused },
                error: if ok {
                    None
                } else {
                    error.or_else(|| Some("refused".into()))
                },
                settled_at: Some(now),
                ..c
            };
            self.settled(&c, out);
            out.push(Out::Settled(c));
            return true;
        }
        if let Some(c) = self.expired.get(id).filter(|c| mine(c)) {
            out.push(Out::LateAck {
                command: c.clone(),
                at: now,
                ok,
                error,
            });
            return true;
        }
        false
    }

    fn expire(&mut self, now: i64, id: &str, out: &mut Vec<Out>) {
        let Some(c) = self.pending.remove(id) else { return };
        let c = Command {
            status: Status::Expired,
            error: Some("no ack within 30 s".into()),
            settled_at: Some(now),
            ..c
        };
        self.settled(&c, out);
        self.expired.insert(c.id.clone(), c.clone());
        out.push(Out::Settled(c));
    }

    /// What a command's outcome means for the threshold syncs.
    fn settled(&mut self, c: &Command, out: &mut Vec<Out>) {
        if c.op != Op::SetThreshold {
            return;
        }
        let key = c.to.key();
        let Some(s) = self.syncs.get_mut(&key) else { return };
        if !s.waiting.remove(&c.id) {
            return;
        }
        if c.status == Status::Acked {
            s.acked = s.waiting.is_empty() && !s.failed;
        } else {
            s.failed = true;
            s.acked = false;
        }
        let state = serde_json::to_string(&*s).ok();
        out.push(Out::Keep {
            key: c.to.state_key("thresholds"),
            state,
        });
    }

    /// Lets time pass: commands without an ack by their expiry expire, and
    /// the weekly self-test starts when its time has come.
    pub fn tick(&mut self, now: i64, env: &mut dyn Env, out: &mut Vec<Out>) {
        let due: Vec<String> = self
            .pending
            .values()
            .filter(|c| now >= c.expires_at)
            .map(|c| c.id.clone())
            .collect();
        for id in due {
            self.expire(now, &id, out);
        }
        self.expired.retain(|_, c| c.expires_at + LATE_ACK_MS > now);
        if let (Some(next), Some(w)) = (self.next_self_test, self.settings.self_test)
            && now >= next
        {
            for pump in env.firepumps() {
                let id = env.new_id();
                self.issue(
                    now,
                    id,
                    pump,
                    Op::SelfTest,
                    CmdArgs::default(),
                    "schedule:self_test",
                    out,
                );
            }
            self.next_self_test = Some(w.next_after(now));
            out.push(Out::Keep {
                key: "self_test".into(),
                state: serde_json::to_string(&SelfTestState { last: now }).ok(),
            });
        }
    }

    /// A node's own event: a bay that says it cut its ports for smoke needs
    /// no cut-off from the gateway.
    pub fn node_event(&mut self, d: &Device, code: &str, active: bool, cut_off: bool) {
        if d.class == DeviceClass::Charger && code == "smoke" {
            if active && cut_off {
                self.node_cut.insert(d.key());
            } else if !active {
                self.node_cut.remove(&d.key());
            }
        }
    }

    /// An alert changed: smoke in a bay cuts it; an e-bike in a car holds
    /// its doors until the alert resolves.
    pub fn alert(&mut self, now: i64, change: &alerting::AlertChange, env: &mut dyn Env, out: &mut Vec<Out>) {
        use alerting::Change;
        let a = &change.alert;
        let Some(class) = DeviceClass::from_name(&a.class) else {
            return;
        };
        let d = Device {
            site: a.site.clone(),
            class,
            device: a.device.clone(),
        };
        match (change.change, class, a.code.as_str()) {
            (Change::Fired, DeviceClass::Charger, "smoke")
                if self.settings.cut_on_smoke && !self.node_cut.contains(&d.key()) && env.can_command(&d) =>
            {
                let id = env.new_id();
                self.issue(now, id, d, Op::CutOff, CmdArgs::default(), "rule:smoke", out);
            }
            (Change::Resolved | Change::Cancelled, DeviceClass::Charger, "smoke") => {
                self.node_cut.remove(&d.key());
            }
            (Change::Fired, DeviceClass::Elevator, "ebike_in_car")
                if self.settings.hold_doors_on_ebike
                    && !a.maintenance
                    && !self.holds.contains(&d.key())
                    && env.can_command(&d) =>
            {
                self.hold(now, d, true, env, out);
            }
            (Change::Resolved | Change::Cancelled, DeviceClass::Elevator, "ebike_in_car")
                if self.holds.contains(&d.key()) =>
            {
                self.hold(now, d, false, env, out);
            }
            _ => {}
        }
    }

    fn hold(&mut self, now: i64, d: Device, hold: bool, env: &mut dyn Env, out: &mut Vec<Out>) {
        let key = d.state_key("hold");
        if hold {
            self.holds.insert(d.key());
        } else {
            self.holds.remove(&d.key());
        }
        let args = CmdArgs {
            hold: Some(hold),
            ..CmdArgs::default()
        };
        let id = env.new_id();
        self.issue(now, id, d, Op::HoldDoors, args, "rule:ebike_in_car", out);
        out.push(Out::Keep {
            key,
            state: hold.then(|| "{}".to_owned()),
        });
    }

    /// A node's birth with its `cfg`: its threshold overrides are pushed
    /// unless they are confirmed with this `cfg`; the first birth after a
    /// push whose every command was acked confirms them, if its `cfg`
    /// changed from the one before the push.
    pub fn birth(&mut self, now: i64, d: &Device, cfg: &str, env: &mut dyn Env, out: &mut Vec<Out>) {
        let wanted = self.settings.thresholds_for(d);
        let key = d.key();
        if wanted.is_empty() {
            if self.syncs.remove(&key).is_some() {
                out.push(Out::Keep {
                    key: d.state_key("thresholds"),
                    state: None,
                });
            }
            return;
        }
        let fp = fingerprint(&wanted);
        if let Some(s) = self.syncs.get_mut(&key)
            && s.pushed == fp
        {
            if s.confirmed.as_deref() == Some(cfg) {
                return;
            }
            if s.acked && s.confirmed.is_none() && s.before != cfg {
                s.confirmed = Some(cfg.to_owned());
                let state = serde_json::to_string(&*s).ok();
                out.push(Out::Keep {
                    key: d.state_key("thresholds"),
                    state,
                });
                out.push(Out::Confirmed {
                    at: now,
                    to: d.clone(),
                    cfg: cfg.to_owned(),
                    thresholds: wanted,
                });
                return;
            }
        }
        if !env.can_command(d) {
            return;
        }
        let mut sync = Sync {
            pushed: fp,
            before: cfg.to_owned(),
            ..Sync::default()
        };
        for (name, value) in wanted {
            let Ok(name) = protocol::names::NameString::try_from(name.as_str()) else {
                continue;
            };
            let args = CmdArgs {
                name: Some(name),
                value: Some(value),
                ..CmdArgs::default()
            };
            let id = env.new_id();
            let c = self.issue(now, id, d.clone(), Op::SetThreshold, args, "rule:thresholds", out);
            sync.waiting.insert(c.id);
        }
        out.push(Out::Keep {
            key: d.state_key("thresholds"),
            state: serde_json::to_string(&sync).ok(),
        });
        self.syncs.insert(key, sync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T08:00:00+08:00, a Tuesday.
    const T0: i64 = 1_796_083_200_000;

    struct World {
        n: u32,
        keys: Vec<Device>,
    }

    impl Env for World {
        fn new_id(&mut self) -> String {
            self.n += 1;
            format!("c{}", self.n)
        }
        fn can_command(&self, d: &Device) -> bool {
            self.keys.contains(d)
        }
        fn firepumps(&self) -> Vec<Device> {
            self.keys
                .iter()
                .filter(|d| d.class == DeviceClass::Firepump)
                .cloned()
                .collect()
        }
    }

    fn dev(class: DeviceClass, id: &str) -> Device {
        Device {
            site: "lakeside".into(),
            class,
            device: id.into(),
        }
    }

    fn world() -> World {
        World {
            n: 0,
            keys: vec![
                dev(DeviceClass::Charger, "BAY-1"),
                dev(DeviceClass::Firepump, "PUMP-1"),
                dev(DeviceClass::Firepump, "PUMP-2"),
                dev(DeviceClass::Elevator, "EL-1"),
            ],
        }
    }

    fn core(settings: Settings) -> Core {
        Core::new(settings, Restored::default(), T0)
    }

    fn sent(out: &[Out]) -> Vec<&Command> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn settled(out: &[Out]) -> Vec<&Command> {
        out.iter()
            .filter_map(|o| match o {
                Out::Settled(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn change(change: alerting::Change, class: &str, device: &str, code: &str) -> alerting::AlertChange {
        alerting::AlertChange {
            change,
            alert: alerting::AlertView {
                id: 1,
                site: "lakeside".into(),
                class: class.into(),
                device: device.into(),
                code: code.into(),
                port: None,
                severity: protocol::Severity::Critical,
                state: alerting::State::Firing,
                since: T0,
                fired_at: Some(T0),
                acked_at: None,
                acked_by: None,
                resolved_at: None,
                flapping: false,
                data: alerting::DataState::Fresh,
                inhibited_by: None,
                maintenance: false,
                sources: vec!["node".into()],
                building: None,
                evidence: Vec::new(),
                label_zh: std::borrow::Cow::Borrowed(""),
            },
        }
    }

    #[test]
    fn a_command_is_acked_refused_or_expires_on_the_gateways_clock() {
        let mut c = core(Settings::default());
        let mut out = Vec::new();
        let bay = dev(DeviceClass::Charger, "BAY-1");
        let args = CmdArgs {
            port: Some(3),
            ..CmdArgs::default()
        };
        let a = c.issue(T0, "a".into(), bay.clone(), Op::CutOff, args.clone(), "zhang", &mut out);
        assert_eq!((a.status, a.expires_at, a.ctr), (Status::Sent, T0 + 30_000, T0 as u64));
        let b = c.issue(T0, "b".into(), bay.clone(), Op::Clear, args.clone(), "zhang", &mut out);
        assert_eq!(b.ctr, a.ctr + 1, "strictly increasing within one millisecond");
        let third = c.issue(T0, "x".into(), bay.clone(), Op::Clear, args, "zhang", &mut out);
        out.clear();

        // Another device's ack for the same id settles nothing.
        assert!(!c.ack(T0 + 10, "lakeside", "BAY-2", "a", true, None, &mut out));
        assert!(c.ack(T0 + 10, "lakeside", "BAY-1", "a", true, None, &mut out));
        assert!(c.ack(
            T0 + 20,
            "lakeside",
            "BAY-1",
            "b",
            false,
            Some("cause_present".into()),
            &mut out
        ));
        let outcomes = settled(&out);
        assert_eq!(
            (outcomes[0].status, outcomes[0].settled_at),
            (Status::Acked, Some(T0 + 10))
        );
        assert_eq!(
            (outcomes[1].status, outcomes[1].error.as_deref()),
            (Status::Refused, Some("cause_present"))
        );
        out.clear();

        // 29.999 s: still waiting; 30 s: expired.
        c.tick(T0 + 29_999, &mut world(), &mut out);
        assert!(out.is_empty());
        c.tick(T0 + 30_000, &mut world(), &mut out);
        assert_eq!(settled(&out)[0].id, third.id);
        assert_eq!(settled(&out)[0].status, Status::Expired);
        out.clear();
        // A late ack is recorded, the status stays.
        assert!(c.ack(T0 + 31_000, "lakeside", "BAY-1", "x", true, None, &mut out));
        assert!(matches!(&out[0], Out::LateAck { command, ok: true, .. } if command.status == Status::Expired));
        assert_eq!(c.pending().count(), 0);
    }

    #[test]
    fn an_ack_after_the_expiry_but_before_the_tick_is_late() {
        let mut c = core(Settings::default());
        let mut out = Vec::new();
        c.issue(
            T0,
            "a".into(),
            dev(DeviceClass::Charger, "BAY-1"),
            Op::CutOff,
            CmdArgs::default(),
            "x",
            &mut out,
        );
        out.clear();
        assert!(c.ack(T0 + 30_000, "lakeside", "BAY-1", "a", true, None, &mut out));
        assert_eq!(settled(&out)[0].status, Status::Expired);
        assert!(matches!(out[1], Out::LateAck { .. }));
    }

    #[test]
    fn the_counter_never_goes_back_not_even_after_a_restore() {
        let mut r = Restored::default();
        // A counter from the future (a clock that was ahead): counted on from it.
        r.counters
            .insert(("lakeside".into(), "BAY-1".into()), T0 as u64 + 5_000);
        let mut c = Core::new(Settings::default(), r, T0);
        let mut out = Vec::new();
        let bay = dev(DeviceClass::Charger, "BAY-1");
        let a = c.issue(
            T0,
            "a".into(),
            bay.clone(),
            Op::CutOff,
            CmdArgs::default(),
            "x",
            &mut out,
        );
        assert_eq!(a.ctr, T0 as u64 + 5_001);
        // A store lost: the clock carries the counter past what the node saw.
        let mut fresh = core(Settings::default());
        let b = fresh.issue(T0 + 1, "b".into(), bay, Op::CutOff, CmdArgs::default(), "x", &mut out);
        assert!(b.ctr > T0 as u64 && b.ctr <= MAX_CTR);
    }

    #[test]
    fn smoke_cuts_the_bay_unless_its_node_did() {
        let mut c = core(Settings {
            cut_on_smoke: true,
            ..Settings::default()
        });
        let mut w = world();
        let mut out = Vec::new();
        c.alert(
            T0,
            &change(alerting::Change::Fired, "charger", "BAY-1", "smoke"),
            &mut w,
            &mut out,
        );
        let s = sent(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].op, s[0].args.port, s[0].by.as_str()),
            (Op::CutOff, None, "rule:smoke")
        );
        out.clear();
        // The node says it cut its ports: nothing from the gateway.
        let bay = dev(DeviceClass::Charger, "BAY-1");
        c.node_event(&bay, "smoke", true, true);
        c.alert(
            T0,
            &change(alerting::Change::Fired, "charger", "BAY-1", "smoke"),
            &mut w,
            &mut out,
        );
        assert!(sent(&out).is_empty());
        // Cleared: the next smoke is judged afresh.
        c.alert(
            T0,
            &change(alerting::Change::Resolved, "charger", "BAY-1", "smoke"),
            &mut w,
            &mut out,
        );
        c.alert(
            T0,
            &change(alerting::Change::Fired, "charger", "BAY-1", "smoke"),
            &mut w,
            &mut out,
        );
        assert_eq!(sent(&out).len(), 1);
        out.clear();
        // A bay without a key, or another code, or the rule off: nothing.
        c.alert(
            T0,
            &change(alerting::Change::Fired, "charger", "BAY-9", "smoke"),
            &mut w,
            &mut out,
        );
        c.alert(
            T0,
            &change(alerting::Change::Fired, "charger", "BAY-1", "leakage"),
            &mut w,
            &mut out,
        );
        let mut off = core(Settings::default());
        off.alert(
            T0,
            &change(alerting::Change::Fired, "charger", "BAY-1", "smoke"),
            &mut w,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn an_ebike_holds_the_doors_until_its_alert_resolves() {
        let mut c = core(Settings {
            hold_doors_on_ebike: true,
            ..Settings::default()
        });
        let mut w = world();
        let mut out = Vec::new();
        c.alert(
            T0,
            &change(alerting::Change::Fired, "elevator", "EL-1", "ebike_in_car"),
            &mut w,
            &mut out,
        );
        let s = sent(&out);
        assert_eq!((s[0].op, s[0].args.hold), (Op::HoldDoors, Some(true)));
        assert!(out.contains(&Out::Keep {
            key: "hold/lakeside/EL-1".into(),
            state: Some("{}".into())
        }));
        out.clear();
        // Kept across a restart: the release still comes.
        let restored = Restored {
            state: [("hold/lakeside/EL-1".to_owned(), "{}".to_owned())].into(),
            ..Restored::default()
        };
        let mut c = Core::new(c.settings().clone(), restored, T0 + 1000);
        c.alert(
            T0 + 60_000,
            &change(alerting::Change::Resolved, "elevator", "EL-1", "ebike_in_car"),
            &mut w,
            &mut out,
        );
        let s = sent(&out);
        assert_eq!(
            (s[0].op, s[0].args.hold, s[0].sent_at),
            (Op::HoldDoors, Some(false), T0 + 60_000)
        );
        out.clear();
        // Resolved again, or never held: nothing to release.
        c.alert(
            T0 + 61_000,
            &change(alerting::Change::Resolved, "elevator", "EL-1", "ebike_in_car"),
            &mut w,
            &mut out,
        );
        assert!(sent(&out).is_empty());
        // In maintenance: the technician has the car, no hold.
        let mut m = change(alerting::Change::Fired, "elevator", "EL-1", "ebike_in_car");
        m.alert.maintenance = true;
        c.alert(T0, &m, &mut w, &mut out);
        assert!(sent(&out).is_empty());
    }

    #[test]
    fn the_weekly_self_test_starts_at_its_time_once_and_catches_up_an_hour() {
        // Tuesdays 10:00 China time: T0 is Tuesday 08:00.
        let weekly = Weekly {
            weekday: 1,
            minute: 600,
        };
        assert_eq!(weekly.next_after(T0), T0 + 2 * 3_600_000);
        assert_eq!(weekly.next_after(T0 + 2 * 3_600_000), T0 + 2 * 3_600_000 + 7 * DAY_MS);
        let sunday = Weekly { weekday: 6, minute: 0 };
        assert_eq!(sunday.next_after(T0), T0 + 4 * DAY_MS + 16 * 3_600_000);
        let settings = Settings {
            self_test: Some(weekly),
            ..Settings::default()
        };
        let mut c = core(settings.clone());
        let mut w = world();
        let mut out = Vec::new();
        c.tick(T0 + 2 * 3_600_000 - 1, &mut w, &mut out);
        assert!(out.is_empty());
        c.tick(T0 + 2 * 3_600_000, &mut w, &mut out);
        let s = sent(&out);
        assert_eq!(s.len(), 2, "both pumps with keys");
        assert!(s.iter().all(|c| c.op == Op::SelfTest && c.by == "schedule:self_test"));
        let kept = out
            .iter()
            .find_map(|o| match o {
                Out::Keep { key, state } if key == "self_test" => state.clone(),
                _ => None,
            })
            .unwrap();
        out.clear();
        c.tick(T0 + 2 * 3_600_000 + 1000, &mut w, &mut out);
        assert!(sent(&out).is_empty(), "once a week");

        // Down at the next week's time, back 30 min later: started then.
        let next = T0 + 2 * 3_600_000 + 7 * DAY_MS;
        let restored = || Restored {
            state: [("self_test".to_owned(), kept.clone())].into(),
            ..Restored::default()
        };
        let c2 = Core::new(settings.clone(), restored(), next + 1_800_000);
        assert_eq!(c2.next_self_test(), Some(next));
        // Back 2 h later: the week is skipped.
        let c3 = Core::new(settings.clone(), restored(), next + 7_200_000);
        assert_eq!(c3.next_self_test(), Some(next + 7 * DAY_MS));
        // A first start never runs one at once.
        assert_eq!(core(settings).next_self_test(), Some(T0 + 2 * 3_600_000));
    }

    #[test]
    fn thresholds_are_pushed_until_an_ack_and_a_changed_cfg_confirm_them() {
        let t = |site: Option<&str>, device: Option<&str>, name: &str, value: f64| Threshold {
            site: site.map(Into::into),
            class: DeviceClass::Charger,
            device: device.map(Into::into),
            name: name.into(),
            value,
        };
        let settings = Settings {
            thresholds: vec![
                t(None, None, "over_temp_c", 60.0),
                t(Some("lakeside"), Some("BAY-1"), "over_temp_c", 55.0),
                t(Some("lakeside"), None, "over_temp_c", 58.0),
                t(Some("hillside"), None, "leakage_ma", 20.0),
            ],
            ..Settings::default()
        };
        let bay = dev(DeviceClass::Charger, "BAY-1");
        assert_eq!(settings.thresholds_for(&bay), [("over_temp_c".to_owned(), 55.0)]);
        assert_eq!(
            settings.thresholds_for(&dev(DeviceClass::Charger, "BAY-2")),
            [("over_temp_c".to_owned(), 58.0)]
        );
        assert!(
            settings
                .thresholds_for(&dev(DeviceClass::Firepump, "PUMP-1"))
                .is_empty()
        );

        let mut c = core(settings);
        let mut w = world();
        let mut out = Vec::new();
        c.birth(T0, &bay, "cfg-a", &mut w, &mut out);
        let s = sent(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].op, s[0].args.name.as_deref(), s[0].args.value),
            (Op::SetThreshold, Some("over_temp_c"), Some(55.0))
        );
        let id = s[0].id.clone();
        out.clear();
        // Refused: the next birth pushes again.
        c.ack(
            T0 + 5,
            "lakeside",
            "BAY-1",
            &id,
            false,
            Some("bad_argument".into()),
            &mut out,
        );
        out.clear();
        c.birth(T0 + 10, &bay, "cfg-a", &mut w, &mut out);
        let id = sent(&out)[0].id.clone();
        out.clear();
        c.ack(T0 + 20, "lakeside", "BAY-1", &id, true, None, &mut out);
        out.clear();
        // Acked, but the next birth shows the old cfg (the node restarted
        // with its defaults): pushed again.
        c.birth(T0 + 30, &bay, "cfg-a", &mut w, &mut out);
        assert_eq!(sent(&out).len(), 1);
        let id = sent(&out)[0].id.clone();
        out.clear();
        c.ack(T0 + 40, "lakeside", "BAY-1", &id, true, None, &mut out);
        out.clear();
        // The next birth's cfg changed: confirmed, and nothing more is sent.
        c.birth(T0 + 50, &bay, "cfg-b", &mut w, &mut out);
        assert!(sent(&out).is_empty());
        assert!(
            out.iter()
                .any(|o| matches!(o, Out::Confirmed { cfg, .. } if cfg == "cfg-b"))
        );
        out.clear();
        c.birth(T0 + 60, &bay, "cfg-b", &mut w, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // The node drifts away from it (reset): pushed again.
        c.birth(T0 + 70, &bay, "cfg-a", &mut w, &mut out);
        assert_eq!(sent(&out).len(), 1);
    }

    #[test]
    fn ops_and_args_are_checked_per_class_and_op() {
        assert!(ops_for(DeviceClass::Charger).contains(&Op::CutOff));
        assert!(!ops_for(DeviceClass::Firepump).contains(&Op::CutOff));
        assert!(ops_for(DeviceClass::Elevator).contains(&Op::HoldDoors));
        let port = |p| CmdArgs {
            port: Some(p),
            ..CmdArgs::default()
        };
        assert!(check_args(Op::CutOff, &CmdArgs::default()).is_ok());
        assert!(check_args(Op::CutOff, &port(3)).is_ok());
        assert!(check_args(Op::CutOff, &port(0)).unwrap_err().contains("1-based"));
        assert!(check_args(Op::SelfTest, &port(1)).unwrap_err().contains("`port`"));
        assert!(
            check_args(Op::SetThreshold, &CmdArgs::default())
                .unwrap_err()
                .contains("needs `name`")
        );
        assert!(
            check_args(Op::HoldDoors, &CmdArgs::default())
                .unwrap_err()
                .contains("needs `hold`")
        );
    }
}
