//! Send pacing for a constant-rate media stream: packet `n` is due at `start + n * interval`.
//!
//! The schedule is computed from the start instant and the packet index, never as "last send +
//! 20 ms", so late wake-ups of the driver do not accumulate into drift: a stream paced for ten
//! minutes sends exactly 30,000 packets of 20 ms, the last due at `start + 599.98 s`. This matters
//! because the receiver plays at the sender's nominal rate (RFC 3550 §6.4.1 jitter assumes the
//! media clock, and RFC 3551 §4.2 the packetization interval, are steady).
//!
//! Sans-IO: [`Pacer::poll_timeout`] says when to wake up, [`Pacer::poll_due`] hands out each due
//! slot in turn. A driver that was asleep for a long time gets the missed slots back to back, up to
//! [`Pacer::with_max_burst`]; older ones are skipped (counted) and the schedule stays on its grid.

use super::FRAME_DURATION;
use std::time::{Duration, Instant};

/// A due send slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Packet index from the start of the stream: 0, 1, 2, ...
    pub index: u64,
    /// When it was due: `start + index * interval`.
    pub due: Instant,
}

/// Hands out send instants on a fixed grid.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    interval: Duration,
    next: u64,
    max_burst: u64,
    skipped: u64,
}

impl Pacer {
    /// A pacer whose packet 0 is due at `start`, one packet every `interval` (must be non-zero;
    /// zero is taken as 1 ns so the schedule still advances).
    pub fn new(start: Instant, interval: Duration) -> Pacer {
        Pacer { start, interval: interval.max(Duration::from_nanos(1)), next: 0, max_burst: u64::MAX, skipped: 0 }
    }

    /// A pacer for 20 ms frames.
    pub fn every_frame(start: Instant) -> Pacer {
        Pacer::new(start, FRAME_DURATION)
    }

    /// Limits catching up: if more than `max_burst` slots are overdue at once, the oldest are
    /// skipped so that only the newest `max_burst` are handed out (at least 1).
    pub fn with_max_burst(mut self, max_burst: u64) -> Pacer {
        self.max_burst = max_burst.max(1);
        self
    }

    /// The instant slot `index` is due, or `None` past the range of `Instant`.
    pub fn due_at(&self, index: u64) -> Option<Instant> {
        let nanos = self.interval.as_nanos().checked_mul(u128::from(index))?;
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        // The remainder is below 10^9 and fits in u32.
        self.start.checked_add(Duration::new(secs, (nanos % 1_000_000_000) as u32))
    }

    /// When the next slot is due: the driver sleeps until then. `None` only past the range of
    /// `Instant`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due_at(self.next)
    }

    /// The next slot if it is due at `now`, advancing past it; call until `None`. Slots beyond the
    /// burst limit are skipped first.
    #[must_use]
    pub fn poll_due(&mut self, now: Instant) -> Option<Slot> {
        let due = self.due_at(self.next)?;
        if due > now {
            return None;
        }
        // Index of the last slot due at `now`: floor((now - start) / interval).
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let last_due = u64::try_from(elapsed / self.interval.as_nanos()).unwrap_or(u64::MAX);
        let overdue = last_due.saturating_sub(self.next).saturating_add(1);
        if overdue > self.max_burst {
            let skip = overdue - self.max_burst;
            self.skipped += skip;
            self.next += skip;
        }
        let slot = Slot { index: self.next, due: self.due_at(self.next)? };
        self.next += 1;
        Some(slot)
    }

    /// Index of the next slot to be handed out (the number handed out or skipped so far).
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Slots skipped because the driver fell more than the burst limit behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}
