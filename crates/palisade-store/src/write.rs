//! The write path: one atomic batch per group of records with every index entry, feed head,
//! equivocation proof, anomaly state and counter it changes, checked against the disk's flood
//! stage first.

use super::*;
use crate::values::Refusal;
use palisade_types::FeedPosition;

/// State read and written while one group of records is inserted: reads see the group's own
/// earlier writes before they hit the tree.
#[derive(Default)]
struct Overlay {
    new_ids: HashSet<RecordId>,
    at: HashMap<(AuthorKey, u64), Vec<RecordId>>,
    heads: HashMap<AuthorKey, CachedHead>,
    anomalies: HashMap<Fingerprint, AnomalyStatus>,
    fp_events: HashMap<Fingerprint, Vec<(AnomalyEvent, bool)>>,
    counts: HashMap<RecordKind, u64>,
    new_authors: u64,
    proofs: HashSet<(AuthorKey, u64)>,
    /// Bytes the group adds against the quota.
    added_bytes: u64,
    /// The quota is full: records of unprotected authors are refused.
    refuse_unprotected: bool,
    /// The store's own author (read only when the quota needs it).
    own: Option<AuthorKey>,
}

impl Store {
    /// Stores a verified record with its indexes, feed head and anomaly state, atomically.
    /// Idempotent: storing the same id again returns [`InsertOutcome::Duplicate`]. Detects
    /// equivocation (same author and seq, different id): both are kept and a proof stored.
    ///
    /// Not durable until [`flush`](Self::flush).
    pub fn insert(&self, record: &VerifiedRecord, meta: StoredMeta) -> Result<InsertOutcome> {
        let mut out = self.insert_many(&[(record, meta)])?;
        out.pop().ok_or_else(|| StoreError::corrupt("data", record.id().as_bytes(), "empty insert result"))
    }

    /// Stores a group of records in one atomic batch (all or nothing), with the same checks
    /// and outcomes as [`insert`](Self::insert) for each, in order. The ingest pipeline's store
    /// thread writes whatever it has queued this way: one batch costs about as much as a
    /// single insert plus the per-record key writes.
    pub fn insert_many(&self, items: &[(&VerifiedRecord, StoredMeta)]) -> Result<Vec<InsertOutcome>> {
        self.check_disk_room()?;
        let _guard = self.inner.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut ov = Overlay::default();
        if self.inner.retention.over_quota() {
            ov.refuse_unprotected = true;
            ov.own = self.own_author()?;
        }
        let mut batch = sled::Batch::default();
        let mut outcomes = Vec::with_capacity(items.len());
        for (record, meta) in items {
            outcomes.push(self.stage(&mut ov, &mut batch, record, *meta)?);
        }
        let mut stored_ever = Vec::with_capacity(ov.counts.len());
        for (kind, added) in &ov.counts {
            let key = count_key(*kind);
            let now = self.get_raw(&key)?.map(|v| u64_value(&v)).unwrap_or(0);
            batch.insert(key, &now.saturating_add(*added).to_be_bytes());
            // The manifest's counter: only ever grows (evictions leave it).
            let ever = self.stored_ever(*kind).saturating_add(*added);
            batch.insert(stored_ever_key(*kind), &ever.to_be_bytes());
            stored_ever.push((*kind, ever));
        }
        if ov.new_authors > 0 {
            let key = authors_key();
            let now = self.get_raw(&key)?.map(|v| u64_value(&v)).unwrap_or(0);
            batch.insert(key, &now.saturating_add(ov.new_authors).to_be_bytes());
        }
        let bytes = self.inner.retention.bytes().saturating_add(ov.added_bytes);
        if ov.added_bytes > 0 {
            batch.insert(retention::bytes_key(), &bytes.to_be_bytes());
        }
        self.apply(TreeName::Data, batch, ov.added_bytes)?;
        self.inner.retention.set_bytes(bytes);
        for (kind, ever) in stored_ever {
            self.set_stored_ever(kind, ever);
        }
        {
            let mut cache = lock(&self.inner.heads);
            if cache.len() + ov.heads.len() > HEAD_CACHE_ENTRIES {
                cache.clear();
            }
            cache.extend(ov.heads);
        }
        if self.inner.retention.over_quota() && !self.inner.retention.known_full() {
            // The group is stored whatever eviction does; its failure is retried by the next
            // writer and the retention thread. A quota known to be full (the last pass found
            // nothing to evict) is left to the retention thread's timer, so writers of
            // protected records do not each pay a scan that finds nothing.
            let budget = items.len().saturating_mul(2).saturating_add(retention::EVICTION_BATCH_RECORDS);
            if let Err(e) = self.evict_locked(budget) {
                tracing::warn!(error = %e, "store quota: eviction failed; retried on the next write");
            }
        }
        Ok(outcomes)
    }

    /// Counts a refusal and returns its outcome.
    fn refuse(&self, why: Refusal) -> InsertOutcome {
        self.inner.retention.refused(why);
        InsertOutcome::Refused(why)
    }

    /// Checks one record against stored and staged state and adds its writes to `batch`.
    fn stage(
        &self,
        ov: &mut Overlay,
        batch: &mut sled::Batch,
        record: &VerifiedRecord,
        meta: StoredMeta,
    ) -> Result<InsertOutcome> {
        let id = record.id();
        let pos = &record.record().position;
        let author = pos.author;
        if ov.refuse_unprotected
            && meta.source != Source::Local
            && !self.is_protected(&author, ov.own.as_ref())
        {
            return Ok(self.refuse(Refusal::QuotaFull));
        }
        // The author's head (staged, cached or stored) decides how much must be looked up:
        // a record beyond the highest stored seq cannot be stored yet and has no rival at
        // its seq, and its `prev` is checked against the cached tip.
        let current = self.current_head(ov, &author)?;
        let beyond = current.is_none_or(|c| pos.seq > c.head.max_seq);
        if !beyond && (ov.new_ids.contains(&id) || self.contains(&id)?) {
            return Ok(InsertOutcome::Duplicate);
        }

        // Equivocation: another record at (author, seq)?
        let same_seq = if beyond { Vec::new() } else { self.staged_ids_at(ov, &author, pos.seq)? };
        // A seq the quota evicted is not stored again: nothing is left there to be a duplicate
        // of or to prove a fork with (one read, only for gap fills below the head).
        if !beyond
            && same_seq.is_empty()
            && self.eviction_marker(&author)?.is_some_and(|m| pos.seq <= m.through_seq)
            && !self.is_protected(&author, self.own_author()?.as_ref())
        {
            return Ok(self.refuse(Refusal::Evicted));
        }
        let equivocation = same_seq.first().map(|first| EquivocationProof {
            author,
            seq: pos.seq,
            first: *first,
            second: id,
            detected_at_ms: meta.received_at_ms,
        });
        if let Some(proof) = &equivocation {
            self.stage_proof(ov, batch, proof)?;
        }
        let prev_mismatch = self.prev_mismatch(ov, current, pos)?;
        ov.at.entry((author, pos.seq)).or_insert(same_seq).push(id);
        ov.new_ids.insert(id);
        let feed_head = self.advance_head(ov, current, pos, id)?;
        batch.insert(keys::feed_key(&author), encode(&feed_head));
        self.stage_record(ov, batch, record, meta)?;
        Ok(InsertOutcome::Inserted(Inserted { feed_head, equivocation, prev_mismatch }))
    }

    /// The author's feed head as this group sees it: staged, cached or stored.
    fn current_head(&self, ov: &Overlay, author: &AuthorKey) -> Result<Option<CachedHead>> {
        if let Some(c) = ov.heads.get(author) {
            return Ok(Some(*c));
        }
        if let Some(c) = self.cached_head(author) {
            return Ok(Some(c));
        }
        Ok(self.feed_head(author)?.map(|head| CachedHead { head, tip: None }))
    }

    /// Stages the equivocation proof once per (author, seq).
    fn stage_proof(
        &self,
        ov: &mut Overlay,
        batch: &mut sled::Batch,
        proof: &EquivocationProof,
    ) -> Result<()> {
        let key = keys::equivocation_key(&proof.author, proof.seq);
        if !ov.proofs.contains(&(proof.author, proof.seq)) && self.get_raw(&key)?.is_none() {
            batch.insert(key, encode(proof));
            ov.proofs.insert((proof.author, proof.seq));
        }
        Ok(())
    }

    /// Whether the record's `prev` names another record than the one stored at seq − 1.
    fn prev_mismatch(&self, ov: &Overlay, current: Option<CachedHead>, pos: &FeedPosition) -> Result<bool> {
        let (Some(prev_seq), Some(prev)) = (pos.seq.checked_sub(1), pos.prev) else { return Ok(false) };
        if prev_seq < 1 {
            return Ok(false);
        }
        Ok(match current {
            Some(CachedHead { head, tip: Some(tip) }) if head.max_seq == prev_seq => tip != prev,
            _ => {
                let stored = self.staged_ids_at(ov, &pos.author, prev_seq)?;
                !stored.is_empty() && !stored.contains(&prev)
            }
        })
    }

    /// The author's feed head with the record `id` at `pos` added: the contiguous prefix
    /// advances through any records that were waiting. Kept in the overlay for the group.
    fn advance_head(
        &self,
        ov: &mut Overlay,
        current: Option<CachedHead>,
        pos: &FeedPosition,
        id: RecordId,
    ) -> Result<FeedHead> {
        let (mut head, old_tip) = match current {
            Some(c) => (c.head, c.tip),
            None => {
                ov.new_authors += 1;
                (FeedHead::default(), None)
            }
        };
        let tip = match pos.seq.cmp(&head.max_seq) {
            std::cmp::Ordering::Greater => Some(id),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Less => old_tip,
        };
        // Counters read back from disk may be corrupt (u64::MAX): saturate, never overflow.
        head.records = head.records.saturating_add(1);
        head.max_seq = head.max_seq.max(pos.seq);
        if head.contiguous_seq.checked_add(1) == Some(pos.seq) {
            head.contiguous_seq = pos.seq;
            while head.contiguous_seq < head.max_seq
                && !self.staged_ids_at(ov, &pos.author, head.contiguous_seq + 1)?.is_empty()
            {
                head.contiguous_seq += 1;
            }
        }
        ov.heads.insert(pos.author, CachedHead { head, tip });
        Ok(head)
    }

    /// Stages the record itself, its index entries, its anomaly status and its counters.
    fn stage_record(
        &self,
        ov: &mut Overlay,
        batch: &mut sled::Batch,
        record: &VerifiedRecord,
        meta: StoredMeta,
    ) -> Result<()> {
        if let Some(status) = self.next_anomaly_status(ov, record)? {
            batch.insert(keys::anomaly_key(&status.fingerprint), encode(&status));
            ov.anomalies.insert(status.fingerprint, status);
        }
        let entries = index_entries(record);
        ov.added_bytes =
            ov.added_bytes.saturating_add(retention::cost_of(&entries, record.wire_bytes().len()));
        for (k, v) in entries {
            batch.insert(k, v);
        }
        let id = record.id();
        batch.insert(keys::received_key(meta.received_at_ms, &id), Vec::new());
        batch.insert(keys::record_key(&id), encode_record_value(meta, record.wire_bytes()));
        *ov.counts.entry(record.kind()).or_default() += 1;
        Ok(())
    }

    fn staged_ids_at(&self, ov: &Overlay, author: &AuthorKey, seq: u64) -> Result<Vec<RecordId>> {
        match ov.at.get(&(*author, seq)) {
            Some(ids) => Ok(ids.clone()),
            None => self.ids_at(author, seq),
        }
    }

    /// The new status of the anomaly `record` reports or updates, if it is one.
    fn next_anomaly_status(
        &self,
        ov: &mut Overlay,
        record: &VerifiedRecord,
    ) -> Result<Option<AnomalyStatus>> {
        let (fingerprint, state, is_report) = match &record.record().statement {
            Statement::Anomaly(a) => (a.fingerprint(), AnomalyState::Open, true),
            Statement::AnomalyUpdate(u) => (u.fingerprint, u.state, false),
            _ => return Ok(None),
        };
        let t = record.record().position.issued_at_ms;
        let id = record.id();
        let event = AnomalyEvent { issued_at_ms: t, id, state };
        let current = match ov.anomalies.get(&fingerprint) {
            Some(s) => Some(*s),
            None => self.anomaly_status(&fingerprint)?,
        };
        let status = match current {
            None => AnomalyStatus {
                fingerprint,
                state,
                latest_report: is_report.then_some(id),
                events: 1,
                last_event_ms: t,
                last_event_id: id,
            },
            // The common case: the event is newer than everything folded so far.
            Some(cur) if (t, id) > (cur.last_event_ms, cur.last_event_id) => AnomalyStatus {
                state: if cur.state.can_become(state) { state } else { cur.state },
                latest_report: if is_report { Some(id) } else { cur.latest_report },
                events: cur.events.saturating_add(1),
                last_event_ms: t,
                last_event_id: id,
                ..cur
            },
            // Out of order: re-fold every event of this fingerprint (stored and staged).
            Some(cur) => {
                let mut events: Vec<(AnomalyEvent, bool)> = vec![(event, is_report)];
                events.extend(ov.fp_events.get(&fingerprint).into_iter().flatten().copied());
                let prefix = keys::fingerprint_prefix(&fingerprint);
                for item in self.trees().data.scan_prefix(&prefix).take(MAX_FOLD_EVENTS) {
                    let (k, v) = item.map_err(|e| self.io(e))?;
                    let corrupt = || StoreError::corrupt("data", &k, "bad anomaly index entry");
                    let ev_id = keys::trailing_id(&k).ok_or_else(corrupt)?;
                    let ev_t = k
                        .get(prefix.len()..prefix.len() + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(corrupt)?;
                    let (ev_state, ev_is_report) = match v.as_ref() {
                        [s, r] => (state_from_byte(*s).ok_or_else(corrupt)?, *r == 1),
                        _ => return Err(corrupt()),
                    };
                    events.push((
                        AnomalyEvent { issued_at_ms: ev_t, id: ev_id, state: ev_state },
                        ev_is_report,
                    ));
                }
                let latest_report = events
                    .iter()
                    .filter(|(_, r)| *r)
                    .map(|(e, _)| (e.issued_at_ms, e.id))
                    .max()
                    .map(|(_, id)| id);
                let last = events.iter().map(|(e, _)| (e.issued_at_ms, e.id)).max().unwrap_or((t, id));
                let mut plain: Vec<AnomalyEvent> = events.iter().map(|(e, _)| *e).collect();
                let folded = palisade_types::fold_anomaly_state(&mut plain).unwrap_or(state);
                AnomalyStatus {
                    fingerprint,
                    state: folded,
                    latest_report,
                    events: cur.events.saturating_add(1),
                    last_event_ms: last.0,
                    last_event_id: last.1,
                }
            }
        };
        ov.fp_events.entry(fingerprint).or_default().push((event, is_report));
        Ok(Some(status))
    }
}

/// Every index entry of a record.
pub(crate) fn index_entries(record: &VerifiedRecord) -> Vec<(Vec<u8>, Vec<u8>)> {
    let r = record.record();
    let id = record.id();
    let t = r.position.issued_at_ms;
    let mut out = vec![
        (keys::author_seq(&r.position.author, r.position.seq, &id), Vec::new()),
        (keys::timed(&keys::kind_prefix(r.kind()), t, &id), Vec::new()),
    ];
    match &r.statement {
        Statement::Attestation(a) => {
            for d in a.subject.digests.iter() {
                out.push((keys::timed(&keys::subject_prefix(d), t, &id), Vec::new()));
            }
        }
        Statement::Anomaly(a) => {
            out.push((
                keys::timed(&keys::fingerprint_prefix(&a.fingerprint()), t, &id),
                vec![state_to_byte(AnomalyState::Open), 1],
            ));
            out.push((keys::timed(&keys::source_prefix(&a.source), t, &id), Vec::new()));
        }
        Statement::AnomalyUpdate(u) => {
            out.push((
                keys::timed(&keys::fingerprint_prefix(&u.fingerprint), t, &id),
                vec![state_to_byte(u.state), 0],
            ));
        }
        Statement::Revocation(rv) => {
            let mut k = keys::revocation_prefix(&rv.target);
            k.extend_from_slice(id.as_bytes());
            out.push((k, r.position.author.as_bytes().to_vec()));
        }
    }
    out
}
