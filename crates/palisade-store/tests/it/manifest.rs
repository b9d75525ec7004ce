//! Issue 15: the store manifest is a lower bound of what the store acknowledged, and a store
//! that lost acknowledged records — its `db/` deleted, a flipped byte, a truncated file —
//! never compares as sound with records missing.

use palisade_store::{Acknowledged, ManifestCheck, Store, StoreConfig, MANIFEST_FILE};
use palisade_types::VerifiedRecord;

use crate::meta;

fn open_with_manifest(dir: &std::path::Path) -> palisade_store::Result<Store> {
    Store::open(&StoreConfig {
        manifest_path: Some(dir.join(MANIFEST_FILE)),
        ..StoreConfig::new(dir.join("db"))
    })
}

/// Writes `records` in flushed groups of `group`, as the node's group commit does.
fn write_in_groups(store: &Store, records: &[VerifiedRecord], group: usize) {
    for chunk in records.chunks(group) {
        for r in chunk {
            store.insert(r, meta()).unwrap();
        }
        store.flush().unwrap();
    }
}

#[test]
fn the_manifest_follows_flushes_and_a_deleted_db_is_behind_until_rebased() {
    let dir = tempfile::tempdir().unwrap();
    let records = palisade_types::fixtures::feed(5, 15);
    let author = records[0].record().position.author;
    {
        let store = open_with_manifest(dir.path()).unwrap();
        assert_eq!(store.manifest_check(), &ManifestCheck::Sound);
        store.set_own_author(&author).unwrap();
        write_in_groups(&store, &records[..10], 5);
        let ten = Acknowledged { stored: [10, 0, 0, 0], own_seq: 10 };
        assert_eq!(store.manifest(), Some(ten));
        // Written but not flushed: the manifest does not claim it.
        for r in &records[10..] {
            store.insert(r, meta()).unwrap();
        }
        assert_eq!(store.manifest(), Some(ten));
        assert_eq!(store.acknowledged_now().unwrap(), Acknowledged { stored: [15, 0, 0, 0], own_seq: 15 });
    }
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let store = open_with_manifest(dir.path()).unwrap();
    let check = store.manifest_check().clone();
    assert!(matches!(check, ManifestCheck::Behind { .. }), "{check}");
    let text = check.to_string();
    assert!(text.contains("10 attestation record(s) missing"), "{text}");
    assert!(text.contains("own feed ends at seq 0 but reached seq 10"), "{text}");
    // The operator accepts the loss (recover from peers, restore a backup): the next open is sound.
    store.rebase_manifest().unwrap();
    drop(store);
    let store = open_with_manifest(dir.path()).unwrap();
    assert_eq!(store.manifest_check(), &ManifestCheck::Sound);
    assert_eq!(store.manifest(), Some(Acknowledged::default()));
}

#[test]
fn a_store_reopened_after_a_clean_stop_is_sound_and_counts_never_fall_with_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let records = palisade_types::fixtures::feed(6, 40);
    {
        let store = open_with_manifest(dir.path()).unwrap();
        write_in_groups(&store, &records, 7);
    }
    let store = open_with_manifest(dir.path()).unwrap();
    assert_eq!(store.manifest_check(), &ManifestCheck::Sound);
    assert_eq!(store.manifest().unwrap().stored_of(palisade_types::RecordKind::Attestation), 40);
}

/// The reproduction, at the store: acknowledged (flushed) records, then damage to
/// `db/db`. Whatever sled makes of it — refuses to open, or opens with less — the store is
/// never "sound" while an acknowledged record is missing.
#[test]
fn damage_to_the_database_file_is_never_sound_with_records_missing() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 5] = [
        ("flip the middle byte", |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
        }),
        ("flip a byte at 3/4", |b| {
            let at = b.len() * 3 / 4;
            b[at] ^= 0x01;
        }),
        ("truncate to 90 %", |b| b.truncate(b.len() * 9 / 10)),
        ("truncate to 50 %", |b| b.truncate(b.len() / 2)),
        ("truncate to 0", |b| b.clear()),
    ];
    let records = palisade_types::fixtures::feed(7, 300);
    let mut outcomes = Vec::new();
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_with_manifest(dir.path()).unwrap();
            store.set_own_author(&records[0].record().position.author).unwrap();
            write_in_groups(&store, &records, 10);
        }
        let file = dir.path().join("db").join("db");
        let mut bytes = std::fs::read(&file).unwrap();
        damage(&mut bytes);
        std::fs::write(&file, &bytes).unwrap();
        let outcome = match open_with_manifest(dir.path()) {
            Err(e) => format!("refused to open: {e}"),
            Ok(store) => {
                let missing = records.iter().filter(|r| !store.contains(&r.id()).unwrap_or(false)).count();
                match store.manifest_check() {
                    ManifestCheck::Sound => {
                        assert_eq!(
                            missing, 0,
                            "{what}: the store compares sound with {missing} records missing"
                        );
                        "sound, nothing missing".to_string()
                    }
                    other => {
                        if let ManifestCheck::Behind { manifest, store } = other {
                            assert_eq!(missing as u64, manifest.stored[0] - store.stored[0], "{what}");
                        }
                        format!("{missing} missing, detected: {other}")
                    }
                }
            }
        };
        outcomes.push(format!("{what}: {outcome}"));
    }
    eprintln!("{}", outcomes.join("\n"));
}
