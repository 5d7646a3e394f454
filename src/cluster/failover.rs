//! What an instance does with each saved call when a membership is published (issue 17 points 2
//! and 4), sans-IO: the decision only; the compare-and-set in Redis and the adoption itself are
//! the caller's.
//!
//! Every saved call carries its owner (a member URI) and the membership epoch at which that owner
//! took it. An instance never decides on its own that a peer is dead: it acts on the published
//! [`Membership`] alone, and a Redis outage (no new membership) changes nothing.
//!
//! | saved owner | membership says | verdict for instance `me` |
//! | --- | --- | --- |
//! | `me` (or none) | no membership yet, or `me` live | [`Verdict::Mine`]: keep it (a restart takes it back) |
//! | `me` (or none) | `me` not live | [`Verdict::Leave`]: the live instances adopt it; do not take it back |
//! | another, live | | [`Verdict::Theirs`]: not ours; drop it from memory if we still hold it |
//! | another, not live | its rendezvous owner among the live is `me`, epoch newer than the call's | [`Verdict::Adopt`] |
//! | another, not live | otherwise | [`Verdict::Theirs`] (another live instance adopts it) |
//!
//! Since rendezvous hashing moves only a dead member's calls, the live members agree on who adopts
//! each of them without talking to each other; the compare-and-set on owner and epoch settles the
//! rare race (two memberships in flight).

use super::Membership;

/// A saved call's ownership, as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The caller leg's Call-ID: the call's [`super::key`] is its.
    pub caller_call_id: String,
    /// The member URI of its owner (`None`: saved without a cluster identity).
    pub owner: Option<String>,
    /// The membership epoch at which the owner took the call.
    pub epoch: u64,
}

/// What to do with one saved call (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ours: keep serving it (or take it back after a restart).
    Mine,
    /// Ours in the store, but the membership says we are not live: leave it to its adopter.
    Leave,
    /// Owned by another instance.
    Theirs,
    /// Its owner is gone and we are its new owner: claim it (compare-and-set), then adopt it.
    Adopt,
}

/// The verdict on the call `stamp` for instance `me` under membership `m` (`None`: none
/// published yet).
pub fn judge(m: Option<&Membership>, me: &str, stamp: &Stamp) -> Verdict {
    let owner = stamp.owner.as_deref().unwrap_or(me);
    match m {
        None if owner == me => Verdict::Mine,
        None => Verdict::Theirs,
        Some(m) if owner == me => {
            if m.is_live(me) {
                Verdict::Mine
            } else {
                Verdict::Leave
            }
        }
        Some(m) => {
            if !m.is_live(owner) && m.epoch > stamp.epoch && m.owner_of(&stamp.caller_call_id) == Some(me) {
                Verdict::Adopt
            } else {
                Verdict::Theirs
            }
        }
    }
}

/// The socket address of a member URI `sip:IP:PORT` (`sip:[v6]:PORT`); `None` for a host name
/// or a URI with more in it.
pub fn member_addr(uri: &str) -> Option<std::net::SocketAddr> {
    uri.strip_prefix("sip:")?.parse().ok()
}

/// Follows published memberships: only a newer epoch is acted on (a late or replayed message,
/// or the same set read again after a reconnect, is not).
#[derive(Debug, Clone, Default)]
pub struct Follower {
    last: Option<u64>,
}

impl Follower {
    /// Whether `m` is newer than everything seen so far; if so it becomes the latest.
    pub fn accept(&mut self, m: &Membership) -> bool {
        if self.last.is_some_and(|e| m.epoch <= e) {
            return false;
        }
        self.last = Some(m.epoch);
        true
    }

    /// The latest epoch accepted.
    pub fn epoch(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sip:127.0.0.1:5071";
    const B: &str = "sip:127.0.0.1:5072";
    const C: &str = "sip:127.0.0.1:5073";

    fn m(epoch: u64, live: &[&str]) -> Membership {
        Membership { epoch, live: live.iter().map(|s| s.to_string()).collect() }
    }

    fn stamp(call_id: &str, owner: &str, epoch: u64) -> Stamp {
        Stamp { caller_call_id: call_id.into(), owner: Some(owner.into()), epoch }
    }

    #[test]
    fn a_dead_members_calls_go_to_their_rendezvous_owner_and_nobody_else() {
        let before = m(1, &[A, B, C]);
        let after = m(2, &[B, C]);
        let (mut to_b, mut to_c) = (0, 0);
        for i in 0..300 {
            let id = format!("{i}@phone");
            let s = stamp(&id, A, 1);
            let (b, c) = (judge(Some(&after), B, &s), judge(Some(&after), C, &s));
            // Exactly one live member adopts each call, and it is the rendezvous owner.
            match after.owner_of(&id) {
                Some(o) if o == B => {
                    assert_eq!((b, c), (Verdict::Adopt, Verdict::Theirs));
                    to_b += 1;
                }
                _ => {
                    assert_eq!((b, c), (Verdict::Theirs, Verdict::Adopt));
                    to_c += 1;
                }
            }
            // Under the old membership A was live: nobody adopts.
            assert_eq!(judge(Some(&before), B, &s), Verdict::Theirs);
            // A's own view: its call, unless it is no longer live.
            assert_eq!(judge(Some(&before), A, &s), Verdict::Mine);
            assert_eq!(judge(Some(&after), A, &s), Verdict::Leave);
        }
        assert!(to_b > 100 && to_c > 100, "{to_b} {to_c}");
    }

    #[test]
    fn a_live_owners_calls_are_never_taken_and_an_adopted_call_stays() {
        // B adopted A's call at epoch 2; A comes back (epoch 3): B is live, so A takes nothing
        // back even where the hash now names A, and B keeps it.
        let back = m(3, &[A, B]);
        for i in 0..100 {
            let s = stamp(&format!("{i}@phone"), B, 2);
            assert_eq!(judge(Some(&back), A, &s), Verdict::Theirs);
            assert_eq!(judge(Some(&back), B, &s), Verdict::Mine);
        }
    }

    #[test]
    fn an_old_or_equal_epoch_adopts_nothing() {
        // A call stamped at epoch 5 (its owner took it then) is not adopted on a membership of
        // epoch 5 or older, even without its owner: that membership predates the call's owner.
        let s = stamp("x@phone", A, 5);
        for e in [3, 5] {
            for me in [B, C] {
                assert_ne!(judge(Some(&m(e, &[B, C])), me, &s), Verdict::Adopt);
            }
        }
        let owner = m(6, &[B, C]).owner_of("x@phone").map(str::to_owned).unwrap_or_default();
        assert_eq!(judge(Some(&m(6, &[B, C])), &owner, &s), Verdict::Adopt);
    }

    #[test]
    fn without_a_membership_or_an_owner_nothing_moves() {
        let mine = Stamp { caller_call_id: "y@phone".into(), owner: None, epoch: 0 };
        assert_eq!(judge(None, A, &mine), Verdict::Mine);
        assert_eq!(judge(None, A, &stamp("y@phone", B, 1)), Verdict::Theirs);
        // Nobody live at all (the dispatcher lost every probe): nothing is adopted.
        assert_eq!(judge(Some(&m(9, &[])), B, &stamp("y@phone", A, 1)), Verdict::Theirs);
    }

    #[test]
    fn member_addresses() {
        assert_eq!(member_addr(A), Some("127.0.0.1:5071".parse().unwrap()));
        assert_eq!(member_addr("sip:[::1]:5060"), Some("[::1]:5060".parse().unwrap()));
        assert_eq!(member_addr("sip:sb.example:5060"), None);
        assert_eq!(member_addr("127.0.0.1:5060"), None);
    }

    #[test]
    fn the_follower_acts_on_newer_epochs_only() {
        let mut f = Follower::default();
        assert_eq!(f.epoch(), None);
        assert!(f.accept(&m(2, &[A])));
        assert!(!f.accept(&m(2, &[A, B])), "the same epoch again (a reconnect's read)");
        assert!(!f.accept(&m(1, &[A, B])), "a late message");
        assert!(f.accept(&m(3, &[B])));
        assert_eq!(f.epoch(), Some(3));
    }
}
