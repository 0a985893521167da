//! The engine: one state machine per (rule, series), fed samples and ticks.
//!
//! ```text
//!            condition                 held `for`
//! Inactive ───────────► Pending ─────────────────► Firing ──┐ condition ends, then
//!    ▲                     │ condition ends          │      │ `keep_firing_for` passes
//!    └─────────────────────┘                         ▼      │
//!    ◄──────────────────────────────────────────── Resolved ◄┘
//! any state ── no sample for `absent_after` ──► marked no-data (never resolved by silence)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rule::Rule;

/// Which series a sample belongs to: a device, a metric, and a port for
/// per-port metrics.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// `site/class/device`.
    pub device: String,
    /// The metric.
    pub metric: String,
    /// The port, for per-port metrics.
    pub port: Option<u8>,
}

/// One alert instance: a rule on a series.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    /// The rule's id.
    pub rule: String,
    /// The series.
    pub series: SeriesKey,
}

/// One sample, on the gateway's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series.
    pub series: SeriesKey,
    /// The value (flags as 0/1).
    pub value: f64,
    /// Gateway time in ms since the Unix epoch.
    pub now: i64,
}

/// Where an alert instance stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold.
    Inactive,
    /// The condition holds, not yet for long enough.
    Pending {
        /// Since when.
        since: i64,
    },
    /// The alert fires.
    Firing {
        /// The episode: every downstream effect is keyed by it.
        episode: u64,
        /// When it fired.
        since: i64,
        /// When the condition last held (for `keep_firing_for`).
        last_active: i64,
        /// Whether the condition holds now.
        active: bool,
    },
}

/// The state of one instance, with its data freshness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Instance {
    state: AlertState,
    last_sample: i64,
    /// The last sample's verdict (a pending alert progresses on ticks only while true).
    last_active: bool,
    no_data: bool,
}

/// What the gateway must act on, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// An alert started firing.
    Fired {
        /// Which.
        key: AlertKey,
        /// The rule's code.
        code: String,
        /// The episode.
        episode: u64,
        /// When.
        at: i64,
    },
    /// A firing alert resolved (its condition ended, on fresh data).
    Resolved {
        /// Which.
        key: AlertKey,
        /// The episode that ended.
        episode: u64,
        /// When.
        at: i64,
    },
    /// The series went silent: the alert keeps its state, marked no-data.
    NoData {
        /// Which.
        key: AlertKey,
        /// When the silence was noticed.
        at: i64,
    },
    /// Data came back after a no-data period.
    DataResumed {
        /// Which.
        key: AlertKey,
        /// When.
        at: i64,
    },
}

/// All rule state, for persistence across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(with = "pairs")]
    instances: BTreeMap<AlertKey, Instance>,
    next_episode: u64,
}

/// The engine: rules and the state of every (rule, series) instance.
#[derive(Clone, Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    state: Snapshot,
}

impl Engine {
    /// An engine with no state yet.
    ///
    /// # Errors
    /// The first invalid rule, or two rules with one id.
    pub fn new(rules: Vec<Rule>) -> Result<Engine, crate::rule::RuleError> {
        for (i, r) in rules.iter().enumerate() {
            r.validate()?;
            if rules[..i].iter().any(|o| o.id == r.id) {
                return Err(crate::rule::RuleError {
                    rule: r.id.clone(),
                    problem: "the id is used twice".into(),
                });
            }
        }
        Ok(Engine {
            rules,
            state: Snapshot {
                instances: BTreeMap::new(),
                next_episode: 1,
            },
        })
    }

    /// The state of every instance, to persist.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.state.clone()
    }

    /// Restores persisted state. Instances of rules that no longer exist are
    /// dropped; those of unchanged rules continue exactly where they were (a
    /// 120 s `for` goes on counting from its original start).
    pub fn restore(&mut self, snapshot: Snapshot) {
        let ids: Vec<&str> = self.rules.iter().map(|r| r.id.as_str()).collect();
        self.state.next_episode = snapshot.next_episode.max(self.state.next_episode);
        self.state.instances = snapshot
            .instances
            .into_iter()
            .filter(|(k, _)| ids.contains(&k.rule.as_str()))
            .collect();
    }

    /// The current state of an instance.
    #[must_use]
    pub fn state(&self, key: &AlertKey) -> Option<&AlertState> {
        self.state.instances.get(key).map(|i| &i.state)
    }

    /// Feeds one sample; returns the effects, in order.
    pub fn observe(&mut self, sample: &Sample) -> Vec<Effect> {
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.metric == sample.series.metric) {
            let key = AlertKey {
                rule: rule.id.clone(),
                series: sample.series.clone(),
            };
            let inst = self.state.instances.entry(key.clone()).or_insert(Instance {
                state: AlertState::Inactive,
                last_sample: sample.now,
                last_active: false,
                no_data: false,
            });
            if inst.no_data {
                inst.no_data = false;
                out.push(Effect::DataResumed {
                    key: key.clone(),
                    at: sample.now,
                });
            }
            inst.last_sample = sample.now;
            let firing = matches!(inst.state, AlertState::Firing { .. });
            let active = sample.value.is_finite() && rule.active(sample.value, firing);
            inst.last_active = active;
            step(
                rule,
                &key,
                inst,
                active,
                sample.now,
                &mut self.state.next_episode,
                &mut out,
            );
        }
        out
    }

    /// Advances time: pending alerts whose `for` has passed fire,
    /// `keep_firing_for` runs out, silent series become no-data.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        let mut out = Vec::new();
        for (key, inst) in &mut self.state.instances {
            let Some(rule) = self.rules.iter().find(|r| r.id == key.rule) else {
                continue;
            };
            if let Some(limit) = rule.absent_after_ms
                && !inst.no_data
                && now - inst.last_sample >= limit
            {
                inst.no_data = true;
                out.push(Effect::NoData {
                    key: key.clone(),
                    at: now,
                });
            }
            if inst.no_data {
                // No fresh data: nothing progresses and nothing resolves by silence.
                continue;
            }
            let active = inst.last_active;
            step(rule, key, inst, active, now, &mut self.state.next_episode, &mut out);
        }
        out
    }
}

/// One transition of one instance at `now`, with the condition `active`.
fn step(
    rule: &Rule,
    key: &AlertKey,
    inst: &mut Instance,
    active: bool,
    now: i64,
    next: &mut u64,
    out: &mut Vec<Effect>,
) {
    inst.state = match inst.state.clone() {
        AlertState::Inactive if active && rule.for_ms == 0 => fire(rule, key, now, next, out),
        AlertState::Inactive if active => AlertState::Pending { since: now },
        AlertState::Pending { since } if active && now - since >= rule.for_ms => fire(rule, key, now, next, out),
        AlertState::Pending { since } if active => AlertState::Pending { since },
        AlertState::Inactive | AlertState::Pending { .. } => AlertState::Inactive,
        AlertState::Firing { episode, since, .. } if active => AlertState::Firing {
            episode,
            since,
            last_active: now,
            active: true,
        },
        AlertState::Firing {
            episode,
            since,
            last_active,
            ..
        } => {
            if now - last_active >= rule.keep_firing_for_ms {
                out.push(Effect::Resolved {
                    key: key.clone(),
                    episode,
                    at: now,
                });
                AlertState::Inactive
            } else {
                AlertState::Firing {
                    episode,
                    since,
                    last_active,
                    active: false,
                }
            }
        }
    };
}

fn fire(rule: &Rule, key: &AlertKey, now: i64, next: &mut u64, out: &mut Vec<Effect>) -> AlertState {
    let episode = *next;
    *next += 1;
    out.push(Effect::Fired {
        key: key.clone(),
        code: rule.code.clone(),
        episode,
        at: now,
    });
    AlertState::Firing {
        episode,
        since: now,
        last_active: now,
        active: true,
    }
}

/// A map with structured keys, as a list of pairs (JSON keys must be strings).
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
