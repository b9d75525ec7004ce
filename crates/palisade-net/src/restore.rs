//! [`restore_backup`]: a backup document's records, bans and peer book written into an empty
//! store (`palisade backup restore`, node stopped). The records take the one road every
//! record takes: the ingest pipeline's checks, verify workers and store thread, with the
//! import origin (an administrator's file: no peer budgets, no penalty), driven by an
//! [`Ingestor`]. So the equivocation proofs, anomaly states, indexes and the quota are
//! rebuilt by the code that built them, and a record the network would refuse is refused
//! here too. The caller checks the document first ([`BackupReader::verify`]) and handles the
//! key, the signing history and the manifest.

use std::io::BufRead;

use palisade_guard::{Guard, GuardConfig};
use palisade_store::{BackupItem, BackupReader, RestoreError, RestoreReport, Store};

use crate::{Decision, Ingestor, NetConfig, PipelineConfig, Reason};

/// Most records in the pipeline at once during a restore (collected before more are
/// admitted, so the verify queue never sheds them).
pub const RESTORE_IN_FLIGHT: usize = 2048;

/// How many records between two calls of the progress callback.
const PROGRESS_EVERY: u64 = 10_000;

/// Writes every item of `reader` into `store` (see the module docs); `now_ms` is the clock
/// of the record checks; `progress` is called with the records read so far.
pub fn restore_backup<R: BufRead>(
    store: &Store,
    reader: &mut BackupReader<R>,
    now_ms: u64,
    mut progress: impl FnMut(u64),
) -> Result<RestoreReport, RestoreError> {
    let mut registry = prometheus_client::registry::Registry::default();
    let guard = Guard::new(GuardConfig::default(), store.clone(), &mut registry)
        .map_err(|e| RestoreError::Setup(e.to_string()))?;
    let cfg = PipelineConfig::from_net(&NetConfig::default());
    let mut ingest = Ingestor::start(cfg, store.clone(), guard, &mut registry)
        .map_err(|e| RestoreError::Setup(e.to_string()))?;
    let mut report = RestoreReport::default();
    let result = feed(store, reader, now_ms, &mut ingest, &mut report, &mut progress);
    for decision in ingest.shutdown() {
        tally(&mut report, Some(&decision), decision.outcome);
    }
    result?;
    store.flush()?;
    Ok(report)
}

fn feed<R: BufRead>(
    store: &Store,
    reader: &mut BackupReader<R>,
    now_ms: u64,
    ingest: &mut Ingestor,
    report: &mut RestoreReport,
    progress: &mut impl FnMut(u64),
) -> Result<(), RestoreError> {
    let mut read = 0u64;
    while let Some(item) = reader.next_item().map_err(RestoreError::Document)? {
        match item {
            BackupItem::Record(wire) => {
                read += 1;
                admit(ingest, wire, now_ms, report);
                if read.is_multiple_of(PROGRESS_EVERY) {
                    progress(read);
                }
            }
            BackupItem::Ban(ban) => {
                store.put_ban(&ban)?;
                report.bans += 1;
            }
            BackupItem::Peer(peer) => {
                store.upsert_peer(&peer)?;
                report.peers += 1;
            }
        }
    }
    progress(read);
    Ok(())
}

/// Admits one record, first collecting decisions while the pipeline holds
/// [`RESTORE_IN_FLIGHT`]; a record shed by a full verify queue waits for a decision and is
/// offered again.
fn admit(ingest: &mut Ingestor, wire: Vec<u8>, now_ms: u64, report: &mut RestoreReport) {
    while ingest.in_flight() >= RESTORE_IN_FLIGHT {
        collect_one(ingest, report);
    }
    loop {
        match ingest.admit_import(wire.clone(), now_ms) {
            None => return,
            Some(Reason::VerifyQueueFull) if ingest.in_flight() > 0 => collect_one(ingest, report),
            Some(reason) => return tally(report, None, reason),
        }
    }
}

fn collect_one(ingest: &mut Ingestor, report: &mut RestoreReport) {
    if let Some(decision) = ingest.next_blocking() {
        tally(report, Some(&decision), decision.outcome);
    }
}

fn tally(report: &mut RestoreReport, decision: Option<&Decision>, reason: Reason) {
    match reason {
        Reason::Stored => report.stored += 1,
        // Two copies of one record in the file.
        Reason::Duplicate | Reason::CopiesInFlight => report.duplicates += 1,
        other => {
            let which = decision.map_or_else(|| "a record".to_string(), |d| format!("record {}", d.id));
            report.refuse(format!("{which}: {}", other.label()));
        }
    }
}
