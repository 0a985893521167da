//! The broker's shared state: sessions, subscriptions, retained messages.
//!
//! Held behind one `std::sync::Mutex`, briefly: every operation here is
//! synchronous, and a publish reaches a connection through `try_send`, so a
//! slow subscriber never holds up the router (its message is dropped and
//! counted instead).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use tokio::sync::{mpsc, oneshot};

use super::{Settings, Stats};

/// A topic name a client may publish to: not empty, no wildcard, no NUL (§4.7.3).
pub(crate) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && u16::try_from(topic.len()).is_ok() && !topic.contains(['+', '#', '\0'])
}

/// A filter a client may subscribe to (§4.7.1), of at most 32 levels: the
/// subscription tree is walked recursively, so its depth stays small.
pub(crate) fn valid_filter(filter: &str) -> bool {
    !filter.contains('\0') && filter.split('/').nth(32).is_none() && rumqttc::mqttbytes::valid_filter(filter)
}

/// The lower of two QoS levels.
pub(crate) fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) < (b as u8) { a } else { b }
}

/// Appends `p`, dropping the oldest beyond `cap`; how many were dropped.
pub(crate) fn push_bounded(queue: &mut VecDeque<Publish>, p: Publish, cap: usize) -> u64 {
    queue.push_back(p);
    let mut dropped = 0;
    while queue.len() > cap {
        queue.pop_front();
        dropped += 1;
    }
    dropped
}

/// Subscribers by filter, as a tree of topic levels: a publish visits only
/// the branches its own levels, `+` and `#` name, however many clients there are.
#[derive(Default)]
pub(crate) struct Filters {
    clients: HashMap<Arc<str>, QoS>,
    children: HashMap<String, Filters>,
}

/// Adds `from` to `into`, keeping each client's highest QoS.
fn merge(into: &mut HashMap<Arc<str>, QoS>, from: &HashMap<Arc<str>, QoS>) {
    for (client, &qos) in from {
        let q = into.entry(client.clone()).or_insert(qos);
        *q = if (qos as u8) > (*q as u8) { qos } else { *q };
    }
}

impl Filters {
    pub(crate) fn add(&mut self, filter: &str, client: &Arc<str>, qos: QoS) {
        let node = filter
            .split('/')
            .fold(self, |n, level| n.children.entry(level.to_owned()).or_default());
        node.clients.insert(client.clone(), qos);
    }

    pub(crate) fn remove(&mut self, filter: &str, client: &str) {
        self.remove_levels(&mut filter.split('/'), client);
    }

    /// Whether this node is left empty, for its parent to prune.
    fn remove_levels<'a>(&mut self, levels: &mut impl Iterator<Item = &'a str>, client: &str) -> bool {
        match levels.next() {
            None => _ = self.clients.remove(client),
            Some(level) => {
                if self
                    .children
                    .get_mut(level)
                    .is_some_and(|c| c.remove_levels(levels, client))
                {
                    self.children.remove(level);
                }
            }
        }
        self.clients.is_empty() && self.children.is_empty()
    }

    /// The clients a publish on `topic` goes to, each once at its highest QoS.
    pub(crate) fn matching(&self, topic: &str) -> HashMap<Arc<str>, QoS> {
        let mut out = HashMap::new();
        let levels: Vec<&str> = topic.split('/').collect();
        self.collect(&levels, topic.starts_with('$'), &mut out);
        out
    }

    /// `dollar`: at the first level of a `$` topic, which no wildcard matches (§4.7.2).
    fn collect(&self, levels: &[&str], dollar: bool, out: &mut HashMap<Arc<str>, QoS>) {
        if let Some(all) = self.children.get("#").filter(|_| !dollar) {
            merge(out, &all.clients);
        }
        match levels.split_first() {
            None => merge(out, &self.clients),
            Some((level, rest)) => {
                if let Some(c) = self.children.get(*level) {
                    c.collect(rest, false, out);
                }
                if let Some(c) = self.children.get("+").filter(|_| !dollar) {
                    c.collect(rest, false, out);
                }
            }
        }
    }
}

/// A client's live connection, as the router sees it.
pub(crate) struct Link {
    pub(crate) id: u64,
    /// Publishes to deliver (bounded: `Settings::outgoing_queue`).
    pub(crate) tx: mpsc::Sender<Publish>,
    /// Closes the connection when a newer one takes its client id over.
    pub(crate) kill: Option<oneshot::Sender<()>>,
}

/// A client's session: its subscriptions, and while it is offline
/// (`clean_session=false` only), the QoS 1 messages it missed.
#[derive(Default)]
struct Session {
    persistent: bool,
    filters: HashMap<String, QoS>,
    link: Option<Link>,
    queue: VecDeque<Publish>,
}

/// What [`State::attach`] found.
pub(crate) enum Attach {
    /// Attached: whether a stored session was resumed, and its queued messages.
    Done { present: bool, queued: VecDeque<Publish> },
    /// Another connection holds the client id: kill it, wait until `tx` closes, try again.
    Busy {
        kill: Option<oneshot::Sender<()>>,
        tx: mpsc::Sender<Publish>,
    },
    /// `max_connections` reached.
    Full,
}

/// Sessions, subscriptions and retained messages.
#[derive(Default)]
pub(crate) struct State {
    sessions: HashMap<Arc<str>, Session>,
    filters: Filters,
    retained: HashMap<String, Publish>,
    online: usize,
}

impl State {
    /// Closes the live connections whose session key ends with `suffix`
    /// (`@{username}`: every session of one device).
    pub(crate) fn kick(&mut self, suffix: &str) {
        for (_, s) in self.sessions.iter_mut().filter(|(k, _)| k.ends_with(suffix)) {
            if let Some(kill) = s.link.as_mut().and_then(|l| l.kill.take()) {
                let _ = kill.send(());
            }
        }
    }

    /// Attaches a new connection to `client`'s session (resumed or new).
    pub(crate) fn attach(
        &mut self,
        client: &Arc<str>,
        clean: bool,
        link: Link,
        settings: &Settings,
        stats: &Stats,
    ) -> Attach {
        if let Some(Session { link: Some(old), .. }) = self.sessions.get_mut(client) {
            if !old.tx.is_closed() {
                return Attach::Busy {
                    kill: old.kill.take(),
                    tx: old.tx.clone(),
                };
            }
            // Its task ended without detaching (it panicked): forget the link.
            let id = old.id;
            self.detach(client, id, Vec::new(), settings, stats);
        }
        if self.online >= settings.max_connections {
            return Attach::Full;
        }
        let (present, mut session) = match self.sessions.remove(client) {
            Some(s) if !clean => (true, s),
            Some(s) => {
                s.filters.keys().for_each(|f| self.filters.remove(f, client));
                (false, Session::default())
            }
            None => (false, Session::default()),
        };
        session.persistent = !clean;
        session.link = Some(link);
        let queued = std::mem::take(&mut session.queue);
        self.sessions.insert(client.clone(), session);
        self.online += 1;
        stats.connections.fetch_add(1, Relaxed);
        Attach::Done { present, queued }
    }

    /// Connection `id` of `client` ended; `left` are its undelivered QoS 1
    /// messages, oldest first, kept for a persistent session.
    pub(crate) fn detach(
        &mut self,
        client: &Arc<str>,
        id: u64,
        left: Vec<Publish>,
        settings: &Settings,
        stats: &Stats,
    ) {
        let Some(s) = self.sessions.get_mut(client) else { return };
        if s.link.as_ref().is_none_or(|l| l.id != id) {
            return;
        }
        s.link = None;
        self.online -= 1;
        stats.connections.fetch_sub(1, Relaxed);
        if s.persistent {
            let newer = std::mem::take(&mut s.queue);
            for p in left.into_iter().chain(newer) {
                let dropped = push_bounded(&mut s.queue, p, settings.session_queue);
                stats.dropped_qos1_total.fetch_add(dropped, Relaxed);
            }
        } else if let Some(s) = self.sessions.remove(client) {
            s.filters.keys().for_each(|f| self.filters.remove(f, client));
        }
    }

    /// Subscribes `client`; the retained messages the new filter matches.
    pub(crate) fn subscribe(&mut self, client: &Arc<str>, filter: &str, qos: QoS) -> Vec<Publish> {
        let Some(s) = self.sessions.get_mut(client) else {
            return Vec::new();
        };
        s.filters.insert(filter.to_owned(), qos);
        self.filters.add(filter, client, qos);
        // Matched the way publishes are, through a tree of this one filter.
        let mut one = Filters::default();
        one.add(filter, client, qos);
        let retained = self.retained.values().filter(|p| !one.matching(&p.topic).is_empty());
        retained
            .map(|p| Publish {
                qos: min_qos(p.qos, qos),
                retain: true,
                ..p.clone()
            })
            .collect()
    }

    pub(crate) fn unsubscribe(&mut self, client: &Arc<str>, filter: &str) {
        if let Some(s) = self.sessions.get_mut(client) {
            s.filters.remove(filter);
            self.filters.remove(filter, client);
        }
    }

    /// Keeps a retained message and hands `p` to every matching subscriber.
    pub(crate) fn publish(&mut self, p: &Publish, settings: &Settings, stats: &Stats) {
        if p.retain {
            if p.payload.is_empty() {
                self.retained.remove(&p.topic);
            } else if self.retained.len() < settings.max_retained || self.retained.contains_key(&p.topic) {
                let kept = Publish {
                    dup: false,
                    pkid: 0,
                    ..p.clone()
                };
                self.retained.insert(p.topic.clone(), kept);
            } else {
                stats.dropped_retained_total.fetch_add(1, Relaxed);
            }
        }
        for (client, qos) in self.filters.matching(&p.topic) {
            let Some(s) = self.sessions.get_mut(&client) else {
                continue;
            };
            let qos = min_qos(p.qos, qos);
            let out = Publish::from_bytes(p.topic.clone(), qos, p.payload.clone());
            let out = match &s.link {
                Some(link) => match link.tx.try_send(out) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let dropped = if qos == QoS::AtMostOnce {
                            &stats.dropped_qos0_total
                        } else {
                            &stats.dropped_qos1_total
                        };
                        dropped.fetch_add(1, Relaxed);
                        continue;
                    }
                    // Its connection is closing: kept like an offline session's.
                    Err(mpsc::error::TrySendError::Closed(out)) => out,
                },
                None => out,
            };
            // QoS 0 for an offline client is not kept (as Mosquitto by default).
            if s.persistent && qos != QoS::AtMostOnce {
                let dropped = push_bounded(&mut s.queue, out, settings.session_queue);
                stats.dropped_qos1_total.fetch_add(dropped, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_by_level_and_never_a_leading_dollar() {
        let cases = [
            ("fm/v1/+/+/+/event", "fm/v1/s/elevator/E1/event", true),
            ("fm/v1/s/#", "fm/v1/s", true),
            ("fm/#", "fm/v1/s/a/b", true),
            ("#", "fm/v1", true),
            ("fm/v1/+", "fm/v1/s/a", false),
            ("fm/v1/+", "fm/v1", false),
            ("a/+", "a/", true),
            ("+/x", "/x", true),
            ("a/b", "a/b/c", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/x", "é/x", false),
        ];
        let c: Arc<str> = "c".into();
        for (filter, topic, expected) in cases {
            let mut f = Filters::default();
            f.add(filter, &c, QoS::AtMostOnce);
            assert_eq!(f.matching(topic).contains_key("c"), expected, "{filter} {topic}");
        }
    }

    #[test]
    fn topics_and_filters_are_validated() {
        assert!(valid_topic("fm/v1/s/elevator/E1/data"));
        assert!(!valid_topic(""));
        assert!(!valid_topic("fm/+/x"));
        assert!(!valid_topic("fm/#"));
        assert!(!valid_topic("a\0b"));
        assert!(valid_filter("fm/+/x/#"));
        assert!(!valid_filter("fm/x#"));
        assert!(!valid_filter("fm/#/x"));
        assert!(!valid_filter(""));
        assert!(!valid_filter(&"a/".repeat(32)));
    }

    #[test]
    fn a_client_gets_a_publish_once_at_its_highest_qos() {
        let mut f = Filters::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        f.add("fm/v1/s/elevator/E1/event", &a, QoS::AtMostOnce);
        f.add("fm/v1/+/+/+/event", &a, QoS::AtLeastOnce);
        f.add("fm/#", &b, QoS::AtMostOnce);
        let m = f.matching("fm/v1/s/elevator/E1/event");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&a], QoS::AtLeastOnce);
        assert_eq!(m[&b], QoS::AtMostOnce);
        f.remove("fm/#", "b");
        f.remove("fm/v1/+/+/+/event", "a");
        assert_eq!(f.matching("fm/v1/s/elevator/E1/event")[&a], QoS::AtMostOnce);
        f.remove("fm/v1/s/elevator/E1/event", "a");
        assert!(f.children.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn ten_thousand_clients_with_two_filters_each_route_quickly() {
        let mut f = Filters::default();
        for i in 0..10_000 {
            let c: Arc<str> = format!("node-{i}").into();
            f.add(&format!("fm/v1/s/charger/C{i}/cmd"), &c, QoS::AtLeastOnce);
            f.add(&format!("fm/v1/+/+/C{i}/#"), &c, QoS::AtLeastOnce);
        }
        let start = std::time::Instant::now();
        for _ in 0..10 {
            assert_eq!(f.matching("fm/v1/s/charger/C7/cmd").len(), 1);
        }
        // Unoptimised and on a busy machine: well under the time of a network round trip.
        assert!(
            start.elapsed() < std::time::Duration::from_millis(20),
            "{:?}",
            start.elapsed() / 10
        );
    }

    fn msg(i: u8) -> Publish {
        Publish::new("t", QoS::AtLeastOnce, vec![i])
    }

    #[test]
    fn an_offline_persistent_session_keeps_its_qos1_messages_in_order() {
        let (settings, stats) = (
            Settings {
                session_queue: 2,
                ..Settings::default()
            },
            Stats::default(),
        );
        let mut st = State::default();
        let c: Arc<str> = "n1".into();
        let (tx, _rx) = mpsc::channel(4);
        assert!(matches!(
            st.attach(&c, false, Link { id: 1, tx, kill: None }, &settings, &stats),
            Attach::Done { present: false, .. }
        ));
        st.subscribe(&c, "t", QoS::AtLeastOnce);
        st.detach(&c, 1, vec![msg(1)], &settings, &stats);
        st.publish(&msg(2), &settings, &stats);
        st.publish(&Publish::new("t", QoS::AtMostOnce, vec![9]), &settings, &stats);
        st.publish(&msg(3), &settings, &stats);
        assert_eq!(stats.dropped_qos1_total.load(Relaxed), 1);
        let (tx, _rx) = mpsc::channel(4);
        let Attach::Done { present: true, queued } =
            st.attach(&c, false, Link { id: 2, tx, kill: None }, &settings, &stats)
        else {
            panic!("the session was not resumed")
        };
        assert_eq!(queued.iter().map(|p| p.payload[0]).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(stats.connections.load(Relaxed), 1);
    }
}
