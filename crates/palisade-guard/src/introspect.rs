//! Layer 6: the audit trail and live limits (ledger, counters, limits get/set, events,
//! housekeeping, tracker sizes).

#![allow(clippy::wildcard_imports)]
use super::*;

impl Guard {
    // ---- layer 6: audit and live limits ----

    /// Ledger entries with `seq > after_seq`, oldest first, at most `limit` (capped at
    /// [`MAX_LEDGER_PAGE`]).
    pub fn ledger(&self, after_seq: Option<u64>, limit: usize) -> Vec<LedgerEntry> {
        lock(&self.inner.ledger).page(after_seq, limit.min(MAX_LEDGER_PAGE))
    }

    /// Totals by action and reason, e.g. `dropped.peer_rate_exceeded`,
    /// `penalized.invalid_signature`, `banned.peer`, `throttled_bytes.inbound`. The same
    /// counters Prometheus exports.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let m = &self.inner.metrics;
        let mut out = BTreeMap::new();
        for (r, c) in DropReason::ALL.iter().zip(m.drops.iter()) {
            out.insert(format!("dropped.{}", r.as_str()), c.get());
        }
        for (r, c) in PenaltyReason::ALL.iter().zip(m.penalties.iter()) {
            out.insert(format!("penalized.{}", r.as_str()), c.get());
        }
        out.insert("banned.peer".into(), m.bans_peer.get());
        out.insert("banned.ip".into(), m.bans_ip.get());
        out.insert("unbanned".into(), m.unbans.get());
        out.insert("disconnected".into(), m.disconnects.get());
        out.insert("throttled_bytes.inbound".into(), m.throttled_in.get());
        out.insert("throttled_bytes.outbound".into(), m.throttled_out.get());
        out.insert("throttle_waits.inbound".into(), m.throttle_waits_in.get());
        out.insert("throttle_waits.outbound".into(), m.throttle_waits_out.get());
        out.insert("transferred_bytes.inbound".into(), m.bytes_in.get());
        out.insert("transferred_bytes.outbound".into(), m.bytes_out.get());
        out.insert("ban_store_errors".into(), m.store_errors.get());
        out.insert("ban_evictions".into(), m.ban_evictions.get());
        out.insert("ledger_overwritten".into(), m.ledger_overwritten.get());
        out
    }

    /// The limits in force.
    pub fn limits(&self) -> GuardConfig {
        read(&self.inner.config).clone()
    }

    /// Changes one limit at run time. `key` may carry the `limits.` prefix; `value` is text
    /// (numbers in decimal, lists comma-separated or as a JSON array). The whole config is
    /// re-validated; keys in [`RESTART_ONLY_KEYS`] are refused. Changing a rate resets that
    /// limiter's state (every key gets a fresh burst).
    pub fn set_limit(&self, key: &str, value: &str) -> Result<(), InvalidSetting> {
        let i = &*self.inner;
        let mut cfg = write(&i.config);
        let new = cfg.with_setting(key, value)?;
        let allowlist = new.allowlist()?;
        let allowlist_changed =
            cfg.allowlist_peers != new.allowlist_peers || cfg.allowlist_ips != new.allowlist_ips;
        i.has_allowlisted_peers.store(!allowlist.peers.is_empty(), Ordering::Relaxed);
        i.has_allowlisted_ips.store(!allowlist.nets.is_empty(), Ordering::Relaxed);
        *write(&i.allowlist) = allowlist;
        write(&i.limiters).update(&cfg, &new);
        i.throttle.rates.update(&new);
        i.max_message_bytes.store(new.max_message_bytes, Ordering::Relaxed);
        i.message_cost_units.store(new.message_cost_units, Ordering::Relaxed);
        i.verification_cost_units.store(new.verification_cost_units, Ordering::Relaxed);
        i.max_connections_per_ip.store(new.max_connections_per_ip, Ordering::Relaxed);
        i.max_connections_per_subnet.store(new.max_connections_per_subnet, Ordering::Relaxed);
        lock(&i.scores)
            .configure(usize_of(new.max_tracked_peers), Duration::from_secs(new.score_half_life_secs));
        write(&i.bans).set_max(usize_of(new.max_bans));
        tracing::info!(key, value, "limit changed");
        *cfg = new;
        drop(cfg);
        if allowlist_changed {
            // A peer or IP taken off the allowlist may be banned and connected: have the
            // behaviours re-check every connection (and close those a ban now applies to).
            i.allowlist_generation.fetch_add(1, Ordering::Relaxed);
            i.wake_behaviours();
        }
        Ok(())
    }

    /// Events for the network layer (bans, unbans, disconnects). Bounded: a receiver that
    /// falls [`EVENT_CHANNEL_CAPACITY`] events behind gets `Lagged` and should re-check its
    /// connections against [`Guard::is_banned_peer`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GuardEvent> {
        self.inner.events.subscribe()
    }

    /// Housekeeping, run every [`MAINTENANCE_INTERVAL`] by the behaviour: lifts expired bans
    /// (memory and store), drops idle limiter keys, decayed scores and dead throttle entries.
    pub fn maintain(&self) {
        let i = &*self.inner;
        let now = now_ms();
        let expired = {
            let mut bans = write(&i.bans);
            let e = bans.take_expired(now);
            i.sync_ban_gauges(&bans);
            e
        };
        for b in expired {
            if let Err(e) = i.unpersist_ban(&b.target) {
                tracing::warn!(target = %b.target, error = %e, "could not delete expired ban");
            }
            i.metrics.unbans.inc();
            let (peer, ip) = match b.target {
                BanTarget::Peer(p) => (Some(p), None),
                BanTarget::Ip(ip) => (None, Some(ip)),
            };
            i.ledger_push(peer, ip, Action::Unbanned, Cow::Borrowed("expired"), None);
            tracing::info!(target = %b.target, "ban expired");
            i.emit(GuardEvent::Unbanned { target: b.target });
        }
        {
            let l = read(&i.limiters);
            l.prune();
            for (name, keys, _, _) in l.all() {
                i.metrics.set_tracked(name, keys);
            }
        }
        let mut scores = lock(&i.scores);
        scores.prune(Instant::now());
        i.metrics.set_tracked("scores", scores.len());
        drop(scores);
        i.throttle.prune();
    }

    /// Sizes of the bounded maps (keys, caps, estimated memory), for the admin API and the
    /// benchmark.
    pub fn tracker_stats(&self) -> Vec<TrackerStats> {
        let mut out: Vec<TrackerStats> = read(&self.inner.limiters)
            .all()
            .into_iter()
            .map(|(map, keys, cap, memory_bytes)| TrackerStats { map, keys, cap, memory_bytes })
            .collect();
        let scores = lock(&self.inner.scores);
        out.push(TrackerStats {
            map: "scores",
            keys: scores.len(),
            cap: usize_of(read(&self.inner.config).max_tracked_peers),
            memory_bytes: scores.len()
                * (std::mem::size_of::<(PeerId, f64, Instant)>() + MAP_OVERHEAD_BYTES_PER_KEY),
        });
        out
    }
}
