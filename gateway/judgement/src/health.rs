//! Health per device and site, with its reasons, and the monthly report's
//! frequent-fault flags, read from the judge's state (live, or restored
//! from the store: the same function either way).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Settings;
use crate::indicator;
use crate::judge::{DeviceState, FREQUENT_FAULTS};
use crate::trend::Direction;

/// Points off per fault in the window, and at most.
pub const FAULT_POINTS: u32 = 10;
/// ... at most.
pub const FAULT_POINTS_MAX: u32 = 40;
/// Points off while `frequent_faults` is raised.
pub const FREQUENT_POINTS: u32 = 20;
/// Points off per degrading indicator.
pub const DEGRADING_POINTS: u32 = 25;
/// Points off per drifting indicator.
pub const DRIFTING_POINTS: u32 = 10;
/// Points off per port cut-off in the window, and at most.
pub const CUTOFF_POINTS: u32 = 5;
/// ... at most.
pub const CUTOFF_POINTS_MAX: u32 = 15;

/// The span a reason is about (gateway ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// From.
    pub from: i64,
    /// To.
    pub to: i64,
}

/// One reason of a score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    /// The indicator (`jockey_starts_per_h`), for a metric's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The fault's code, or `frequent_faults`, or `cutoff`, for a fault's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u8>,
    /// Chinese first, English beside it.
    pub label: String,
    /// The last value (a metric), or how many (faults).
    pub value: f64,
    /// The baseline (a metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// Its unit.
    pub unit: String,
    /// `learning`, `steady`, `drifting`, `degrading`, `improving`; for faults
    /// `frequent` at or above the threshold, else `counted`.
    pub trend: String,
    /// The span it is about.
    pub window: Window,
    /// Points it takes off.
    pub points: u32,
}

/// A device's health.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceHealth {
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device.
    pub device: String,
    /// 0–100, 100 healthy.
    pub score: u32,
    /// Why, the heaviest first.
    pub reasons: Vec<Reason>,
}

/// A device's health at `now`.
#[must_use]
#[allow(clippy::too_many_lines)] // one reason kind after another, in the order of the docs
pub fn device(st: &DeviceState, now: i64, s: &Settings) -> DeviceHealth {
    let mut reasons = Vec::new();
    let window = Window {
        from: now - s.fault_window_ms,
        to: now,
    };
    let mut by_code: BTreeMap<&str, u32> = BTreeMap::new();
    for f in st.faults_within(now, s.fault_window_ms) {
        *by_code.entry(&f.code).or_default() += 1;
    }
    let total: u32 = by_code.values().sum();
    let counted: Vec<&crate::judge::Fault> = st.faults_within(now, s.fault_window_ms).collect();
    let frequent = crate::judge::incidents(&counted, s.fault_incident_ms) >= s.fault_threshold;
    let mut fault_points = (total * FAULT_POINTS).min(FAULT_POINTS_MAX);
    for (code, n) in &by_code {
        let points = (n * FAULT_POINTS).min(fault_points);
        fault_points -= points;
        reasons.push(Reason {
            metric: None,
            fault: Some((*code).to_owned()),
            port: None,
            label: format!("故障 fault `{code}`"),
            value: f64::from(*n),
            baseline: None,
            unit: "次 times".into(),
            trend: if frequent { "frequent" } else { "counted" }.into(),
            window,
            points,
        });
    }
    if let Some(since) = st.frequent {
        reasons.push(Reason {
            metric: None,
            fault: Some(FREQUENT_FAULTS.into()),
            port: None,
            label: "故障频发 · frequent faults".into(),
            value: f64::from(total),
            baseline: None,
            unit: "次 times".into(),
            trend: "frequent".into(),
            window: Window { from: since, to: now },
            points: FREQUENT_POINTS,
        });
    }
    let mut ports: BTreeMap<u8, u32> = BTreeMap::new();
    for (_, p) in st.cutoffs.iter().filter(|(t, _)| *t > now - s.fault_window_ms) {
        *ports.entry(*p).or_default() += 1;
    }
    let mut cut_points = CUTOFF_POINTS_MAX;
    for (p, n) in ports {
        let points = (n * CUTOFF_POINTS).min(cut_points);
        cut_points -= points;
        reasons.push(Reason {
            metric: None,
            fault: Some("cutoff".into()),
            port: Some(p),
            label: "断电保护 · port cut-offs".into(),
            value: f64::from(n),
            baseline: None,
            unit: "次 times".into(),
            trend: "counted".into(),
            window,
            points,
        });
    }
    for t in &st.tracks {
        let Some(d) = indicator::def(&t.id) else {
            continue;
        };
        let Some((value, at)) = t.trend.last else {
            continue;
        };
        let dir = t.trend.direction(d.worse, d.floor, s);
        let points = match dir {
            Direction::Degrading => DEGRADING_POINTS,
            Direction::Drifting => DRIFTING_POINTS,
            _ => 0,
        };
        let from = match dir {
            Direction::Degrading | Direction::Drifting => t.trend.rising_since.unwrap_or(at),
            _ => at,
        };
        reasons.push(Reason {
            metric: Some(t.id.clone()),
            fault: None,
            port: (t.port > 0).then_some(t.port),
            label: d.label.to_owned(),
            value,
            baseline: (dir != Direction::Learning).then_some(t.trend.mean),
            unit: d.unit.to_owned(),
            trend: dir.as_str().to_owned(),
            window: Window {
                from,
                to: at + s.bucket_ms,
            },
            points,
        });
    }
    reasons.sort_by_key(|r| std::cmp::Reverse(r.points));
    let off: u32 = reasons.iter().map(|r| r.points).sum();
    DeviceHealth {
        site: st.site.clone(),
        class: st.class.clone(),
        device: st.device.clone(),
        score: 100u32.saturating_sub(off),
        reasons,
    }
}

/// A compound's health.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteHealth {
    /// The compound.
    pub site: String,
    /// The mean of its devices' scores.
    pub score: u32,
    /// Its devices.
    pub devices: usize,
    /// Its least healthy device's score.
    pub worst: u32,
}

/// The compounds' health from their devices'.
#[must_use]
pub fn sites(devices: &[DeviceHealth]) -> Vec<SiteHealth> {
    let mut by: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for d in devices {
        by.entry(&d.site).or_default().push(d.score);
    }
    by.into_iter()
        .map(|(site, scores)| {
            let n = u32::try_from(scores.len()).unwrap_or(u32::MAX).max(1);
            SiteHealth {
                site: site.to_owned(),
                score: scores.iter().sum::<u32>() / n,
                devices: scores.len(),
                worst: scores.iter().copied().min().unwrap_or(100),
            }
        })
        .collect()
}

/// The devices to inspect first: below 100, the least healthy first (ties:
/// the most points from faults, then by id), at most `top`.
#[must_use]
pub fn inspect_first(devices: &[DeviceHealth], top: usize) -> Vec<&DeviceHealth> {
    let mut out: Vec<&DeviceHealth> = devices.iter().filter(|d| d.score < 100).collect();
    out.sort_by(|a, b| {
        a.score
            .cmp(&b.score)
            .then_with(|| (&a.site, &a.device).cmp(&(&b.site, &b.device)))
    });
    out.truncate(top);
    out
}

/// A device flagged for frequent faults in a month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlaggedDevice {
    /// The compound.
    pub site: String,
    /// The class.
    pub class: String,
    /// The device.
    pub device: String,
    /// When `frequent_faults` was raised within the month.
    pub flagged_at: Vec<i64>,
    /// Its faults within the month.
    pub faults: u32,
    /// Who its faults' orders went to.
    pub contractors: Vec<String>,
}

/// A count of flagged devices and their faults, per compound or contractor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlagCount {
    /// The compound or contractor.
    pub id: String,
    /// Devices flagged.
    pub devices: u32,
    /// Their faults within the month.
    pub faults: u32,
}

/// The monthly report's frequent-fault flags (电梯故障频发), per device,
/// compound and contractor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FrequentReport {
    /// Devices flagged within the month.
    pub devices: Vec<FlaggedDevice>,
    /// Per compound.
    pub sites: Vec<FlagCount>,
    /// Per contractor (a device counts for each contractor its faults went to).
    pub contractors: Vec<FlagCount>,
}

/// The flags of `[from, to)` from the devices' states.
#[must_use]
pub fn frequent_report<'a>(states: impl IntoIterator<Item = &'a DeviceState>, from: i64, to: i64) -> FrequentReport {
    let mut r = FrequentReport::default();
    let mut sites: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut contractors: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for st in states {
        let flagged_at: Vec<i64> = st.flagged.iter().copied().filter(|t| (from..to).contains(t)).collect();
        if flagged_at.is_empty() {
            continue;
        }
        let faults: Vec<_> = st.faults.iter().filter(|f| (from..to).contains(&f.at)).collect();
        let n = u32::try_from(faults.len()).unwrap_or(u32::MAX);
        let mut names: Vec<String> = faults.iter().filter_map(|f| f.contractor.clone()).collect();
        names.sort();
        names.dedup();
        let e = sites.entry(st.site.clone()).or_default();
        e.0 += 1;
        e.1 += n;
        for c in &names {
            let e = contractors.entry(c.clone()).or_default();
            e.0 += 1;
            e.1 += u32::try_from(faults.iter().filter(|f| f.contractor.as_ref() == Some(c)).count()).unwrap_or(0);
        }
        r.devices.push(FlaggedDevice {
            site: st.site.clone(),
            class: st.class.clone(),
            device: st.device.clone(),
            flagged_at,
            faults: n,
            contractors: names,
        });
    }
    let count = |m: BTreeMap<String, (u32, u32)>| {
        m.into_iter()
            .map(|(id, (devices, faults))| FlagCount { id, devices, faults })
            .collect()
    };
    r.sites = count(sites);
    r.contractors = count(contractors);
    r
}
