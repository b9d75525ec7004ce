//! Writes the seed corpora, one directory per target, from the golden wire-format vectors
//! (crates/palisade-types/tests/vectors/records.json) and the shared test fixtures.
//!
//! Usage: `seed_corpora [OUT_DIR]` (default: `fuzz/corpus`). Run through `fuzz/seed-corpora.sh`,
//! which builds it with the targets. Existing files are kept; seeds are named by content, so
//! running it twice changes nothing.

use std::path::{Path, PathBuf};

use palisade_fuzz::common;
use palisade_guard::GuardConfig;
use palisade_net::sync::reconcile::{HeadRange, RangeAnswer, RangeQuery, ReconcileRequest, SubRange, Want};
use palisade_net::sync::{encode_body, Refusal, SyncRequest, SyncResponse, WireHead};
use palisade_net::NetConfig;
use palisade_types::{AuthorKey, BoundedBytes, BoundedVec, Envelope};

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| manifest.join("corpus"));
    let vectors = manifest.join("../crates/palisade-types/tests/vectors/records.json");
    let mut total = 0;
    for (target, seeds) in [
        ("envelope_decode", envelope_seeds(&vectors)),
        ("sync_codec", sync_seeds()),
        ("config_parse", config_seeds()),
        ("ingest_pipeline", structured_seeds(1)),
        ("store_corrupt", structured_seeds(2)),
        ("guard_state", structured_seeds(3)),
        ("admin_api", [structured_seeds(4), raw_http_seeds()].concat()),
        ("signing_history", palisade_fuzz::signing_history::seeds()),
        ("backup_document", palisade_fuzz::backup_document::seeds()),
    ] {
        let dir = out.join(target);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        for seed in &seeds {
            write_seed(&dir, seed);
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
        total += seeds.len();
    }
    println!("{total} seeds written");
}

fn write_seed(dir: &Path, seed: &[u8]) {
    let name = format!("seed-{}", &fnv_hex(seed)[..16]);
    if let Err(e) = std::fs::write(dir.join(name), seed) {
        panic!("cannot write a seed into {}: {e}", dir.display());
    }
}

fn fnv_hex(data: &[u8]) -> String {
    // FNV-1a is enough to name files by content without another dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn envelope_seeds(vectors: &Path) -> Vec<Vec<u8>> {
    let text = match std::fs::read_to_string(vectors) {
        Ok(t) => t,
        Err(e) => panic!("cannot read the golden vectors at {}: {e}", vectors.display()),
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => panic!("golden vectors are not JSON: {e}"),
    };
    let mut seeds = Vec::new();
    for v in json["vectors"].as_array().into_iter().flatten() {
        for field in ["envelope_hex", "payload_hex"] {
            if let Some(bytes) = v[field].as_str().and_then(|h| hex::decode(h).ok()) {
                seeds.push(bytes);
            }
        }
    }
    assert!(seeds.len() >= 8, "expected envelopes and payloads of every golden vector");
    for r in common::pool_flat() {
        seeds.push(r.wire_bytes().to_vec());
        if let Ok(env) = Envelope::decode(r.wire_bytes()) {
            seeds.push(env.payload.to_vec());
        }
    }
    seeds
}

fn sync_seeds() -> Vec<Vec<u8>> {
    let author = common::pool()[0][0].author();
    let heads = common::pool()
        .iter()
        .filter_map(|c| c.last())
        .map(|r| WireHead { author: r.author(), contiguous_seq: 4, max_seq: 4 })
        .collect::<Vec<_>>();
    let records = common::pool_flat()
        .iter()
        .take(6)
        .filter_map(|r| BoundedBytes::new(r.wire_bytes().to_vec()).ok())
        .collect::<Vec<_>>();
    let mut bodies = vec![
        encode_body(&SyncRequest::Heads { after: None, limit: 512 }),
        encode_body(&SyncRequest::Heads { after: Some(author), limit: 1 }),
        encode_body(&SyncRequest::Records { author, from_seq: 1, to_seq: u64::MAX, limit: 256 }),
        encode_body(&SyncResponse::Refused(Refusal::Busy)),
        encode_body(&SyncResponse::Refused(Refusal::BadRequest)),
        encode_body(&SyncResponse::Heads {
            heads: BoundedVec::new(heads).unwrap_or_default(),
            next_after: Some(AuthorKey([7; 32])),
        }),
        encode_body(&SyncResponse::Records {
            records: BoundedVec::new(records).unwrap_or_default(),
            truncated: true,
        }),
    ];
    // sync/2: a reconcile request of each kind of query, and answers of each kind.
    let range = HeadRange { after: Some(AuthorKey([0x20; 32])), upto: Some(AuthorKey([0xe0; 32])) };
    let queries = vec![
        RangeQuery { range: HeadRange::ALL, want: Want::Compare([1; 16]) },
        RangeQuery { range, want: Want::Split },
        RangeQuery { range, want: Want::Heads },
    ];
    bodies.push(encode_body(&SyncRequest::Reconcile(ReconcileRequest {
        nonce: [9; 32],
        queries: BoundedVec::new(queries).unwrap_or_default(),
    })));
    let parts = vec![
        SubRange { upto: Some(AuthorKey([0x80; 32])), count: 40, fingerprint: [2; 16] },
        SubRange { upto: range.upto, count: 3, fingerprint: [3; 16] },
    ];
    let answers = vec![
        RangeAnswer::Equal,
        RangeAnswer::Split(BoundedVec::new(parts).unwrap_or_default()),
        RangeAnswer::Heads { heads: BoundedVec::default(), more: false },
    ];
    bodies.push(encode_body(&SyncResponse::Reconciled(BoundedVec::new(answers).unwrap_or_default())));
    // An equivocation proof (two records by one author at seq 1) and a non-proof (two seq-1
    // records of two authors): the proof message shares the body codec.
    let a = palisade_types::FeedWriter::new(palisade_types::fixtures::key(90))
        .sign_next(palisade_types::fixtures::attestation(1), common::NOW_MS);
    let b = palisade_types::FeedWriter::new(palisade_types::fixtures::key(90))
        .sign_next(palisade_types::fixtures::attestation(2), common::NOW_MS);
    if let (Ok(a), Ok(b)) = (a, b) {
        bodies.push(palisade_net::proof::encode(a.wire_bytes(), b.wire_bytes()));
        if let Some(other) = common::pool_flat().first() {
            bodies.push(palisade_net::proof::encode(a.wire_bytes(), other.wire_bytes()));
        }
    }
    let frames: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| {
            let mut f = (b.len() as u32).to_le_bytes().to_vec();
            f.extend_from_slice(b);
            f
        })
        .collect();
    bodies.extend(frames);
    bodies
}

fn config_seeds() -> Vec<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Sections {
        network: NetConfig,
        limits: GuardConfig,
    }
    let defaults = Sections { network: NetConfig::default(), limits: GuardConfig::default() };
    let mut seeds = Vec::new();
    if let Ok(t) = toml::to_string(&defaults) {
        seeds.push(t.into_bytes());
    }
    let custom = Sections {
        network: NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into(), "/ip6/::1/udp/7400/quic-v1".into()],
            bootstrap: vec![format!("/ip4/10.0.0.5/tcp/7400/p2p/{}", common::peer(1))],
            external_addresses: vec!["/dns4/node.example/tcp/7400".into()],
            mdns: true,
            ..NetConfig::default()
        },
        limits: GuardConfig {
            allowlist_peers: vec![common::peer(2).to_base58()],
            allowlist_ips: vec!["10.0.0.0/8".into(), "fd00::/8".into(), "127.0.0.1".into()],
            ..common::small_guard_config()
        },
    };
    if let Ok(t) = toml::to_string(&custom) {
        seeds.push(t.into_bytes());
    }
    seeds.push(b"[network]\nlisten = [\"/ip4/0.0.0.0/tcp/7400\"]\nverify_workers = 2\n".to_vec());
    seeds.push(
        b"[limits]\npeer_messages_per_sec = 7\nban_score_points = -200\n\0limits.peer_burst_messages\x0050"
            .to_vec(),
    );
    seeds.push(b"[limits]\n\0allowlist_ips\x0010.0.0.0/8, ::1".to_vec());
    seeds.push(b"[store]\ncache_capacity_bytes = 1048576\n[admin]\nlisten = \"127.0.0.1:9741\"\n[log]\nfilter = \"info\"\n".to_vec());
    seeds
}

/// Seeds for the targets whose input is a structured operation sequence (decoded with
/// `arbitrary`): deterministic pseudo-random bytes of several lengths, plus the pool records'
/// bytes (real encodings the fuzzer can splice into raw messages).
fn structured_seeds(salt: u64) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ salt;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut seeds: Vec<Vec<u8>> = [16usize, 64, 128, 256, 512, 1024, 2048, 4096]
        .iter()
        .map(|len| (0..*len).map(|_| next() as u8).collect())
        .collect();
    seeds.extend(common::pool_flat().iter().take(4).map(|r| r.wire_bytes().to_vec()));
    seeds
}

/// Raw-mode inputs of the `admin_api` target: whole requests, good and broken.
fn raw_http_seeds() -> Vec<Vec<u8>> {
    [
        &b"GET /v1/node HTTP/1.1\r\nHost: palisade\r\n\r\n"[..],
        b"POST /v1/records HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/import HTTP/1.1\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /v1/node HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"PUT /v1/limits/max_bans HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 13\r\n\r\n{\"value\": 10}",
    ]
    .iter()
    .map(|r| [&[palisade_fuzz::admin_api::RAW_MARKER][..], r].concat())
    .collect()
}
