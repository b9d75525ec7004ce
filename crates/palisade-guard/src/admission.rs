//! Layer 4: admitting messages, records and proofs before any decoding or signature work
//! (per-peer rates and cost budget, per-author quotas, over-rate strikes).

#![allow(clippy::wildcard_imports)]
use super::*;

impl Guard {
    // ---- layer 4: per message, per record ----

    /// Admits one gossip or sync message of `bytes` bytes from `peer`, before it is decoded:
    /// the size cap, then the peer's message rate, byte rate and cost budget
    /// (`message_cost_units`). O(1); allocation-free unless `peer` is new to the limiters.
    /// Allowlisted peers skip the rate checks, not the size cap.
    pub fn admit_message(&self, peer: &PeerId, bytes: usize) -> Admission {
        let i = &*self.inner;
        let max = i.max_message_bytes.load(Ordering::Relaxed);
        let Ok(bytes32) = u32::try_from(bytes) else { return i.deny_message(peer, DropReason::Oversized) };
        if bytes32 > max {
            return i.deny_message(peer, DropReason::Oversized);
        }
        if i.allowlisted_peer(peer) {
            return Admission::Allow;
        }
        if i.ban_count.load(Ordering::Relaxed) > 0 && self.is_banned_peer(peer) {
            return i.deny_message(peer, DropReason::BannedPeer);
        }
        // Checked in order and stopped at the first refusal, so a message refused for its
        // count does not also drain the byte and cost budgets.
        let l = read(&i.limiters);
        let cost = i.message_cost_units.load(Ordering::Relaxed);
        let refused = [
            (&l.peer_messages, 1, DropReason::PeerRateExceeded),
            (&l.peer_bytes, bytes32, DropReason::PeerByteRateExceeded),
            (&l.peer_cost, cost, DropReason::PeerCostExceeded),
        ]
        .into_iter()
        .find_map(|(limiter, n, reason)| match limiter.check(peer, n) {
            Check::Allowed => None,
            Check::Denied => Some(reason),
            Check::Full => Some(DropReason::TrackerFull),
        });
        drop(l);
        if let Some(reason) = refused {
            return i.deny_message(peer, reason);
        }
        Admission::Allow
    }

    /// Charges `peer`, just refused for `reason`, a `rate_exceeded` strike if `reason` is a
    /// per-peer rate and no strike was charged in the last [`RATE_STRIKE_INTERVAL`]: the
    /// penalty counts seconds spent over the limit, not messages. Only for traffic the peer
    /// chose to send, never for responses we asked for (sync pages). palisade-net does not
    /// call it: honest gossip relays burst over their per-peer budgets after pauses and
    /// partitions (the chaos soak showed strikes landing on honest peers), so there a rate
    /// refusal is shed without a penalty.
    pub fn strike_over_rate(&self, peer: &PeerId, reason: DropReason) -> PenaltyOutcome {
        if reason.penalty() != Some(PenaltyReason::RateExceeded) || !self.inner.rate_strike_due(peer) {
            return PenaltyOutcome::None;
        }
        self.penalize(peer, None, PenaltyReason::RateExceeded)
    }

    /// `peer` was just refused for `reason` on traffic it chose to send (gossip, not the sync
    /// pages we asked for). A peer refused for a per-peer rate (messages, bytes, cost units,
    /// records) without a break longer than [`OVER_RATE_RUN_GAP`] for more than
    /// `limits.over_rate_grace_secs` pays a `persistent_over_rate` penalty, which disconnects
    /// it; the run then starts again, so one that comes back and keeps at it is banned. A
    /// burst shorter than the grace costs nothing: the rate limit alone holds it.
    pub fn over_rate(&self, peer: &PeerId, reason: DropReason) -> PenaltyOutcome {
        if reason.penalty() != Some(PenaltyReason::RateExceeded) {
            return PenaltyOutcome::None;
        }
        let (grace, cap) = {
            let c = read(&self.inner.config);
            (Duration::from_secs(c.over_rate_grace_secs), usize_of(c.max_tracked_peers))
        };
        let now = Instant::now();
        let due = {
            let mut runs = lock(&self.inner.over_rate);
            if runs.len() >= cap && !runs.contains_key(peer) {
                runs.retain(|_, r| now.duration_since(r.last) <= OVER_RATE_RUN_GAP);
                if runs.len() >= cap {
                    return PenaltyOutcome::None;
                }
            }
            let run = runs.entry(*peer).or_insert(OverRateRun { since: now, last: now });
            if now.duration_since(run.last) > OVER_RATE_RUN_GAP {
                run.since = now;
            }
            run.last = now;
            let due = now.duration_since(run.since) > grace;
            if due {
                run.since = now;
            }
            due
        };
        if !due {
            return PenaltyOutcome::None;
        }
        self.penalize(peer, None, PenaltyReason::PersistentOverRate)
    }

    /// Admits one new (not duplicate) record by `author` relayed by `peer`, before its
    /// signature is checked. Both the peer's record rate and the author's quota apply, so a
    /// peer inventing fresh author keys is still capped by `peer_records_per_sec`; the peer
    /// check runs first so a Sybil flood does not even fill the author map. Allowlisted peers
    /// skip the per-peer check; the author quota applies to everyone.
    pub fn admit_author(&self, peer: &PeerId, author: &AuthorKey) -> Admission {
        let i = &*self.inner;
        let l = read(&i.limiters);
        if !i.allowlisted_peer(peer) {
            match l.peer_records.check(peer, 1) {
                Check::Allowed => {}
                Check::Denied => {
                    drop(l);
                    return i.deny_message(peer, DropReason::PeerRecordRateExceeded);
                }
                Check::Full => {
                    drop(l);
                    return i.deny_message(peer, DropReason::TrackerFull);
                }
            }
        }
        let author_check = l.authors.check(author, 1);
        drop(l);
        match author_check {
            Check::Allowed => Admission::Allow,
            Check::Denied => i.deny_message(peer, DropReason::AuthorQuotaExceeded),
            Check::Full => i.deny_message(peer, DropReason::TrackerFull),
        }
    }

    /// Admits one equivocation proof relayed by `peer` (`limits.peer_proofs_per_sec`), before
    /// its halves are decoded. Each half then passes the record checks like any gossiped
    /// record. Allowlisted peers skip it.
    pub fn admit_proof(&self, peer: &PeerId) -> Admission {
        self.inner.charge_peer(peer, DropReason::PeerProofRateExceeded, |l| l.peer_proofs.check(peer, 1))
    }

    /// Charges `peer` for one signature verification (`verification_cost_units` from its cost
    /// budget, on top of the `message_cost_units` every message pays), so a peer sending
    /// records that need verifying exhausts its budget ten times faster (by default) than one
    /// sending duplicates.
    pub fn charge_verification(&self, peer: &PeerId) -> Admission {
        let cost = self.inner.verification_cost_units.load(Ordering::Relaxed);
        self.inner.charge_peer(peer, DropReason::PeerCostExceeded, |l| l.peer_cost.check(peer, cost))
    }

    /// Counts and ledgers a drop that palisade-net decided (a full verify queue, a bad
    /// signature, ...), so every drop is in one audit trail.
    pub fn record_drop(&self, peer: Option<&PeerId>, ip: Option<IpAddr>, reason: DropReason) {
        let ip = ip.map(canonical_ip).or_else(|| peer.and_then(|p| self.inner.peer_ip(p)));
        self.inner.record(peer.copied(), ip, Action::Dropped, reason);
    }
}

impl Inner {
    /// One per-peer limiter check (`check` on the limiters), skipped for allowlisted peers;
    /// a refusal is ledgered as `denied` (or `tracker_full`).
    fn charge_peer(
        &self,
        peer: &PeerId,
        denied: DropReason,
        check: impl FnOnce(&Limiters) -> Check,
    ) -> Admission {
        if self.allowlisted_peer(peer) {
            return Admission::Allow;
        }
        let result = check(&read(&self.limiters));
        match result {
            Check::Allowed => Admission::Allow,
            Check::Denied => self.deny_message(peer, denied),
            Check::Full => self.deny_message(peer, DropReason::TrackerFull),
        }
    }
}
