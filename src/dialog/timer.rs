//! Dialog timers: a named table per dialog and one heap for the whole [`crate::dialog::Dialogs`] set.
//!
//! Each dialog keeps a fixed array of `Option<Instant>`, one per [`DialogTimer`] (quinn's
//! `TimerTable`). The set keeps a single `BinaryHeap` of `(deadline, slot, timer)`; a heap item is
//! live only while the dialog's table still holds that very deadline, so re-arming or stopping a
//! timer never searches the heap (lazy deletion). Stale heads are pruned after every input, so
//! [`TimerHeap::peek`] is exact.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Why a dialog wants to wake up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DialogTimer {
    /// Retransmit our 2xx to an INVITE: T1, 2*T1, ... capped at T2 (RFC 3261 §13.3.1.4).
    Retransmit2xx,
    /// No ACK for our 2xx within 64*T1: end the session with a BYE (§13.3.1.4).
    NoAck,
    /// We are the refresher: send a session refresh at half the interval (RFC 4028 §10).
    Refresh,
    /// The session expires (RFC 4028 §10): without a refresh, the non-refresher ends it at
    /// interval - min(32 s, interval/3); the refresher, whose refresh got no answer, at the interval.
    Expire,
    /// Send an OPTIONS keep-alive inside the dialog.
    Ping,
    /// Retry a re-INVITE or UPDATE that met a 491 (RFC 3261 §14.1).
    GlareRetry,
    /// Forget a terminated dialog (it lingers 64*T1 to absorb stragglers).
    Purge,
    /// Retransmit our reliable provisional response: T1, 2*T1, 4*T1 ... until its PRACK, giving
    /// up after 64*T1 (RFC 3262 §3).
    RetransmitRel,
}

impl DialogTimer {
    const COUNT: usize = 8;
    const ALL: [DialogTimer; DialogTimer::COUNT] = [
        DialogTimer::Retransmit2xx,
        DialogTimer::NoAck,
        DialogTimer::Refresh,
        DialogTimer::Expire,
        DialogTimer::Ping,
        DialogTimer::GlareRetry,
        DialogTimer::Purge,
        DialogTimer::RetransmitRel,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The deadlines of one dialog, by timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimerTable([Option<Instant>; DialogTimer::COUNT]);

impl TimerTable {
    pub(crate) fn get(&self, t: DialogTimer) -> Option<Instant> {
        self.0[t.index()]
    }

    pub(crate) fn set(&mut self, t: DialogTimer, at: Instant) {
        self.0[t.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, t: DialogTimer) {
        self.0[t.index()] = None;
    }

    /// Stops every timer.
    pub(crate) fn clear(&mut self) {
        self.0 = [None; DialogTimer::COUNT];
    }

    /// The earliest armed timer.
    pub(crate) fn soonest(&self) -> Option<(Instant, DialogTimer)> {
        DialogTimer::ALL.iter().filter_map(|&t| self.get(t).map(|at| (at, t))).min()
    }
}

/// One heap for the timers of every dialog, with lazy deletion.
#[derive(Debug, Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, usize, DialogTimer)>>,
}

impl TimerHeap {
    /// Records that `slot`'s table now holds `at` for `t`. Call after every `TimerTable::set`.
    pub(crate) fn push(&mut self, slot: usize, t: DialogTimer, at: Instant) {
        self.heap.push(Reverse((at, slot, t)));
    }

    /// The earliest item, live or stale.
    pub(crate) fn peek(&self) -> Option<(Instant, usize, DialogTimer)> {
        self.heap.peek().map(|Reverse(item)| *item)
    }

    /// Items held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Removes the earliest item.
    pub(crate) fn pop(&mut self) -> Option<(Instant, usize, DialogTimer)> {
        self.heap.pop().map(|Reverse(item)| item)
    }

    /// Drops stale heads: items whose table no longer holds their deadline. `live` answers that.
    pub(crate) fn prune(&mut self, live: impl Fn(usize, DialogTimer, Instant) -> bool) {
        while let Some((at, slot, t)) = self.peek() {
            if live(slot, t, at) {
                break;
            }
            self.heap.pop();
        }
    }
}
