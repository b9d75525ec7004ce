//! A hostile peer built from plain libp2p: a gossipsub-only swarm that publishes whatever
//! bytes the test gives it (bad signatures, junk, equivocations).

use std::time::Duration;

use futures::StreamExt;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm, Transport};
use palisade_net::topics::TopicKind;

pub(crate) struct Hostile {
    pub(crate) swarm: Swarm<gossipsub::Behaviour>,
}

impl Hostile {
    pub(crate) fn new(seed: u8) -> Hostile {
        let key = libp2p::identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
        let transport = tcp::tokio::Transport::new(tcp::Config::default())
            .upgrade(Version::V1Lazy)
            .authenticate(noise::Config::new(&key).unwrap())
            .multiplex(yamux::Config::default())
            .boxed();
        // Same gossipsub settings as a real node (anonymous, the same message ids), but
        // without peer scoring and without validation: it forwards anything.
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .message_id_fn(|m: &gossipsub::Message| palisade_net::gossip::message_id(&m.data))
            .max_transmit_size(1024 * 1024)
            .heartbeat_interval(Duration::from_millis(200))
            .build()
            .unwrap();
        let mut behaviour =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).unwrap();
        for t in TopicKind::ALL {
            behaviour.subscribe(&t.topic()).unwrap();
        }
        let swarm = Swarm::new(
            transport,
            behaviour,
            key.public().to_peer_id(),
            libp2p::swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(Duration::from_secs(60)),
        );
        Hostile { swarm }
    }

    pub(crate) fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Dials `addr` and drives the swarm until it has a new connection to `peer` and knows
    /// `peer` subscribes to our topics (so publishing reaches it). On a reconnect the
    /// subscriptions may be remembered from the old connection rather than announced again,
    /// so this checks gossipsub's view instead of waiting for a `Subscribed` event.
    pub(crate) async fn connect(&mut self, addr: Multiaddr, peer: PeerId) {
        self.swarm.dial(addr).unwrap();
        let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
        let topic = TopicKind::Anomalies.topic().hash();
        let mut established = false;
        loop {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .expect("hostile connect");
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } = &event {
                established |= *peer_id == peer;
            }
            let subscribed =
                self.swarm.behaviour().all_peers().any(|(p, topics)| *p == peer && topics.contains(&&topic));
            if established && subscribed && self.swarm.is_connected(&peer) {
                return;
            }
        }
    }

    /// Publishes raw bytes on a topic and keeps the swarm running for `drive`.
    pub(crate) async fn publish(&mut self, topic: TopicKind, data: Vec<u8>) {
        self.swarm.behaviour_mut().publish(topic.topic(), data).unwrap();
        self.drive(Duration::from_millis(50)).await;
    }

    /// Polls the swarm for a while (it must be polled to send anything).
    pub(crate) async fn drive(&mut self, d: Duration) {
        let _ = tokio::time::timeout(d, async {
            loop {
                self.swarm.select_next_some().await;
            }
        })
        .await;
    }
}

/// How many times a flooding [`Hostile`] dials back after being disconnected.
const MAX_REDIALS: usize = 20;

impl Hostile {
    /// Publishes `messages` on `topic` as fast as `per_sec` allows, in its own task, driving
    /// the swarm throughout. Like a persistent attacker it dials `redial` again whenever it is
    /// disconnected (at most [`MAX_REDIALS`] times), and after the last message it stays
    /// connected for up to `linger`. It stops when the peer stops taking it back (a ban), when
    /// it is out of redials, or when `linger` runs out. Returns how many messages were handed
    /// to gossipsub.
    pub(crate) fn flood(
        mut self,
        topic: TopicKind,
        messages: Vec<Vec<u8>>,
        per_sec: u32,
        redial: Option<Multiaddr>,
        linger: Duration,
    ) -> tokio::task::JoinHandle<usize> {
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_micros(1_000_000 / u64::from(per_sec.max(1))));
            let mut sent = 0;
            let mut redials = 0;
            let mut connected = true;
            let mut messages = messages.into_iter().peekable();
            let mut linger_until: Option<tokio::time::Instant> = None;
            loop {
                if messages.peek().is_none() && linger_until.is_none() {
                    linger_until = Some(tokio::time::Instant::now() + linger);
                }
                let deadline = linger_until.unwrap_or_else(|| tokio::time::Instant::now() + linger);
                tokio::select! {
                    _ = tick.tick(), if connected && messages.peek().is_some() => {
                        if let Some(m) = messages.next() {
                            if self.swarm.behaviour_mut().publish(topic.topic(), m).is_ok() {
                                sent += 1;
                            }
                        }
                    }
                    event = self.swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { .. } => connected = true,
                        SwarmEvent::ConnectionClosed { num_established: 0, .. }
                        | SwarmEvent::OutgoingConnectionError { .. } => {
                            connected = false;
                            match &redial {
                                Some(addr) if redials < MAX_REDIALS => {
                                    redials += 1;
                                    let _ = self.swarm.dial(addr.clone());
                                }
                                _ => break,
                            }
                        }
                        _ => {}
                    },
                    _ = tokio::time::sleep_until(deadline), if linger_until.is_some() => break,
                }
            }
            sent
        })
    }
}
