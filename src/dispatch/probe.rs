//! OPTIONS probing of the backends: the heartbeat (issue 17 point 2), as Kamailio's dispatcher
//! `ds_ping_interval` / `ds_probing_threshold` / `ds_inactive_threshold`.
//!
//! Every `interval` each backend gets one OPTIONS (RFC 3261 §11). A probe without a reply by the
//! next round, or answered 5xx/6xx other than 503, is a failure; any other reply a success.
//! `failures` failures in a row take a live backend out, `recoveries` successes in a row bring a
//! dead one back. Backends start live, as Kamailio's do.
//!
//! A 503 is a draining instance (SIGTERM, issue 17 point 7, src/service/drain.rs): it is up and
//! still owns its dialogs, so it stays live (in the published membership, and in-dialog requests
//! still go to it) but takes no new call until a probe gets another answer. Once it has stopped,
//! its probes time out and it goes out as any dead backend, and its calls are adopted.

use std::time::Duration;

/// Probe settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between two probes of a backend (and the wait for a reply).
    pub interval: Duration,
    /// Failed probes in a row that mark a backend dead.
    pub failures: u32,
    /// Successful probes in a row that mark a dead backend live again.
    pub recoveries: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { interval: Duration::from_secs(1), failures: 2, recoveries: 2 }
    }
}

/// One backend's probe state.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Whether the backend takes calls.
    pub live: bool,
    fails: u32,
    oks: u32,
    /// The branch of the probe awaiting its reply.
    pub pending: Option<String>,
    /// The last probe was answered 503: no new calls (see the module doc).
    pub draining: bool,
}

impl Health {
    /// A backend not probed yet: live.
    pub fn new() -> Health {
        Health { live: true, ..Health::default() }
    }

    /// Records one probe outcome; true when the backend's liveness changed.
    pub fn record(&mut self, ok: bool, cfg: &ProbeConfig) -> bool {
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if !self.live && self.oks >= cfg.recoveries.max(1) {
                self.live = true;
                return true;
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if self.live && self.fails >= cfg.failures.max(1) {
                self.live = false;
                return true;
            }
        }
        false
    }
}

/// Whether a reply with this status counts as the backend being up (503: up, but draining).
pub fn reply_is_ok(status: u16) -> bool {
    status < 500 || status == 503
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_take_out_and_bring_back() {
        let cfg = ProbeConfig { interval: Duration::from_millis(100), failures: 3, recoveries: 2 };
        let mut h = Health::new();
        assert!(!h.record(false, &cfg) && !h.record(false, &cfg) && h.live);
        assert!(!h.record(true, &cfg), "a success resets the failures");
        assert!(!h.record(false, &cfg) && !h.record(false, &cfg));
        assert!(h.record(false, &cfg) && !h.live);
        assert!(!h.record(true, &cfg) && !h.live);
        assert!(h.record(true, &cfg) && h.live);
        assert!(reply_is_ok(200) && reply_is_ok(404) && reply_is_ok(503) && !reply_is_ok(500));
    }
}
