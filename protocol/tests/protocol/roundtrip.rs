//! Every message survives both encodings and both JSON decoders unchanged.

use proptest::prelude::*;
use protocol::codec::{decode_binary, json_core, json_std};
use protocol::limits::MAX_PAYLOAD;
use protocol::{Format, Message, decode, encode};

use crate::strategies::message;

fn encoded(msg: &Message, format: Format) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    let n = encode(msg, format, &mut buf).unwrap_or_else(|e| panic!("encode {msg:?}: {e}"));
    buf.truncate(n);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_round_trips_through_the_gateway_decoder(msg in message(true)) {
        let bytes = encoded(&msg, Format::Json);
        prop_assert_eq!(bytes[0], b'{');
        let back = json_std::decode(msg.kind(), &bytes).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(&back, &msg);
        // `decode` picks the same path from the first byte.
        prop_assert_eq!(decode(msg.kind(), &bytes).unwrap(), msg);
    }

    #[test]
    fn json_round_trips_through_the_node_decoder(msg in message(false)) {
        let bytes = encoded(&msg, Format::Json);
        let back = json_core::decode(msg.kind(), &bytes).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn binary_round_trips(msg in message(true)) {
        let bytes = encoded(&msg, Format::Binary);
        prop_assert_eq!(bytes[0], protocol::BINARY_MARKER);
        prop_assert_eq!(decode_binary(msg.kind(), &bytes).unwrap(), msg.clone());
        prop_assert_eq!(decode(msg.kind(), &bytes).unwrap(), msg);
    }

    #[test]
    fn binary_is_never_larger_than_json(msg in message(true)) {
        let json = encoded(&msg, Format::Json);
        let binary = encoded(&msg, Format::Binary);
        // Texts full of escapes are where JSON is worst; binary must never lose.
        prop_assert!(binary.len() <= json.len() + 2, "binary {} > json {}", binary.len(), json.len());
    }

    #[test]
    fn serde_json_serializer_agrees_with_the_node_encoder(msg in message(true)) {
        // The gateway may serialize with serde_json; both must decode the same.
        let ours = encoded(&msg, Format::Json);
        let theirs = match &msg {
            Message::Birth(m) => serde_json::to_vec(m),
            Message::Death(m) => serde_json::to_vec(m),
            Message::Data(m) => serde_json::to_vec(m),
            Message::Event(m) => serde_json::to_vec(m),
            Message::Cmd(m) => serde_json::to_vec(m),
            Message::Ack(m) => serde_json::to_vec(m),
        }.unwrap();
        let a: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&theirs).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn the_node_decoder_rejects_untyped_values_cleanly(msg in message(true)) {
        // serde-json-core cannot read values of unfixed type; it must say so, not panic
        // and not return something different.
        let bytes = encoded(&msg, Format::Json);
        if let Ok(back) = json_core::decode(msg.kind(), &bytes) {
            prop_assert_eq!(back, msg);
        }
    }
}

#[test]
fn encode_to_vec_matches_encode() {
    let msg = crate::docs::golden_message("elevator-data");
    for format in [Format::Json, Format::Binary] {
        assert_eq!(protocol::encode_to_vec(&msg, format).unwrap(), encoded(&msg, format));
    }
}

#[test]
fn whole_numbers_are_written_without_a_fraction() {
    let msg = crate::docs::golden_message("elevator-data");
    let json = String::from_utf8(encoded(&msg, Format::Json)).unwrap();
    assert!(json.contains(r#""floor":7,"#), "{json}");
    assert!(json.contains(r#""speed_mps":1.02"#), "{json}");
    assert!(!json.contains("hist"), "hist=false is left out: {json}");
}

fn with_hist(msg: &Message, hist: bool) -> Message {
    let mut m = msg.clone();
    match &mut m {
        Message::Birth(x) => x.hist = hist,
        Message::Data(x) => x.hist = hist,
        Message::Event(x) => x.hist = hist,
        Message::Cmd(x) => x.hist = hist,
        Message::Ack(x) => x.hist = hist,
        Message::Death(_) => {}
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_sample_encodes_exactly_like_its_data(data in crate::strategies::data(false)) {
        let m: Vec<(protocol::Metric, protocol::Value)> =
            data.m.iter().map(|r| (r.name.known().unwrap(), r.value)).collect();
        let port_pairs: Vec<Vec<(protocol::PortMetric, protocol::Value)>> = data
            .ports
            .iter()
            .map(|p| p.readings.iter().map(|r| (r.name.known().unwrap(), r.value)).collect())
            .collect();
        let ports: Vec<protocol::PortSample<'_>> =
            data.ports.iter().zip(&port_pairs).map(|(p, m)| protocol::PortSample { port: p.port, m }).collect();
        let sample = protocol::Sample { seq: data.seq, ts: data.ts, hist: data.hist, bdseq: data.bdseq, m: &m, ports: &ports };
        let msg = Message::Data(data.clone());
        for format in [Format::Json, Format::Binary] {
            let mut buf = vec![0u8; MAX_PAYLOAD];
            let n = protocol::encode_sample(&sample, format, &mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &encoded(&msg, format)[..]);
        }
    }

    #[test]
    fn mark_hist_turns_a_live_payload_into_a_replay(msg in message(true)) {
        let live = with_hist(&msg, false);
        for format in [Format::Json, Format::Binary] {
            let bytes = encoded(&live, format);
            let mut out = vec![0u8; bytes.len() + 16];
            let n = protocol::mark_hist(live.kind(), &bytes, &mut out).unwrap();
            prop_assert_eq!(decode(live.kind(), &out[..n]).unwrap(), with_hist(&msg, true));
        }
    }
}

#[test]
fn a_sample_with_a_repeated_metric_or_nan_is_refused() {
    use protocol::{Metric, PortMetric, PortSample, Sample, Timestamp, Value};
    let mut buf = [0u8; 256];
    let bad = [(Metric::Floor, Value::Number(1.0)), (Metric::Floor, Value::Number(2.0))];
    let s = Sample {
        seq: 1,
        ts: Timestamp::EPOCH,
        hist: false,
        bdseq: None,
        m: &bad,
        ports: &[],
    };
    assert!(protocol::encode_sample(&s, Format::Json, &mut buf).is_err());
    let nan = [(PortMetric::TempC, Value::Number(f64::NAN))];
    let ports = [PortSample { port: 1, m: &nan }];
    let s = Sample {
        seq: 1,
        ts: Timestamp::EPOCH,
        hist: false,
        bdseq: None,
        m: &[],
        ports: &ports,
    };
    assert!(protocol::encode_sample(&s, Format::Binary, &mut buf).is_err());
    let wrong = [(Metric::Running, Value::Number(1.0))];
    let s = Sample {
        seq: 1,
        ts: Timestamp::EPOCH,
        hist: false,
        bdseq: None,
        m: &wrong,
        ports: &[],
    };
    assert!(protocol::encode_sample(&s, Format::Json, &mut buf).is_err());
}
