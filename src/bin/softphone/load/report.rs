//! What `softphone load` prints: the progress line on stderr once a second, and the final table
//! (plus one JSON object with `--summary json`) on stdout.

use super::worker::{Shared, WorkerResult};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The once-a-second progress line: rewritten in place (`\r`) on a terminal, one line per second
/// otherwise.
#[derive(Debug)]
pub(crate) struct Progress {
    offered: f64,
    start: Instant,
    next: Instant,
    tty: bool,
    /// attempted and ok at the previous line, for the per-second rates.
    last: (u64, u64, Instant),
}

impl Progress {
    /// A progress line for a run offering `offered` calls/s from `start`.
    pub(crate) fn new(offered: f64, start: Instant) -> Progress {
        let tty = std::io::stderr().is_terminal();
        Progress { offered, start, next: start + Duration::from_secs(1), tty, last: (0, 0, start) }
    }

    /// Prints a line if a second has passed since the last one.
    pub(crate) fn maybe_print(&mut self, shared: &Arc<Shared>, now: Instant) {
        if now >= self.next {
            self.print(shared, now);
            while self.next <= now {
                self.next += Duration::from_secs(1);
            }
        }
    }

    /// Prints the last line (and ends it on a terminal).
    pub(crate) fn finish(&mut self, shared: &Arc<Shared>, now: Instant) {
        self.print(shared, now);
        if self.tty {
            eprintln!();
        }
    }

    fn print(&mut self, shared: &Arc<Shared>, now: Instant) {
        let attempted = shared.attempted.load(Ordering::Relaxed);
        let ok = shared.ok.load(Ordering::Relaxed);
        let secs = now.saturating_duration_since(self.last.2).as_secs_f64().max(1e-3);
        let started_rate = attempted.saturating_sub(self.last.0) as f64 / secs;
        let ok_rate = ok.saturating_sub(self.last.1) as f64 / secs;
        self.last = (attempted, ok, now);
        let line = format!(
            "{:7.1}s  offered {:.0}/s  started {:.0}/s  ok {:.0}/s  active {}  ok {}  failed {}  retransmissions {}",
            now.saturating_duration_since(self.start).as_secs_f64(),
            self.offered,
            started_rate,
            ok_rate,
            shared.active.load(Ordering::Relaxed),
            ok,
            shared.failed.load(Ordering::Relaxed),
            shared.retransmissions.load(Ordering::Relaxed),
        );
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the run.
        let _ = if self.tty { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }
}

/// The merged outcome of every worker.
#[derive(Debug)]
pub(crate) struct Totals {
    pub(crate) planned: u64,
    pub(crate) attempted: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) failures: BTreeMap<String, u64>,
    pub(crate) offered: f64,
    pub(crate) wall: Duration,
    pub(crate) workers: usize,
    /// Setup latencies, sorted, in microseconds.
    pub(crate) setup_us: Vec<u32>,
    pub(crate) retransmissions: u64,
    /// "timeout" or "interrupted" when the run was cut short.
    pub(crate) stopped_by: Option<&'static str>,
}

/// The nearest-rank percentile `p` (0-100] of sorted `v`, in milliseconds.
fn percentile_ms(v: &[u32], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len()) - 1).map(|&us| f64::from(us) / 1000.0)
}

impl Totals {
    /// Merges the workers' results; counters come from `shared` (after `into_result` counted the
    /// unfinished calls).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn merge(
        results: Vec<WorkerResult>,
        shared: &Arc<Shared>,
        planned: u64,
        offered: f64,
        wall: Duration,
        workers: usize,
        stopped_by: Option<&'static str>,
    ) -> Totals {
        let mut failures = BTreeMap::new();
        let mut setup_us = Vec::new();
        for r in results {
            setup_us.extend(r.setup_us);
            for (reason, n) in r.failures {
                *failures.entry(reason).or_default() += n;
            }
        }
        setup_us.sort_unstable();
        Totals {
            planned,
            attempted: shared.attempted.load(Ordering::Relaxed),
            ok: shared.ok.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            failures,
            offered,
            wall,
            workers,
            setup_us,
            retransmissions: shared.retransmissions.load(Ordering::Relaxed),
            stopped_by,
        }
    }

    /// Ok calls per second of wall time.
    pub(crate) fn achieved(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-6)
    }

    fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "-".into();
        }
        self.failures.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join("; ")
    }

    /// The final table, one `name value` row per line, for people and scripts alike: on stdout,
    /// or on stderr with `--summary json` (`to_stderr`), whose stdout is the JSON object only.
    pub(crate) fn print_table(&self, uri: &str, to_stderr: bool) {
        let ms = |p: f64| percentile_ms(&self.setup_us, p).map_or("-".into(), |v| format!("{v:.3}"));
        let rows: Vec<(&str, String)> = vec![
            ("target", uri.to_owned()),
            ("workers", self.workers.to_string()),
            ("planned", self.planned.to_string()),
            ("attempted", self.attempted.to_string()),
            ("ok", self.ok.to_string()),
            ("failed", self.failed.to_string()),
            ("failures", self.failures_text()),
            ("offered_cps", format!("{:.1}", self.offered)),
            ("achieved_cps", format!("{:.1}", self.achieved())),
            ("wall_s", format!("{:.3}", self.wall.as_secs_f64())),
            ("setup_p50_ms", ms(50.0)),
            ("setup_p90_ms", ms(90.0)),
            ("setup_p99_ms", ms(99.0)),
            ("setup_max_ms", ms(100.0)),
            ("retransmissions", self.retransmissions.to_string()),
            ("stopped_by", self.stopped_by.unwrap_or("-").to_owned()),
        ];
        let mut out: Box<dyn Write> = if to_stderr { Box::new(std::io::stderr().lock()) } else { Box::new(std::io::stdout().lock()) };
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<16}{value}");
        }
    }

    /// The same figures as one JSON object.
    pub(crate) fn json(&self, uri: &str) -> serde_json::Value {
        let ms = |p: f64| percentile_ms(&self.setup_us, p);
        serde_json::json!({
            "target": uri, "workers": self.workers, "planned": self.planned, "attempted": self.attempted,
            "ok": self.ok, "failed": self.failed, "failures": self.failures, "offered_cps": self.offered,
            "achieved_cps": self.achieved(), "wall_s": self.wall.as_secs_f64(),
            "setup_p50_ms": ms(50.0), "setup_p90_ms": ms(90.0), "setup_p99_ms": ms(99.0), "setup_max_ms": ms(100.0),
            "retransmissions": self.retransmissions, "stopped_by": self.stopped_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::percentile_ms;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&v, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&v, 100.0), Some(100.0));
        assert_eq!(percentile_ms(&[7000], 50.0), Some(7.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
    }
}
