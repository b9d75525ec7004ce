//! Store costs: insert without flush, with a flush per record, with group commit (flush per
//! 64), and the dedup lookup. Run: `cargo bench -p palisade-store`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use palisade_store::{Source, Store, StoreConfig, StoredMeta};
use palisade_types::fixtures;

fn meta() -> StoredMeta {
    StoredMeta { received_at_ms: fixtures::FIXED_NOW_MS, source: Source::Gossip }
}

fn store(c: &mut Criterion) {
    let records = fixtures::feed(7, 256);
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.throughput(Throughput::Elements(records.len() as u64));
    for (name, flush_every) in
        [("insert_no_flush", 0usize), ("insert_group_commit_64", 64), ("insert_flush_each", 1)]
    {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let s = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
                    (dir, s)
                },
                |(dir, s)| {
                    for (i, r) in records.iter().enumerate() {
                        s.insert(r, meta()).unwrap();
                        if flush_every > 0 && (i + 1) % flush_every == 0 {
                            s.flush().unwrap();
                        }
                    }
                    drop(s);
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    for r in &records {
        s.insert(r, meta()).unwrap();
    }
    g.bench_function("dedup_contains_hit", |b| {
        b.iter(|| records.iter().filter(|r| s.contains(&r.id()).unwrap()).count())
    });
    g.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
