//! [`Lanes`]: a bounded queue with a small priority lane in front. Records this node signed
//! take the priority lane through the verify workers and the store thread, so an operator's
//! submission waits for the record ahead of it, not for thousands of gossiped records queued
//! under a flood (it is still checked, verified and written like any other record).

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TrySendError};

/// Capacity of a priority lane. Local submissions are serialised per node (the feed writer's
/// lock), so a handful is all it ever holds.
pub(super) const PRIORITY_LANE: usize = 64;

/// The sending side.
pub(super) struct Lanes<T> {
    normal: Sender<T>,
    priority: Sender<T>,
}

impl<T> Clone for Lanes<T> {
    fn clone(&self) -> Self {
        Lanes { normal: self.normal.clone(), priority: self.priority.clone() }
    }
}

/// The receiving side.
pub(super) struct LaneRx<T> {
    normal: Receiver<T>,
    priority: Receiver<T>,
}

impl<T> Clone for LaneRx<T> {
    fn clone(&self) -> Self {
        LaneRx { normal: self.normal.clone(), priority: self.priority.clone() }
    }
}

/// What a receive found.
pub(super) enum Received<T> {
    Job(T),
    /// Nothing within the wait.
    Timeout,
    /// Both lanes closed and empty.
    Closed,
}

/// A queue of `capacity` with a priority lane of [`PRIORITY_LANE`].
pub(super) fn lanes<T>(capacity: usize) -> (Lanes<T>, LaneRx<T>) {
    let (normal, normal_rx) = crossbeam_channel::bounded(capacity);
    let (priority, priority_rx) = crossbeam_channel::bounded(PRIORITY_LANE);
    (Lanes { normal, priority }, LaneRx { normal: normal_rx, priority: priority_rx })
}

impl<T> Lanes<T> {
    pub(super) fn try_send(&self, job: T, priority: bool) -> Result<(), TrySendError<T>> {
        if priority {
            self.priority.try_send(job)
        } else {
            self.normal.try_send(job)
        }
    }

    /// Blocks while the lane is full; `Err` when the receivers are gone.
    pub(super) fn send(&self, job: T, priority: bool) -> Result<(), T> {
        let lane = if priority { &self.priority } else { &self.normal };
        lane.send(job).map_err(|e| e.into_inner())
    }
}

impl<T> LaneRx<T> {
    /// The next job without waiting, the priority lane first.
    pub(super) fn try_recv(&self) -> Option<T> {
        self.priority.try_recv().or_else(|_| self.normal.try_recv()).ok()
    }

    /// The next job, the priority lane first; waits at most `wait` (`None`: until a job comes
    /// or both lanes are closed).
    pub(super) fn recv(&self, wait: Option<Duration>) -> Received<T> {
        if let Some(job) = self.try_recv() {
            return Received::Job(job);
        }
        let mut select = Select::new();
        let priority = select.recv(&self.priority);
        let normal = select.recv(&self.normal);
        let op = match wait {
            Some(w) => match select.select_timeout(w) {
                Ok(op) => op,
                Err(_) => return Received::Timeout,
            },
            None => select.select(),
        };
        // A closed lane is always "ready": once one is closed, wait on the other alone.
        match op.index() {
            i if i == priority => match op.recv(&self.priority) {
                Ok(job) => Received::Job(job),
                Err(_) => single(&self.normal, wait),
            },
            i if i == normal => match op.recv(&self.normal) {
                Ok(job) => Received::Job(job),
                Err(_) => single(&self.priority, wait),
            },
            _ => Received::Closed,
        }
    }
}

fn single<T>(rx: &Receiver<T>, wait: Option<Duration>) -> Received<T> {
    match wait {
        Some(w) => match rx.recv_timeout(w) {
            Ok(job) => Received::Job(job),
            Err(RecvTimeoutError::Timeout) => Received::Timeout,
            Err(RecvTimeoutError::Disconnected) => Received::Closed,
        },
        None => rx.recv().map(Received::Job).unwrap_or(Received::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_priority_lane_goes_first_and_both_drain_before_closed() {
        let (tx, rx) = lanes::<u32>(8);
        for n in 0..3 {
            tx.try_send(n, false).expect("room");
        }
        tx.try_send(100, true).expect("room");
        assert!(matches!(rx.recv(None), Received::Job(100)));
        drop(tx);
        let rest: Vec<u32> = std::iter::from_fn(|| match rx.recv(Some(Duration::from_millis(10))) {
            Received::Job(n) => Some(n),
            _ => None,
        })
        .collect();
        assert_eq!(rest, vec![0, 1, 2]);
        assert!(matches!(rx.recv(None), Received::Closed));
    }

    #[test]
    fn an_empty_open_queue_times_out() {
        let (_tx, rx) = lanes::<u32>(8);
        assert!(matches!(rx.recv(Some(Duration::from_millis(5))), Received::Timeout));
    }
}
