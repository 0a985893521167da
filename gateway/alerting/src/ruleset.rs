//! The rule set: the built-in packs, the configuration's own rules, and its
//! overrides per site, class and device, validated once and compiled into
//! *profiles*: all devices that share the same overrides share one compiled
//! rule list, so a compound of 400 elevators costs one compilation.
//!
//! Precedence, lowest first: the pack's `[params]`, then each matching
//! `[[alerting.overrides]]` from the least specific (class only) to the most
//! (site + class + device); among equally specific ones, file order.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocol::{DeviceClass, Severity};
use serde::{Deserialize, Serialize};

use crate::rule::{Compiled, Figure, Pack, RuleDef, RuleError, Scope, Slots};

/// The built-in packs, as shipped (`gateway/alerting/packs/*.toml`).
pub const PACKS: [(&str, &str); 3] = [
    ("elevator", include_str!("../packs/elevator.toml")),
    ("firepump", include_str!("../packs/firepump.toml")),
    ("charger", include_str!("../packs/charger.toml")),
];

/// Parses the built-in packs.
///
/// # Panics
/// Never in a release: a test parses every pack, so a broken one fails CI.
#[must_use]
pub fn builtin_packs() -> Vec<Pack> {
    PACKS
        .iter()
        .map(|(name, text)| toml::from_str(text).unwrap_or_else(|e| panic!("built-in pack {name}: {e}")))
        .collect()
}

/// Figures, rules and severities changed for some devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Only this compound.
    #[serde(default)]
    pub site: Option<String>,
    /// Only this class.
    #[serde(default)]
    pub class: Option<DeviceClass>,
    /// Only this device.
    #[serde(default)]
    pub device: Option<String>,
    /// The installation these devices serve (`sprinkler`): the pack's
    /// figures for that system (`[systems.sprinkler]`), applied at this
    /// override's precedence, before its own `params`.
    #[serde(default)]
    pub system: Option<String>,
    /// Parameters set (`low_pressure_mpa = 0.10`).
    #[serde(default)]
    pub params: BTreeMap<String, Figure>,
    /// Rules switched off, by id.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Severity per code (`low_pressure = "critical"`).
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
}

impl Override {
    fn matches(&self, site: &str, class: DeviceClass, device: &str) -> bool {
        self.site.as_deref().is_none_or(|s| s == site)
            && self.class.is_none_or(|c| c == class)
            && self.device.as_deref().is_none_or(|d| d == device)
    }

    fn specificity(&self) -> u8 {
        u8::from(self.site.is_some()) + u8::from(self.class.is_some()) + 2 * u8::from(self.device.is_some())
    }
}

/// A problem in the alerting configuration, with the dotted field it is in
/// (`alerting.overrides[2].params.low_pressure_mpa`) so `gateway check` can
/// point at its line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigProblem {
    /// The field, with array indices (0-based).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The rules of one profile, compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// The class.
    pub class: DeviceClass,
    /// Device-scope rules, in pack order.
    pub device: Vec<Compiled>,
    /// Port-scope rules, in pack order.
    pub port: Vec<Compiled>,
    /// Severity per code set by overrides (node-raised codes too).
    pub severity: BTreeMap<String, Severity>,
    /// Reporting intervals of silence that make the device offline (and its
    /// values stale).
    pub offline_intervals: f64,
}

/// Everything rules need, validated.
#[derive(Clone, Debug)]
pub struct RuleSet {
    packs: Vec<Pack>,
    overrides: Vec<Override>,
    slots: BTreeMap<DeviceClass, Slots>,
    default_profiles: BTreeMap<DeviceClass, Arc<Profile>>,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        field: field.into(),
        message: message.into(),
    }
}

fn rule_problem(prefix: &str, e: &RuleError) -> ConfigProblem {
    problem(format!("{prefix}.{}", e.field), e.to_string())
}

impl RuleSet {
    /// The built-in packs with no overrides.
    ///
    /// # Panics
    /// Never: the built-in packs are tested.
    #[must_use]
    pub fn builtin() -> RuleSet {
        RuleSet::new(builtin_packs(), &[], Vec::new()).unwrap_or_else(|e| panic!("built-in packs: {e}"))
    }

    /// Validates packs, extra rules (each with its `class`) and overrides.
    ///
    /// # Errors
    /// The first [`ConfigProblem`], naming its field.
    pub fn new(mut packs: Vec<Pack>, extra: &[RuleDef], overrides: Vec<Override>) -> Result<RuleSet, ConfigProblem> {
        for (i, r) in extra.iter().enumerate() {
            let Some(class) = r.class else {
                return Err(problem(
                    format!("alerting.rules[{i}].class"),
                    format!("rule `{}` needs a `class`", r.id),
                ));
            };
            if !packs.iter().any(|p| p.class == class) {
                packs.push(Pack {
                    class,
                    params: BTreeMap::new(),
                    rule: Vec::new(),
                    systems: BTreeMap::new(),
                });
            }
            if let Some(pack) = packs.iter_mut().find(|p| p.class == class) {
                pack.rule.push(r.clone());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut slots = BTreeMap::new();
        let mut default_profiles = BTreeMap::new();
        for pack in &packs {
            for r in &pack.rule {
                if !seen.insert(r.id.as_str()) {
                    return Err(problem(
                        "alerting.rules.id",
                        format!("rule id `{}` is used twice", r.id),
                    ));
                }
            }
            for (name, preset) in &pack.systems {
                for (k, v) in &preset.params {
                    let same_type = matches!(
                        (pack.params.get(k), v),
                        (Some(Figure::Number(_)), Figure::Number(_)) | (Some(Figure::Text(_)), Figure::Text(_))
                    );
                    if !same_type {
                        return Err(problem(
                            format!("pack `{}`, systems.{name}.params.{k}", pack.class),
                            format!("`{k}` is not a parameter of the pack, or not of its type"),
                        ));
                    }
                }
            }
            let mut s = Slots::default();
            let profile = compile(pack, &[], &mut s).map_err(|(i, e)| rule_problem(&rule_field(pack, i, extra), &e))?;
            slots.insert(pack.class, s);
            default_profiles.insert(pack.class, Arc::new(profile));
        }
        let set = RuleSet {
            packs,
            overrides,
            slots,
            default_profiles,
        };
        set.check_overrides()?;
        Ok(set)
    }

    /// Every override must name devices, set parameters that exist with the
    /// type of their default, disable rules that exist, and compile.
    fn check_overrides(&self) -> Result<(), ConfigProblem> {
        for (i, o) in self.overrides.iter().enumerate() {
            let at = |f: &str| format!("alerting.overrides[{i}].{f}");
            if o.site.is_none() && o.class.is_none() && o.device.is_none() {
                return Err(problem(at("site"), "an override needs `site`, `class` or `device`"));
            }
            let packs: Vec<&Pack> = self
                .packs
                .iter()
                .filter(|p| o.class.is_none_or(|c| c == p.class))
                .collect();
            for (name, value) in &o.params {
                let defaults: Vec<&Figure> = packs.iter().filter_map(|p| p.params.get(name)).collect();
                let Some(default) = defaults.first() else {
                    return Err(problem(
                        at(&format!("params.{name}")),
                        format!("no rule pack of these devices has a parameter `{name}`"),
                    ));
                };
                let same_type = matches!(
                    (default, value),
                    (Figure::Number(_), Figure::Number(_)) | (Figure::Text(_), Figure::Text(_))
                );
                if !same_type {
                    let want = if matches!(default, Figure::Number(_)) {
                        "a number"
                    } else {
                        "a duration such as \"20s\""
                    };
                    return Err(problem(at(&format!("params.{name}")), format!("`{name}` takes {want}")));
                }
            }
            if let Some(system) = &o.system {
                let known: Vec<&str> = packs
                    .iter()
                    .flat_map(|p| p.systems.keys().map(String::as_str))
                    .collect();
                if !known.contains(&system.as_str()) {
                    let list = if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    };
                    return Err(problem(
                        at("system"),
                        format!("no rule pack of these devices knows the system `{system}` (known: {list})"),
                    ));
                }
            }
            for (j, id) in o.disable.iter().enumerate() {
                if !packs.iter().any(|p| p.rule.iter().any(|r| &r.id == id)) {
                    return Err(problem(
                        at(&format!("disable[{j}]")),
                        format!("no rule `{id}` for these devices"),
                    ));
                }
            }
            for code in o.severity.keys() {
                if protocol::names::parse_name(code).is_err() {
                    return Err(problem(
                        at(&format!("severity.{code}")),
                        format!("`{code}` is not a code"),
                    ));
                }
            }
            for pack in packs {
                let mut s = self.slots.get(&pack.class).cloned().unwrap_or_default();
                compile(pack, &[o], &mut s).map_err(|(_, e)| {
                    let field = if e.field == "id" {
                        "params".to_owned()
                    } else {
                        format!("params ({})", e.field)
                    };
                    problem(at(&field), e.to_string())
                })?;
            }
        }
        Ok(())
    }

    /// The metric slots of a class.
    #[must_use]
    pub fn slots(&self, class: DeviceClass) -> Option<&Slots> {
        self.slots.get(&class)
    }

    /// The indices of the overrides that apply to a device, in precedence order.
    #[must_use]
    pub fn matching(&self, site: &str, class: DeviceClass, device: &str) -> Vec<u16> {
        let mut m: Vec<(u8, usize)> = self
            .overrides
            .iter()
            .enumerate()
            .filter(|(_, o)| o.matches(site, class, device))
            .map(|(i, o)| (o.specificity(), i))
            .collect();
        m.sort_unstable();
        m.into_iter().filter_map(|(_, i)| u16::try_from(i).ok()).collect()
    }

    /// The compiled profile for a class with the given overrides applied.
    #[must_use]
    pub fn profile(&self, class: DeviceClass, overrides: &[u16]) -> Arc<Profile> {
        let Some(pack) = self.packs.iter().find(|p| p.class == class) else {
            return Arc::new(Profile {
                class,
                device: Vec::new(),
                port: Vec::new(),
                severity: BTreeMap::new(),
                offline_intervals: 3.0,
            });
        };
        if overrides.is_empty()
            && let Some(p) = self.default_profiles.get(&class)
        {
            return p.clone();
        }
        let os: Vec<&Override> = overrides
            .iter()
            .filter_map(|i| self.overrides.get(usize::from(*i)))
            .collect();
        let mut s = self.slots.get(&class).cloned().unwrap_or_default();
        // Every override was compiled alone against its packs and parameters
        // keep their default's type, so a combination compiles too; should it
        // not, the pack's defaults are the safe fallback.
        match compile(pack, &os, &mut s) {
            Ok(p) => Arc::new(p),
            Err(_) => self
                .default_profiles
                .get(&class)
                .cloned()
                .unwrap_or_else(|| Arc::new(compile(pack, &[], &mut s).unwrap_or_else(|_| empty(class)))),
        }
    }

    /// The packs in use, with the configuration's own rules added to their class.
    #[must_use]
    pub fn packs(&self) -> &[Pack] {
        &self.packs
    }
}

fn empty(class: DeviceClass) -> Profile {
    Profile {
        class,
        device: Vec::new(),
        port: Vec::new(),
        severity: BTreeMap::new(),
        offline_intervals: 3.0,
    }
}

/// Where rule `i` of a pack was written, for messages.
fn rule_field(pack: &Pack, i: usize, extra: &[RuleDef]) -> String {
    let id = pack.rule.get(i).map(|r| r.id.as_str()).unwrap_or_default();
    match extra.iter().position(|r| r.id == id) {
        Some(j) => format!("alerting.rules[{j}]"),
        None => format!("built-in pack `{}`, rule `{id}`", pack.class),
    }
}

fn compile(pack: &Pack, overrides: &[&Override], slots: &mut Slots) -> Result<Profile, (usize, RuleError)> {
    let mut params = pack.params.clone();
    let mut severity = BTreeMap::new();
    let mut disabled: Vec<&str> = Vec::new();
    for o in overrides {
        if let Some(preset) = o.system.as_ref().and_then(|name| pack.systems.get(name)) {
            for (k, v) in &preset.params {
                if params.contains_key(k) {
                    params.insert(k.clone(), v.clone());
                }
            }
        }
        for (k, v) in &o.params {
            if params.contains_key(k) {
                params.insert(k.clone(), v.clone());
            }
        }
        severity.extend(o.severity.iter().map(|(k, v)| (k.clone(), *v)));
        disabled.extend(o.disable.iter().map(String::as_str));
    }
    let mut p = empty(pack.class);
    p.severity.clone_from(&severity);
    for (i, r) in pack.rule.iter().enumerate() {
        let c = r
            .compile(&params, slots, severity.get(&r.code).copied())
            .map_err(|e| (i, e))?;
        if disabled.contains(&r.id.as_str()) {
            continue;
        }
        if let crate::rule::Judge::Offline { intervals } = c.judge {
            p.offline_intervals = intervals;
        }
        match c.scope {
            Scope::Device => p.device.push(c),
            Scope::Port => p.port.push(c),
        }
    }
    Ok(p)
}
