//! A store outage, made loud but not noisy (issue 17 point 6): one WARN line per period (a
//! minute) while the store stays unreachable, with how many failures the quiet lines hid.

use std::time::{Duration, Instant};

/// How often an outage is logged while it lasts.
pub const WARN_PERIOD: Duration = Duration::from_secs(60);

/// Rate limit for the outage's WARN lines. Sans-IO: the caller passes the time.
#[derive(Debug, Clone)]
pub struct WarnEvery {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnEvery {
    /// One line per `period`.
    pub fn new(period: Duration) -> WarnEvery {
        WarnEvery { period, last: None, suppressed: 0 }
    }

    /// A failure at `now`: `Some(n)` when a line is due (`n` failures were kept quiet since the
    /// last line), `None` when this one stays quiet.
    pub fn failure(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// The outage is over: the next failure is logged at once.
    pub fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_minute_on_a_virtual_clock() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = WarnEvery::new(WARN_PERIOD);
        // A failure every second for three minutes: lines at 0, 60, 120 s only.
        let lines: Vec<(u64, u64)> = (0..180).filter_map(|s| w.failure(at(s)).map(|n| (s, n))).collect();
        assert_eq!(lines, [(0, 0), (60, 59), (120, 59)]);
        // Recovered, then down again: logged at once.
        w.reset();
        assert_eq!(w.failure(at(130)), Some(0));
        assert_eq!(w.failure(at(131)), None);
    }
}
