//! What the record chain costs: sealing (one SHA-256 per record), signing a
//! checkpoint (ed25519), and verifying a chain end to end, as the gateway's
//! `/api/v1/records/verify` does over years of records.
//!
//! `cargo bench -p records --bench chain`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use records::{Entry, NewRecord, Signer, Tail, Verifier};

/// A work-order step as the gateway records it: about 600 bytes of JSON.
fn record(i: u64) -> NewRecord {
    NewRecord {
        at: 1_796_083_200_000 + i64::try_from(i).unwrap_or(0) * 1000,
        kind: "work_order_responded".into(),
        site: "lakeside".into(),
        class: "elevator".into(),
        device: "31104201002019070001".into(),
        subject: format!("order:{i}"),
        body: format!(
            r#"{{"change":{{"change":"stepped","detail":{{"status":"responded"}}}},"order":{{"id":{i},"kind":"corrective","site":"lakeside","class":"elevator","device":"31104201002019070001","code":"trapped","severity":"critical","status":"responded","contractor":"acme","primary":"acme","backup":"city-lifts","manager":"pm-lake","created_at":1796083200000,"fault_since":1796083180000,"deadlines":{{"respond":1796083380000,"arrive":1796085000000,"complete":1796169600000,"bureau":1796086780000}},"responded_at":1796083260000,"steps":[{{"status":"responded","at":1796083260000,"by":"acme-app","note":"在路上"}}]}}}}"#
        ),
    }
}

fn chain(n: u64) -> Vec<Entry> {
    let mut tail = Tail::genesis();
    (0..n)
        .map(|i| {
            let e = Entry::seal(&tail, record(i));
            tail = e.tail();
            e
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(N));
    g.bench_function("seal 10k records", |b| {
        b.iter_batched(
            || (0..N).map(record).collect::<Vec<_>>(),
            |recs| {
                let mut tail = Tail::genesis();
                for r in recs {
                    tail = Entry::seal(&tail, r).tail();
                }
                tail
            },
            BatchSize::LargeInput,
        );
    });
    let signer = Signer::from_seed([7; 32]);
    let entries = chain(N);
    // A checkpoint every 1000 records, as the gateway's default.
    let checkpoints: Vec<_> = entries
        .iter()
        .filter(|e| e.seq % 1000 == 0)
        .map(|e| signer.checkpoint(&e.tail(), e.at))
        .collect();
    g.bench_function("verify 10k records, 10 checkpoints", |b| {
        b.iter(|| {
            let mut v = Verifier::new(checkpoints.clone(), Some(&signer.public_key_hex()));
            for e in &entries {
                v.push(e);
            }
            let v = v.finish();
            assert!(v.ok);
            v.count
        });
    });
    g.finish();
    c.bench_function("sign one checkpoint", |b| {
        let tail = entries[entries.len() - 1].tail();
        b.iter(|| signer.checkpoint(&tail, 0));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
