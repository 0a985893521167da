//! Rules as data: what to watch, when it fires, when it clears, and how a
//! rule's text becomes what the engine evaluates.
//!
//! A rule is written once in a pack (TOML) with `$parameters` for its figures,
//! and compiled per device profile: the same `trapped` rule with 20 s for one
//! compound and 30 s for another is two compiled rules with one id.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocol::{DeviceClass, Metric, PortMetric, Severity};
use serde::{Deserialize, Serialize};

use crate::expr::{self, Ast, Node, Slot};

/// Which series a rule is judged on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Once per device.
    #[default]
    Device,
    /// Once per charging port: port metrics are the port's, device metrics are
    /// shared (`smoke`, `mains_voltage_v`).
    Port,
}

/// How a rule judges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// `when` holds for `for` (and `samples` consecutive samples); clears when
    /// `clear` holds (hysteresis) or `when` no longer does. `rate(m)` in
    /// `when` is the change per second over `window`.
    #[default]
    Condition,
    /// Rising edges of `of` counted over a sliding `window`; fires at
    /// `at_least`, the count restarts when `reset` holds.
    Count,
    /// The device is gone: a `death`, or no message for `intervals` × its
    /// declared reporting interval (judged on the gateway's clock).
    Offline,
}

/// A number in a rule or a parameter: a literal, or `"$name"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Figure {
    /// A literal number.
    Number(f64),
    /// A duration (`"20s"`, `"2m"`, `"8h"`) or a `"$parameter"`.
    Text(String),
}

/// One rule, as written in a pack or in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Stable id (`elevator.trapped_outside_zone`): state is keyed by it across
    /// restarts and reloads, overrides name it.
    pub id: String,
    /// The event code raised; every rule with one code feeds one alert per
    /// device (and port).
    pub code: String,
    /// The class of device it applies to (set by the pack for pack rules).
    #[serde(default)]
    pub class: Option<DeviceClass>,
    /// Device or port.
    #[serde(default)]
    pub scope: Scope,
    /// How it judges.
    #[serde(default)]
    pub kind: RuleKind,
    /// The condition (`condition` rules).
    #[serde(default)]
    pub when: Option<String>,
    /// While firing, the rule stays until this holds (hysteresis); without it,
    /// until `when` no longer holds.
    #[serde(default)]
    pub clear: Option<String>,
    /// When the rule means something at all (`condition` and `count`
    /// rules): while this is false the rule is not judged. Unknown counts as
    /// applying, so a device that never reports what the gate reads (an
    /// elevator node without the controller's `service_mode`) is judged as
    /// before. Why: a technician's stops in inspection are not a trapped
    /// passenger, and saying so in the rule keeps the reason next to it.
    #[serde(default)]
    pub applies: Option<String>,
    /// How long `when` must hold before the alert fires.
    #[serde(default, rename = "for")]
    pub for_: Option<Figure>,
    /// Consecutive samples `when` must hold in (a sample lost in between
    /// restarts the count).
    #[serde(default)]
    pub samples: Option<Figure>,
    /// How long a firing alert stays after its condition ended (a relapse
    /// within it is the same episode).
    #[serde(default)]
    pub keep_firing_for: Option<Figure>,
    /// `rate()` span, or the `count` window.
    #[serde(default)]
    pub window: Option<Figure>,
    /// `count`: the condition whose rising edges are counted.
    #[serde(default)]
    pub of: Option<String>,
    /// `count`: the condition that restarts the count.
    #[serde(default)]
    pub reset: Option<String>,
    /// `count`: how many edges within `window` fire.
    #[serde(default)]
    pub at_least: Option<Figure>,
    /// `offline`: how many reporting intervals of silence.
    #[serde(default)]
    pub intervals: Option<Figure>,
    /// Overrides the code's default severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Whether a firing alert asks for hands on site (a work-order intent).
    /// Default: yes, but for `info`.
    #[serde(default)]
    pub dispatch: Option<bool>,
    /// Where the default figures come from (printed in docs/rules.md).
    #[serde(default)]
    pub source: Option<String>,
}

/// A pack: the rules and default figures of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// The class.
    pub class: DeviceClass,
    /// Default figures, overridable per site, class and device.
    #[serde(default)]
    pub params: BTreeMap<String, Figure>,
    /// The rules.
    #[serde(default)]
    pub rule: Vec<RuleDef>,
    /// Figures by the kind of installation a device serves, selected by an
    /// override's `system` (a fire pump feeding sprinklers): the standard
    /// sets the figure by system, so the site declares what it has and the
    /// pack, not each site, carries the figure and its clause.
    #[serde(default)]
    pub systems: BTreeMap<String, SystemPreset>,
}

/// The figures of one kind of installation (`[systems.sprinkler]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPreset {
    /// What the system is, in a few words (printed in docs/rules.md).
    pub about: String,
    /// Parameters that differ from the pack's `[params]`.
    pub params: BTreeMap<String, Figure>,
    /// The clause the figures come from.
    pub source: String,
}

/// A rule that cannot work, naming the rule and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`, field `{field}`: {problem}")]
pub struct RuleError {
    /// The rule's id.
    pub rule: String,
    /// The field (`when`, `for`, ...).
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// What the engine evaluates for a `count` rule.
#[derive(Clone, Debug, PartialEq)]
pub struct CountRule {
    /// Counted condition.
    pub of: Node,
    /// Restart condition.
    pub reset: Option<Node>,
    /// Edges within the window that fire (1..=32).
    pub at_least: u8,
    /// The window.
    pub window_ms: i64,
}

/// A compiled rule's judgement.
#[derive(Clone, Debug, PartialEq)]
pub enum Judge {
    /// A condition, with optional hysteresis and rate term.
    Condition {
        /// Fires when this holds.
        when: Node,
        /// While firing, clears when this holds.
        clear: Option<Node>,
        /// The metric of `rate()` and its window.
        rate: Option<(Slot, i64)>,
    },
    /// Counted edges.
    Count(CountRule),
    /// Silence of the device.
    Offline {
        /// Reporting intervals of silence.
        intervals: f64,
    },
}

/// A rule ready to evaluate, for one device profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    /// The rule's id.
    pub id: Arc<str>,
    /// The code it raises.
    pub code: Arc<str>,
    /// Severity of its alert.
    pub severity: Severity,
    /// Device or port.
    pub scope: Scope,
    /// The judgement.
    pub judge: Judge,
    /// `for`, in ms.
    pub for_ms: i64,
    /// Consecutive samples needed (1: any).
    pub samples: u32,
    /// While this is false the rule is not judged (unknown: judged).
    pub applies: Option<Node>,
    /// `keep_firing_for`, in ms.
    pub keep_ms: i64,
    /// Whether firing asks for a work order.
    pub dispatch: bool,
    /// A hash of everything above but the id: state survives a reload only
    /// when the rule is unchanged.
    pub fingerprint: u64,
}

/// The metric slots of one class: names to array indices, so evaluation is
/// a lookup, not a string comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// Device-level metric names, by slot.
    pub device: Vec<String>,
    /// Port-level metric names, by slot.
    pub port: Vec<String>,
}

impl Slots {
    /// The slot of a metric named in a rule of `scope`, created if new.
    /// Known port metrics are per port, known device metrics per device; a
    /// name this version does not know (a vendor's) belongs to the rule's scope.
    pub fn slot(&mut self, name: &str, scope: Scope) -> Slot {
        let port = PortMetric::from_name(name).is_some() || (Metric::from_name(name).is_none() && scope == Scope::Port);
        let list = if port { &mut self.port } else { &mut self.device };
        let i = list.iter().position(|n| n == name).unwrap_or_else(|| {
            list.push(name.to_owned());
            list.len() - 1
        });
        let i = u16::try_from(i).unwrap_or(u16::MAX);
        if port { Slot::Port(i) } else { Slot::Device(i) }
    }

    /// The slot of a metric, if a rule uses it.
    #[must_use]
    pub fn find(&self, name: &str, port: bool) -> Option<u16> {
        let list = if port { &self.port } else { &self.device };
        list.iter().position(|n| n == name).and_then(|i| u16::try_from(i).ok())
    }
}

/// Parses a duration: `"20s"`, `"2m"`, `"1h 30m"`, `"500ms"`, or a bare 0.
///
/// # Errors
/// The text, when it is not one.
pub fn duration_ms(text: &str) -> Result<i64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration (20s, 2m, 8h): {e}"))
        .and_then(|d| i64::try_from(d.as_millis()).map_err(|_| format!("`{text}` is too long")))
}

/// Resolves figures against a set of parameters, noting which it used (a
/// rule's fingerprint covers only the parameters it reads).
pub struct Resolver<'a> {
    /// The parameters.
    pub params: &'a BTreeMap<String, Figure>,
    /// The rule, for messages.
    pub rule: &'a str,
    used: std::cell::RefCell<BTreeMap<String, Figure>>,
}

impl<'a> Resolver<'a> {
    /// A resolver over `params`, for rule `rule`.
    #[must_use]
    pub fn new(params: &'a BTreeMap<String, Figure>, rule: &'a str) -> Resolver<'a> {
        Resolver {
            params,
            rule,
            used: std::cell::RefCell::default(),
        }
    }

    fn err(&self, field: &'static str, problem: impl Into<String>) -> RuleError {
        RuleError {
            rule: self.rule.to_owned(),
            field,
            problem: problem.into(),
        }
    }

    fn param(&self, field: &'static str, name: &str) -> Result<&Figure, RuleError> {
        let f = self
            .params
            .get(name)
            .ok_or_else(|| self.err(field, format!("no parameter `${name}`")))?;
        self.used.borrow_mut().insert(name.to_owned(), f.clone());
        Ok(f)
    }

    /// A figure as a number.
    ///
    /// # Errors
    /// A [`RuleError`] naming `field`.
    pub fn number(&self, field: &'static str, f: &Figure) -> Result<f64, RuleError> {
        let n = match f {
            Figure::Number(n) => *n,
            Figure::Text(t) => match t.strip_prefix('$') {
                Some(p) => match self.param(field, p)? {
                    Figure::Number(n) => *n,
                    Figure::Text(t) => return Err(self.err(field, format!("`${p}` is `{t}`, not a number"))),
                },
                None => t
                    .parse::<f64>()
                    .map_err(|_| self.err(field, format!("`{t}` is not a number")))?,
            },
        };
        if n.is_finite() {
            Ok(n)
        } else {
            Err(self.err(field, "not a finite number"))
        }
    }

    /// A figure as a duration in ms.
    ///
    /// # Errors
    /// A [`RuleError`] naming `field`.
    pub fn duration(&self, field: &'static str, f: &Figure) -> Result<i64, RuleError> {
        match f {
            Figure::Number(n) if *n == 0.0 => Ok(0),
            Figure::Number(n) => Err(self.err(field, format!("{n} needs a unit (\"{n}s\")"))),
            Figure::Text(t) => {
                let text = match t.strip_prefix('$') {
                    Some(p) => match self.param(field, p)? {
                        Figure::Text(t) => t.clone(),
                        Figure::Number(n) if *n == 0.0 => "0".into(),
                        Figure::Number(n) => {
                            return Err(self.err(field, format!("`${p}` is {n}, not a duration (\"20s\")")));
                        }
                    },
                    None => t.clone(),
                };
                duration_ms(&text).map_err(|e| self.err(field, e))
            }
        }
    }

    /// Binds a parsed condition's names to slots and its parameters to numbers.
    ///
    /// # Errors
    /// A [`RuleError`] naming `field`.
    pub fn bind(
        &self,
        field: &'static str,
        ast: &Ast,
        slots: &mut Slots,
        scope: Scope,
        rate: &mut Option<Slot>,
    ) -> Result<Node, RuleError> {
        let mut bind = |a: &Ast| self.bind(field, a, slots, scope, rate);
        Ok(match ast {
            Ast::Num(n) => Node::Const(*n),
            Ast::Param(p) => Node::Const(self.number(field, &Figure::Text(format!("${p}")))?),
            Ast::Metric(m) => {
                check_metric(m).map_err(|e| self.err(field, e))?;
                Node::Value(slots.slot(m, scope))
            }
            Ast::Rate(m) => {
                check_metric(m).map_err(|e| self.err(field, e))?;
                let s = slots.slot(m, scope);
                if rate.is_some_and(|r| r != s) {
                    return Err(self.err(field, "one `rate()` per rule"));
                }
                *rate = Some(s);
                Node::Rate
            }
            Ast::SinceChange(m) => {
                check_metric(m).map_err(|e| self.err(field, e))?;
                Node::SinceChange(slots.slot(m, scope))
            }
            Ast::Abs(x) => Node::Abs(Box::new(bind(x)?)),
            Ast::Neg(x) => Node::Neg(Box::new(bind(x)?)),
            Ast::Not(x) => Node::Not(Box::new(bind(x)?)),
            Ast::Arith(op, a, b) => Node::Arith(*op, Box::new(bind(a)?), Box::new(bind(b)?)),
            Ast::Cmp(op, a, b) => Node::Cmp(*op, Box::new(bind(a)?), Box::new(bind(b)?)),
            Ast::And(items) => Node::And(items.iter().map(&mut bind).collect::<Result<_, _>>()?),
            Ast::Or(items) => Node::Or(items.iter().map(&mut bind).collect::<Result<_, _>>()?),
        })
    }
}

/// A metric name must be a wire name (what `protocol` accepts).
fn check_metric(name: &str) -> Result<(), String> {
    protocol::names::parse_name(name)
        .map(|_| ())
        .map_err(|e| format!("`{name}` is not a metric name: {e}"))
}

/// FNV-1a: a stable hash (not `std`'s, which may change between releases).
#[must_use]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl RuleDef {
    /// The judgement of the rule, by kind.
    fn judge(&self, r: &Resolver<'_>, slots: &mut Slots) -> Result<Judge, RuleError> {
        let cond = |field: &'static str, text: &Option<String>, slots: &mut Slots, rate: &mut Option<Slot>| {
            text.as_deref()
                .map(|t| {
                    let ast = expr::parse(t).map_err(|e| r.err(field, format!("`{t}`: {e}")))?;
                    r.bind(field, &ast, slots, self.scope, rate)
                })
                .transpose()
        };
        let dur = |field: &'static str, f: &Option<Figure>| f.as_ref().map_or(Ok(0), |f| r.duration(field, f));
        let mut rate = None;
        let judge = match self.kind {
            RuleKind::Condition => {
                let when = cond("when", &self.when, slots, &mut rate)?
                    .ok_or_else(|| r.err("when", "a condition rule needs `when`"))?;
                let clear = cond("clear", &self.clear, slots, &mut rate)?;
                let rate = match rate {
                    Some(s) => {
                        let w = dur("window", &self.window)?;
                        if w <= 0 {
                            return Err(r.err("window", "`rate()` needs a positive `window`"));
                        }
                        Some((s, w))
                    }
                    None => None,
                };
                Judge::Condition { when, clear, rate }
            }
            RuleKind::Count => {
                let of = cond("of", &self.of, slots, &mut rate)?
                    .ok_or_else(|| r.err("of", "a count rule needs `of` (the condition counted)"))?;
                let reset = cond("reset", &self.reset, slots, &mut rate)?;
                if rate.is_some() {
                    return Err(r.err("of", "`rate()` is for condition rules"));
                }
                let n = self.at_least.as_ref().map_or(Ok(1.0), |f| r.number("at_least", f))?;
                if !(1.0..=32.0).contains(&n) || n.fract() != 0.0 {
                    return Err(r.err("at_least", "must be a whole number from 1 to 32"));
                }
                let window_ms = dur("window", &self.window)?;
                if window_ms <= 0 {
                    return Err(r.err("window", "a count rule needs a positive `window`"));
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let at_least = n as u8;
                Judge::Count(CountRule {
                    of,
                    reset,
                    at_least,
                    window_ms,
                })
            }
            RuleKind::Offline => {
                let intervals = self.intervals.as_ref().map_or(Ok(3.0), |f| r.number("intervals", f))?;
                if !(1.0..=100.0).contains(&intervals) {
                    return Err(r.err("intervals", "must be from 1 to 100"));
                }
                if self.scope == Scope::Port {
                    return Err(r.err("scope", "offline is judged per device"));
                }
                Judge::Offline { intervals }
            }
        };
        Ok(judge)
    }

    /// Compiles the rule with `params`, binding metrics into `slots`.
    ///
    /// # Errors
    /// The first problem, as a [`RuleError`].
    pub fn compile(
        &self,
        params: &BTreeMap<String, Figure>,
        slots: &mut Slots,
        severity: Option<Severity>,
    ) -> Result<Compiled, RuleError> {
        let r = Resolver::new(params, &self.id);
        if self.id.is_empty() || self.id.len() > 96 || self.id.contains(char::is_whitespace) {
            return Err(r.err("id", "must be 1 to 96 characters without spaces"));
        }
        protocol::names::parse_name(&self.code).map_err(|e| r.err("code", format!("`{}`: {e}", self.code)))?;
        let judge = self.judge(&r, slots)?;
        let dur = |field: &'static str, f: &Option<Figure>| f.as_ref().map_or(Ok(0), |f| r.duration(field, f));
        for (field, set) in [
            ("when", self.when.is_some() && self.kind != RuleKind::Condition),
            ("clear", self.clear.is_some() && self.kind != RuleKind::Condition),
            ("of", self.of.is_some() && self.kind != RuleKind::Count),
            ("at_least", self.at_least.is_some() && self.kind != RuleKind::Count),
            ("intervals", self.intervals.is_some() && self.kind != RuleKind::Offline),
        ] {
            if set {
                return Err(r.err(field, format!("does not apply to a {:?} rule", self.kind)));
            }
        }
        let applies = match &self.applies {
            None => None,
            Some(_) if self.kind == RuleKind::Offline => {
                return Err(r.err(
                    "applies",
                    "does not apply to an offline rule: silence means something in every mode",
                ));
            }
            Some(t) => {
                let ast = expr::parse(t).map_err(|e| r.err("applies", format!("`{t}`: {e}")))?;
                let mut rate = None;
                let node = r.bind("applies", &ast, slots, self.scope, &mut rate)?;
                if rate.is_some() {
                    return Err(r.err("applies", "`rate()` is for `when`"));
                }
                Some(node)
            }
        };
        let for_ms = dur("for", &self.for_)?;
        let keep_ms = dur("keep_firing_for", &self.keep_firing_for)?;
        let samples = self.samples.as_ref().map_or(Ok(1.0), |f| r.number("samples", f))?;
        if !(1.0..=100.0).contains(&samples) || samples.fract() != 0.0 {
            return Err(r.err("samples", "must be a whole number from 1 to 100"));
        }
        let code_sev =
            protocol::EventCode::from_name(&self.code).map_or(Severity::Major, protocol::EventCode::severity);
        let severity = severity.or(self.severity).unwrap_or(code_sev);
        let dispatch = self.dispatch.unwrap_or(severity != Severity::Info);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let samples = samples as u32;
        let mut c = Compiled {
            id: self.id.as_str().into(),
            code: self.code.as_str().into(),
            severity,
            scope: self.scope,
            judge,
            for_ms,
            samples,
            applies,
            keep_ms,
            dispatch,
            fingerprint: 0,
        };
        // The definition as written (but its id and citation) and the values
        // of the parameters it read: slot numbers may move when other rules
        // change, so they are not part of it.
        let def = RuleDef {
            id: String::new(),
            source: None,
            ..self.clone()
        };
        let text = format!("{def:?}|{:?}|{:?}", r.used.borrow(), c.severity);
        c.fingerprint = fnv1a(text.as_bytes());
        Ok(c)
    }
}
