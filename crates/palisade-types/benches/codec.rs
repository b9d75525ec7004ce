//! Hot-path costs of the wire format: parse + id, payload decode, encode, and signature
//! checks single vs batched. Run: `cargo bench -p palisade-types`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use palisade_types::fixtures;
use palisade_types::*;

fn records(n: u64) -> Vec<VerifiedRecord> {
    fixtures::feed(42, n)
}

fn codec(c: &mut Criterion) {
    let r = records(1).remove(0);
    let wire = r.wire_bytes().to_vec();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_envelope_and_id", |b| {
        b.iter(|| ParsedEnvelope::parse(black_box(wire.clone())).map(|p| p.id()))
    });
    g.bench_function("parse_and_decode_payload", |b| {
        b.iter(|| ParsedEnvelope::parse(black_box(wire.clone())).and_then(|p| p.decode()).map(|u| u.id()))
    });
    g.bench_function("record_id_only", |b| {
        let env = r.envelope().unwrap();
        b.iter(|| record_id(&pae(black_box(&env.payload_type), black_box(&env.payload))))
    });
    g.bench_function("encode_payload", |b| b.iter(|| codec::encode_payload(black_box(r.record()))));
    g.finish();
}

fn verify(c: &mut Criterion) {
    let rs = records(64);
    let unverified = || -> Vec<ValidatedRecord> {
        rs.iter()
            .map(|r| {
                let u = ParsedEnvelope::parse(r.wire_bytes().to_vec()).unwrap().decode().unwrap();
                u.validate(fixtures::FIXED_NOW_MS).unwrap()
            })
            .collect()
    };
    let key = verifying_key(&rs[0].author()).unwrap();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(64));
    g.bench_function("single_x64", |b| {
        b.iter_batched(
            unverified,
            |v| v.into_iter().map(|u| u.verify_with_key(&key).is_ok()).filter(|ok| *ok).count(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("batch_64", |b| {
        b.iter_batched(
            || unverified().into_iter().map(|u| (u, Some(key))).collect::<Vec<_>>(),
            verify_batch_with_keys,
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decompress_key_x64", |b| {
        b.iter(|| (0..64).filter(|_| verifying_key(black_box(&rs[0].author())).is_ok()).count())
    });
    g.finish();
}

criterion_group!(benches, codec, verify);
criterion_main!(benches);
