//! The transport stack: TCP + noise + yamux and QUIC, behind DNS, wrapped by the guard
//! (handshake timeout covering dial/accept to an authenticated multiplexed connection, soft
//! stream cap, and the bandwidth throttle on every connection's muxer).

use futures::future::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::{dns, noise, quic, tcp, PeerId, Transport};
use palisade_guard::Guard;

/// Builds the boxed transport.
pub(crate) fn build(key: &Keypair, guard: &Guard) -> Result<Boxed<(PeerId, StreamMuxerBox)>, String> {
    let noise_cfg = noise::Config::new(key).map_err(|e| format!("noise: {e}"))?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1Lazy)
        .authenticate(noise_cfg)
        .multiplex(guard.yamux_config());
    let quic = quic::tokio::Transport::new(guard.quic_config(key));
    let combined = tcp.or_transport(quic).map(|out, _| match out {
        Either::Left((peer, muxer)) => (peer, StreamMuxerBox::new(muxer)),
        Either::Right((peer, muxer)) => (peer, StreamMuxerBox::new(muxer)),
    });
    // /dns4 and /dns6 bootstrap addresses need a resolver; a host without resolv.conf (some
    // containers) still runs, with IP addresses only.
    if std::path::Path::new("/etc/resolv.conf").exists() {
        match dns::tokio::Transport::system(combined) {
            Ok(t) => Ok(guard.wrap_transport(t)),
            Err(e) => Err(format!("DNS resolver from /etc/resolv.conf: {e}")),
        }
    } else {
        tracing::warn!("no /etc/resolv.conf: DNS multiaddrs (/dns4, /dns6) cannot be dialled");
        Ok(guard.wrap_transport(combined))
    }
}
