//! Dialog identifiers (RFC 3261 §12) and the seeded generator for tags, Call-IDs and branches
//! (§8.1.1.4, §8.1.1.7, §19.3).

use crate::message::{Message, BRANCH_COOKIE};
use std::fmt;
use std::sync::Arc;

/// Identifies a dialog (RFC 3261 §12): the Call-ID plus the local and remote tags, seen from this
/// side. For a UAS the local tag is the To tag; for a UAC it is the From tag.
///
/// An INVITE we sent that has no answer with a To tag yet is named by an id whose `remote_tag` is
/// empty (see [`DialogId::is_pending_invite`]); the dialogs it creates share its Call-ID and local tag.
///
/// The parts are shared (`Arc<str>`): an id is cloned into every table that names the dialog (the
/// dialog itself, the index, the INVITE's entry, the B2BUA's call), and a clone should not be
/// three more allocations kept for the life of the call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    /// The Call-ID (§20.8).
    pub call_id: Arc<str>,
    /// Our tag.
    pub local_tag: Arc<str>,
    /// The peer's tag; empty for an INVITE not yet answered with a tag.
    pub remote_tag: Arc<str>,
}

// ===== impl DialogId =====

impl DialogId {
    /// An id from its three parts.
    pub fn new(call_id: &str, local_tag: &str, remote_tag: &str) -> DialogId {
        DialogId { call_id: call_id.into(), local_tag: local_tag.into(), remote_tag: remote_tag.into() }
    }

    /// The id a request we received names (UAS view, §12.2.2): local tag from To, remote tag from
    /// From. `None` when To has no tag (not a mid-dialog request) or a header does not parse.
    pub fn of_request(req: &Message) -> Option<DialogId> {
        let to = req.to().ok()?;
        let from = req.from().ok()?;
        Some(DialogId::new(req.call_id().ok()?, to.tag()?, from.tag().unwrap_or("")))
    }

    /// The id a response to one of our requests names (UAC view, §12.1.2): local tag from From,
    /// remote tag from To (empty if To has no tag).
    pub fn of_response(resp: &Message) -> Option<DialogId> {
        let to = resp.to().ok()?;
        let from = resp.from().ok()?;
        Some(DialogId::new(resp.call_id().ok()?, from.tag()?, to.tag().unwrap_or("")))
    }

    /// True for the id of an INVITE we sent that no answer with a To tag has reached yet.
    pub fn is_pending_invite(&self) -> bool {
        self.remote_tag.is_empty()
    }

    /// The same Call-ID and local tag with an empty remote tag: the id [`crate::dialog::Dialogs::invite`]
    /// returned for the INVITE that created this dialog (UAC side).
    pub fn invite_id(&self) -> DialogId {
        DialogId { call_id: self.call_id.clone(), local_tag: self.local_tag.clone(), remote_tag: "".into() }
    }
}

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};local={};remote={}", self.call_id, self.local_tag, self.remote_tag)
    }
}

/// A small seeded generator (SplitMix64) for tags, Call-IDs and branches. Not cryptographic: these
/// values must be unique (§8.1.1.4: "globally unique"; §19.3: at least 32 bits of randomness), and
/// seeding from config keeps test runs reproducible.
#[derive(Debug, Clone)]
pub struct IdGen {
    state: u64,
}

impl IdGen {
    /// A generator seeded with `seed`; equal seeds give equal sequences.
    pub fn new(seed: u64) -> IdGen {
        IdGen { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A From/To tag: 64 random bits in hex (§19.3 asks for at least 32).
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }

    /// A Call-ID `random@host` (§8.1.1.4).
    pub fn call_id(&mut self, host: &str) -> String {
        format!("{:016x}{:08x}@{host}", self.next_u64(), self.next_u64() as u32)
    }

    /// A branch with the RFC 3261 magic cookie (§8.1.1.7).
    pub fn branch(&mut self) -> String {
        format!("{BRANCH_COOKIE}{:016x}", self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn seeded_and_distinct() {
        let (mut a, mut b) = (IdGen::new(7), IdGen::new(7));
        assert_eq!(a.tag(), b.tag());
        let t1 = a.tag();
        assert_ne!(t1, a.tag());
        assert!(a.branch().starts_with("z9hG4bK"));
        assert!(a.call_id("h.example").ends_with("@h.example"));
        assert!(a.below(10) < 10);
        assert_eq!(a.below(0), 0);
    }

    #[test]
    fn ids_from_both_sides() {
        let wire = "BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=A\r\n\
                    To: <sip:b@h>;tag=B\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let req = Message::parse(Bytes::from(wire)).unwrap();
        assert_eq!(DialogId::of_request(&req), Some(DialogId::new("c", "B", "A")));
        let resp = req.response_to(200, "OK", None).finish();
        let uac = DialogId::of_response(&resp).unwrap();
        assert_eq!(uac, DialogId::new("c", "A", "B"));
        assert!(uac.invite_id().is_pending_invite());
        assert_eq!(uac.to_string(), "c;local=A;remote=B");
    }
}
