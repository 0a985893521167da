//! A node's acknowledgements in the order its publishes came.
//!
//! MQTT 3.1.1 §4.6: a receiver sends its PUBACKs (and PUBRECs) in the order
//! the `PUBLISH`es arrived. The gateway commits events before telemetry, so it
//! finishes messages out of that order; [`AckQueue`] holds back a finished
//! message's acknowledgement until every earlier one is finished too.
//!
//! Entries are named by arrival number, not packet id: a node may reuse an id
//! as soon as it was acknowledged, and a number is never ambiguous.

use std::collections::VecDeque;

use rumqttc::mqttbytes::QoS;

/// The acknowledgements owed on one connection, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct AckQueue {
    /// Arrival number of the front entry.
    front: u64,
    /// Packet id, QoS (1: PUBACK, 2: PUBREC) and whether it is done.
    pending: VecDeque<(u16, QoS, bool)>,
}

impl AckQueue {
    /// A publish with `pkid` arrived; its arrival number.
    pub(crate) fn received(&mut self, pkid: u16, qos: QoS) -> u64 {
        self.pending.push_back((pkid, qos, false));
        self.front + (self.pending.len() as u64) - 1
    }

    /// The publish numbered `seq` is done; the acknowledgements to send now.
    pub(crate) fn done(&mut self, seq: u64) -> Vec<(u16, QoS)> {
        let index = seq.checked_sub(self.front).and_then(|i| usize::try_from(i).ok());
        if let Some(entry) = index.and_then(|i| self.pending.get_mut(i)) {
            entry.2 = true;
        }
        let mut out = Vec::new();
        while let Some(&(pkid, qos, true)) = self.pending.front() {
            self.pending.pop_front();
            self.front += 1;
            out.push((pkid, qos));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q1: QoS = QoS::AtLeastOnce;

    #[test]
    fn a_later_message_done_first_waits_for_the_earlier_ones() {
        let mut q = AckQueue::default();
        let (a, b, c) = (q.received(1, Q1), q.received(2, Q1), q.received(3, QoS::ExactlyOnce));
        assert!(q.done(c).is_empty());
        assert_eq!(q.done(a), vec![(1, Q1)]);
        assert_eq!(q.done(b), vec![(2, Q1), (3, QoS::ExactlyOnce)]);
        assert!(q.pending.is_empty());
    }

    #[test]
    fn a_reused_packet_id_is_acknowledged_once_per_arrival() {
        let mut q = AckQueue::default();
        let a = q.received(5, Q1);
        let b = q.received(6, Q1);
        assert_eq!(q.done(a), vec![(5, Q1)]);
        let c = q.received(5, Q1);
        assert!(q.done(c).is_empty());
        assert_eq!(q.done(b), vec![(6, Q1), (5, Q1)]);
    }

    #[test]
    fn a_number_done_twice_or_unknown_changes_nothing() {
        let mut q = AckQueue::default();
        let a = q.received(1, Q1);
        let b = q.received(2, Q1);
        assert_eq!(q.done(a), vec![(1, Q1)]);
        assert!(q.done(a).is_empty());
        assert!(q.done(99).is_empty());
        assert_eq!(q.done(b), vec![(2, Q1)]);
    }
}
