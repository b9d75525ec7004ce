//! Layer 5: reputation and bans (penalties, bans and their persistence through the
//! node-state writer, unbans, per-peer state).

#![allow(clippy::wildcard_imports)]
use super::*;

impl Guard {
    // ---- layer 5: reputation and bans ----

    /// Lowers `peer`'s score by the reason's weight. Below `disconnect_score_points` the
    /// peer's connections are closed (a [`GuardEvent::Disconnect`]); below `ban_score_points`
    /// it is banned for `ban_duration_secs` (persisted), and if enough banned peers share its
    /// IP, the IP is banned too. Allowlisted peers and IPs are never penalised.
    pub fn penalize(&self, peer: &PeerId, addr_ip: Option<IpAddr>, reason: PenaltyReason) -> PenaltyOutcome {
        let i = &*self.inner;
        // The score remembers the IP too: a peer disconnected at the disconnect line (its
        // connection gone) is still banned with its IP, so the IP rule counts it.
        let ip =
            addr_ip.map(canonical_ip).or_else(|| i.peer_ip(peer)).or_else(|| lock(&i.scores).ip_of(peer));
        if i.allowlisted_peer(peer) || ip.is_some_and(|ip| i.allowlisted_ip(ip)) {
            return PenaltyOutcome::None;
        }
        let now = now_ms();
        if let Some(b) = read(&i.bans).get(&BanTarget::Peer(*peer), now) {
            // Already banned (its connections are closing): nothing more to do.
            return PenaltyOutcome::Ban { until_ms: b.until_ms };
        }
        i.metrics.penalty(reason);
        i.ledger_push(Some(*peer), ip, Action::Penalized, Cow::Borrowed(reason.as_str()), None);
        let (disconnect_at, ban_at, ban_secs) = {
            let c = read(&i.config);
            (f64::from(c.disconnect_score_points), f64::from(c.ban_score_points), c.ban_duration_secs)
        };
        let score = lock(&i.scores).add(*peer, -reason.weight_points(), Instant::now(), ip);
        // Thresholds are whole points; the tolerance keeps the microseconds of decay between
        // two back-to-back penalties from deciding the outcome.
        let score = score - SCORE_TOLERANCE_POINTS;
        if score <= ban_at {
            lock(&i.scores).reset(peer);
            let (until_ms, persisted) = self.ban_with(
                BanTarget::Peer(*peer),
                Duration::from_secs(ban_secs),
                BAN_CAUSE_SCORE,
                None,
                ip,
            );
            if let Err(e) = persisted {
                tracing::warn!(%peer, error = %e, "ban applied in memory but not persisted");
            }
            return PenaltyOutcome::Ban { until_ms };
        }
        if score <= disconnect_at {
            i.metrics.disconnects.inc();
            i.ledger_push(Some(*peer), ip, Action::Disconnected, Cow::Borrowed(reason.as_str()), None);
            i.emit(GuardEvent::Disconnect { peer: *peer, reason });
            return PenaltyOutcome::Disconnect;
        }
        PenaltyOutcome::None
    }

    /// Bans `target` for `duration` (at least 1 ms; durations past the year 292 million are
    /// treated as permanent), persists the ban (flushed before returning) and closes the
    /// target's connections. Allowlisted targets can still be banned manually, but the
    /// allowlist wins at connection time. An error means the ban applies now but was not
    /// persisted.
    pub fn ban(&self, target: BanTarget, duration: Duration, reason: &str) -> Result<(), GuardError> {
        if duration.is_zero() {
            return Err(GuardError::BadDuration { secs: 0 });
        }
        let target = match target {
            BanTarget::Ip(ip) => BanTarget::Ip(canonical_ip(ip)),
            t => t,
        };
        let detail = Some(reason.chars().take(256).collect::<String>());
        if let BanTarget::Peer(p) = &target {
            lock(&self.inner.scores).reset(p);
        }
        let (_, persisted) = self.ban_with(target, duration, BAN_CAUSE_MANUAL, detail, None);
        self.inner.wait_persisted(persisted?)
    }

    /// Applies a ban and queues it for persistence (without waiting: bans are decided on the
    /// network loop). Returns its end time and the ticket of the last queued change (or why
    /// it could not be queued: the ban still applies in memory).
    fn ban_with(
        &self,
        target: BanTarget,
        duration: Duration,
        cause: &'static str,
        detail: Option<String>,
        ip_hint: Option<IpAddr>,
    ) -> (u64, Result<Ticket, GuardError>) {
        let i = &*self.inner;
        let now = now_ms();
        let until_ms = u64::try_from(duration.as_millis())
            .ok()
            .and_then(|d| now.checked_add(d))
            .unwrap_or(PERMANENT_UNTIL_MS);
        let info = BanInfo {
            target,
            until_ms,
            created_ms: now,
            reason: detail.clone().unwrap_or_else(|| cause.to_string()),
        };
        let evicted = {
            let mut bans = write(&i.bans);
            let evicted = bans.insert(info.clone());
            i.sync_ban_gauges(&bans);
            evicted
        };
        let mut result = i.persist_ban(&info);
        if let Some(ev) = evicted {
            i.metrics.ban_evictions.inc();
            let removed = i.unpersist_ban(&ev.target);
            result = result.and(removed);
        }
        match target {
            BanTarget::Peer(_) => i.metrics.bans_peer.inc(),
            BanTarget::Ip(_) => i.metrics.bans_ip.inc(),
        };
        let (peer, ip) = match target {
            BanTarget::Peer(p) => (Some(p), ip_hint.or_else(|| i.peer_ip(&p))),
            BanTarget::Ip(ip) => (None, Some(ip)),
        };
        i.ledger_push(peer, ip, Action::Banned, Cow::Borrowed(cause), detail);
        tracing::info!(%target, until_ms, cause, "banned");
        i.emit(GuardEvent::Banned { target, until_ms, reason: info.reason.clone() });

        // The IP rule: enough peers banned at once for misbehaviour on one IP ban the IP
        // itself. Manual bans do not count: an admin names exactly what to ban (and can ban
        // the IP), and nodes behind one NAT, or on one host, share the address they dial from.
        if let (BanTarget::Peer(p), Some(ip), true) = (target, ip, cause == BAN_CAUSE_SCORE) {
            let (threshold, ban_secs) = {
                let c = read(&i.config);
                (c.ip_ban_after_banned_peers, c.ban_duration_secs)
            };
            if threshold > 0 && !i.allowlisted_ip(ip) {
                let n = write(&i.bans).note_banned_peer_ip(ip, p, until_ms, now);
                let already = read(&i.bans).get(&BanTarget::Ip(ip), now).is_some();
                if n >= usize_of(threshold) && !already {
                    let (_, ip_ban) = self.ban_with(
                        BanTarget::Ip(ip),
                        Duration::from_secs(ban_secs),
                        BAN_CAUSE_IP_THRESHOLD,
                        None,
                        None,
                    );
                    result = result.and(ip_ban);
                }
            }
        }
        (until_ms, result)
    }

    /// Lifts a ban (and forgets the peer's score). Returns whether there was one.
    pub fn unban(&self, target: &BanTarget) -> Result<bool, GuardError> {
        let i = &*self.inner;
        let target = match target {
            BanTarget::Ip(ip) => BanTarget::Ip(canonical_ip(*ip)),
            t => *t,
        };
        let in_memory = {
            let mut bans = write(&i.bans);
            let r = bans.remove(&target);
            i.sync_ban_gauges(&bans);
            r.is_some_and(|b| b.active(now_ms()))
        };
        if let BanTarget::Peer(p) = &target {
            lock(&i.scores).reset(p);
        }
        // Whether it was persisted: the store answers once the deletion is written.
        let stored =
            matches!(i.store.bans(), Ok(bans) if bans.iter().any(|b| b.target == target.to_string()));
        let ticket = i.unpersist_ban(&target)?;
        i.wait_persisted(ticket)?;
        if in_memory {
            i.metrics.unbans.inc();
            let (peer, ip) = match target {
                BanTarget::Peer(p) => (Some(p), None),
                BanTarget::Ip(ip) => (None, Some(ip)),
            };
            i.ledger_push(peer, ip, Action::Unbanned, Cow::Borrowed(BAN_CAUSE_MANUAL), None);
            i.emit(GuardEvent::Unbanned { target });
        }
        Ok(in_memory || stored)
    }

    /// The writer of node state (bans, peer book): queue changes without blocking.
    pub fn state_writer(&self) -> &StateWriter {
        &self.inner.state
    }

    /// Writes the queued ban and peer-book changes, flushes them and stops the writer
    /// thread (node shutdown, before the final store flush). Later changes apply in memory
    /// only.
    pub fn close_state_writer(&self) {
        self.inner.state.close();
    }

    /// Every ban in force.
    pub fn bans(&self) -> Vec<BanInfo> {
        read(&self.inner.bans).active(now_ms())
    }

    /// Whether `peer` is banned now (an expired ban never counts, even before it is pruned).
    pub fn is_banned_peer(&self, peer: &PeerId) -> bool {
        self.inner.ban_count.load(Ordering::Relaxed) > 0
            && read(&self.inner.bans).get(&BanTarget::Peer(*peer), now_ms()).is_some()
    }

    /// Whether `ip` is banned now.
    pub fn is_banned_ip(&self, ip: IpAddr) -> bool {
        self.inner.ban_count.load(Ordering::Relaxed) > 0
            && read(&self.inner.bans).get(&BanTarget::Ip(canonical_ip(ip)), now_ms()).is_some()
    }

    /// Whether `peer` is in `allowlist_peers`.
    pub fn is_allowlisted(&self, peer: &PeerId) -> bool {
        self.inner.allowlisted_peer(peer)
    }

    /// Whether `ip` is in `allowlist_ips`.
    pub fn is_allowlisted_ip(&self, ip: IpAddr) -> bool {
        self.inner.allowlisted_ip(ip)
    }

    /// The current (decayed) score of `peer` in points (0 for unknown peers).
    pub fn score(&self, peer: &PeerId) -> f64 {
        lock(&self.inner.scores).get(peer, Instant::now())
    }

    /// What the guard knows about `peer`, or `None` if it knows nothing (never connected,
    /// never penalised, not banned, no limiter state).
    pub fn peer_state(&self, peer: &PeerId) -> Option<PeerGuardState> {
        let i = &*self.inner;
        let score_points = self.score(peer);
        let banned_until_ms = read(&i.bans).get(&BanTarget::Peer(*peer), now_ms()).map(|b| b.until_ms);
        let conn = lock(&i.connected).get(peer).copied();
        let throttle = i.throttle.peer_stats(peer);
        let (messages, message_bytes, cost_units, records, tracked) = {
            let l = read(&i.limiters);
            let tracked = l.peer_messages.state(peer).available < l.peer_messages.state(peer).burst
                || l.peer_records.state(peer).available < l.peer_records.state(peer).burst;
            (
                l.peer_messages.state(peer),
                l.peer_bytes.state(peer),
                l.peer_cost.state(peer),
                l.peer_records.state(peer),
                tracked,
            )
        };
        if score_points == 0.0
            && banned_until_ms.is_none()
            && conn.is_none()
            && throttle.is_none()
            && !tracked
        {
            return None;
        }
        let ip = conn.and_then(|c| c.ip);
        Some(PeerGuardState {
            peer: peer.to_base58(),
            score_points,
            banned_until_ms,
            allowlisted: self.is_allowlisted(peer) || ip.is_some_and(|ip| self.is_allowlisted_ip(ip)),
            connections: conn.map(|c| c.connections).unwrap_or(0),
            ip,
            messages,
            message_bytes,
            cost_units,
            records,
            bytes_in: throttle.as_ref().map(|t| t.bytes_in.load(Ordering::Relaxed)).unwrap_or(0),
            bytes_out: throttle.as_ref().map(|t| t.bytes_out.load(Ordering::Relaxed)).unwrap_or(0),
        })
    }
}

impl Inner {
    /// Queues the ban for the state writer (never blocks: the network loop bans).
    fn persist_ban(&self, info: &BanInfo) -> Result<Ticket, GuardError> {
        let r = self.state.put_ban(info.to_record());
        if r.is_err() {
            self.metrics.store_errors.inc();
        }
        Ok(r?)
    }

    /// Queues the deletion of a persisted ban (never blocks).
    pub(crate) fn unpersist_ban(&self, target: &BanTarget) -> Result<Ticket, GuardError> {
        let r = self.state.remove_ban(target.to_string());
        if r.is_err() {
            self.metrics.store_errors.inc();
        }
        Ok(r?)
    }

    /// Waits (bounded) until a queued ban change is durable: for admin commands, whose
    /// answer promises it.
    fn wait_persisted(&self, ticket: Ticket) -> Result<(), GuardError> {
        let r = self.state.wait_written(ticket, PERSIST_WAIT);
        if r.is_err() {
            self.metrics.store_errors.inc();
        }
        Ok(r?)
    }
}
