//! Persistence: users, registrar bindings, call records and call-recovery state.
//!
//! ```text
//!   service (tokio)  --enqueue, never blocks-->  StoreWriter  --batches-->  dyn Store
//!                                                (own OS thread)            SqliteStore | RedisStore | MemoryStore
//! ```
//!
//! The [`Store`] trait is the engine boundary: [`SqliteStore`] is the embedded default (one file,
//! `switchboard.sqlite3`, in the data directory, WAL journal, readable with the `sqlite3` shell while
//! the service runs); [`RedisStore`] is the shared one (`--store redis://HOST:PORT/DB`: several
//! instances see the same users, bindings, calls and deployment secret); [`MemoryStore`] keeps
//! everything in memory for tests and `--data none` labs.
//!
//! # Lifecycle
//!
//! 1. Open the store and read what the service needs to start ([`Store::users`], [`Store::bindings`],
//!    [`Store::call_states`]) directly, before anything else touches it.
//! 2. Hand it to [`StoreWriter::spawn`]. From then on the service only enqueues writes
//!    ([`StoreWriter::put_binding`] and friends return at once); the writer thread applies them in
//!    batches, one transaction per batch.
//! 3. At shutdown call [`StoreWriter::close`] (or drop the writer), which commits what is queued.
//!
//! Later reads (a CDR listing, a status page) open a second [`SqliteStore`] on the same directory:
//! WAL lets readers run next to the writer.
//!
//! # What a crash can lose
//!
//! With SQLite the service answers 200 to a REGISTER before its binding is written (with Redis
//! the 200 waits for the write: [`StoreWriter::enqueue_confirmed`], issue 17 point 6). The writer commits as soon
//! as it has work: it takes everything queued (up to [`WriterConfig::max_batch`] ops) and commits it
//! in one transaction; ops that arrive during that commit form the next batch. So:
//!
//! - **`kill -9`, a panic elsewhere, an OOM kill**: the ops not yet committed are lost, that is the
//!   batch being written plus whatever queued behind it. On a healthy disk that is the last few
//!   milliseconds of writes; [`WriterStats::max_queue_delay`] reports the worst wait seen from enqueue
//!   to commit, which is exactly the loss window; it includes the group-commit window
//!   ([`WriterConfig::group_commit`], 10 ms by default). A slow or stalled disk widens it: the queue is
//!   unbounded so signalling never waits, and [`WriterStats::pending`] shows the backlog. Every
//!   committed batch survives (it is in the WAL, which the OS keeps after the process dies), and no
//!   batch is ever half applied.
//! - **After [`StoreWriter::flush`] returns**: nothing enqueued before the call is lost to a process
//!   crash. `tests/store_writer.rs` checks this by SIGKILLing a child process.
//! - **Power loss or a kernel crash**: `synchronous=NORMAL` does not fsync each WAL commit, so the
//!   commits since the last checkpoint may also roll back (the file stays consistent). `flush()` asks
//!   for a passive checkpoint, which fsyncs, so a flushed store normally survives power loss too; this
//!   part is best effort and not tested.
//! - A batch that fails (disk full, read-only file) is retried op by op; ops that still fail are
//!   dropped, counted in [`WriterStats::ops_failed`], logged, and reported by the next `flush()`.

mod error;
pub mod files;
mod memory;
pub mod outage;
mod redis_store;
mod redis_sync;
mod sqlite;
mod writer;

use std::ffi::OsString;
use std::path::PathBuf;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use redis_store::{redact as redact_url, RedisStore};
pub use redis_sync::{follow, Remote};
pub use sqlite::SqliteStore;
pub use writer::{Done, StoreWriter, WriterConfig, WriterStats};

// The rows themselves and the write ops are plain data the sans-IO service emits; they live in
// `crate::records` and are named here too, where the store's users look for them.
pub use crate::records::{
    BindingRecord, CallRecord, CallState, Confirmation, NonceClaim, PendingCallState, StoreOp, StoreSink, UserRecord,
};

impl StoreOp {
    /// Applies this op to `store` through the single-op methods.
    pub fn apply<S: Store + ?Sized>(&self, store: &mut S) -> Result<(), StoreError> {
        match self {
            StoreOp::PutUser(u) => store.put_user(u),
            StoreOp::RemoveUser(name) => store.remove_user(name).map(drop),
            StoreOp::PutBinding(b) => store.put_binding(b),
            StoreOp::RemoveBinding { aor, contact } => store.remove_binding(aor, contact).map(drop),
            StoreOp::RemoveBindings(aor) => store.remove_bindings(aor).map(drop),
            StoreOp::PutCall(c) => store.put_call(c),
            StoreOp::PutCallState(s) => store.put_call_state(s),
            StoreOp::RemoveCallState(id) => store.remove_call_state(id).map(drop),
            StoreOp::PutCallStateLater(p) => p.render().map_or(Ok(()), |s| store.put_call_state(&s)),
        }
    }
}

/// A storage engine. Puts insert or replace by key; removes report whether anything was removed.
///
/// Every method may touch the disk: call them at startup or from [`StoreWriter`]'s thread, never
/// from the signalling loop. Reads return rows in key order (calls by `invited_at`, then `id`).
pub trait Store: Send {
    /// All users, by name.
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Inserts or replaces the user with `user.name`.
    fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError>;
    /// Removes the user `name`; `true` if it existed.
    fn remove_user(&mut self, name: &str) -> Result<bool, StoreError>;

    /// All bindings, by (aor, contact), expired ones included (the registrar decides).
    fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError>;
    /// Inserts or replaces the binding (`binding.aor`, `binding.contact`).
    fn put_binding(&mut self, binding: &BindingRecord) -> Result<(), StoreError>;
    /// Removes one binding; `true` if it existed.
    fn remove_binding(&mut self, aor: &str, contact: &str) -> Result<bool, StoreError>;
    /// Removes every binding of `aor` (REGISTER with `Contact: *`); returns how many.
    fn remove_bindings(&mut self, aor: &str) -> Result<usize, StoreError>;

    /// Call records with `invited_at >= since_ms` (all with `None`), oldest first.
    fn calls(&self, since_ms: Option<u64>) -> Result<Vec<CallRecord>, StoreError>;
    /// Inserts or replaces the call record `call.id`.
    fn put_call(&mut self, call: &CallRecord) -> Result<(), StoreError>;

    /// All saved call states, by id.
    fn call_states(&self) -> Result<Vec<CallState>, StoreError>;
    /// Inserts or replaces the state of call `state.id`.
    fn put_call_state(&mut self, state: &CallState) -> Result<(), StoreError>;
    /// Removes the state of call `id`; `true` if it existed.
    fn remove_call_state(&mut self, id: &str) -> Result<bool, StoreError>;

    /// Records one use of a digest nonce; `false` if that count (or a higher one) was used
    /// already. Only a shared store needs this (each instance checks its own uses in memory):
    /// the default says `true`.
    fn claim_nonce(&mut self, claim: &NonceClaim) -> Result<bool, StoreError> {
        let _ = claim;
        Ok(true)
    }

    /// Makes what was written so far as durable as the engine can (see the module doc).
    fn flush(&mut self) -> Result<(), StoreError>;

    /// Applies `ops` in order. Engines with transactions override this to apply all or nothing;
    /// the default applies them one by one and stops at the first error.
    fn apply_batch(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        ops.iter().try_for_each(|op| op.apply(self))
    }
}

/// The default data directory: `$XDG_DATA_HOME/switchboard`, else `$HOME/.local/share/switchboard`,
/// else `./switchboard-data`. A relative or empty `XDG_DATA_HOME` is ignored, as the XDG spec asks.
pub fn default_data_dir() -> PathBuf {
    data_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn data_dir_from(xdg_data_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    if let Some(xdg) = xdg_data_home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return xdg.join("switchboard");
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/switchboard"),
        None => PathBuf::from("./switchboard-data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let os = |s: &str| Some(OsString::from(s));
        let cases: &[(Option<OsString>, Option<OsString>, &str)] = &[
            (os("/x/data"), os("/home/u"), "/x/data/switchboard"),
            (os("relative"), os("/home/u"), "/home/u/.local/share/switchboard"),
            (os(""), os("/home/u"), "/home/u/.local/share/switchboard"),
            (None, os("/home/u"), "/home/u/.local/share/switchboard"),
            (None, os(""), "./switchboard-data"),
            (None, None, "./switchboard-data"),
        ];
        for (xdg, home, want) in cases {
            assert_eq!(data_dir_from(xdg.clone(), home.clone()), PathBuf::from(want), "xdg={xdg:?} home={home:?}");
        }
    }

    #[test]
    fn default_batch_applies_in_order() {
        let mut store = MemoryStore::new();
        let b = BindingRecord {
            aor: "sip:alice@example.com".into(),
            contact: "sip:alice@192.0.2.1:5060".into(),
            expires_at: 10,
            q_millis: 1000,
            call_id: "c1".into(),
            cseq: 1,
            source: "192.0.2.1:5060".parse().unwrap(),
            updated_at: 5,
        };
        let ops = [
            StoreOp::PutBinding(b.clone()),
            StoreOp::RemoveBinding { aor: b.aor.clone(), contact: b.contact.clone() },
            StoreOp::PutBinding(BindingRecord { cseq: 2, ..b.clone() }),
        ];
        store.apply_batch(&ops).unwrap();
        assert_eq!(store.bindings().unwrap(), vec![BindingRecord { cseq: 2, ..b }]);
    }
}
