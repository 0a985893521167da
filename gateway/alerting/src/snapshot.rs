//! Snapshot and restore: all rule and alert state as plain serde data, keyed
//! by stable names (device keys, rule ids, metric names) rather than by the
//! engine's internal indices, so it survives a restart and a rule reload.
//!
//! A rule's state is kept when its id *and* its fingerprint (its compiled
//! definition with the parameters it reads) are unchanged: after a restart a
//! 120 s `for` that had run 50 s fires 70 s later; after a reload that
//! changed only another rule, it does too; a rule whose threshold changed
//! starts afresh on the next sample.
//!
//! The gateway persists one [`DeviceSnapshot`] per device (in the same
//! transaction as the alert changes that touched it) and the [`Globals`]
//! beside them, and puts them back together with [`Snapshot`].

use std::sync::Arc;

use protocol::DeviceClass;
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Lifecycle};
use crate::engine::{Engine, Group, Queued, Root, state, state_mut};
use crate::instance::{Inst, Val};

/// What kind of root cause a pseudo-device stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// The gateway's broker connection.
    Uplink,
    /// A compound.
    Site,
    /// A Modbus bus.
    Bus,
}

impl From<Root> for RootKind {
    fn from(r: Root) -> Self {
        match r {
            Root::Uplink => RootKind::Uplink,
            Root::Site => RootKind::Site,
            Root::Bus => RootKind::Bus,
        }
    }
}

impl From<RootKind> for Root {
    fn from(r: RootKind) -> Self {
        match r {
            RootKind::Uplink => Root::Uplink,
            RootKind::Site => Root::Site,
            RootKind::Bus => Root::Bus,
        }
    }
}

/// One rule instance's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// The rule's id.
    pub rule: String,
    /// Its fingerprint when the state was taken.
    pub fingerprint: u64,
    /// The port (0: the device).
    pub port: u8,
    /// The state.
    pub inst: Inst,
}

/// One device's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    /// The compound.
    pub site: String,
    /// The class (`None` for root-cause pseudo-devices).
    pub class: Option<DeviceClass>,
    /// The device id.
    pub device: String,
    /// The root cause it stands for, for pseudo-devices.
    pub root: Option<RootKind>,
    /// The Modbus bus it is on.
    pub bus: Option<String>,
    /// Reporting interval.
    pub interval_ms: i64,
    /// Last message (gateway ms).
    pub last_seen: i64,
    /// Silence before this is not evidence.
    pub judged_from: i64,
    /// Last live observation.
    pub fresh_at: i64,
    /// A death ended its session.
    pub dead: bool,
    /// Device values by metric name.
    pub values: Vec<(String, Val)>,
    /// Port values by metric name, port 1 first.
    pub ports: Vec<Vec<(String, Val)>>,
    /// Rule instances.
    pub rules: Vec<RuleState>,
    /// Codes the node holds raised, with their port.
    pub node: Vec<(String, u8)>,
    /// Codes the judgement from history holds raised, with their severity
    /// (absent in snapshots from before it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<(String, protocol::Severity)>,
    /// Alert slots (open ones and flap history).
    pub alerts: Vec<Alert>,
}

/// A notification waiting in its group, by device key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuedSnapshot {
    /// The group's compound.
    pub site: String,
    /// The group's building.
    pub building: Option<String>,
    /// When the group is due.
    pub due: i64,
    /// Whether a critical alert is in it.
    pub critical: bool,
    /// Firing entries: (site, class, device, episode).
    pub firing: Vec<(String, Option<DeviceClass>, String, u64)>,
    /// Resolved entries.
    pub resolved: Vec<crate::effect::AlertView>,
}

/// State that is not any one device's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Globals {
    /// The next episode number.
    pub next_episode: u64,
    /// Since when the broker is lost.
    pub uplink_down_since: Option<i64>,
    /// Since when the broker is back (the wills it hands over then are its
    /// restart's).
    #[serde(default)]
    pub uplink_up_since: Option<i64>,
    /// Deaths of the last few seconds: (site, class, device, when).
    #[serde(default)]
    pub recent_deaths: Vec<(String, Option<DeviceClass>, String, i64)>,
    /// Waiting notifications.
    pub groups: Vec<QueuedSnapshot>,
}

/// All state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Global state.
    pub globals: Globals,
    /// Every device, in the engine's order.
    pub devices: Vec<DeviceSnapshot>,
}

fn named(names: &[String], values: &[Val]) -> Vec<(String, Val)> {
    names
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.v.is_nan())
        .map(|(n, v)| (n.clone(), *v))
        .collect()
}

impl Engine {
    /// All state.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            globals: self.globals(),
            devices: (0..self.devices.len())
                .filter_map(|i| self.device_snapshot_at(i))
                .collect(),
        }
    }

    /// The global part of the state.
    #[must_use]
    pub fn globals(&self) -> Globals {
        let key = |d: u32| {
            let dev = &self.devices[d as usize];
            (String::from(&*dev.site), dev.class, dev.id.as_str().to_owned())
        };
        Globals {
            next_episode: self.next_episode,
            uplink_down_since: self.uplink_down_since,
            uplink_up_since: (self.uplink_up_since != i64::MIN).then_some(self.uplink_up_since),
            recent_deaths: self
                .recent_deaths
                .iter()
                .map(|&(d, at)| {
                    let (site, class, id) = key(d);
                    (site, class, id, at)
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|((site, building), g)| QueuedSnapshot {
                    site: site.clone(),
                    building: building.clone(),
                    due: g.due,
                    critical: g.critical,
                    firing: g
                        .entries
                        .iter()
                        .filter_map(|e| match e {
                            Queued::Firing { device, episode } => {
                                let (s, c, d) = key(*device);
                                Some((s, c, d, *episode))
                            }
                            Queued::Resolved(_) => None,
                        })
                        .collect(),
                    resolved: g
                        .entries
                        .iter()
                        .filter_map(|e| match e {
                            Queued::Resolved(v) => Some((**v).clone()),
                            Queued::Firing { .. } => None,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// One device's state, by key (`class` `None` for root-cause pseudo-devices).
    #[must_use]
    pub fn device_snapshot(&self, site: &str, class: Option<DeviceClass>, device: &str) -> Option<DeviceSnapshot> {
        self.device_snapshot_at(self.find(site, class, device)? as usize)
    }

    /// The position of a device in the engine's order (persisted beside its
    /// snapshot so a restore keeps the order).
    #[must_use]
    pub fn position(&self, site: &str, class: Option<DeviceClass>, device: &str) -> Option<u32> {
        self.find(site, class, device)
    }

    fn device_snapshot_at(&self, i: usize) -> Option<DeviceSnapshot> {
        let dev = self.devices.get(i)?;
        let slots = dev.class.and_then(|c| self.slots.get(&c));
        let (dev_names, port_names) = slots.map_or((&[][..], &[][..]), |s| (&s.dev_names[..], &s.port_names[..]));
        let (values, insts) = state(&self.arenas, dev);
        let mut rules: Vec<RuleState> = dev
            .profile
            .device
            .iter()
            .zip(insts)
            .map(|(r, inst)| RuleState {
                rule: r.id.to_string(),
                fingerprint: r.fingerprint,
                port: 0,
                inst: inst.clone(),
            })
            .collect();
        for (p, port) in dev.ports.iter().enumerate() {
            let n = u8::try_from(p + 1).unwrap_or(u8::MAX);
            rules.extend(dev.profile.port.iter().zip(&port.inst).map(|(r, inst)| RuleState {
                rule: r.id.to_string(),
                fingerprint: r.fingerprint,
                port: n,
                inst: inst.clone(),
            }));
        }
        Some(DeviceSnapshot {
            site: String::from(&*dev.site),
            class: dev.class,
            device: dev.id.as_str().to_owned(),
            root: dev.root.map(RootKind::from),
            bus: dev
                .bus
                .and_then(|b| self.buses.get(usize::from(b)))
                .map(|b| b.name.to_string()),
            interval_ms: i64::from(dev.interval_ms),
            last_seen: dev.last_seen,
            judged_from: dev.judged_from,
            fresh_at: dev.fresh_at,
            dead: dev.dead,
            values: named(dev_names, values),
            ports: dev.ports.iter().map(|p| named(port_names, &p.values)).collect(),
            rules,
            node: dev.node.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
            history: u32::try_from(i)
                .ok()
                .and_then(|d| self.history.get(&d))
                .map(|h| h.iter().map(|(c, s)| (c.to_string(), *s)).collect())
                .unwrap_or_default(),
            alerts: dev.alerts.to_vec(),
        })
    }

    /// Replaces all state with a snapshot, under the engine's current rules.
    /// State of rules that no longer exist, or whose definition changed, is
    /// dropped; everything else continues exactly where it was.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.devices.clear();
        self.history.clear();
        self.index.clear();
        self.arenas.iter_mut().for_each(crate::store::Arena::clear);
        self.episodes.clear();
        self.buses.clear();
        self.sites.clear();
        self.groups.clear();
        self.uplink_root = None;
        self.next_episode = self.next_episode.max(snapshot.globals.next_episode).max(1);
        self.uplink_down_since = snapshot.globals.uplink_down_since;
        self.uplink_up_since = snapshot.globals.uplink_up_since.unwrap_or(i64::MIN);
        for s in snapshot.devices {
            self.restore_device(s);
        }
        self.recent_deaths = snapshot
            .globals
            .recent_deaths
            .iter()
            .filter_map(|(s, c, d, at)| Some((self.find(s, *c, d)?, *at)))
            .collect();
        for g in snapshot.globals.groups {
            let mut entries: Vec<Queued> = g
                .firing
                .iter()
                .filter_map(|(s, c, d, e)| {
                    Some(Queued::Firing {
                        device: self.find(s, *c, d)?,
                        episode: *e,
                    })
                })
                .collect();
            entries.extend(g.resolved.into_iter().map(|v| Queued::Resolved(Box::new(v))));
            self.groups.insert(
                (g.site, g.building),
                Group {
                    due: g.due,
                    critical: g.critical,
                    entries,
                },
            );
        }
    }

    fn restore_device(&mut self, s: DeviceSnapshot) {
        let root = s.root.map(Root::from);
        let d = self.insert(&s.site, s.class, &s.device, root, s.last_seen);
        if let (Some(bus), Some(class)) = (&s.bus, s.class) {
            self.attach(
                crate::DeviceRef {
                    site: &s.site,
                    class,
                    device: &s.device,
                },
                bus,
                s.last_seen,
            );
        }
        match root {
            Some(Root::Uplink) => self.uplink_root = Some(d),
            Some(Root::Site) => {
                if let Some(site) = self.sites.get_mut(s.site.as_str()) {
                    site.root = Some(d);
                }
            }
            Some(Root::Bus) => {
                let name = s.device.strip_prefix("bus:").unwrap_or(&s.device);
                if let Some(b) = self.buses.iter_mut().find(|b| &*b.name == name) {
                    b.root = Some(d);
                } else {
                    self.buses.push(crate::engine::Bus {
                        name: name.into(),
                        devices: Vec::new(),
                        root: Some(d),
                    });
                }
            }
            None => {}
        }
        let slots = s.class.and_then(|c| self.slots.get(&c)).cloned();
        let dev = &mut self.devices[d as usize];
        dev.interval_ms = u32::try_from(s.interval_ms.clamp(1000, i64::from(u32::MAX))).unwrap_or(u32::MAX);
        dev.last_seen = s.last_seen;
        dev.judged_from = s.judged_from;
        dev.fresh_at = s.fresh_at;
        dev.dead = s.dead;
        if let Some(slots) = &slots {
            let (values, _) = state_mut(&mut self.arenas, dev);
            for (name, v) in &s.values {
                let i = slots.dev_names.iter().position(|n| n == name);
                if let Some(x) = i.and_then(|i| values.get_mut(i)) {
                    *x = *v;
                }
            }
            for (p, values) in s.ports.iter().enumerate() {
                let port = crate::engine::Port {
                    values: slots
                        .port_names
                        .iter()
                        .map(|n| values.iter().find(|(m, _)| m == n).map(|(_, v)| *v).unwrap_or_default())
                        .collect(),
                    inst: vec![Inst::default(); dev.profile.port.len()].into_boxed_slice(),
                };
                if p < dev.ports.len() {
                    dev.ports[p] = port;
                } else {
                    dev.ports.push(port);
                }
            }
        }
        let profile = dev.profile.clone();
        for r in s.rules {
            let (rules, insts) = if r.port == 0 {
                (&profile.device, state_mut(&mut self.arenas, dev).1)
            } else {
                let Some(port) = dev.ports.get_mut(usize::from(r.port) - 1) else {
                    continue;
                };
                (&profile.port, &mut *port.inst)
            };
            if let Some(i) = rules
                .iter()
                .position(|c| *c.id == *r.rule && c.fingerprint == r.fingerprint)
            {
                insts[i] = r.inst;
            }
        }
        dev.node = s
            .node
            .into_iter()
            .map(|(c, p)| (Arc::<str>::from(c), p))
            .collect::<Vec<_>>()
            .into();
        let held: Vec<(Arc<str>, _)> = s.history.into_iter().map(|(c, v)| (c.into(), v)).collect();
        self.history.extend((!held.is_empty()).then_some((d, held)));
        dev.alerts = s.alerts.into();
        for a in &dev.alerts {
            if a.state != Lifecycle::Closed {
                self.episodes.insert(a.episode, d);
            }
            self.next_episode = self.next_episode.max(a.episode + 1);
        }
        dev.busy = state(&self.arenas, dev).1.iter().any(Inst::busy)
            || dev.ports.iter().any(|p| p.inst.iter().any(Inst::busy))
            || dev.alerts.iter().any(|a| a.open() || !a.starts.is_empty());
    }
}
