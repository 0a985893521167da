//! The store-and-forward buffer's overflow policy.

use firmware::outbox::{Dropped, Outbox, Priority};
use proptest::prelude::*;
use protocol::Kind;

#[test]
fn keeps_order_and_pops_from_the_front() {
    let mut o: Outbox<64, 4> = Outbox::new();
    assert!(o.push(Kind::Data, b"one", Priority::Telemetry, false));
    assert!(o.push(Kind::Event, b"two", Priority::Event, false));
    assert_eq!(o.front().unwrap().1, b"one");
    o.pop_front();
    assert_eq!(o.front().unwrap().1, b"two");
    assert_eq!(o.bytes_used(), 3);
}

#[test]
fn telemetry_goes_before_any_event() {
    let mut o: Outbox<12, 8> = Outbox::new();
    o.push(Kind::Event, b"E1E1", Priority::Event, false);
    o.push(Kind::Data, b"T1T1", Priority::Telemetry, false);
    o.push(Kind::Event, b"E2E2", Priority::Event, false);
    // Full (12 bytes). A new event pushes out the telemetry in the middle.
    assert!(o.push(Kind::Event, b"E3E3", Priority::Event, false));
    let kept: Vec<&[u8]> = drain(&mut o);
    assert_eq!(kept, [b"E1E1", b"E2E2", b"E3E3"]);
    assert_eq!(
        o.dropped(),
        Dropped {
            telemetry: 1,
            events: 0
        }
    );
}

#[test]
fn a_buffer_of_events_refuses_new_telemetry_and_drops_its_oldest_event_for_a_new_one() {
    let mut o: Outbox<8, 8> = Outbox::new();
    o.push(Kind::Event, b"E1E1", Priority::Event, false);
    o.push(Kind::Event, b"E2E2", Priority::Event, false);
    assert!(!o.push(Kind::Data, b"T1", Priority::Telemetry, false));
    assert!(o.push(Kind::Event, b"E3E3", Priority::Event, false));
    assert_eq!(drain(&mut o), [b"E2E2", b"E3E3"]);
    assert_eq!(
        o.dropped(),
        Dropped {
            telemetry: 1,
            events: 1
        }
    );
}

#[test]
fn the_slot_limit_counts_like_the_byte_limit() {
    let mut o: Outbox<1024, 2> = Outbox::new();
    o.push(Kind::Data, b"a", Priority::Telemetry, false);
    o.push(Kind::Data, b"b", Priority::Telemetry, false);
    o.push(Kind::Data, b"c", Priority::Telemetry, false);
    assert_eq!(drain(&mut o), [b"b", b"c"]);
    assert_eq!(o.dropped().telemetry, 1);
}

#[test]
fn an_oversized_payload_is_counted_not_stored() {
    let mut o: Outbox<4, 2> = Outbox::new();
    assert!(!o.push(Kind::Event, b"12345", Priority::Event, false));
    assert_eq!(o.dropped().events, 1);
    assert!(o.is_empty());
}

#[test]
fn a_link_loss_marks_everything_queued_as_replay() {
    let mut o: Outbox<64, 4> = Outbox::new();
    o.push(Kind::Data, b"x", Priority::Telemetry, false);
    o.mark_all_replay();
    o.push(Kind::Data, b"y", Priority::Telemetry, false);
    let flags: Vec<bool> = o.entries().map(|e| e.replay).collect();
    assert_eq!(flags, [true, false]);
}

fn drain<const B: usize, const S: usize>(o: &mut Outbox<B, S>) -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    while let Some((_, bytes)) = o.front() {
        out.push(&*Box::leak(bytes.to_vec().into_boxed_slice()));
        o.pop_front();
    }
    out
}

proptest! {
    /// Against a model: nothing is lost without being counted, order is kept,
    /// and no event is dropped while any telemetry is buffered.
    #[test]
    fn matches_the_model(ops in prop::collection::vec((any::<bool>(), 1usize..40, any::<bool>()), 1..300)) {
        let mut o: Outbox<256, 16> = Outbox::new();
        let mut model: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut id = 0u32;
        let mut pushed = 0u32;
        let mut delivered = 0u32;
        for (event, len, pop) in ops {
            if pop {
                if let Some((e, bytes)) = o.front() {
                    let (m_event, m_bytes) = model.remove(0);
                    prop_assert_eq!(e.priority == Priority::Event, m_event);
                    prop_assert_eq!(bytes, &m_bytes[..]);
                    o.pop_front();
                    delivered += 1;
                }
                continue;
            }
            id += 1;
            let mut payload = id.to_be_bytes().to_vec();
            payload.resize(len.max(4), 0);
            let prio = if event { Priority::Event } else { Priority::Telemetry };
            let events_before = o.dropped().events;
            pushed += 1;
            if o.push(Kind::Data, &payload, prio, false) {
                model.push((event, payload));
            }
            if o.dropped().events > events_before {
                // Telemetry goes first: an event may only go once none is left.
                prop_assert!(
                    o.entries().all(|e| e.priority == Priority::Event),
                    "an event was dropped while telemetry was still buffered"
                );
            }
            // Keep the model in step with what survived.
            let mut survivors = Vec::new();
            let mut bytes = 0;
            for e in o.entries() {
                bytes += usize::from(e.len);
                survivors.push(e.priority == Priority::Event);
            }
            prop_assert_eq!(bytes, o.bytes_used());
            model.retain(|m| o_contains(&o, &m.1));
            prop_assert_eq!(model.iter().map(|m| m.0).collect::<Vec<_>>(), survivors);
        }
        let d = o.dropped();
        prop_assert_eq!(pushed, delivered + u32::try_from(o.len()).unwrap() + d.telemetry + d.events);
    }
}

fn o_contains<const B: usize, const S: usize>(o: &Outbox<B, S>, payload: &[u8]) -> bool {
    let mut copy = o.clone();
    while let Some((_, bytes)) = copy.front() {
        if bytes == payload {
            return true;
        }
        copy.pop_front();
    }
    false
}
