//! Integration tests of the guard: real libp2p swarms (TCP + noise + yamux) on loopback, real
//! sockets, real sled stores in temp directories. Waiting is event-driven with a bounded
//! timeout around every wait.

mod bandwidth;
mod bans;
mod connections;
mod ledger;
mod rate_limits;
mod reputation;
mod slowloris;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::core::Transport;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{connection_limits, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use palisade_guard::{Guard, GuardBehaviour, GuardConfig};
use palisade_store::{Store, StoreConfig};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

/// Upper bound on any single wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn open_store(dir: &std::path::Path) -> Store {
    Store::open(&StoreConfig::new(dir.join("db"))).unwrap()
}

pub(crate) fn guard(cfg: GuardConfig, dir: &std::path::Path) -> Guard {
    Guard::new(cfg, open_store(dir), &mut Registry::default()).unwrap()
}

/// Waits for `fut` at most [`WAIT`].
pub(crate) async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

// ---- a push protocol: the client sends byte blobs, the server acknowledges their length ----

pub(crate) const PUSH: StreamProtocol = StreamProtocol::new("/palisade-test/push/1");
const MAX_PUSH_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub(crate) struct PushCodec;

impl request_response::Codec for PushCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = u64;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_PUSH_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too large"));
        }
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<u64>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut b = [0u8; 8];
        io.read_exact(&mut b).await?;
        Ok(u64::from_be_bytes(b))
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&(req.len() as u32).to_be_bytes()).await?;
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: u64) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&res.to_be_bytes()).await?;
        io.close().await
    }
}

fn push_behaviour(support: ProtocolSupport) -> request_response::Behaviour<PushCodec> {
    request_response::Behaviour::with_codec(
        PushCodec,
        [(PUSH, support)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(60))
            .with_max_concurrent_streams(64),
    )
}

/// The node under test: libp2p connection limits, the guard, and the push protocol.
#[derive(NetworkBehaviour)]
pub(crate) struct Node {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) guard: GuardBehaviour,
    pub(crate) push: request_response::Behaviour<PushCodec>,
}

/// A peer: just the push protocol.
#[derive(NetworkBehaviour)]
pub(crate) struct Peer {
    pub(crate) push: request_response::Behaviour<PushCodec>,
}

/// Connections idle for this long are closed; long, so tests decide when connections end.
const IDLE: Duration = Duration::from_secs(120);

/// A swarm with the guard's transport (handshake timeout, throttle) and behaviours.
pub(crate) fn node_swarm(guard: &Guard) -> Swarm<Node> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| guard.tcp_transport(key, tcp::Config::default()).unwrap())
        .unwrap()
        .with_behaviour(|_| Node {
            limits: guard.connection_limits(),
            guard: guard.behaviour(),
            push: push_behaviour(ProtocolSupport::Inbound),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build()
}

/// A plain TCP peer (source address chosen by the kernel: 127.0.0.1 toward 127.0.0.1).
pub(crate) fn peer_swarm(key: Keypair) -> Swarm<Peer> {
    SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| Peer { push: push_behaviour(ProtocolSupport::Outbound) })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build()
}

/// A peer whose transport goes through `guard` (its outbound bytes are throttled).
pub(crate) fn guarded_peer_swarm(guard: &Guard) -> Swarm<Peer> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| guard.tcp_transport(key, tcp::Config::default()).unwrap())
        .unwrap()
        .with_behaviour(|_| Peer { push: push_behaviour(ProtocolSupport::Outbound) })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build()
}

/// A peer whose TCP connections leave from `local_ip` (e.g. 127.0.0.2), so tests can act as a
/// different host on loopback.
pub(crate) fn peer_swarm_from(key: Keypair, local_ip: IpAddr) -> Swarm<Peer> {
    SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            BoundTcp { local_ip }
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key).unwrap())
                .multiplex(yamux::Config::default())
        })
        .unwrap()
        .with_behaviour(|_| Peer { push: push_behaviour(ProtocolSupport::Outbound) })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build()
}

/// A dial-only TCP transport binding each outgoing socket to a chosen local IP.
pub(crate) struct BoundTcp {
    local_ip: IpAddr,
}

pub(crate) fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut it = addr.iter();
    let ip = match it.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

impl Transport for BoundTcp {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<Self::Output, io::Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, io::Error>>;

    fn listen_on(&mut self, _id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(&mut self, addr: Multiaddr, _opts: DialOpts) -> Result<Self::Dial, TransportError<io::Error>> {
        let Some(remote) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let local = SocketAddr::new(self.local_ip, 0);
        Ok(async move {
            let socket = if remote.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(local)?;
            let stream = socket.connect(remote).await?;
            stream.set_nodelay(true)?;
            Ok(tcp::tokio::TcpStream(stream))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

// ---- running the node under test ----

/// What the node under test reports to the test.
#[derive(Debug, Clone)]
pub(crate) enum Report {
    Established { peer: PeerId, ip: Option<IpAddr> },
    Closed { peer: PeerId, ip: Option<IpAddr> },
    Request { peer: PeerId, bytes: usize, at: Instant },
}

/// Listens on 127.0.0.1 and returns the address.
pub(crate) async fn listen(swarm: &mut Swarm<Node>) -> Multiaddr {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    within("listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
}

/// Drives the node forever, answering pushes and reporting events. Reports are dropped
/// (not awaited) when the test is not reading, so the node never stalls on the test.
pub(crate) async fn run_node(mut swarm: Swarm<Node>, tx: mpsc::Sender<Report>) {
    loop {
        let ev = match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => Some(Report::Established {
                peer: peer_id,
                ip: palisade_guard::multiaddr_ip(endpoint.get_remote_address()),
            }),
            SwarmEvent::ConnectionClosed { peer_id, endpoint, .. } => Some(Report::Closed {
                peer: peer_id,
                ip: palisade_guard::multiaddr_ip(endpoint.get_remote_address()),
            }),
            SwarmEvent::Behaviour(NodeEvent::Push(request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            })) => {
                let n = request.len();
                let _ = swarm.behaviour_mut().push.send_response(channel, n as u64);
                Some(Report::Request { peer, bytes: n, at: Instant::now() })
            }
            _ => None,
        };
        if let Some(ev) = ev {
            if tx.capacity() > 0 {
                let _ = tx.try_send(ev);
            }
        }
    }
}

/// Spawns the node; returns its address, its event stream and the task.
pub(crate) async fn spawn_node(
    guard: &Guard,
) -> (Multiaddr, PeerId, mpsc::Receiver<Report>, tokio::task::JoinHandle<()>) {
    let mut swarm = node_swarm(guard);
    let addr = listen(&mut swarm).await;
    let id = *swarm.local_peer_id();
    let (tx, rx) = mpsc::channel(16 * 1024);
    let task = tokio::spawn(run_node(swarm, tx));
    (addr, id, rx, task)
}

/// The outcome of one dial, from the dialer's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialOutcome {
    Connected,
    Failed,
}

/// Dials `addr` and waits for the first outcome.
pub(crate) async fn dial_once(swarm: &mut Swarm<Peer>, addr: &Multiaddr) -> DialOutcome {
    swarm.dial(addr.clone()).unwrap();
    within("dial outcome", async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return DialOutcome::Connected,
                SwarmEvent::OutgoingConnectionError { .. } => return DialOutcome::Failed,
                // Closed during or right after the handshake (the node refused the peer id).
                SwarmEvent::ConnectionClosed { .. } => return DialOutcome::Failed,
                _ => {}
            }
        }
    })
    .await
}

/// Dials and, if connected, checks the connection survives the node's decision: the node
/// refuses banned peers only after the handshake, so the dialer may see a connection that the
/// node closes at once. Returns `Connected` only if it is still open after the node had time
/// to answer a push over it.
pub(crate) async fn dial_and_push(swarm: &mut Swarm<Peer>, peer: PeerId, addr: &Multiaddr) -> DialOutcome {
    if dial_once(swarm, addr).await == DialOutcome::Failed {
        return DialOutcome::Failed;
    }
    swarm.behaviour_mut().push.send_request(&peer, vec![1, 2, 3]);
    within("push answer", async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(PeerEvent::Push(request_response::Event::Message {
                    message: request_response::Message::Response { .. },
                    ..
                })) => return DialOutcome::Connected,
                SwarmEvent::Behaviour(PeerEvent::Push(request_response::Event::OutboundFailure {
                    ..
                })) => return DialOutcome::Failed,
                SwarmEvent::ConnectionClosed { num_established: 0, .. } => return DialOutcome::Failed,
                _ => {}
            }
        }
    })
    .await
}

/// Keeps a peer swarm polled in the background (so its connections stay up).
pub(crate) fn keep_polling(mut swarm: Swarm<Peer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = swarm.select_next_some().await;
        }
    })
}

/// Whether 127.0.0.2 and friends are usable (they are on Linux; skip elsewhere).
pub(crate) fn loopback_aliases_work() -> bool {
    std::net::TcpListener::bind("127.0.0.2:0").is_ok()
}
