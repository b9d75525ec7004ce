//! Issue 15: `Store::check` finds what a damaged disk broke without sled noticing: a record
//! whose bytes changed (its signature no longer verifies), a missing index entry, a counter
//! that disagrees; and finds nothing in a sound store.

use crate::meta;
use crate::persistence::{raw_open, reopen};

#[test]
fn check_finds_damaged_records_missing_index_entries_and_wrong_counters() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let records = palisade_types::fixtures::feed(51, 6);
    {
        let store = reopen(&db);
        for r in &records {
            store.insert(r, meta()).unwrap();
        }
        store.flush().unwrap();
        let report = store.check(|_| {}).unwrap();
        assert_eq!((report.records, report.authors, report.problems), (6, 1, 0), "{report:?}");
    }
    {
        let raw = raw_open(&db);
        let data = raw.open_tree("data").unwrap();
        // 1. Flip a byte inside the third record's signature (the last bytes of its value).
        let mut key = vec![b'r'];
        key.extend_from_slice(records[2].id().as_bytes());
        let mut value = data.get(&key).unwrap().unwrap().to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        data.insert(&key, value).unwrap();
        // 2. Drop the fifth record's feed index entry.
        let position = &records[4].record().position;
        let mut removed = false;
        for item in data.scan_prefix([b'i', 1]) {
            let (k, _) = item.unwrap();
            if k.ends_with(records[4].id().as_bytes())
                && k.windows(32).any(|w| w == position.author.as_bytes())
            {
                data.remove(&k).unwrap();
                removed = true;
            }
        }
        assert!(removed, "the feed index entry was found and removed");
        // 3. Make the attestation counter lie.
        let mut counter = vec![b'm', b'c'];
        counter.push(palisade_types::RecordKind::Attestation.tag());
        data.insert(&counter, &99u64.to_be_bytes()).unwrap();
        raw.flush().unwrap();
    }
    let store = reopen(&db);
    let report = store.check(|_| {}).unwrap();
    assert_eq!(report.problems, 3, "{report:#?}");
    let text = report.examples.join("\n");
    assert!(text.contains(&records[2].id().to_string()) && text.contains("signature"), "{text}");
    assert!(text.contains(&records[4].id().to_string()) && text.contains("feed index"), "{text}");
    assert!(text.contains("counter says 99"), "{text}");
}

/// Issue 15: a garbage `db/conf` used to be reported as "created using a sled version
/// earlier than 0.29" (text garbage) or as an I/O error asking to check free space (binary
/// garbage); both are damage, and the message says what to do.
#[test]
fn a_garbage_conf_file_is_reported_as_damage_with_what_to_do() {
    for garbage in [&b"hello, this is not a sled config\n"[..], &b"\x00\x13\xff\xfe\x01garbage"[..]] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        drop(reopen(&db));
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(db.join("conf"), garbage).unwrap();
        let err = palisade_store::Store::open(&palisade_store::StoreConfig::new(&db)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, palisade_store::StoreError::Damaged { .. }), "{text}");
        assert!(text.contains("damaged") && text.contains("backup") && text.contains("re-sync"), "{text}");
    }
}
