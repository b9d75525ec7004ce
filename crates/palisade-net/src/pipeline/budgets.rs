//! [`PreVerify`]: the checks a record passes on a verify worker before its signature is
//! checked: already stored (a store lookup), then the budgets (the new-author budget needs to
//! know whether the author has records here: another lookup). They run here, not on the event
//! loop, because they read the store; they run before verification, so no signature is
//! checked for a duplicate or for a record over a budget.

use std::num::NonZeroU32;
use std::sync::Arc;

use palisade_guard::{Admission, DropReason, Guard};
use palisade_store::Store;
use palisade_types::{AuthorKey, ValidatedRecord};
use tracing::error;

use super::{Origin, PipelineConfig};
use crate::metrics::NetMetrics;
use crate::reason::Reason;

/// Shared by every verify worker (the budgets are node-wide or per peer, not per worker).
#[derive(Clone)]
pub(super) struct PreVerify {
    store: Store,
    guard: Guard,
    metrics: NetMetrics,
    /// Node-wide budget of records from authors with no stored records.
    new_authors: Arc<governor::DefaultDirectRateLimiter>,
}

impl PreVerify {
    pub(super) fn new(cfg: &PipelineConfig, store: Store, guard: Guard, metrics: NetMetrics) -> PreVerify {
        let quota =
            governor::Quota::per_second(NonZeroU32::new(cfg.new_authors_per_sec).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(cfg.new_authors_burst).unwrap_or(NonZeroU32::MIN));
        PreVerify { store, guard, metrics, new_authors: Arc::new(governor::RateLimiter::direct(quota)) }
    }

    /// Stored already, then the budgets; `Err` decides the record.
    pub(super) fn check(&self, record: &ValidatedRecord, origin: &Origin) -> Result<(), Reason> {
        self.check_not_stored(record)?;
        self.charge_budgets(&record.record().position.author, origin)
    }

    /// The store lookup by id, which needs no I/O when the author's feed head is cached and
    /// shows the seq as new.
    fn check_not_stored(&self, record: &ValidatedRecord) -> Result<(), Reason> {
        let position = &record.record().position;
        match self.store.contains_record(&record.id(), &position.author, position.seq) {
            Ok(true) => {
                self.metrics.duplicates_before_verify.inc();
                Err(Reason::Duplicate)
            }
            Ok(false) => Ok(()),
            Err(e) => {
                error!(error = %e, "store lookup failed during ingest");
                Err(Reason::StoreError)
            }
        }
    }

    /// The new-author budget, the peer's record rate, the author's quota and the cost of a
    /// signature check. Sync records of authors we already hold are exempt: they are the
    /// missed part of feeds we know, and throttling them would only stall catching up (the
    /// pages come back in the next round). Sync records of unknown authors pay like gossip,
    /// so a peer that advertises invented authors cannot make us verify at will. Records
    /// handed in through the admin API (import, this node's own) pay none of these: no peer
    /// sent them, and an administrator's file is not a flood.
    fn charge_budgets(&self, author: &AuthorKey, origin: &Origin) -> Result<(), Reason> {
        let Some(peer) = origin.peer() else { return Ok(()) };
        let pushed = origin.pushed_by().is_some();
        let known_author = matches!(self.store.feed_head(author), Ok(Some(_)));
        if pushed && !known_author && self.new_authors.check().is_err() {
            self.guard.record_drop(Some(&peer), None, DropReason::NewAuthorBudget);
            return Err(Reason::NewAuthorBudget);
        }
        if !pushed && known_author {
            return Ok(());
        }
        // A rate refusal is shed without a penalty: honest relays burst over their per-peer
        // budget after pauses and partitions, and the limit itself holds a flooder to its
        // budget. Only a pushing peer that stays over for longer than the grace pays
        // (`Guard::over_rate`): sync pages are what we asked for.
        let over_rate = |reason| {
            if pushed {
                self.guard.over_rate(&peer, reason);
            }
            Err(Reason::RateLimited)
        };
        match self.guard.admit_author(&peer, author) {
            Admission::Allow => {}
            // The peer's own record rate, not the author's quota.
            Admission::Deny(reason @ DropReason::PeerRecordRateExceeded) => return over_rate(reason),
            Admission::Deny(_) => return Err(Reason::AuthorQuota),
        }
        match self.guard.charge_verification(&peer) {
            Admission::Allow => Ok(()),
            Admission::Deny(reason) => over_rate(reason),
        }
    }
}
