//! Acknowledging QoS 1 messages in the order they arrived.
//!
//! The gateway acknowledges a message only once it is stored, and its
//! pipeline takes events before telemetry, so messages are stored out of
//! their arrival order. MQTT 3.1.1 (§4.6) says a receiver MUST send its
//! acknowledgements (`PUBACK`) in the order the messages (`PUBLISH`) came;
//! some brokers (rumqttd, for one) drop the connection on an
//! out-of-order acknowledgement.
//! [`AckOrder`] holds back the acknowledgement of a stored message until
//! every message that came before it is stored too.
//!
//! ```text
//! arrived:  d1  d2  e3        stored: e3, d1, d2
//! acked:                      (e3 waits) → d1 → d2, e3
//! ```
//!
//! Pure: the MQTT task tells it what arrived, the pipeline what is done, and
//! it answers which packet ids to acknowledge now.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rumqttc::{AsyncClient, QoS};

/// A message to acknowledge once it is done, tied to the connection it came
/// on: after a reconnection the broker sends unacknowledged messages again,
/// and an id of the old connection must never acknowledge one of the new.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    connection: u64,
    pkid: u16,
}

/// The acknowledgements of one gateway, in arrival order.
#[derive(Debug, Default)]
pub struct AckOrder {
    connection: u64,
    /// Packet ids in arrival order, and whether each is done.
    pending: VecDeque<(u16, bool)>,
}

impl AckOrder {
    /// An order with no connection yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection to the broker: what was pending on the old one is
    /// forgotten (the broker sends it again).
    pub fn connected(&mut self) {
        self.connection += 1;
        self.pending.clear();
    }

    /// A QoS 1 message with `pkid` arrived.
    pub fn received(&mut self, pkid: u16) -> Ticket {
        self.pending.push_back((pkid, false));
        Ticket {
            connection: self.connection,
            pkid,
        }
    }

    /// The message of `ticket` is done (stored, refused or a duplicate);
    /// returns the packet ids to acknowledge now, in arrival order.
    pub fn done(&mut self, ticket: Ticket) -> Vec<u16> {
        if ticket.connection != self.connection {
            return Vec::new();
        }
        if let Some(entry) = self.pending.iter_mut().find(|(id, done)| *id == ticket.pkid && !done) {
            entry.1 = true;
        }
        let mut out = Vec::new();
        while let Some((id, true)) = self.pending.front().copied() {
            self.pending.pop_front();
            out.push(id);
        }
        out
    }

    /// Messages waiting for their acknowledgement (done or not).
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

/// The acknowledgement of one message, sent once its batch is committed.
pub(crate) enum Done {
    /// A PUBACK to the broker the gateway is a client of, in arrival order.
    Client {
        acker: Acker,
        ticket: crate::ingest::acks::Ticket,
        qos: QoS,
    },
    /// A PUBACK from the embedded broker to the node itself.
    Node(crate::broker::Ack),
}

impl Done {
    /// Sends the acknowledgement (and those it held back).
    pub(crate) fn release(self) {
        match self {
            Done::Client { acker, ticket, qos } => acker.done(ticket, qos),
            Done::Node(ack) => ack.done(),
        }
    }
}

/// The broker connection's acknowledgements: sent in arrival order, each
/// once its message (and every one before it) is done.
#[derive(Clone)]
pub(crate) struct Acker {
    pub(crate) client: AsyncClient,
    pub(crate) order: Arc<Mutex<crate::ingest::acks::AckOrder>>,
}

impl Acker {
    pub(crate) fn order(&self) -> std::sync::MutexGuard<'_, crate::ingest::acks::AckOrder> {
        self.order.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a place in the order for a message that needs acknowledging.
    pub(crate) fn received(&self, p: &rumqttc::Publish) -> Option<Done> {
        (p.qos != QoS::AtMostOnce).then(|| Done::Client {
            acker: self.clone(),
            ticket: self.order().received(p.pkid),
            qos: p.qos,
        })
    }

    /// The message is done: acknowledges what may be acknowledged now.
    pub(crate) fn done(&self, ticket: crate::ingest::acks::Ticket, qos: QoS) {
        let ids = self.order().done(ticket);
        for pkid in ids {
            let mut ack = rumqttc::Publish::new("", qos, Vec::new());
            ack.pkid = pkid;
            if let Err(e) = self.client.try_ack(&ack) {
                tracing::warn!(error = %e, "could not acknowledge a message; the broker will send it again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stored_first_waits_for_the_samples_before_it() {
        let mut o = AckOrder::new();
        o.connected();
        let d1 = o.received(1);
        let d2 = o.received(2);
        let e3 = o.received(3);
        assert!(o.done(e3).is_empty());
        assert_eq!(o.done(d1), vec![1]);
        assert_eq!(o.done(d2), vec![2, 3]);
        assert_eq!(o.waiting(), 0);
    }

    #[test]
    fn a_ticket_of_an_old_connection_acknowledges_nothing_on_the_new() {
        let mut o = AckOrder::new();
        o.connected();
        let old = o.received(7);
        o.connected();
        let new = o.received(7);
        assert!(o.done(old).is_empty());
        assert_eq!(o.done(new), vec![7]);
    }

    #[test]
    fn a_packet_id_used_again_is_acknowledged_once_per_arrival() {
        let mut o = AckOrder::new();
        o.connected();
        let a = o.received(5);
        let b = o.received(6);
        assert_eq!(o.done(a), vec![5]);
        let c = o.received(5);
        assert!(o.done(c).is_empty());
        assert_eq!(o.done(b), vec![6, 5]);
    }
}
