//! The drop ledger: a bounded ring buffer of every drop, throttle, penalty, disconnect and ban,
//! which the admin API pages through by sequence number.
//!
//! Under a flood the same (peer, action, reason) repeats thousands of times a second; storing
//! each would push every other entry out within moments. Consecutive identical entries within
//! [`FOLD_WINDOW_MS`] are therefore folded into the newest entry (its `count` grows, its `seq`
//! stays), so the ledger keeps a readable history while the counters keep exact totals.
//! Appending never allocates: the buffer is allocated once at its full capacity.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::IpAddr;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// Identical consecutive entries closer together than this are folded into one.
pub const FOLD_WINDOW_MS: u64 = 1000;

/// What the guard did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// A message or record was dropped.
    Dropped,
    /// A connection was refused.
    Denied,
    /// Reads or writes were slowed down by the bandwidth throttle.
    Throttled,
    /// A peer's score was lowered.
    Penalized,
    /// A peer's connections were closed.
    Disconnected,
    /// A peer or IP was banned.
    Banned,
    /// A ban was lifted or expired.
    Unbanned,
}

impl Action {
    /// snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Dropped => "dropped",
            Action::Denied => "denied",
            Action::Throttled => "throttled",
            Action::Penalized => "penalized",
            Action::Disconnected => "disconnected",
            Action::Banned => "banned",
            Action::Unbanned => "unbanned",
        }
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Position in the ledger; strictly increasing, never reused (survives wrap-around).
    pub seq: u64,
    /// When it happened (ms since the Unix epoch); for folded entries, the latest occurrence.
    pub time_ms: u64,
    /// For folded entries, the first occurrence (equals `time_ms` when `count == 1`): how
    /// fast a flood was met shows here.
    #[serde(default)]
    pub first_time_ms: u64,
    /// The peer, if known.
    #[serde(with = "opt_peer")]
    pub peer: Option<PeerId>,
    /// The remote IP, if known.
    pub ip: Option<IpAddr>,
    /// What was done.
    pub action: Action,
    /// Why: a [`crate::DropReason`] or [`crate::PenaltyReason`] name, or a ban cause.
    pub reason: Cow<'static, str>,
    /// Occurrences folded into this entry (>= 1).
    pub count: u64,
    /// Free text for rare events (an operator's ban reason), `None` on the hot path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

mod opt_peer {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &Option<PeerId>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&p.to_base58()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PeerId>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| s.parse::<PeerId>().map_err(serde::de::Error::custom)).transpose()
    }
}

/// The ring buffer.
#[derive(Debug)]
pub(crate) struct Ledger {
    entries: VecDeque<LedgerEntry>,
    capacity: usize,
    next_seq: u64,
}

impl Ledger {
    pub(crate) fn new(capacity: usize) -> Ledger {
        let capacity = capacity.max(1);
        Ledger { entries: VecDeque::with_capacity(capacity), capacity, next_seq: 1 }
    }

    /// Appends (or folds) an entry; returns whether the oldest entry was overwritten.
    pub(crate) fn push(
        &mut self,
        time_ms: u64,
        peer: Option<PeerId>,
        ip: Option<IpAddr>,
        action: Action,
        reason: Cow<'static, str>,
        detail: Option<String>,
    ) -> bool {
        if detail.is_none() {
            if let Some(last) = self.entries.back_mut() {
                if last.peer == peer
                    && last.ip == ip
                    && last.action == action
                    && last.reason == reason
                    && last.detail.is_none()
                    && time_ms.saturating_sub(last.time_ms) < FOLD_WINDOW_MS
                {
                    last.count = last.count.saturating_add(1);
                    last.time_ms = time_ms.max(last.time_ms);
                    return false;
                }
            }
        }
        let overwritten = self.entries.len() >= self.capacity;
        if overwritten {
            self.entries.pop_front();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(LedgerEntry {
            seq,
            time_ms,
            first_time_ms: time_ms,
            peer,
            ip,
            action,
            reason,
            count: 1,
            detail,
        });
        overwritten
    }

    /// Entries with `seq > after_seq`, oldest first, at most `limit`.
    pub(crate) fn page(&self, after_seq: Option<u64>, limit: usize) -> Vec<LedgerEntry> {
        let after = after_seq.unwrap_or(0);
        // Entries are in seq order: skip the older part by binary search, not a scan.
        let start = self.entries.partition_point(|e| e.seq <= after);
        self.entries.iter().skip(start).take(limit).cloned().collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_ordered_and_folded() {
        let mut l = Ledger::new(4);
        let p = PeerId::random();
        for i in 0..10u64 {
            // Distinct reasons so nothing folds.
            l.push(i, Some(p), None, Action::Dropped, Cow::Owned(format!("r{i}")), None);
        }
        assert_eq!(l.len(), 4);
        let all = l.page(None, 100);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert_eq!(l.page(Some(8), 100).iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(l.page(Some(8), 1).len(), 1);
        assert!(l.page(Some(10), 10).is_empty());

        // Identical entries within the fold window fold; outside it they do not.
        l.push(1000, Some(p), None, Action::Dropped, Cow::Borrowed("x"), None);
        l.push(1500, Some(p), None, Action::Dropped, Cow::Borrowed("x"), None);
        l.push(1900, Some(p), None, Action::Dropped, Cow::Borrowed("x"), None);
        let last = l.page(Some(10), 10);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].count, 3);
        l.push(3000, Some(p), None, Action::Dropped, Cow::Borrowed("x"), None);
        assert_eq!(l.page(Some(10), 10).len(), 2);

        let json = serde_json::to_string(&last[0]).unwrap();
        let back: LedgerEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, last[0]);
    }
}
