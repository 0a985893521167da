//! The edge-node sessions a Sparkplug host application keeps: pure, fed
//! parsed topics, decoded payloads and the host's clock, so every rule is
//! tested message by message.
//!
//! The rules (Sparkplug 3.0, host application side):
//! - An NBIRTH starts the edge node's session: its `bdSeq`, its `seq`
//!   (0–255), its metrics' aliases. Every device of the node must be born
//!   again (DBIRTH) after it.
//! - Every later message of the node (DBIRTH, NDATA, DDATA, DDEATH) carries
//!   `seq` one more than the one before, modulo 256. A gap means something
//!   was lost (a DBIRTH, a value): the host asks for a rebirth (an NCMD
//!   `Node Control/Rebirth`), and still takes the message.
//! - A message from a node that is not born (the host started after the
//!   node, or it died) is dropped and a rebirth asked for; so is DDATA of a
//!   device without a DBIRTH, and a metric whose alias no birth gave.
//! - An NDEATH ends the session only when its `bdSeq` is the one of the
//!   current NBIRTH: the will of an older connection arriving late is stale.
//!   Every device of the node goes offline with it.
//! - Rebirth requests are spaced: at most one per node per `rebirth_every`,
//!   and none after the birth they asked for came.

use std::collections::{BTreeMap, HashMap};

use crate::payload::{BD_SEQ, Payload, Scalar};
use crate::topic::{MessageType, Topic};

/// One metric of a message, its alias resolved to its name.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric's name.
    pub name: String,
    /// Its value.
    pub value: Scalar,
    /// When it was taken (ms since the Unix epoch), if the metric says.
    pub timestamp: Option<u64>,
    /// Sent late from the edge node's store.
    pub historical: bool,
}

/// What a message meant for the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The edge node was born, with its metrics' current values.
    NodeBirth {
        /// Its session number.
        bdseq: Option<u64>,
        /// Its metrics.
        metrics: Vec<Sample>,
    },
    /// New values of the edge node's own metrics.
    NodeData {
        /// The metrics.
        metrics: Vec<Sample>,
    },
    /// The edge node's session ended.
    NodeDeath {
        /// Its devices that were online, now offline with it.
        devices: Vec<String>,
    },
    /// A device was born, with its metrics' current values.
    DeviceBirth {
        /// The device id.
        device: String,
        /// Its metrics.
        metrics: Vec<Sample>,
    },
    /// New values of a device's metrics.
    DeviceData {
        /// The device id.
        device: String,
        /// The metrics.
        metrics: Vec<Sample>,
    },
    /// A device went offline.
    DeviceDeath {
        /// The device id.
        device: String,
    },
}

/// Why the host asks an edge node to be born again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `seq` did not follow the one before.
    SeqGap,
    /// A message from an edge node with no current birth.
    BeforeBirth,
    /// DDATA or DDEATH of a device with no current birth.
    UnknownDevice,
    /// A metric by an alias no birth gave.
    UnknownAlias,
}

impl Reason {
    /// Every reason, for metric labels.
    pub const ALL: [Reason; 4] = [
        Reason::SeqGap,
        Reason::BeforeBirth,
        Reason::UnknownDevice,
        Reason::UnknownAlias,
    ];

    /// The metric label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Reason::SeqGap => "seq_gap",
            Reason::BeforeBirth => "before_birth",
            Reason::UnknownDevice => "unknown_device",
            Reason::UnknownAlias => "unknown_alias",
        }
    }
}

/// A rebirth the host wants of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebirth {
    /// Why.
    pub reason: Reason,
    /// Whether to send the NCMD now (false: one was sent less than
    /// `rebirth_every` ago, and this one is only counted).
    pub send: bool,
}

/// Something wrong with a message that the host survives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// NBIRTH or a later message without `seq`, or one above 255.
    BadSeq,
    /// NBIRTH without a `bdSeq` metric.
    NoBdSeq,
    /// An NDEATH whose `bdSeq` is not the current birth's: ignored.
    StaleDeath,
    /// A metric with neither a name nor a known alias.
    Unnamed,
}

/// What one message did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// What it meant (nothing, when it was dropped).
    pub events: Vec<Event>,
    /// A rebirth to ask for.
    pub rebirth: Option<Rebirth>,
    /// What was wrong with it.
    pub problems: Vec<Problem>,
}

/// The key of an edge node: its group and its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// The group id.
    pub group: String,
    /// The edge node id.
    pub edge: String,
}

#[derive(Clone, Debug, Default)]
struct Node {
    online: bool,
    bdseq: Option<u64>,
    last_seq: Option<u8>,
    aliases: HashMap<u64, String>,
    devices: BTreeMap<String, HashMap<u64, String>>,
    /// When the last rebirth request went out (host clock, ms).
    asked_ms: Option<i64>,
}

/// The sessions of every edge node the host has heard of.
#[derive(Clone, Debug)]
pub struct Host {
    nodes: HashMap<NodeKey, Node>,
    rebirth_every_ms: i64,
}

impl Host {
    /// A host that asks a node for a rebirth at most once per `rebirth_every_ms`.
    #[must_use]
    pub fn new(rebirth_every_ms: i64) -> Host {
        Host {
            nodes: HashMap::new(),
            rebirth_every_ms,
        }
    }

    /// Whether an edge node is online (born, not dead).
    #[must_use]
    pub fn is_online(&self, group: &str, edge: &str) -> bool {
        self.nodes
            .get(&NodeKey {
                group: group.to_owned(),
                edge: edge.to_owned(),
            })
            .is_some_and(|n| n.online)
    }

    /// The devices of an edge node that are online.
    #[must_use]
    pub fn devices_online(&self, group: &str, edge: &str) -> Vec<String> {
        self.nodes
            .get(&NodeKey {
                group: group.to_owned(),
                edge: edge.to_owned(),
            })
            .map(|n| n.devices.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes one message of an edge node at host time `now_ms`.
    pub fn handle(&mut self, topic: &Topic, payload: &Payload, now_ms: i64) -> Step {
        let key = NodeKey {
            group: topic.group.clone(),
            edge: topic.edge.clone(),
        };
        let every = self.rebirth_every_ms;
        let node = self.nodes.entry(key).or_default();
        let mut step = Step::default();
        match topic.kind {
            MessageType::NBirth => birth(node, payload, &mut step),
            MessageType::NDeath => {
                let bdseq = bd_seq(payload);
                let current = node.online && (node.bdseq.is_none() || bdseq.is_none() || node.bdseq == bdseq);
                if current {
                    node.online = false;
                    node.last_seq = None;
                    let devices = std::mem::take(&mut node.devices).into_keys().collect();
                    step.events.push(Event::NodeDeath { devices });
                } else {
                    step.problems.push(Problem::StaleDeath);
                }
            }
            MessageType::NCmd | MessageType::DCmd => {}
            MessageType::DBirth | MessageType::DDeath | MessageType::NData | MessageType::DData => {
                later(node, topic, payload, &mut step);
            }
        }
        if let Some(r) = &mut step.rebirth {
            r.send = node.asked_ms.is_none_or(|t| now_ms - t >= every || now_ms < t);
            if r.send {
                node.asked_ms = Some(now_ms);
            }
        }
        step
    }
}

/// An NBIRTH: a new session, new aliases, every device to be born again.
fn birth(node: &mut Node, payload: &Payload, step: &mut Step) {
    let seq = payload.seq.and_then(|s| u8::try_from(s).ok());
    if seq.is_none() {
        step.problems.push(Problem::BadSeq);
    }
    let bdseq = bd_seq(payload);
    if bdseq.is_none() {
        step.problems.push(Problem::NoBdSeq);
    }
    let (aliases, metrics) = born(payload, step);
    *node = Node {
        online: true,
        bdseq,
        last_seq: seq,
        aliases,
        devices: BTreeMap::new(),
        // The birth asked for came: the next trouble may ask again at once.
        asked_ms: None,
    };
    step.events.push(Event::NodeBirth { bdseq, metrics });
}

/// DBIRTH, DDEATH, NDATA, DDATA: within a session, in `seq` order.
fn later(node: &mut Node, topic: &Topic, payload: &Payload, step: &mut Step) {
    if !node.online {
        step.rebirth = Some(Rebirth {
            reason: Reason::BeforeBirth,
            send: true,
        });
        return;
    }
    match payload.seq.and_then(|s| u8::try_from(s).ok()) {
        None => {
            step.problems.push(Problem::BadSeq);
            want(step, Reason::SeqGap);
        }
        Some(seq) => {
            if node.last_seq.is_some_and(|last| last.wrapping_add(1) != seq) {
                want(step, Reason::SeqGap);
            }
            node.last_seq = Some(seq);
        }
    }
    let device = topic.device.clone().unwrap_or_default();
    match topic.kind {
        MessageType::DBirth => {
            let (aliases, metrics) = born(payload, step);
            node.devices.insert(device.clone(), aliases);
            step.events.push(Event::DeviceBirth { device, metrics });
        }
        MessageType::DDeath => {
            if node.devices.remove(&device).is_some() {
                step.events.push(Event::DeviceDeath { device });
            } else {
                want(step, Reason::UnknownDevice);
            }
        }
        MessageType::NData => {
            let metrics = resolve(&node.aliases, payload, step);
            step.events.push(Event::NodeData { metrics });
        }
        MessageType::DData => {
            if let Some(aliases) = node.devices.get(&device) {
                let metrics = resolve(aliases, payload, step);
                step.events.push(Event::DeviceData { device, metrics });
            } else {
                want(step, Reason::UnknownDevice);
            }
        }
        MessageType::NBirth | MessageType::NDeath | MessageType::NCmd | MessageType::DCmd => {}
    }
}

/// Asks for a rebirth, keeping the first reason found.
fn want(step: &mut Step, reason: Reason) {
    if step.rebirth.is_none() {
        step.rebirth = Some(Rebirth { reason, send: true });
    }
}

/// A birth's aliases and its metrics (every metric of a birth has a name).
fn born(payload: &Payload, step: &mut Step) -> (HashMap<u64, String>, Vec<Sample>) {
    let mut aliases = HashMap::new();
    let mut metrics = Vec::with_capacity(payload.metrics.len());
    for m in &payload.metrics {
        let Some(name) = m.name.clone() else {
            step.problems.push(Problem::Unnamed);
            continue;
        };
        if let Some(a) = m.alias {
            aliases.insert(a, name.clone());
        }
        metrics.push(sample(name, m));
    }
    (aliases, metrics)
}

/// Data's metrics, each by its name or by the alias its birth gave.
fn resolve(aliases: &HashMap<u64, String>, payload: &Payload, step: &mut Step) -> Vec<Sample> {
    let mut metrics = Vec::with_capacity(payload.metrics.len());
    for m in &payload.metrics {
        let name = match (&m.name, m.alias) {
            (Some(n), _) => n.clone(),
            (None, Some(a)) => {
                if let Some(n) = aliases.get(&a) {
                    n.clone()
                } else {
                    want(step, Reason::UnknownAlias);
                    continue;
                }
            }
            (None, None) => {
                step.problems.push(Problem::Unnamed);
                continue;
            }
        };
        metrics.push(sample(name, m));
    }
    metrics
}

fn sample(name: String, m: &crate::payload::Metric) -> Sample {
    Sample {
        name,
        value: m.scalar(),
        timestamp: m.timestamp,
        historical: m.is_historical == Some(true),
    }
}

/// The `bdSeq` metric of an NBIRTH or NDEATH.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a whole, checked number
fn bd_seq(payload: &Payload) -> Option<u64> {
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(BD_SEQ))
        .and_then(|m| match m.scalar() {
            Scalar::Number(n) if n >= 0.0 && n.fract() == 0.0 => Some(n as u64),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{DataType, Metric, MetricValue};

    fn topic(t: &str) -> Topic {
        Topic::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn metric(name: Option<&str>, alias: Option<u64>, v: f64) -> Metric {
        Metric {
            name: name.map(str::to_owned),
            alias,
            datatype: Some(DataType::Double as u32),
            value: Some(MetricValue::DoubleValue(v)),
            ..Metric::default()
        }
    }

    fn bd(n: u64) -> Metric {
        Metric {
            name: Some(BD_SEQ.into()),
            datatype: Some(DataType::Int64 as u32),
            value: Some(MetricValue::LongValue(n)),
            ..Metric::default()
        }
    }

    fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Payload {
        Payload {
            timestamp: Some(1_700_000_000_000),
            metrics,
            seq,
            ..Payload::default()
        }
    }

    /// NBIRTH (seq 0, bdSeq 3) and a DBIRTH (seq 1) of `pump` with alias 7 = Pressure.
    fn born_host() -> Host {
        let mut h = Host::new(10_000);
        let s = h.handle(
            &topic("spBv1.0/g/NBIRTH/e"),
            &payload(Some(0), vec![bd(3), metric(Some("Temp"), Some(1), 20.0)]),
            0,
        );
        assert_eq!(s.rebirth, None);
        assert!(s.problems.is_empty(), "{s:?}");
        let s = h.handle(
            &topic("spBv1.0/g/DBIRTH/e/pump"),
            &payload(Some(1), vec![metric(Some("Pressure"), Some(7), 0.3)]),
            0,
        );
        assert_eq!(s.rebirth, None);
        h
    }

    #[test]
    fn a_birth_gives_aliases_and_data_by_alias_is_named() {
        let mut h = born_host();
        let s = h.handle(
            &topic("spBv1.0/g/DDATA/e/pump"),
            &payload(Some(2), vec![metric(None, Some(7), 0.05)]),
            0,
        );
        assert_eq!(s.rebirth, None);
        let Some(Event::DeviceData { device, metrics }) = s.events.first() else {
            panic!("{s:?}")
        };
        assert_eq!(device, "pump");
        assert_eq!(metrics[0].name, "Pressure");
        assert_eq!(metrics[0].value, Scalar::Number(0.05));
        let s = h.handle(
            &topic("spBv1.0/g/NDATA/e"),
            &payload(Some(3), vec![metric(None, Some(1), 21.0)]),
            0,
        );
        assert!(matches!(&s.events[0], Event::NodeData { metrics } if metrics[0].name == "Temp"));
    }

    #[test]
    fn the_birth_event_carries_the_bdseq_and_current_values() {
        let mut h = Host::new(0);
        let s = h.handle(
            &topic("spBv1.0/g/NBIRTH/e"),
            &payload(Some(200), vec![bd(9), metric(Some("Temp"), Some(1), 20.0)]),
            0,
        );
        let Some(Event::NodeBirth { bdseq, metrics }) = s.events.first() else {
            panic!("{s:?}")
        };
        assert_eq!(*bdseq, Some(9));
        assert_eq!(metrics.len(), 2);
        assert!(h.is_online("g", "e"));
    }

    #[test]
    fn seq_wraps_from_255_to_0_without_a_rebirth() {
        let mut h = Host::new(10_000);
        h.handle(&topic("spBv1.0/g/NBIRTH/e"), &payload(Some(254), vec![bd(0)]), 0);
        for seq in [255, 0, 1] {
            let s = h.handle(&topic("spBv1.0/g/NDATA/e"), &payload(Some(seq), vec![]), 0);
            assert_eq!(s.rebirth, None, "seq {seq}");
        }
    }

    #[test]
    fn a_seq_gap_asks_for_a_rebirth_and_keeps_the_data() {
        let mut h = born_host();
        let s = h.handle(
            &topic("spBv1.0/g/DDATA/e/pump"),
            &payload(Some(5), vec![metric(None, Some(7), 0.2)]),
            0,
        );
        assert_eq!(
            s.rebirth,
            Some(Rebirth {
                reason: Reason::SeqGap,
                send: true
            })
        );
        assert_eq!(s.events.len(), 1);
        // The count goes on from the message that came: 6 follows 5.
        let s = h.handle(&topic("spBv1.0/g/NDATA/e"), &payload(Some(6), vec![]), 0);
        assert_eq!(s.rebirth, None);
    }

    #[test]
    fn data_before_any_birth_is_dropped_and_asks_for_one() {
        let mut h = Host::new(10_000);
        let s = h.handle(
            &topic("spBv1.0/g/DDATA/e/pump"),
            &payload(Some(4), vec![metric(Some("Pressure"), None, 0.2)]),
            0,
        );
        assert!(s.events.is_empty());
        assert_eq!(s.rebirth.map(|r| r.reason), Some(Reason::BeforeBirth));
    }

    #[test]
    fn data_of_a_device_never_born_asks_for_a_rebirth() {
        let mut h = born_host();
        let s = h.handle(
            &topic("spBv1.0/g/DDATA/e/other"),
            &payload(Some(2), vec![metric(None, Some(7), 0.2)]),
            0,
        );
        assert!(s.events.is_empty());
        assert_eq!(s.rebirth.map(|r| r.reason), Some(Reason::UnknownDevice));
    }

    #[test]
    fn an_unknown_alias_is_dropped_and_asks_for_a_rebirth() {
        let mut h = born_host();
        let s = h.handle(
            &topic("spBv1.0/g/DDATA/e/pump"),
            &payload(Some(2), vec![metric(None, Some(99), 1.0), metric(None, Some(7), 0.4)]),
            0,
        );
        assert_eq!(s.rebirth.map(|r| r.reason), Some(Reason::UnknownAlias));
        let Some(Event::DeviceData { metrics, .. }) = s.events.first() else {
            panic!("{s:?}")
        };
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].name, "Pressure");
    }

    #[test]
    fn rebirth_requests_are_spaced_per_node_and_reset_by_the_birth() {
        let mut h = Host::new(10_000);
        let t = topic("spBv1.0/g/NDATA/e");
        let sent = |h: &mut Host, now| h.handle(&t, &payload(Some(1), vec![]), now).rebirth.map(|r| r.send);
        assert_eq!(sent(&mut h, 0), Some(true));
        assert_eq!(sent(&mut h, 5_000), Some(false));
        assert_eq!(sent(&mut h, 10_000), Some(true));
        // Another node is asked independently.
        let other = h.handle(&topic("spBv1.0/g/NDATA/f"), &payload(Some(1), vec![]), 10_001);
        assert_eq!(other.rebirth.map(|r| r.send), Some(true));
        // The birth came: the next gap asks at once.
        h.handle(&topic("spBv1.0/g/NBIRTH/e"), &payload(Some(0), vec![bd(1)]), 10_002);
        let s = h.handle(&t, &payload(Some(9), vec![]), 10_003);
        assert_eq!(
            s.rebirth,
            Some(Rebirth {
                reason: Reason::SeqGap,
                send: true
            })
        );
    }

    #[test]
    fn ndeath_with_the_births_bdseq_takes_the_node_and_its_devices_offline() {
        let mut h = born_host();
        assert_eq!(h.devices_online("g", "e"), vec!["pump".to_owned()]);
        let s = h.handle(&topic("spBv1.0/g/NDEATH/e"), &payload(None, vec![bd(3)]), 0);
        assert_eq!(
            s.events,
            vec![Event::NodeDeath {
                devices: vec!["pump".into()]
            }]
        );
        assert!(!h.is_online("g", "e"));
        assert!(h.devices_online("g", "e").is_empty());
        // Data after the death: no session, a rebirth is asked for.
        let s = h.handle(
            &topic("spBv1.0/g/DDATA/e/pump"),
            &payload(Some(2), vec![metric(None, Some(7), 0.2)]),
            0,
        );
        assert!(s.events.is_empty());
        assert_eq!(s.rebirth.map(|r| r.reason), Some(Reason::BeforeBirth));
    }

    #[test]
    fn an_ndeath_of_an_older_session_is_stale() {
        let mut h = born_host();
        let s = h.handle(&topic("spBv1.0/g/NDEATH/e"), &payload(None, vec![bd(2)]), 0);
        assert!(s.events.is_empty());
        assert_eq!(s.problems, vec![Problem::StaleDeath]);
        assert!(h.is_online("g", "e"));
    }

    #[test]
    fn ddeath_takes_one_device_offline() {
        let mut h = born_host();
        let s = h.handle(&topic("spBv1.0/g/DDEATH/e/pump"), &payload(Some(2), vec![]), 0);
        assert_eq!(s.events, vec![Event::DeviceDeath { device: "pump".into() }]);
        assert!(h.is_online("g", "e"));
        assert!(h.devices_online("g", "e").is_empty());
    }

    #[test]
    fn a_new_nbirth_forgets_the_devices_until_they_are_born_again() {
        let mut h = born_host();
        h.handle(&topic("spBv1.0/g/NBIRTH/e"), &payload(Some(0), vec![bd(4)]), 0);
        let s = h.handle(
            &topic("spBv1.0/g/DDATA/e/pump"),
            &payload(Some(1), vec![metric(None, Some(7), 0.2)]),
            0,
        );
        assert_eq!(s.rebirth.map(|r| r.reason), Some(Reason::UnknownDevice));
    }

    #[test]
    fn a_birth_without_seq_or_bdseq_is_taken_and_flagged() {
        let mut h = Host::new(0);
        let s = h.handle(&topic("spBv1.0/g/NBIRTH/e"), &payload(Some(300), vec![]), 0);
        assert_eq!(s.problems, vec![Problem::BadSeq, Problem::NoBdSeq]);
        assert!(h.is_online("g", "e"));
        // Without a bdSeq to compare, a death ends the session.
        let s = h.handle(&topic("spBv1.0/g/NDEATH/e"), &payload(None, vec![]), 0);
        assert!(matches!(s.events[0], Event::NodeDeath { .. }));
    }
}
