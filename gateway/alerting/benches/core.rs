//! The alerting core alone: 100 000 devices × 3 rules, samples in a random
//! (but reproducible) order. Figures go to `docs/performance.md`:
//! `cargo bench -p alerting --bench core`.

use alerting::{Cmp, Engine, Rule, Sample, SeriesKey};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const DEVICES: usize = 100_000;
const METRICS: [&str; 3] = ["network_pressure_mpa", "tank_level_m", "outlet_pressure_mpa"];

fn rules() -> Vec<Rule> {
    METRICS
        .iter()
        .map(|m| Rule {
            id: format!("bench.{m}"),
            code: "low_pressure".into(),
            metric: (*m).into(),
            cmp: Cmp::Lt,
            threshold: 0.07,
            clear: Some(0.1),
            for_ms: 30_000,
            keep_firing_for_ms: 0,
            absent_after_ms: Some(180_000),
        })
        .collect()
}

/// A reproducible shuffle (xorshift), so runs compare.
fn samples(n: usize) -> Vec<Sample> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let device = usize::try_from(r % DEVICES as u64).unwrap_or(0);
            let metric = METRICS[usize::try_from((r >> 32) % 3).unwrap_or(0)];
            // Mostly normal, sometimes low: every path of the state machine runs.
            let value = if (r >> 40) % 10 == 0 { 0.05 } else { 0.3 };
            let now = i64::try_from(i).unwrap_or(0);
            Sample {
                series: SeriesKey {
                    device: format!("site/firepump/D{device}"),
                    metric: metric.into(),
                    port: None,
                },
                value,
                now,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let warm = samples(3 * DEVICES);
    let batch = samples(100_000);
    let mut group = c.benchmark_group("alerting");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.sample_size(10);
    group.bench_function("observe 100k samples, 100k devices x 3 rules", |b| {
        b.iter_batched(
            || {
                let mut e = Engine::new(rules()).unwrap_or_else(|err| panic!("{err}"));
                for s in &warm {
                    e.observe(s);
                }
                e
            },
            |mut e| {
                for s in &batch {
                    std::hint::black_box(e.observe(s));
                }
                e
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
