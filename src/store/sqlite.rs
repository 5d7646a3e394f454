//! The embedded engine: one SQLite file in WAL mode.
//!
//! Tables (inspect with `sqlite3 <data-dir>/switchboard.sqlite3 .schema`): `schema_version`,
//! `users`, `bindings`, `calls`, `call_states`. Times are integers (bindings: unix seconds, calls:
//! unix milliseconds) so `datetime(expires_at, 'unixepoch')` works in the shell. The `from`/`to`
//! fields of [`CallRecord`] are the columns `from_uri`/`to_uri` (both are SQL keywords).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::decimal::{push_decimal, push_ip};

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Row, Statement, TransactionBehavior};

use super::{BindingRecord, CallRecord, CallState, Store, StoreError, StoreOp, UserRecord};

/// How long a write waits for another connection's lock (a `sqlite3` shell in a write
/// transaction, a second process) before failing with [`StoreError::Busy`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name        TEXT PRIMARY KEY NOT NULL,
    realm       TEXT NOT NULL,
    ha1_md5     TEXT NOT NULL,
    ha1_sha256  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bindings (
    aor         TEXT NOT NULL,
    contact     TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    q_millis    INTEGER NOT NULL,
    call_id     TEXT NOT NULL,
    cseq        INTEGER NOT NULL,
    source      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (aor, contact)
);
-- Files written before issue 16 have an index on the bindings' expiry that no query reads (the
-- registrar keeps its own expiry order in memory and loads every binding at start); it cost each
-- refreshed binding a delete and an insert in the index, and its pages in every commit. An older
-- build that opens the file creates it again, harmlessly.
DROP INDEX IF EXISTS bindings_by_expiry;
CREATE TABLE IF NOT EXISTS calls (
    id                TEXT PRIMARY KEY NOT NULL,
    caller_call_id    TEXT NOT NULL,
    callee_call_id    TEXT,
    from_uri          TEXT NOT NULL,
    to_uri            TEXT NOT NULL,
    invited_at        INTEGER NOT NULL,
    answered_at       INTEGER,
    ended_at          INTEGER,
    end_reason        TEXT,
    ended_by          TEXT,
    codec             TEXT,
    caller_packets    INTEGER NOT NULL,
    caller_lost       INTEGER NOT NULL,
    caller_jitter_ms  REAL,
    callee_packets    INTEGER NOT NULL,
    callee_lost       INTEGER NOT NULL,
    callee_jitter_ms  REAL
);
CREATE INDEX IF NOT EXISTS calls_by_invite ON calls (invited_at, id);
-- Files written before issue 16 have an index on the caller's Call-ID that no query reads; a
-- caller's Call-ID is random on real phones, so it cost each call record a leaf page of its own
-- in every commit. An older build that opens the file creates it again, harmlessly; a `sqlite3`
-- user who looks calls up by Call-ID may create one under another name.
DROP INDEX IF EXISTS calls_by_caller_call_id;
CREATE TABLE IF NOT EXISTS call_states (
    id    TEXT PRIMARY KEY NOT NULL,
    data  TEXT NOT NULL
);
";

const CALL_COLUMNS: &str = "id, caller_call_id, callee_call_id, from_uri, to_uri, invited_at, answered_at, ended_at, \
     end_reason, ended_by, codec, caller_packets, caller_lost, caller_jitter_ms, callee_packets, callee_lost, callee_jitter_ms";

/// The SQLite [`Store`]: `switchboard.sqlite3` in the data directory, WAL journal,
/// `synchronous=NORMAL`. Single puts and removes autocommit; [`Store::apply_batch`] is one
/// transaction. Several `SqliteStore`s (and `sqlite3` shells) may open the same file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

// ===== impl SqliteStore =====

impl SqliteStore {
    /// File name of the database inside the data directory.
    pub const FILE_NAME: &'static str = "switchboard.sqlite3";
    /// Schema version this build writes; files with a newer one are refused.
    pub const SCHEMA_VERSION: i64 = 1;

    /// Opens (creating if needed) `dir/switchboard.sqlite3`, creating `dir` too. Switches the file to
    /// WAL, creates missing tables and checks the schema version. Blocks on disk: call at startup.
    ///
    /// The directory is made 0700 and the file 0600 when created (SQLite gives its `-wal` and
    /// `-shm` files the database file's mode); looser existing ones are narrowed with a warning
    /// (see [`super::files`]).
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        super::files::private_dir(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(Self::FILE_NAME);
        super::files::create_private(&path).map_err(|source| StoreError::Permissions { path: path.clone(), source })?;
        let open_err = |source: rusqlite::Error| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::WalUnavailable { path });
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        let found = migrate(&mut conn).map_err(open_err)?;
        if found > Self::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found, supported: Self::SCHEMA_VERSION });
        }
        // WAL files left by an older version (or another umask) keep their mode: narrow them too.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            let side = PathBuf::from(side);
            super::files::narrow(&side).map_err(|source| StoreError::Permissions { path: side.clone(), source })?;
        }
        Ok(SqliteStore { conn, path })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the tables and records the schema version, in one immediate transaction so two
/// processes opening a fresh directory at once do not race. Returns the version found in the file;
/// a newer one than ours leaves the file untouched.
fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         );",
    )?;
    let found: Option<i64> = tx.query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| r.get(0)).optional()?;
    match found {
        Some(v) if v > SqliteStore::SCHEMA_VERSION => return Ok(v),
        // Version 1 is the first schema: nothing to migrate from yet.
        Some(_) => tx.execute_batch(SCHEMA)?,
        None => {
            tx.execute_batch(SCHEMA)?;
            tx.execute("INSERT INTO schema_version (id, version) VALUES (1, ?1)", [SqliteStore::SCHEMA_VERSION])?;
        }
    }
    tx.commit()?;
    Ok(found.unwrap_or(SqliteStore::SCHEMA_VERSION))
}

impl Store for SqliteStore {
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut st = self.conn.prepare_cached("SELECT name, realm, ha1_md5, ha1_sha256 FROM users ORDER BY name")?;
        let rows = st.query_map([], |r| Ok(UserRecord { name: r.get(0)?, realm: r.get(1)?, ha1_md5: r.get(2)?, ha1_sha256: r.get(3)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        put_user(&self.conn, user)
    }

    fn remove_user(&mut self, name: &str) -> Result<bool, StoreError> {
        remove_user(&self.conn, name)
    }

    fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT aor, contact, expires_at, q_millis, call_id, cseq, source, updated_at FROM bindings ORDER BY aor, contact",
        )?;
        let rows = st.query_map([], |r| {
            let source: String = r.get(6)?;
            let Ok(source) = source.parse() else {
                tracing::warn!(aor = %r.get::<_, String>(0)?, %source, "stored binding with an unreadable source address skipped");
                return Ok(None);
            };
            Ok(Some(BindingRecord {
                aor: r.get(0)?,
                contact: r.get(1)?,
                expires_at: r.get(2)?,
                q_millis: r.get(3)?,
                call_id: r.get(4)?,
                cseq: r.get(5)?,
                source,
                updated_at: r.get(7)?,
            }))
        })?;
        let rows: Vec<Option<BindingRecord>> = rows.collect::<Result<_, _>>()?;
        Ok(rows.into_iter().flatten().collect())
    }

    fn put_binding(&mut self, binding: &BindingRecord) -> Result<(), StoreError> {
        put_binding(&self.conn, binding)
    }

    fn remove_binding(&mut self, aor: &str, contact: &str) -> Result<bool, StoreError> {
        remove_binding(&self.conn, aor, contact)
    }

    fn remove_bindings(&mut self, aor: &str) -> Result<usize, StoreError> {
        remove_bindings(&self.conn, aor)
    }

    fn calls(&self, since_ms: Option<u64>) -> Result<Vec<CallRecord>, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE invited_at >= ?1 ORDER BY invited_at, id");
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([since_ms.unwrap_or(0)], call_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_call(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        put_call(&self.conn, call)
    }

    fn call_states(&self) -> Result<Vec<CallState>, StoreError> {
        let mut st = self.conn.prepare_cached("SELECT id, data FROM call_states ORDER BY id")?;
        let rows = st.query_map([], |r| Ok(CallState { id: r.get(0)?, data: r.get(1)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_call_state(&mut self, state: &CallState) -> Result<(), StoreError> {
        put_call_state(&self.conn, state)
    }

    fn remove_call_state(&mut self, id: &str) -> Result<bool, StoreError> {
        remove_call_state(&self.conn, id)
    }

    /// Every write is already committed; this runs a passive WAL checkpoint (never waits for
    /// readers), which fsyncs the WAL and the database so recent commits also survive power loss.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// All of `ops` in one transaction: either every op is committed or none is.
    fn apply_batch(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut held = Held::default();
            for op in ops {
                match op {
                    StoreOp::PutCall(c) => put_call_with(held.put_call(&tx)?, c)?,
                    StoreOp::PutBinding(b) => put_binding_with(held.put_binding(&tx)?, b)?,
                    op => apply(&tx, op)?,
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

// ===== statements, shared by autocommit calls and batches =====

fn apply(conn: &Connection, op: &StoreOp) -> Result<(), StoreError> {
    match op {
        StoreOp::PutUser(u) => put_user(conn, u),
        StoreOp::RemoveUser(name) => remove_user(conn, name).map(drop),
        StoreOp::PutBinding(b) => put_binding(conn, b),
        StoreOp::RemoveBinding { aor, contact } => remove_binding(conn, aor, contact).map(drop),
        StoreOp::RemoveBindings(aor) => remove_bindings(conn, aor).map(drop),
        StoreOp::PutCall(c) => put_call(conn, c),
        StoreOp::PutCallState(s) => put_call_state(conn, s),
        StoreOp::RemoveCallState(id) => remove_call_state(conn, id).map(drop),
        StoreOp::PutCallStateLater(p) => p.render().map_or(Ok(()), |s| put_call_state(conn, &s)),
    }
}

fn put_user(conn: &Connection, u: &UserRecord) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached("INSERT OR REPLACE INTO users (name, realm, ha1_md5, ha1_sha256) VALUES (?1, ?2, ?3, ?4)")?;
    st.execute(params![u.name, u.realm, u.ha1_md5, u.ha1_sha256])?;
    Ok(())
}

fn remove_user(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(conn.prepare_cached("DELETE FROM users WHERE name = ?1")?.execute([name])? > 0)
}

// An upsert rather than INSERT OR REPLACE: a refresh (most REGISTERs) updates the row in place
// where REPLACE deleted it from the table and both indexes and inserted it again (issue 16: the
// store thread's share of a registration). The same row results either way: the primary key is
// the only unique constraint.
const PUT_BINDING: &str = "INSERT INTO bindings (aor, contact, expires_at, q_millis, call_id, cseq, source, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (aor, contact) DO UPDATE SET expires_at = excluded.expires_at, q_millis = excluded.q_millis, \
     call_id = excluded.call_id, cseq = excluded.cseq, source = excluded.source, updated_at = excluded.updated_at";

fn put_binding(conn: &Connection, b: &BindingRecord) -> Result<(), StoreError> {
    put_binding_with(&mut *conn.prepare_cached(PUT_BINDING)?, b)
}

fn put_binding_with(st: &mut Statement<'_>, b: &BindingRecord) -> Result<(), StoreError> {
    st.execute(params![b.aor, b.contact, b.expires_at, b.q_millis, b.call_id, b.cseq, source_text(&b.source), b.updated_at])?;
    Ok(())
}

/// `addr` as its `Display` writes it (`192.0.2.10:5060`, `[2001:db8::1]:5060`), which is how the
/// `source` column has always been written and is read back. An IPv4 address, the common case, is
/// written digit by digit ([`crate::decimal`]): the formatting machinery was a tenth of a binding's
/// write (issue 16).
fn source_text(addr: &SocketAddr) -> String {
    let mut out = String::with_capacity(21);
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(&mut out, (*v4.ip()).into());
            out.push(':');
            push_decimal(&mut out, v4.port().into());
        }
        SocketAddr::V6(_) => return addr.to_string(),
    }
    out
}

fn remove_binding(conn: &Connection, aor: &str, contact: &str) -> Result<bool, StoreError> {
    Ok(conn.prepare_cached("DELETE FROM bindings WHERE aor = ?1 AND contact = ?2")?.execute([aor, contact])? > 0)
}

fn remove_bindings(conn: &Connection, aor: &str) -> Result<usize, StoreError> {
    Ok(conn.prepare_cached("DELETE FROM bindings WHERE aor = ?1")?.execute([aor])?)
}

/// Statements a batch prepares once and uses for each of its ops of that kind: `prepare_cached`
/// finds a statement by hashing its SQL (twice per use: the look-up and the return to the cache),
/// and `put_call`'s is 900 bytes (issue 16: ~2,700 of a call record's ~25,000 instructions on the
/// store thread, a batch holding a dozen records at 1,000 calls/s); `put_binding`'s is 400 (~2,200
/// of a binding's ~12,600, a batch holding about ten bindings at 1,000 registrations/s).
#[derive(Default)]
struct Held<'c> {
    put_call: Option<CachedStatement<'c>>,
    put_binding: Option<CachedStatement<'c>>,
}

impl<'c> Held<'c> {
    fn put_call(&mut self, conn: &'c Connection) -> rusqlite::Result<&mut CachedStatement<'c>> {
        match self.put_call {
            Some(ref mut st) => Ok(st),
            None => Ok(self.put_call.insert(conn.prepare_cached(PUT_CALL)?)),
        }
    }

    fn put_binding(&mut self, conn: &'c Connection) -> rusqlite::Result<&mut CachedStatement<'c>> {
        match self.put_binding {
            Some(ref mut st) => Ok(st),
            None => Ok(self.put_binding.insert(conn.prepare_cached(PUT_BINDING)?)),
        }
    }
}

// An upsert, as `put_binding`: a call's record is written at the INVITE, the answer and the
// end, and an update in place spares the indexes a delete and an insert each.
const PUT_CALL: &str = "INSERT INTO calls (id, caller_call_id, callee_call_id, from_uri, to_uri, invited_at, answered_at, ended_at, \
     end_reason, ended_by, codec, caller_packets, caller_lost, caller_jitter_ms, callee_packets, callee_lost, callee_jitter_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
     ON CONFLICT (id) DO UPDATE SET caller_call_id = excluded.caller_call_id, callee_call_id = excluded.callee_call_id, \
     from_uri = excluded.from_uri, to_uri = excluded.to_uri, invited_at = excluded.invited_at, \
     answered_at = excluded.answered_at, ended_at = excluded.ended_at, end_reason = excluded.end_reason, \
     ended_by = excluded.ended_by, codec = excluded.codec, caller_packets = excluded.caller_packets, \
     caller_lost = excluded.caller_lost, caller_jitter_ms = excluded.caller_jitter_ms, \
     callee_packets = excluded.callee_packets, callee_lost = excluded.callee_lost, callee_jitter_ms = excluded.callee_jitter_ms";

fn put_call(conn: &Connection, c: &CallRecord) -> Result<(), StoreError> {
    put_call_with(&mut *conn.prepare_cached(PUT_CALL)?, c)
}

fn put_call_with(st: &mut Statement<'_>, c: &CallRecord) -> Result<(), StoreError> {
    st.execute(params![
        c.id,
        c.caller_call_id,
        c.callee_call_id,
        c.from,
        c.to,
        c.invited_at,
        c.answered_at,
        c.ended_at,
        c.end_reason,
        c.ended_by,
        c.codec,
        c.caller_packets,
        c.caller_lost,
        real(c.caller_jitter_ms),
        c.callee_packets,
        c.callee_lost,
        real(c.callee_jitter_ms),
    ])?;
    Ok(())
}

fn call_from_row(r: &Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        id: r.get(0)?,
        caller_call_id: r.get(1)?,
        callee_call_id: r.get(2)?,
        from: r.get(3)?,
        to: r.get(4)?,
        invited_at: r.get(5)?,
        answered_at: r.get(6)?,
        ended_at: r.get(7)?,
        end_reason: r.get(8)?,
        ended_by: r.get(9)?,
        codec: r.get(10)?,
        caller_packets: r.get(11)?,
        caller_lost: r.get(12)?,
        caller_jitter_ms: r.get::<_, Option<f64>>(13)?.unwrap_or(f64::NAN),
        callee_packets: r.get(14)?,
        callee_lost: r.get(15)?,
        callee_jitter_ms: r.get::<_, Option<f64>>(16)?.unwrap_or(f64::NAN),
    })
}

/// SQLite turns a NaN into NULL anyway; saying so keeps the mapping explicit (NULL reads as NaN).
fn real(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

fn put_call_state(conn: &Connection, s: &CallState) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR REPLACE INTO call_states (id, data) VALUES (?1, ?2)")?.execute([&s.id, &s.data])?;
    Ok(())
}

fn remove_call_state(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.prepare_cached("DELETE FROM call_states WHERE id = ?1")?.execute([id])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_text_is_display() {
        for text in [
            "0.0.0.0:0",
            "127.0.0.1:5060",
            "192.0.2.10:65535",
            "255.255.255.255:1",
            "10.0.100.9:10",
            "[2001:db8::1]:5060",
            "[::ffff:192.0.2.1]:5061",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(source_text(&addr), addr.to_string());
            assert_eq!(source_text(&addr), text);
        }
        for port in [0, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535] {
            for octet in [0, 9, 10, 99, 100, 199, 200, 255] {
                let addr = SocketAddr::from(([octet, 0, octet, 1], port));
                assert_eq!(source_text(&addr), addr.to_string());
            }
        }
    }
}
