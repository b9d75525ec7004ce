//! [`Ingestor`]: the pipeline without a swarm.

use std::thread::JoinHandle;

use libp2p::gossipsub::MessageId;
use libp2p::PeerId;
use palisade_guard::Guard;
use palisade_store::Store;
use palisade_types::RecordId;
use tokio::sync::mpsc;
use tracing::error;

use super::{Finished, Origin, Pipeline, PipelineConfig, ProofAdmission};
use crate::metrics::{IngestStats, NetMetrics};
use crate::reason::Reason;
use crate::topics::TopicKind;

/// A decision about one admitted record, as an [`Ingestor`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The record id.
    pub id: RecordId,
    /// The peer the record was admitted from (always set for what an `Ingestor` admits).
    pub peer: Option<PeerId>,
    /// What happened to it.
    pub outcome: Reason,
}

/// The ingest pipeline without a swarm: the very `Pipeline` the event loop runs (same
/// front checks, verify workers, store thread and group commit), driven by the caller.
/// For benchmarks (`palisade-chaos bench`), fuzzing and tools that feed records in-process.
///
/// The thread that calls [`admit`](Ingestor::admit) plays the event loop: front checks run on
/// it, signature batches on the worker threads, writes on the store thread. Decisions made
/// off that thread come back through [`try_next`](Ingestor::try_next) /
/// [`next_blocking`](Ingestor::next_blocking); collect them, because the workers stop when
/// that queue is full (as they would wait for a busy event loop). Rejections penalise the
/// sending peer in the guard exactly as on the network, so a flooding peer ends up banned
/// (its messages are then refused by `Guard::admit_message`); nothing is gossiped.
///
/// ```no_run
/// # fn demo(store: palisade_store::Store, guard: palisade_guard::Guard, bytes: Vec<u8>) {
/// use palisade_net::{Ingestor, NetConfig, PipelineConfig};
/// let mut registry = prometheus_client::registry::Registry::default();
/// let cfg = PipelineConfig::from_net(&NetConfig::default());
/// let mut ingest = Ingestor::start(cfg, store, guard, &mut registry).unwrap();
/// let peer = libp2p::PeerId::random();
/// let topic = Some(palisade_net::topics::TopicKind::Attestations);
/// match ingest.admit(bytes, peer, topic, palisade_net::now_ms()) {
///     Some(outcome) => println!("decided at once: {outcome:?}"),
///     None => println!("queued: {:?}", ingest.next_blocking()),
/// }
/// ingest.shutdown();
/// # }
/// ```
pub struct Ingestor {
    pipeline: Option<Pipeline>,
    finished: mpsc::Receiver<Finished>,
    metrics: NetMetrics,
    guard: Guard,
    /// Records admitted by [`admit_import`](Ingestor::admit_import) (their origin's index).
    imported: usize,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor").field("in_flight", &self.in_flight()).finish()
    }
}

impl Ingestor {
    /// Starts the worker threads; metrics are registered under `registry`.
    pub fn start(
        cfg: PipelineConfig,
        store: Store,
        guard: Guard,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Ingestor, crate::NetError> {
        let metrics = NetMetrics::new(registry);
        let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (pipeline, finished) = Pipeline::start(cfg, store, guard.clone(), metrics.clone(), live)
            .map_err(|e| crate::NetError::Setup(format!("starting pipeline threads: {e}")))?;
        Ok(Ingestor { pipeline: Some(pipeline), finished, metrics, guard, imported: 0 })
    }

    /// Runs the front checks on `bytes` from `peer`. `topic` set = the record arrived by
    /// gossip on that topic (gossip-only rules apply); `None` = it arrived in a sync response.
    /// `Some(outcome)` = decided now; `None` = queued, its [`Decision`] comes later.
    pub fn admit(
        &mut self,
        bytes: Vec<u8>,
        peer: PeerId,
        topic: Option<TopicKind>,
        now_ms: u64,
    ) -> Option<Reason> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Some(Reason::VerifyQueueFull);
        };
        let origin = match topic {
            Some(_) => Origin::Gossip { message_id: MessageId::new(&[]), source: peer },
            None => Origin::Sync { peer },
        };
        let outcome = pipeline.admit(bytes, origin.clone(), topic, now_ms);
        if let Some(reason) = outcome {
            self.report(&origin, reason);
        }
        outcome
    }

    /// Admits a record handed in by an administrator (a backup being restored, an import):
    /// the import origin, as the admin API's `POST /v1/import` (every record check, no peer
    /// budgets, no penalty). `Some(reason)` = decided now; `None` = queued.
    pub fn admit_import(&mut self, bytes: Vec<u8>, now_ms: u64) -> Option<Reason> {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Some(Reason::VerifyQueueFull);
        };
        self.imported += 1;
        let origin = Origin::Import { batch: 0, index: self.imported, expected_id: None };
        let outcome = pipeline.admit(bytes, origin.clone(), None, now_ms);
        if let Some(reason) = outcome {
            self.report(&origin, reason);
        }
        outcome
    }

    /// Admits an equivocation proof message from `peer` as the event loop does (proof
    /// budget, pairing check, both halves through the record checks). `Some(reason)` =
    /// decided now; `None` = its halves are queued and each comes back as a [`Decision`].
    pub fn admit_proof(&mut self, data: &[u8], peer: PeerId, now_ms: u64) -> Option<Reason> {
        let Some(pipeline) = self.pipeline.as_mut() else { return Some(Reason::VerifyQueueFull) };
        let origin = Origin::Proof { message_id: MessageId::new(&[]), source: peer };
        match pipeline.admit_proof(data, &origin, now_ms) {
            ProofAdmission::Decided(reason) => {
                // As the event loop: counted, and the sender penalised once for the proof.
                self.report(&origin, reason);
                if let Some(penalty) = reason.penalty() {
                    let _ = self.guard.penalize(&peer, None, penalty);
                }
                Some(reason)
            }
            ProofAdmission::Queued(_) => None,
        }
    }

    /// Counts a decision and penalises the sender, as the event loop does.
    fn report(&self, origin: &Origin, reason: Reason) {
        self.metrics.count(origin.source_label(), reason);
        if let (Some(penalty), Some(peer)) = (origin.penalty(reason), origin.peer()) {
            let _ = self.guard.penalize(&peer, None, penalty);
        }
    }

    /// Records queued and not yet decided.
    pub fn in_flight(&self) -> usize {
        self.pipeline.as_ref().map(|p| p.in_flight_len()).unwrap_or(0)
    }

    /// The next decision, if one is ready.
    pub fn try_next(&mut self) -> Option<Decision> {
        let f = self.finished.try_recv().ok()?;
        Some(self.decided(f))
    }

    /// Waits for the next decision; `None` at once when nothing is in flight. Blocks the
    /// thread: call it from a plain thread, not from async code (use [`next`](Self::next)).
    pub fn next_blocking(&mut self) -> Option<Decision> {
        if self.in_flight() == 0 {
            return self.try_next();
        }
        let f = self.finished.blocking_recv()?;
        Some(self.decided(f))
    }

    /// Waits for the next decision; `None` at once when nothing is in flight.
    pub async fn next(&mut self) -> Option<Decision> {
        if self.in_flight() == 0 {
            return self.try_next();
        }
        let f = self.finished.recv().await?;
        Some(self.decided(f))
    }

    fn decided(&mut self, f: Finished) -> Decision {
        if let Some(p) = self.pipeline.as_mut() {
            p.on_finished(&f);
        }
        self.report(&f.origin, f.reason);
        Decision { id: f.id, peer: f.origin.peer(), outcome: f.reason }
    }

    /// Ingest counters so far.
    pub fn stats(&self) -> IngestStats {
        self.metrics.snapshot()
    }

    /// The pipeline's metrics.
    pub fn metrics(&self) -> &NetMetrics {
        &self.metrics
    }

    /// Drains the pipeline (every queued record decided, the store flushed), stops the
    /// threads, and returns the decisions not collected yet. Blocks: call it from a plain
    /// thread (or `spawn_blocking`), not from async code.
    pub fn shutdown(mut self) -> Vec<Decision> {
        let mut out = Vec::new();
        if let Some(p) = self.pipeline.take() {
            let mut p = p;
            p.verify_tx = None;
            let threads: Vec<JoinHandle<()>> = p.threads.drain(..).collect();
            // Keep collecting while the threads finish, so none waits on a full channel.
            let joiner = std::thread::spawn(move || {
                for t in threads {
                    if t.join().is_err() {
                        error!("a pipeline thread panicked");
                    }
                }
            });
            while let Some(f) = self.finished.blocking_recv() {
                p.on_finished(&f);
                self.report(&f.origin, f.reason);
                out.push(Decision { id: f.id, peer: f.origin.peer(), outcome: f.reason });
            }
            if joiner.join().is_err() {
                error!("pipeline joiner panicked");
            }
        }
        out
    }
}
