//! Call-ID stickiness, one idea for two scales (issue 16 point 1, issue 17 points 2 to 4).
//!
//! Inside one process, `serve --workers N` gives each worker the calls whose Call-ID maps to it;
//! across machines, the dispatcher gives each instance the calls whose Call-ID maps to it. Both
//! use the [`key`] of a Call-ID defined here, so a call lands on the same worker of the same
//! instance whoever computes it:
//!
//! - [`worker_of`]: the worker inside one process (`key` modulo the worker count, after mixing);
//! - [`rendezvous`]: the instance among the live members (highest random weight, so when an
//!   instance leaves only its own calls move, and nobody else's);
//! - [`sticky_call_id`]: the Call-ID the B2BUA mints for a callee leg, built so that its key is
//!   the caller leg's key. Both legs of a call then map to the same worker and instance, whatever
//!   the worker count or the live set is at that moment.
//!
//! Membership (which instances are live) is published by the dispatcher from its OPTIONS
//! heartbeats, never decided by an instance: see [`membership`]. What an instance does with each
//! saved call when the membership changes (keep, leave, adopt) is [`failover`].
//!
//! Nothing here is secret: a caller who crafts a sticky-looking Call-ID can pick its worker, as it
//! could by trying Call-IDs. Shares stay bounded by the dispatcher's bounded-load rule and the
//! per-worker caps, not by the hash.

pub mod failover;
pub mod membership;

pub use membership::Membership;

/// Prefix of a Call-ID that carries its own key: `sbk-` + 16 hex digits + `-`.
pub const STICKY_PREFIX: &str = "sbk-";

/// The 64-bit key of a Call-ID: the key it carries when [`sticky_call_id`] made it, otherwise a
/// stable hash (FNV-1a, then a SplitMix64 finaliser) of all its bytes. Stable across processes,
/// machines and versions: instances and dispatchers must agree on it.
pub fn key(call_id: &str) -> u64 {
    carried_key(call_id).unwrap_or_else(|| hash(call_id.as_bytes()))
}

fn carried_key(call_id: &str) -> Option<u64> {
    let rest = call_id.strip_prefix(STICKY_PREFIX)?;
    let (hex, tail) = (rest.get(..16)?, rest.get(16..)?);
    if !tail.starts_with('-') || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// FNV-1a 64 over `bytes`, then [`mix`]: stable, fast, not for secrets.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// The SplitMix64 finaliser: spreads every input bit over the output.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The worker (in `0..workers`) that owns a call with this Call-ID. `workers` of 0 or 1 is 0.
pub fn worker_of(call_id: &str, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    // Mixed again with a constant so the worker choice is independent of the instance choice.
    (mix(key(call_id) ^ 0x5157_4f52_4b45_5253) % workers as u64) as usize
}

/// Rendezvous (highest random weight) hashing: the index in `members` of the instance that owns
/// a call with this `key`, `None` when `members` is empty. Members are named by their SIP URI
/// (e.g. `sip:10.0.0.5:5060`), as in the dispatcher's backend list.
pub fn rendezvous<S: AsRef<str>>(key: u64, members: &[S]) -> Option<usize> {
    rank(key, members).first().copied()
}

/// All `members` indices, best first, for this `key`: the dispatcher walks this list when the
/// first choice is over its bounded-load share (issue 17 point 3).
pub fn rank<S: AsRef<str>>(key: u64, members: &[S]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = members.iter().enumerate().map(|(i, m)| (mix(hash(m.as_ref().as_bytes()) ^ key), i)).collect();
    // Highest weight first; ties (practically impossible) fall back to the lower index.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// A callee-leg Call-ID whose [`key`] is `caller_call_id`'s key: `sbk-KKKKKKKKKKKKKKKK-RRRR@host`,
/// with `random` (64 fresh random bits from the caller's id generator) keeping it unguessable
/// (RFC 3261 §8.1.1.4).
pub fn sticky_call_id(caller_call_id: &str, random: u64, host: &str) -> String {
    format!("{STICKY_PREFIX}{:016x}-{random:016x}@{host}", key(caller_call_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_stable() {
        // Pinned: another version or machine must compute the same key for the same Call-ID.
        assert_eq!(hash(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_eq!(key("a84b4c76e66710@pc33.atlanta.com"), 0xe655_bb1a_4c82_d609);
    }

    #[test]
    fn a_sticky_call_id_maps_where_its_caller_maps() {
        let caller = "3848276298220188511@atlanta.example.com";
        let callee = sticky_call_id(caller, 0x1234_5678_9abc_def0, "sb.example");
        assert!(callee.starts_with("sbk-") && callee.ends_with("@sb.example"));
        assert_eq!(key(&callee), key(caller));
        for n in 1..=16 {
            assert_eq!(worker_of(&callee, n), worker_of(caller, n));
        }
        let members = ["sip:127.0.0.1:5071", "sip:127.0.0.1:5072", "sip:127.0.0.1:5073"];
        assert_eq!(rendezvous(key(&callee), &members), rendezvous(key(caller), &members));
    }

    #[test]
    fn a_malformed_sticky_prefix_is_hashed_whole() {
        for id in ["sbk-", "sbk-12", "sbk-zzzzzzzzzzzzzzzz-1@h", "sbk-0123456789abcdef1@h", "sbk-0123456789abcdé-@h"] {
            assert_eq!(key(id), hash(id.as_bytes()), "{id}");
        }
        assert_eq!(key("sbk-00000000000000ff-x@h"), 0xff);
    }

    #[test]
    fn workers_and_members_share_the_load() {
        let mut per_worker = [0u32; 4];
        let members = ["sip:a", "sip:b", "sip:c"];
        let mut per_member = [0u32; 3];
        for i in 0..12_000 {
            let id = format!("{i}@load.example");
            per_worker[worker_of(&id, 4)] += 1;
            per_member[rendezvous(key(&id), &members).unwrap_or(0)] += 1;
        }
        assert!(per_worker.iter().all(|&n| (2_700..3_300).contains(&n)), "{per_worker:?}");
        assert!(per_member.iter().all(|&n| (3_600..4_400).contains(&n)), "{per_member:?}");
        assert_eq!(worker_of("x", 1), 0);
        assert_eq!(worker_of("x", 0), 0);
        assert_eq!(rendezvous::<&str>(1, &[]), None);
    }

    #[test]
    fn when_a_member_leaves_only_its_calls_move() {
        let all = ["sip:a", "sip:b", "sip:c", "sip:d"];
        let without_c = ["sip:a", "sip:b", "sip:d"];
        for i in 0..5_000 {
            let k = key(&format!("{i}@x"));
            let before = all[rendezvous(k, &all).unwrap_or(0)];
            let after = without_c[rendezvous(k, &without_c).unwrap_or(0)];
            if before != "sip:c" {
                assert_eq!(before, after, "call {i} moved off a live member");
            }
            assert_eq!(rank(k, &all)[0], rendezvous(k, &all).unwrap_or(usize::MAX));
        }
    }
}
