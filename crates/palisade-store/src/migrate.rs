//! Schema migrations, run by [`Store::open`](crate::Store::open) in bounded batches, and
//! the recount of the quota's byte counter.

use crate::keys;
use crate::retention;
use crate::{count_key, decode_record_value, stored_ever_key, u64_value, Trees, META_SCHEMA};
use palisade_types::RecordKind;

/// Records read per batch by the migrations.
const MIGRATION_BATCH: usize = 10_000;

/// Schema 2 → 3: builds the received-order index and the quota's byte counter, then records
/// version 3.
pub(crate) fn migrate_v2(trees: &Trees) -> std::result::Result<(), sled::Error> {
    rebuild_quota_accounting(trees)?;
    trees.meta.insert(META_SCHEMA, &3u32.to_be_bytes())?;
    trees.db.flush()?;
    Ok(())
}

/// Builds the received-order index and the quota's byte counter from the stored records, in
/// bounded batches (idempotent: an entry already there is written again). A record that does
/// not decode is left for `palisade store check` to report. Returns the byte count.
pub(crate) fn rebuild_quota_accounting(trees: &Trees) -> std::result::Result<u64, sled::Error> {
    let mut total: u64 = 0;
    let mut start = vec![keys::SPACE_RECORD];
    let end = vec![keys::SPACE_RECORD + 1];
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        for item in trees.data.range(start.clone()..end.clone()).take(MIGRATION_BATCH) {
            let (k, v) = item?;
            n += 1;
            start = k.to_vec();
            start.push(0);
            let Some(id) = keys::trailing_id(&k) else { continue };
            if let Ok((meta, record)) = decode_record_value(&id, &v) {
                total = total.saturating_add(retention::record_cost(&record));
                batch.insert(keys::received_key(meta.received_at_ms, &id), Vec::new());
            }
        }
        if n == 0 {
            break;
        }
        trees.data.apply_batch(batch)?;
    }
    let markers = trees.data.scan_prefix([keys::SPACE_EVICTED]).count() as u64;
    total = total.saturating_add(markers.saturating_mul(retention::MARKER_COST));
    trees.data.insert(retention::bytes_key(), &total.to_be_bytes())?;
    Ok(total)
}

/// The quota's byte counter as stored, recounted when it cannot be right: more logical bytes
/// than twice the database's files (plus a margin) means a damaged counter, and a damaged
/// counter must never make the quota evict what it should keep.
pub(crate) fn quota_bytes(trees: &Trees, path: &std::path::Path) -> std::result::Result<u64, sled::Error> {
    let stored = trees.data.get(retention::bytes_key())?.map(|v| u64_value(&v)).unwrap_or(0);
    let plausible = trees.db.size_on_disk()?.saturating_mul(2).saturating_add(64 * 1024 * 1024);
    if stored <= plausible {
        return Ok(stored);
    }
    tracing::warn!(
        path = %path.display(),
        stored,
        "the store quota's byte counter is implausible (damaged?); recounting the records"
    );
    rebuild_quota_accounting(trees)
}

/// Schema 1 → 2: drops the time-index entries (in bounded batches), then records version 2.
pub(crate) fn migrate_v1(trees: &Trees) -> std::result::Result<(), sled::Error> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        for item in trees.data.scan_prefix(keys::time_prefix()).take(MIGRATION_BATCH) {
            let (k, _) = item?;
            batch.remove(k);
            n += 1;
        }
        if n == 0 {
            break;
        }
        trees.data.apply_batch(batch)?;
    }
    trees.meta.insert(META_SCHEMA, &2u32.to_be_bytes())?;
    trees.db.flush()?;
    Ok(())
}

/// Schema 3 → 4: the counters of records ever stored (the store manifest's figures) start
/// at the records stored now, then records version 4.
pub(crate) fn migrate_v3(trees: &Trees) -> std::result::Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    for kind in RecordKind::ALL {
        let now = trees.data.get(count_key(kind))?.map(|v| u64_value(&v)).unwrap_or(0);
        batch.insert(stored_ever_key(kind), &now.to_be_bytes());
    }
    trees.data.apply_batch(batch)?;
    trees.meta.insert(META_SCHEMA, &4u32.to_be_bytes())?;
    trees.db.flush()?;
    Ok(())
}
