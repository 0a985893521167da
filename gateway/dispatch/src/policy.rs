//! The dispatch policy: which alert codes become work orders, who gets them,
//! and by when. `[dispatch]` of the gateway's configuration, parsed with
//! serde and validated by [`PolicyConfig::build`], which names the field of
//! the first problem so `gateway check` can point at its line.
//!
//! Built-in defaults are the contract's SLA table (§4); entries of the
//! configuration come after them and the last matching entry wins, so a site
//! writes only what differs ("our lifts contractor arrives within 20 min").

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
    /// The codes (every code of the class if empty).
    #[serde(default)]
    pub codes: Vec<String>,
    /// Whether these codes dispatch at all (default true).
    #[serde(default)]
    pub dispatch: Option<bool>,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SlaEntry {
    site: Option<String>,
    class: Option<String>,
    codes: Vec<String>,
    dispatch: Option<bool>,
    respond: Option<i64>,
    arrive: Option<i64>,
    complete: Option<i64>,
    bureau_after: Option<i64>,
}

/// The validated policy the desk works from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    sla: Vec<SlaEntry>,
    assign: Vec<AssignConfig>,
    duties: Vec<Duty>,
    bureau: Option<String>,
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The contract's §4 table, plus our choice for the codes it leaves out
/// (30 min / 2 h / 72 h, its "other elevator faults" row) and no dispatch for
/// the gateway's own root causes (they are the gateway's owner's to fix).
fn builtin_sla() -> Vec<SlaEntry> {
    let e = |class: &str, codes: &[&str], r: i64, a: i64, c: i64| SlaEntry {
        site: None,
        class: Some(class.to_owned()),
        codes: codes.iter().map(|&c| c.to_owned()).collect(),
        dispatch: Some(true),
        respond: Some(r),
        arrive: Some(a),
        complete: Some(c),
        bureau_after: None,
    };
    let mut trapped = e("elevator", &["trapped"], 3 * MIN, 30 * MIN, DAY);
    trapped.bureau_after = Some(HOUR);
    let mut gateway = e("gateway", &[], 30 * MIN, 2 * HOUR, 3 * DAY);
    gateway.dispatch = Some(false);
    vec![
        e("elevator", &[], 30 * MIN, 2 * HOUR, 3 * DAY),
        e(
            "elevator",
            &["unintended_movement", "overtravel_top", "overtravel_bottom"],
            3 * MIN,
            30 * MIN,
            DAY,
        ),
        trapped,
        e("firepump", &[], 30 * MIN, 2 * HOUR, 3 * DAY),
        e(
            "firepump",
            &["fire_alarm", "pump_fail_to_start", "low_pressure"],
            3 * MIN,
            15 * MIN,
            DAY,
        ),
        e("charger", &[], 30 * MIN, 2 * HOUR, 3 * DAY),
        e(
            "charger",
            &["smoke", "over_temperature", "leakage"],
            3 * MIN,
            10 * MIN,
            DAY,
        ),
        gateway,
    ]
}

/// Elevator maintenance every 15 days (TSG T5002, half-monthly), the fire
/// pump's weekly self-test run (GB 25201), which a passing node self-test
/// fulfils.
fn builtin_duties() -> Vec<Duty> {
    vec![
        Duty {
            site: None,
            class: "elevator".into(),
            duty: "maintenance".into(),
            every: 15 * DAY,
            by_self_test: false,
        },
        Duty {
            site: None,
            class: "firepump".into(),
            duty: "self_test".into(),
            every: 7 * DAY,
            by_self_test: true,
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
            sla.push(SlaEntry {
                site: s.site.clone(),
                class: s.class.clone(),
                codes: s.codes.clone(),
                dispatch: s.dispatch,
                respond: d("respond", &s.respond)?,
                arrive: d("arrive", &s.arrive)?,
                complete: d("complete", &s.complete)?,
                bureau_after: d("bureau_after", &s.bureau_after)?,
            });
        }
        for (i, a) in self.assign.iter().enumerate() {
            class(format!("dispatch.assign[{i}].class"), a.class.as_deref())?;
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
            let duty = Duty {
                site: d.site.clone(),
                class: d.class.clone(),
                duty: d.duty.clone(),
                every: duration(format!("dispatch.duties[{i}].every"), &d.every)?,
                by_self_test: d.by_self_test,
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
        };
        for e in &self.sla {
            if !(matches(e.site.as_ref(), site)
                && matches(e.class.as_ref(), class)
                && (e.codes.is_empty() || e.codes.iter().any(|c| c == code)))
            {
                continue;
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
            }
        }
        out
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
            ] {
                if let Some(v) = v {
                    out.push((format!("dispatch.assign[{i}].{name}"), v.clone()));
                }
            }
        }
        out
    }
}
