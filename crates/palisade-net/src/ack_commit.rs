//! [`AckCommit`]: the group commit of local submissions. A signed record is acknowledged once
//! the store has flushed it and the signing history holds its seq. Rather than every
//! submission flushing and writing the history itself (eight concurrent submitters: up to
//! eight flushes and several history syncs per round, and as many blocking threads waking
//! each other), one of the waiting submitters at a time leads: it flushes the store once and
//! writes the history once for the highest record announced so far, then wakes the others,
//! whose records that covers. The history only ever records what a finished flush covers, so
//! it never runs ahead of a durable record; the next flush may run while it is written.

use std::sync::{Condvar, Mutex};

use palisade_store::{Signed, SigningHistory, Store};

use crate::NetError;

#[derive(Default)]
struct State {
    /// The highest record announced by a waiting submitter (written to the store before).
    announced: Option<Signed>,
    /// The highest record a finished flush covers.
    flushed: Option<Signed>,
    /// The highest seq both flushed and recorded in the signing history: acknowledged.
    durable: u64,
    /// A flush round is running.
    flushing: bool,
    /// A history round is running.
    recording: bool,
    /// Rounds finished, flush and history.
    rounds: u64,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct AckCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl AckCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once `signed` is durable in the store and (with `history`) recorded in it.
    /// Blocking: call from a blocking thread.
    ///
    /// Two stages, each run by one waiting submitter at a time: a flush round covers every
    /// record announced when it starts; a history round records the highest record a
    /// finished flush covers. The next flush may run while the history is written (a
    /// pipeline), but a history round only ever records what a flush has made durable.
    pub(crate) fn commit(
        &self,
        store: &Store,
        history: Option<&SigningHistory>,
        signed: Signed,
    ) -> Result<(), NetError> {
        let seq = signed.seq;
        let mut state = self.lock();
        if state.announced.is_none_or(|a| seq > a.seq) {
            state.announced = Some(signed);
        }
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            let flushed = state.flushed.map_or(0, |f| f.seq);
            if flushed < seq && !state.flushing {
                state.flushing = true;
                let target = state.announced.unwrap_or(signed);
                drop(state);
                // Every record announced so far was written to the store before it was
                // announced: this flush covers them all.
                let result = store.flush();
                state = self.lock();
                state.flushing = false;
                state.rounds += 1;
                if result.is_ok() {
                    if state.flushed.is_none_or(|f| target.seq > f.seq) {
                        state.flushed = Some(target);
                    }
                    if history.is_none() {
                        state.durable = state.durable.max(target.seq);
                    }
                }
                self.done.notify_all();
                result?;
                continue;
            }
            if let (Some(h), Some(target), false) = (history, state.flushed, state.recording) {
                if flushed >= seq {
                    state.recording = true;
                    drop(state);
                    let result = h.record(target);
                    state = self.lock();
                    state.recording = false;
                    state.rounds += 1;
                    if result.is_ok() {
                        state.durable = state.durable.max(target.seq);
                    }
                    self.done.notify_all();
                    result?;
                    continue;
                }
            }
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use palisade_store::{StoreConfig, SIGNING_HISTORY_FILE};
    use palisade_types::{AuthorKey, RecordId};

    use super::*;

    #[test]
    fn every_commit_returns_durable_and_the_history_reaches_the_highest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().join("db"))).unwrap();
        let history = Arc::new(
            SigningHistory::open(&dir.path().join(SIGNING_HISTORY_FILE), AuthorKey([4; 32])).unwrap(),
        );
        let commit = Arc::new(AckCommit::default());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (store, history, commit) = (store.clone(), history.clone(), commit.clone());
                std::thread::spawn(move || {
                    for k in 0..40u64 {
                        let seq = k * 8 + t + 1;
                        let signed = Signed { seq, id: RecordId([(seq % 251) as u8; 32]) };
                        commit.commit(&store, Some(&history), signed).unwrap();
                        // Acknowledged only once the history holds at least this seq.
                        assert!(history.highest().is_some_and(|h| h.seq >= seq));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(history.highest().map(|h| h.seq), Some(320));
        let state = commit.lock();
        // Concurrent commits share rounds (about 7 per round here); never one round more than commits.
        assert!(state.rounds < 640, "{} rounds for 320 commits: nothing was grouped", state.rounds);
        assert_eq!(state.durable, 320);
    }
}
