//! Graceful stop of a cluster member (issue 17 point 7), sans-IO: what SIGTERM does once the
//! instance follows a published membership.
//!
//! Without a cluster, SIGTERM stops at once (the echo user's calls get BYE; B2BUA calls stay saved
//! and are taken back at the next start). In a cluster the instance first *drains*: it answers
//! OPTIONS to the service (the dispatcher's probes) with 503, which the dispatcher reads as
//! "no new calls, still the owner of its dialogs" (src/dispatch/probe.rs), and serves everything
//! else as before. It stops once the dispatcher has seen a 503 ([`SETTLE`] earlier, for INVITEs
//! already on their way) and the echo user's calls, which no other instance can take over, have
//! ended; or at [`DRAIN_MAX`] whatever remains. Its B2BUA calls stay saved: once the probes find
//! it gone, the membership drops it and the new owners adopt them (src/cluster/failover.rs), or,
//! if it is back first, it takes them back itself.
//!
//! With `serve --drain-secs N` ([`Drain::wait_for_calls`]) the instance instead waits for every
//! call it holds (echo and B2BUA) to end, for up to N seconds, and only then stops; the calls
//! still up at the deadline stay saved and are adopted as above.

use std::time::{Duration, Instant};

/// The longest drain; below the driver's 5 s shutdown grace, so the echo user's BYEs for calls
/// still up at the end go out.
pub const DRAIN_MAX: Duration = Duration::from_secs(4);

/// Time after the first refused probe for requests the dispatcher sent before it to arrive (and
/// for an INVITE retransmission, RFC 3261 §17.1.1.2 T1).
pub const SETTLE: Duration = Duration::from_millis(500);

/// The drain's state.
#[derive(Debug, Default, Clone)]
pub struct Drain {
    clustered: bool,
    started: Option<Instant>,
    refused: Option<Instant>,
    /// `--drain-secs`: wait this long at most for every call to end (`None`: [`DRAIN_MAX`], and
    /// only the echo calls are waited for).
    wait: Option<Duration>,
    /// The settle time after the first refused probe is over (so it is no longer a deadline).
    settled: bool,
}

impl Drain {
    /// A published membership was followed: the instance is behind a dispatcher.
    pub fn clustered(&mut self) {
        self.clustered = true;
    }

    /// `serve --drain-secs`: wait up to `limit` for every call (not only the echo user's) to end
    /// before stopping.
    pub fn wait_for_calls(&mut self, limit: Duration) {
        self.wait = Some(limit);
    }

    /// How long a drain may last: the driver's grace period must cover it.
    pub fn limit(&self) -> Duration {
        self.wait.unwrap_or(DRAIN_MAX)
    }

    /// Whether the drain waits for B2BUA calls too (`--drain-secs`).
    pub fn waits_for_all_calls(&self) -> bool {
        self.wait.is_some()
    }

    /// SIGTERM: true when draining starts (a cluster member), false when the stop is immediate.
    pub fn begin(&mut self, now: Instant) -> bool {
        if self.clustered && self.started.is_none() {
            self.started = Some(now);
            return true;
        }
        false
    }

    /// Whether OPTIONS to the service are answered 503.
    pub fn is_draining(&self) -> bool {
        self.started.is_some()
    }

    /// A probe was answered 503.
    pub fn probe_refused(&mut self, now: Instant) {
        self.refused.get_or_insert(now);
    }

    /// True (once) when the drain is over: the dispatcher saw a 503 [`SETTLE`] ago and no call
    /// that is waited for is left (`calls`: the echo calls, or every call with `--drain-secs`),
    /// or [`Drain::limit`] passed.
    pub fn finished(&mut self, calls: usize, now: Instant) -> bool {
        let Some(started) = self.started else { return false };
        let settled = self.refused.is_some_and(|t| now >= t + SETTLE);
        self.settled |= settled;
        if now >= started + self.limit() || (settled && calls == 0) {
            self.started = None;
            self.settled = false;
            return true;
        }
        false
    }

    /// When [`Drain::finished`] should be asked again: when the settle time is over, then at
    /// the limit (calls ending are inputs, and the service asks again after each input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let started = self.started?;
        let limit = started + self.limit();
        match self.refused {
            Some(t) if !self.settled => Some(limit.min(t + SETTLE)),
            _ => Some(limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_instance_stops_at_once() {
        let mut d = Drain::default();
        assert!(!d.begin(Instant::now()) && !d.is_draining());
    }

    #[test]
    fn a_member_drains_until_the_dispatcher_saw_it_and_the_echo_calls_ended() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        d.clustered();
        assert!(d.begin(t0) && d.is_draining());
        assert_eq!(d.poll_timeout(), Some(t0 + DRAIN_MAX));
        assert!(!d.finished(0, t0 + Duration::from_secs(1)), "no probe refused yet");
        d.probe_refused(t0 + Duration::from_secs(1));
        assert!(!d.finished(0, t0 + Duration::from_millis(1200)), "settling");
        assert!(!d.finished(2, t0 + Duration::from_secs(2)), "echo calls left");
        assert_eq!(d.poll_timeout(), Some(t0 + DRAIN_MAX), "settled: no deadline in the past (no busy loop)");
        assert!(d.finished(0, t0 + Duration::from_secs(2)));
        assert!(!d.is_draining() && !d.finished(0, t0 + Duration::from_secs(9)));
    }

    #[test]
    fn with_drain_secs_every_call_is_waited_for_up_to_the_limit() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        d.wait_for_calls(Duration::from_secs(30));
        d.clustered();
        assert!(d.begin(t0) && d.waits_for_all_calls());
        assert_eq!(d.limit(), Duration::from_secs(30));
        d.probe_refused(t0);
        assert!(!d.finished(3, t0 + Duration::from_secs(10)), "calls still up, well past DRAIN_MAX");
        assert!(d.poll_timeout().is_some_and(|t| t <= t0 + Duration::from_secs(30)));
        assert!(d.finished(0, t0 + Duration::from_secs(12)), "the last call ended");
        let mut d = Drain::default();
        d.wait_for_calls(Duration::from_secs(30));
        d.clustered();
        d.begin(t0);
        assert!(d.finished(3, t0 + Duration::from_secs(30)), "bounded by --drain-secs");
    }

    #[test]
    fn the_drain_is_bounded() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        d.clustered();
        d.begin(t0);
        assert!(d.finished(5, t0 + DRAIN_MAX));
    }
}
