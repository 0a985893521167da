//! The dispatch policy: which alert codes become work orders, who gets them,
//! and by when. `[dispatch]` of the gateway's configuration, parsed with
//! serde and validated by [`PolicyConfig::build`], which names the field of
//! the first problem so `gateway check` can point at its line.
//!
//! Built-in defaults are the contract's SLA table (§4); entries of the
//! configuration come after them and the last matching entry wins, so a site
//! writes only what differs ("our lifts contractor arrives within 20 min").
//!
//! Each code also says who is **sent** (gets the order: the class's
//! contractor, the property manager, or the node's installer) and who is
//! **told** (gets the alert notification), so an e-bike in a car goes to
//! the property's staff and a silent node to whoever installed it, not to
//! the lift contractor. A compound's `area` (urban or rural, from
//! `[[sites]]`) selects the contract's "30 min in cities, 1 h elsewhere".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The classes a policy entry may name (`gateway` for root causes such as
/// `uplink_lost`).
pub const CLASSES: [&str; 4] = ["elevator", "firepump", "charger", "gateway"];

/// `[dispatch]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The bureau's contact, told when an order is flagged for it (a
    /// passenger trapped past 1 h).
    pub bureau: Option<String>,
    /// Who gets the orders of a site and class (`[[dispatch.assign]]`).
    pub assign: Vec<AssignConfig>,
    /// Deadlines, on top of the built-in table (`[[dispatch.sla]]`).
    pub sla: Vec<SlaConfig>,
    /// Periodic duties, on top of the built-in ones (`[[dispatch.duties]]`).
    pub duties: Vec<DutyConfig>,
    /// Leave out the built-in duties (elevator maintenance every 15 days,
    /// fire-pump self-test weekly).
    pub no_builtin_duties: bool,
    /// When each device's duty was last done before the gateway knew it
    /// (`[[dispatch.last_done]]`): its first due date counts from then.
    pub last_done: Vec<LastDoneConfig>,
}

/// Where a compound is, for the contract's "on site within 30 min in
/// cities, 1 h elsewhere" (`[[sites]] area`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// In a city (the default: most compounds with these systems are).
    #[default]
    Urban,
    /// Elsewhere: the contractor has further to come.
    Rural,
}

/// Who, of a site and class's assignment, is sent an order or told of an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The class's maintenance contractor (`[[dispatch.assign]] contractor`).
    Contractor,
    /// The property manager: the compound's own staff.
    Manager,
    /// Whoever installed and keeps the sensing nodes.
    Installer,
}

impl Role {
    /// Its name in the configuration.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Contractor => "contractor",
            Role::Manager => "manager",
            Role::Installer => "installer",
        }
    }
}

/// `[[dispatch.last_done]]`: a duty done before the gateway knew the device
/// (the contractor's maintenance log, a pump's last self-test run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastDoneConfig {
    /// The compound.
    pub site: String,
    /// The device.
    pub device: String,
    /// The duty (`maintenance`, `self_test`).
    pub duty: String,
    /// When it was done (RFC 3339 with an offset).
    pub at: String,
}

/// `[[dispatch.assign]]`: the contractor, its backup and the property
/// manager of a site and class. The last matching entry wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignConfig {
    /// The compound (every compound if absent).
    #[serde(default)]
    pub site: Option<String>,
    /// The class (every class if absent).
    #[serde(default)]
    pub class: Option<String>,
    /// The maintenance contractor's contact id.
    #[serde(default)]
    pub contractor: Option<String>,
    /// The backup contractor, re-dispatched to when a deadline is missed.
    #[serde(default)]
    pub backup: Option<String>,
    /// The property manager, told of every escalation and every notification.
    #[serde(default)]
    pub manager: Option<String>,
    /// Whoever installed and keeps the sensing nodes: sent `offline` orders
    /// (a silent node is theirs to fix, not the lift's contractor's).
    #[serde(default)]
    pub installer: Option<String>,
}

/// `[[dispatch.sla]]`: deadlines for some codes. The last matching entry wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// The compound (every compound if absent).
    #[serde(default)]
    pub site: Option<String>,
    /// The class (every class if absent).
    #[serde(default)]
    pub class: Option<String>,
    /// The compounds of this area only (`[[sites]] area`; every area if absent).
    #[serde(default)]
    pub area: Option<Area>,
    /// The codes (every code of the class if empty).
    #[serde(default)]
    pub codes: Vec<String>,
    /// Whether these codes dispatch at all (default true).
    #[serde(default)]
    pub dispatch: Option<bool>,
    /// Who gets the order: the first of these roles the assignment has a
    /// contact for (`["installer", "manager"]`).
    #[serde(default)]
    pub send: Option<Vec<Role>>,
    /// Who is told of the alert (its grouped notification); `[]` nobody.
    #[serde(default)]
    pub tell: Option<Vec<Role>>,
    /// Time to respond (`3m`).
    #[serde(default)]
    pub respond: Option<String>,
    /// Time to be on site (`30m`).
    #[serde(default)]
    pub arrive: Option<String>,
    /// Time to complete (`24h`).
    #[serde(default)]
    pub complete: Option<String>,
    /// Flag the order for the bureau when its alert still fires this long
    /// after it began (`1h` for `trapped`).
    #[serde(default)]
    pub bureau_after: Option<String>,
}

/// `[[dispatch.duties]]`: a periodic duty of every device of a class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutyConfig {
    /// The compound (every compound if absent).
    #[serde(default)]
    pub site: Option<String>,
    /// The class.
    pub class: String,
    /// The duty's name, also the preventive order's code (`maintenance`).
    pub duty: String,
    /// At most this long between two completions (`15d`).
    pub every: String,
    /// A passing node `self_test` record fulfils it (fire pumps' weekly run).
    #[serde(default)]
    pub by_self_test: bool,
    /// How long before it falls due its preventive order is sent (`3d`; at
    /// most `every`). Default: the built-in duty's of the same name, else a
    /// fifth of `every`.
    #[serde(default)]
    pub notice: Option<String>,
}

/// A validation problem: the field (with 0-based indices) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyProblem {
    /// `dispatch.sla[1].respond`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Deadlines of one order, as durations from its dispatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sla {
    /// Whether the code dispatches.
    pub dispatch: bool,
    /// Respond within (ms).
    pub respond: i64,
    /// On site within (ms).
    pub arrive: i64,
    /// Completed within (ms).
    pub complete: i64,
    /// Flag for the bureau when the alert still fires this long after it
    /// began (ms).
    pub bureau_after: Option<i64>,
    /// Who is sent the order: the first role with a contact.
    pub send: Vec<Role>,
    /// Who is told of the alert.
    pub tell: Vec<Role>,
}

/// Who an order goes to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The contractor.
    pub contractor: Option<String>,
    /// Its backup.
    pub backup: Option<String>,
    /// The property manager.
    pub manager: Option<String>,
    /// The nodes' installer.
    pub installer: Option<String>,
}

impl Assignment {
    /// The contact of a role.
    #[must_use]
    pub fn of(&self, role: Role) -> Option<&str> {
        match role {
            Role::Contractor => self.contractor.as_deref(),
            Role::Manager => self.manager.as_deref(),
            Role::Installer => self.installer.as_deref(),
        }
    }
}

/// A compiled periodic duty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duty {
    /// The compound, or every compound.
    pub site: Option<String>,
    /// The class.
    pub class: String,
    /// The duty (`maintenance`, `self_test`).
    pub duty: String,
    /// Period (ms).
    pub every: i64,
    /// Fulfilled by a passing node self-test.
    pub by_self_test: bool,
    /// Its preventive order is sent this long before it falls due (ms, at
    /// most `every`).
    pub notice: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SlaEntry {
    site: Option<String>,
    class: Option<String>,
    area: Option<Area>,
    codes: Vec<String>,
    dispatch: Option<bool>,
    respond: Option<i64>,
    arrive: Option<i64>,
    complete: Option<i64>,
    bureau_after: Option<i64>,
    send: Option<Vec<Role>>,
    tell: Option<Vec<Role>>,
}

/// The validated policy the desk works from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    sla: Vec<SlaEntry>,
    assign: Vec<AssignConfig>,
    duties: Vec<Duty>,
    bureau: Option<String>,
    /// Each compound's area (`[[sites]]`); urban when absent.
    areas: BTreeMap<String, Area>,
    /// (site, device, duty) → when it was last done before the gateway knew it.
    last_done: BTreeMap<(String, String, String), i64>,
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The contract's §4 table, plus our choices for what it leaves out (each
/// with its reason in docs/workorders.md, "Who is sent, who is told"):
/// - codes it does not list: 30 min / 2 h / 72 h, its "other elevator
///   faults" row;
/// - rural compounds: on site within 1 h for the rows the contract gives
///   30 min (Hubei's elevator rules: 30 min in cities, 1 h elsewhere);
/// - the property's staff, not a contractor, are sent for what is theirs
///   (an e-bike in a car, a session charging too long, a building power
///   cut, a pump cabinet left out of automatic);
/// - a node gone silent goes to its installer (or the manager);
/// - information (`full_cutoff`, `self_test`) is neither dispatched nor told;
/// - the gateway's own root causes are not dispatched (the gateway's owner
///   fixes those, told through the manager's notification).
fn builtin_sla() -> Vec<SlaEntry> {
    let contractor = || Some(vec![Role::Contractor]);
    let manager = || Some(vec![Role::Manager]);
    let codes = |codes: &[&str]| codes.iter().map(|&c| c.to_owned()).collect::<Vec<_>>();
    let e = |class: &str, c: &[&str], r: i64, a: i64, done: i64| SlaEntry {
        class: Some(class.to_owned()),
        codes: codes(c),
        dispatch: Some(true),
        respond: Some(r),
        arrive: Some(a),
        complete: Some(done),
        send: contractor(),
        tell: manager(),
        ..SlaEntry::default()
    };
    let send = |class: Option<&str>, c: &[&str], to: Vec<Role>| SlaEntry {
        class: class.map(str::to_owned),
        codes: codes(c),
        send: Some(to),
        ..SlaEntry::default()
    };
    let rescue = ["trapped", "unintended_movement", "overtravel_top", "overtravel_bottom"];
    let mut trapped = e("elevator", &["trapped"], 3 * MIN, 30 * MIN, DAY);
    trapped.bureau_after = Some(HOUR);
    let mut gateway = e("gateway", &[], 30 * MIN, 2 * HOUR, 3 * DAY);
    gateway.dispatch = Some(false);
    let rural = SlaEntry {
        class: Some("elevator".to_owned()),
        area: Some(Area::Rural),
        codes: codes(&rescue),
        arrive: Some(HOUR),
        ..SlaEntry::default()
    };
    let mut ebike = e("elevator", &["ebike_in_car"], 3 * MIN, 15 * MIN, DAY);
    ebike.send = manager();
    let information = SlaEntry {
        codes: codes(&["full_cutoff", "self_test"]),
        dispatch: Some(false),
        tell: Some(Vec::new()),
        ..SlaEntry::default()
    };
    vec![
        e("elevator", &[], 30 * MIN, 2 * HOUR, 3 * DAY),
        e("elevator", &rescue[1..], 3 * MIN, 30 * MIN, DAY),
        trapped,
        rural,
        ebike,
        send(Some("elevator"), &["power_cut"], vec![Role::Manager]),
        e("firepump", &[], 30 * MIN, 2 * HOUR, 3 * DAY),
        e(
            "firepump",
            &["fire_alarm", "pump_fail_to_start", "low_pressure"],
            3 * MIN,
            15 * MIN,
            DAY,
        ),
        send(Some("firepump"), &["not_in_auto"], vec![Role::Manager]),
        e("charger", &[], 30 * MIN, 2 * HOUR, 3 * DAY),
        e(
            "charger",
            &["smoke", "over_temperature", "leakage"],
            3 * MIN,
            10 * MIN,
            DAY,
        ),
        send(Some("charger"), &["charge_timeout"], vec![Role::Manager]),
        send(None, &["offline"], vec![Role::Installer, Role::Manager]),
        information,
        gateway,
    ]
}

/// Elevator maintenance every 15 days (TSG T5002, half-monthly), the fire
/// pump's weekly self-test run (GB 25201), which a passing node self-test
/// fulfils. Notice (ours): three days for a contractor to fit a visit into
/// its round; a day for the self-test, which the gateway itself starts
/// (`[commands.self_test]`) and the node's run closes.
fn builtin_duties() -> Vec<Duty> {
    vec![
        Duty {
            site: None,
            class: "elevator".into(),
            duty: "maintenance".into(),
            every: 15 * DAY,
            by_self_test: false,
            notice: 3 * DAY,
        },
        Duty {
            site: None,
            class: "firepump".into(),
            duty: "self_test".into(),
            every: 7 * DAY,
            by_self_test: true,
            notice: DAY,
        },
    ]
}

fn duration(field: String, text: &str) -> Result<i64, PolicyProblem> {
    let t = text.trim();
    let parsed = humantime::parse_duration(t)
        .map_err(|e| format!("`{text}` is not a duration (3m, 30m, 24h, 15d): {e}"))
        .and_then(|d| i64::try_from(d.as_millis()).map_err(|_| format!("`{text}` is too long")));
    match parsed {
        Ok(ms) if ms > 0 => Ok(ms),
        Ok(_) => Err(PolicyProblem {
            field,
            message: "must be longer than zero".into(),
        }),
        Err(message) => Err(PolicyProblem { field, message }),
    }
}

fn class(field: String, c: Option<&str>) -> Result<(), PolicyProblem> {
    match c {
        Some(c) if !CLASSES.contains(&c) => Err(PolicyProblem {
            field,
            message: format!("unknown class `{c}` (one of {})", CLASSES.join(", ")),
        }),
        _ => Ok(()),
    }
}

impl PolicyConfig {
    /// Validates the section into a [`Policy`].
    ///
    /// # Errors
    /// The first [`PolicyProblem`], with its field.
    pub fn build(&self) -> Result<Policy, PolicyProblem> {
        let mut sla = builtin_sla();
        for (i, s) in self.sla.iter().enumerate() {
            let f = |name: &str| format!("dispatch.sla[{i}].{name}");
            class(f("class"), s.class.as_deref())?;
            let d = |name: &str, v: &Option<String>| v.as_deref().map(|t| duration(f(name), t)).transpose();
            if s.send.as_ref().is_some_and(Vec::is_empty) {
                return Err(PolicyProblem {
                    field: f("send"),
                    message: "must name a role (contractor, manager, installer); `dispatch = false` sends nobody"
                        .into(),
                });
            }
            sla.push(SlaEntry {
                site: s.site.clone(),
                class: s.class.clone(),
                area: s.area,
                codes: s.codes.clone(),
                dispatch: s.dispatch,
                respond: d("respond", &s.respond)?,
                arrive: d("arrive", &s.arrive)?,
                complete: d("complete", &s.complete)?,
                bureau_after: d("bureau_after", &s.bureau_after)?,
                send: s.send.clone(),
                tell: s.tell.clone(),
            });
        }
        for (i, a) in self.assign.iter().enumerate() {
            class(format!("dispatch.assign[{i}].class"), a.class.as_deref())?;
        }
        let mut last_done = BTreeMap::new();
        for (i, l) in self.last_done.iter().enumerate() {
            let f = |name: &str| format!("dispatch.last_done[{i}].{name}");
            for (name, v) in [("site", &l.site), ("device", &l.device), ("duty", &l.duty)] {
                if v.trim().is_empty() {
                    return Err(PolicyProblem {
                        field: f(name),
                        message: "must not be empty".into(),
                    });
                }
            }
            let at = alerting::config::parse_time(&l.at).map_err(|message| PolicyProblem {
                field: f("at"),
                message,
            })?;
            // Named twice (two log lines of one lift): the later visit counts.
            let e = last_done
                .entry((l.site.clone(), l.device.clone(), l.duty.clone()))
                .or_insert(at);
            *e = (*e).max(at);
        }
        let mut duties = if self.no_builtin_duties {
            Vec::new()
        } else {
            builtin_duties()
        };
        for (i, d) in self.duties.iter().enumerate() {
            class(format!("dispatch.duties[{i}].class"), Some(&d.class))?;
            if d.duty.is_empty() {
                return Err(PolicyProblem {
                    field: format!("dispatch.duties[{i}].duty"),
                    message: "must name the duty".into(),
                });
            }
            let every = duration(format!("dispatch.duties[{i}].every"), &d.every)?;
            let notice = match &d.notice {
                Some(t) => duration(format!("dispatch.duties[{i}].notice"), t)?,
                None => builtin_duties()
                    .iter()
                    .find(|b| b.class == d.class && b.duty == d.duty)
                    .map_or(every / 5, |b| b.notice),
            };
            let duty = Duty {
                site: d.site.clone(),
                class: d.class.clone(),
                duty: d.duty.clone(),
                every,
                by_self_test: d.by_self_test,
                // An order open longer than the period would overlap the one before.
                notice: notice.min(every),
            };
            // The same duty named again replaces the built-in (or an earlier) one.
            duties.retain(|o| !(o.site == duty.site && o.class == duty.class && o.duty == duty.duty));
            duties.push(duty);
        }
        Ok(Policy {
            sla,
            assign: self.assign.clone(),
            duties,
            bureau: self.bureau.clone(),
            areas: BTreeMap::new(),
            last_done,
        })
    }
}

impl Default for Policy {
    fn default() -> Policy {
        PolicyConfig::default().build().unwrap_or_else(|_| Policy {
            sla: builtin_sla(),
            assign: Vec::new(),
            duties: builtin_duties(),
            bureau: None,
            areas: BTreeMap::new(),
            last_done: BTreeMap::new(),
        })
    }
}

fn matches(want: Option<&String>, have: &str) -> bool {
    want.is_none_or(|w| w == have)
}

impl Policy {
    /// The deadlines of a fault: every matching entry in order, the later
    /// filling in or overriding what the earlier said.
    #[must_use]
    pub fn sla(&self, site: &str, class: &str, code: &str) -> Sla {
        let mut out = Sla {
            dispatch: true,
            respond: 30 * MIN,
            arrive: 2 * HOUR,
            complete: 3 * DAY,
            bureau_after: None,
            send: vec![Role::Contractor],
            tell: vec![Role::Manager],
        };
        let area = self.area(site);
        for e in &self.sla {
            if !(matches(e.site.as_ref(), site)
                && matches(e.class.as_ref(), class)
                && e.area.is_none_or(|a| a == area)
                && (e.codes.is_empty() || e.codes.iter().any(|c| c == code)))
            {
                continue;
            }
            if let Some(s) = &e.send {
                out.send.clone_from(s);
            }
            if let Some(t) = &e.tell {
                out.tell.clone_from(t);
            }
            out.dispatch = e.dispatch.unwrap_or(out.dispatch);
            out.respond = e.respond.unwrap_or(out.respond);
            out.arrive = e.arrive.unwrap_or(out.arrive);
            out.complete = e.complete.unwrap_or(out.complete);
            out.bureau_after = e.bureau_after.or(out.bureau_after);
        }
        out
    }

    /// Who gets the orders of a site and class.
    #[must_use]
    pub fn assignment(&self, site: &str, class: &str) -> Assignment {
        let mut out = Assignment::default();
        for a in &self.assign {
            if matches(a.site.as_ref(), site) && matches(a.class.as_ref(), class) {
                if a.contractor.is_some() {
                    out.contractor.clone_from(&a.contractor);
                }
                if a.backup.is_some() {
                    out.backup.clone_from(&a.backup);
                }
                if a.manager.is_some() {
                    out.manager.clone_from(&a.manager);
                }
                if a.installer.is_some() {
                    out.installer.clone_from(&a.installer);
                }
            }
        }
        out
    }

    /// Who is sent an order of this fault: the first role of its `send`
    /// with a contact (`None`: nobody is configured, the order is still
    /// opened and shown).
    #[must_use]
    pub fn sent(&self, site: &str, class: &str, code: &str) -> Option<String> {
        let who = self.assignment(site, class);
        self.sla(site, class, code)
            .send
            .iter()
            .find_map(|&r| who.of(r))
            .map(str::to_owned)
    }

    /// Who is told of alerts of this fault: the contacts of its `tell`
    /// roles; for `manager`, the class's manager, or every manager of the
    /// compound when the class has none of its own (the gateway's root
    /// causes belong to no class's assignment).
    #[must_use]
    pub fn told(&self, site: &str, class: &str, code: &str) -> Vec<String> {
        let who = self.assignment(site, class);
        let mut out = Vec::new();
        for role in self.sla(site, class, code).tell {
            match (role, who.of(role)) {
                (_, Some(c)) => out.push(c.to_owned()),
                (Role::Manager, None) => out.extend(self.managers(site)),
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// A grouped alert notification split by recipient: each is told only
    /// of the alerts of codes it is told of ([`Policy::told`]); nobody is
    /// told of a notification left empty. In recipient order.
    #[must_use]
    pub fn recipients(&self, n: &alerting::Notification) -> Vec<(String, alerting::Notification)> {
        let mut by: BTreeMap<String, alerting::Notification> = BTreeMap::new();
        let mut add = |a: &alerting::AlertView, firing: bool| {
            for to in self.told(&a.site, &a.class, &a.code) {
                let m = by.entry(to).or_insert_with(|| alerting::Notification {
                    site: n.site.clone(),
                    building: n.building.clone(),
                    at: n.at,
                    critical: false,
                    firing: Vec::new(),
                    resolved: Vec::new(),
                });
                if firing {
                    m.critical |= a.severity == protocol::Severity::Critical;
                    m.firing.push(a.clone());
                } else {
                    m.resolved.push(a.clone());
                }
            }
        };
        for a in &n.firing {
            add(a, true);
        }
        for a in &n.resolved {
            add(a, false);
        }
        by.into_iter().collect()
    }

    /// A compound's area.
    #[must_use]
    pub fn area(&self, site: &str) -> Area {
        self.areas.get(site).copied().unwrap_or_default()
    }

    /// Sets each compound's area (`[[sites]] area`, kept outside `[dispatch]`
    /// because screens and reports read the same list).
    pub fn set_areas(&mut self, areas: impl IntoIterator<Item = (String, Area)>) {
        self.areas = areas.into_iter().collect();
    }

    /// When a device's duty was last done before the gateway knew it
    /// (`[[dispatch.last_done]]`).
    #[must_use]
    pub fn last_done(&self, site: &str, device: &str, duty: &str) -> Option<i64> {
        self.last_done
            .get(&(site.to_owned(), device.to_owned(), duty.to_owned()))
            .copied()
    }

    /// The property managers of a site (any class), for alert notifications.
    #[must_use]
    pub fn managers(&self, site: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .assign
            .iter()
            .filter(|a| matches(a.site.as_ref(), site))
            .filter_map(|a| a.manager.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The periodic duties of a device.
    pub fn duties<'a>(&'a self, site: &'a str, class: &'a str) -> impl Iterator<Item = &'a Duty> + 'a {
        // A site's own entry for a duty replaces the everywhere entry of the same name.
        self.duties.iter().filter(move |d| {
            d.class == class
                && matches(d.site.as_ref(), site)
                && (d.site.is_some()
                    || !self
                        .duties
                        .iter()
                        .any(|o| o.site.as_deref() == Some(site) && o.class == class && o.duty == d.duty))
        })
    }

    /// The bureau's contact.
    #[must_use]
    pub fn bureau(&self) -> Option<&str> {
        self.bureau.as_deref()
    }

    /// Every contact id the policy names, with the field naming it, so the
    /// gateway can check each is a configured contact.
    #[must_use]
    pub fn contact_ids(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(b) = &self.bureau {
            out.push(("dispatch.bureau".to_owned(), b.clone()));
        }
        for (i, a) in self.assign.iter().enumerate() {
            for (name, v) in [
                ("contractor", &a.contractor),
                ("backup", &a.backup),
                ("manager", &a.manager),
                ("installer", &a.installer),
            ] {
                if let Some(v) = v {
                    out.push((format!("dispatch.assign[{i}].{name}"), v.clone()));
                }
            }
        }
        out
    }
}
