//! Reopen, schema version, bans and peer book persistence, corruption handling.

use palisade_store::*;
use palisade_types::fixtures::*;

use crate::{meta, open};

#[test]
fn flushed_records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let records = feed(40, 50);
    {
        let store = open(dir.path());
        for r in &records {
            store.insert(r, meta()).unwrap();
        }
        store.flush().unwrap();
    }
    let store = open(dir.path());
    for r in &records {
        assert_eq!(&store.get(&r.id()).unwrap().unwrap().record, r);
    }
    let head = store.feed_head(&records[0].author()).unwrap().unwrap();
    assert_eq!(head.contiguous_seq, 50);
}

#[test]
fn second_open_of_the_same_dir_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another palisade"));
}

#[test]
fn schema_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_open(&dir.path().join("db"));
        db.open_tree("meta").unwrap().insert(b"schema_version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap_err();
    assert!(matches!(err, StoreError::SchemaMismatch { found: 99, expected: SCHEMA_VERSION, .. }), "{err}");
}

#[test]
fn corrupted_record_value_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let r = &feed(41, 1)[0];
    {
        let store = open(dir.path());
        store.insert(r, meta()).unwrap();
        store.flush().unwrap();
    }
    {
        let db = raw_open(&dir.path().join("db"));
        // Records live in the `data` tree under `r` ++ id.
        let data = db.open_tree("data").unwrap();
        let mut key = vec![b'r'];
        key.extend_from_slice(r.id().as_bytes());
        assert!(data.contains_key(&key).unwrap(), "layout changed: update this test");
        for garbage in [vec![], vec![1u8], vec![1u8; 12], vec![9u8; 40]] {
            data.insert(&key, garbage).unwrap();
        }
        db.flush().unwrap();
    }
    let store = open(dir.path());
    let err = store.get(&r.id()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { tree: "data", .. }), "{err}");
}

/// Regression (found by fuzz/store_corrupt): counters read back from a corrupt database
/// (feed heads, record counts) at `u64::MAX` made `insert` and `record_count` overflow, a
/// panic in debug builds and a wrapped count in release. They saturate now.
#[test]
fn counters_at_u64_max_on_disk_saturate_instead_of_overflowing() {
    let dir = tempfile::tempdir().unwrap();
    let records = feed(43, 3);
    {
        let store = open(dir.path());
        for r in &records[..2] {
            store.insert(r, meta()).unwrap();
        }
        store.flush().unwrap();
    }
    {
        let db = raw_open(&dir.path().join("db"));
        let data = db.open_tree("data").unwrap();
        let mut touched = 0;
        for item in data.iter() {
            let (k, v) = item.unwrap();
            // Feed heads (`f`) and counters (`m`): every byte 0xff, every word u64::MAX.
            if matches!(k.first(), Some(b'f' | b'm')) {
                data.insert(&k, vec![0xff; v.len()]).unwrap();
                touched += 1;
            }
        }
        assert!(touched >= 2, "layout changed: update this test");
        db.flush().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.record_count(), usize::MAX);
    assert_eq!(store.feed_head(&records[0].author()).unwrap().unwrap().records, u64::MAX);
    store.insert(&records[2], meta()).unwrap();
    assert_eq!(store.feed_head(&records[0].author()).unwrap().unwrap().records, u64::MAX);
    assert_eq!(store.record_count(), usize::MAX);
}

#[test]
fn bans_and_peer_book_persist() {
    let dir = tempfile::tempdir().unwrap();
    let ban = BanRecord { target: "peer:abc".into(), until_ms: 123, created_ms: 1, reason: "flood".into() };
    {
        let store = open(dir.path());
        store.put_ban(&ban).unwrap();
        store
            .upsert_peer(&PeerBookEntry {
                peer_id: "p1".into(),
                addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
                last_seen_ms: 5,
            })
            .unwrap();
        store.flush().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.bans().unwrap(), vec![ban]);
    assert!(store.remove_ban("peer:abc").unwrap());
    assert!(!store.remove_ban("peer:abc").unwrap());
    assert_eq!(store.peer_book().unwrap().len(), 1);
}

#[test]
fn peer_book_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..(MAX_PEER_BOOK_ENTRIES + 10) {
        store
            .upsert_peer(&PeerBookEntry { peer_id: format!("p{i}"), addrs: vec![], last_seen_ms: i as u64 })
            .unwrap();
    }
    let book = store.peer_book().unwrap();
    assert_eq!(book.len(), MAX_PEER_BOOK_ENTRIES);
    // The oldest were evicted.
    assert!(book.iter().all(|p| p.last_seen_ms >= 10));
}

#[test]
fn schema_1_store_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let records = palisade_types::fixtures::feed(33, 5);
    {
        let store = reopen(&dir.path().join("db"));
        for r in &records {
            store.insert(r, meta()).unwrap();
        }
        store.flush().unwrap();
    }
    // Make it look like schema 1: a time-index entry per record, version 1.
    {
        let db = raw_open(&dir.path().join("db"));
        let data = db.open_tree("data").unwrap();
        for r in &records {
            let mut k = vec![b'i', 2];
            k.extend_from_slice(&r.record().position.issued_at_ms.to_be_bytes());
            k.extend_from_slice(r.id().as_bytes());
            data.insert(k, &[]).unwrap();
        }
        db.open_tree("meta").unwrap().insert(b"schema_version", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    {
        let store = reopen(&dir.path().join("db"));
        let page = store.query(&palisade_store::Query { limit: 100, ..Default::default() }).unwrap();
        assert_eq!(page.records.len(), 5, "each record once, from the kind index");
    }
    let db = raw_open(&dir.path().join("db"));
    assert_eq!(db.open_tree("data").unwrap().scan_prefix([b'i', 2]).count(), 0);
    let v = db.open_tree("meta").unwrap().get(b"schema_version").unwrap().unwrap();
    assert_eq!(v.as_ref(), &SCHEMA_VERSION.to_be_bytes());
}

/// sled releases its file lock from a background thread shortly after the last handle is
/// dropped: retry while it is still held.
pub(crate) fn raw_open(path: &std::path::Path) -> sled::Db {
    for _ in 0..1000 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    panic!("{} stayed locked", path.display());
}

/// `Store::open` itself waits out the lock a just-dropped handle still holds.
pub(crate) fn reopen(path: &std::path::Path) -> Store {
    Store::open(&StoreConfig::new(path)).unwrap_or_else(|e| panic!("{e}"))
}
