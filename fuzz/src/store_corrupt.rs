//! Target 6: a corrupted database. A store is populated with valid records, bans and peers;
//! the input then overwrites, truncates, removes or invents values (and keys) in its sled trees
//! directly, as disk corruption or a buggy older version would; then the store is reopened and
//! every read API is called, followed by writes on top of the damage.
//!
//! The trees are found at run time (`sled::Db::tree_names`), not hard-coded, so the target
//! follows palisade-store's layout (records, indexes, feed heads, anomaly states, counters,
//! equivocations, the schema version, bans, the peer book) as it changes.
//!
//! Invariants:
//! - nothing panics: a corrupt value is a `StoreError` (which tells the operator to restore
//!   or re-sync), never a crash — also for writes that read corrupt state first (insert reads
//!   feed heads, anomaly states and counters) and for the guard loading persisted bans;
//! - whatever is returned is still self-consistent: `get(id)` returns the record with that id,
//!   pages and ranges respect their limits.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use palisade_store::{BanRecord, PeerBookEntry, Query, Source, Store, StoredMeta};
use palisade_types::{AnomalyState, AuthorKey, Digest, RecordId, RecordKind};

use crate::common::{self, NOW_MS};

#[derive(Arbitrary, Debug)]
enum KeyChoice {
    /// The n-th existing key of the tree.
    Existing(u16),
    /// The n-th key of one key space (the keys that share a first byte), so small spaces
    /// such as feed heads, anomaly states and counters are hit as often as big ones.
    InSpace { space: u8, n: u16 },
    /// An existing key cut short.
    Truncated(u16, u8),
    /// An existing key with bytes appended.
    Extended(u16, Vec<u8>),
    /// Any key.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ValueChoice {
    Bytes(Vec<u8>),
    /// `len` copies of `byte` (e.g. a feed head of all 0xff: every counter at `u64::MAX`).
    Fill {
        len: u8,
        byte: u8,
    },
    /// The existing value with one byte changed.
    Flip {
        at: u16,
        xor: u8,
    },
    /// The existing value cut short.
    Truncate(u16),
    /// The value of another key of the same tree.
    CopyFrom(u16),
    /// The existing value with every 8-byte word (from `offset`, usually 0) set to `u64::MAX`,
    /// `u64::MAX - 1` or 0: counters, sequence numbers and timestamps at their extremes, the
    /// structure intact.
    Extreme {
        word: u8,
        offset: u8,
    },
    Remove,
}

#[derive(Arbitrary, Debug)]
struct Corruption {
    /// Which tree (by index into the sorted tree names).
    tree: u8,
    key: KeyChoice,
    value: ValueChoice,
}

#[derive(Arbitrary, Debug)]
struct Input {
    corruptions: Vec<Corruption>,
    probe_ids: Vec<[u8; 32]>,
    cursor_text: String,
    limit: u16,
    /// seq, kind and content of the fresh record each author then writes.
    insert_fresh: (u8, u8, u8),
}

/// A populated database, built once per process and copied for each input.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = TEMPLATE.get_or_init(|| {
        let dir = common::temp_dir();
        let path = dir.path().join("db");
        let store = match common::open_store(&path) {
            Ok(s) => s,
            Err(e) => panic!("cannot create the template store: {e}"),
        };
        let meta = StoredMeta { received_at_ms: NOW_MS, source: Source::Gossip };
        let mut records: Vec<_> = common::pool_flat().into_iter().cloned().collect();
        // An equivocation (second record at author 0, seq 2) and an out-of-order anomaly update.
        let first = common::pool()[0][0].id();
        records.push(common::sign(0, 2, Some(first), common::statement(0, 99), NOW_MS - 30_000));
        records.push(common::sign(
            1,
            5,
            Some(RecordId([5; 32])),
            common::statement(2, 44),
            NOW_MS - 3_600_000,
        ));
        for r in &records {
            if let Err(e) = store.insert(r, meta) {
                panic!("template insert failed: {e}");
            }
        }
        let bans = [
            ("peer:12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE", u64::MAX),
            ("ip:10.0.0.1", NOW_MS + 60_000),
            ("ip:10.0.0.2", 1),
        ];
        for (target, until_ms) in bans {
            let ban =
                BanRecord { target: target.into(), until_ms, created_ms: NOW_MS, reason: "fuzz".into() };
            if let Err(e) = store.put_ban(&ban) {
                panic!("template ban failed: {e}");
            }
        }
        let peer = PeerBookEntry {
            peer_id: common::peer(0).to_base58(),
            addrs: vec!["/ip4/10.0.0.1/tcp/7400".into()],
            last_seen_ms: NOW_MS,
        };
        if let Err(e) = store.upsert_peer(&peer).and_then(|()| store.flush()) {
            panic!("template peer failed: {e}");
        }
        drop(store);
        (dir, path)
    });
    path
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            // libFuzzer's timers interrupt system calls; copy_file_range does not retry.
            let mut tries = 0;
            while let Err(e) = std::fs::copy(entry.path(), &target) {
                tries += 1;
                if e.kind() != std::io::ErrorKind::Interrupted || tries > 100 {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn nth<T: Clone>(items: &[T], i: impl Into<usize>) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        items.get(i.into() % items.len()).cloned()
    }
}

fn corrupt(path: &Path, corruptions: &[Corruption]) {
    let db = match sled::Config::new().path(path).cache_capacity(4 * 1024 * 1024).open() {
        Ok(db) => db,
        Err(e) => panic!("cannot open the copied template with sled: {e}"),
    };
    let mut names = db.tree_names();
    names.sort();
    for c in corruptions.iter().take(32) {
        // Every tree the store created, plus sled's default tree.
        let Some(name) = nth(&names, c.tree) else { continue };
        let Ok(tree) = db.open_tree(name) else { continue };
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            tree.iter().flatten().take(1024).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.clone()).collect();
        let key = match &c.key {
            KeyChoice::Existing(i) => nth(&keys, *i),
            KeyChoice::InSpace { space, n } => {
                let mut spaces: Vec<u8> = keys.iter().filter_map(|k| k.first().copied()).collect();
                spaces.dedup();
                nth(&spaces, *space).and_then(|first| {
                    let in_space: Vec<Vec<u8>> =
                        keys.iter().filter(|k| k.first() == Some(&first)).cloned().collect();
                    nth(&in_space, *n)
                })
            }
            KeyChoice::Truncated(i, n) => nth(&keys, *i).map(|mut k| {
                k.truncate(usize::from(*n) % (k.len() + 1));
                k
            }),
            KeyChoice::Extended(i, more) => nth(&keys, *i).map(|mut k| {
                k.extend(more.iter().take(64));
                k
            }),
            KeyChoice::Raw(k) => Some(k.iter().take(128).copied().collect()),
        };
        let Some(key) = key else { continue };
        let current = tree.get(&key).ok().flatten().map(|v| v.to_vec()).unwrap_or_default();
        let value = match &c.value {
            ValueChoice::Bytes(b) => Some(b.iter().take(20_000).copied().collect()),
            ValueChoice::Fill { len, byte } => Some(vec![*byte; usize::from(*len)]),
            ValueChoice::Flip { at, xor } => {
                let mut v = current;
                let len = v.len();
                if let Some(b) = v.get_mut(usize::from(*at) % len.max(1)) {
                    *b ^= xor | 1;
                }
                Some(v)
            }
            ValueChoice::Truncate(n) => {
                let mut v = current;
                v.truncate(usize::from(*n) % (v.len() + 1));
                Some(v)
            }
            ValueChoice::CopyFrom(i) => nth(&entries, *i).map(|(_, v)| v),
            ValueChoice::Extreme { word, offset } => {
                let word = match word % 3 {
                    0 => u64::MAX,
                    1 => u64::MAX - 1,
                    _ => 0,
                };
                let mut v = current;
                // Most values are whole words; some start with a tag, hence other offsets.
                let offset = if *offset < 128 { 0 } else { usize::from(*offset) % 8 };
                for chunk in v.get_mut(offset..).unwrap_or_default().chunks_exact_mut(8) {
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
                Some(v)
            }
            ValueChoice::Remove => None,
        };
        let _ = match value {
            Some(v) => tree.insert(key, v).map(|_| ()),
            None => tree.remove(key).map(|_| ()),
        };
    }
    if let Err(e) = db.flush() {
        panic!("cannot flush the corrupted copy: {e}");
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else { return };
    let dir = common::temp_dir();
    let path = dir.path().join("db");
    if let Err(e) = copy_dir(template(), &path) {
        panic!("cannot copy the template store: {e}");
    }
    corrupt(&path, &input.corruptions);
    // Opening may fail (e.g. a corrupt schema version): that is an error, not a panic.
    let Ok(store) = common::reopen_store(&path) else { return };
    probe(&store, &input);
}

fn probe(store: &Store, input: &Input) {
    let limit = usize::from(input.limit % 64).max(1);
    let mut ids: Vec<RecordId> = common::pool_flat().iter().map(|r| r.id()).collect();
    ids.extend(input.probe_ids.iter().take(8).map(|b| RecordId(*b)));
    for id in &ids {
        let _ = store.contains(id);
        if let Ok(Some(r)) = store.get(id) {
            assert_eq!(r.record.id(), *id, "get returned another record than asked for");
        }
    }
    let mut authors: Vec<AuthorKey> =
        common::pool().iter().filter_map(|c| c.first()).map(|r| r.author()).collect();
    authors.extend(input.probe_ids.iter().take(4).map(|b| AuthorKey(*b)));
    for a in &authors {
        let _ = store.feed_head(a);
        for seq in [0, 1, 2, 5, u64::MAX] {
            let _ = store.ids_at(a, seq);
        }
        if let Ok(range) = store.feed_range(a, 1, u64::MAX, limit, 64 * 1024) {
            assert!(range.len() <= limit, "feed_range returned more than max_records");
            assert!(range.iter().all(|r| r.author() == *a), "feed_range returned another author's record");
        }
        let _ = store.feed_range(a, u64::MAX, u64::MAX, limit, 1);
        let _ = store.latest_in_feed(a);
        let _ = store.is_flagged(a);
    }
    if let Ok(heads) = store.feed_heads(None, limit) {
        assert!(heads.len() <= limit);
    }
    let _ = store.feed_heads(authors.first(), limit);
    if let Ok(eq) = store.equivocations(None, limit) {
        assert!(eq.len() <= limit);
    }
    let _ = store.record_counts();
    let _ = store.record_count();
    let _ = store.author_count();
    for n in [1u8, 11, 21, 31, 44] {
        let _ = store.anomaly_status(&common::anomaly_fingerprint(n));
    }
    for state in [None, Some(AnomalyState::Open), Some(AnomalyState::Acknowledged)] {
        if let Ok((page, _)) = store.anomaly_statuses(state, None, limit) {
            assert!(page.len() <= limit);
        }
    }
    let _ = store.bans();
    let _ = store.peer_book();
    queries(store, input, limit, &authors);
    writes(store, input);
}

fn queries(store: &Store, input: &Input, limit: usize, authors: &[AuthorKey]) {
    let subject = Digest {
        algorithm: palisade_types::fixtures::s("sha256"),
        value: palisade_types::BoundedBytes::new(vec![1; 32]).unwrap_or_default(),
    };
    let cursor = palisade_store::Cursor::decode(&input.cursor_text).ok();
    let queries = [
        Query { limit, ..Query::default() },
        Query { limit, author: authors.first().copied(), ..Query::default() },
        Query {
            limit,
            kind: Some(RecordKind::Anomaly),
            state: Some(AnomalyState::Acknowledged),
            ..Query::default()
        },
        Query {
            limit,
            subject: Some(subject),
            since_ms: Some(0),
            until_ms: Some(u64::MAX),
            ..Query::default()
        },
        Query {
            limit,
            fingerprint: Some(common::anomaly_fingerprint(1)),
            exclude_revoked: true,
            ..Query::default()
        },
        Query {
            limit,
            source: Some("otlp://collector/service-1".into()),
            min_severity: Some(1),
            ..Query::default()
        },
        Query { limit, cursor, ..Query::default() },
    ];
    for q in queries {
        let mut q = q;
        for _page in 0..4 {
            let Ok(page) = store.query(&q) else { break };
            assert!(page.records.len() <= limit, "query returned more than its limit");
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
    }
}

fn writes(store: &Store, input: &Input) {
    let meta = StoredMeta { received_at_ms: NOW_MS, source: Source::Sync };
    // Every author writes one record, so a corrupted feed head, anomaly state or counter of
    // any of them is read and updated.
    let (seq, kind, n) = input.insert_fresh;
    for author in 0..common::FRESH_AUTHORS as u8 {
        let statement = common::statement(kind.wrapping_add(author), n);
        let seq = u64::from(seq % 8) + 1;
        let prev = (seq > 1).then_some(RecordId([seq as u8; 32]));
        let fresh = common::sign(author, seq, prev, statement, NOW_MS - 1000);
        let _ = store.insert(&fresh, meta);
    }
    let _ = store.insert(common::pool_record(n), meta);
    let ban = BanRecord {
        target: "ip:10.0.0.9".into(),
        until_ms: NOW_MS,
        created_ms: NOW_MS,
        reason: String::new(),
    };
    let _ = store.put_ban(&ban);
    let _ = store.upsert_peer(&PeerBookEntry { peer_id: "x".into(), addrs: Vec::new(), last_seen_ms: 0 });
    // The guard reads the persisted bans at start: a corrupt ban is an error or is skipped.
    let _ = common::new_guard(common::small_guard_config(), store.clone());
    let _ = store.flush();
}
