//! Transport wiring: the handshake timeout, the stream caps and the bandwidth throttle applied
//! to libp2p transports, so palisade-net builds its swarm with one call per transport.
//!
//! The handshake timeout covers everything from accept (or dial) to an authenticated,
//! multiplexed connection: a peer that connects and then sends nothing, or one byte a second,
//! holds a pending slot for at most `handshake_timeout_secs`. Together with
//! `max_pending_incoming` and the per-IP cap (which counts pending connections) this bounds
//! what slow-loris peers can hold.

use std::sync::Arc;
use std::time::Duration;

use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox};
use libp2p::core::transport::timeout::{TransportTimeout, TransportTimeoutError};
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::PeerId;

use crate::{Guard, GuardError};

/// yamux's hard stream cap as a multiple of `max_streams_per_connection` (see
/// [`Guard::yamux_config`]): 4, so the default 128 gives yamux's own default of 512.
pub const YAMUX_STREAMS_PER_GUARD_STREAM: usize = 4;

impl Guard {
    /// The handshake timeout in force.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.limits().handshake_timeout_secs)
    }

    /// A yamux config with its stream cap set explicitly to
    /// [`YAMUX_STREAMS_PER_GUARD_STREAM`] × `max_streams_per_connection`.
    ///
    /// yamux enforces its cap by terminating the whole connection, which would punish an
    /// honest peer for one burst of streams. So yamux's cap is the hard backstop (bounding
    /// per-connection memory), and the guard's [`ThrottledMuxer`](crate::ThrottledMuxer)
    /// enforces `max_streams_per_connection` softly, resetting only the extra inbound streams
    /// and counting them (`stream_limit_exceeded`).
    pub fn yamux_config(&self) -> libp2p::yamux::Config {
        let mut c = libp2p::yamux::Config::default();
        let soft = usize::try_from(self.limits().max_streams_per_connection).unwrap_or(usize::MAX);
        c.set_max_num_streams(soft.saturating_mul(YAMUX_STREAMS_PER_GUARD_STREAM));
        c
    }

    /// A QUIC config with the stream cap and handshake timeout set from the limits.
    pub fn quic_config(&self, keypair: &Keypair) -> libp2p::quic::Config {
        let limits = self.limits();
        let mut c = libp2p::quic::Config::new(keypair);
        c.max_concurrent_stream_limit = limits.max_streams_per_connection;
        c.handshake_timeout = Duration::from_secs(limits.handshake_timeout_secs);
        c
    }

    /// Applies the handshake timeout and the bandwidth throttle to an authenticated,
    /// multiplexed transport (TCP+noise+yamux, QUIC, ...).
    pub fn wrap_transport<T, M>(&self, transport: T) -> Boxed<(PeerId, StreamMuxerBox)>
    where
        T: Transport<Output = (PeerId, M)> + Send + Unpin + 'static,
        T::Error: Send + Sync + 'static,
        T::Dial: Send + 'static,
        T::ListenerUpgrade: Send + 'static,
        M: StreamMuxer + Send + 'static,
        M::Substream: Send + 'static,
        M::Error: Send + Sync + 'static,
    {
        // The transport (and every pending upgrade) holds the guard weakly: a swarm's leftover
        // connection tasks must not keep the guard, and with it the store, open.
        let guard = Arc::downgrade(&self.inner);
        let on_error = guard.clone();
        TransportTimeout::new(transport, self.handshake_timeout())
            .map_err(move |e| {
                if matches!(e, TransportTimeoutError::Timeout) {
                    if let Some(inner) = on_error.upgrade() {
                        // The remote address is not known here; the ledger entry has none.
                        inner.record(None, None, crate::Action::Denied, crate::DropReason::HandshakeTimeout);
                    }
                }
                e
            })
            .map(move |(peer, muxer), _| {
                let muxer = match guard.upgrade() {
                    Some(inner) => StreamMuxerBox::new(Guard { inner }.throttle(peer, muxer)),
                    // The guard is gone, so is the swarm it served; nothing left to protect.
                    None => StreamMuxerBox::new(muxer),
                };
                (peer, muxer)
            })
            .boxed()
    }

    /// TCP + noise + yamux with the guard's handshake timeout, stream cap and throttle: the
    /// transport palisade-net passes to `SwarmBuilder::with_other_transport`.
    pub fn tcp_transport(
        &self,
        keypair: &Keypair,
        tcp: libp2p::tcp::Config,
    ) -> Result<Boxed<(PeerId, StreamMuxerBox)>, GuardError> {
        let noise = libp2p::noise::Config::new(keypair).map_err(|e| GuardError::Transport(e.to_string()))?;
        let authenticated = libp2p::tcp::tokio::Transport::new(tcp)
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(self.yamux_config());
        Ok(self.wrap_transport(authenticated))
    }
}
