//! [`Answered`]: completed non-INVITE server transactions whose final response the TU can build
//! again from a retransmitted request, kept in a few dozen bytes each (issue 16).
//!
//! A non-INVITE server transaction in Completed answers every retransmission of its request with
//! its final response until Timer J (RFC 3261 §17.2.2). [`Lingering`](super::lingering) keeps the
//! response's bytes for that; at 21,000 registrations a second that is 670,000 responses of ~400
//! bytes at once. A registrar's 200 can be built again from the request itself: the same Via,
//! From, Call-ID and CSeq (§8.2.6.2), the same To tag (the registrar derives it from the request),
//! and the AOR's bindings as they are when the retransmission arrives (§10.3 step 8 lists the
//! current bindings). So for such a transaction, handed over with
//! [`Transactions::send_rebuildable_response`](super::Transactions::send_rebuildable_response),
//! the table keeps only:
//!
//! ```text
//!   key digest     128 bits: two SipHash-1-3 of the §17.2.3 key under random keys of this table
//!   fingerprint    64 bits: SipHash-1-3 of the request's bytes as received (top Via stamped)
//!   deadline       Timer J, in whole milliseconds from the table's first one
//! ```
//!
//! A request whose key digest is here and whose bytes give the same fingerprint (its top Via
//! stamped with the same source on arrival) is a retransmission:
//! [`Routed::Repeated`](super::Routed::Repeated) hands it to the TU, which sends its
//! response again (statelessly, the transaction's state being this entry). One with the same key
//! but other bytes cannot be answered with a response rebuilt from it (it is not the request that
//! was answered): it is absorbed ([`Routed::Absorbed`](super::Routed::Absorbed)). A digest
//! collision between two live keys is a 2^-128 event per pair for anyone who does not know the
//! table's keys, and the fingerprint must match as well.
//!
//! Only requests of a method kept here are looked up (a registrar keeps REGISTERs, so an INVITE
//! or a BYE costs no digest), and the answer to a request that was just looked up and missed
//! reuses that lookup's digest.
//!
//! Deadlines are Timer J of each transaction, all `64*T1` after their response, so they arrive
//! in order and a FIFO replaces the timer heap; a deadline earlier than the last one queued (a
//! clock that went back) is moved up to it, so an entry never ends early.

use super::TransactionKey;
use crate::collections::HashMap;
use crate::message::{Message, Method};
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, Instant};

/// The 128-bit digest of a transaction key.
pub(crate) type Digest = [u64; 2];

/// The compact Completed entries of one [`Transactions`](super::Transactions) table.
#[derive(Debug)]
pub(crate) struct Answered {
    /// Two independently keyed SipHash-1-3 instances: the key digest.
    keys: (RandomState, RandomState),
    /// Keyed SipHash-1-3 for request fingerprints.
    bytes: RandomState,
    /// Digest to fingerprint of the request answered.
    entries: HashMap<Digest, u64>,
    /// `(deadline in ms from base, digest)`, deadlines non-decreasing.
    expiry: VecDeque<(u64, Digest)>,
    /// The instant deadlines count from: the first deadline ever queued.
    base: Option<Instant>,
    /// The methods of the requests ever kept here (a registrar's: REGISTER): a request of
    /// another method is never looked up, so an INVITE or a BYE costs no digest.
    methods: Vec<Method>,
    /// The digest of the last key looked up and not found: the TU usually answers that very
    /// request next, and [`Answered::insert`] then need not compute it again.
    last_miss: Option<(TransactionKey, Digest)>,
}

/// What a request's key found here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// The answered request again, byte for byte (stamped from the same source).
    Repeated,
    /// The key of an answered request, but other bytes.
    Other,
}

impl Default for Answered {
    fn default() -> Answered {
        Answered {
            keys: (RandomState::new(), RandomState::new()),
            bytes: RandomState::new(),
            entries: HashMap::default(),
            expiry: VecDeque::new(),
            base: None,
            methods: Vec::new(),
            last_miss: None,
        }
    }
}

// ===== impl Answered =====

impl Answered {
    /// Entries held (each a transaction in Completed).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Items in the expiry queue (equal to [`Answered::len`]), for leak tests.
    pub(crate) fn queued(&self) -> usize {
        self.expiry.len()
    }

    /// The digest of `key` under this table's keys.
    pub(crate) fn digest(&self, key: &TransactionKey) -> Digest {
        let (mut a, mut b) = (self.keys.0.build_hasher(), self.keys.1.build_hasher());
        key.feed(&mut a);
        key.feed(&mut b);
        [a.finish(), b.finish()]
    }

    /// The fingerprint of `request`: a keyed hash of its bytes as received, the top Via included.
    /// That Via carries what the endpoint stamps on arrival (`received`, `rport`, §18.2.1, RFC
    /// 3581) and so says where the response goes (§18.2.2): a request that matches is answered
    /// where the first answer went. The same bytes sent from elsewhere (a replay, or a NAT binding
    /// that moved) are stamped otherwise and absorbed: a rebuilt 200 is never sent to an address
    /// the answered request did not come from.
    pub(crate) fn fingerprint(&self, request: &Message) -> u64 {
        self.bytes.hash_one(request.as_bytes().as_ref())
    }

    /// Keeps the transaction of `key`, whose request (of method `method` and
    /// [`Answered::fingerprint`] `fingerprint`) was answered, until `end` (Timer J). False (nothing
    /// kept) if the key is here already.
    pub(crate) fn insert(&mut self, key: &TransactionKey, method: &Method, fingerprint: u64, end: Instant) -> bool {
        let digest = match self.last_miss.take() {
            Some((k, digest)) if k == *key => digest,
            _ => self.digest(key),
        };
        if self.entries.contains_key(&digest) {
            return false;
        }
        if !self.methods.contains(method) {
            self.methods.push(method.clone());
        }
        let base = *self.base.get_or_insert(end);
        // Whole milliseconds, rounded up: an entry may end up to 1 ms late, never early.
        let since = end.saturating_duration_since(base);
        let mut at = since.as_millis().saturating_add(u128::from(since.subsec_nanos() % 1_000_000 != 0));
        if let Some(&(last, _)) = self.expiry.back() {
            at = at.max(u128::from(last));
        }
        let at = u64::try_from(at).unwrap_or(u64::MAX);
        self.entries.insert(digest, fingerprint);
        self.expiry.push_back((at, digest));
        true
    }

    /// What `request`, whose key is `key`, finds here.
    pub(crate) fn find(&mut self, key: &TransactionKey, request: &Message) -> Option<Hit> {
        if self.entries.is_empty() || !self.methods.contains(request.method()?) {
            return None;
        }
        let digest = self.digest(key);
        match self.entries.get(&digest) {
            Some(&fingerprint) => Some(if fingerprint == self.fingerprint(request) { Hit::Repeated } else { Hit::Other }),
            None => {
                self.last_miss = Some((key.clone(), digest));
                None
            }
        }
    }

    /// The earliest deadline held.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let (&(at, _), base) = (self.expiry.front()?, self.base.as_ref()?);
        Some(base.checked_add(Duration::from_millis(at)).unwrap_or(*base))
    }

    /// Ends every entry due at `now` (Timer J fired); returns how many ended.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> usize {
        let Some(base) = self.base else { return 0 };
        let mut ended = 0;
        while let Some(&(at, digest)) = self.expiry.front() {
            if base.checked_add(Duration::from_millis(at)).is_some_and(|t| t > now) {
                break;
            }
            self.expiry.pop_front();
            self.entries.remove(&digest);
            ended += 1;
        }
        if self.expiry.is_empty() {
            // Nothing left to count from: give the storage back after a burst.
            self.expiry.shrink_to(64);
            self.entries.shrink_to(64);
        }
        ended
    }
}
