//! The device registry: who is out there, in which session, how healthy its
//! stream is, and whether it is online. Pure: fed decoded messages and the
//! gateway's clock, so sessions, gaps and offline judgement are tested
//! message by message.
//!
//! Sessions follow the node's `bdseq` (birth starts one, the matching death
//! ends it). Within a session `seq` must grow by one: a jump counts the
//! missing messages as lost, a number already seen is a duplicate (dropped),
//! and a late one inside the 64-message window fills its gap (reordered).
//! Replays (`hist`) and messages of an older session are stored but do not
//! move the session.
//!
//! Births travel on the gateway's telemetry session and events on its alarm
//! session (two broker connections), so a new session's first samples or
//! events may arrive before its birth: a message of a *newer* session
//! (serial-number order of `bdseq`, as the node counts them up) starts that
//! session's tracking, and its birth, arriving late, fills its place in the
//! window instead of starting the count again.

use std::collections::BTreeMap;

use protocol::{DeviceClass, Message};
use serde::{Deserialize, Serialize};

use crate::ingest::Incoming;

/// Device clocks further off than this are flagged as skewed.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;
/// Interval assumed before a node's first birth (contract default).
pub const DEFAULT_INTERVAL_S: u32 = 60;

/// A device's identity: site, class and device id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceKey {
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device id.
    pub device: String,
}

impl DeviceKey {
    /// The key of a message's topic.
    #[must_use]
    pub fn of(incoming: &Incoming) -> Self {
        DeviceKey {
            site: incoming.topic.site.to_string(),
            class: incoming.topic.class.to_string(),
            device: incoming.topic.device.to_string(),
        }
    }
}

/// Whether a device is reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Messages arrive.
    Online,
    /// Its session ended with a `death`.
    Offline,
    /// Silent for 3 × its interval: the contract's offline judgement by time.
    Stale,
}

/// The statuses last told on the event stream, so only changes are told.
///
/// A status moves with messages (a birth, a death) and with time alone (3
/// silent intervals make a device stale), so it is looked at on the
/// pipeline's tick rather than where messages are observed.
#[derive(Debug, Default)]
pub struct StatusWatch {
    known: std::collections::HashMap<DeviceKey, Status>,
    primed: bool,
}

impl StatusWatch {
    /// The devices whose status differs from the last look, with their new
    /// status and last-seen time. A device seen for the first time counts,
    /// except at the very first look, which only learns what is (a restart
    /// does not tell every device again).
    pub fn changes(&mut self, registry: &Registry, now_ms: i64) -> Vec<(DeviceKey, Status, i64)> {
        let mut out = Vec::new();
        for d in registry.iter() {
            let status = Registry::status(d, now_ms);
            // Looked up before inserting: most ticks change nothing, and a
            // key is cloned only for a change.
            if self.known.get(&d.key) == Some(&status) {
                continue;
            }
            self.known.insert(d.key.clone(), status);
            if self.primed {
                out.push((d.key.clone(), status, d.last_seen_ms));
            }
        }
        self.primed = true;
        out
    }
}

/// What the registry keeps about a device (persisted across restarts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Identity.
    pub key: DeviceKey,
    /// Firmware version from the last birth.
    pub fw: Option<String>,
    /// Model from the last birth.
    pub model: Option<String>,
    /// Config hash from the last birth.
    pub cfg: Option<String>,
    /// Reporting interval from the last birth.
    pub interval_s: u32,
    /// Current session.
    pub bdseq: Option<u32>,
    /// Highest `seq` seen in the session.
    pub last_seq: Option<u32>,
    /// Which of the 64 `seq` before `last_seq` were seen (bit `i` is `last_seq − 1 − i`).
    pub seen: u64,
    /// A death ended the session.
    pub died: bool,
    /// Gateway time of the last message.
    pub last_seen_ms: i64,
    /// Receive time minus device time of the last live message.
    pub skew_ms: Option<i64>,
    /// Messages missing from sessions (gaps in `seq`).
    pub lost: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Messages that arrived late but filled their gap.
    pub reordered: u64,
    /// The current session was started by a message that overtook its
    /// birth (the birth, when it comes, fills its place instead of starting
    /// the session again).
    #[serde(default)]
    pub awaiting_birth: bool,
}

/// What observing one message found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Seen before in this session: do not store or act on it again.
    pub duplicate: bool,
    /// Messages found missing before this one.
    pub lost: u32,
    /// It arrived after a later one.
    pub reordered: bool,
    /// The device clock is off by more than [`MAX_SKEW_MS`].
    pub skewed: bool,
    /// The device came (back) online with this message.
    pub came_online: bool,
}

/// All devices, in a deterministic order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registry {
    devices: BTreeMap<DeviceKey, Device>,
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry restored from persisted devices.
    #[must_use]
    pub fn restore(devices: impl IntoIterator<Item = Device>) -> Self {
        Registry {
            devices: devices.into_iter().map(|d| (d.key.clone(), d)).collect(),
        }
    }

    /// A device's state.
    #[must_use]
    pub fn get(&self, key: &DeviceKey) -> Option<&Device> {
        self.devices.get(key)
    }

    /// All devices.
    pub fn iter(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// A device's status at gateway time `now_ms`.
    #[must_use]
    pub fn status(device: &Device, now_ms: i64) -> Status {
        if device.died {
            Status::Offline
        } else if now_ms - device.last_seen_ms > 3 * i64::from(device.interval_s) * 1000 {
            Status::Stale
        } else {
            Status::Online
        }
    }

    /// Observes one message; returns what it revealed about the stream.
    pub fn observe(&mut self, incoming: &Incoming) -> Observation {
        self.observe_device(incoming).0
    }

    /// [`Registry::observe`], and the device after it (the pipeline's hot
    /// path: one key and one lookup per message, not two).
    pub fn observe_device(&mut self, incoming: &Incoming) -> (Observation, &Device) {
        let key = DeviceKey::of(incoming);
        let now = incoming.received_ms;
        let d = self.devices.entry(key.clone()).or_insert_with(|| Device {
            key,
            fw: None,
            model: None,
            cfg: None,
            interval_s: DEFAULT_INTERVAL_S,
            bdseq: None,
            last_seq: None,
            seen: 0,
            died: false,
            last_seen_ms: now,
            skew_ms: None,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            awaiting_birth: false,
        });
        let mut obs = Observation {
            came_online: d.died || d.last_seq.is_none() && d.bdseq.is_none(),
            ..Default::default()
        };
        let header = incoming.message.header();
        match &incoming.message {
            Message::Birth(b) => {
                d.fw = Some(b.fw.to_string());
                d.model = Some(b.model.to_string());
                d.cfg = Some(b.cfg.to_string());
                d.interval_s = b.interval_s.max(1);
                if d.awaiting_birth && d.bdseq == Some(b.bdseq) && !b.hist {
                    // Its session was started by a message that overtook it.
                    track_seq(d, b.seq, &mut obs);
                    d.awaiting_birth = false;
                } else {
                    // A new session (a node that counts its sessions from 1
                    // again after a reboot, or a poller after the gateway's
                    // restart, reuses a bdseq: a birth always starts one).
                    d.awaiting_birth = false;
                    d.bdseq = Some(b.bdseq);
                    d.last_seq = Some(b.seq);
                    d.seen = 0;
                }
                d.died = false;
                obs.came_online = true;
            }
            Message::Death(death) => {
                // A will from an older session is stale: the node is already back.
                if d.bdseq.is_none_or(|b| b == death.bdseq) {
                    d.died = true;
                }
                d.last_seen_ms = now;
                return (Observation::default(), d);
            }
            _ => {
                let mut adopted = false;
                if let (Some(b), Some(seq), false) = (header.bdseq, header.seq, header.hist)
                    && d.bdseq.is_none_or(|cur| newer(b, cur))
                {
                    // A newer (or the first) session whose birth has not arrived yet: the
                    // messages before this one (its birth among them) are
                    // missing until they come, as a gap would be.
                    d.bdseq = Some(b);
                    d.last_seq = Some(seq);
                    d.seen = 0;
                    d.lost += u64::from(seq.min(64));
                    d.awaiting_birth = true;
                    adopted = true;
                }
                let same_session = header.bdseq.is_none_or(|b| Some(b) == d.bdseq);
                if let (Some(seq), false, true, false) = (header.seq, header.hist, same_session, adopted) {
                    track_seq(d, seq, &mut obs);
                }
                if d.died && !header.hist {
                    d.died = false;
                    obs.came_online = true;
                }
            }
        }
        if let (Some(ts), false) = (header.ts, header.hist) {
            let skew = now - ts.as_millis();
            d.skew_ms = Some(skew);
            obs.skewed = skew.abs() > MAX_SKEW_MS;
        }
        d.last_seen_ms = now;
        (obs, d)
    }

    /// Devices of one class.
    pub fn of_class(&self, class: DeviceClass) -> impl Iterator<Item = &Device> {
        let name = class.as_str();
        self.devices.values().filter(move |d| d.key.class == name)
    }
}

/// Whether session `b` comes after `cur` in the node's count (serial-number
/// arithmetic, so the count may wrap; a node that restarts its count from 0
/// is seen again at its birth).
fn newer(b: u32, cur: u32) -> bool {
    b != cur && b.wrapping_sub(cur) < 1 << 31
}

fn track_seq(d: &mut Device, seq: u32, obs: &mut Observation) {
    let Some(last) = d.last_seq else {
        d.last_seq = Some(seq);
        return;
    };
    match seq.cmp(&last) {
        std::cmp::Ordering::Greater => track_ahead(d, seq, last, obs),
        std::cmp::Ordering::Equal => {
            d.duplicates += 1;
            obs.duplicate = true;
        }
        std::cmp::Ordering::Less => track_behind(d, seq, last, obs),
    }
}

fn track_ahead(d: &mut Device, seq: u32, last: u32, obs: &mut Observation) {
    {
        let gap = seq - last - 1;
        d.lost += u64::from(gap);
        obs.lost = gap;
        // Shift the window: `last` itself becomes seen, the gap unseen.
        let shift = seq - last;
        d.seen = if shift >= 64 {
            0
        } else {
            (d.seen << shift) | (1 << (shift - 1))
        };
        d.last_seq = Some(seq);
    }
}

fn track_behind(d: &mut Device, seq: u32, last: u32, obs: &mut Observation) {
    {
        let back = last - seq - 1;
        if back >= 64 || d.seen & (1 << back) != 0 {
            d.duplicates += 1;
            obs.duplicate = true;
        } else {
            d.seen |= 1 << back;
            d.reordered += 1;
            d.lost = d.lost.saturating_sub(1);
            obs.reordered = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, seen: i64) -> Device {
        Device {
            key: DeviceKey {
                site: "s".into(),
                class: "elevator".into(),
                device: name.into(),
            },
            fw: None,
            model: None,
            cfg: None,
            interval_s: DEFAULT_INTERVAL_S,
            bdseq: Some(1),
            last_seq: None,
            seen: 0,
            died: false,
            last_seen_ms: seen,
            skew_ms: None,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            awaiting_birth: false,
        }
    }

    #[test]
    fn the_watch_tells_each_status_change_once_and_learns_silently_at_first() {
        let a = device("A", 0);
        let mut r = Registry::restore([a.clone()]);
        let mut w = StatusWatch::default();
        assert!(w.changes(&r, 1_000).is_empty(), "the first look only learns");
        assert!(w.changes(&r, 2_000).is_empty(), "nothing changed");
        // Silent for 3 intervals (60 s each): stale, told once.
        assert_eq!(w.changes(&r, 181_000), vec![(a.key.clone(), Status::Stale, 0)]);
        assert!(w.changes(&r, 182_000).is_empty());
        // A new device is told as it appears; a death is told.
        let b = device("B", 181_500);
        let mut dead = a.clone();
        dead.died = true;
        r = Registry::restore([dead, b.clone()]);
        let mut told = w.changes(&r, 182_000);
        told.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            told,
            vec![(a.key, Status::Offline, 0), (b.key, Status::Online, 181_500)]
        );
    }
}
