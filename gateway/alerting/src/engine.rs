//! The engine: every device's values, rule instances and alerts, fed
//! observations and a clock, answering with [`Effect`]s.
//!
//! ```text
//! observe(now, device, data|event|birth|death|gap) ─┐
//! uplink(now, up) ──────────────────────────────────┤
//! tick(now) ────────────────────────────────────────┤
//!                                                   ▼
//!       values ─► rule instances ─► sources per (code, port) ─► alert lifecycle
//!                                                                    │
//!                         inhibition, maintenance, re-judgement ◄────┘
//!                                        │
//!                      group queue (wait; critical at once) ─► Notify + WorkOrder::Open
//! ```
//!
//! Devices live in a vector in arrival order and are visited in that order,
//! groups in a `BTreeMap`: the same inputs give the same effects, byte for
//! byte. Nothing here reads a clock: `now` is always the caller's.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

use protocol::{DeviceClass, EventCode, Message, Scalar, Severity};

use crate::alert::{Alert, Flap, Sources};
use crate::effect::{
    AlertChange, AlertView, Change, DataState, Effect, Evidence, Notification, Record, State, WorkOrderIntent,
};
use crate::instance::{Ctx, Inst, Val};
use crate::rule::Judge;
use crate::ruleset::{Profile, RuleSet};
use crate::store::{Arena, Id, Index};

/// Timings of judgement around the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long a non-critical alert waits in its group for others to join
    /// one notification (critical ones go at once).
    pub group_wait_ms: i64,
    /// Flap damping.
    pub flap: Flap,
    /// How long the broker must be lost before `uplink_lost` fires.
    pub uplink_for_ms: i64,
    /// A will this close to the gateway losing its broker, or to getting it
    /// back, is the broker's news (it sends every client's will as it shuts
    /// down, and the wills of restored sessions as it starts), not the
    /// device's: it is judged as silence, not as a death.
    pub will_grace_ms: i64,
    /// Devices a compound needs before "all of them silent" is a root cause.
    pub site_min_devices: usize,
    /// Devices a Modbus bus needs before "all of them silent" is a root cause.
    pub bus_min_devices: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            group_wait_ms: 30_000,
            flap: Flap {
                window_ms: 600_000,
                starts: 3,
                hold_ms: 600_000,
            },
            uplink_for_ms: 30_000,
            will_grace_ms: 5_000,
            site_min_devices: 2,
            bus_min_devices: 2,
        }
    }
}

/// A declared maintenance window: alerts are recorded, never notified or
/// dispatched.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// The compound (all if `None`).
    pub site: Option<String>,
    /// The class (all if `None`).
    pub class: Option<DeviceClass>,
    /// The device (all if `None`).
    pub device: Option<String>,
    /// From (gateway ms, inclusive).
    pub from: i64,
    /// To (exclusive).
    pub to: i64,
    /// Why (shown and recorded).
    pub reason: String,
}

impl Window {
    fn covers(&self, site: &str, class: Option<DeviceClass>, device: &str, now: i64) -> bool {
        (self.from..self.to).contains(&now)
            && self.site.as_deref().is_none_or(|s| s == site)
            && self.class.is_none_or(|c| Some(c) == class)
            && self.device.as_deref().is_none_or(|d| d == device)
    }
}

/// Which device an observation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRef<'a> {
    /// The compound.
    pub site: &'a str,
    /// The class.
    pub class: DeviceClass,
    /// The device id.
    pub device: &'a str,
}

/// One observation of a device.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A message from the device (`data`, `event`, `birth`, `death`; `cmd`
    /// and `ack` are ignored). `hist` data is ignored, `hist` events become
    /// records (and clear what they clear), never live alerts.
    Message(&'a Message),
    /// Messages of the session were lost before this point: consecutive-sample
    /// counts restart, so "two samples in a row" never spans a hole.
    Gap,
}

/// Why an acknowledgement was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No alert has this id.
    #[error("no alert {0}")]
    Unknown(u64),
    /// It is pending or resolved.
    #[error("alert {id} is {state}, not firing", state = .state.as_str())]
    NotFiring {
        /// The alert.
        id: u64,
        /// Its state.
        state: State,
    },
}

/// What kind of parent a pseudo-device stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    /// The gateway's broker connection.
    Uplink,
    /// A compound.
    Site,
    /// A Modbus bus (index into `buses`).
    Bus,
}

pub(crate) struct Port {
    pub(crate) values: Box<[Val]>,
    pub(crate) inst: Box<[Inst]>,
}

/// A vector that costs one thin pointer, and nothing while empty: most
/// devices have no open alert, no node-raised code and no ports, and the
/// device record is what every message reads. A `Box<[T]>` would be a fat
/// pointer (16 bytes) and a `Vec` three words; the boxed `Vec` costs an extra
/// allocation only for the few devices that use it.
#[allow(clippy::box_collection)]
pub(crate) struct Slim<T>(Option<Box<Vec<T>>>);

impl<T> Default for Slim<T> {
    fn default() -> Self {
        Slim(None)
    }
}

impl<T> std::ops::Deref for Slim<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl<T> std::ops::DerefMut for Slim<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.0.as_deref_mut().map_or(&mut [], Vec::as_mut_slice)
    }
}

impl<'a, T> IntoIterator for &'a Slim<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Slim<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T> From<Vec<T>> for Slim<T> {
    fn from(v: Vec<T>) -> Self {
        Slim((!v.is_empty()).then(|| Box::new(v)))
    }
}

impl<T> Slim<T> {
    /// Changes the contents as a `Vec`.
    fn edit<R>(&mut self, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        let mut v = self.0.take().map(|b| *b).unwrap_or_default();
        let out = f(&mut v);
        *self = Slim::from(v);
        out
    }

    pub(crate) fn push(&mut self, v: T) {
        self.edit(|x| x.push(v));
    }

    pub(crate) fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        if self.0.is_some() {
            self.edit(|x| x.retain(f));
        }
    }

    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        self.edit(|x| (i < x.len()).then(|| x.remove(i)))
    }

    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

/// A boxed slice, empty without allocating: one pointer chase to the
/// elements where [`Slim`] takes two, for the alerts, which a message reads
/// whenever its device has any (a pending alert, say); it costs 16 bytes.
pub(crate) struct Flat<T>(Option<Box<[T]>>);

impl<T> Default for Flat<T> {
    fn default() -> Self {
        Flat(None)
    }
}

impl<T> std::ops::Deref for Flat<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl<T> std::ops::DerefMut for Flat<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl<'a, T> IntoIterator for &'a Flat<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Flat<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T> From<Vec<T>> for Flat<T> {
    fn from(v: Vec<T>) -> Self {
        Flat((!v.is_empty()).then(|| v.into_boxed_slice()))
    }
}

impl<T> Flat<T> {
    pub(crate) fn push(&mut self, x: T) {
        let mut v = self.0.take().map(Vec::from).unwrap_or_default();
        // Exactly one more: the slice must not carry spare room.
        v.reserve_exact(1);
        v.push(x);
        *self = Flat::from(v);
    }

    pub(crate) fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        if let Some(b) = self.0.take() {
            let mut v = Vec::from(b);
            v.retain(f);
            *self = Flat::from(v);
        }
    }
}

/// What every message reads besides its values and rule instances, which
/// live in the class's [`Arena`] at `slot`.
pub(crate) struct Device {
    /// Interned: one allocation per compound, shared (and cached) by all its devices.
    pub(crate) site: Arc<str>,
    /// `None` for root-cause pseudo-devices.
    pub(crate) class: Option<DeviceClass>,
    pub(crate) id: Id,
    /// Where its values and instances are in its class's arena.
    pub(crate) slot: u32,
    pub(crate) root: Option<Root>,
    pub(crate) profile: Arc<Profile>,
    /// Index into the engine's building names.
    pub(crate) building: Option<u16>,
    pub(crate) bus: Option<u16>,
    pub(crate) interval_ms: u32,
    pub(crate) last_seen: i64,
    /// Silence before this is not evidence (the gateway itself was blind).
    pub(crate) judged_from: i64,
    /// Last live observation (not `hist`).
    pub(crate) fresh_at: i64,
    pub(crate) dead: bool,
    pub(crate) ports: Slim<Port>,
    /// Codes the node (or, for pseudo-devices, the topology) holds raised.
    pub(crate) node: Slim<(Arc<str>, u8)>,
    pub(crate) alerts: Flat<Alert>,
    pub(crate) busy: bool,
}

pub(crate) struct Bus {
    pub(crate) name: Box<str>,
    pub(crate) devices: Vec<u32>,
    pub(crate) root: Option<u32>,
}

#[derive(Default)]
pub(crate) struct Site {
    pub(crate) devices: Vec<u32>,
    pub(crate) root: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Queued {
    Firing { device: u32, episode: u64 },
    Resolved(Box<AlertView>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Group {
    pub(crate) due: i64,
    pub(crate) critical: bool,
    pub(crate) entries: Vec<Queued>,
}

/// Slot lookup tables of one class: metric id → slot.
#[derive(Clone)]
pub(crate) struct ClassSlots {
    dev_known: [u16; 128],
    port_known: [u16; 32],
    pub(crate) dev_names: Vec<String>,
    pub(crate) port_names: Vec<String>,
}

const NO_SLOT: u16 = u16::MAX;

impl ClassSlots {
    fn new(s: &crate::rule::Slots) -> ClassSlots {
        let mut c = ClassSlots {
            dev_known: [NO_SLOT; 128],
            port_known: [NO_SLOT; 32],
            dev_names: s.device.clone(),
            port_names: s.port.clone(),
        };
        for (i, n) in s.device.iter().enumerate() {
            if let Some(m) = protocol::Metric::from_name(n) {
                c.dev_known[usize::from(m.id()) & 127] = u16::try_from(i).unwrap_or(NO_SLOT);
            }
        }
        for (i, n) in s.port.iter().enumerate() {
            if let Some(m) = protocol::PortMetric::from_name(n) {
                c.port_known[usize::from(m.id()) & 31] = u16::try_from(i).unwrap_or(NO_SLOT);
            }
        }
        c
    }

    fn dev(&self, name: &protocol::Named<protocol::Metric>) -> Option<usize> {
        let s = match name {
            protocol::Named::Known(m) => self.dev_known[usize::from(m.id()) & 127],
            protocol::Named::Other(n) => return self.dev_names.iter().position(|x| x == n.as_str()),
        };
        (s != NO_SLOT).then_some(usize::from(s))
    }

    fn dev_by_name(&self, name: &str) -> Option<usize> {
        self.dev_names.iter().position(|x| x == name)
    }

    fn port(&self, name: &protocol::Named<protocol::PortMetric>) -> Option<usize> {
        let s = match name {
            protocol::Named::Known(m) => self.port_known[usize::from(m.id()) & 31],
            protocol::Named::Other(n) => return self.port_names.iter().position(|x| x == n.as_str()),
        };
        (s != NO_SLOT).then_some(usize::from(s))
    }
}

/// The alerting engine.
pub struct Engine {
    pub(crate) rules: RuleSet,
    pub(crate) settings: Settings,
    pub(crate) slots: BTreeMap<DeviceClass, ClassSlots>,
    pub(crate) profiles: HashMap<(DeviceClass, Vec<u16>), Arc<Profile>>,
    pub(crate) empty: Arc<Profile>,
    pub(crate) devices: Vec<Device>,
    /// Values and rule instances, per class (by [`DeviceClass::id`]).
    pub(crate) arenas: Vec<Arena>,
    /// Device and arena slot by key hash.
    pub(crate) index: Index,
    /// `SipHash` keys, random per engine: device ids come from the network, so
    /// the lookup must not be open to chosen collisions.
    pub(crate) hasher: RandomState,
    pub(crate) episodes: HashMap<u64, u32, BuildHasherDefault<Sequential>>,
    pub(crate) next_episode: u64,
    pub(crate) uplink_down_since: Option<i64>,
    /// When the broker came back, for the wills it sends as it starts.
    pub(crate) uplink_up_since: i64,
    /// Deaths within the last [`Settings::will_grace_ms`]: (device, when).
    pub(crate) recent_deaths: Vec<(u32, i64)>,
    pub(crate) uplink_root: Option<u32>,
    pub(crate) buses: Vec<Bus>,
    pub(crate) sites: BTreeMap<Arc<str>, Site>,
    pub(crate) groups: BTreeMap<(String, Option<String>), Group>,
    pub(crate) windows: Vec<Window>,
    pub(crate) buildings: HashMap<(String, String), u16>,
    pub(crate) building_names: Vec<Arc<str>>,
    scratch: Gathered,
    /// Codes the gateway's judgement from history holds raised per device
    /// ([`Engine::history`]), with their severity. Beside the devices, not
    /// in them: few devices ever have one, and every device's record is
    /// read by every message (the size test below).
    pub(crate) history: BTreeMap<u32, Vec<(Arc<str>, Severity)>>,
    /// The live event being observed that raises a code, with its detail as
    /// evidence for the alert it fires; only set within one `observe`.
    raised: Option<Raised>,
}

/// A code a node's event raises now, and that event's detail.
struct Raised {
    device: u32,
    code: Arc<str>,
    port: u8,
    detail: Vec<Evidence>,
}

/// Hashes the engine's own episode numbers: they come from its counter,
/// not from the network, so nobody can choose them to collide, and a
/// multiplication spreads them as well as `SipHash` at a fraction of the cost
/// (one insert and one removal per pending alert).
#[derive(Default)]
pub(crate) struct Sequential(u64);

impl Hasher for Sequential {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0 ^ u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The name of the node's own event as a source.
pub const NODE_SOURCE: &str = "node";

/// The name of the gateway's judgement from history as a source
/// (`frequent_faults`, `degrading`: the crate `judgement`).
pub const HISTORY_SOURCE: &str = "history";

impl Engine {
    /// An engine with no devices yet.
    #[must_use]
    pub fn new(rules: RuleSet, settings: Settings) -> Engine {
        let slots: BTreeMap<DeviceClass, ClassSlots> = rules
            .packs()
            .iter()
            .filter_map(|p| rules.slots(p.class).map(|s| (p.class, ClassSlots::new(s))))
            .collect();
        let classes = DeviceClass::ALL
            .iter()
            .map(|c| usize::from(c.id()) + 1)
            .max()
            .unwrap_or(0);
        let arenas = (0..classes)
            .map(|i| {
                let values = u8::try_from(i)
                    .ok()
                    .and_then(DeviceClass::from_id)
                    .and_then(|c| slots.get(&c))
                    .map_or(0, |s| s.dev_names.len());
                Arena::new(values)
            })
            .collect();
        Engine {
            empty: Arc::new(Profile {
                class: DeviceClass::Elevator,
                device: Vec::new(),
                port: Vec::new(),
                severity: BTreeMap::new(),
                offline_intervals: 3.0,
            }),
            rules,
            settings,
            slots,
            profiles: HashMap::new(),
            devices: Vec::new(),
            arenas,
            index: Index::default(),
            hasher: RandomState::new(),
            episodes: HashMap::default(),
            next_episode: 1,
            uplink_down_since: None,
            uplink_up_since: i64::MIN,
            recent_deaths: Vec::new(),
            uplink_root: None,
            buses: Vec::new(),
            sites: BTreeMap::new(),
            groups: BTreeMap::new(),
            windows: Vec::new(),
            buildings: HashMap::new(),
            building_names: Vec::new(),
            scratch: Gathered::default(),
            history: BTreeMap::new(),
            raised: None,
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Sets the declared maintenance windows (replacing earlier ones).
    pub fn set_windows(&mut self, windows: Vec<Window>) {
        self.windows = windows;
    }

    /// Adds one maintenance window (an open maintenance work order, say).
    pub fn add_window(&mut self, window: Window) {
        self.windows.push(window);
    }

    /// Ends, at `now`, the open windows given for `reason` (the maintenance
    /// order is completed); windows already over are left as they are.
    pub fn end_window(&mut self, reason: &str, now: i64) {
        for w in &mut self.windows {
            if w.reason == reason && w.to > now {
                w.to = now.max(w.from);
            }
        }
    }

    /// The maintenance windows.
    #[must_use]
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Assigns devices to buildings, for grouping notifications.
    pub fn set_buildings(&mut self, buildings: impl IntoIterator<Item = (String, String, String)>) {
        self.buildings.clear();
        self.building_names.clear();
        for (site, device, building) in buildings {
            let i = self
                .building_names
                .iter()
                .position(|b| **b == *building)
                .unwrap_or_else(|| {
                    self.building_names.push(building.into());
                    self.building_names.len() - 1
                });
            if let Ok(i) = u16::try_from(i) {
                self.buildings.insert((site, device), i);
            }
        }
        for dev in &mut self.devices {
            dev.building = self
                .buildings
                .get(&(String::from(&*dev.site), dev.id.as_str().to_owned()))
                .copied();
        }
    }

    fn profile_for(&mut self, site: &str, class: DeviceClass, device: &str) -> Arc<Profile> {
        let key = (class, self.rules.matching(site, class, device));
        if let Some(p) = self.profiles.get(&key) {
            return p.clone();
        }
        let p = self.rules.profile(class, &key.1);
        self.profiles.insert(key, p.clone());
        p
    }

    fn key(&self, site: &str, class: Option<DeviceClass>, id: &str) -> u64 {
        self.hasher.hash_one((site, class.map(DeviceClass::id), id))
    }

    pub(crate) fn find(&self, site: &str, class: Option<DeviceClass>, id: &str) -> Option<u32> {
        self.locate(self.key(site, class, id), site, class, id).map(|(d, _)| d)
    }

    /// The device with this key hash and key, and its arena slot.
    fn locate(&self, key: u64, site: &str, class: Option<DeviceClass>, id: &str) -> Option<(u32, u32)> {
        let arena = class.and_then(|c| self.arenas.get(usize::from(c.id())));
        self.index.find(key, |d, slot| {
            if let Some(a) = arena {
                std::hint::black_box(a.touch(slot));
            }
            let dev = &self.devices[d as usize];
            dev.class == class && dev.id.is(id) && &*dev.site == site
        })
    }

    pub(crate) fn insert(
        &mut self,
        site: &str,
        class: Option<DeviceClass>,
        id: &str,
        root: Option<Root>,
        now: i64,
    ) -> u32 {
        let key = self.key(site, class, id);
        if let Some((i, _)) = self.locate(key, site, class, id) {
            return i;
        }
        let profile = match class {
            Some(c) if root.is_none() => self.profile_for(site, c, id),
            _ => self.empty.clone(),
        };
        let idx = u32::try_from(self.devices.len()).unwrap_or(u32::MAX);
        let slot = class
            .and_then(|c| self.arenas.get_mut(usize::from(c.id())))
            .map_or(0, |a| a.push(profile.device.len()));
        self.index.insert(key, idx, slot);
        let site_name = match self.sites.get_key_value(site) {
            Some((k, _)) => k.clone(),
            None => Arc::from(site),
        };
        self.devices.push(Device {
            site: site_name.clone(),
            class,
            id: Id::new(id),
            slot,
            root,
            building: self.buildings.get(&(site.to_owned(), id.to_owned())).copied(),
            profile,
            bus: None,
            interval_ms: crate::DEFAULT_INTERVAL_S * 1000,
            last_seen: now,
            judged_from: now,
            fresh_at: now,
            dead: false,
            ports: Slim::default(),
            node: Slim::default(),
            alerts: Flat::default(),
            busy: false,
        });
        let s = self.sites.entry(site_name).or_default();
        if root.is_none() {
            s.devices.push(idx);
        }
        idx
    }

    /// Places a device on a Modbus bus: when every device of a bus goes
    /// silent together, one `bus_down` alert stands for them.
    pub fn attach(&mut self, device: DeviceRef<'_>, bus: &str, now: i64) {
        let d = self.insert(device.site, Some(device.class), device.device, None, now);
        let b = self.buses.iter().position(|x| &*x.name == bus).unwrap_or_else(|| {
            self.buses.push(Bus {
                name: bus.into(),
                devices: Vec::new(),
                root: None,
            });
            self.buses.len() - 1
        });
        let dev = &mut self.devices[d as usize];
        if dev.bus.is_none() {
            dev.bus = u16::try_from(b).ok();
            self.buses[b].devices.push(d);
        }
    }

    /// The gateway itself was away (a restart): silence before `now` is not
    /// evidence that a device is offline.
    pub fn resume(&mut self, now: i64) {
        for d in &mut self.devices {
            d.judged_from = d.judged_from.max(now);
        }
    }

    /// The gateway's judgement from history raises (`active`) or clears a
    /// code of a device, with its severity and the evidence it rests on
    /// (the faults counted, the indicators drifting). It is a source of the
    /// device's alert like a rule or the node's event, so the alert has the
    /// lifecycle, grouping, inhibition, maintenance and dispatch of every
    /// other, and is held until the judgement clears it. Unlike a message it
    /// is not a sign of life: the device's presence and freshness are left
    /// alone. Why here and not a path of its own: an alert's episode
    /// numbers, acknowledgements and work-order intents belong to the
    /// engine, and a second owner of alerts would need all of them again.
    #[allow(clippy::too_many_arguments)] // the device, then what is judged of it
    pub fn history(
        &mut self,
        now: i64,
        device: DeviceRef<'_>,
        code: &str,
        severity: Severity,
        active: bool,
        evidence: Vec<Evidence>,
        out: &mut Vec<Effect>,
    ) {
        let d = self.insert(device.site, Some(device.class), device.device, None, now);
        let list = self.history.entry(d).or_default();
        let held = list.iter().position(|(c, _)| &**c == code);
        match (active, held) {
            (true, None) => list.push((code.into(), severity)),
            (true, Some(i)) => list[i].1 = severity,
            (false, Some(i)) => {
                list.remove(i);
            }
            (false, None) => {}
        }
        if list.is_empty() {
            self.history.remove(&d);
        }
        if !active && held.is_none() {
            return;
        }
        if active {
            self.raised = Some(Raised {
                device: d,
                code: code.into(),
                port: 0,
                detail: evidence,
            });
        }
        self.eval(d, now, false, out);
        self.raised = None;
        self.flush(now, out);
    }

    /// Feeds one observation of a device.
    pub fn observe(&mut self, now: i64, device: DeviceRef<'_>, input: Input<'_>, out: &mut Vec<Effect>) {
        let d = self.insert(device.site, Some(device.class), device.device, None, now);
        let sample = match input {
            Input::Gap => {
                let dev = &mut self.devices[d as usize];
                state_mut(&mut self.arenas, dev).1.iter_mut().for_each(|i| i.streak = 0);
                dev.ports
                    .iter_mut()
                    .flat_map(|p| p.inst.iter_mut())
                    .for_each(|i| i.streak = 0);
                return;
            }
            Input::Message(m) => match self.take_message(d, m, now, out) {
                Some(sample) => sample,
                None => return,
            },
        };
        self.eval(d, now, sample, out);
        self.raised = None;
        self.flush(now, out);
    }

    /// Updates a device's state from a message; returns whether it was a
    /// sample (`Some(true)`), another live message (`Some(false)`), or nothing
    /// to judge (`None`).
    fn take_message(&mut self, d: u32, m: &Message, now: i64, out: &mut Vec<Effect>) -> Option<bool> {
        let class = self.devices[d as usize].class?;
        let slots = self.slots.get(&class);
        let grace = self.settings.will_grace_ms;
        let restarted = now.saturating_sub(self.uplink_up_since) < grace;
        if matches!(m, Message::Death(_)) && !restarted {
            self.recent_deaths.retain(|(_, at)| now.saturating_sub(*at) <= grace);
            self.recent_deaths.push((d, now));
        }
        let dev = &mut self.devices[d as usize];
        let header = m.header();
        dev.last_seen = dev.last_seen.max(now);
        if header.hist {
            if let Message::Event(e) = m {
                out.push(Effect::Record(event_record(dev, e, now, "replayed_event")));
                // A replayed clear is history that still holds: the node
                // re-sends what is still raised after its birth.
                if !e.active {
                    let port = e.port().unwrap_or(0);
                    let before = dev.node.len();
                    dev.node.retain(|(c, p)| !(&**c == e.code.as_str() && *p == port));
                    return (dev.node.len() != before).then_some(false);
                }
            }
            return None;
        }
        match m {
            Message::Data(data) => {
                dev.dead = false;
                dev.fresh_at = now;
                if let Some(s) = slots {
                    let (values, _) = state_mut(&mut self.arenas, dev);
                    for r in data.m.iter() {
                        if let Some(v) = s.dev(&r.name).and_then(|i| values.get_mut(i)) {
                            v.set(r.value.to_number(), now);
                        }
                    }
                    for p in &data.ports {
                        let Some(port) = ensure_port(dev, p.port, s) else {
                            continue;
                        };
                        for r in p.readings.iter() {
                            if let Some(i) = s.port(&r.name) {
                                port.values[i].set(r.value.to_number(), now);
                            }
                        }
                    }
                }
                Some(true)
            }
            Message::Event(e) => self.take_event(d, e, now, out),
            Message::Birth(b) => {
                dev.dead = false;
                dev.fresh_at = now;
                dev.interval_ms = b.interval_s.clamp(1, u32::MAX / 1000) * 1000;
                if let Some(s) = slots {
                    let facts = [
                        ("rated_speed_mps", b.rated_speed_mps),
                        ("floors", b.floors.map(f64::from)),
                        ("ports", b.ports.map(f64::from)),
                    ];
                    let (values, _) = state_mut(&mut self.arenas, dev);
                    for (name, v) in facts {
                        if let (Some(v), Some(x)) = (v, s.dev_by_name(name).and_then(|i| values.get_mut(i))) {
                            x.set(v, now);
                            x.at = i64::MAX;
                        }
                    }
                    if let Some(n) = b.ports {
                        ensure_port(dev, n, s);
                    }
                }
                Some(false)
            }
            Message::Death(_) if restarted && dev.bus.is_none() => {
                // The broker has just come back and hands over the wills of
                // the sessions it restored: the device is judged on what it
                // says next, or on a full window of silence.
                dev.judged_from = dev.judged_from.max(now);
                dev.last_seen = dev.fresh_at;
                Some(false)
            }
            Message::Death(_) => {
                dev.dead = true;
                Some(false)
            }
            Message::Cmd(_) | Message::Ack(_) => None,
        }
    }

    /// A live event: a code the node raises or clears (held in `node`), or
    /// a record for a one-shot code. A raising event's detail is kept for
    /// the evidence of the alert it fires.
    fn take_event(&mut self, d: u32, e: &protocol::Event, now: i64, out: &mut Vec<Effect>) -> Option<bool> {
        let dev = &mut self.devices[d as usize];
        dev.dead = false;
        dev.fresh_at = now;
        let code = e.code.as_str();
        if e.code.known().is_some_and(|c| !c.is_state()) {
            out.push(Effect::Record(event_record(dev, e, now, code)));
            return None;
        }
        let port = e.port().unwrap_or(0);
        let held = dev.node.iter().position(|(c, p)| &**c == code && *p == port);
        match (e.active, held) {
            (true, None) => dev.node.push((code.into(), port)),
            (false, Some(i)) => {
                dev.node.remove(i);
            }
            _ => {}
        }
        if e.active {
            self.raised = Some(Raised {
                device: d,
                code: code.into(),
                port,
                detail: detail_evidence(e, port, now),
            });
        }
        Some(false)
    }

    /// Whether the device is silent on the gateway's clock: `Some(true)`
    /// offline, `Some(false)` online, `None` when the gateway cannot tell (it
    /// lost the broker, or has not listened long enough since it was blind).
    fn offline_verdict(&self, dev: &Device, now: i64) -> Option<bool> {
        if dev.bus.is_none() && self.uplink_down_since.is_some() {
            return None;
        }
        if dev.dead {
            return Some(true);
        }
        let from = dev.last_seen.max(dev.judged_from);
        if now.saturating_sub(from) >= stale_ms(dev) {
            Some(true)
        } else if dev.judged_from > dev.last_seen {
            None
        } else {
            Some(false)
        }
    }

    /// Judges every rule and alert of a device at `now`.
    #[allow(clippy::too_many_lines)]
    pub(crate) fn eval(&mut self, d: u32, now: i64, sample: bool, out: &mut Vec<Effect>) {
        let offline = self.offline_verdict(&self.devices[d as usize], now);
        let uplink_down = self.uplink_down_since.is_some();
        // Step every instance; most samples change nothing, and then there
        // is no alert to open or resolve: the sources need not be gathered.
        let quiet = {
            let dev = &mut self.devices[d as usize];
            let (values, inst) = state_mut(&mut self.arenas, dev);
            let Device {
                profile,
                ports,
                dead,
                interval_ms,
                ..
            } = dev;
            let stale = stale_ms_of(profile, *interval_ms);
            let values: &[Val] = values;
            // Steps rules over their instances; whether all stayed inactive.
            let step = |rules: &[crate::rule::Compiled], insts: &mut [Inst], port: &[Val]| {
                let mut quiet = true;
                for (rule, inst) in rules.iter().zip(insts.iter_mut()) {
                    let mut ctx = Ctx {
                        dev: values,
                        port,
                        now,
                        stale_ms: stale,
                        dead: *dead,
                        rate: None,
                    };
                    inst.step(rule, &mut ctx, sample, offline);
                    quiet &= inst.phase == crate::instance::Phase::Inactive;
                }
                quiet
            };
            let mut quiet = step(&profile.device, inst, &[]);
            for Port { values: port, inst } in ports.iter_mut() {
                quiet &= step(&profile.port, inst, port);
            }
            let dev = &self.devices[d as usize];
            quiet && dev.node.is_empty() && !self.history.contains_key(&d) && !dev.alerts.iter().any(Alert::open)
        };
        if quiet {
            let flap = self.settings.flap;
            let dev = &mut self.devices[d as usize];
            if !dev.alerts.is_empty() {
                dev.alerts.retain(|a| !a.forgettable(now, flap));
            }
            dev.busy = state(&self.arenas, dev).1.iter().any(Inst::busy)
                || dev.ports.iter().any(|p| p.inst.iter().any(Inst::busy))
                || !dev.alerts.is_empty();
            return;
        }
        let mut gathered = std::mem::take(&mut self.scratch);
        gathered.reset();
        {
            let dev = &self.devices[d as usize];
            let profile = &dev.profile;
            let gone = offline == Some(true) || (dev.bus.is_none() && uplink_down);
            let stale_data = if gone { DataState::Stale } else { DataState::NoData };
            for (rule, inst) in profile.device.iter().zip(state(&self.arenas, dev).1) {
                let data = if matches!(rule.judge, Judge::Offline { .. }) {
                    if offline.is_none() {
                        DataState::Stale
                    } else {
                        DataState::Fresh
                    }
                } else if inst.known {
                    DataState::Fresh
                } else {
                    stale_data
                };
                add_source(&mut gathered, rule, inst, 0, data);
            }
            for (p, port) in dev.ports.iter().enumerate() {
                let n = u8::try_from(p + 1).unwrap_or(u8::MAX);
                for (rule, inst) in profile.port.iter().zip(port.inst.iter()) {
                    let data = if inst.known { DataState::Fresh } else { stale_data };
                    add_source(&mut gathered, rule, inst, n, data);
                }
            }
            for (code, port) in &dev.node {
                if !node_code_applies(dev, state(&self.arenas, dev).0, code, *port, now) {
                    continue;
                }
                let severity = profile
                    .severity
                    .get(&**code)
                    .copied()
                    .or_else(|| EventCode::from_name(code).map(EventCode::severity))
                    .unwrap_or(Severity::Major);
                let s = gathered.entry(code, *port, severity);
                s.firing = true;
                s.since = s.since.min(now);
                s.dispatch |= severity != Severity::Info;
                s.severity = s.severity.min(severity);
                s.names.push(NODE_SOURCE.into());
            }
            for (code, severity) in self.history.get(&d).into_iter().flatten() {
                let s = gathered.entry(code, 0, *severity);
                s.firing = true;
                s.since = s.since.min(now);
                s.dispatch |= *severity != Severity::Info;
                s.severity = s.severity.min(*severity);
                s.names.push(HISTORY_SOURCE.into());
            }
        }
        let flap = self.settings.flap;
        let mut offline_changed = false;
        // Alerts whose code no source mentions any more: every source is clear.
        for a in &self.devices[d as usize].alerts {
            if a.open() && !gathered.list.iter().any(|s| s.code == a.code && s.port == a.port) {
                let mut none = Sources::none(a.code.clone(), a.port, a.severity);
                none.data = a.data;
                gathered.list.push(none);
            }
        }
        for s in &gathered.list {
            let dev = &mut self.devices[d as usize];
            let i = match dev.alerts.iter().position(|a| a.code == s.code && a.port == s.port) {
                Some(i) => i,
                None if s.firing || s.pending => {
                    dev.alerts.push(Alert::closed(s.code.clone(), s.port, s.severity));
                    dev.alerts.len() - 1
                }
                None => continue,
            };
            let was_open = dev.alerts[i].open();
            let Some(change) = dev.alerts[i].judge(s, now, flap, &mut self.next_episode) else {
                continue;
            };
            let a = &dev.alerts[i];
            match (was_open, a.open()) {
                (false, true) => {
                    self.episodes.insert(a.episode, d);
                }
                (true, false) => {
                    self.episodes.remove(&a.episode);
                }
                _ => {}
            }
            if &*a.code == EventCode::Offline.as_str() && matches!(change, Change::Fired | Change::Resolved) {
                offline_changed = true;
            }
            if change == Change::Fired {
                let mut evidence = evidence(dev, state(&self.arenas, dev).0, a.port, &self.slots);
                if let Some(r) = &self.raised
                    && r.device == d
                    && r.code == a.code
                    && r.port == a.port
                {
                    evidence.extend(r.detail.iter().cloned());
                }
                dev.alerts[i].evidence = evidence;
            }
            self.after_change(d, i, change, now, out);
        }
        self.scratch = gathered;
        self.release_all(d, now, out);
        let dev = &mut self.devices[d as usize];
        dev.alerts.retain(|a| !a.forgettable(now, flap));
        dev.busy = state(&self.arenas, dev).1.iter().any(Inst::busy)
            || dev.ports.iter().any(|p| p.inst.iter().any(Inst::busy))
            || dev.alerts.iter().any(|a| a.open() || !a.starts.is_empty());
        if offline_changed {
            self.update_roots(d, now, out);
        }
    }

    /// Emits the effects of one alert change.
    fn after_change(&mut self, d: u32, i: usize, change: Change, now: i64, out: &mut Vec<Effect>) {
        let view = self.view(d, i);
        if change == Change::Resolved {
            let a = &mut self.devices[d as usize].alerts[i];
            if a.dispatched {
                a.dispatched = false;
                out.push(Effect::WorkOrder(WorkOrderIntent::Close { alert: view.clone() }));
            }
            if a.notified {
                a.notified = false;
                let key = self.group_key(d);
                let g = self.groups.entry(key).or_insert(Group {
                    due: now + self.settings.group_wait_ms,
                    critical: false,
                    entries: Vec::new(),
                });
                g.entries.push(Queued::Resolved(Box::new(view.clone())));
            }
        }
        out.push(Effect::Alert(AlertChange { change, alert: view }));
    }

    fn group_key(&self, d: u32) -> (String, Option<String>) {
        let dev = &self.devices[d as usize];
        (String::from(&*dev.site), self.building_name(dev))
    }

    /// What suppresses a device's alert now: the nearest failed parent.
    fn inhibitor(&self, d: u32, code: &str) -> Option<String> {
        let dev = &self.devices[d as usize];
        let fires = |root: Option<u32>| root.is_some_and(|r| self.devices[r as usize].alerts.iter().any(Alert::firing));
        match dev.root {
            Some(Root::Uplink) => return None,
            Some(Root::Site) => return fires(self.uplink_root).then(|| "uplink".to_owned()),
            Some(Root::Bus) => {
                let site = self.sites.get(&dev.site).and_then(|s| s.root);
                return fires(site).then(|| format!("site:{}", dev.site));
            }
            None => {}
        }
        if dev.bus.is_none() && (self.uplink_down_since.is_some() || fires(self.uplink_root)) {
            return Some("uplink".into());
        }
        if fires(self.sites.get(&dev.site).and_then(|s| s.root)) {
            return Some(format!("site:{}", dev.site));
        }
        if let Some(b) = dev.bus.and_then(|b| self.buses.get(usize::from(b)))
            && fires(b.root)
        {
            return Some(format!("bus:{}", b.name));
        }
        let offline = EventCode::Offline.as_str();
        if code != offline && dev.alerts.iter().any(|a| a.firing() && &*a.code == offline) {
            return Some(format!("offline:{}", dev.id));
        }
        None
    }

    fn in_maintenance(&self, d: u32, now: i64) -> bool {
        let dev = &self.devices[d as usize];
        self.windows
            .iter()
            .any(|w| w.covers(&dev.site, dev.class, dev.id.as_str(), now))
    }

    /// Queues every firing alert of a device that may now be notified; an
    /// alert whose maintenance or inhibition flag flips is `updated`, so the
    /// outside sees why it is (not) notified.
    fn release_all(&mut self, d: u32, now: i64, out: &mut Vec<Effect>) {
        let n = self.devices[d as usize].alerts.len();
        for i in 0..n {
            let code = {
                let a = &self.devices[d as usize].alerts[i];
                if !(a.firing() && !a.notified && !a.queued) {
                    continue;
                }
                a.code.clone()
            };
            let maintenance = self.in_maintenance(d, now);
            let inhibited = self.inhibitor(d, &code);
            let dev = &self.devices[d as usize];
            let stale = stale_ms(dev);
            let fresh_at = dev.fresh_at;
            let a = &mut self.devices[d as usize].alerts[i];
            let flipped = a.maintenance != maintenance || a.inhibited_by != inhibited;
            a.maintenance = maintenance;
            a.inhibited_by = inhibited;
            if flipped && a.fired_at.is_some() {
                let view = self.view(d, i);
                out.push(Effect::Alert(AlertChange {
                    change: Change::Updated,
                    alert: view,
                }));
            }
            let a = &mut self.devices[d as usize].alerts[i];
            if let Some(r) = a.rejudge_after {
                let offline_confirmed = &*a.code == EventCode::Offline.as_str() && now.saturating_sub(r) >= stale;
                if fresh_at > r || offline_confirmed {
                    a.rejudge_after = None;
                }
            }
            if a.maintenance || a.inhibited_by.is_some() || a.rejudge_after.is_some() {
                continue;
            }
            a.queued = true;
            let critical = a.severity == Severity::Critical;
            let episode = a.episode;
            let wait = self.settings.group_wait_ms;
            let key = self.group_key(d);
            let g = self.groups.entry(key).or_insert(Group {
                due: now + wait,
                critical: false,
                entries: Vec::new(),
            });
            if critical {
                g.due = now;
                g.critical = true;
            }
            g.entries.push(Queued::Firing { device: d, episode });
        }
    }

    /// Sends every group notification that is due.
    fn flush(&mut self, now: i64, out: &mut Vec<Effect>) {
        let due: Vec<(String, Option<String>)> = self
            .groups
            .iter()
            .filter(|(_, g)| g.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(g) = self.groups.remove(&key) else { continue };
            let mut n = Notification {
                site: key.0.clone(),
                building: key.1.clone(),
                at: now,
                critical: g.critical,
                firing: Vec::new(),
                resolved: Vec::new(),
            };
            for e in g.entries {
                match e {
                    Queued::Resolved(v) => n.resolved.push(*v),
                    Queued::Firing { device, episode } => {
                        let Some(i) = self.devices[device as usize]
                            .alerts
                            .iter()
                            .position(|a| a.episode == episode && a.firing())
                        else {
                            continue;
                        };
                        self.devices[device as usize].alerts[i].queued = false;
                        let code = self.devices[device as usize].alerts[i].code.clone();
                        // A parent may have failed while it waited: the
                        // storm this wait exists to catch.
                        if let Some(root) = self.inhibitor(device, &code) {
                            let a = &mut self.devices[device as usize].alerts[i];
                            if a.inhibited_by.as_deref() != Some(root.as_str()) {
                                a.inhibited_by = Some(root);
                                // Shown, so the API says why it was not notified.
                                let view = self.view(device, i);
                                out.push(Effect::Alert(AlertChange {
                                    change: Change::Updated,
                                    alert: view,
                                }));
                            }
                            continue;
                        }
                        let view = self.view(device, i);
                        let a = &mut self.devices[device as usize].alerts[i];
                        a.notified = true;
                        if a.dispatch && !a.dispatched {
                            a.dispatched = true;
                            out.push(Effect::WorkOrder(WorkOrderIntent::Open { alert: view.clone() }));
                        }
                        n.firing.push(view);
                    }
                }
            }
            if !n.firing.is_empty() || !n.resolved.is_empty() {
                out.push(Effect::Notify(n));
            }
        }
    }

    /// Sets the state of a root cause's pseudo-device and judges it.
    fn set_root(&mut self, root: Root, site: &str, name: &str, active: bool, now: i64, out: &mut Vec<Effect>) -> u32 {
        let code = match root {
            Root::Uplink => EventCode::UplinkLost,
            Root::Site => EventCode::SiteUnreachable,
            Root::Bus => EventCode::BusDown,
        };
        let r = self.insert(site, None, name, Some(root), now);
        let dev = &mut self.devices[r as usize];
        let held = !dev.node.is_empty();
        if active && !held {
            dev.node.push((code.as_str().into(), 0));
        } else if !active && held {
            dev.node.clear();
        }
        if active != held {
            self.eval(r, now, false, out);
            if !active {
                self.rejudge_children(root, site, r, now);
            }
        }
        r
    }

    /// After a parent recovered, its children's un-notified alerts wait for
    /// fresh data (or, for `offline`, a full window) before they notify, so a
    /// recovery is not replayed as a storm.
    fn rejudge_children(&mut self, root: Root, site: &str, r: u32, now: i64) {
        let children: Vec<u32> = match root {
            Root::Uplink => (0..self.devices.len())
                .filter_map(|i| u32::try_from(i).ok())
                .filter(|i| {
                    let d = &self.devices[*i as usize];
                    d.root.is_none() && d.bus.is_none()
                })
                .collect(),
            Root::Site => self.sites.get(site).map(|s| s.devices.clone()).unwrap_or_default(),
            Root::Bus => self
                .buses
                .iter()
                .find(|b| b.root == Some(r))
                .map(|b| b.devices.clone())
                .unwrap_or_default(),
        };
        for c in children {
            for a in &mut self.devices[c as usize].alerts {
                if a.firing() && !a.notified && !a.queued {
                    a.rejudge_after = Some(now);
                }
            }
        }
    }

    /// Re-infers the site and bus root causes after `d` went offline or came back.
    fn update_roots(&mut self, d: u32, now: i64, out: &mut Vec<Effect>) {
        let offline = EventCode::Offline.as_str();
        let is_off = |e: &Engine, i: &u32| {
            e.devices[*i as usize]
                .alerts
                .iter()
                .any(|a| a.firing() && &*a.code == offline)
        };
        let site = self.devices[d as usize].site.clone();
        if let Some(s) = self.sites.get(&site) {
            let all = s.devices.len() >= self.settings.site_min_devices && s.devices.iter().all(|i| is_off(self, i));
            let r = self.set_root(Root::Site, &site, "site", all, now, out);
            if let Some(s) = self.sites.get_mut(&site) {
                s.root = Some(r);
            }
        }
        if let Some(b) = self.devices[d as usize].bus.map(usize::from) {
            let all = self.buses[b].devices.len() >= self.settings.bus_min_devices
                && self.buses[b].devices.iter().all(|i| is_off(self, i));
            let name = format!("bus:{}", self.buses[b].name);
            let r = self.set_root(Root::Bus, &site, &name, all, now, out);
            self.buses[b].root = Some(r);
        }
    }

    /// The gateway's broker connection went up or down.
    pub fn uplink(&mut self, now: i64, up: bool, out: &mut Vec<Effect>) {
        match (up, self.uplink_down_since) {
            (false, None) => {
                // Wills just before the loss are the broker shutting down,
                // not the devices failing: the offline alerts they opened
                // resolve (a resolution within the group wait is never
                // notified), and the devices are judged afresh once the
                // broker is back.
                let grace = self.settings.will_grace_ms;
                let taken: Vec<u32> = std::mem::take(&mut self.recent_deaths)
                    .into_iter()
                    .filter(|(_, at)| now.saturating_sub(*at) <= grace)
                    .map(|(d, _)| d)
                    .collect();
                let mut judged = Vec::new();
                for d in taken {
                    let dev = &mut self.devices[d as usize];
                    if dev.dead && dev.bus.is_none() && dev.root.is_none() {
                        dev.dead = false;
                        dev.last_seen = dev.last_seen.max(now);
                        dev.judged_from = dev.judged_from.max(now);
                        judged.push(d);
                    }
                }
                for d in judged {
                    self.eval(d, now, false, out);
                }
                self.uplink_down_since = Some(now);
                self.flush(now, out);
            }
            (true, Some(_)) => {
                self.uplink_down_since = None;
                self.uplink_up_since = now;
                for dev in self.devices.iter_mut().filter(|d| d.root.is_none() && d.bus.is_none()) {
                    dev.judged_from = dev.judged_from.max(now);
                }
                let r = self.set_root(Root::Uplink, "", "uplink", false, now, out);
                self.uplink_root = Some(r);
                // Children whose alerts never notified re-judge on fresh data.
                self.rejudge_children(Root::Uplink, "", r, now);
                self.flush(now, out);
            }
            _ => {}
        }
    }

    /// Lets time pass: `for` and `keep_firing_for` run out, silent devices go
    /// offline, waiting notifications are sent.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Effect>) {
        if let Some(since) = self.uplink_down_since
            && now.saturating_sub(since) >= self.settings.uplink_for_ms
        {
            let r = self.set_root(Root::Uplink, "", "uplink", true, now, out);
            self.uplink_root = Some(r);
        }
        for i in 0..self.devices.len() {
            let d = &self.devices[i];
            if d.root.is_some() && !d.busy {
                continue;
            }
            let due = d.busy || (d.root.is_none() && self.offline_verdict(d, now) == Some(true));
            if due && let Ok(i) = u32::try_from(i) {
                self.eval(i, now, false, out);
            }
        }
        self.flush(now, out);
    }

    /// Acknowledges a firing alert.
    ///
    /// # Errors
    /// [`AckError`] when there is no such alert or it does not fire.
    pub fn ack(&mut self, now: i64, id: u64, by: &str, out: &mut Vec<Effect>) -> Result<AlertView, AckError> {
        let Some(&d) = self.episodes.get(&id) else {
            return Err(AckError::Unknown(id));
        };
        let Some(i) = self.devices[d as usize].alerts.iter().position(|a| a.episode == id) else {
            return Err(AckError::Unknown(id));
        };
        let changed = self.devices[d as usize].alerts[i]
            .ack(now, by)
            .map_err(|state| AckError::NotFiring { id, state })?;
        let view = self.view(d, i);
        if changed {
            out.push(Effect::Alert(AlertChange {
                change: Change::Acknowledged,
                alert: view.clone(),
            }));
        }
        Ok(view)
    }

    /// Every open alert (pending, firing, acknowledged), in device order.
    #[must_use]
    pub fn alerts(&self) -> Vec<AlertView> {
        let mut v = Vec::new();
        for (d, dev) in self.devices.iter().enumerate() {
            for (i, a) in dev.alerts.iter().enumerate() {
                if a.open()
                    && let Ok(d) = u32::try_from(d)
                {
                    v.push(self.view(d, i));
                }
            }
        }
        v
    }

    /// One open alert by id.
    #[must_use]
    pub fn alert(&self, id: u64) -> Option<AlertView> {
        let d = *self.episodes.get(&id)?;
        let i = self.devices[d as usize].alerts.iter().position(|a| a.episode == id)?;
        Some(self.view(d, i))
    }

    /// How many devices (and pseudo-devices) and rule instances it holds.
    #[must_use]
    pub fn size(&self) -> (usize, usize) {
        let inst = self
            .devices
            .iter()
            .map(|d| state(&self.arenas, d).1.len() + d.ports.iter().map(|p| p.inst.len()).sum::<usize>())
            .sum();
        (self.devices.len(), inst)
    }

    fn building_name(&self, dev: &Device) -> Option<String> {
        dev.building
            .and_then(|b| self.building_names.get(usize::from(b)))
            .map(ToString::to_string)
    }

    pub(crate) fn view(&self, d: u32, i: usize) -> AlertView {
        let dev = &self.devices[d as usize];
        let a = &dev.alerts[i];
        AlertView {
            id: a.episode,
            site: String::from(&*dev.site),
            class: dev.class.map_or("gateway", DeviceClass::as_str).to_owned(),
            device: dev.id.as_str().to_owned(),
            code: String::from(&*a.code),
            port: (a.port > 0).then_some(a.port),
            severity: a.severity,
            state: a.api_state(),
            since: a.since,
            fired_at: a.fired_at,
            acked_at: a.acked.as_ref().map(|(t, _)| *t),
            acked_by: a.acked.as_ref().map(|(_, b)| b.clone()),
            resolved_at: a.resolved_at,
            flapping: a.flapping,
            data: a.data,
            inhibited_by: a.inhibited_by.clone(),
            maintenance: a.maintenance,
            sources: a.sources.iter().map(|s| String::from(&**s)).collect(),
            building: self.building_name(dev),
            evidence: a.evidence.clone(),
            label_zh: std::borrow::Cow::Borrowed(protocol::EventCode::label_zh_of(&a.code)),
        }
    }
}

/// A device's values and its profile's rule instances.
pub(crate) fn state<'a>(arenas: &'a [Arena], dev: &Device) -> (&'a [Val], &'a [Inst]) {
    match dev.class.and_then(|c| arenas.get(usize::from(c.id()))) {
        Some(a) => (a.values(dev.slot), a.rules(dev.slot, dev.profile.device.len())),
        None => (&[], &[]),
    }
}

/// The same, to change.
pub(crate) fn state_mut<'a>(arenas: &'a mut [Arena], dev: &Device) -> (&'a mut [Val], &'a mut [Inst]) {
    match dev.class.and_then(|c| arenas.get_mut(usize::from(c.id()))) {
        Some(a) => a.state_mut(dev.slot, dev.profile.device.len()),
        None => (&mut [], &mut []),
    }
}

/// Values older than the offline window count as missing.
/// Whether a code the node holds raised is judged now: not when every rule
/// of the profile for that code has an `applies` that is false (the node
/// says `trapped`, the controller says the car is in inspection), unless
/// its alert is already open, which holds as the rules' own alerts do.
/// A code no rule raises (a vendor's) always applies.
fn node_code_applies(dev: &Device, values: &[Val], code: &str, port: u8, now: i64) -> bool {
    let open = dev
        .alerts
        .iter()
        .any(|a| a.open() && &*a.code == code && a.port == port);
    if open {
        return true;
    }
    let (rules, port_values): (&[crate::rule::Compiled], &[Val]) = if port == 0 {
        (&dev.profile.device, &[])
    } else {
        match dev.ports.get(usize::from(port) - 1) {
            Some(p) => (&dev.profile.port, &p.values),
            None => return true,
        }
    };
    let ctx = Ctx {
        dev: values,
        port: port_values,
        now,
        stale_ms: stale_ms(dev),
        dead: dev.dead,
        rate: None,
    };
    let mut any = false;
    for r in rules.iter().filter(|r| &*r.code == code) {
        any = true;
        if r.applies.as_ref().is_none_or(|a| a.holds(&ctx) != Some(false)) {
            return true;
        }
    }
    !any
}

pub(crate) fn stale_ms(dev: &Device) -> i64 {
    stale_ms_of(&dev.profile, dev.interval_ms)
}

fn stale_ms_of(profile: &Profile, interval_ms: u32) -> i64 {
    #[allow(clippy::cast_possible_truncation)]
    let ms = (profile.offline_intervals * f64::from(interval_ms)) as i64;
    ms.max(1)
}

fn ensure_port<'a>(dev: &'a mut Device, port: u8, s: &ClassSlots) -> Option<&'a mut Port> {
    if port == 0 || usize::from(port) > protocol::limits::MAX_PORTS {
        return None;
    }
    while dev.ports.len() < usize::from(port) {
        dev.ports.push(Port {
            values: vec![Val::default(); s.port_names.len()].into_boxed_slice(),
            inst: vec![Inst::default(); dev.profile.port.len()].into_boxed_slice(),
        });
    }
    dev.ports.get_mut(usize::from(port) - 1)
}

/// The verdicts gathered for one device's judgement, kept from one to the
/// next with the room of their name lists: a device with a pending alert
/// would otherwise allocate and free a list per source on every sample.
#[derive(Default)]
struct Gathered {
    list: Vec<Sources>,
    spare: Vec<Vec<Arc<str>>>,
}

impl Gathered {
    fn reset(&mut self) {
        for s in self.list.drain(..) {
            let mut names = s.names;
            if names.capacity() > 0 {
                names.clear();
                self.spare.push(names);
            }
        }
    }

    fn entry(&mut self, code: &Arc<str>, port: u8, severity: Severity) -> &mut Sources {
        let i = self
            .list
            .iter()
            .position(|s| s.code == *code && s.port == port)
            .unwrap_or_else(|| {
                let mut s = Sources::none(code.clone(), port, severity);
                s.names = self.spare.pop().unwrap_or_default();
                self.list.push(s);
                self.list.len() - 1
            });
        &mut self.list[i]
    }
}

fn add_source(sources: &mut Gathered, rule: &crate::rule::Compiled, inst: &Inst, port: u8, data: DataState) {
    let s = sources.entry(&rule.code, port, rule.severity);
    match inst.phase {
        crate::instance::Phase::Firing => {
            s.firing = true;
            s.names.push(rule.id.clone());
        }
        crate::instance::Phase::Pending => {
            s.pending = true;
            s.names.push(rule.id.clone());
        }
        crate::instance::Phase::Inactive => {}
    }
    if inst.phase != crate::instance::Phase::Inactive {
        s.since = s.since.min(inst.since);
        s.severity = s.severity.min(rule.severity);
        s.dispatch |= rule.dispatch;
    }
    // Only a source that holds the alert can leave it unjudged: a rule that
    // is inactive (or never had the metrics it reads, on this device) says
    // nothing either way.
    if !inst.known && inst.phase != crate::instance::Phase::Inactive {
        s.unknown = true;
        if data != DataState::Fresh && (s.data == DataState::Fresh || data == DataState::Stale) {
            s.data = data;
        }
    }
}

fn evidence(dev: &Device, values: &[Val], port: u8, slots: &BTreeMap<DeviceClass, ClassSlots>) -> Vec<Evidence> {
    let Some(s) = dev.class.and_then(|c| slots.get(&c)) else {
        return Vec::new();
    };
    let mut v: Vec<Evidence> = s
        .dev_names
        .iter()
        .zip(values)
        .filter(|(_, x)| !x.v.is_nan())
        .map(|(n, x)| Evidence {
            metric: n.clone(),
            port: None,
            value: x.v,
            at: x.at,
            text: None,
        })
        .collect();
    if let Some(p) = usize::from(port).checked_sub(1).and_then(|p| dev.ports.get(p)) {
        v.extend(
            s.port_names
                .iter()
                .zip(&p.values)
                .filter(|(_, x)| !x.v.is_nan())
                .map(|(n, x)| Evidence {
                    metric: n.clone(),
                    port: Some(port),
                    value: x.v,
                    at: x.at,
                    text: None,
                }),
        );
    }
    v
}

/// An event's detail as evidence, `port` left out (the alert has it).
fn detail_evidence(e: &protocol::Event, port: u8, now: i64) -> Vec<Evidence> {
    e.detail
        .iter()
        .filter(|(k, _)| *k != "port")
        .map(|(k, v)| {
            let (value, text) = match v {
                Scalar::Bool(b) => (f64::from(u8::from(*b)), None),
                Scalar::Number(n) => (*n, None),
                Scalar::Text(t) => (0.0, Some(t.to_string())),
            };
            Evidence {
                metric: k.to_owned(),
                port: (port > 0).then_some(port),
                value,
                at: now,
                text,
            }
        })
        .collect()
}

fn event_record(dev: &Device, e: &protocol::Event, now: i64, kind: &str) -> Record {
    Record {
        at: now,
        site: String::from(&*dev.site),
        class: dev.class.map_or("gateway", DeviceClass::as_str).to_owned(),
        device: dev.id.as_str().to_owned(),
        kind: kind.to_owned(),
        code: e.code.as_str().to_owned(),
        active: e.active,
        detail: e
            .detail
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Scalar::Bool(b) => b.to_string(),
                    Scalar::Number(n) => n.to_string(),
                    Scalar::Text(t) => t.to_string(),
                };
                (k.to_owned(), v)
            })
            .collect(),
    }
}

#[cfg(test)]
mod size {
    /// Every message reads its device's record and instances, and their size
    /// is most of the engine's memory (docs/performance.md): a field added
    /// here costs 100,000 devices its width, so growing them is a decision.
    #[test]
    fn the_hot_records_stay_small() {
        for (name, size, most) in [
            ("Device", size_of::<super::Device>(), 128),
            ("Inst", size_of::<super::Inst>(), 32),
            ("Val", size_of::<super::Val>(), 24),
            ("Port", size_of::<super::Port>(), 32),
        ] {
            assert!(size <= most, "{name} is {size} bytes, at most {most}");
        }
    }
}

#[cfg(test)]
mod flat {
    use super::Flat;

    #[test]
    fn a_flat_list_holds_exactly_its_elements() {
        let mut f: Flat<u32> = Flat::default();
        assert!(f.is_empty() && f.0.is_none());
        f.retain(|_| true);
        assert!(f.0.is_none());
        for x in 1..=5 {
            f.push(x);
            assert_eq!(f.0.as_ref().map(|b| b.len()), Some(x as usize));
        }
        assert_eq!(&*f, &[1, 2, 3, 4, 5]);
        f[1] = 20;
        f.retain(|x| x % 2 == 0 || *x == 5);
        assert_eq!(&*f, &[20, 4, 5]);
        assert_eq!((&f).into_iter().sum::<u32>(), 29);
        f.retain(|_| false);
        assert!(f.is_empty() && f.0.is_none(), "an emptied list frees its slice");
        assert!(Flat::<u32>::from(Vec::new()).0.is_none());
    }
}

#[cfg(test)]
mod arena {
    use protocol::{DeviceClass, Kind};

    use super::{DeviceRef, Engine, Input, Settings};
    use crate::instance::Phase;
    use crate::{Override, RuleSet};

    fn dev(id: &str) -> DeviceRef<'_> {
        DeviceRef {
            site: "s",
            class: DeviceClass::Firepump,
            device: id,
        }
    }

    fn sample(e: &mut Engine, now: i64, id: &str, pressure: f64) {
        let text = format!(r#"{{"v":1,"seq":1,"ts":0,"m":{{"network_pressure_mpa":{pressure},"auto_mode":false}}}}"#);
        let m = protocol::decode(Kind::Data, text.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
        e.observe(now, dev(id), Input::Message(&m), &mut Vec::new());
    }

    /// Devices of one class whose profiles differ in size share its arena:
    /// each keeps its own values and instances, and a snapshot puts them
    /// back where they were.
    #[test]
    fn devices_with_fewer_rules_keep_their_own_state() {
        let fewer = Override {
            device: Some("P-2".into()),
            disable: vec!["firepump.not_in_auto".into(), "firepump.low_tank_level".into()],
            ..Override::default()
        };
        let rules =
            RuleSet::new(crate::ruleset::builtin_packs(), &[], vec![fewer]).unwrap_or_else(|err| panic!("{err}"));
        let full = rules.profile(DeviceClass::Firepump, &[]).device.len();
        let mut e = Engine::new(rules.clone(), Settings::default());
        let ids = ["P-1", "P-2", "P-3", "a device id longer than the inline room"];
        for now in [1_000, 61_000] {
            for (i, id) in ids.iter().enumerate() {
                sample(&mut e, now, id, 0.01 * f64::from(u8::try_from(i).unwrap_or(0) + 1));
            }
        }
        assert_eq!(e.size(), (4, 4 * full - 2));
        for (i, id) in ids.iter().enumerate() {
            let s = e
                .device_snapshot("s", Some(DeviceClass::Firepump), id)
                .unwrap_or_else(|| panic!("{id}"));
            let p = s
                .values
                .iter()
                .find(|(n, _)| n == "network_pressure_mpa")
                .map(|(_, v)| v.v);
            assert_eq!(p, Some(0.01 * f64::from(u8::try_from(i).unwrap_or(0) + 1)), "{id}");
            let want = if *id == "P-2" { full - 2 } else { full };
            assert_eq!(s.rules.len(), want, "{id}");
            assert_eq!(s.rules.iter().any(|r| r.rule == "firepump.not_in_auto"), *id != "P-2");
            let low = s.rules.iter().find(|r| r.rule == "firepump.low_pressure");
            assert!(low.is_some_and(|r| r.inst.phase != Phase::Inactive), "{id}: {low:?}");
        }
        let snap = e.snapshot();
        let mut back = Engine::new(rules, Settings::default());
        back.restore(snap.clone());
        assert_eq!(back.snapshot(), snap);
        assert_eq!(back.alerts(), e.alerts());
        assert_eq!(back.size(), e.size());
    }
}
