//! The record chain in the gateway's SQLite store: appending records in the
//! pipeline's transactions (one record per step, and a burst of 100 in one
//! step), and `verify` streaming the whole chain from the database, as
//! `GET /api/v1/records/verify` and `gateway records verify` do.
//!
//! `cargo bench -p gateway --bench chain_store`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::ops::supervision::Chain;
use gateway::store::Store;
use records::{NewRecord, Signer};

fn record(i: u64) -> NewRecord {
    NewRecord {
        at: 1_796_083_200_000 + i64::try_from(i).unwrap_or(0),
        kind: "work_order_responded".into(),
        site: "lakeside".into(),
        class: "elevator".into(),
        device: format!("EL-{}", i % 500),
        subject: format!("order:{i}"),
        body: format!(
            r#"{{"change":{{"change":"stepped","detail":{{"status":"responded"}}}},"order":{{"id":{i},"site":"lakeside","device":"EL-{}","code":"trapped","status":"responded","contractor":"acme","steps":[{{"status":"responded","at":1796083260000,"by":"acme-app","note":"在路上"}}]}}}}"#,
            i % 500
        ),
    }
}

fn store_with(dir: &std::path::Path, n: u64) -> (Store, Chain) {
    let mut store = Store::open(dir).expect("store");
    let mut chain = Chain::open(store.conn(), Signer::from_seed([7; 32]), 3_600_000, 1000).expect("chain");
    for start in (0..n).step_by(1000) {
        let recs: Vec<_> = (start..(start + 1000).min(n)).map(record).collect();
        let a = store.transact(|tx| chain.append(tx, 0, recs, false)).expect("append");
        chain.adopt(&a);
    }
    (store, chain)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    let (mut store, mut chain) = store_with(dir.path(), 0);
    let mut i = 0;
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one step: one record in its own transaction", |b| {
        b.iter(|| {
            i += 1;
            let a = store
                .transact(|tx| chain.append(tx, 0, vec![record(i)], false))
                .expect("append");
            chain.adopt(&a);
        });
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("a burst: 100 records in one transaction", |b| {
        b.iter(|| {
            let recs: Vec<_> = (0..100).map(|k| record(i + k)).collect();
            i += 100;
            let a = store.transact(|tx| chain.append(tx, 0, recs, false)).expect("append");
            chain.adopt(&a);
        });
    });
    g.finish();
    let dir = tempfile::tempdir().expect("dir");
    let (store, _) = store_with(dir.path(), 100_000);
    let key = Signer::from_seed([7; 32]).public_key_hex();
    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("100k records from SQLite, 100 checkpoints", |b| {
        b.iter(|| {
            let v = gateway::ops::supervision::verify(store.conn(), Some(&key)).expect("verify");
            assert!(v.ok && v.count == 100_000);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
