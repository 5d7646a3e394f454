//! Store engines: every record type round-trips through `SqliteStore` (in a fresh directory under the
//! system temp dir) and `MemoryStore`, and both answer the same script identically. Then the file
//! itself: data survives a reopen, the journal is WAL, the schema version is recorded and a newer one
//! is refused, an old file's unused expiry index is dropped on open, a batch is all or nothing, and
//! the `sqlite3` shell can read the file while the store has it open (skipped, with the reason
//! printed, when `sqlite3` is not installed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard::store::{BindingRecord, CallRecord, CallState, MemoryStore, SqliteStore, Store, StoreError, StoreOp, UserRecord};

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("switchboard-store-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn user(name: &str, realm: &str) -> UserRecord {
    UserRecord { name: name.into(), realm: realm.into(), ha1_md5: format!("md5-{name}"), ha1_sha256: format!("sha-{name}") }
}

fn binding(aor: &str, contact: &str, cseq: u32) -> BindingRecord {
    BindingRecord {
        aor: aor.into(),
        contact: contact.into(),
        expires_at: 1_700_003_600,
        q_millis: 500,
        call_id: format!("reg-{cseq}@host"),
        cseq,
        source: "192.0.2.10:5060".parse().unwrap(),
        updated_at: 1_700_000_000,
    }
}

/// A finished call with every optional field set and extreme numbers.
fn full_call(id: &str, invited_at: u64) -> CallRecord {
    CallRecord {
        id: id.into(),
        caller_call_id: format!("{id}-a"),
        callee_call_id: Some(format!("{id}-b")),
        from: "<sip:alice@example.com>;tag=1".into(),
        to: "<sip:bob@example.com>;tag=2".into(),
        invited_at,
        answered_at: Some(invited_at + 1_500),
        ended_at: Some(invited_at + 60_000),
        end_reason: Some("bye".into()),
        ended_by: Some("callee".into()),
        codec: Some("PCMU/8000".into()),
        caller_packets: i64::MAX as u64,
        caller_lost: -3,
        caller_jitter_ms: 1.25,
        callee_packets: 2_999,
        callee_lost: 7,
        callee_jitter_ms: 0.0,
    }
}

/// A call still ringing: every optional field empty.
fn ringing_call(id: &str, invited_at: u64) -> CallRecord {
    CallRecord {
        callee_call_id: None,
        answered_at: None,
        ended_at: None,
        end_reason: None,
        ended_by: None,
        codec: None,
        caller_packets: 0,
        caller_lost: 0,
        callee_packets: 0,
        callee_lost: 0,
        ..full_call(id, invited_at)
    }
}

fn state(id: &str, data: &str) -> CallState {
    CallState { id: id.into(), data: data.into() }
}

/// Runs the same script on any engine and checks every answer; leaves known contents behind.
fn exercise(store: &mut dyn Store) {
    assert!(store.users().unwrap().is_empty() && store.bindings().unwrap().is_empty());
    assert!(store.calls(None).unwrap().is_empty() && store.call_states().unwrap().is_empty());

    store.put_user(&user("bob", "example.com")).unwrap();
    store.put_user(&user("alice", "old.example.com")).unwrap();
    store.put_user(&user("alice", "example.com")).unwrap();
    store.put_user(&user("carol", "example.com")).unwrap();
    assert!(store.remove_user("carol").unwrap());
    assert!(!store.remove_user("carol").unwrap());
    assert_eq!(store.users().unwrap(), vec![user("alice", "example.com"), user("bob", "example.com")]);

    let (a, b) = ("sip:alice@example.com", "sip:bob@example.com");
    store.put_binding(&binding(b, "sip:bob@192.0.2.20:5060", 1)).unwrap();
    store.put_binding(&binding(a, "sip:alice@192.0.2.10:5060", 1)).unwrap();
    store.put_binding(&binding(a, "sip:alice@192.0.2.11:5062;transport=udp", 1)).unwrap();
    store.put_binding(&binding(a, "sip:alice@192.0.2.10:5060", 2)).unwrap();
    store.put_binding(&binding(b, "sip:bob@192.0.2.21:5060", 1)).unwrap();
    assert!(store.remove_binding(b, "sip:bob@192.0.2.21:5060").unwrap());
    assert!(!store.remove_binding(b, "sip:bob@192.0.2.21:5060").unwrap());
    store.put_binding(&binding("sip:gone@example.com", "sip:g1@h", 1)).unwrap();
    store.put_binding(&binding("sip:gone@example.com", "sip:g2@h", 1)).unwrap();
    assert_eq!(store.remove_bindings("sip:gone@example.com").unwrap(), 2);
    assert_eq!(store.remove_bindings("sip:gone@example.com").unwrap(), 0);
    let want = vec![
        binding(a, "sip:alice@192.0.2.10:5060", 2),
        binding(a, "sip:alice@192.0.2.11:5062;transport=udp", 1),
        binding(b, "sip:bob@192.0.2.20:5060", 1),
    ];
    assert_eq!(store.bindings().unwrap(), want);

    store.put_call(&ringing_call("c2", 2_000)).unwrap();
    store.put_call(&ringing_call("c1", 1_000)).unwrap();
    store.put_call(&ringing_call("c3", 3_000)).unwrap();
    store.put_call(&full_call("c1", 1_000)).unwrap();
    // Rewriting a record with a different invite time moves it in the time order.
    store.put_call(&ringing_call("c3", 500)).unwrap();
    let all = vec![ringing_call("c3", 500), full_call("c1", 1_000), ringing_call("c2", 2_000)];
    assert_eq!(store.calls(None).unwrap(), all);
    assert_eq!(store.calls(Some(1_000)).unwrap(), all[1..]);
    assert_eq!(store.calls(Some(2_001)).unwrap(), vec![]);

    store.put_call_state(&state("c2", r#"{"leg":"a"}"#)).unwrap();
    store.put_call_state(&state("c1", "{}")).unwrap();
    store.put_call_state(&state("c2", r#"{"leg":"b"}"#)).unwrap();
    store.put_call_state(&state("c9", "{}")).unwrap();
    assert!(store.remove_call_state("c9").unwrap());
    assert!(!store.remove_call_state("c9").unwrap());
    assert_eq!(store.call_states().unwrap(), vec![state("c1", "{}"), state("c2", r#"{"leg":"b"}"#)]);

    store.flush().unwrap();
}

/// Everything a store holds, for comparing two engines or two opens of one file.
fn contents(store: &dyn Store) -> (Vec<UserRecord>, Vec<BindingRecord>, Vec<CallRecord>, Vec<CallState>) {
    (store.users().unwrap(), store.bindings().unwrap(), store.calls(None).unwrap(), store.call_states().unwrap())
}

#[test]
fn memory_store_round_trips_every_record() {
    exercise(&mut MemoryStore::new());
}

#[test]
fn sqlite_store_round_trips_every_record() {
    let dir = TempDir::new("roundtrip");
    exercise(&mut SqliteStore::open(&dir.0).unwrap());
}

#[test]
fn sqlite_and_memory_answer_alike() {
    let dir = TempDir::new("alike");
    let mut sqlite = SqliteStore::open(&dir.0).unwrap();
    let mut memory = MemoryStore::new();
    exercise(&mut sqlite);
    exercise(&mut memory);
    assert_eq!(contents(&sqlite), contents(&memory));
}

#[test]
fn sqlite_store_keeps_data_after_reopen() {
    let dir = TempDir::new("reopen");
    let before = {
        let mut store = SqliteStore::open(&dir.0).unwrap();
        exercise(&mut store);
        store.put_call(&CallRecord { caller_jitter_ms: f64::NAN, ..full_call("nan", 9_000) }).unwrap();
        contents(&store)
    };
    let store = SqliteStore::open(&dir.0).unwrap();
    let after = contents(&store);
    // NaN != NaN, so compare the NaN record's field by hand and the rest with ==.
    assert!(after.2.last().unwrap().caller_jitter_ms.is_nan());
    let strip = |c: &(Vec<UserRecord>, Vec<BindingRecord>, Vec<CallRecord>, Vec<CallState>)| {
        (c.0.clone(), c.1.clone(), c.2[..c.2.len() - 1].to_vec(), c.3.clone())
    };
    assert_eq!(strip(&after), strip(&before));
    assert_eq!(store.path(), dir.0.join(SqliteStore::FILE_NAME));
}

#[test]
fn sqlite_store_creates_missing_directories() {
    let dir = TempDir::new("nested");
    let nested = dir.0.join("a/b/c");
    SqliteStore::open(&nested).unwrap();
    assert!(nested.join("switchboard.sqlite3").is_file());
}

#[test]
fn sqlite_file_is_wal_with_a_schema_version() {
    let dir = TempDir::new("wal");
    let _store = SqliteStore::open(&dir.0).unwrap();
    let conn = rusqlite::Connection::open(dir.0.join(SqliteStore::FILE_NAME)).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
    let tables: Vec<String> = st.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(tables, ["bindings", "call_states", "calls", "schema_version", "users"]);
}

/// A file written before issue 16 has an index on the bindings' expiry that no query reads; opening
/// it drops the index and keeps every row (the schema version stays: an older build that opens the
/// file again only recreates the index).
#[test]
fn sqlite_store_drops_the_unused_expiry_index_of_an_old_file() {
    let dir = TempDir::new("old-index");
    let before = {
        let mut store = SqliteStore::open(&dir.0).unwrap();
        exercise(&mut store);
        contents(&store)
    };
    let file = dir.0.join(SqliteStore::FILE_NAME);
    let indexes = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut st =
            conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bindings' AND sql IS NOT NULL").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    {
        // What the old schema created, with the rows already there.
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute_batch("CREATE INDEX bindings_by_expiry ON bindings (expires_at);").unwrap();
        assert_eq!(indexes(&conn), ["bindings_by_expiry"]);
    }
    let mut store = SqliteStore::open(&dir.0).unwrap();
    let conn = rusqlite::Connection::open(&file).unwrap();
    assert!(indexes(&conn).is_empty(), "the expiry index is gone");
    let version: i64 = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    assert_eq!(contents(&store), before);
    // And the bindings are still written and refreshed as before.
    store.put_binding(&binding("sip:carol@example.com", "sip:carol@192.0.2.7", 1)).unwrap();
    store.put_binding(&BindingRecord { expires_at: 1_700_007_200, ..binding("sip:carol@example.com", "sip:carol@192.0.2.7", 2) }).unwrap();
    let carol: Vec<BindingRecord> = store.bindings().unwrap().into_iter().filter(|b| b.aor == "sip:carol@example.com").collect();
    assert_eq!(carol, [BindingRecord { expires_at: 1_700_007_200, ..binding("sip:carol@example.com", "sip:carol@192.0.2.7", 2) }]);
}

#[test]
fn sqlite_store_refuses_a_newer_schema() {
    let dir = TempDir::new("newer");
    drop(SqliteStore::open(&dir.0).unwrap());
    let conn = rusqlite::Connection::open(dir.0.join(SqliteStore::FILE_NAME)).unwrap();
    conn.execute("UPDATE schema_version SET version = 99", []).unwrap();
    drop(conn);
    match SqliteStore::open(&dir.0) {
        Err(StoreError::SchemaTooNew { found: 99, supported }) => assert_eq!(supported, SqliteStore::SCHEMA_VERSION),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// The schema as builds before issue 16 wrote it, with the `calls_by_caller_call_id` index no
/// query reads: a file made by them must open, keep its rows and take writes.
const SCHEMA_BEFORE_16: &str = "
CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT INTO schema_version (id, version) VALUES (1, 1);
CREATE TABLE users (name TEXT PRIMARY KEY NOT NULL, realm TEXT NOT NULL, ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL);
CREATE TABLE bindings (aor TEXT NOT NULL, contact TEXT NOT NULL, expires_at INTEGER NOT NULL, q_millis INTEGER NOT NULL,
    call_id TEXT NOT NULL, cseq INTEGER NOT NULL, source TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (aor, contact));
CREATE INDEX bindings_by_expiry ON bindings (expires_at);
CREATE TABLE calls (id TEXT PRIMARY KEY NOT NULL, caller_call_id TEXT NOT NULL, callee_call_id TEXT, from_uri TEXT NOT NULL,
    to_uri TEXT NOT NULL, invited_at INTEGER NOT NULL, answered_at INTEGER, ended_at INTEGER, end_reason TEXT, ended_by TEXT,
    codec TEXT, caller_packets INTEGER NOT NULL, caller_lost INTEGER NOT NULL, caller_jitter_ms REAL,
    callee_packets INTEGER NOT NULL, callee_lost INTEGER NOT NULL, callee_jitter_ms REAL);
CREATE INDEX calls_by_invite ON calls (invited_at, id);
CREATE INDEX calls_by_caller_call_id ON calls (caller_call_id);
CREATE TABLE call_states (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL);
INSERT INTO users VALUES ('alice', 'example.com', 'md5-alice', 'sha-alice');
INSERT INTO bindings VALUES ('sip:alice@example.com', 'sip:alice@192.0.2.1', 1700003600, 500, 'reg-1@host', 1,
    '192.0.2.10:5060', 1700000000);
INSERT INTO calls VALUES ('old', 'old-a', NULL, '<sip:alice@example.com>;tag=1', '<sip:bob@example.com>;tag=2', 5, NULL,
    NULL, NULL, NULL, NULL, 0, 0, NULL, 0, 0, NULL);
INSERT INTO call_states VALUES ('old', '{}');
";

fn indexes_of(file: &Path, table: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(file).unwrap();
    let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name").unwrap();
    st.query_map([table], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Opening such a file drops the index (the schema version stays: an older build that opens the
/// file again only creates the index again) and keeps every row.
#[test]
fn sqlite_store_opens_a_file_with_the_caller_call_id_index() {
    let dir = TempDir::new("old-calls-index");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join(SqliteStore::FILE_NAME);
    rusqlite::Connection::open(&file).unwrap().execute_batch(SCHEMA_BEFORE_16).unwrap();
    assert!(indexes_of(&file, "calls").contains(&"calls_by_caller_call_id".to_string()));

    let mut store = SqliteStore::open(&dir.0).unwrap();
    let conn = rusqlite::Connection::open(&file).unwrap();
    let version: i64 = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SqliteStore::SCHEMA_VERSION);
    assert_eq!(indexes_of(&file, "calls"), ["calls_by_invite", "sqlite_autoindex_calls_1"]);

    // The old rows read as before.
    assert_eq!(store.users().unwrap(), vec![user("alice", "example.com")]);
    assert_eq!(store.bindings().unwrap(), vec![BindingRecord { cseq: 1, ..binding("sip:alice@example.com", "sip:alice@192.0.2.1", 1) }]);
    let old =
        CallRecord { caller_call_id: "old-a".into(), caller_jitter_ms: f64::NAN, callee_jitter_ms: f64::NAN, ..ringing_call("old", 5) };
    let calls = store.calls(None).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        CallRecord { caller_jitter_ms: 0.0, callee_jitter_ms: 0.0, ..calls[0].clone() },
        CallRecord { caller_jitter_ms: 0.0, callee_jitter_ms: 0.0, ..old }
    );
    assert_eq!(store.call_states().unwrap(), vec![state("old", "{}")]);

    // Writes go on: one batch updates the old record twice (one statement, held for the batch)
    // and adds a new one; then the file opens again as it is.
    let ops = [
        StoreOp::PutCall(full_call("old", 5)),
        StoreOp::PutCall(full_call("new", 9)),
        StoreOp::RemoveCallState("old".into()),
        StoreOp::PutCall(CallRecord { end_reason: Some("cancel".into()), ..full_call("old", 5) }),
    ];
    store.apply_batch(&ops).unwrap();
    drop(store);
    let store = SqliteStore::open(&dir.0).unwrap();
    let want = [CallRecord { end_reason: Some("cancel".into()), ..full_call("old", 5) }, full_call("new", 9)];
    assert_eq!(store.calls(None).unwrap(), want);
    assert!(store.call_states().unwrap().is_empty());
    assert_eq!(indexes_of(&file, "calls"), ["calls_by_invite", "sqlite_autoindex_calls_1"]);
    drop(store);

    // An older build opening the file in between makes the index again; the next open drops it.
    rusqlite::Connection::open(&file).unwrap().execute_batch("CREATE INDEX calls_by_caller_call_id ON calls (caller_call_id);").unwrap();
    let store = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(indexes_of(&file, "calls"), ["calls_by_invite", "sqlite_autoindex_calls_1"]);
    assert_eq!(store.calls(None).unwrap(), want);
}

#[test]
fn sqlite_open_error_names_the_file() {
    let dir = TempDir::new("garbage");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join(SqliteStore::FILE_NAME);
    std::fs::write(&file, vec![b'x'; 4096]).unwrap();
    match SqliteStore::open(&dir.0) {
        Err(e @ StoreError::Open { .. }) => {
            let StoreError::Open { path, .. } = &e else { unreachable!() };
            assert_eq!(path, &file);
            assert!(e.to_string().contains("switchboard.sqlite3"), "{e}");
        }
        other => panic!("expected Open error, got {other:?}"),
    }
}

#[test]
fn sqlite_batch_is_all_or_nothing() {
    let dir = TempDir::new("atomic");
    let mut store = SqliteStore::open(&dir.0).unwrap();
    // SQLite integers are i64: a u64 above i64::MAX cannot be stored, so this op fails mid-batch.
    let bad = CallRecord { callee_packets: u64::MAX, ..full_call("bad", 1) };
    let ops = [StoreOp::PutUser(user("alice", "example.com")), StoreOp::PutCall(bad)];
    assert!(store.apply_batch(&ops).is_err());
    assert!(store.users().unwrap().is_empty(), "the first op was rolled back with the batch");
    store.apply_batch(&ops[..1]).unwrap();
    assert_eq!(store.users().unwrap(), vec![user("alice", "example.com")]);
}

/// A batch holds its binding upsert for all its `PutBinding`s (issue 16): new rows, refreshes of a
/// row written earlier in the same batch, a remove between two puts of one contact and a put
/// after its AOR was cleared end as the memory store ends, batch after batch.
#[test]
fn sqlite_batch_of_bindings_answers_as_memory() {
    let dir = TempDir::new("binding-batch");
    let mut sqlite = SqliteStore::open(&dir.0).unwrap();
    let mut memory = MemoryStore::new();
    let (a, b) = ("sip:alice@example.com", "sip:bob@example.com");
    let later = |b: BindingRecord, s: u64| BindingRecord { expires_at: b.expires_at + s, updated_at: b.updated_at + s, ..b };
    let batches = [
        vec![
            StoreOp::PutBinding(binding(a, "sip:alice@192.0.2.10", 1)),
            StoreOp::PutBinding(binding(b, "sip:bob@192.0.2.20", 1)),
            StoreOp::PutBinding(later(binding(a, "sip:alice@192.0.2.10", 2), 60)),
            StoreOp::PutBinding(binding(a, "sip:alice@192.0.2.11;transport=udp", 1)),
        ],
        vec![
            StoreOp::RemoveBinding { aor: a.into(), contact: "sip:alice@192.0.2.10".into() },
            StoreOp::PutBinding(later(binding(a, "sip:alice@192.0.2.10", 3), 120)),
            StoreOp::PutUser(user("alice", "example.com")),
            StoreOp::PutBinding(BindingRecord { source: "[2001:db8::1]:5062".parse().unwrap(), ..binding(b, "sip:bob@192.0.2.20", 2) }),
        ],
        vec![
            StoreOp::RemoveBindings(a.into()),
            StoreOp::PutBinding(binding(a, "sip:alice@192.0.2.12", 4)),
            StoreOp::PutBinding(later(binding(a, "sip:alice@192.0.2.12", 5), 5)),
        ],
    ];
    for ops in &batches {
        sqlite.apply_batch(ops).unwrap();
        memory.apply_batch(ops).unwrap();
        assert_eq!(sqlite.bindings().unwrap(), memory.bindings().unwrap());
    }
    let want = [
        later(binding(a, "sip:alice@192.0.2.12", 5), 5),
        BindingRecord { source: "[2001:db8::1]:5062".parse().unwrap(), ..binding(b, "sip:bob@192.0.2.20", 2) },
    ];
    assert_eq!(sqlite.bindings().unwrap(), want);
    drop(sqlite);
    assert_eq!(SqliteStore::open(&dir.0).unwrap().bindings().unwrap(), want);
}

#[test]
fn sqlite3_shell_reads_the_open_store() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        eprintln!("skipped: the sqlite3 shell is not installed (apt-get install sqlite3)");
        return;
    }
    let dir = TempDir::new("shell");
    let mut store = SqliteStore::open(&dir.0).unwrap();
    exercise(&mut store);
    let out = shell(store.path(), "PRAGMA journal_mode; SELECT count(*) FROM bindings; SELECT name FROM users;");
    assert_eq!(out, "wal\n3\nalice\nbob\n");
    drop(store);
    let out = shell(&dir.0.join(SqliteStore::FILE_NAME), "SELECT id, codec FROM calls WHERE answered_at IS NOT NULL;");
    assert_eq!(out, "c1|PCMU/8000\n");
}

fn shell(file: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(file).arg(sql).output().unwrap();
    assert!(out.status.success(), "sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
