//! The `[alerting]` section of the gateway's configuration: which packs, the
//! site's own rules, overrides, maintenance windows, buildings and timings.
//! Parsed with serde; [`AlertingConfig::build`] validates it into what the
//! engine takes, naming the field of the first problem so `gateway check`
//! can point at its line.

use protocol::DeviceClass;
use serde::{Deserialize, Serialize};

use crate::alert::Flap;
use crate::engine::{Settings, Window};
use crate::rule::{RuleDef, duration_ms};
use crate::ruleset::{ConfigProblem, Override, RuleSet, builtin_packs};

/// `[alerting]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// The built-in packs in use (default: all three classes).
    pub packs: Option<Vec<DeviceClass>>,
    /// The site's own rules (`[[alerting.rules]]`, each with `class`).
    pub rules: Vec<RuleDef>,
    /// Overrides per site, class and device (`[[alerting.overrides]]`).
    pub overrides: Vec<Override>,
    /// Declared maintenance windows (`[[alerting.maintenance]]`).
    pub maintenance: Vec<MaintenanceConfig>,
    /// Devices by building, for grouping notifications (`[[alerting.buildings]]`).
    pub buildings: Vec<BuildingConfig>,
    /// Group wait of non-critical notifications (default `30s`).
    pub group_wait: Option<String>,
    /// Flap window (default `10m`).
    pub flap_window: Option<String>,
    /// Episodes within the flap window that make an alert flapping (default 3).
    pub flap_starts: Option<u8>,
    /// Quiet time before a flapping alert resolves (default `10m`).
    pub flap_hold: Option<String>,
    /// How long the broker must be lost before `uplink_lost` (default `30s`).
    pub uplink_for: Option<String>,
    /// Wills this close to losing the broker or getting it back are the
    /// broker's restart, judged as silence (default `5s`).
    pub will_grace: Option<String>,
    /// Devices of a compound before "all silent" is `site_unreachable` (default 2).
    pub site_min_devices: Option<usize>,
    /// Devices of a Modbus bus before "all silent" is `bus_down` (default 2).
    pub bus_min_devices: Option<usize>,
}

/// `[[alerting.maintenance]]`: a declared window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// The compound (all if absent).
    #[serde(default)]
    pub site: Option<String>,
    /// The class (all if absent).
    #[serde(default)]
    pub class: Option<DeviceClass>,
    /// The device (all if absent).
    #[serde(default)]
    pub device: Option<String>,
    /// Start, RFC 3339 (`2026-12-01T08:00:00+08:00`).
    pub from: String,
    /// End, RFC 3339.
    pub to: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// `[[alerting.buildings]]`: which devices stand in one building.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildingConfig {
    /// The compound.
    pub site: String,
    /// The building's name (`3号楼`).
    pub building: String,
    /// Its devices.
    pub devices: Vec<String>,
}

/// What [`AlertingConfig::build`] yields.
pub struct Built {
    /// The rules.
    pub rules: RuleSet,
    /// The timings.
    pub settings: Settings,
    /// Maintenance windows.
    pub windows: Vec<Window>,
    /// (site, device, building).
    pub buildings: Vec<(String, String, String)>,
}

/// Parses RFC 3339 with any offset (`Z`, `+08:00`) into ms since the epoch.
///
/// # Errors
/// The text, when it is not RFC 3339.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not an RFC 3339 time (2026-12-01T08:00:00+08:00)");
    // RFC 3339 is ASCII, and the offset is cut off by byte position below:
    // anything else would be cut inside a character (`+08:维保`, found by
    // the `config` fuzz target) and panic.
    if !t.is_ascii() {
        return Err(bad());
    }
    let (base, offset_ms) = match t.len().checked_sub(6).map(|i| t.split_at(i)) {
        Some((base, off)) if (off.starts_with('+') || off.starts_with('-')) && off.as_bytes().get(3) == Some(&b':') => {
            let h: i64 = off[1..3].parse().map_err(|_| bad())?;
            let m: i64 = off[4..6].parse().map_err(|_| bad())?;
            let sign = if off.starts_with('-') { -1 } else { 1 };
            (base, sign * (h * 3_600_000 + m * 60_000))
        }
        _ => (t, 0),
    };
    let utc = humantime::parse_rfc3339_weak(base.trim_end_matches('Z')).map_err(|_| bad())?;
    let ms = utc
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad())
        .and_then(|d| i64::try_from(d.as_millis()).map_err(|_| bad()))?;
    Ok(ms - offset_ms)
}

impl AlertingConfig {
    /// Validates and builds what the engine takes.
    ///
    /// # Errors
    /// The first [`ConfigProblem`], naming its field.
    pub fn build(&self) -> Result<Built, ConfigProblem> {
        let p = |field: String, message: String| ConfigProblem { field, message };
        let packs = builtin_packs()
            .into_iter()
            .filter(|pk| self.packs.as_ref().is_none_or(|l| l.contains(&pk.class)))
            .collect();
        let rules = RuleSet::new(packs, &self.rules, self.overrides.clone())?;
        let dur = |field: &str, v: &Option<String>, default: i64| {
            v.as_deref()
                .map_or(Ok(default), duration_ms)
                .map_err(|e| p(format!("alerting.{field}"), e))
        };
        let d = Settings::default();
        let settings = Settings {
            group_wait_ms: dur("group_wait", &self.group_wait, d.group_wait_ms)?,
            flap: Flap {
                window_ms: dur("flap_window", &self.flap_window, d.flap.window_ms)?,
                starts: self.flap_starts.unwrap_or(d.flap.starts),
                hold_ms: dur("flap_hold", &self.flap_hold, d.flap.hold_ms)?,
            },
            uplink_for_ms: dur("uplink_for", &self.uplink_for, d.uplink_for_ms)?,
            will_grace_ms: dur("will_grace", &self.will_grace, d.will_grace_ms)?,
            site_min_devices: self.site_min_devices.unwrap_or(d.site_min_devices),
            bus_min_devices: self.bus_min_devices.unwrap_or(d.bus_min_devices),
        };
        if !(2..=20).contains(&settings.flap.starts) {
            return Err(p("alerting.flap_starts".into(), "must be 2 to 20".into()));
        }
        if settings.site_min_devices < 2 || settings.bus_min_devices < 2 {
            return Err(p(
                "alerting.site_min_devices".into(),
                "a root cause needs at least 2 devices (one device is its own offline alert)".into(),
            ));
        }
        let mut windows = Vec::new();
        for (i, m) in self.maintenance.iter().enumerate() {
            let at = |f: &str| format!("alerting.maintenance[{i}].{f}");
            let from = parse_time(&m.from).map_err(|e| p(at("from"), e))?;
            let to = parse_time(&m.to).map_err(|e| p(at("to"), e))?;
            if to <= from {
                return Err(p(at("to"), "must be after `from`".into()));
            }
            windows.push(Window {
                site: m.site.clone(),
                class: m.class,
                device: m.device.clone(),
                from,
                to,
                reason: m.reason.clone(),
            });
        }
        let mut buildings = Vec::new();
        for (i, b) in self.buildings.iter().enumerate() {
            if b.building.trim().is_empty() {
                return Err(p(
                    format!("alerting.buildings[{i}].building"),
                    "must not be empty".into(),
                ));
            }
            for dev in &b.devices {
                if buildings
                    .iter()
                    .any(|(s, d, _): &(String, String, String)| s == &b.site && d == dev)
                {
                    return Err(p(
                        format!("alerting.buildings[{i}].devices"),
                        format!("device `{dev}` is in two buildings"),
                    ));
                }
                buildings.push((b.site.clone(), dev.clone(), b.building.clone()));
            }
        }
        Ok(Built {
            rules,
            settings,
            windows,
            buildings,
        })
    }
}
