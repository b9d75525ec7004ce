//! Dials an admin asked for (`palisade peers dial`, `POST /v1/peers/dial`): the answer waits
//! for the outcome, so an unreachable address is an error the admin sees (it used to be
//! "dialling" and then nothing, not even a log line). Bounded: beyond
//! [`MAX_PENDING_ADMIN_DIALS`] dials wait at once; beyond, a dial is refused with what to do.

use std::collections::HashMap;

use libp2p::swarm::{dial_opts::DialOpts, ConnectionId, DialError};
use libp2p::Multiaddr;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::EventLoop;
use crate::NetError;

/// Most admin dials whose answer waits for the outcome at once.
pub(crate) const MAX_PENDING_ADMIN_DIALS: usize = 64;

type Reply = oneshot::Sender<Result<libp2p::PeerId, NetError>>;

#[derive(Default)]
pub(super) struct PendingDials {
    by_connection: HashMap<ConnectionId, (Multiaddr, Reply)>,
}

impl EventLoop {
    /// Starts an admin dial; the reply comes when the connection is up or has failed.
    pub(super) fn admin_dial(&mut self, addr: Multiaddr, reply: Reply) {
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Err(e) => {
                warn!(%addr, error = %e, "admin dial refused");
                let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason: e.to_string() }));
            }
            Ok(()) if self.dials.by_connection.len() >= MAX_PENDING_ADMIN_DIALS => {
                // Dialled, but the answer cannot wait: say so rather than pretend it connected.
                let reason = format!(
                    "{MAX_PENDING_ADMIN_DIALS} admin dials are already waiting for their outcome; \
                     this one was started, check `palisade peers list` for it"
                );
                let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason }));
            }
            Ok(()) => {
                self.dials.by_connection.insert(id, (addr, reply));
            }
        }
    }

    /// A connection is up: answers the admin dial that asked for it, if any.
    pub(super) fn dial_established(&mut self, id: ConnectionId, peer: libp2p::PeerId) {
        if let Some((addr, reply)) = self.dials.by_connection.remove(&id) {
            info!(%addr, %peer, "admin dial connected");
            let _ = reply.send(Ok(peer));
        }
    }

    /// A dial failed: answers the admin dial with why, and says so in the log for an admin
    /// or bootstrap dial (other dials fail routinely: kad addresses, redials of the peer book).
    pub(super) fn dial_failed(&mut self, id: ConnectionId, peer: Option<libp2p::PeerId>, error: &DialError) {
        if let Some((addr, reply)) = self.dials.by_connection.remove(&id) {
            warn!(%addr, error = %error, "admin dial failed");
            let _ = reply.send(Err(NetError::Dial { addr: addr.to_string(), reason: error.to_string() }));
            return;
        }
        if let Some(b) = peer.and_then(|p| self.bootstrap.iter().find(|b| b.peer == p)) {
            warn!(
                peer = %b.peer,
                addr = %b.addr,
                error = %error,
                retry_in_secs = b.backoff.as_secs(),
                "cannot reach a bootstrap peer; retrying"
            );
        } else {
            tracing::debug!(?peer, %error, "outgoing connection failed");
        }
    }
}
