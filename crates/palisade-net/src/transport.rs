//! The transport stack: TCP + noise + yamux and QUIC, behind DNS, with every authenticated
//! connection's muxer wrapped by the guard's bandwidth throttle.

use std::time::Duration;

use futures::future::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::{dns, noise, quic, tcp, yamux, PeerId, Transport};
use palisade_guard::Guard;

/// Builds the boxed transport.
pub(crate) fn build(key: &Keypair, guard: &Guard) -> Result<Boxed<(PeerId, StreamMuxerBox)>, String> {
    let limits = guard.limits();
    let handshake_timeout = Duration::from_secs(limits.handshake_timeout_secs);
    let mut yamux_cfg = yamux::Config::default();
    // Explicit stream cap per connection (yamux's default is 512).
    yamux_cfg.set_max_num_streams(limits.max_streams_per_connection as usize);
    let noise_cfg = noise::Config::new(key).map_err(|e| format!("noise: {e}"))?;
    // The upgrade timeout covers multistream-select, the noise handshake and the muxer
    // negotiation: a peer that connects and stalls is dropped after `handshake_timeout`.
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1Lazy)
        .authenticate(noise_cfg)
        .multiplex(yamux_cfg)
        .timeout(handshake_timeout);
    let mut quic_cfg = quic::Config::new(key);
    quic_cfg.handshake_timeout = handshake_timeout;
    quic_cfg.max_concurrent_stream_limit = limits.max_streams_per_connection;
    let quic = quic::tokio::Transport::new(quic_cfg);
    let throttle = guard.clone();
    let combined = tcp.or_transport(quic).map(move |out, _| match out {
        Either::Left((peer, muxer)) => (peer, StreamMuxerBox::new(throttle.throttle(peer, muxer))),
        Either::Right((peer, muxer)) => (peer, StreamMuxerBox::new(throttle.throttle(peer, muxer))),
    });
    // /dns4 and /dns6 bootstrap addresses need a resolver; a host without resolv.conf (some
    // containers) still runs, with IP addresses only.
    if std::path::Path::new("/etc/resolv.conf").exists() {
        match dns::tokio::Transport::system(combined) {
            Ok(t) => Ok(t.boxed()),
            Err(e) => Err(format!("DNS resolver from /etc/resolv.conf: {e}")),
        }
    } else {
        tracing::warn!("no /etc/resolv.conf: DNS multiaddrs (/dns4, /dns6) cannot be dialled");
        Ok(combined.boxed())
    }
}
