//! Failed-authentication limits (sans-IO), as fail2ban does it for a log and Kamailio's
//! `htable`-based recipes do it in the proxy: failures are counted per (source IP, user) pair and
//! per source IP; after [`GuardConfig::max_failures`] failures within [`GuardConfig::window`] the
//! pair, or the whole source, is answered 403 without checking for [`GuardConfig::backoff`].
//! Never per user alone: a stranger who guesses alice's password from one address cannot lock
//! alice out at her own address.
//!
//! ```text
//!   request ─► blocked(ip, user)? ── yes ─► 403 (nothing checked, nothing logged above debug)
//!                  │ no
//!                  ▼
//!            digest check ── failure ─► failed(ip, user): WARN line; 10th in 60 s ─► block
//! ```
//!
//! Memory is bounded: each table holds at most [`GuardConfig::max_entries`] records; records whose
//! window and block are over are swept once a second, and while a table is full new keys are not
//! tracked (a source IP is still tracked in its own table once there is room again). User names
//! are cut to [`MAX_USER`] bytes. RFC 3261 §22.1 and §26.3.2.4 leave guessing limits to the
//! implementation.

use crate::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// User names longer than this are cut before they are kept or logged.
pub const MAX_USER: usize = 64;

/// Default seconds a blocked pair or source is answered 403 without checking.
pub const DEFAULT_BACKOFF_SECS: u64 = 60;

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Failures within `window` that trigger a block (per pair, and per source IP).
    pub max_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a block lasts (`auth_backoff_secs`); zero never blocks (failures are only logged).
    pub backoff: Duration,
    /// Records per table at most.
    pub max_entries: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_failures: 10,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(DEFAULT_BACKOFF_SECS),
            max_entries: 65_536,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Record {
    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|t| now < t)
    }

    /// Counts one failure; true when this one starts a block.
    fn fail(&mut self, cfg: &GuardConfig, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= cfg.window {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures += 1;
        if self.failures >= cfg.max_failures && !self.blocked(now) && !cfg.backoff.is_zero() {
            self.blocked_until = Some(now + cfg.backoff);
            self.failures = 0;
            self.window_start = now;
            return true;
        }
        false
    }

    fn stale(&self, cfg: &GuardConfig, now: Instant) -> bool {
        !self.blocked(now) && now.saturating_duration_since(self.window_start) >= cfg.window
    }
}

/// What [`AuthGuard::failed`] started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Nothing new.
    None,
    /// The (source IP, user) pair is now blocked.
    Pair,
    /// The whole source IP is now blocked.
    Source,
}

/// The failure tables. See the module docs.
#[derive(Debug)]
pub struct AuthGuard {
    config: GuardConfig,
    pairs: HashMap<(IpAddr, String), Record>,
    sources: HashMap<IpAddr, Record>,
    next_sweep: Option<Instant>,
    refused: u64,
}

// ===== impl AuthGuard =====

impl AuthGuard {
    /// Empty tables with `config`.
    pub fn new(config: GuardConfig) -> AuthGuard {
        AuthGuard { config, pairs: HashMap::default(), sources: HashMap::default(), next_sweep: None, refused: 0 }
    }

    /// The limits.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Requests refused because their pair or source was blocked.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Records held (pairs + sources), bounded by twice `max_entries`.
    pub fn len(&self) -> usize {
        self.pairs.len() + self.sources.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a request from `ip` (with credentials for `user`, if any) is to get 403 unchecked.
    #[must_use]
    pub fn blocked(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) -> bool {
        self.sweep(now);
        let by_source = self.sources.get(&ip).is_some_and(|r| r.blocked(now));
        let by_pair = user.is_some_and(|u| self.pairs.get(&(ip, cut(u).to_owned())).is_some_and(|r| r.blocked(now)));
        if by_source || by_pair {
            self.refused += 1;
        }
        by_source || by_pair
    }

    /// Counts one failed authentication from `ip` for `user` (`None`: unreadable credentials,
    /// counted for the source only). Returns the block it started, if any.
    pub fn failed(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) -> Block {
        self.sweep(now);
        let cfg = self.config;
        let fresh = || Record { window_start: now, failures: 0, blocked_until: None };
        let mut block = Block::None;
        if let Some(u) = user {
            let key = (ip, cut(u).to_owned());
            let room = self.pairs.len() < cfg.max_entries;
            if let Some(r) = self.pairs.get_mut(&key) {
                if r.fail(&cfg, now) {
                    block = Block::Pair;
                }
            } else if room && self.pairs.entry(key).or_insert_with(fresh).fail(&cfg, now) {
                block = Block::Pair;
            }
        }
        let room = self.sources.len() < cfg.max_entries;
        if let Some(r) = self.sources.get_mut(&ip) {
            if r.fail(&cfg, now) {
                block = Block::Source;
            }
        } else if room && self.sources.entry(ip).or_insert_with(fresh).fail(&cfg, now) {
            block = Block::Source;
        }
        block
    }

    /// Forgets records whose window and block are over; at most once a second.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        let cfg = self.config;
        self.pairs.retain(|_, r| !r.stale(&cfg, now));
        self.sources.retain(|_, r| !r.stale(&cfg, now));
        self.next_sweep = Some(now + Duration::from_secs(1));
    }
}

/// One [`AuthGuard`] for the workers of `serve --workers N` (issue 16, hand16): failures count
/// toward one limit, and a block holds, whichever workers a source's requests land on (its
/// REGISTERs all on the one its socket hashes to, its other requests spread by Call-ID). One
/// short lock per authenticated request; the single-loop service holds one too.
#[derive(Debug, Clone)]
pub struct SharedGuard {
    config: GuardConfig,
    inner: Arc<Mutex<AuthGuard>>,
}

impl SharedGuard {
    /// Empty tables with `config`, to clone into each worker.
    pub fn new(config: GuardConfig) -> SharedGuard {
        SharedGuard { config, inner: Arc::new(Mutex::new(AuthGuard::new(config))) }
    }

    /// The limits.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The tables; a lock poisoned by a panic elsewhere holds consistent records (each update is
    /// small) and is used as is.
    fn lock(&self) -> MutexGuard<'_, AuthGuard> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`AuthGuard::blocked`] on the shared tables.
    #[must_use]
    pub fn blocked(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> bool {
        self.lock().blocked(ip, user, now)
    }

    /// [`AuthGuard::failed`] on the shared tables.
    pub fn failed(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Block {
        self.lock().failed(ip, user, now)
    }

    /// [`AuthGuard::refused`], by every worker.
    pub fn refused(&self) -> u64 {
        self.lock().refused()
    }
}

/// `user` cut to [`MAX_USER`] bytes at a character boundary.
fn cut(user: &str) -> &str {
    let mut end = user.len().min(MAX_USER);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    &user[..end]
}

/// A value from the network made safe for one log line: printable ASCII other than space and
/// `"`, cut to [`MAX_USER`]; anything else becomes `?`; empty becomes `-`.
pub fn log_safe(v: &str) -> String {
    let s: String = cut(v).chars().map(|c| if c.is_ascii_graphic() && c != '"' { c } else { '?' }).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// The one WARN line of a failed authentication, in a stable format for fail2ban (README,
/// "Security"): `auth failed: src=IP:PORT user=NAME realm=REALM reason=REASON`.
pub fn log_failure(source: SocketAddr, user: Option<&str>, realm: &str, reason: &str) {
    tracing::warn!("auth failed: src={source} user={} realm={} reason={reason}", log_safe(user.unwrap_or("")), log_safe(realm));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn ten_failures_block_the_pair_not_the_user_elsewhere() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(GuardConfig::default());
        for i in 1..10 {
            assert_eq!(g.failed(ip(1), Some("alice"), t0), Block::None, "failure {i}");
            assert!(!g.blocked(ip(1), Some("alice"), t0));
        }
        // The tenth failure blocks the source (which here is the same count as the pair).
        assert_ne!(g.failed(ip(1), Some("alice"), t0), Block::None);
        assert!(g.blocked(ip(1), Some("alice"), t0));
        assert!(g.blocked(ip(1), None, t0), "the source is blocked too");
        assert!(!g.blocked(ip(2), Some("alice"), t0), "alice elsewhere is not");
        let after = t0 + Duration::from_secs(DEFAULT_BACKOFF_SECS);
        assert!(!g.blocked(ip(1), Some("alice"), after), "the block ends");
        assert_eq!(g.refused(), 2);
    }

    #[test]
    fn failures_spread_over_windows_do_not_block() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(GuardConfig::default());
        for i in 0..30u64 {
            let _ = g.failed(ip(1), Some("bob"), t0 + Duration::from_secs(i * 7));
        }
        assert!(!g.blocked(ip(1), Some("bob"), t0 + Duration::from_secs(210)));
    }

    #[test]
    fn pair_limit_is_separate_from_source_limit() {
        let cfg = GuardConfig { max_failures: 3, ..GuardConfig::default() };
        let t0 = Instant::now();
        let mut g = AuthGuard::new(cfg);
        let _ = g.failed(ip(1), Some("a"), t0);
        let _ = g.failed(ip(1), Some("b"), t0);
        assert_eq!(g.failed(ip(1), Some("c"), t0), Block::Source, "three users from one source");
        assert!(g.blocked(ip(1), Some("d"), t0));
    }

    #[test]
    fn tables_are_bounded_and_swept() {
        let cfg = GuardConfig { max_entries: 8, ..GuardConfig::default() };
        let t0 = Instant::now();
        let mut g = AuthGuard::new(cfg);
        for i in 0..=255u8 {
            let _ = g.failed(ip(i), Some(&format!("user{i}")), t0);
        }
        assert_eq!(g.len(), 16);
        let _ = g.blocked(ip(1), None, t0 + Duration::from_secs(61));
        assert!(g.is_empty());
    }

    #[test]
    fn zero_backoff_never_blocks() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(GuardConfig { backoff: Duration::ZERO, ..GuardConfig::default() });
        for _ in 0..50 {
            assert_eq!(g.failed(ip(1), Some("alice"), t0), Block::None);
        }
        assert!(!g.blocked(ip(1), Some("alice"), t0));
    }

    #[test]
    fn log_values_are_one_token() {
        assert_eq!(log_safe("al ice\nreason=x\""), "al?ice?reason=x?");
        assert_eq!(log_safe(""), "-");
        assert_eq!(log_safe(&"é".repeat(40)).len(), 32);
    }
}
