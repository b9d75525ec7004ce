//! Reads by id, by feed and by anomaly: the lookups sync, queries and the API use.

use super::*;

impl Store {
    /// Whether a record is stored. One point lookup: the dedup check behind the seen-cache.
    pub fn contains(&self, id: &RecordId) -> Result<bool> {
        self.trees().data.contains_key(keys::record_key(id)).map_err(|e| self.io(e))
    }

    /// Whether the record `id`, which is `author`'s record at `seq`, is stored. Like
    /// [`contains`](Self::contains), but free of I/O when the author's feed head is in memory
    /// and shows `seq` beyond everything stored (the usual case for a new record): the id
    /// covers the author and seq, so no stored record can have it.
    pub fn contains_record(&self, id: &RecordId, author: &AuthorKey, seq: u64) -> Result<bool> {
        match self.cached_head(author) {
            Some(c) if seq > c.head.max_seq => Ok(false),
            _ => self.contains(id),
        }
    }

    /// Record ids stored at (author, seq): normally zero or one, more after equivocation.
    pub fn ids_at(&self, author: &AuthorKey, seq: u64) -> Result<Vec<RecordId>> {
        let mut out = Vec::new();
        for item in self.trees().data.scan_prefix(keys::author_seq_prefix(author, seq)) {
            let (k, _) = item.map_err(|e| self.io(e))?;
            out.push(
                keys::trailing_id(&k).ok_or_else(|| StoreError::corrupt("data", &k, "short index key"))?,
            );
        }
        Ok(out)
    }

    /// Gets a record by id.
    pub fn get(&self, id: &RecordId) -> Result<Option<StoredRecord>> {
        match self.record_by_id_raw(id)? {
            Some((meta, record)) => self.stored(meta, record).map(Some),
            None => Ok(None),
        }
    }

    /// The revocation of `record` by its own author, if any.
    pub(crate) fn revoked_by(&self, record: &VerifiedRecord) -> Result<Option<RecordId>> {
        for item in self.trees().data.scan_prefix(keys::revocation_prefix(&record.id())) {
            let (k, v) = item.map_err(|e| self.io(e))?;
            if v.as_ref() == record.author().as_bytes().as_slice() {
                return Ok(keys::trailing_id(&k));
            }
        }
        Ok(None)
    }

    /// The feed head of one author (from memory when it was written recently).
    pub fn feed_head(&self, author: &AuthorKey) -> Result<Option<FeedHead>> {
        if let Some(c) = self.cached_head(author) {
            return Ok(Some(c.head));
        }
        self.get_decoded(&keys::feed_key(author), "feed head")
    }

    /// Entries of one key space after `after` (a key suffix), at most `limit`.
    pub(crate) fn space_page(
        &self,
        space: u8,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(keys::spaced(space, a)),
            None => std::ops::Bound::Included(vec![space]),
        };
        let end = std::ops::Bound::Excluded(vec![space + 1]);
        let mut out = Vec::new();
        for item in self.trees().data.range::<Vec<u8>, _>((start, end)).take(limit) {
            out.push(item.map_err(|e| self.io(e))?);
        }
        Ok(out)
    }

    /// Feed heads in author order, starting after `after`, at most `limit`. Sync pages
    /// through this.
    pub fn feed_heads(&self, after: Option<&AuthorKey>, limit: usize) -> Result<Vec<(AuthorKey, FeedHead)>> {
        let mut out = Vec::new();
        for (k, v) in self.space_page(keys::SPACE_FEED, after.map(|a| a.as_bytes().as_slice()), limit)? {
            let author: [u8; 32] = k
                .get(1..)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::corrupt("data", &k, "feed key is not 32 bytes"))?;
            let head =
                decode_exact(&v, "feed head").map_err(|e| StoreError::corrupt("data", &k, e.to_string()))?;
            out.push((AuthorKey(author), head));
        }
        Ok(out)
    }

    /// Visits the feed heads of the authors `a` with `after < a <= upto` (`None`: unbounded)
    /// in author order, until `visit` returns false. Sync/2's range fingerprints scan through
    /// this without collecting the heads.
    pub fn scan_feed_heads(
        &self,
        after: Option<&AuthorKey>,
        upto: Option<&AuthorKey>,
        mut visit: impl FnMut(AuthorKey, FeedHead) -> bool,
    ) -> Result<()> {
        if let (Some(a), Some(u)) = (after, upto) {
            if a >= u {
                return Ok(()); // an empty range (sled would be asked for start > end)
            }
        }
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(keys::feed_key(a)),
            None => std::ops::Bound::Included(vec![keys::SPACE_FEED]),
        };
        let end = match upto {
            Some(a) => std::ops::Bound::Included(keys::feed_key(a)),
            None => std::ops::Bound::Excluded(vec![keys::SPACE_FEED + 1]),
        };
        for item in self.trees().data.range::<Vec<u8>, _>((start, end)) {
            let (k, v) = item.map_err(|e| self.io(e))?;
            let author: [u8; 32] = k
                .get(1..)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::corrupt("data", &k, "feed key is not 32 bytes"))?;
            let head: FeedHead =
                decode_exact(&v, "feed head").map_err(|e| StoreError::corrupt("data", &k, e.to_string()))?;
            if !visit(AuthorKey(author), head) {
                break;
            }
        }
        Ok(())
    }

    /// Number of authors with at least one stored record.
    pub fn author_count(&self) -> usize {
        self.get_raw(&authors_key()).ok().flatten().map(|v| u64_value(&v) as usize).unwrap_or(0)
    }

    /// Records of `author` with `from_seq <= seq <= to_seq`, in seq order, stopping after
    /// `max_records` records or once `max_bytes` of envelopes are collected (at least one
    /// record is returned if any exists). Sync serves pages from this.
    pub fn feed_range(
        &self,
        author: &AuthorKey,
        from_seq: u64,
        to_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<VerifiedRecord>> {
        let start = keys::author_seq_prefix(author, from_seq);
        let end = match to_seq.checked_add(1) {
            Some(s) => keys::author_seq_prefix(author, s),
            None => keys::prefix_successor(&keys::author_prefix(author)).unwrap_or_default(),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.trees().data.range(start..end) {
            if out.len() >= max_records {
                break;
            }
            let (k, _) = item.map_err(|e| self.io(e))?;
            let id =
                keys::trailing_id(&k).ok_or_else(|| StoreError::corrupt("data", &k, "short index key"))?;
            let Some((_, record)) = self.record_by_id_raw(&id)? else { continue };
            bytes += record.wire_bytes().len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(record);
        }
        Ok(out)
    }

    /// Up to `limit` records in id order after `after` (from the first without), as (id,
    /// envelope bytes): the backup's scan of the record space.
    pub fn record_wires_after(
        &self,
        after: Option<&[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<(RecordId, Vec<u8>)>> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for (k, v) in self.space_page(keys::SPACE_RECORD, after.map(|a| &a[..]), limit)? {
            let id =
                keys::trailing_id(&k).ok_or_else(|| StoreError::corrupt("data", &k, "short record key"))?;
            // Copied, not decoded: a restore verifies every envelope anyway.
            let (_, wire) = crate::values::split_record_value(&id, &v)?;
            out.push((id, wire.to_vec()));
        }
        Ok(out)
    }

    /// The latest record of `author`'s feed as (seq, id): where a [`FeedWriter`] resumes.
    ///
    /// [`FeedWriter`]: palisade_types::FeedWriter
    pub fn latest_in_feed(&self, author: &AuthorKey) -> Result<Option<(u64, RecordId)>> {
        match self.trees().data.scan_prefix(keys::author_prefix(author)).next_back() {
            Some(item) => {
                let (k, _) = item.map_err(|e| self.io(e))?;
                let corrupt = || StoreError::corrupt("data", &k, "short index key");
                let seq = keys::author_key_seq(&k).ok_or_else(corrupt)?;
                let id = keys::trailing_id(&k).ok_or_else(corrupt)?;
                Ok(Some((seq, id)))
            }
            None => Ok(None),
        }
    }

    /// Stored equivocation proofs, in (author, seq) order, after `after`, at most `limit`.
    pub fn equivocations(
        &self,
        after: Option<(AuthorKey, u64)>,
        limit: usize,
    ) -> Result<Vec<EquivocationProof>> {
        let after = after.map(|(a, s)| {
            let mut k = a.as_bytes().to_vec();
            k.extend_from_slice(&s.to_be_bytes());
            k
        });
        let mut out = Vec::new();
        for (k, v) in self.space_page(keys::SPACE_EQUIVOCATION, after.as_deref(), limit)? {
            out.push(
                decode_exact(&v, "equivocation proof")
                    .map_err(|e| StoreError::corrupt("data", &k, e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// Whether `author` has been caught equivocating.
    pub fn is_flagged(&self, author: &AuthorKey) -> Result<bool> {
        let prefix = keys::spaced(keys::SPACE_EQUIVOCATION, author.as_bytes());
        Ok(self.trees().data.scan_prefix(prefix).next().transpose().map_err(|e| self.io(e))?.is_some())
    }

    /// Stored record counts by kind.
    pub fn record_counts(&self) -> Result<BTreeMap<RecordKind, u64>> {
        let mut out = BTreeMap::new();
        for kind in RecordKind::ALL {
            let n = self.get_raw(&count_key(kind))?.map(|v| u64_value(&v)).unwrap_or(0);
            out.insert(kind, n);
        }
        Ok(out)
    }

    /// Total stored records.
    pub fn record_count(&self) -> usize {
        self.record_counts()
            .map(|c| c.values().fold(0u64, |sum, n| sum.saturating_add(*n)))
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .unwrap_or(0)
    }

    /// The folded state of one anomaly.
    pub fn anomaly_status(&self, fingerprint: &Fingerprint) -> Result<Option<AnomalyStatus>> {
        self.get_decoded(&keys::anomaly_key(fingerprint), "anomaly status")
    }

    /// Anomaly states in fingerprint order after `after`, optionally only those in `state`,
    /// at most `limit`, scanning at most [`QUERY_SCAN_BUDGET`] entries. Returns the last
    /// fingerprint scanned when the scan stopped early (the cursor of the next page).
    pub fn anomaly_statuses(
        &self,
        state: Option<AnomalyState>,
        after: Option<&Fingerprint>,
        limit: usize,
    ) -> Result<(Vec<AnomalyStatus>, Option<Fingerprint>)> {
        let page =
            self.space_page(keys::SPACE_ANOMALY, after.map(|f| f.as_bytes().as_slice()), QUERY_SCAN_BUDGET)?;
        let mut out = Vec::new();
        let mut last = None;
        let scanned = page.len();
        for (k, v) in page {
            if out.len() >= limit {
                return Ok((out, last));
            }
            let status: AnomalyStatus = decode_exact(&v, "anomaly status")
                .map_err(|e| StoreError::corrupt("data", &k, e.to_string()))?;
            last = Some(status.fingerprint);
            if state.is_none_or(|s| s == status.state) {
                out.push(status);
            }
        }
        Ok((out, if scanned >= QUERY_SCAN_BUDGET { last } else { None }))
    }
}
