//! The composed `NetworkBehaviour`. Order matters: connection-denying behaviours come first
//! so a refused connection costs no other behaviour any work (as in Lighthouse).

use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, gossipsub, identify, identity::Keypair, kad, mdns, memory_connection_limits, ping,
    request_response, StreamProtocol,
};
use palisade_guard::{Guard, GuardBehaviour};

use crate::sync::{SyncCodec, PROTOCOL as SYNC_PROTOCOL, PROTOCOL_V2 as SYNC_PROTOCOL_V2};
use crate::NetConfig;
use crate::NetMetrics;

/// Kademlia protocol id (our own DHT, not the IPFS one).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/palisade/kad/1.0.0");
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/palisade/id/1.0.0";

/// Every protocol a Palisade node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Total / inbound / outbound / per-peer / pending caps.
    pub(crate) limits: connection_limits::Behaviour,
    /// Refuse new connections when the process uses too much memory.
    pub(crate) memory: Toggle<memory_connection_limits::Behaviour>,
    /// Per-IP and per-subnet caps and rates, bans, disconnects on ban.
    pub(crate) guard: GuardBehaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
}

/// gossipsub's own metrics (mesh sizes, messages received with and without duplicates per
/// topic: the copies per record that gossip costs), for our three topics only: a peer's
/// made-up topics get no series.
fn gossip_metrics_config() -> gossipsub::MetricsConfig {
    gossipsub::MetricsConfig {
        max_topics: crate::topics::TopicKind::ALL.len(),
        max_never_subscribed_topics: 0,
        ..gossipsub::MetricsConfig::default()
    }
}

impl Behaviour {
    pub(crate) fn new(
        key: &Keypair,
        cfg: &NetConfig,
        guard: &Guard,
        metrics: &NetMetrics,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Behaviour, String> {
        let peer_id = key.public().to_peer_id();
        let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        // Records live in our store, not in the DHT: Kademlia is for peer discovery only.
        kad_cfg.set_record_ttl(None);
        let kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
        let mdns = if cfg.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| format!("mDNS: {e}"))?,
            )
        } else {
            None
        };
        let sync_cfg = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(cfg.sync_request_timeout_secs))
            .with_max_concurrent_streams(cfg.sync_max_inbound_per_peer.saturating_mul(64).max(64));
        // Outbound streams offer the protocols in this order: sync/2 first.
        let mut sync_protocols = Vec::with_capacity(2);
        if cfg.sync_v2 {
            sync_protocols.push((SYNC_PROTOCOL_V2, request_response::ProtocolSupport::Full));
        }
        sync_protocols.push((SYNC_PROTOCOL, request_response::ProtocolSupport::Full));
        Ok(Behaviour {
            limits: guard.connection_limits(),
            memory: Toggle::from(guard.memory_connection_limits()),
            guard: guard.behaviour(),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                    .with_agent_version(format!("palisade/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            gossipsub: crate::gossip::behaviour(cfg.gossip_max_transmit_bytes)?
                .with_metrics(registry.sub_registry_with_prefix("gossipsub"), gossip_metrics_config()),
            kad,
            mdns: Toggle::from(mdns),
            sync: request_response::Behaviour::with_codec(
                SyncCodec::counting(metrics.sync_bytes.clone()),
                sync_protocols,
                sync_cfg,
            ),
        })
    }
}
