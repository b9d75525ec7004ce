//! [`StateWriter`]: node state (bans, the peer book) written off the caller's thread.
//!
//! A ban decided on the network event loop, or a peer-book update from identify, must not
//! cost the loop a sled write and an fsync: a ban storm (a thousand Sybil peers banned in a
//! second) would otherwise stall every connection of the node. Callers queue the change and
//! return; one thread writes whatever is queued and flushes once per batch (group commit).
//!
//! Changes are coalesced by key (the last change to a ban target or a peer wins), so the
//! queue holds at most one entry per key and is bounded by [`MAX_PENDING_STATE_CHANGES`]:
//! beyond it a change is refused ([`QueueFull`]) and counted, and the caller keeps the state
//! in memory (a ban still applies; it is just not persisted). A caller that needs the change
//! durable (an admin's ban) waits for it with [`StateWriter::wait_written`], with a timeout.
//! Dropping the last handle (or [`StateWriter::close`]) writes what is queued, flushes and
//! stops the thread.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{BanRecord, PeerBookEntry, Store};

/// Most distinct keys (ban targets plus peers) with a change queued and not yet written.
pub const MAX_PENDING_STATE_CHANGES: usize = 65_536;

/// The queue was full: the change was not queued (see [`MAX_PENDING_STATE_CHANGES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node-state write queue is full ({MAX_PENDING_STATE_CHANGES} changes); the change applies in memory only")]
pub struct QueueFull;

/// Why [`StateWriter::wait_written`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The change was not written within the timeout (a slow or stalled disk).
    #[error("the change was not written within {0:?}; the disk may be slow or stalled")]
    Timeout(Duration),
    /// Writing or flushing the batch with the change failed (see the log).
    #[error("writing the change failed; see the node log for the storage error")]
    Failed,
}

/// Counters of the writer, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateWriterStats {
    /// Changes queued and not yet written.
    pub pending: usize,
    /// Changes refused because the queue was full.
    pub refused: u64,
    /// Batches whose write or flush failed.
    pub failed_batches: u64,
    /// Batches written and flushed.
    pub batches: u64,
}

/// A ticket for one queued change: pass it to [`StateWriter::wait_written`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

struct Pending {
    /// `Some` = put, `None` = remove, by ban target.
    bans: HashMap<String, Option<BanRecord>>,
    peers: HashMap<String, PeerBookEntry>,
    /// Ticket of the latest queued change.
    queued: u64,
    /// Every change up to this ticket is written (or its batch failed).
    written: u64,
    /// Tickets in this range (exclusive start, inclusive end) were in a failed batch.
    failed: (u64, u64),
    closed: bool,
    stats: StateWriterStats,
    /// Most distinct keys queued at once ([`MAX_PENDING_STATE_CHANGES`]; smaller in tests).
    max_pending: usize,
    /// Tests hold the writer back to fill its queue deterministically.
    #[cfg(test)]
    paused: bool,
}

impl Pending {
    fn len(&self) -> usize {
        self.bans.len() + self.peers.len()
    }

    #[cfg(test)]
    fn is_paused(&self) -> bool {
        self.paused
    }

    #[cfg(not(test))]
    fn is_paused(&self) -> bool {
        false
    }
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a change is queued or the writer closes.
    work: Condvar,
    /// Signalled when a batch is written.
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the writer when the last [`StateWriter`] clone is dropped.
struct Owner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Owner {
    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("the node-state writer thread panicked");
            }
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.close();
    }
}

/// Queues ban and peer-book changes for the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct StateWriter {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for StateWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWriter").field("stats", &self.stats()).finish()
    }
}

impl StateWriter {
    /// Starts the writer thread (`palisade-state`) over `store`.
    pub fn start(store: Store) -> std::io::Result<StateWriter> {
        Self::start_with_cap(store, MAX_PENDING_STATE_CHANGES)
    }

    fn start_with_cap(store: Store, max_pending: usize) -> std::io::Result<StateWriter> {
        let pending = Pending {
            bans: HashMap::new(),
            peers: HashMap::new(),
            queued: 0,
            written: 0,
            failed: (0, 0),
            closed: false,
            stats: StateWriterStats::default(),
            max_pending,
            #[cfg(test)]
            paused: false,
        };
        let shared =
            Arc::new(Shared { pending: Mutex::new(pending), work: Condvar::new(), written: Condvar::new() });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("palisade-state".into())
            .spawn(move || write_loop(&thread_shared, &store))?;
        Ok(StateWriter { owner: Arc::new(Owner { shared, thread: Mutex::new(Some(thread)) }) })
    }

    fn queue(&self, change: impl FnOnce(&mut Pending) -> bool) -> Result<Ticket, QueueFull> {
        let shared = &self.owner.shared;
        let mut p = shared.lock();
        if p.closed {
            p.stats.refused += 1;
            return Err(QueueFull);
        }
        if !change(&mut p) {
            p.stats.refused += 1;
            return Err(QueueFull);
        }
        p.queued += 1;
        let ticket = Ticket(p.queued);
        drop(p);
        shared.work.notify_one();
        Ok(ticket)
    }

    /// Queues a ban to persist (replacing any queued change to the same target).
    pub fn put_ban(&self, ban: BanRecord) -> Result<Ticket, QueueFull> {
        self.queue(|p| {
            // A change to a queued key replaces it (no growth); a new key needs room.
            if p.len() >= p.max_pending && !p.bans.contains_key(&ban.target) {
                return false;
            }
            p.bans.insert(ban.target.clone(), Some(ban));
            true
        })
    }

    /// Queues the deletion of a persisted ban.
    pub fn remove_ban(&self, target: String) -> Result<Ticket, QueueFull> {
        self.queue(|p| {
            if p.len() >= p.max_pending && !p.bans.contains_key(&target) {
                return false;
            }
            p.bans.insert(target, None);
            true
        })
    }

    /// Queues a peer-book update (the latest for a peer wins).
    pub fn upsert_peer(&self, entry: PeerBookEntry) -> Result<Ticket, QueueFull> {
        self.queue(|p| {
            if p.len() >= p.max_pending && !p.peers.contains_key(&entry.peer_id) {
                return false;
            }
            p.peers.insert(entry.peer_id.clone(), entry);
            true
        })
    }

    /// Waits until the change of `ticket` is written and flushed, at most `timeout`.
    pub fn wait_written(&self, ticket: Ticket, timeout: Duration) -> Result<(), WaitError> {
        let shared = &self.owner.shared;
        let deadline = Instant::now() + timeout;
        let mut p = shared.lock();
        while p.written < ticket.0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout(timeout));
            }
            p = shared.written.wait_timeout(p, left).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        let (after, upto) = p.failed;
        if ticket.0 > after && ticket.0 <= upto {
            return Err(WaitError::Failed);
        }
        Ok(())
    }

    /// Waits until every change queued so far is written and flushed, at most `timeout`
    /// (tests and fuzzing read the store after it; shutdown uses [`close`](Self::close)).
    pub fn wait_idle(&self, timeout: Duration) -> Result<(), WaitError> {
        let queued = Ticket(self.owner.shared.lock().queued);
        self.wait_written(queued, timeout)
    }

    /// Writes what is queued, flushes and stops the thread; later changes are refused.
    /// Returns once the thread has stopped.
    pub fn close(&self) {
        self.owner.close();
    }

    /// The writer's counters.
    pub fn stats(&self) -> StateWriterStats {
        let p = self.owner.shared.lock();
        StateWriterStats { pending: p.len(), ..p.stats }
    }
}

type Batch = (HashMap<String, Option<BanRecord>>, HashMap<String, PeerBookEntry>, u64);

fn write_loop(shared: &Shared, store: &Store) {
    loop {
        let (bans, peers, upto): Batch = {
            let mut p = shared.lock();
            while (p.len() == 0 || p.is_paused()) && !p.closed {
                p = shared.work.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if p.len() == 0 && p.closed {
                return;
            }
            (std::mem::take(&mut p.bans), std::mem::take(&mut p.peers), p.queued)
        };
        let ok = write_batch(store, bans, peers);
        let mut p = shared.lock();
        if ok {
            p.stats.batches += 1;
        } else {
            p.stats.failed_batches += 1;
            p.failed = (p.written, upto);
        }
        p.written = upto;
        drop(p);
        shared.written.notify_all();
    }
}

fn write_batch(
    store: &Store,
    bans: HashMap<String, Option<BanRecord>>,
    peers: HashMap<String, PeerBookEntry>,
) -> bool {
    let mut ok = true;
    for (target, ban) in bans {
        let r = match ban {
            Some(ban) => store.put_ban(&ban),
            None => store.remove_ban(&target).map(|_| ()),
        };
        if let Err(e) = r {
            tracing::warn!(%target, error = %e, "persisting a ban change failed; it applies in memory");
            ok = false;
        }
    }
    for (peer, entry) in peers {
        if let Err(e) = store.upsert_peer(&entry) {
            tracing::debug!(%peer, error = %e, "peer book update failed");
            ok = false;
        }
    }
    if let Err(e) = store.flush() {
        tracing::warn!(error = %e, "flushing node state failed");
        ok = false;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    fn ban(target: &str, until_ms: u64) -> BanRecord {
        BanRecord { target: target.into(), until_ms, created_ms: 1, reason: "test".into() }
    }

    #[test]
    fn changes_are_written_coalesced_and_durable_after_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
        let w = StateWriter::start(store.clone()).unwrap();
        w.put_ban(ban("peer:a", 10)).unwrap();
        w.put_ban(ban("peer:b", 20)).unwrap();
        let last = w.remove_ban("peer:a".into()).unwrap();
        let peer = PeerBookEntry {
            peer_id: "p1".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            last_seen_ms: 5,
        };
        w.upsert_peer(peer.clone()).unwrap();
        let t = w.upsert_peer(PeerBookEntry { last_seen_ms: 6, ..peer }).unwrap();
        assert!(t > last);
        w.wait_written(t, Duration::from_secs(10)).unwrap();
        let bans: Vec<String> = store.bans().unwrap().into_iter().map(|b| b.target).collect();
        assert_eq!(bans, vec!["peer:b".to_string()]);
        let book = store.peer_book().unwrap();
        assert_eq!(book.len(), 1);
        assert_eq!(book[0].last_seen_ms, 6, "the latest update of a peer wins");
        assert_eq!(w.stats().pending, 0);
    }

    #[test]
    fn dropping_the_last_handle_writes_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&StoreConfig::new(&path)).unwrap();
            let w = StateWriter::start(store).unwrap();
            for i in 0..100 {
                w.put_ban(ban(&format!("peer:{i}"), 10)).unwrap();
            }
        }
        let store = Store::open(&StoreConfig::new(&path)).unwrap();
        assert_eq!(store.bans().unwrap().len(), 100);
    }

    #[test]
    fn a_full_queue_refuses_new_keys_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
        let w = StateWriter::start_with_cap(store.clone(), 2).unwrap();
        w.owner.shared.lock().paused = true;
        w.put_ban(ban("peer:a", 10)).unwrap();
        w.put_ban(ban("peer:b", 10)).unwrap();
        assert_eq!(w.put_ban(ban("peer:c", 10)), Err(QueueFull), "a third key over the cap of 2");
        // A change to a queued key still fits: it replaces the queued one.
        w.remove_ban("peer:a".into()).unwrap();
        assert_eq!(w.stats(), StateWriterStats { pending: 2, refused: 1, ..StateWriterStats::default() });
        w.owner.shared.lock().paused = false;
        w.owner.shared.work.notify_all();
        w.wait_idle(Duration::from_secs(10)).unwrap();
        let bans: Vec<String> = store.bans().unwrap().into_iter().map(|b| b.target).collect();
        assert_eq!(bans, vec!["peer:b".to_string()]);
    }

    #[test]
    fn a_closed_writer_refuses_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
        let w = StateWriter::start(store).unwrap();
        w.close();
        assert_eq!(w.put_ban(ban("peer:x", 1)), Err(QueueFull));
        assert_eq!(w.stats().refused, 1);
    }
}
