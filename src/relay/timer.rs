//! One inactivity timer structure for all relays: a min-heap of (deadline, relay slot, leg) with
//! lazy invalidation.
//!
//! A packet does not touch the heap: it only moves its leg's `since`. Each leg has at most one
//! entry (its `armed` flag says whether it has one). When an entry comes due, the leg is looked at:
//! if it was active meanwhile, the entry goes back in at the real deadline; if it is still silent
//! and expected to send, it is reported. So the heap top may be earlier than any real deadline
//! (never later), and each early wake-up costs one pop and one push for that leg: at most one per
//! leg per inactivity period, whatever the packet rate. Entries of removed relays carry an older
//! incarnation and are dropped when they come up.

use super::Leg;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

/// One heap entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) deadline: Instant,
    /// Which relay: its slot, and the incarnation that armed the entry (slots are reused).
    pub(super) slot: usize,
    pub(super) incarnation: u64,
    pub(super) leg: Leg,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.incarnation, self.leg as u8).cmp(&(other.deadline, other.incarnation, other.leg as u8))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The heap.
#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    pub(super) fn push(&mut self, entry: Entry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest entry's deadline (possibly stale: early, never late).
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.deadline)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.deadline <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the entries `live` rejects (those of removed relays), so churn does not grow the heap.
    pub(super) fn retain(&mut self, mut live: impl FnMut(&Entry) -> bool) {
        self.heap.retain(|Reverse(e)| live(e));
    }
}
