//! Proptest generators for every message type, covering the corners: unknown
//! metrics, escapes and non-ASCII in texts, extreme numbers, full containers.

use proptest::collection::vec;
use proptest::prelude::*;
use protocol::cmdauth::Mac;
use protocol::limits::{MAX_DETAIL_FIELDS, MAX_METRICS, MAX_PORT_METRICS, MAX_PORTS};
use protocol::message::CmdId;
use protocol::{
    Ack, Birth, Cmd, CmdArgs, Data, Death, Detail, Event, EventCode, Message, Metric, MetricInfo, Named, Op,
    PortMetric, PortReadings, Readings, Scalar, Timestamp, V1, Value, ValueKind, WireName,
};

/// Any finite number, weighted towards the awkward ones.
pub(crate) fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        Just(9_007_199_254_740_993.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

pub(crate) fn value_of(kind: ValueKind) -> BoxedStrategy<Value> {
    match kind {
        ValueKind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ValueKind::Number => number().prop_map(Value::Number).boxed(),
        ValueKind::Code { max } => (0..=max).prop_map(|n| Value::Number(f64::from(n))).boxed(),
    }
}

pub(crate) fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![any::<bool>().prop_map(Value::Bool), number().prop_map(Value::Number)]
}

/// A well-formed name that is not a canonical one of `M`.
pub(crate) fn unknown_name<M: WireName>() -> impl Strategy<Value = protocol::names::NameString> {
    "x[a-z0-9_]{0,31}".prop_filter_map("not canonical", |s| {
        M::from_name(&s).is_none().then(|| s.as_str().try_into().unwrap())
    })
}

/// Texts with escapes, control characters and non-ASCII, within `max` bytes.
pub(crate) fn text<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    "(\\PC|[\"\\\\\\x00-\\x1f])*".prop_map(|s| {
        let mut out = heapless::String::new();
        for ch in s.chars() {
            if out.push(ch).is_err() {
                break;
            }
        }
        out
    })
}

pub(crate) fn ident<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    "[A-Za-z0-9._:-]{1,36}".prop_map(|s| {
        let mut out = heapless::String::new();
        for ch in s.chars().take(N) {
            out.push(ch).unwrap();
        }
        out
    })
}

pub(crate) fn readings<M: MetricInfo, const N: usize>(with_unknown: bool) -> impl Strategy<Value = Readings<M, N>> {
    let known = prop::sample::subsequence(M::all().to_vec(), 0..=M::all().len().min(N)).prop_flat_map(|ms| {
        ms.into_iter()
            .map(|m| value_of(m.kind()).prop_map(move |v| (m, v)))
            .collect::<Vec<_>>()
    });
    let extra = if with_unknown { 0..4usize } else { 0..1usize };
    (known, vec((unknown_name::<M>(), any_value()), extra)).prop_map(move |(known, unknown)| {
        let mut r = Readings::new();
        for (m, v) in known {
            r.set(m, v).unwrap();
        }
        for (name, v) in unknown.into_iter().filter(|_| with_unknown) {
            let _ = r.set(Named::Other(name), v);
        }
        r
    })
}

pub(crate) fn ports(with_unknown: bool) -> impl Strategy<Value = protocol::Bounded<PortReadings, MAX_PORTS>> {
    prop::sample::subsequence((1..=40u8).collect::<Vec<_>>(), 0..=MAX_PORTS).prop_flat_map(move |ports| {
        ports
            .into_iter()
            .map(|p| {
                readings::<PortMetric, MAX_PORT_METRICS>(with_unknown)
                    .prop_map(move |readings| PortReadings { port: p, readings })
            })
            .collect::<Vec<_>>()
            .prop_map(|v| protocol::Bounded::from_slice(&v).unwrap())
    })
}

fn header() -> impl Strategy<Value = (u32, Timestamp, bool, Option<u32>)> {
    (
        any::<u32>(),
        any::<i64>().prop_map(Timestamp::from_millis),
        any::<bool>(),
        any::<Option<u32>>(),
    )
}

pub(crate) fn detail(untyped: bool) -> impl Strategy<Value = Detail> {
    let scalar = prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        number().prop_map(Scalar::Number),
        text::<32>().prop_map(Scalar::Text),
    ];
    let n = if untyped { 0..MAX_DETAIL_FIELDS } else { 0..1 };
    vec(
        (
            "[a-z][a-z0-9_]{0,31}".prop_filter("port is typed", |k| k != "port"),
            scalar,
        ),
        n,
    )
    .prop_map(|fields| {
        let mut d = Detail::new();
        for (k, v) in fields {
            d.set(&k, v).unwrap();
        }
        d
    })
}

/// Every message kind. `untyped` allows the fields only a `std` decoder reads
/// (unknown metrics' values, event details).
pub(crate) fn message(untyped: bool) -> impl Strategy<Value = Message> {
    prop_oneof![
        birth().prop_map(Message::Birth),
        any::<u32>().prop_map(|bdseq| Message::Death(Death { v: V1, bdseq })),
        data(untyped).prop_map(Message::Data),
        event(untyped).prop_map(Message::Event),
        cmd().prop_map(Message::Cmd),
        ack().prop_map(Message::Ack),
    ]
}

pub(crate) fn birth() -> impl Strategy<Value = Birth> {
    (
        header(),
        any::<u32>(),
        (text::<32>(), text::<32>(), ident::<32>()),
        1..=u32::MAX,
        prop::option::of(prop::num::f64::POSITIVE.prop_filter("finite", |f| f.is_finite())),
        any::<Option<u16>>(),
        prop::option::of(1..=u8::MAX),
    )
        .prop_map(
            |((seq, ts, hist, _), bdseq, (fw, model, cfg), interval_s, rated, floors, ports)| Birth {
                v: V1,
                seq,
                ts,
                hist,
                bdseq,
                fw,
                model,
                cfg,
                interval_s,
                rated_speed_mps: rated,
                floors,
                ports,
            },
        )
}

pub(crate) fn data(untyped: bool) -> impl Strategy<Value = Data> {
    (header(), readings::<Metric, MAX_METRICS>(untyped), ports(untyped)).prop_map(
        |((seq, ts, hist, bdseq), m, ports)| Data {
            v: V1,
            seq,
            ts,
            hist,
            bdseq,
            m,
            ports,
        },
    )
}

pub(crate) fn event(untyped: bool) -> impl Strategy<Value = Event> {
    let code = prop_oneof![
        prop::sample::select(EventCode::ALL.to_vec()).prop_map(Named::Known),
        unknown_name::<EventCode>().prop_map(Named::Other),
    ];
    (header(), code, any::<bool>(), detail(untyped), 1..=u8::MAX)
        .prop_map(move |((seq, ts, hist, bdseq), code, active, mut detail, port)| {
            if code.known().is_some_and(EventCode::is_per_port) || (untyped && port % 2 == 0) {
                // Per-port codes must name their port; in the no_std case the
                // port makes the detail untyped, so keep such codes out.
                detail.set("port", port).unwrap();
            }
            Event {
                v: V1,
                seq,
                ts,
                hist,
                bdseq,
                code,
                active,
                detail,
            }
        })
        .prop_filter("per-port codes need an untyped detail", move |e| {
            untyped || e.detail.is_empty()
        })
}

pub(crate) fn cmd() -> impl Strategy<Value = Cmd> {
    let op = prop_oneof![
        prop::sample::select(Op::ALL.to_vec()).prop_map(Named::Known),
        unknown_name::<Op>().prop_map(Named::Other),
    ];
    (
        header(),
        ident::<36>(),
        op,
        prop::option::of(1..=u8::MAX),
        prop::option::of(unknown_name::<Metric>()),
        prop::option::of(number()),
        prop::option::of(any::<bool>()),
        prop::option::of((any::<u64>(), any::<i64>(), any::<[u8; 32]>())),
    )
        .prop_map(|((seq, ts, hist, bdseq), id, op, port, name, value, hold, auth)| {
            let mut args = CmdArgs {
                port,
                name,
                value,
                hold,
            };
            if op == Named::Known(Op::SetThreshold) {
                args.name.get_or_insert_with(|| "over_temp_c".try_into().unwrap());
                args.value.get_or_insert(65.0);
            }
            if op == Named::Known(Op::HoldDoors) {
                args.hold.get_or_insert(true);
            }
            Cmd {
                v: V1,
                seq,
                ts,
                hist,
                bdseq,
                id: CmdId::try_from(id.as_str()).unwrap(),
                op,
                args,
                ctr: auth.map(|a| a.0),
                exp: auth.map(|a| Timestamp::from_millis(a.1)),
                mac: auth.map(|a| Mac(a.2)),
            }
        })
}

pub(crate) fn ack() -> impl Strategy<Value = Ack> {
    (header(), ident::<36>(), any::<bool>(), prop::option::of(text::<64>())).prop_map(
        |((seq, ts, hist, bdseq), id, ok, error)| Ack {
            v: V1,
            seq,
            ts,
            hist,
            bdseq,
            id,
            ok,
            error,
        },
    )
}
