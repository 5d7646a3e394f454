//! Transaction timers (RFC 3261 §17, Table 4) and the per-transaction timer table.
//!
//! Each machine keeps a fixed array of deadlines indexed by [`Timer`]; its next wake-up is the
//! earliest one. No timer owns a task or a callback: the machine is asked with `handle_timeout(now)`.

use std::time::{Duration, Instant};

/// A transaction timer. Values for T1 = 500 ms, T2 = 4 s, T4 = 5 s (Table 4) in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client, UDP: retransmit the INVITE; starts at T1 and doubles (§17.1.1.2).
    A,
    /// INVITE client: give up waiting for any response, `64*T1` [32 s].
    B,
    /// INVITE client: linger in Completed to absorb final-response retransmissions, 32 s on UDP.
    D,
    /// Non-INVITE client, UDP: retransmit the request; starts at T1, doubles up to T2 (§17.1.2.2).
    E,
    /// Non-INVITE client: give up waiting for a final response, `64*T1` [32 s].
    F,
    /// INVITE server, UDP: retransmit the 3xx-6xx final response; T1 doubling up to T2 (§17.2.1).
    G,
    /// INVITE server: give up waiting for the ACK, `64*T1` [32 s].
    H,
    /// INVITE server: linger in Confirmed to absorb ACK retransmissions, T4 on UDP.
    I,
    /// Non-INVITE server: linger in Completed to answer request retransmissions, `64*T1` on UDP.
    J,
    /// Non-INVITE client: linger in Completed to absorb response retransmissions, T4 on UDP.
    K,
    /// INVITE server: linger in Accepted after a 2xx to absorb INVITE retransmissions and pass
    /// 2xx retransmissions, `64*T1` [32 s] (RFC 6026 §8.7).
    L,
    /// INVITE client: linger in Accepted after a 2xx to pass further 2xx (retransmissions, other
    /// forks) to the TU, `64*T1` [32 s] (RFC 6026 §8.4).
    M,
    /// INVITE server: send `100 Trying` if the TU has not answered within 200 ms (§17.2.1).
    Trying100,
}

impl Timer {
    const COUNT: usize = 13;

    /// Every timer, in declaration order.
    pub const ALL: [Timer; Timer::COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::Trying100,
    ];
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Arms `timer` to fire `after` from `now`. A deadline past the range of `Instant` never fires.
    pub(crate) fn set(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.deadlines[timer as usize] = now.checked_add(after);
    }

    /// Re-arms a periodic timer that was due at `due`: the next deadline is `due + interval`, so the
    /// schedule stays exact even when the caller reports the expiry late. If that is already past,
    /// `now + interval`. A zero interval is raised to 1 ms so a bad config cannot spin.
    pub(crate) fn rearm(&mut self, timer: Timer, due: Instant, now: Instant, interval: Duration) {
        let interval = interval.max(Duration::from_millis(1));
        let next = due.checked_add(interval).filter(|t| *t > now).or_else(|| now.checked_add(interval));
        self.deadlines[timer as usize] = next;
    }

    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; Timer::COUNT];
    }

    /// The earliest armed timer and its deadline.
    pub(crate) fn next(&self) -> Option<(Timer, Instant)> {
        Timer::ALL.iter().filter_map(|&t| self.deadlines[t as usize].map(|at| (t, at))).min_by_key(|&(t, at)| (at, t))
    }

    /// Disarms and returns the earliest timer due at or before `now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<(Timer, Instant)> {
        let (timer, at) = self.next().filter(|&(_, at)| at <= now)?;
        self.stop(timer);
        Some((timer, at))
    }
}
