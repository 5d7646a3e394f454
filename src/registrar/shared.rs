//! The location service shared by the workers of `serve --workers N` (issue 16 point 1).
//!
//! Registrations are written 20,000+ times a second in the register sweep, by whichever worker
//! owns the REGISTER's Call-ID, and read by whichever worker owns a call. They are **sharded by
//! address-of-record**: one [`Registrar`] per shard behind its own `Mutex`, the shard picked by
//! the AOR's hash ([`crate::cluster::hash`]). A REGISTER locks the one shard of its AOR, as does a
//! lookup; two workers contend only when they touch AORs of the same shard at the same instant.
//! One shard (one worker) is today's registrar behind an uncontended lock.
//!
//! Every RFC 3261 §10.3 rule that concerns one AOR (`max_contacts`, the Call-ID/CSeq ordering,
//! the 200 listing every binding) holds as before, since an AOR lives in one shard. The global
//! `max_bindings` cap becomes a **budget per shard**: each shard holds at most
//! `ceil(max_bindings / shards)`, so the total never passes the cap (a shard may refuse while
//! another still has room: the hash spreads AORs evenly, so this costs little).
//!
//! Sans-IO: `std::sync` only, no threads of its own.

use super::{aor_of, Binding, Change, Outcome, Registrar, RegistrarConfig};
use crate::message::{Message, Uri};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// No binding lapses: the value of an empty shard's expiry slot.
const NEVER: u64 = u64::MAX;

/// The shards, shared by cloning (an `Arc`).
#[derive(Debug, Clone)]
pub struct SharedRegistrar {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RegistrarConfig,
    shards: Vec<Mutex<Registrar>>,
    /// Per shard, its next expiry (Unix seconds, [`NEVER`] for none), updated after every write:
    /// the service's timer reads these without taking a lock.
    expiry: Vec<AtomicU64>,
}

impl SharedRegistrar {
    /// An empty location service of `shards` shards (at least one); `config.max_bindings` is
    /// split between them (see the module doc).
    pub fn new(config: RegistrarConfig, shards: usize) -> SharedRegistrar {
        let n = shards.max(1);
        let budget = config.max_bindings.div_ceil(n).max(1);
        let shard_config = RegistrarConfig { max_bindings: budget, ..config.clone() };
        SharedRegistrar {
            inner: Arc::new(Inner {
                config,
                shards: (0..n).map(|_| Mutex::new(Registrar::new(shard_config.clone()))).collect(),
                expiry: (0..n).map(|_| AtomicU64::new(NEVER)).collect(),
            }),
        }
    }

    /// One shard holding `registrar` as it is (its bindings and caps): `serve --workers 1` and
    /// the programs that build a [`Registrar`] themselves.
    pub fn single(registrar: Registrar) -> SharedRegistrar {
        let expiry = AtomicU64::new(registrar.next_expiry().unwrap_or(NEVER));
        SharedRegistrar {
            inner: Arc::new(Inner { config: registrar.config().clone(), shards: vec![Mutex::new(registrar)], expiry: vec![expiry] }),
        }
    }

    /// The policy in force (with the whole `max_bindings`, not a shard's budget).
    pub fn config(&self) -> &RegistrarConfig {
        &self.inner.config
    }

    /// How many shards.
    pub fn shards(&self) -> usize {
        self.inner.shards.len()
    }

    fn shard_of(&self, aor: &str) -> usize {
        (crate::cluster::hash(aor.as_bytes()) % self.inner.shards.len() as u64) as usize
    }

    /// A shard's registrar. A poisoned lock (a worker panicked while holding it) is taken over:
    /// the table itself is consistent after every call that returned.
    fn lock(&self, i: usize) -> MutexGuard<'_, Registrar> {
        self.inner.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note_expiry(&self, i: usize, reg: &Registrar) {
        self.inner.expiry[i].store(reg.next_expiry().unwrap_or(NEVER), Ordering::Relaxed);
    }

    /// [`Registrar::handle_register`] on the shard of the REGISTER's To AOR (an unreadable To goes
    /// to shard 0, which refuses it as before).
    pub fn handle_register(&self, req: &Message, source: SocketAddr, authorized_user: Option<&str>, now: Duration) -> Outcome {
        let to = req.to().ok();
        let aor = to.as_ref().and_then(|t| aor_of(&t.uri));
        let i = aor.as_deref().map_or(0, |a| self.shard_of(a));
        let mut reg = self.lock(i);
        // The shard's registrar takes the To and AOR read here rather than reading them again.
        let out = reg.handle_register_read(req, to.as_ref().zip(aor), source, authorized_user, now);
        self.note_expiry(i, &reg);
        out
    }

    /// [`Registrar::answer_again`] on the shard of the REGISTER's To AOR.
    pub fn answer_again(&self, req: &Message, now: Duration) -> Option<Message> {
        let aor = req.to().ok().and_then(|t| aor_of(&t.uri))?;
        self.lock(self.shard_of(&aor)).answer_again(req, now)
    }

    /// [`Registrar::lookup`], copied out of the shard.
    pub fn lookup(&self, aor: &str) -> Vec<Binding> {
        let canonical = Uri::parse(aor).ok().and_then(|u| aor_of(&u)).unwrap_or_else(|| aor.to_owned());
        self.lock(self.shard_of(&canonical)).lookup(&canonical).into_iter().cloned().collect()
    }

    /// The bindings of every AOR that starts with `prefix` (a user under any host), each AOR's
    /// best first.
    pub fn lookup_prefix(&self, prefix: &str) -> Vec<Binding> {
        let mut out = Vec::new();
        for i in 0..self.shards() {
            let reg = self.lock(i);
            let aors: Vec<String> = reg.aors().filter(|a| a.starts_with(prefix)).map(str::to_owned).collect();
            out.extend(aors.iter().flat_map(|a| reg.lookup(a)).cloned());
        }
        out
    }

    /// Whether `aor` has a binding.
    pub fn has_aor(&self, aor: &str) -> bool {
        self.lock(self.shard_of(aor)).aors().any(|a| a == aor)
    }

    /// Every AOR with a binding (shard by shard, each in lexical order).
    pub fn aors(&self) -> Vec<String> {
        (0..self.shards()).flat_map(|i| self.lock(i).aors().map(str::to_owned).collect::<Vec<_>>()).collect()
    }

    /// The first binding whose contact is `contact`, in any shard.
    pub fn find_contact(&self, contact: &str) -> Option<Binding> {
        (0..self.shards()).find_map(|i| {
            let reg = self.lock(i);
            let found = reg.aors().flat_map(|a| reg.lookup(a)).find(|b| b.contact == contact).cloned();
            found
        })
    }

    /// Bindings in all.
    pub fn len(&self) -> usize {
        (0..self.shards()).map(|i| self.lock(i).len()).sum()
    }

    /// Whether there is no binding at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest expiry of all shards (no lock taken).
    pub fn next_expiry(&self) -> Option<u64> {
        self.inner.expiry.iter().map(|e| e.load(Ordering::Relaxed)).min().filter(|&t| t != NEVER)
    }

    /// [`Registrar::purge`] on every shard whose next expiry has come.
    pub fn purge(&self, now: Duration) -> Vec<Change> {
        let mut changes = Vec::new();
        for i in 0..self.shards() {
            if self.inner.expiry[i].load(Ordering::Relaxed) > now.as_secs() {
                continue;
            }
            let mut reg = self.lock(i);
            changes.extend(reg.purge(now));
            self.note_expiry(i, &reg);
        }
        changes
    }

    /// [`Registrar::restore`], each binding into its AOR's shard.
    pub fn restore(&self, bindings: Vec<Binding>, now: Duration) -> Vec<Change> {
        let mut per: Vec<Vec<Binding>> = vec![Vec::new(); self.shards()];
        for b in bindings {
            let i = self.shard_of(&b.aor);
            per[i].push(b);
        }
        let mut changes = Vec::new();
        for (i, bs) in per.into_iter().enumerate() {
            let mut reg = self.lock(i);
            changes.extend(reg.restore(bs, now));
            self.note_expiry(i, &reg);
        }
        changes
    }

    /// [`Registrar::replace_aor`] on the shard of `aor` (another instance changed its bindings
    /// in a shared store, or a write the store refused is undone).
    pub fn replace_aor(&self, aor: &str, bindings: Vec<Binding>, now: Duration) {
        let i = self.shard_of(aor);
        let mut reg = self.lock(i);
        reg.replace_aor(aor, bindings, now);
        self.note_expiry(i, &reg);
    }

    /// [`Registrar::remove_user`] on every shard.
    pub fn remove_user(&self, user: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        for i in 0..self.shards() {
            let mut reg = self.lock(i);
            changes.extend(reg.remove_user(user));
            self.note_expiry(i, &reg);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(user: &str, n: u32) -> Message {
        let wire = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK{user}{n}\r\n\
             To: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=1\r\nCall-ID: c-{user}\r\n\
             CSeq: {n} REGISTER\r\nContact: <sip:{user}@192.0.2.9:{}>;expires=600\r\nContent-Length: 0\r\n\r\n",
            5000 + n
        );
        Message::parse(bytes::Bytes::from(wire)).expect("parse")
    }

    #[test]
    fn shards_answer_like_one_registrar_and_keep_the_cap() {
        let config = RegistrarConfig { max_bindings: 40, ..RegistrarConfig::default() };
        let shared = SharedRegistrar::new(config, 4);
        let now = Duration::from_secs(1_700_000_000);
        let src: SocketAddr = "192.0.2.9:5060".parse().expect("addr");
        let mut ok = 0;
        for u in 0..100 {
            let out = shared.handle_register(&register(&format!("u{u}"), 1), src, None, now);
            if out.response.status() == Some(200) {
                ok += 1;
            } else {
                assert_eq!(out.response.status(), Some(503));
            }
        }
        // Never more than the cap in all; each shard filled its budget of 10.
        assert_eq!(shared.len(), ok);
        assert_eq!(ok, 40);
        let registered = shared.aors();
        assert_eq!(registered.len(), 40);
        for aor in &registered {
            assert_eq!(shared.lookup(aor).len(), 1, "{aor}");
            assert!(shared.has_aor(aor));
        }
        let first = &registered[0];
        let user = first.trim_start_matches("sip:").split('@').next().unwrap_or_default().to_owned();
        assert_eq!(shared.lookup_prefix(&format!("sip:{user}@")).len(), 1);
        assert!(shared.find_contact(&shared.lookup(first)[0].contact).is_some());
        assert_eq!(shared.next_expiry(), Some(1_700_000_600));
        assert_eq!(shared.remove_user(&user).len(), 1);
        assert_eq!(shared.purge(now + Duration::from_secs(601)).len(), 39);
        assert!(shared.is_empty());
        assert_eq!(shared.next_expiry(), None);
    }

    /// Another instance's binding change (issue 17, `sb:changes`) lands in the AOR's shard and
    /// moves that shard's expiry; other AORs stay as they are.
    #[test]
    fn replace_aor_changes_one_aor_in_its_shard() {
        let shared = SharedRegistrar::new(RegistrarConfig::default(), 4);
        let now = Duration::from_secs(1_700_000_000);
        let src: SocketAddr = "192.0.2.9:5060".parse().expect("addr");
        for u in ["alice", "bob"] {
            assert_eq!(shared.handle_register(&register(u, 1), src, None, now).response.status(), Some(200));
        }
        let mut moved = shared.lookup("sip:alice@example.com");
        assert_eq!(moved.len(), 1);
        moved[0].contact = "sip:alice@192.0.2.77:5070".to_owned();
        moved[0].expires_at = 1_700_000_100;
        shared.replace_aor("sip:alice@example.com", moved, now);
        let alice = shared.lookup("sip:alice@example.com");
        assert_eq!(alice.len(), 1);
        assert_eq!(alice[0].contact, "sip:alice@192.0.2.77:5070");
        assert_eq!(shared.lookup("sip:bob@example.com").len(), 1, "bob untouched");
        assert_eq!(shared.next_expiry(), Some(1_700_000_100));
        shared.replace_aor("sip:alice@example.com", Vec::new(), now);
        assert!(!shared.has_aor("sip:alice@example.com"));
        assert_eq!(shared.len(), 1);
        assert_eq!(shared.next_expiry(), Some(1_700_000_600));
    }
}
