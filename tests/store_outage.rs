//! The writer thread through a store outage (issue 17 point 6), over a store that fails on demand:
//! a confirmed write is `Written` while the store answers and `Unavailable` (at once) once it does
//! not; `available()` says which; writes queued during the outage are kept and replayed when the
//! store answers the writer's probe again, without restarting anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard::store::{
    BindingRecord, CallRecord, CallState, Confirmation, MemoryStore, NonceClaim, Store, StoreError, StoreOp, StoreWriter, UserRecord,
    WriterConfig,
};

/// A memory store that fails every call while `down` is set, as an unreachable Redis does.
struct Flaky {
    mem: Arc<Mutex<MemoryStore>>,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            Err(StoreError::WriterStopped)
        } else {
            Ok(())
        }
    }
}

impl Store for Flaky {
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().users()
    }
    fn put_user(&mut self, user: &UserRecord) -> Result<(), StoreError> {
        self.check()?;
        self.mem.lock().unwrap().put_user(user)
    }
    fn remove_user(&mut self, name: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().remove_user(name)
    }
    fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().bindings()
    }
    fn put_binding(&mut self, binding: &BindingRecord) -> Result<(), StoreError> {
        self.check()?;
        self.mem.lock().unwrap().put_binding(binding)
    }
    fn remove_binding(&mut self, aor: &str, contact: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().remove_binding(aor, contact)
    }
    fn remove_bindings(&mut self, aor: &str) -> Result<usize, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().remove_bindings(aor)
    }
    fn calls(&self, since_ms: Option<u64>) -> Result<Vec<CallRecord>, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().calls(since_ms)
    }
    fn put_call(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        self.check()?;
        self.mem.lock().unwrap().put_call(call)
    }
    fn call_states(&self) -> Result<Vec<CallState>, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().call_states()
    }
    fn put_call_state(&mut self, state: &CallState) -> Result<(), StoreError> {
        self.check()?;
        self.mem.lock().unwrap().put_call_state(state)
    }
    fn remove_call_state(&mut self, id: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.mem.lock().unwrap().remove_call_state(id)
    }
    fn claim_nonce(&mut self, _claim: &NonceClaim) -> Result<bool, StoreError> {
        self.check()?;
        Ok(true)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.check()
    }
}

fn binding(contact: &str) -> BindingRecord {
    BindingRecord {
        aor: "sip:alice@example.com".into(),
        contact: contact.into(),
        expires_at: u64::MAX / 2,
        q_millis: 1000,
        call_id: "r1".into(),
        cseq: 1,
        source: "127.0.0.1:5099".parse().unwrap(),
        updated_at: 1,
    }
}

fn call(id: &str) -> CallRecord {
    CallRecord {
        id: id.into(),
        caller_call_id: "c@a".into(),
        callee_call_id: None,
        from: "sip:alice@example.com".into(),
        to: "sip:bob@example.com".into(),
        invited_at: 1,
        answered_at: Some(2),
        ended_at: Some(3),
        end_reason: Some("bye".into()),
        ended_by: Some("caller".into()),
        codec: None,
        caller_packets: 0,
        caller_lost: 0,
        caller_jitter_ms: f64::NAN,
        callee_packets: 0,
        callee_lost: 0,
        callee_jitter_ms: f64::NAN,
    }
}

/// A confirmed write of one binding; its outcome.
fn confirmed(writer: &StoreWriter, contact: &str) -> Confirmation {
    let (tx, rx) = mpsc::channel();
    let claim = NonceClaim { nonce: "n".into(), nc: 1, expires_at: 10 };
    writer
        .enqueue_confirmed(vec![StoreOp::PutBinding(binding(contact))], Some(claim), Box::new(move |c| tx.send(c).unwrap()))
        .expect("writer running");
    rx.recv_timeout(Duration::from_secs(10)).expect("an outcome")
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn confirmed_writes_fail_fast_during_an_outage_and_kept_writes_are_replayed() {
    let mem = Arc::new(Mutex::new(MemoryStore::new()));
    let down = Arc::new(AtomicBool::new(false));
    let store = Flaky { mem: mem.clone(), down: down.clone() };
    let writer = StoreWriter::spawn(Box::new(store), WriterConfig { group_commit: Duration::ZERO, ..WriterConfig::default() }).unwrap();

    assert_eq!(confirmed(&writer, "sip:a@1"), Confirmation::Written);
    assert_eq!(mem.lock().unwrap().bindings().unwrap().len(), 1, "written before the outcome");
    assert!(writer.available());

    // The store goes away: a plain write fails, the writer notices, keeps it, and says so.
    down.store(true, Ordering::Relaxed);
    writer.put_call(call("c1")).unwrap();
    wait_until("the writer sees the outage", || !writer.available());
    assert_eq!(confirmed(&writer, "sip:a@2"), Confirmation::Unavailable);
    writer.put_call(call("c2")).unwrap();
    assert!(writer.flush().is_err(), "a flush during the outage reports the kept writes");

    // Back: the probe finds it, the kept writes land, confirmed writes work again.
    down.store(false, Ordering::Relaxed);
    wait_until("the writer sees the store again", || writer.available());
    writer.flush().expect("nothing lost");
    let ids: Vec<String> = mem.lock().unwrap().calls(None).unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["c1", "c2"], "kept writes replayed in order");
    assert_eq!(mem.lock().unwrap().bindings().unwrap().len(), 1, "the Unavailable write left nothing");
    assert_eq!(confirmed(&writer, "sip:a@3"), Confirmation::Written);
    assert_eq!(mem.lock().unwrap().bindings().unwrap().len(), 2);
}
