//! Issue 16: below its flood stage the store refuses new records and keeps every read; a
//! leftover unfinished sled snapshot does not stop the next open.

use palisade_store::{DiskLevel, DiskWatermarks, Store, StoreConfig, StoreError};

use crate::meta;

fn open_with(dir: &std::path::Path, watermarks: DiskWatermarks) -> Store {
    Store::open(&StoreConfig { watermarks, ..StoreConfig::new(dir.join("db")) }).unwrap()
}

#[test]
fn below_the_flood_stage_inserts_are_refused_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let records = palisade_types::fixtures::feed(41, 3);
    {
        let store = open_with(dir.path(), DiskWatermarks::default());
        store.insert(&records[0], meta()).unwrap();
        store.flush().unwrap();
    }
    // No filesystem has this much free space: the store opens in its flood stage.
    let impossible = DiskWatermarks { min_free_bytes: 1 << 60, warn_free_bytes: 1 << 61 };
    let store = open_with(dir.path(), impossible);
    assert_eq!(store.disk_level(), DiskLevel::FloodStage);
    assert!(store.disk_low());
    let free = store.disk_free_bytes().expect("sampled at open");
    match store.insert(&records[1], meta()) {
        Err(StoreError::DiskLow { free_bytes, min_free_bytes, .. }) => {
            assert_eq!(min_free_bytes, 1 << 60);
            assert!(free_bytes > 0 && free_bytes.abs_diff(free) < 1 << 30);
        }
        other => panic!("expected DiskLow, got {other:?}"),
    }
    // Reads are untouched, and a refusal is not a store failure.
    assert!(store.get(&records[0].id()).unwrap().is_some());
    assert!(!store.contains(&records[1].id()).unwrap());
    assert_eq!(store.failure(), None);
    drop(store);
    // Once the disk has room (here: sane watermarks), the same record goes in.
    let store = open_with(dir.path(), DiskWatermarks::default());
    store.insert(&records[1], meta()).unwrap();
    assert!(store.contains(&records[1].id()).unwrap());
}

#[test]
fn an_unfinished_snapshot_left_by_a_crash_does_not_stop_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let records = palisade_types::fixtures::feed(42, 2);
    {
        let store = crate::open(dir.path());
        store.insert(&records[0], meta()).unwrap();
        store.flush().unwrap();
    }
    // What a SIGKILL (or ENOSPC) during sled's snapshot write leaves: an empty temp file.
    let leftover = dir.path().join("db").join("snap.0000000000FFFFFF.generating");
    std::fs::write(&leftover, b"").unwrap();
    let store = crate::open(dir.path());
    assert!(!leftover.exists(), "the unfinished snapshot is removed at open");
    assert!(store.get(&records[0].id()).unwrap().is_some());
}
