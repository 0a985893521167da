//! The largest message of each kind fits the node's transmit buffer in both
//! encodings, and a `cmd` fits its receive buffer.

use protocol::limits::{MAX_DETAIL_FIELDS, MAX_METRICS, MAX_PORT_METRICS, MAX_PORTS, NODE_RX_BUFFER, NODE_TX_BUFFER};
use protocol::message::{CmdId, ErrorText, ShortText};
use protocol::names::MAX_NAME_LEN;
use protocol::{
    Ack, Birth, Cmd, CmdArgs, Data, Death, Detail, Event, EventCode, Format, Message, Metric, MetricInfo, Named, Op,
    PortMetric, PortReadings, Readings, Scalar, Timestamp, V1, Value, ValueKind, encode,
};

/// The longest JSON for any number: ryu's 24-character worst case.
const WIDEST: f64 = -2.225_073_858_507_201_4e-308;

fn widest(kind: ValueKind) -> Value {
    match kind {
        ValueKind::Bool => Value::Bool(false),
        ValueKind::Number => Value::Number(WIDEST),
        ValueKind::Code { max } => Value::Number(f64::from(max)),
    }
}

/// A text whose every byte escapes to six (`\u001f`).
fn worst_text<const N: usize>() -> heapless::String<N> {
    core::iter::repeat_n('\u{1f}', N).collect()
}

fn unknown(i: usize) -> Named<Metric> {
    let mut name = heapless::String::<MAX_NAME_LEN>::new();
    name.push('x').unwrap();
    while name.len() < MAX_NAME_LEN - 2 {
        name.push('y').unwrap();
    }
    for c in format!("{i:02}").chars() {
        name.push(c).unwrap();
    }
    Named::Other(name)
}

fn full_readings<M: MetricInfo, const N: usize>(extra: impl Fn(usize) -> Named<M>) -> Readings<M, N> {
    let mut r = Readings::new();
    for m in M::all().iter().take(N) {
        r.set(*m, widest(m.kind())).unwrap();
    }
    let mut i = 0;
    while r.len() < N {
        r.set(extra(i), WIDEST).unwrap();
        i += 1;
    }
    r
}

fn worst_data() -> Data {
    let port_extra = |i: usize| -> Named<PortMetric> {
        match unknown(i) {
            Named::Other(n) => Named::Other(n),
            Named::Known(_) => unreachable!(),
        }
    };
    let ports = (0..MAX_PORTS)
        .map(|i| PortReadings {
            port: 200 + u8::try_from(i).unwrap(),
            readings: full_readings::<PortMetric, MAX_PORT_METRICS>(port_extra),
        })
        .collect();
    Data {
        v: V1,
        seq: u32::MAX,
        ts: Timestamp::from_millis(i64::MIN),
        hist: true,
        bdseq: Some(u32::MAX),
        m: full_readings::<Metric, MAX_METRICS>(unknown),
        ports,
    }
}

fn worst_messages() -> Vec<Message> {
    let mut detail = Detail::new();
    detail.set("port", 255u8).unwrap();
    for i in 1..MAX_DETAIL_FIELDS {
        let name = format!("x{}{i}", "y".repeat(MAX_NAME_LEN - 3));
        detail.set(&name, Scalar::Text(worst_text())).unwrap();
    }
    vec![
        Message::Birth(Birth {
            v: V1,
            seq: u32::MAX,
            ts: Timestamp::from_millis(i64::MIN),
            hist: true,
            bdseq: u32::MAX,
            fw: worst_text::<32>() as ShortText,
            model: worst_text(),
            cfg: worst_text(),
            interval_s: u32::MAX,
            rated_speed_mps: Some(WIDEST.abs()),
            floors: Some(u16::MAX),
            ports: Some(u8::MAX),
        }),
        Message::Death(Death { v: V1, bdseq: u32::MAX }),
        Message::Data(worst_data()),
        Message::Event(Event {
            v: V1,
            seq: u32::MAX,
            ts: Timestamp::from_millis(i64::MIN),
            hist: true,
            bdseq: Some(u32::MAX),
            code: Named::Known(EventCode::StoppedOutsideDoorZone),
            active: false,
            detail,
        }),
        Message::Ack(Ack {
            v: V1,
            seq: u32::MAX,
            ts: Timestamp::from_millis(i64::MIN),
            hist: true,
            bdseq: Some(u32::MAX),
            id: worst_id(),
            ok: false,
            error: Some(worst_text::<64>() as ErrorText),
        }),
    ]
}

fn worst_id() -> CmdId {
    core::iter::repeat_n('-', 36).collect()
}

fn size(msg: &Message, format: Format, buf: usize) -> usize {
    let mut out = vec![0u8; buf];
    match encode(msg, format, &mut out) {
        Ok(n) => n,
        Err(e) => panic!("{} does not fit {buf} bytes in {format:?}: {e}", msg.kind()),
    }
}

#[test]
fn every_node_message_fits_the_transmit_buffer() {
    for msg in worst_messages() {
        let json = size(&msg, Format::Json, NODE_TX_BUFFER);
        let binary = size(&msg, Format::Binary, NODE_TX_BUFFER);
        println!(
            "largest {:<5}: json {json:>5} B, binary {binary:>5} B (buffer {NODE_TX_BUFFER})",
            msg.kind().as_str()
        );
        assert!(binary <= json);
    }
}

#[test]
fn the_largest_command_fits_the_receive_buffer() {
    let cmd = Message::Cmd(Cmd {
        v: V1,
        seq: u32::MAX,
        ts: Timestamp::from_millis(i64::MIN),
        hist: true,
        bdseq: Some(u32::MAX),
        id: worst_id(),
        op: Named::Known(Op::SetThreshold),
        args: CmdArgs {
            port: Some(255),
            name: Some(core::iter::repeat_n('z', MAX_NAME_LEN).collect()),
            value: Some(WIDEST),
            hold: Some(true),
        },
        ctr: Some(u64::MAX),
        exp: Some(Timestamp::from_millis(i64::MIN)),
        mac: Some(protocol::cmdauth::Mac([0xFF; 32])),
    });
    let json = size(&cmd, Format::Json, NODE_RX_BUFFER);
    let binary = size(&cmd, Format::Binary, NODE_RX_BUFFER);
    println!("largest cmd  : json {json:>5} B, binary {binary:>5} B (buffer {NODE_RX_BUFFER})");
}

#[test]
fn the_worst_data_is_really_full() {
    // Guards the test above: if a capacity grows, the worst case must grow with it.
    let d = worst_data();
    assert_eq!(d.m.len(), MAX_METRICS);
    assert_eq!(d.ports.len(), MAX_PORTS);
    assert!(d.ports.iter().all(|p| p.readings.len() == MAX_PORT_METRICS));
    let json = size(&Message::Data(d), Format::Json, NODE_TX_BUFFER);
    assert!(json > NODE_TX_BUFFER / 2, "buffer is far larger than needed: {json}");
}

#[test]
fn message_sizes_in_ram() {
    // What a node pays to hold one message; recorded in docs/protocol.md.
    println!(
        "size_of Data = {} B, Message = {} B",
        size_of::<Data>(),
        size_of::<Message>()
    );
    assert!(size_of::<Message>() <= 12 * 1024);
}

#[test]
fn typical_message_sizes() {
    // Figures quoted in docs/protocol.md.
    for name in ["elevator-data", "charger-data"] {
        let msg = crate::docs::golden_message(name);
        let json = protocol::encode_to_vec(&msg, Format::Json).unwrap().len();
        let binary = protocol::encode_to_vec(&msg, Format::Binary).unwrap().len();
        println!("typical {name}: json {json} B, binary {binary} B");
        assert!(binary * 2 < json, "binary should be well under half of JSON");
    }
}
