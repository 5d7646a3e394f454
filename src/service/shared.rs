//! What the workers of `serve --workers N` share (issue 16 point 1); everything else (transactions,
//! dialogs, B2BUA calls, proxy contexts, the echo user, their timers) belongs to one worker, the
//! one its Call-ID maps to ([`crate::cluster::worker_of`]).
//!
//! - Registrations: [`SharedRegistrar`], sharded by address-of-record (see there).
//! - Users: [`SharedUsers`], read on every authenticated request, written by `users add/remove`
//!   while serving: one `RwLock` (readers never wait for each other).
//! - Digest nonce counts: one replay table for all ([`crate::auth::DigestServer::sibling`]).
//! - Failed-authentication limits: one [`SharedGuard`] (hand16: a source's REGISTERs all stay on
//!   the worker they land on while its other requests spread by Call-ID; one table counts both).
//!
//! Sans-IO: `std::sync` only.

use crate::auth::Algorithm;
use crate::collections::HashMap;
use crate::records::UserRecord;
use crate::registrar::SharedRegistrar;
use crate::service::guard::SharedGuard;
use std::sync::{Arc, RwLock};

/// The users, shared by cloning (an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct SharedUsers {
    inner: Arc<RwLock<HashMap<String, UserRecord>>>,
}

impl SharedUsers {
    /// A table holding `users`.
    pub fn new(users: Vec<UserRecord>) -> SharedUsers {
        SharedUsers { inner: Arc::new(RwLock::new(users.into_iter().map(|u| (u.name.clone(), u)).collect())) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, UserRecord>> {
        // A poisoned lock is taken over: inserts and removes leave the map consistent.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, UserRecord>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `name` is a user.
    pub fn contains_key(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// The user's HA1 for `alg`.
    pub fn ha1(&self, name: &str, alg: Algorithm) -> Option<String> {
        self.read().get(name).map(|u| match alg {
            Algorithm::Md5 => u.ha1_md5.clone(),
            Algorithm::Sha256 => u.ha1_sha256.clone(),
        })
    }

    /// Adds or replaces a user.
    pub fn insert(&self, user: UserRecord) {
        self.write().insert(user.name.clone(), user);
    }

    /// Removes a user; whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// The users' names.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The state one worker's [`Service`](super::app::Service) shares with the others.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The location service.
    pub registrar: SharedRegistrar,
    /// The users.
    pub users: SharedUsers,
    /// Whether this worker runs the registrar's purge timer (one worker does, worker 0).
    pub purges: bool,
    /// The failed-authentication limits; `None`: the worker's own, from its
    /// [`ServiceParts::guard`](super::app::ServiceParts::guard).
    pub guard: Option<SharedGuard>,
}
