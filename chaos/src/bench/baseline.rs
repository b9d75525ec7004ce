//! The baseline: a bare rust-libp2p gossipsub network, what a user would otherwise build.
//!
//! Same libp2p version and transport as Palisade (TCP + noise + yamux), gossipsub with its
//! default configuration except: anonymous messages (no libp2p per-message signatures, so
//! the baseline has no signature checks at all), message id = blake3 of the data (content
//! addressed, so copies die in the duplicate cache, as Palisade's message ids do),
//! the same 64 KiB `max_transmit_size`. No validation hook (messages are forwarded as soon as
//! they arrive), no storage. Each node is a process (`palisade-chaos bench --baseline-node
//! SPEC`) that prints `ready <peer id>` when listening, `peers <n>` when that changes and
//! `m <message id hex>` for every new message, so the harness observes it exactly as it
//! observes a Palisade node.
//!
//! Also here: [`transport`], the client transport of the benchmark, which can dial from a
//! chosen 127.x source address (libp2p's TCP transport cannot), for connection-load tests.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId, Swarm, Transport};
use serde::{Deserialize, Serialize};

/// The topic the baseline relays on (the Palisade attestations topic string, for symmetry).
pub const TOPIC: &str = palisade_net::topics::ATTESTATIONS;

/// The baseline's message id: blake3 of the data.
pub fn message_id(data: &[u8]) -> gossipsub::MessageId {
    gossipsub::MessageId::new(blake3::hash(data).as_bytes())
}

/// Gossipsub config of a baseline node (and of the publisher talking to it).
pub fn gossip_config() -> anyhow::Result<gossipsub::Config> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| message_id(&m.data))
        .max_transmit_size(64 * 1024)
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))
}

/// A TCP dialer that binds the local end to a chosen address first.
struct BoundTcp {
    source: Option<Ipv4Addr>,
}

impl Transport for BoundTcp {
    type Output = tcp::tokio::TcpStream;
    type Error = std::io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<Self::Output, Self::Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn listen_on(&mut self, _id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(&mut self, addr: Multiaddr, _opts: DialOpts) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(target) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let source = self.source;
        Ok(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            // Only a loopback target can be reached from a loopback source (a node in a
            // network namespace is dialled from the kernel's choice).
            if let Some(ip) = source.filter(|_| target.ip().is_loopback()) {
                socket.bind(SocketAddr::new(ip.into(), 0))?;
            }
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(tcp::tokio::TcpStream(stream))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Poll::Pending
    }
}

fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// A dial-only TCP + noise + yamux transport, optionally from a chosen source IP.
pub fn transport(
    key: &identity::Keypair,
    source: Option<Ipv4Addr>,
) -> anyhow::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    Ok(BoundTcp { source }
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key).context("noise config")?)
        .multiplex(yamux::Config::default())
        .timeout(Duration::from_secs(20))
        .boxed())
}

/// A listening and dialling TCP + noise + yamux transport (baseline nodes).
fn node_transport(key: &identity::Keypair) -> anyhow::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key).context("noise config")?)
        .multiplex(yamux::Config::default())
        .timeout(Duration::from_secs(20))
        .boxed())
}

type BaselineBehaviour =
    gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::AllowAllSubscriptionFilter>;

/// What a baseline node process does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Listen address (`/ip4/…/tcp/…`).
    pub listen: String,
    /// Addresses to dial at start (`…/p2p/<id>`).
    pub dial: Vec<String>,
    /// Identity seed.
    pub seed: u64,
}

/// The identity of baseline node `seed`.
pub fn node_key(seed: u64) -> identity::Keypair {
    let bytes = blake3::derive_key("palisade bench baseline-node v1", &seed.to_le_bytes());
    identity::Keypair::ed25519_from_bytes(bytes).unwrap_or_else(|_| identity::Keypair::generate_ed25519())
}

/// `--baseline-node SPEC`: runs until stdin closes (the harness dropped it) or it is killed.
pub fn node_main(spec: &str) -> anyhow::Result<()> {
    let spec: NodeSpec = serde_json::from_str(spec).context("baseline node spec")?;
    // One runtime thread per core, as a node would have.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_node(spec))
}

async fn run_node(spec: NodeSpec) -> anyhow::Result<()> {
    let key = node_key(spec.seed);
    let peer_id = key.public().to_peer_id();
    let mut behaviour = BaselineBehaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config()?)
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
    behaviour.subscribe(&gossipsub::IdentTopic::new(TOPIC)).map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
    let cfg =
        libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(Duration::from_secs(60));
    let mut swarm = Swarm::new(node_transport(&key)?, behaviour, peer_id, cfg);
    swarm.listen_on(spec.listen.parse()?)?;
    let mut dial: Vec<(PeerId, Multiaddr)> = Vec::new();
    for d in &spec.dial {
        let addr: Multiaddr = d.parse()?;
        if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
            dial.push((peer, addr));
        }
    }
    // Peers that are not up yet are dialled again every half second until connected.
    let mut redial = tokio::time::interval(Duration::from_millis(500));
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut sink = Vec::new();
    let mut peers = 0usize;
    loop {
        tokio::select! {
            // The harness holds our stdin; when it goes away, so do we.
            _ = redial.tick() => {
                for (peer, addr) in &dial {
                    if !swarm.is_connected(peer) {
                        let _ = swarm.dial(addr.clone());
                    }
                }
            }
            r = tokio::io::AsyncReadExt::read_buf(&mut stdin, &mut sink) => {
                if matches!(r, Ok(0) | Err(_)) { return Ok(()); }
                sink.clear();
            }
            event = swarm.select_next_some() => {
                on_event(event, &swarm, &mut out, &mut peers)?;
                // Write everything that is ready before flushing once.
                while let Some(Some(event)) = swarm.next().now_or_never() {
                    on_event(event, &swarm, &mut out, &mut peers)?;
                }
                out.flush()?;
            }
        }
    }
}

fn on_event(
    event: SwarmEvent<gossipsub::Event>,
    swarm: &Swarm<BaselineBehaviour>,
    out: &mut impl Write,
    peers: &mut usize,
) -> anyhow::Result<()> {
    match event {
        SwarmEvent::NewListenAddr { .. } => writeln!(out, "ready {}", swarm.local_peer_id())?,
        SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. } => {
            let n = swarm.connected_peers().count();
            if n != *peers {
                *peers = n;
                writeln!(out, "peers {n}")?;
            }
        }
        SwarmEvent::Behaviour(gossipsub::Event::Message { message_id, .. }) => {
            writeln!(out, "m {}", hex::encode(&message_id.0))?;
        }
        _ => {}
    }
    Ok(())
}
