//! The in-memory engine: for tests and for running without a data directory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{BindingRecord, CallRecord, CallState, Store, StoreError, UserRecord};

/// A [`Store`] that keeps everything in memory and loses it at exit.
///
/// Clones share the same tables, so a test (or a status view) can keep one handle and give another
/// to [`StoreWriter`](super::StoreWriter). Never fails.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

#[derive(Debug, Default)]
struct Tables {
    users: BTreeMap<String, UserRecord>,
    bindings: BTreeMap<(String, String), BindingRecord>,
    /// Keyed by (invited_at, id) so `calls(since)` is a range scan in the order SQLite returns.
    calls: BTreeMap<(u64, String), CallRecord>,
    call_index: BTreeMap<String, u64>,
    call_states: BTreeMap<String, CallState>,
}

// ===== impl MemoryStore =====

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-written map entry (every mutation is a
        // single insert/remove), so a poisoned lock is still consistent.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self.tables().users.values().cloned().collect())
    }

    fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        self.tables().users.insert(user.name.clone(), user.clone());
        Ok(())
    }

    fn remove_user(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self.tables().users.remove(name).is_some())
    }

    fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        Ok(self.tables().bindings.values().cloned().collect())
    }

    fn put_binding(&mut self, binding: &BindingRecord) -> Result<(), StoreError> {
        self.tables().bindings.insert((binding.aor.clone(), binding.contact.clone()), binding.clone());
        Ok(())
    }

    fn remove_binding(&mut self, aor: &str, contact: &str) -> Result<bool, StoreError> {
        Ok(self.tables().bindings.remove(&(aor.to_owned(), contact.to_owned())).is_some())
    }

    fn remove_bindings(&mut self, aor: &str) -> Result<usize, StoreError> {
        let mut t = self.tables();
        let before = t.bindings.len();
        t.bindings.retain(|(a, _), _| a != aor);
        Ok(before - t.bindings.len())
    }

    fn calls(&self, since_ms: Option<u64>) -> Result<Vec<CallRecord>, StoreError> {
        let from = (since_ms.unwrap_or(0), String::new());
        Ok(self.tables().calls.range(from..).map(|(_, c)| c.clone()).collect())
    }

    fn put_call(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        let mut t = self.tables();
        if let Some(old_at) = t.call_index.insert(call.id.clone(), call.invited_at) {
            t.calls.remove(&(old_at, call.id.clone()));
        }
        t.calls.insert((call.invited_at, call.id.clone()), call.clone());
        Ok(())
    }

    fn call_states(&self) -> Result<Vec<CallState>, StoreError> {
        Ok(self.tables().call_states.values().cloned().collect())
    }

    fn put_call_state(&mut self, state: &CallState) -> Result<(), StoreError> {
        self.tables().call_states.insert(state.id.clone(), state.clone());
        Ok(())
    }

    fn remove_call_state(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self.tables().call_states.remove(id).is_some())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
