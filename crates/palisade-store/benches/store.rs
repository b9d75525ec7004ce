//! Store costs per record: insert without flush, with group commit (flush per 64), with a
//! flush per record, batched `insert_many` of 64 with a flush per batch, and the dedup
//! lookup. Each measured iteration writes 64 records that are new to an open store, so the
//! figures are the steady-state cost, not open/close. Run: `cargo bench -p palisade-store`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use palisade_store::{Source, Store, StoreConfig, StoredMeta};
use palisade_types::{fixtures, VerifiedRecord};

const CHUNK: usize = 64;
const POOL: u64 = 20_000;

fn meta() -> StoredMeta {
    StoredMeta { received_at_ms: fixtures::FIXED_NOW_MS, source: Source::Gossip }
}

/// Inserts `iters` chunks of fresh records with `write`, timing only the writes.
fn measure(pool: &[VerifiedRecord], iters: u64, write: &dyn Fn(&Store, &[VerifiedRecord])) -> Duration {
    let mut total = Duration::ZERO;
    let mut dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    let mut next = 0usize;
    for _ in 0..iters {
        if next + CHUNK > pool.len() {
            drop(store);
            dir = tempfile::tempdir().unwrap();
            store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
            next = 0;
        }
        let chunk = &pool[next..next + CHUNK];
        next += CHUNK;
        let t = Instant::now();
        write(&store, chunk);
        total += t.elapsed();
    }
    total
}

fn store(c: &mut Criterion) {
    let pool = fixtures::feed(7, POOL);
    let mut g = c.benchmark_group("store");
    g.sample_size(20);
    g.throughput(Throughput::Elements(CHUNK as u64));
    g.bench_function("insert_no_flush", |b| {
        b.iter_custom(|iters| {
            measure(&pool, iters, &|s, chunk| {
                for r in chunk {
                    s.insert(r, meta()).unwrap();
                }
            })
        })
    });
    g.bench_function("insert_group_commit_64", |b| {
        b.iter_custom(|iters| {
            measure(&pool, iters, &|s, chunk| {
                for r in chunk {
                    s.insert(r, meta()).unwrap();
                }
                s.flush().unwrap();
            })
        })
    });
    g.bench_function("insert_many_64_no_flush", |b| {
        b.iter_custom(|iters| {
            measure(&pool, iters, &|s, chunk| {
                let items: Vec<_> = chunk.iter().map(|r| (r, meta())).collect();
                s.insert_many(&items).unwrap();
            })
        })
    });
    g.bench_function("insert_many_64_group_commit", |b| {
        b.iter_custom(|iters| {
            measure(&pool, iters, &|s, chunk| {
                let items: Vec<_> = chunk.iter().map(|r| (r, meta())).collect();
                s.insert_many(&items).unwrap();
                s.flush().unwrap();
            })
        })
    });
    g.bench_function("insert_flush_each", |b| {
        b.iter_custom(|iters| {
            measure(&pool, iters, &|s, chunk| {
                for r in chunk {
                    s.insert(r, meta()).unwrap();
                    s.flush().unwrap();
                }
            })
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
    for r in &pool[..CHUNK] {
        s.insert(r, meta()).unwrap();
    }
    g.bench_function("dedup_contains_hit", |b| {
        b.iter(|| pool[..CHUNK].iter().filter(|r| s.contains(&r.id()).unwrap()).count())
    });
    g.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
