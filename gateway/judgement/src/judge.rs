//! The judge: a device's samples and faults in, with the gateway's receive
//! time; frequent faults, trends and their verdicts out. Incremental: a
//! sample touches its device's last values and its bucket's gatherings, a
//! bucket's close pushes one value per indicator into its trend, a fault
//! slides its device's window. Nothing is scanned again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::indicator::{self, Acc, DEFS, Kind, Live, Reading};
use crate::trend::{Step, Trend};

/// Buckets begin at midnight in China (UTC+8, no daylight saving): a day
/// bucket is the compound's day, so its rush hours are in one bucket.
pub const DAY_OFFSET_MS: i64 = 8 * 3_600_000;

/// How long faults and flags are kept for the monthly report (a year and a month).
pub const KEEP_MS: i64 = 400 * 86_400_000;

/// The code of a device whose faults are frequent.
pub const FREQUENT_FAULTS: &str = "frequent_faults";
/// The code of a device whose indicators are degrading.
pub const DEGRADING: &str = "degrading";

/// How severe a verdict is (the alert's severity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `frequent_faults`: the bureau ranks property companies on it.
    Major,
    /// `degrading`: needs attention in working hours, before it faults.
    Minor,
}

/// One item of a verdict's evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// `fault` or the indicator's id.
    pub metric: String,
    /// The port, for a port's indicator.
    pub port: Option<u8>,
    /// The order id of a fault, or the indicator's last value.
    pub value: f64,
    /// When the fault was dispatched, or the bucket began.
    pub at: i64,
    /// What it is, in words.
    pub text: Option<String>,
}

/// A code raised or cleared on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device.
    pub device: String,
    /// [`FREQUENT_FAULTS`] or [`DEGRADING`].
    pub code: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// Raised (true) or cleared.
    pub active: bool,
    /// What it rests on.
    pub evidence: Vec<Evidence>,
}

/// A work-order-worthy fault of a device: an alert the desk dispatched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The alert's id (episode).
    pub alert: u64,
    /// The order it opened or joined.
    pub order: u64,
    /// Its code.
    pub code: String,
    /// When it was dispatched (gateway ms).
    pub at: i64,
    /// The contractor the order went to.
    pub contractor: Option<String>,
}

/// How many incidents `faults` are: a fault dispatched within `gap_ms` of
/// the first fault of the current incident belongs to it (one cause
/// surfaces all its codes within minutes; a repeat is a new call-out).
#[must_use]
pub fn incidents(faults: &[&Fault], gap_ms: i64) -> u32 {
    let mut at: Vec<i64> = faults.iter().map(|f| f.at).collect();
    at.sort_unstable();
    let mut n = 0u32;
    let mut start = None;
    for t in at {
        if start.is_none_or(|s: i64| t - s > gap_ms) {
            n = n.saturating_add(1);
            start = Some(t);
        }
    }
    n
}

/// One indicator's trend on one device (and port).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// The indicator.
    pub id: String,
    /// The port, 0 for the device.
    pub port: u8,
    /// Its trend.
    pub trend: Trend,
}

/// Everything the judge keeps of one device: its snapshot, as it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device.
    pub device: String,
    /// Its last values.
    pub live: Live,
    /// The bucket being gathered.
    pub bucket: Option<i64>,
    /// How long the device was heard in it (ms).
    pub observed_ms: i64,
    /// Its gatherings.
    pub accs: Vec<(String, u8, Acc)>,
    /// The trends.
    pub tracks: Vec<Track>,
    /// Faults of the last [`KEEP_MS`].
    pub faults: Vec<Fault>,
    /// Port cut-offs (time, port) within the fault window.
    pub cutoffs: Vec<(i64, u8)>,
    /// Since when `frequent_faults` is raised.
    pub frequent: Option<i64>,
    /// When `frequent_faults` was raised, for the monthly report.
    pub flagged: Vec<i64>,
    /// The tracks `degrading` is raised for (`id#port`).
    pub degrading: Vec<String>,
}

/// (site, class, device).
pub type Key = (String, String, String);

impl DeviceState {
    fn new(site: &str, class: &str, device: &str) -> DeviceState {
        DeviceState {
            site: site.to_owned(),
            class: class.to_owned(),
            device: device.to_owned(),
            live: Live::default(),
            bucket: None,
            observed_ms: 0,
            accs: Vec::new(),
            tracks: Vec::new(),
            faults: Vec::new(),
            cutoffs: Vec::new(),
            frequent: None,
            flagged: Vec::new(),
            degrading: Vec::new(),
        }
    }

    /// Its key.
    #[must_use]
    pub fn key(&self) -> Key {
        (self.site.clone(), self.class.clone(), self.device.clone())
    }

    /// Faults within the window ending at `now`.
    pub fn faults_within(&self, now: i64, window_ms: i64) -> impl Iterator<Item = &Fault> {
        self.faults
            .iter()
            .filter(move |f| f.at > now - window_ms && f.at <= now)
    }
}

/// The judge.
#[derive(Clone, Debug)]
pub struct Judge {
    settings: Settings,
    devices: BTreeMap<Key, DeviceState>,
    /// Devices whose state must be stored with the step that changed it
    /// (a bucket closed, a fault, a verdict).
    changed: BTreeSet<Key>,
    /// Devices whose gatherings moved since they were last stored.
    touched: BTreeSet<Key>,
}

/// The index of the bucket holding `t`.
#[must_use]
pub fn bucket_of(t: i64, bucket_ms: i64) -> i64 {
    (t + DAY_OFFSET_MS).div_euclid(bucket_ms)
}

/// When bucket `b` begins.
#[must_use]
pub fn bucket_start(b: i64, bucket_ms: i64) -> i64 {
    b * bucket_ms - DAY_OFFSET_MS
}

impl Judge {
    /// A judge with nothing seen.
    #[must_use]
    pub fn new(settings: Settings) -> Judge {
        Judge {
            settings,
            devices: BTreeMap::new(),
            changed: BTreeSet::new(),
            touched: BTreeSet::new(),
        }
    }

    /// Its settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Replaces all state with a snapshot (restart).
    pub fn restore(&mut self, devices: Vec<DeviceState>) {
        self.devices = devices.into_iter().map(|d| (d.key(), d)).collect();
        self.changed.clear();
        self.touched.clear();
    }

    /// Every device's state.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceState> {
        self.devices.values()
    }

    /// One device's state.
    #[must_use]
    pub fn device(&self, site: &str, class: &str, device: &str) -> Option<&DeviceState> {
        self.devices
            .get(&(site.to_owned(), class.to_owned(), device.to_owned()))
    }

    /// The states to store with this step: those a bucket, a fault or a
    /// verdict changed; with `all`, also those only samples moved.
    pub fn take_changed(&mut self, all: bool) -> Vec<DeviceState> {
        let mut keys = std::mem::take(&mut self.changed);
        if all {
            keys.append(&mut self.touched);
        } else {
            for k in &keys {
                self.touched.remove(k);
            }
        }
        keys.iter().filter_map(|k| self.devices.get(k).cloned()).collect()
    }

    fn entry(&mut self, site: &str, class: &str, device: &str) -> Key {
        let key = (site.to_owned(), class.to_owned(), device.to_owned());
        self.devices
            .entry(key.clone())
            .or_insert_with(|| DeviceState::new(site, class, device));
        key
    }

    /// One live sample of a device, received at `now` (the gateway's clock:
    /// see docs/judgement.md for why not the node's). Replayed samples are
    /// not given: when they happened is the node's word.
    pub fn sample(
        &mut self,
        now: i64,
        site: &str,
        class: &str,
        device: &str,
        readings: &[Reading<'_>],
        out: &mut Vec<Verdict>,
    ) {
        if !self.settings.enabled || !matches!(class, "elevator" | "firepump" | "charger") {
            return;
        }
        let key = self.entry(site, class, device);
        let s = &self.settings;
        let b = bucket_of(now, s.bucket_ms);
        let Some(st) = self.devices.get_mut(&key) else {
            return;
        };
        let edges = st.live.at.is_some_and(|t| now >= t && now - t <= s.gap_ms);
        let start = bucket_start(b, s.bucket_ms);
        match st.bucket {
            Some(old) if old >= b => {
                if edges && let Some(t) = st.live.at {
                    st.observed_ms += now - t;
                }
            }
            old => {
                if let Some(old) = old {
                    if edges && let Some(t) = st.live.at {
                        st.observed_ms += (start - t).max(0);
                    }
                    close(s, st, old, out);
                    self.changed.insert(key.clone());
                }
                st.bucket = Some(b);
                st.observed_ms = match st.live.at {
                    Some(t) if edges => now - t.max(start),
                    _ => 0,
                };
                st.accs.clear();
            }
        }
        let added = indicator::take(class, &mut st.live, now, readings, edges);
        for (id, port, _) in &added {
            if *id == "cutoffs" {
                st.cutoffs.push((now, *port));
                self.changed.insert(key.clone());
            }
        }
        indicator::add(&mut st.accs, &added);
        self.touched.insert(key);
    }

    /// A fault of a device was dispatched (an order opened or joined for
    /// one of its alerts). Faults of ignored codes and the judge's own
    /// codes are not counted; an alert counted once is not counted again.
    pub fn fault(&mut self, now: i64, site: &str, class: &str, device: &str, fault: Fault, out: &mut Vec<Verdict>) {
        if !self.settings.enabled
            || fault.code == FREQUENT_FAULTS
            || fault.code == DEGRADING
            || self.settings.fault_ignore.contains(&fault.code)
        {
            return;
        }
        let key = self.entry(site, class, device);
        let Some(st) = self.devices.get_mut(&key) else {
            return;
        };
        if st.faults.iter().any(|f| f.alert == fault.alert) {
            return;
        }
        st.faults.push(fault);
        self.changed.insert(key.clone());
        self.judge_faults(&key, now, out);
    }

    /// An order was closed as a false alarm: its faults were none.
    pub fn false_alarm(&mut self, now: i64, site: &str, class: &str, device: &str, order: u64, out: &mut Vec<Verdict>) {
        let key = (site.to_owned(), class.to_owned(), device.to_owned());
        let Some(st) = self.devices.get_mut(&key) else {
            return;
        };
        let before = st.faults.len();
        st.faults.retain(|f| f.order != order);
        if st.faults.len() != before {
            self.changed.insert(key.clone());
            self.judge_faults(&key, now, out);
        }
    }

    /// Time passes: buckets that ended are closed (a silent device's last
    /// day is still judged), and faults slide out of their window.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Verdict>) {
        if !self.settings.enabled {
            return;
        }
        let s = self.settings.clone();
        let b = bucket_of(now, s.bucket_ms);
        let keys: Vec<Key> = self.devices.keys().cloned().collect();
        for key in keys {
            let Some(st) = self.devices.get_mut(&key) else {
                continue;
            };
            if let Some(old) = st.bucket
                && old < b
            {
                if let Some(t) = st.live.at
                    && t <= bucket_start(old + 1, s.bucket_ms)
                {
                    // Heard until its last sample; the rest of the bucket
                    // is only counted if the device was heard within the gap.
                    let end = bucket_start(old + 1, s.bucket_ms);
                    st.observed_ms += (end - t).clamp(0, s.gap_ms);
                }
                close(&s, st, old, out);
                st.bucket = Some(b);
                st.observed_ms = 0;
                st.accs.clear();
                self.changed.insert(key.clone());
            }
            let Some(st) = self.devices.get_mut(&key) else {
                continue;
            };
            let window = s.fault_window_ms;
            let cut = st.cutoffs.len();
            st.cutoffs.retain(|(t, _)| *t > now - window);
            let kept = st.faults.len();
            st.faults.retain(|f| f.at > now - KEEP_MS.max(window));
            st.flagged.retain(|t| *t > now - KEEP_MS);
            if cut != st.cutoffs.len() || kept != st.faults.len() {
                self.changed.insert(key.clone());
            }
            if st.frequent.is_some() {
                self.judge_faults(&key, now, out);
            }
        }
    }

    fn judge_faults(&mut self, key: &Key, now: i64, out: &mut Vec<Verdict>) {
        let s = &self.settings;
        let Some(st) = self.devices.get_mut(key) else {
            return;
        };
        let within: Vec<&Fault> = st.faults_within(now, s.fault_window_ms).collect();
        let frequent = incidents(&within, s.fault_incident_ms) >= s.fault_threshold;
        let evidence = within
            .iter()
            .map(|f| Evidence {
                metric: "fault".into(),
                port: None,
                #[allow(clippy::cast_precision_loss)]
                value: f.order as f64,
                at: f.at,
                text: Some(format!("{} · 工单 order {} · 告警 alert {}", f.code, f.order, f.alert)),
            })
            .collect();
        let verdict = |active| Verdict {
            site: st.site.clone(),
            class: st.class.clone(),
            device: st.device.clone(),
            code: FREQUENT_FAULTS,
            severity: Severity::Major,
            active,
            evidence,
        };
        match (frequent, st.frequent) {
            (true, None) => {
                st.frequent = Some(now);
                st.flagged.push(now);
                out.push(verdict(true));
                self.changed.insert(key.clone());
            }
            (false, Some(_)) => {
                st.frequent = None;
                out.push(verdict(false));
                self.changed.insert(key.clone());
            }
            _ => {}
        }
    }
}

/// Closes bucket `b` of a device: one value per indicator into its trend,
/// and the `degrading` verdict when the set of degrading tracks changes.
fn close(s: &Settings, st: &mut DeviceState, b: i64, out: &mut Vec<Verdict>) {
    let start = bucket_start(b, s.bucket_ms);
    #[allow(clippy::cast_precision_loss)]
    let covered = st.observed_ms as f64 >= s.min_coverage * s.bucket_ms as f64;
    #[allow(clippy::cast_precision_loss)]
    let hours = st.observed_ms as f64 / 3_600_000.0;
    let mut values: Vec<(&'static indicator::Def, u8, f64)> = Vec::new();
    for d in DEFS.iter().filter(|d| d.class == st.class) {
        match d.kind {
            Kind::Rate => {
                // A covered bucket without an event is a zero, not a gap.
                if covered && hours > 0.0 {
                    let sum = st
                        .accs
                        .iter()
                        .find(|(i, p, _)| i == d.id && *p == 0)
                        .map_or(0.0, |a| a.2.sum);
                    values.push((d, 0, sum / hours));
                }
            }
            Kind::Mean => {
                for (_, p, a) in st.accs.iter().filter(|(i, _, _)| i == d.id) {
                    if a.n >= d.min_n.max(1) {
                        values.push((d, *p, a.sum / f64::from(a.n)));
                    }
                }
            }
        }
    }
    let mut moved = false;
    for (d, port, x) in values {
        let i = if let Some(i) = st.tracks.iter().position(|t| t.id == d.id && t.port == port) {
            i
        } else {
            st.tracks.push(Track {
                id: d.id.to_owned(),
                port,
                trend: Trend::default(),
            });
            st.tracks.len() - 1
        };
        let track = &mut st.tracks[i];
        moved |= track.trend.push(x, start, d.worse, d.floor, s) != Step::Quiet;
    }
    if !moved {
        return;
    }
    let degrading: Vec<&Track> = st.tracks.iter().filter(|t| t.trend.alarm_at.is_some()).collect();
    let names: Vec<String> = degrading.iter().map(|t| format!("{}#{}", t.id, t.port)).collect();
    if names == st.degrading {
        return;
    }
    let evidence = degrading
        .iter()
        .map(|t| {
            let (value, at) = t.trend.last.unwrap_or((0.0, start));
            let floor = indicator::def(&t.id).map_or(0.0, |d| d.floor);
            Evidence {
                metric: t.id.clone(),
                port: (t.port > 0).then_some(t.port),
                value,
                at,
                text: Some(format!(
                    "基线 baseline {:.3} ± {:.3}, CUSUM {:.1}",
                    t.trend.mean,
                    t.trend.sigma(s, floor),
                    t.trend.cusum
                )),
            }
        })
        .collect();
    let active = !names.is_empty();
    // Raised when the first track degrades, cleared when the last recovers;
    // a track joining or leaving in between changes the reasons (health),
    // not the alert.
    if active == st.degrading.is_empty() {
        out.push(Verdict {
            site: st.site.clone(),
            class: st.class.clone(),
            device: st.device.clone(),
            code: DEGRADING,
            severity: Severity::Minor,
            active,
            evidence,
        });
    }
    st.degrading = names;
}
