//! [`SeenCache`]: ids known to be stored, remembered in memory so copies coming back cost
//! no store lookup.

use std::collections::{HashSet, VecDeque};

use palisade_types::RecordId;

/// A bounded FIFO set of ids known to be stored.
pub(super) struct SeenCache {
    set: HashSet<RecordId>,
    order: VecDeque<RecordId>,
    capacity: usize,
}

impl SeenCache {
    pub(super) fn new(capacity: usize) -> SeenCache {
        SeenCache { set: HashSet::with_capacity(capacity.min(1 << 16)), order: VecDeque::new(), capacity }
    }

    pub(super) fn contains(&self, id: &RecordId) -> bool {
        self.set.contains(id)
    }

    pub(super) fn insert(&mut self, id: RecordId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}
