//! Topics parse strictly, name the bad segment, and round-trip.

use proptest::prelude::*;
use protocol::topic::{MAX_TOPIC_LEN, Problem, Segment};
use protocol::{DeviceClass, DeviceId, Kind, SiteId, Topic};

#[test]
fn parses_the_contract_layout() {
    let t = Topic::parse("fm/v1/lakeside-1/elevator/31104201002019000123/data").unwrap();
    assert_eq!(t.site.as_str(), "lakeside-1");
    assert_eq!(t.class, DeviceClass::Elevator);
    assert_eq!(t.device.as_str(), "31104201002019000123");
    assert_eq!(t.kind, Kind::Data);
    assert_eq!(
        t.with_kind(Kind::Ack).to_string(),
        "fm/v1/lakeside-1/elevator/31104201002019000123/ack"
    );
}

#[test]
fn errors_name_the_segment() {
    let cases: &[(&str, Segment, &str)] = &[
        ("", Segment::Prefix, "is empty"),
        ("xx/v1/s/elevator/d/data", Segment::Prefix, "must be `fm`"),
        ("fm/v2/s/elevator/d/data", Segment::Version, "must be `v1`"),
        (
            "fm/v1/Site/elevator/d/data",
            Segment::Site,
            "has 'S' at byte 0, allowed are [a-z0-9-]",
        ),
        ("fm/v1//elevator/d/data", Segment::Site, "is empty"),
        (
            "fm/v1/s/escalator/d/data",
            Segment::Class,
            "must be elevator, firepump or charger",
        ),
        ("fm/v1/s/charger/d.1/data", Segment::Device, "has '.' at byte 1"),
        ("fm/v1/s/charger/d/status", Segment::Kind, "must be birth"),
        ("fm/v1/s/charger/d", Segment::Kind, "is missing"),
        ("fm/v1/s/charger/d/data/", Segment::Extra, "past the end"),
        ("fm/v1/s/charger/+/data", Segment::Device, "'+'"),
        ("fm/v1/#", Segment::Site, "'#'"),
    ];
    for (topic, segment, text) in cases {
        let e = Topic::parse(topic).unwrap_err();
        assert_eq!(e.segment, *segment, "{topic}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(segment.as_str()) && msg.contains(text), "{topic}: {msg}");
    }
    let long_site = format!("fm/v1/{}/elevator/d/data", "a".repeat(33));
    let e = Topic::parse(&long_site).unwrap_err();
    assert_eq!(e.problem, Problem::TooLong { len: 33, max: 32 });
    let long_device = format!("fm/v1/s/elevator/{}/data", "D".repeat(49));
    assert_eq!(
        Topic::parse(&long_device).unwrap_err().problem,
        Problem::TooLong { len: 49, max: 48 }
    );
}

#[test]
fn the_longest_topic_fits_the_node_buffer() {
    let t = Topic::new(
        SiteId::new(&"s".repeat(32)).unwrap(),
        DeviceClass::Firepump,
        DeviceId::new(&"D".repeat(48)).unwrap(),
        Kind::Birth,
    );
    assert_eq!(t.to_heapless().len(), MAX_TOPIC_LEN);
    assert_eq!(Topic::parse(&t.to_heapless()).unwrap(), t);
}

fn topic() -> impl Strategy<Value = Topic> {
    (
        "[a-z0-9-]{1,32}",
        prop::sample::select(DeviceClass::ALL.to_vec()),
        "[A-Za-z0-9_-]{1,48}",
        prop::sample::select(Kind::ALL.to_vec()),
    )
        .prop_map(|(s, c, d, k)| Topic::new(SiteId::new(&s).unwrap(), c, DeviceId::new(&d).unwrap(), k))
}

proptest! {
    #[test]
    fn valid_topics_round_trip(t in topic()) {
        let text = t.to_heapless();
        prop_assert_eq!(text.as_str(), t.to_string());
        prop_assert_eq!(Topic::parse(&text).unwrap(), t);
    }

    #[test]
    fn arbitrary_topics_never_panic(s in "\\PC{0,120}") {
        let _ = Topic::parse(&s);
    }

    #[test]
    fn arbitrary_segment_soup_never_panics(parts in prop::collection::vec("(fm|v1|elevator|data|[^/]{0,60})", 0..9)) {
        let s = parts.join("/");
        if let Ok(t) = Topic::parse(&s) {
            prop_assert_eq!(t.to_string(), s);
        }
    }
}
