//! Per-source-IP request rate limit (sans-IO), in the spirit of Kamailio's `pike` module: a token
//! bucket per source IP address, refilled at `rate` requests per second up to `burst`. A request
//! that finds its bucket empty is dropped before it is parsed, and counted; the first drop of a
//! source in each minute is reported so the caller logs one line per source per minute.
//!
//! ```text
//!   request from IP ─► bucket(IP) ─┬─ token left ─► Admit
//!                                  └─ empty ──────► Drop (counted; Drop { log: true } once a minute)
//! ```
//!
//! Memory is bounded: a bucket idle long enough to be full again is worth nothing and is swept;
//! when `max_sources` live buckets exist, new sources share one overflow bucket (limited together)
//! instead of growing the table, so a flood from many addresses cannot grow it without bound.
//! RFC 3261 has no rate limit; §26.1.5 names flooding as a threat to guard against.

use crate::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a source that keeps being dropped gets a log line.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// Default requests per second per source (issue 14, point 4).
pub const DEFAULT_RATE: u32 = 200;

/// Default number of sources tracked one by one before new ones share the overflow bucket.
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

/// The limit: `rate` requests per second, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second per source.
    pub rate: u32,
    /// Requests a source may send at once after being quiet.
    pub burst: u32,
    /// Sources tracked one by one (see the module docs).
    pub max_sources: usize,
}

impl RateLimit {
    /// `rate` per second with a burst of twice that (`rate_limit = 200`: burst 400); `None` for 0,
    /// which turns the limit off.
    pub fn per_second(rate: u32) -> Option<RateLimit> {
        (rate > 0).then(|| RateLimit { rate, burst: rate.saturating_mul(2), max_sources: DEFAULT_MAX_SOURCES })
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { rate: DEFAULT_RATE, burst: DEFAULT_RATE * 2, max_sources: DEFAULT_MAX_SOURCES }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Admit,
    /// Drop it. `log` is true for the first drop of this source in a [`LOG_EVERY`] period; then
    /// `dropped` is how many of its requests were dropped since the previous line.
    Drop {
        /// Log one line now.
        log: bool,
        /// Drops of this source since its last line (including this one).
        dropped: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Drops since the last log line, and when that line was.
    dropped: u64,
    logged: Option<Instant>,
}

impl Bucket {
    fn full(limit: &RateLimit, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(limit.burst), last: now, dropped: 0, logged: None }
    }

    fn take(&mut self, limit: &RateLimit, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        // Never backwards: workers sharing a limiter read their clocks a little apart.
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * f64::from(limit.rate)).min(f64::from(limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Admit;
        }
        self.dropped += 1;
        let log = self.logged.is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
        let dropped = self.dropped;
        if log {
            self.logged = Some(now);
            self.dropped = 0;
        }
        Verdict::Drop { log, dropped }
    }

    /// True when the bucket has refilled and no log line of the last minute is pending: forgetting
    /// it changes nothing (its unreported drops stay in the total).
    fn idle(&self, limit: &RateLimit, now: Instant) -> bool {
        let refill = Duration::from_secs_f64(f64::from(limit.burst) / f64::from(limit.rate.max(1)));
        now.saturating_duration_since(self.last) >= refill && self.logged.is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY)
    }
}

/// The per-source buckets. Feed each request's source with [`RateLimiter::check`].
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by sources that arrive while the table is full.
    overflow: Option<Bucket>,
    next_sweep: Option<Instant>,
    dropped: u64,
}

// ===== impl RateLimiter =====

impl RateLimiter {
    /// A limiter with `limit`.
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter { limit, buckets: HashMap::default(), overflow: None, next_sweep: None, dropped: 0 }
    }

    /// The limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Requests dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sources tracked one by one right now (bounded by `max_sources`).
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token for a request from `ip` at `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.next_sweep.is_none_or(|t| now >= t) {
            self.sweep(now);
        }
        let limit = self.limit;
        let room = self.buckets.len() < limit.max_sources;
        let bucket = match self.buckets.entry(ip) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) if room => e.insert(Bucket::full(&limit, now)),
            std::collections::hash_map::Entry::Vacant(_) => self.overflow.get_or_insert_with(|| Bucket::full(&limit, now)),
        };
        let verdict = bucket.take(&limit, now);
        if matches!(verdict, Verdict::Drop { .. }) {
            self.dropped += 1;
        }
        verdict
    }

    /// Forgets buckets that are full again; runs at most once a second.
    fn sweep(&mut self, now: Instant) {
        let limit = self.limit;
        self.buckets.retain(|_, b| !b.idle(&limit, now));
        self.next_sweep = Some(now + Duration::from_secs(1));
    }
}

/// Locks a [`SharedRateLimiter`] spreads its sources over: a source's bucket lives in the shard its
/// address hashes to, so two workers contend only when their requests come from addresses of the
/// same shard, not on every request (issue 16: no global lock on the call path).
pub const SHARDS: usize = 16;

/// One [`RateLimiter`] for the workers of `serve --workers N` (issue 16): each worker's endpoint
/// checks its requests against the same buckets, so a source gets the configured rate and burst
/// whichever workers its requests land on (all on one, as a single address's REGISTERs do since
/// they are handled where they land, or spread by Call-ID). The buckets are split over [`SHARDS`]
/// locks by source address; each shard tracks `max_sources / SHARDS` sources one by one (the
/// table's bound is the same in all) and has an overflow bucket of its own, so a flood from more
/// addresses than that is limited per shard. One short lock per request.
#[derive(Debug, Clone)]
pub struct SharedRateLimiter {
    limit: RateLimit,
    hasher: foldhash::fast::RandomState,
    shards: Arc<[Mutex<RateLimiter>]>,
}

impl SharedRateLimiter {
    /// A limiter with `limit`, to clone into each worker.
    pub fn new(limit: RateLimit) -> SharedRateLimiter {
        let each = RateLimit { max_sources: limit.max_sources.div_ceil(SHARDS), ..limit };
        let shards = (0..SHARDS).map(|_| Mutex::new(RateLimiter::new(each))).collect();
        SharedRateLimiter { limit, hasher: foldhash::fast::RandomState::default(), shards }
    }

    /// The limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, RateLimiter> {
        use std::hash::BuildHasher;
        // Invariant: SHARDS > 0, so the index is in range.
        let i = (self.hasher.hash_one(ip) % SHARDS as u64) as usize;
        // A lock poisoned by a panic elsewhere still holds consistent buckets (each check is one
        // small update): it is used as is.
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`RateLimiter::check`] on the bucket of `ip`, in its shard.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        self.shard(ip).check(ip, now)
    }

    /// Requests dropped so far, by every worker.
    pub fn dropped(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).dropped()).sum()
    }

    /// Sources tracked one by one right now, in all shards (bounded by `max_sources` rounded up
    /// to a multiple of [`SHARDS`]).
    pub fn sources(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).sources()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn burst_then_rate_then_drop() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimit { rate: 10, burst: 20, max_sources: 8 });
        for _ in 0..20 {
            assert_eq!(r.check(ip(1), t0), Verdict::Admit);
        }
        assert_eq!(r.check(ip(1), t0), Verdict::Drop { log: true, dropped: 1 });
        assert_eq!(r.check(ip(1), t0), Verdict::Drop { log: false, dropped: 1 });
        // Another source has its own bucket.
        assert_eq!(r.check(ip(2), t0), Verdict::Admit);
        // 100 ms later one token came back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.check(ip(1), t1), Verdict::Admit);
        assert!(matches!(r.check(ip(1), t1), Verdict::Drop { log: false, .. }));
        // A source that keeps flooding (two requests per token) gets one more line a minute after
        // the first, with the count of drops since then.
        let mut lines = Vec::new();
        let mut t = t1;
        while t < t0 + LOG_EVERY + Duration::from_secs(5) {
            t += Duration::from_millis(50);
            for _ in 0..2 {
                if let Verdict::Drop { log: true, dropped } = r.check(ip(1), t) {
                    lines.push((t.duration_since(t0), dropped));
                }
            }
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].0 >= LOG_EVERY && lines[0].1 > 500, "{lines:?}");
    }

    #[test]
    fn table_is_bounded_and_idle_sources_are_forgotten() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(RateLimit { rate: 1, burst: 2, max_sources: 4 });
        for i in 0..=255 {
            let _ = r.check(ip(i), t0);
        }
        assert_eq!(r.sources(), 4, "new sources beyond the cap share the overflow bucket");
        // The overflow bucket is limited like any other.
        assert!(matches!(r.check(ip(200), t0), Verdict::Drop { .. }));
        let later = t0 + Duration::from_secs(5);
        let _ = r.check(ip(9), later);
        assert_eq!(r.sources(), 1, "refilled buckets are swept");
    }

    #[test]
    fn zero_turns_it_off() {
        assert_eq!(RateLimit::per_second(0), None);
        assert_eq!(RateLimit::per_second(200), Some(RateLimit::default()));
    }

    #[test]
    fn a_shared_limiter_holds_one_budget_across_threads() {
        let t0 = Instant::now();
        let shared = SharedRateLimiter::new(RateLimit { rate: 10, burst: 20, max_sources: 8 });
        // Two workers, 50 requests each from one source at the same instant: 20 admitted in all.
        let admitted: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let l = shared.clone();
                    s.spawn(move || (0..50).filter(|_| l.check(ip(1), t0) == Verdict::Admit).count())
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        assert_eq!(admitted, 20);
        assert_eq!(shared.dropped(), 80);
        // A clock read earlier by the other worker does not refill the same 100 ms twice.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(shared.check(ip(1), t1), Verdict::Admit);
        assert!(matches!(shared.check(ip(1), t0), Verdict::Drop { .. }));
        assert!(matches!(shared.check(ip(1), t1), Verdict::Drop { .. }));
    }

    #[test]
    fn a_shared_limiter_keeps_each_source_apart_and_its_table_bounded() {
        let t0 = Instant::now();
        let shared = SharedRateLimiter::new(RateLimit { rate: 1, burst: 2, max_sources: 1024 });
        // 20 sources, whatever shards they hash to: two requests each admitted, the third dropped.
        for last in 1..=20 {
            assert_eq!(shared.check(ip(last), t0), Verdict::Admit);
            assert_eq!(shared.check(ip(last), t0), Verdict::Admit);
            assert!(matches!(shared.check(ip(last), t0), Verdict::Drop { .. }), "source {last}");
        }
        assert_eq!(shared.dropped(), 20);
        // A flood from 1,000 addresses: the table stays within max_sources (2 per shard here).
        let shared = SharedRateLimiter::new(RateLimit { rate: 1, burst: 2, max_sources: 32 });
        for n in 0..1_000u32 {
            let _ = shared.check(IpAddr::from(n.to_be_bytes()), t0);
        }
        assert!(shared.sources() <= 32, "{} sources tracked", shared.sources());
    }
}
