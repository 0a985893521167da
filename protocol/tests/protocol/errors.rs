//! Bad input gets a clear error, and no input panics.

use proptest::prelude::*;
use protocol::codec::{decode_binary, json_core, json_std};
use protocol::limits::MAX_PAYLOAD;
use protocol::{DecodeError, Format, Kind, Message, Metric, Named, PortMetric, Value, decode, encode};

use crate::strategies::message;

fn err(kind: Kind, payload: &str) -> String {
    match decode(kind, payload.as_bytes()) {
        Ok(m) => panic!("accepted {payload}: {m:?}"),
        Err(e) => e.to_string(),
    }
}

fn data(payload: &str) -> protocol::Data {
    match decode(Kind::Data, payload.as_bytes()) {
        Ok(Message::Data(d)) => d,
        other => panic!("{payload}: {other:?}"),
    }
}

#[test]
fn wrong_types_name_the_metric_and_the_expectation() {
    let e = err(Kind::Data, r#"{"v":1,"seq":1,"ts":0,"m":{"running":3}}"#);
    assert!(e.contains("a boolean for metric `running`"), "{e}");
    assert!(e.contains("line 1 column"), "gateway errors carry a position: {e}");

    let e = err(Kind::Data, r#"{"v":1,"seq":1,"ts":0,"m":{"floor":true}}"#);
    assert!(e.contains("a finite number for metric `floor`"), "{e}");

    let e = err(Kind::Data, r#"{"v":1,"seq":1,"ts":0,"m":{"direction":3}}"#);
    assert!(
        e.contains("metric `direction`: expected a whole number from 0 to 2, got 3"),
        "{e}"
    );

    let e = err(Kind::Data, r#"{"v":1,"seq":1,"ts":0,"ports":[{"port":1,"state":1.5}]}"#);
    assert!(e.contains("port metric `state`"), "{e}");

    let e = err(Kind::Data, r#"{"v":1,"seq":1,"ts":0,"m":{"mystery":"text"}}"#);
    assert!(e.contains("a number or a boolean"), "{e}");
}

#[test]
fn unknown_metrics_from_newer_nodes_are_kept() {
    let d = data(
        r#"{"v":1,"seq":1,"ts":0,"m":{"running":true,"brake_wear_pct":37.5,"rope_ok":true},
           "ports":[{"port":2,"temp_c":41.5,"fan_rpm":1200}],"future_field":{"a":[1,2]}}"#,
    );
    assert_eq!(d.m.get(Metric::Running), Some(Value::Bool(true)));
    assert_eq!(d.m.get_by_name("brake_wear_pct"), Some(Value::Number(37.5)));
    assert_eq!(d.m.get_by_name("rope_ok"), Some(Value::Bool(true)));
    let unknown: Vec<_> = d.m.iter().filter(|r| matches!(r.name, Named::Other(_))).collect();
    assert_eq!(unknown.len(), 2);
    assert_eq!(d.ports[0].readings.get(PortMetric::TempC), Some(Value::Number(41.5)));
    assert_eq!(d.ports[0].readings.get_by_name("fan_rpm"), Some(Value::Number(1200.0)));
}

#[test]
fn unknown_event_codes_and_ops_are_kept() {
    let Message::Event(e) = decode(
        Kind::Event,
        br#"{"v":1,"seq":4,"ts":0,"code":"rope_slip","active":true}"#,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(e.code.as_str(), "rope_slip");
    assert_eq!(e.code.known(), None);

    // A node must be able to read an op it does not know, to refuse it in its ack.
    let payload = br#"{"v":1,"seq":9,"ts":0,"id":"c-1","op":"reboot","args":{"delay_s":5}}"#;
    let Message::Cmd(c) = json_core::decode(Kind::Cmd, payload).unwrap() else {
        panic!()
    };
    assert_eq!(c.op.as_str(), "reboot");
    assert_eq!(c.op.known(), None);
}

#[test]
fn structural_problems_are_named() {
    let cases: &[(Kind, &str, &str)] = &[
        (
            Kind::Data,
            r#"{"v":2,"seq":1,"ts":0,"m":{}}"#,
            "schema version `v` is 2",
        ),
        (Kind::Data, r#"{"seq":1,"ts":0,"m":{}}"#, "missing field `v`"),
        (Kind::Data, r#"{"v":1,"seq":-1,"ts":0}"#, "integer `-1`, expected u32"),
        (
            Kind::Data,
            r#"{"v":1,"seq":1,"ts":0,"m":{"running":true,"running":false}}"#,
            "`running` appears twice",
        ),
        (
            Kind::Data,
            r#"{"v":1,"seq":1,"ts":0,"m":{"Bad-Name":1}}"#,
            "bad metric `Bad-Name`",
        ),
        (
            Kind::Data,
            r#"{"v":1,"seq":1,"ts":0,"ports":[{"port":0}]}"#,
            "0 is not a port",
        ),
        (
            Kind::Data,
            r#"{"v":1,"seq":1,"ts":0,"ports":[{"state":1}]}"#,
            "missing field `port`",
        ),
        (
            Kind::Data,
            r#"{"v":1,"seq":1,"ts":0,"ports":[{"port":1},{"port":1}]}"#,
            "lists the same port twice",
        ),
        (
            Kind::Event,
            r#"{"v":1,"seq":1,"ts":0,"code":"over_temperature","active":true}"#,
            "detail.port",
        ),
        (
            Kind::Event,
            r#"{"v":1,"seq":1,"ts":0,"code":"smoke","active":true,"detail":{"port":0}}"#,
            "detail.port",
        ),
        (
            Kind::Birth,
            r#"{"v":1,"seq":0,"ts":0,"bdseq":1,"fw":"1","model":"m","cfg":"c","interval_s":0}"#,
            "interval_s",
        ),
        (
            Kind::Cmd,
            r#"{"v":1,"seq":1,"ts":0,"id":"x","op":"set_threshold"}"#,
            "needs `name` and `value`",
        ),
        (
            Kind::Cmd,
            r#"{"v":1,"seq":1,"ts":0,"id":"a b","op":"clear"}"#,
            "field `id`",
        ),
        (Kind::Ack, r#"{"v":1,"seq":1,"ts":0,"id":"x"}"#, "missing field `ok`"),
        (Kind::Data, r#"{"v":1,"seq":1,"ts":0} trailing"#, "trailing"),
        (Kind::Data, r#"{"v":1,"seq":1,"#, "EOF"),
    ];
    for (kind, payload, needle) in cases {
        let e = err(*kind, payload);
        assert!(e.contains(needle), "{payload}: `{e}` does not say `{needle}`");
    }
}

#[test]
fn too_many_metrics_is_a_limit_not_a_crash() {
    let fields: Vec<String> = (0..=protocol::limits::MAX_METRICS)
        .map(|i| format!(r#""x{i}":1"#))
        .collect();
    let payload = format!(r#"{{"v":1,"seq":1,"ts":0,"m":{{{}}}}}"#, fields.join(","));
    assert!(err(Kind::Data, &payload).contains("more than 24 metric values"));
}

#[test]
fn framing_errors() {
    assert_eq!(decode(Kind::Data, b""), Err(DecodeError::Empty));
    assert_eq!(decode(Kind::Data, b"  \n"), Err(DecodeError::Empty));
    assert_eq!(decode(Kind::Data, b"[1]"), Err(DecodeError::UnknownFormat(b'[')));
    let big = vec![b' '; MAX_PAYLOAD + 1];
    assert_eq!(
        decode(Kind::Data, &big),
        Err(DecodeError::TooLarge {
            len: MAX_PAYLOAD + 1,
            max: MAX_PAYLOAD
        })
    );
    // Leading blanks before a JSON object are fine.
    assert!(decode(Kind::Death, b"\r\n {\"v\":1,\"bdseq\":3}").is_ok());
}

#[test]
fn a_binary_payload_on_the_wrong_topic_is_refused() {
    let msg = crate::docs::golden_message("elevator-data");
    let mut buf = [0u8; 512];
    let n = encode(&msg, Format::Binary, &mut buf).unwrap();
    let e = decode(Kind::Event, &buf[..n]).unwrap_err();
    assert_eq!(
        e,
        DecodeError::WrongKind {
            expected: Kind::Event,
            found: Kind::Data.id()
        }
    );
    assert_eq!(e.reason(), "bad_binary");
    // Trailing bytes are corruption.
    buf[n] = 0;
    assert!(matches!(
        decode(Kind::Data, &buf[..=n]),
        Err(DecodeError::Binary { .. })
    ));
}

#[test]
fn invalid_messages_are_not_encoded() {
    let Message::Data(mut d) = crate::docs::golden_message("elevator-data") else {
        panic!()
    };
    d.m.set(Metric::SpeedMps, f64::NAN).unwrap();
    let mut buf = [0u8; 512];
    for format in [Format::Json, Format::Binary] {
        let e = encode(&Message::Data(d.clone()), format, &mut buf).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
    }
    let msg = crate::docs::golden_message("elevator-data");
    assert!(matches!(
        encode(&msg, Format::Json, &mut buf[..10]),
        Err(protocol::EncodeError::BufferFull(10))
    ));
    assert!(matches!(
        encode(&msg, Format::Binary, &mut buf[..1]),
        Err(protocol::EncodeError::BufferFull(1))
    ));
}

fn all_decoders(kind: Kind, bytes: &[u8]) {
    let _ = decode(kind, bytes);
    let _ = json_core::decode(kind, bytes);
    let _ = json_std::decode(kind, bytes);
    let _ = decode_binary(kind, bytes);
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(Kind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(kind in kind(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        all_decoders(kind, &bytes);
        let mut json = b"{".to_vec();
        json.extend_from_slice(&bytes);
        all_decoders(kind, &json);
        let mut bin = vec![protocol::BINARY_MARKER, kind.id()];
        bin.extend_from_slice(&bytes);
        all_decoders(kind, &bin);
    }

    #[test]
    fn mutated_valid_payloads_never_panic(
        msg in message(true),
        binary in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let format = if binary { Format::Binary } else { Format::Json };
        let mut bytes = protocol::encode_to_vec(&msg, format).unwrap();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        for kind in Kind::ALL {
            all_decoders(*kind, &bytes);
            // Whatever is accepted must survive a re-encode in both encodings.
            if let Ok(accepted) = decode(*kind, &bytes) {
                for format in [Format::Json, Format::Binary] {
                    let again = protocol::encode_to_vec(&accepted, format).unwrap();
                    prop_assert_eq!(decode(*kind, &again).unwrap(), accepted.clone());
                }
            }
        }
        // Truncations too.
        for cut in [bytes.len() / 2, bytes.len().saturating_sub(1)] {
            all_decoders(msg.kind(), &bytes[..cut]);
        }
    }
}
