//! Dialog identifiers (RFC 3261 §12) and the generator for tags, Call-IDs and branches
//! (§8.1.1.4, §8.1.1.7, §19.3).

use crate::message::{Message, BRANCH_COOKIE};
use rand::rngs::{ChaCha12Rng, SysRng};
use rand::{Rng, SeedableRng, TryRng};
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
        DialogId { call_id: call_id.into(), local_tag: local_tag.into(), remote_tag: shared(remote_tag) }
    }

    /// The id a request we received names (UAS view, §12.2.2): local tag from To, remote tag from
    /// From. `None` when To has no tag (not a mid-dialog request) or a header does not parse.
    pub fn of_request(req: &Message) -> Option<DialogId> {
        let to = req.to_tag().ok()?;
        let from = req.from_tag().ok()?;
        Some(DialogId::new(req.call_id().ok()?, to?, from.unwrap_or("")))
    }

    /// The id a response to one of our requests names (UAC view, §12.1.2): local tag from From,
    /// remote tag from To (empty if To has no tag).
    pub fn of_response(resp: &Message) -> Option<DialogId> {
        let to = resp.to_tag().ok()?;
        let from = resp.from_tag().ok()?;
        Some(DialogId::new(resp.call_id().ok()?, from?, to.unwrap_or("")))
    }

    /// True for the id of an INVITE we sent that no answer with a To tag has reached yet.
    pub fn is_pending_invite(&self) -> bool {
        self.remote_tag.is_empty()
    }

    /// The same Call-ID and local tag with an empty remote tag: the id [`crate::dialog::Dialogs::invite`]
    /// returned for the INVITE that created this dialog (UAC side).
    pub fn invite_id(&self) -> DialogId {
        DialogId { call_id: self.call_id.clone(), local_tag: self.local_tag.clone(), remote_tag: Arc::default() }
    }
}

/// `s` shared: the empty tag of every pending INVITE is `Arc::default()`, which does not allocate
/// (`Arc::from("")` does, once per id: two or three times per call placed).
fn shared(s: &str) -> Arc<str> {
    if s.is_empty() {
        Arc::default()
    } else {
        s.into()
    }
}

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};local={};remote={}", self.call_id, self.local_tag, self.remote_tag)
    }
}

/// The generator of every identifier the stack mints: tags, Call-IDs, branches (RFC 3261
/// §8.1.1.4, §8.1.1.7, §19.3), cnonces, SDP session ids and RTP SSRCs / first sequence numbers
/// (RFC 3550 §5.1, §8). ChaCha12 (`rand`'s `ChaCha12Rng`), a CSPRNG: one tag seen on the wire tells
/// nothing about the next Call-ID or branch, which a guessable id would give away to an attacker
/// (forged CANCEL/BYE, dialog hijack).
///
/// Two ways to key it:
/// - [`IdGen::from_os`]: 256 bits from the OS CSPRNG (`getrandom`), for a generator made on the spot;
/// - [`IdGen::new`]: from a 64-bit seed, so equal seeds give equal sequences. Tests inject fixed
///   seeds; the binaries pass [`IdGen::os_seed`] (64 bits from the OS) through the configs'
///   `seed` fields, so recovering a generator's key from the ids it printed means searching 2^64
///   ChaCha12 keys.
pub struct IdGen {
    rng: ChaCha12Rng,
}

impl fmt::Debug for IdGen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key or the stream position: they would give the next ids away.
        f.debug_struct("IdGen").finish_non_exhaustive()
    }
}

impl IdGen {
    /// A generator keyed from `seed`; equal seeds give equal sequences (tests, reproducible runs).
    pub fn new(seed: u64) -> IdGen {
        IdGen { rng: ChaCha12Rng::seed_from_u64(seed) }
    }

    /// A generator keyed with 256 bits from the OS CSPRNG.
    pub fn from_os() -> IdGen {
        IdGen { rng: ChaCha12Rng::from_seed(os_bytes()) }
    }

    /// 64 bits from the OS CSPRNG: the `seed` to put in a production config.
    pub fn os_seed() -> u64 {
        let b = os_bytes();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Fills `dest` straight from the OS CSPRNG (`getrandom`), e.g. a secret key kept on disk.
    pub fn os_fill(dest: &mut [u8]) -> Result<(), rand::rngs::SysError> {
        SysRng.try_fill_bytes(dest)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Fills `dest` with random bytes (e.g. a key).
    pub fn fill(&mut self, dest: &mut [u8]) {
        self.rng.fill_bytes(dest);
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
        let mut s = String::with_capacity(16);
        push_hex(&mut s, self.next_u64(), 16);
        s
    }

    /// A Call-ID `random@host` (§8.1.1.4).
    pub fn call_id(&mut self, host: &str) -> String {
        let mut s = String::with_capacity(25 + host.len());
        push_hex(&mut s, self.next_u64(), 16);
        push_hex(&mut s, u64::from(self.next_u64() as u32), 8);
        s.push('@');
        s.push_str(host);
        s
    }

    /// A branch with the RFC 3261 magic cookie (§8.1.1.7).
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(BRANCH_COOKIE.len() + 16);
        s.push_str(BRANCH_COOKIE);
        push_hex(&mut s, self.next_u64(), 16);
        s
    }
}

/// Appends the low `digits` hex digits of `v`, lower case and zero-padded: what `{:016x}` and
/// `{:08x}` write, without the formatting machinery (a load run mints four ids per call; through
/// `format!` they cost about 5,000 instructions a call, BENCHMARKS.md "softphone load, the UA path").
fn push_hex(s: &mut String, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        let d = ((v >> (4 * i)) & 0xf) as u8;
        s.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
    }
}

/// 32 bytes from the OS CSPRNG (`getrandom`). Without an OS source nothing the service mints
/// would be unpredictable, and no SIP stack can run there: that is a broken host, not an input.
fn os_bytes() -> [u8; 32] {
    let mut key = [0u8; 32];
    // Invariant: getrandom fails only where the OS has no entropy source at all (no getrandom(2),
    // no /dev/urandom): refusing to start beats minting guessable ids.
    SysRng.try_fill_bytes(&mut key).expect("the OS random number generator is unavailable");
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn ids_are_written_as_format_would() {
        for seed in [0, 1, 0x5157_6974_6368, u64::MAX] {
            let (mut a, mut b) = (IdGen::new(seed), IdGen::new(seed));
            assert_eq!(a.tag(), format!("{:016x}", b.next_u64()));
            assert_eq!(a.branch(), format!("{BRANCH_COOKIE}{:016x}", b.next_u64()));
            assert_eq!(a.call_id("192.0.2.1"), format!("{:016x}{:08x}@192.0.2.1", b.next_u64(), b.next_u64() as u32));
        }
        let mut s = String::new();
        push_hex(&mut s, 0x0123_4567_89ab_cdef, 16);
        push_hex(&mut s, 0xa, 8);
        assert_eq!(s, "0123456789abcdef0000000a");
    }

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
    fn os_keyed_generators_differ() {
        let (mut a, mut b) = (IdGen::from_os(), IdGen::from_os());
        assert_ne!(a.tag(), b.tag());
        assert_ne!(IdGen::os_seed(), IdGen::os_seed());
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
