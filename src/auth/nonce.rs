//! Stateless nonces that carry their own issue time (RFC 7616 §3.3 and §5.4 suggest
//! `time-stamp H(time-stamp ":" ETag ":" secret-data)`), and the nonce-count table that refuses
//! replays (RFC 7616 §3.4 `nc`, §5.5).
//!
//! Wire form: 64 lowercase hex digits of `issued (u64 BE secs) || salt (u64 BE) || mac (16 bytes)`,
//! where `mac` is HMAC-SHA-256 keyed with the server secret over `realm || issued || salt`, truncated
//! to 128 bits. Checking a nonce needs no memory and works across a restart, as long as the secret
//! stays the same.

use crate::collections::HashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// Length of the decoded payload (issue time and salt).
const PAYLOAD: usize = 16;
/// Length of the truncated MAC.
const MAC: usize = 16;
/// A nonce issued this far in the future of `now` means the clock went back: refuse it as stale.
const FUTURE_SKEW_SECS: u64 = 2;

/// What a nonce turned out to be (see [`crate::auth::DigestServer::check_nonce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by this server (same secret and realm) and within its lifetime.
    Valid {
        /// When it was issued, whole seconds since the Unix epoch.
        issued_secs: u64,
    },
    /// Issued by this server but past its lifetime (or from the future after a clock step back):
    /// answer a fresh challenge with `stale=true` (RFC 7616 §3.3).
    Stale,
    /// Not issued by this server with this secret: wrong length, not hex, or a bad MAC.
    Forged,
}

/// The identity of a nonce once its MAC checked: issue time and salt.
pub(crate) type NonceId = [u8; PAYLOAD];

/// Mints and checks nonces for one realm.
pub(crate) struct NonceKey {
    mac: HmacSha256,
    /// Bumped for every nonce minted, so two nonces of the same nanosecond still differ.
    counter: u32,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key material.
        f.debug_struct("NonceKey").field("counter", &self.counter).finish_non_exhaustive()
    }
}

// ===== impl NonceKey =====

impl NonceKey {
    pub(crate) fn new(secret: &[u8; 32], realm: &str) -> NonceKey {
        // Invariant: HMAC accepts a key of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        // The realm is fixed per key: feed it once and clone the state for each nonce.
        mac.update(&(realm.len() as u64).to_be_bytes());
        mac.update(realm.as_bytes());
        NonceKey { mac, counter: 0 }
    }

    /// The same key with its counter at `counter` (a sibling server's own range).
    pub(crate) fn with_counter(&self, counter: u32) -> NonceKey {
        NonceKey { mac: self.mac.clone(), counter }
    }

    /// A fresh nonce issued at `now`. The salt is the sub-second time and a counter: unique per
    /// server, and unlikely to repeat after a restart (the same second, nanosecond and count).
    pub(crate) fn mint(&mut self, now: Duration) -> String {
        self.counter = self.counter.wrapping_add(1);
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&now.as_secs().to_be_bytes());
        payload[8..12].copy_from_slice(&now.subsec_nanos().to_be_bytes());
        payload[12..].copy_from_slice(&self.counter.to_be_bytes());
        let mut out = [0u8; PAYLOAD + MAC];
        out[..PAYLOAD].copy_from_slice(&payload);
        out[PAYLOAD..].copy_from_slice(&self.tag(&payload)[..MAC]);
        super::digest::hex(&out)
    }

    /// Checks a nonce's MAC and age; returns its identity too when it was ours.
    pub(crate) fn check(&self, nonce: &str, now: Duration, lifetime: Duration) -> (NonceCheck, Option<NonceId>) {
        let Some(raw) = unhex::<{ PAYLOAD + MAC }>(nonce) else {
            return (NonceCheck::Forged, None);
        };
        let mut id = [0u8; PAYLOAD];
        id.copy_from_slice(&raw[..PAYLOAD]);
        let mut mac = self.mac.clone();
        mac.update(&id);
        // Constant-time comparison of the truncated tag.
        if mac.verify_truncated_left(&raw[PAYLOAD..]).is_err() {
            return (NonceCheck::Forged, None);
        }
        let issued_secs = issued_secs(&id);
        let now_secs = now.as_secs();
        let fresh = issued_secs <= now_secs.saturating_add(FUTURE_SKEW_SECS) && now_secs.saturating_sub(issued_secs) <= lifetime.as_secs();
        (if fresh { NonceCheck::Valid { issued_secs } } else { NonceCheck::Stale }, Some(id))
    }

    /// The `opaque` value of this key's challenges: fixed per secret and realm, so it survives a
    /// restart like the nonces do. The 6-byte input cannot collide with a 16-byte nonce payload.
    pub(crate) fn opaque(&self) -> String {
        super::digest::hex(&self.tag(b"opaque")[..MAC])
    }

    fn tag(&self, payload: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }
}

/// The issue time held in a nonce identity.
pub(crate) fn issued_secs(id: &NonceId) -> u64 {
    let mut secs = [0u8; 8];
    secs.copy_from_slice(&id[..8]);
    u64::from_be_bytes(secs)
}

/// Decodes exactly `N` bytes of hex (either case); `None` on any other length or a non-hex digit.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The highest nonce-count seen per live nonce (RFC 7616 §3.4: the server "SHOULD" detect a
/// repeated `nc`). Memory is bounded: entries go when their nonce expires, and when the table is
/// full the oldest entries are dropped and every nonce issued no later than them counts as stale
/// from then on, so dropping an entry never reopens its nonce to replay.
#[derive(Debug)]
pub(crate) struct NonceCounts {
    seen: HashMap<NonceId, u32>,
    /// Nonces issued at or before this second are refused as stale (see above).
    floor_secs: Option<u64>,
    max: usize,
}

/// What [`NonceCounts::record`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountCheck {
    /// `nc` is above every count seen for this nonce; it is now the highest.
    Fresh,
    /// `nc` is not above the highest count seen: a replay.
    Replay,
    /// The nonce is older than an entry dropped for space: ask for a new one.
    Evicted,
}

impl NonceCounts {
    pub(crate) fn new(max: usize) -> NonceCounts {
        NonceCounts { seen: HashMap::default(), floor_secs: None, max: max.max(1) }
    }

    /// Records `nc` for nonce `id` if it is above the highest count seen (a no-qop request counts
    /// as `nc = 1`, so such a nonce is good for one request).
    pub(crate) fn record(&mut self, id: NonceId, nc: u32, now: Duration, lifetime: Duration) -> CountCheck {
        if self.floor_secs.is_some_and(|floor| issued_secs(&id) <= floor) {
            return CountCheck::Evicted;
        }
        if let Some(last) = self.seen.get_mut(&id) {
            if nc <= *last {
                return CountCheck::Replay;
            }
            *last = nc;
            return CountCheck::Fresh;
        }
        if nc == 0 {
            // RFC 7616 §3.4: the first request with a nonce has nc=00000001; zero is never valid.
            return CountCheck::Replay;
        }
        if self.seen.len() >= self.max {
            self.purge(now, lifetime);
        }
        if self.seen.len() >= self.max {
            self.evict_oldest();
            if self.floor_secs.is_some_and(|floor| issued_secs(&id) <= floor) {
                return CountCheck::Evicted;
            }
        }
        self.seen.insert(id, nc);
        CountCheck::Fresh
    }

    /// Forgets nonces past their lifetime: they would be refused as stale anyway.
    pub(crate) fn purge(&mut self, now: Duration, lifetime: Duration) {
        let now_secs = now.as_secs();
        self.seen.retain(|id, _| now_secs.saturating_sub(issued_secs(id)) <= lifetime.as_secs());
    }

    /// Drops the entries of the oldest issue second present (at least one entry), raising the floor.
    fn evict_oldest(&mut self) {
        let Some(oldest) = self.seen.keys().map(issued_secs).min() else {
            return;
        };
        self.seen.retain(|id, _| issued_secs(id) > oldest);
        self.floor_secs = Some(self.floor_secs.map_or(oldest, |f| f.max(oldest)));
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Duration = Duration::from_secs(300);

    #[test]
    fn mint_and_check() {
        let mut key = NonceKey::new(&[7; 32], "example.com");
        let now = Duration::from_secs(1_700_000_000);
        let n = key.mint(now);
        assert_eq!(n.len(), 64);
        assert_ne!(n, key.mint(now), "two nonces of the same instant differ");
        assert_eq!(key.check(&n, now, LIFE).0, NonceCheck::Valid { issued_secs: 1_700_000_000 });
        assert_eq!(key.check(&n.to_uppercase(), now + LIFE, LIFE).0, NonceCheck::Valid { issued_secs: 1_700_000_000 });
        assert_eq!(key.check(&n, now + LIFE + Duration::from_secs(1), LIFE).0, NonceCheck::Stale);
        assert_eq!(key.check(&n, now - Duration::from_secs(10), LIFE).0, NonceCheck::Stale);
        // The same secret survives a restart; another realm or secret does not accept it.
        assert!(matches!(NonceKey::new(&[7; 32], "example.com").check(&n, now, LIFE).0, NonceCheck::Valid { .. }));
        assert_eq!(NonceKey::new(&[7; 32], "other.com").check(&n, now, LIFE).0, NonceCheck::Forged);
        assert_eq!(NonceKey::new(&[8; 32], "example.com").check(&n, now, LIFE).0, NonceCheck::Forged);
    }

    #[test]
    fn forged_shapes() {
        let key = NonceKey::new(&[1; 32], "r");
        let now = Duration::from_secs(100);
        let mut tampered = key_nonce(now);
        // Move the issue time forward by flipping a digit of the time field.
        tampered.replace_range(15..16, if &tampered[15..16] == "0" { "1" } else { "0" });
        for bad in ["", "zz", &"0".repeat(64), &"g".repeat(64), &"0".repeat(66), "ea9c8e88df84f1cec4341ae6cbe5a359", &tampered, "é"] {
            assert_eq!(key.check(bad, now, LIFE).0, NonceCheck::Forged, "{bad}");
        }
    }

    fn key_nonce(now: Duration) -> String {
        NonceKey::new(&[1; 32], "r").mint(now)
    }

    #[test]
    fn counts_refuse_replay_and_stay_bounded() {
        let now = Duration::from_secs(1000);
        let mut c = NonceCounts::new(2);
        let id = |t: u64, s: u8| {
            let mut id = [s; PAYLOAD];
            id[..8].copy_from_slice(&t.to_be_bytes());
            id
        };
        assert_eq!(c.record(id(990, 1), 0, now, LIFE), CountCheck::Replay);
        assert_eq!(c.record(id(990, 1), 1, now, LIFE), CountCheck::Fresh);
        assert_eq!(c.record(id(990, 1), 1, now, LIFE), CountCheck::Replay);
        assert_eq!(c.record(id(990, 1), 3, now, LIFE), CountCheck::Fresh);
        assert_eq!(c.record(id(990, 1), 2, now, LIFE), CountCheck::Replay);
        assert_eq!(c.record(id(995, 2), 1, now, LIFE), CountCheck::Fresh);
        // Full: the oldest goes, and its nonce can no longer be used.
        assert_eq!(c.record(id(999, 3), 1, now, LIFE), CountCheck::Fresh);
        assert_eq!(c.len(), 2);
        assert_eq!(c.record(id(990, 1), 9, now, LIFE), CountCheck::Evicted);
        assert_eq!(c.record(id(990, 9), 1, now, LIFE), CountCheck::Evicted);
        c.purge(Duration::from_secs(995) + LIFE, LIFE);
        assert_eq!(c.len(), 2);
        c.purge(Duration::from_secs(995) + LIFE + Duration::from_secs(1), LIFE);
        assert_eq!(c.len(), 1);
    }
}
