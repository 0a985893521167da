//! The alerting core alone, and with the decoding in front of it that the
//! gateway's pipeline does: 100 000 devices × 3 rules, messages in a random
//! (reproducible) order. Figures go to `docs/performance.md`:
//! `cargo bench -p alerting --bench core`.
//!
//! Before the timings it prints the memory the engine holds per
//! device-rule: the growth of the process's resident set while 100 000
//! devices are added.

use std::hint::black_box;

use alerting::{DeviceRef, Engine, Input, Pack, RuleSet, Settings};
use criterion::{BatchSize, Criterion, Throughput};
use protocol::{Format, Message, Topic};

/// Resident memory of this process in bytes (`VmRSS`), Linux only: what an
/// operator sees grow, allocator overhead included.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

const DEVICES: usize = 100_000;

/// Three rules of the fire pump pack's kinds: a threshold with `for` and
/// hysteresis, a plain threshold with `for`, and a composite.
const PACK: &str = r#"
class = "firepump"
[[rule]]
id = "bench.low_pressure"
code = "low_pressure"
when = "network_pressure_mpa < 0.07"
clear = "network_pressure_mpa >= 0.08"
for = "30s"
[[rule]]
id = "bench.low_tank"
code = "low_tank_level"
when = "tank_level_m < 1.0"
for = "30s"
[[rule]]
id = "bench.fail_to_start"
code = "pump_fail_to_start"
when = "start_signal && !pump_running"
for = "120s"
"#;

fn engine() -> Engine {
    let pack: Pack = toml::from_str(PACK).unwrap_or_else(|e| panic!("{e}"));
    let rules = RuleSet::new(vec![pack], &[], Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(rules, Settings::default())
}

/// A reproducible random stream (xorshift): (topic, JSON payload).
fn payloads(count: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut state = seed;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|i| {
            let r = next();
            let device = r % DEVICES as u64;
            // Mostly normal, sometimes low: every path of the state machines runs.
            let low = (r >> 40) % 10 == 0;
            let (p, t) = if low { (0.05, 0.5) } else { (0.3, 2.5) };
            let start = (r >> 48) % 50 == 0;
            let json = format!(
                r#"{{"v":1,"seq":{i},"ts":1700000000000,"m":{{"network_pressure_mpa":{p},"tank_level_m":{t},"start_signal":{start},"pump_running":false}}}}"#
            );
            (format!("fm/v1/lakeside/firepump/P{device}/data"), json.into_bytes())
        })
        .collect()
}

fn decode(topic: &str, payload: &[u8]) -> Option<(Topic, Message)> {
    let t = Topic::parse(topic).ok()?;
    let m = protocol::decode(t.kind, payload).ok()?;
    Some((t, m))
}

fn feed(e: &mut Engine, now: i64, t: &Topic, m: &Message, out: &mut Vec<alerting::Effect>) {
    let d = DeviceRef {
        site: t.site.as_str(),
        class: t.class,
        device: t.device.as_str(),
    };
    e.observe(now, d, Input::Message(m), out);
}

fn warm(stream: &[(Topic, Message)]) -> Engine {
    let mut e = engine();
    let mut out = Vec::new();
    for (i, (t, m)) in stream.iter().enumerate() {
        feed(&mut e, i64::try_from(i).unwrap_or(0), t, m, &mut out);
        out.clear();
    }
    e
}

fn decoded(raw: &[(String, Vec<u8>)]) -> Vec<(Topic, Message)> {
    raw.iter().filter_map(|(t, p)| decode(t, p)).collect()
}

fn report_memory() {
    // Every device seen once, so the state is all there before counting.
    let everyone: Vec<(Topic, Message)> = (0..DEVICES)
        .filter_map(|d| {
            decode(
                &format!("fm/v1/lakeside/firepump/P{d}/data"),
                br#"{"v":1,"seq":1,"ts":0,"m":{"network_pressure_mpa":0.3,"tank_level_m":2.5,"start_signal":false,"pump_running":false}}"#,
            )
        })
        .collect();
    let before = rss();
    let e = warm(&everyone);
    let bytes = rss().saturating_sub(before);
    let (devices, instances) = e.size();
    #[allow(clippy::cast_precision_loss)]
    let per = bytes as f64 / instances as f64;
    println!(
        "state: {devices} devices, {instances} device-rules, {bytes} resident bytes: {per:.0} bytes per device-rule ({} per device)",
        bytes / devices
    );
    black_box(e);
}

fn bench(c: &mut Criterion) {
    let raw_warm = payloads(3 * DEVICES, 0x9E37_79B9_7F4A_7C15);
    let raw = payloads(100_000, 0x2545_F491_4F6C_DD1D);
    let binary: Vec<(String, Vec<u8>)> = raw
        .iter()
        .filter_map(|(t, p)| {
            let (_, m) = decode(t, p)?;
            Some((t.clone(), protocol::encode_to_vec(&m, Format::Binary).ok()?))
        })
        .collect();
    let warm_stream = decoded(&raw_warm);
    let batch = decoded(&raw);
    let start = i64::try_from(warm_stream.len()).unwrap_or(0);
    let mut group = c.benchmark_group("alerting");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.sample_size(10);
    group.bench_function("core: observe 100k decoded messages, 100k devices x 3 rules", |b| {
        b.iter_batched(
            || warm(&warm_stream),
            |mut e| {
                let mut out = Vec::new();
                for (i, (t, m)) in batch.iter().enumerate() {
                    feed(&mut e, start + i64::try_from(i).unwrap_or(0), t, m, &mut out);
                    out.clear();
                }
                e
            },
            BatchSize::LargeInput,
        );
    });
    for (name, stream) in [("JSON", &raw), ("binary", &binary)] {
        group.bench_function(
            format!("decode {name} + observe 100k messages, 100k devices x 3 rules"),
            |b| {
                b.iter_batched(
                    || warm(&warm_stream),
                    |mut e| {
                        let mut out = Vec::new();
                        for (i, (topic, payload)) in stream.iter().enumerate() {
                            if let Some((t, m)) = decode(topic, payload) {
                                feed(&mut e, start + i64::try_from(i).unwrap_or(0), &t, &m, &mut out);
                            }
                            out.clear();
                        }
                        e
                    },
                    BatchSize::LargeInput,
                );
            },
        );
        group.bench_function(format!("decode {name} alone, 100k messages"), |b| {
            b.iter(|| {
                for (topic, payload) in stream {
                    black_box(decode(topic, payload));
                }
            });
        });
    }
    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function("tick over 100k devices", |b| {
        b.iter_batched(
            || warm(&warm_stream),
            |mut e| {
                let mut out = Vec::new();
                e.tick(start + 1000, &mut out);
                (e, out)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn main() {
    report_memory();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
