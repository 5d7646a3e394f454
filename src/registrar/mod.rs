//! The registrar of RFC 3261 §10.3: a location service that keeps, per address-of-record, the
//! contacts where its user can be reached, written by REGISTER requests.
//!
//! Sans-IO like the protocol layers: it never reads a clock or touches the network or a disk.
//! Time comes in as `now`, the wall-clock time since the Unix epoch, because bindings outlive a
//! restart: their expiry is an absolute Unix second, saved by the caller and handed back to
//! [`Registrar::restore`].
//!
//! Run loop:
//! 1. At start, [`Registrar::restore`] the bindings saved earlier (the expired are dropped).
//! 2. For each REGISTER, after authentication, call [`Registrar::handle_register`]. Persist every
//!    [`Change`] of the [`Outcome`] (in order), then send its response.
//! 3. Sleep until [`Registrar::next_expiry`], then call [`Registrar::purge`] and persist its changes.
//!    A spurious purge changes nothing.
//!
//! Routing asks [`Registrar::lookup`] (or [`Registrar::lookup_user`]) for where to send a request
//! addressed to an AOR; a [`Binding`] holds both the registered contact and the address the
//! REGISTER came from, which is the one that works for a phone behind a NAT.
//!
//! ```
//! use std::time::Duration;
//! use switchboard::message::Message;
//! use switchboard::registrar::{Registrar, RegistrarConfig};
//! let wire = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
//! To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n\
//! Contact: <sip:bob@192.0.2.9>;expires=600\r\nContent-Length: 0\r\n\r\n";
//! let req = Message::parse(bytes::Bytes::from_static(wire)).unwrap();
//! let mut reg = Registrar::new(RegistrarConfig::default());
//! let now = Duration::from_secs(1_700_000_000);
//! let out = reg.handle_register(&req, "192.0.2.9:5060".parse().unwrap(), None, now);
//! assert_eq!(out.response.status(), Some(200));
//! assert_eq!(reg.lookup("sip:bob@example.com")[0].contact, "sip:bob@192.0.2.9");
//! assert_eq!(reg.next_expiry(), Some(1_700_000_600));
//! ```

mod binding;
mod caps;
mod error;
mod register;
mod shared;

pub use binding::{aor_of, Binding};
pub use error::RegisterError;
pub use shared::SharedRegistrar;

use crate::message::{Message, Uri};
use binding::{aor_for, contact_key};
use std::collections::BTreeMap;
use std::time::Duration;

/// Registrar policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// The domain this registrar serves: the Request-URI and the To URI must name it (RFC 3261
    /// §10.3 steps 1 and 5, answered 404 otherwise). `None` accepts any host.
    pub domain: Option<String>,
    /// The shortest registration accepted; shorter (but not 0) is answered 423 (§10.3 step 7).
    pub min_expires: u32,
    /// The longest registration granted; longer requests are shortened to it (§10.3 step 7).
    pub max_expires: u32,
    /// The interval used when neither the contact nor the request gives one (§10.3 step 7).
    pub default_expires: u32,
    /// Contacts one address-of-record may hold; a REGISTER that would add one more is answered
    /// 503 "Too many registered contacts" with Retry-After (as Kamailio's registrar does).
    /// Refreshing or removing existing contacts is always allowed.
    pub max_contacts: usize,
    /// Bindings across all AORs; a REGISTER that would add one more is answered 503 with
    /// Retry-After.
    pub max_bindings: usize,
    /// The largest 200 a REGISTER that adds a contact may be answered with: the 200 must list
    /// every binding of the AOR (§10.3 step 8) and go in one UDP datagram of at most 1,300 bytes
    /// (RFC 3261 §18.1.1), so a contact that would make the list longer is refused like one over
    /// `max_contacts`.
    pub max_response_bytes: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            domain: None,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            max_bindings: 100_000,
            max_response_bytes: 1300,
        }
    }
}

/// A change to the binding table, for the caller to persist. Bindings are keyed by
/// `(aor, contact)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace the binding with this `aor` and `contact`.
    Put(Binding),
    /// Delete the binding with this `aor` and `contact`.
    Remove {
        /// The canonical address-of-record.
        aor: String,
        /// The contact URI as stored.
        contact: String,
    },
}

/// What [`Registrar::handle_register`] decided.
#[derive(Debug, Clone)]
#[must_use = "the response must be sent and the changes persisted"]
pub struct Outcome {
    /// The final response to send (RFC 3261 §10.3 step 8, or the error of the step that failed).
    pub response: Message,
    /// The binding changes made, in order; empty when the request was refused.
    pub changes: Vec<Change>,
    /// Why the request was refused, if it was.
    pub rejected: Option<RegisterError>,
}

/// The binding table and the §10.3 processing of REGISTER requests. See the [module doc](self) for
/// the run loop.
///
/// Inputs are [`handle_register`](Registrar::handle_register), [`purge`](Registrar::purge) and
/// [`restore`](Registrar::restore); each returns the [`Change`]s it made. Everything else only reads.
#[derive(Debug, Clone)]
pub struct Registrar {
    config: RegistrarConfig,
    /// Bindings per canonical AOR; an AOR has few, so a vector each.
    by_aor: BTreeMap<String, Vec<Entry>>,
    /// `(expires_at, id)` of every binding, to its AOR: the purge timer's queue.
    deadlines: BTreeMap<(u64, u64), String>,
    /// Id for the next write; ids also order writes made in the same second.
    next_id: u64,
    count: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    /// The contact URI normalised for comparison (RFC 3261 §19.1.4).
    key: String,
    binding: Binding,
}

// ===== impl Registrar =====

impl Registrar {
    /// An empty registrar.
    pub fn new(config: RegistrarConfig) -> Registrar {
        Registrar { config, by_aor: BTreeMap::new(), deadlines: BTreeMap::new(), next_id: 0, count: 0 }
    }

    /// The policy in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// The bindings of `aor`, best first: `q` descending, then most recently written. `aor` may be
    /// any form of the URI (`sip:Bob@Example.com:5060;transport=udp` finds `sip:Bob@example.com`).
    /// Bindings that lapsed since the last [`purge`](Registrar::purge) are still listed: drive the
    /// purge timer, or compare [`Binding::expires_at`] with the time.
    pub fn lookup(&self, aor: &str) -> Vec<&Binding> {
        let canonical = Uri::parse(aor).ok().and_then(|u| aor_of(&u));
        let entries = self.by_aor.get(canonical.as_deref().unwrap_or(aor));
        sorted(entries.map_or(&[], Vec::as_slice))
    }

    /// The bindings of `sip:user@domain`, as [`lookup`](Registrar::lookup) orders them. `user` is
    /// unescaped text; `domain` is compared case-insensitively.
    pub fn lookup_user(&self, user: &str, domain: &str) -> Vec<&Binding> {
        self.by_aor.get(&aor_for(user, domain)).map_or_else(Vec::new, |e| sorted(e))
    }

    /// Every AOR with at least one binding, in lexical order.
    pub fn aors(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_aor.keys().map(String::as_str)
    }

    /// How many bindings there are, across all AORs.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is no binding at all.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// When the next binding lapses, in Unix seconds: when to call [`purge`](Registrar::purge).
    pub fn next_expiry(&self) -> Option<u64> {
        self.deadlines.keys().next().map(|&(at, _)| at)
    }

    /// Removes every binding lapsed at `now` and returns their removals. Cost is proportional to
    /// the number removed.
    pub fn purge(&mut self, now: Duration) -> Vec<Change> {
        let now = now.as_secs();
        let mut changes = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), aor) = entry.remove_entry();
            if let Some(b) = self.take(&aor, |e| e.id == id) {
                changes.push(Change::Remove { aor: b.aor, contact: b.contact });
            }
        }
        changes
    }

    /// Loads bindings saved from earlier [`Change`]s, e.g. after a restart. Those lapsed at `now`
    /// are dropped and returned as removals, for the store to forget. A binding whose AOR and
    /// contact match one already loaded replaces it. An AOR with more than `max_contacts` (saved
    /// under a higher limit) keeps its newest ones; the others are removals too.
    pub fn restore(&mut self, bindings: Vec<Binding>, now: Duration) -> Vec<Change> {
        let now = now.as_secs();
        let mut changes = Vec::new();
        for b in bindings {
            if b.is_expired(now) {
                changes.push(Change::Remove { aor: b.aor, contact: b.contact });
                continue;
            }
            // A contact that no longer parses still gets a key: its text.
            let key = Uri::parse(&b.contact).map_or_else(|_| b.contact.clone(), |u| contact_key(&u));
            self.put(key, b);
        }
        changes.extend(self.trim_to_max_contacts());
        changes
    }

    /// Makes `bindings` the bindings of `aor` (none: it has none): another instance changed them
    /// in a shared store, or a write the store refused is undone (issue 17). Lapsed ones are left
    /// out. Returns nothing to persist: the store already holds this.
    pub fn replace_aor(&mut self, aor: &str, bindings: Vec<Binding>, now: Duration) {
        while self.take(aor, |_| true).is_some() {}
        let now_secs = now.as_secs();
        for b in bindings.into_iter().filter(|b| b.aor == aor && !b.is_expired(now_secs)) {
            let key = Uri::parse(&b.contact).map_or_else(|_| b.contact.clone(), |u| contact_key(&u));
            self.put(key, b);
        }
    }

    /// Removes every binding of every AOR whose user part is `user`, under any host (a user taken
    /// off the service loses all of them), and returns their removals for the store.
    pub fn remove_user(&mut self, user: &str) -> Vec<Change> {
        let of_user = |aor: &str| Uri::parse(aor).ok().and_then(|u| u.as_sip().and_then(|s| s.user).map(|u| u == user)).unwrap_or(false);
        let aors: Vec<String> = self.by_aor.keys().filter(|a| of_user(a)).cloned().collect();
        let mut changes = Vec::new();
        for aor in aors {
            while let Some(b) = self.take(&aor, |_| true) {
                changes.push(Change::Remove { aor: b.aor, contact: b.contact });
            }
        }
        changes
    }

    /// Inserts or replaces the binding with `key` under `binding.aor`; returns the one replaced.
    fn put(&mut self, key: String, binding: Binding) -> Option<Binding> {
        // A refresh (the same contact again: most REGISTERs) is replaced in place, ending as
        // `take` + push end: the entry last in its AOR's list with a new id and deadline, the list's
        // former last where the entry was. Without dropping and rebuilding the AOR's map entry and
        // list when it held only this one (issue 16: the registrar's share of a registration).
        if let Some(entries) = self.by_aor.get_mut(&binding.aor) {
            if let Some(at) = entries.iter().position(|e| e.key == key) {
                return Some(replace_entry(entries, at, &mut self.deadlines, &mut self.next_id, binding));
            }
        }
        self.take_and_push(key, binding)
    }

    /// [`Registrar::put`] the long way: takes out the binding with `key` (and its AOR's list when
    /// it was the only one), then pushes `binding` last with a new id and deadline.
    fn take_and_push(&mut self, key: String, binding: Binding) -> Option<Binding> {
        let aor = binding.aor.clone();
        let old = self.take(&aor, |e| e.key == key);
        let id = self.next_id;
        self.next_id += 1;
        self.deadlines.insert((binding.expires_at, id), aor.clone());
        self.by_aor.entry(aor).or_default().push(Entry { id, key, binding });
        self.count += 1;
        old
    }

    /// Removes the first binding of `aor` that `pick` selects, with its deadline.
    fn take(&mut self, aor: &str, pick: impl Fn(&Entry) -> bool) -> Option<Binding> {
        let entries = self.by_aor.get_mut(aor)?;
        let at = entries.iter().position(pick)?;
        let e = entries.swap_remove(at);
        if entries.is_empty() {
            self.by_aor.remove(aor);
        }
        self.deadlines.remove(&(e.binding.expires_at, e.id));
        self.count -= 1;
        Some(e.binding)
    }

    /// The entries of `aor` (canonical), unsorted.
    fn entries(&self, aor: &str) -> &[Entry] {
        self.by_aor.get(aor).map_or(&[], Vec::as_slice)
    }
}

/// Replaces the binding of `entries[at]` (an AOR's list) with `binding`, as `take` + push would:
/// the entry moves last with a new id and deadline, the list's former last where it was. Returns
/// the binding replaced.
fn replace_entry(
    entries: &mut [Entry],
    at: usize,
    deadlines: &mut BTreeMap<(u64, u64), String>,
    next_id: &mut u64,
    binding: Binding,
) -> Binding {
    let last = entries.len() - 1;
    entries.swap(at, last);
    let e = &mut entries[last];
    let aor = deadlines.remove(&(e.binding.expires_at, e.id)).unwrap_or_else(|| binding.aor.clone());
    e.id = *next_id;
    *next_id += 1;
    deadlines.insert((binding.expires_at, e.id), aor);
    std::mem::replace(&mut e.binding, binding)
}

/// Best first: `q` descending, then the latest write.
fn sorted(entries: &[Entry]) -> Vec<&Binding> {
    let mut v: Vec<&Entry> = entries.iter().collect();
    v.sort_unstable_by_key(|e| std::cmp::Reverse((e.binding.q_millis, e.binding.updated_at, e.id)));
    v.into_iter().map(|e| &e.binding).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-place refresh leaves every map, list order, id and count as take-then-push does.
    #[test]
    fn a_refresh_in_place_ends_as_take_and_push() {
        let mut fast = Registrar::new(RegistrarConfig::default());
        let mut slow = fast.clone();
        let mut x: u64 = 7;
        for step in 0..3000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let contact = format!("sip:c{}@192.0.2.1", (x >> 40) % 4);
            let binding = Binding {
                aor: format!("sip:u{}@example.com", (x >> 33) % 5),
                contact: contact.clone(),
                expires_at: 1000 + (x >> 50) % 100,
                q_millis: 1000,
                call_id: format!("c{step}"),
                cseq: step,
                source: "192.0.2.1:5060".parse().unwrap(),
                updated_at: u64::from(step),
            };
            assert_eq!(fast.put(contact.clone(), binding.clone()), slow.take_and_push(contact, binding));
            if step % 97 == 0 {
                let now = Duration::from_secs(1000 + (x >> 20) % 100);
                assert_eq!(fast.purge(now), slow.purge(now));
            }
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
        assert!(!fast.is_empty());
    }
}
