//! A userspace TCP fault proxy: the faults `tc netem` would give us (it is not available in
//! these kernels) for chosen node pairs. Each proxied link listens on its own loopback
//! address and forwards to one node; the other node of the pair dials the proxy instead of
//! the node. Faults change while connections run: added latency with jitter, a bandwidth
//! cap, stalls (nothing forwarded), resets (every connection dropped at once) and slow close
//! (FIN held back).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

/// The fault settings of one link at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkState {
    /// Added one-way delay per chunk (ms).
    pub latency_ms: u64,
    /// Extra random delay 0..=jitter per chunk (ms). Order is preserved.
    pub jitter_ms: u64,
    /// Bandwidth cap per direction (bytes/s); 0 = none.
    pub bytes_per_sec: u64,
    /// Nothing is forwarded while set.
    pub stalled: bool,
    /// Delay before a half-close is passed on (ms).
    pub slow_close_ms: u64,
}

/// A running proxy for one link.
#[derive(Debug)]
pub struct Link {
    /// Where the proxy listens (the address the dialling node is given).
    pub listen: SocketAddr,
    state: watch::Sender<LinkState>,
    resets: watch::Sender<u64>,
    forwarded: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

/// Largest chunk read per step: small enough that latency and bandwidth apply smoothly.
const CHUNK_BYTES: usize = 16 * 1024;

impl Link {
    /// Starts a proxy on `listen` forwarding to `upstream` with `initial` faults.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, initial: LinkState) -> anyhow::Result<Link> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let (state, state_rx) = watch::channel(initial);
        let (resets, resets_rx) = watch::channel(0u64);
        let forwarded = Arc::new(Mutex::new(0u64));
        let counter = forwarded.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { continue };
                let state = state_rx.clone();
                let resets = resets_rx.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let up = pump(ri, wo, state.clone(), resets.clone(), counter.clone());
                    let down = pump(ro, wi, state, resets, counter);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Ok(Link { listen, state, resets, forwarded, task })
    }

    /// Changes the faults (applies to running connections).
    pub fn set(&self, state: LinkState) {
        self.state.send_replace(state);
    }

    /// The faults now.
    pub fn get(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded_bytes(&self) -> u64 {
        self.forwarded.lock().map(|c| *c).unwrap_or(0)
    }

    /// Drops every connection through the link now (they may reconnect).
    pub fn reset(&self) {
        self.resets.send_modify(|n| *n += 1);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<LinkState>,
    mut resets: watch::Receiver<u64>,
    counter: Arc<Mutex<u64>>,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    resets.mark_unchanged();
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let slow = state.borrow().slow_close_ms;
                    if slow > 0 {
                        tokio::time::sleep(Duration::from_millis(slow)).await;
                    }
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = resets.changed() => {
                debug!("proxy: reset");
                return; // Dropping both halves resets the connection.
            }
        };
        // Wait out a stall (still honouring resets).
        loop {
            let s = *state.borrow();
            if !s.stalled {
                break;
            }
            tokio::select! {
                _ = state.changed() => {}
                _ = resets.changed() => return,
            }
        }
        let s = *state.borrow();
        let mut delay = Duration::from_millis(s.latency_ms);
        if s.jitter_ms > 0 {
            delay += Duration::from_millis(rand::thread_rng().gen_range(0..=s.jitter_ms));
        }
        if s.bytes_per_sec > 0 {
            delay += Duration::from_secs_f64(n as f64 / s.bytes_per_sec as f64);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Some(chunk) = buf.get(..n) else { return };
        if to.write_all(chunk).await.is_err() {
            return;
        }
        if let Ok(mut c) = counter.lock() {
            *c += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn latency_stall_and_reset_apply_to_a_live_connection() {
        let upstream = echo_server().await;
        let link = Link::start(
            "127.0.0.1:0".parse().unwrap(),
            upstream,
            LinkState { latency_ms: 50, ..LinkState::default() },
        )
        .await
        .unwrap();
        let listen = link.listen;
        let mut c = TcpStream::connect(listen).await.unwrap();
        let t = std::time::Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert!(t.elapsed() >= Duration::from_millis(100), "latency applies both ways: {:?}", t.elapsed());

        link.set(LinkState { stalled: true, ..LinkState::default() });
        c.write_all(b"held").await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut buf)).await.is_err(),
            "stalled"
        );
        link.set(LinkState::default());
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"held");

        link.reset();
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "reset closes the connection");
    }
}
