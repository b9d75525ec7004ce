//! Prometheus metrics of the guard (prometheus-client 0.23, the version libp2p-metrics 0.18
//! shares its registry with).
//!
//! Every labelled counter is resolved once at start into a plain [`Counter`] handle indexed by
//! reason, so the hot path is one atomic add: no label hashing, no lock, no allocation. The same
//! handles back [`crate::Guard::counters`], so the API and Prometheus can never disagree.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::reason::{Direction, DropReason, PenaltyReason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabel {
    map: &'static str,
}

/// Names of the bounded key maps, the `map` label of the tracker gauges.
pub(crate) const MAPS: [&str; 9] = [
    "peer_messages",
    "peer_bytes",
    "peer_cost",
    "peer_records",
    "peer_proofs",
    "authors",
    "ip_connections",
    "subnet_connections",
    "scores",
];

pub(crate) struct Metrics {
    pub(crate) drops: Vec<Counter>,
    pub(crate) penalties: Vec<Counter>,
    pub(crate) bans_peer: Counter,
    pub(crate) bans_ip: Counter,
    pub(crate) unbans: Counter,
    pub(crate) disconnects: Counter,
    pub(crate) throttled_in: Counter,
    pub(crate) throttled_out: Counter,
    pub(crate) throttle_waits_in: Counter,
    pub(crate) throttle_waits_out: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) active_bans: Gauge,
    pub(crate) tracked: Vec<Gauge>,
    pub(crate) store_errors: Counter,
    pub(crate) ban_evictions: Counter,
    pub(crate) ledger_overwritten: Counter,
}

impl Metrics {
    pub(crate) fn new(registry: &mut Registry) -> Metrics {
        let drops_family = Family::<ReasonLabel, Counter>::default();
        let drops = DropReason::ALL
            .iter()
            .map(|r| drops_family.get_or_create(&ReasonLabel { reason: r.as_str() }).clone())
            .collect();
        registry.register(
            "palisade_guard_drops",
            "Messages, records and connections refused by the guard or reported to it, by reason",
            drops_family,
        );

        let penalties_family = Family::<ReasonLabel, Counter>::default();
        let penalties = PenaltyReason::ALL
            .iter()
            .map(|r| penalties_family.get_or_create(&ReasonLabel { reason: r.as_str() }).clone())
            .collect();
        registry.register(
            "palisade_guard_penalties",
            "Penalties applied to peer scores, by reason",
            penalties_family,
        );

        let bans_family = Family::<TargetLabel, Counter>::default();
        let bans_peer = bans_family.get_or_create(&TargetLabel { target: "peer" }).clone();
        let bans_ip = bans_family.get_or_create(&TargetLabel { target: "ip" }).clone();
        registry.register(
            "palisade_guard_bans",
            "Bans issued (by score, by IP threshold or by an admin)",
            bans_family,
        );

        let unbans = Counter::default();
        registry.register("palisade_guard_unbans", "Bans lifted by an admin or expired", unbans.clone());
        let disconnects = Counter::default();
        registry.register(
            "palisade_guard_disconnects",
            "Peers disconnected because their score crossed the disconnect threshold",
            disconnects.clone(),
        );

        let throttled = Family::<DirectionLabel, Counter>::default();
        let throttled_in =
            throttled.get_or_create(&DirectionLabel { direction: Direction::Inbound.as_str() }).clone();
        let throttled_out =
            throttled.get_or_create(&DirectionLabel { direction: Direction::Outbound.as_str() }).clone();
        registry.register(
            "palisade_guard_throttled_bytes",
            "Bytes that had to wait for the bandwidth throttle before being read or written",
            throttled,
        );
        let waits = Family::<DirectionLabel, Counter>::default();
        let throttle_waits_in =
            waits.get_or_create(&DirectionLabel { direction: Direction::Inbound.as_str() }).clone();
        let throttle_waits_out =
            waits.get_or_create(&DirectionLabel { direction: Direction::Outbound.as_str() }).clone();
        registry.register(
            "palisade_guard_throttle_waits",
            "Times a read or write was paused by the bandwidth throttle",
            waits,
        );
        let transferred = Family::<DirectionLabel, Counter>::default();
        let bytes_in =
            transferred.get_or_create(&DirectionLabel { direction: Direction::Inbound.as_str() }).clone();
        let bytes_out =
            transferred.get_or_create(&DirectionLabel { direction: Direction::Outbound.as_str() }).clone();
        registry.register(
            "palisade_guard_transferred_bytes",
            "Bytes read and written through the throttled transport (substream payload)",
            transferred,
        );

        let active_bans = Gauge::default();
        registry.register("palisade_guard_active_bans", "Bans currently in force", active_bans.clone());

        let tracked_family = Family::<MapLabel, Gauge>::default();
        let tracked =
            MAPS.iter().map(|m| tracked_family.get_or_create(&MapLabel { map: m }).clone()).collect();
        registry.register(
            "palisade_guard_tracked_keys",
            "Keys held by each bounded limiter map (peers, authors, IPs, subnets, scores)",
            tracked_family,
        );
        let store_errors = Counter::default();
        registry.register(
            "palisade_guard_ban_store_errors",
            "Failures to persist or delete a ban in the store (the ban still applies in memory)",
            store_errors.clone(),
        );

        let ban_evictions = Counter::default();
        registry.register(
            "palisade_guard_ban_evictions",
            "Bans dropped early because the ban table was full (max_bans); the soonest-ending go first",
            ban_evictions.clone(),
        );
        let ledger_overwritten = Counter::default();
        registry.register(
            "palisade_guard_ledger_overwritten",
            "Ledger entries pushed out of the ring buffer by newer ones (ledger_capacity_entries)",
            ledger_overwritten.clone(),
        );

        Metrics {
            ban_evictions,
            ledger_overwritten,
            drops,
            penalties,
            bans_peer,
            bans_ip,
            unbans,
            disconnects,
            throttled_in,
            throttled_out,
            throttle_waits_in,
            throttle_waits_out,
            bytes_in,
            bytes_out,
            active_bans,
            tracked,
            store_errors,
        }
    }

    pub(crate) fn count_drop(&self, r: DropReason) {
        if let Some(c) = self.drops.get(r.index()) {
            c.inc();
        }
    }

    pub(crate) fn penalty(&self, r: PenaltyReason) {
        if let Some(c) = self.penalties.get(r.index()) {
            c.inc();
        }
    }

    pub(crate) fn set_tracked(&self, map: &str, n: usize) {
        if let Some(i) = MAPS.iter().position(|m| *m == map) {
            if let Some(g) = self.tracked.get(i) {
                g.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}
