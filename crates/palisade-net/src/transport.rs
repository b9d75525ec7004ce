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

/// TCP that always dials from a fresh ephemeral port.
///
/// libp2p binds outgoing TCP sockets to the listening port by default (port reuse, for hole
/// punching). Nodes here all listen on one well-known port, so after a connection between two
/// nodes closes, its 4-tuple (a:7400, b:7400) sits in TIME_WAIT and every re-dial between them
/// fails with EADDRINUSE for a minute — a restarted or partitioned node could not reconnect
/// (found by the chaos harness). We gain nothing from port reuse without NAT traversal, so
/// every dial takes a new port.
struct FreshPortTcp<T>(T);

impl<T: Transport + Unpin> Transport for FreshPortTcp<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: libp2p::core::transport::ListenerId,
        addr: libp2p::Multiaddr,
    ) -> Result<(), libp2p::core::transport::TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: libp2p::core::transport::ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: libp2p::Multiaddr,
        opts: libp2p::core::transport::DialOpts,
    ) -> Result<Self::Dial, libp2p::core::transport::TransportError<Self::Error>> {
        let opts =
            libp2p::core::transport::DialOpts { port_use: libp2p::core::transport::PortUse::New, ..opts };
        self.0.dial(addr, opts)
    }

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<libp2p::core::transport::TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Builds the boxed transport.
pub(crate) fn build(key: &Keypair, guard: &Guard) -> Result<Boxed<(PeerId, StreamMuxerBox)>, String> {
    let noise_cfg = noise::Config::new(key).map_err(|e| format!("noise: {e}"))?;
    let tcp = FreshPortTcp(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true)))
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

/// Refuses a listen address whose port another socket already holds.
///
/// libp2p-tcp sets `SO_REUSEPORT` on its listening sockets, so on Linux a second node (same
/// user) binding the same TCP port succeeds and the kernel splits incoming connections
/// between the two: both look healthy, half the dials reach the wrong node. A probe bound
/// without `SO_REUSEPORT` fails with "address in use" whenever anyone listens there, so the
/// node stops at start with that error instead. (A node started at the same instant on the
/// same port can still slip between the probe and the bind; that race needs two starts
/// within microseconds.)
pub(crate) fn ensure_port_free(addr: &libp2p::Multiaddr) -> Result<(), std::io::Error> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(port) if port != 0 => {
                if let Some(ip) = ip {
                    drop(std::net::TcpListener::bind((ip, port))?);
                }
            }
            Protocol::Udp(port) if port != 0 => {
                if let Some(ip) = ip {
                    drop(std::net::UdpSocket::bind((ip, port))?);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_someone_listens_on_is_refused_and_a_free_one_passes() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let addr: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let err = ensure_port_free(&addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(taken);
        ensure_port_free(&addr).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let quic: libp2p::Multiaddr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1").parse().unwrap();
        assert_eq!(ensure_port_free(&quic).unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
        // Port 0 (any free port) is never probed.
        ensure_port_free(&"/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    }
}
