//! Bad input gets a stable reason, good input its decoded message.

use gateway::ingest::{REASONS, ingest};
use protocol::{Kind, Message};

#[test]
fn good_input_is_decoded() {
    let i = ingest("fm/v1/s/elevator/EL-1/death", br#"{"v":1,"bdseq":3}"#, 42).unwrap();
    assert_eq!(i.topic.kind, Kind::Death);
    assert!(matches!(i.message, Message::Death(_)));
    assert_eq!(i.received_ms, 42);
}

#[test]
fn every_kind_of_bad_input_has_its_reason() {
    let big = vec![b' '; 70_000];
    let cases: &[(&str, &[u8], &str)] = &[
        ("fm/v1/S/elevator/EL-1/data", b"{}", "bad_topic"),
        ("other/topic", b"{}", "bad_topic"),
        (
            "fm/v1/s/elevator/EL-1/cmd",
            br#"{"v":1,"seq":1,"ts":0,"id":"x","op":"clear"}"#,
            "downlink",
        ),
        ("fm/v1/s/elevator/EL-1/data", b"", "empty"),
        ("fm/v1/s/elevator/EL-1/data", &big, "oversize"),
        ("fm/v1/s/elevator/EL-1/data", b"[]", "unknown_format"),
        (
            "fm/v1/s/elevator/EL-1/data",
            br#"{"v":1,"seq":1,"ts":0,"m":{"running":3}}"#,
            "bad_json",
        ),
        ("fm/v1/s/elevator/EL-1/data", &[0xF1, 2, 0xFF], "bad_binary"),
        (
            "fm/v1/s/charger/B/data",
            br#"{"v":1,"seq":1,"ts":0,"ports":[{"port":1},{"port":1}]}"#,
            "invalid_value",
        ),
    ];
    for (topic, payload, reason) in cases {
        let r = ingest(topic, payload, 0).unwrap_err();
        assert_eq!(r.reason, *reason, "{topic}: {}", r.detail);
        assert!(REASONS.contains(&r.reason));
        assert!(!r.detail.is_empty());
    }
}
