//! The writer thread: takes writes off the signalling path and commits them in batches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::outage::{WarnEvery, WARN_PERIOD};
use super::{BindingRecord, CallRecord, CallState, Store, StoreError, StoreOp, UserRecord};
use crate::records::{Confirmation, NonceClaim};

/// How often an unreachable store is probed (a `PING` for Redis) until it answers again.
const PROBE: Duration = Duration::from_secs(1);
/// Ops kept for replay while the store is unreachable; beyond this the oldest are dropped.
const MAX_RETAINED: usize = 200_000;

/// Called from the writer thread with the outcome of a confirmed write.
pub type Done = Box<dyn FnOnce(Confirmation) + Send>;

/// Tuning for [`StoreWriter`].
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most ops in one transaction. Larger batches amortise the commit; smaller ones bound how long
    /// a single commit holds the database lock against other connections.
    pub max_batch: usize,
    /// A commit slower than this is logged and counted in [`WriterStats::slow_commits`].
    pub slow_commit: Duration,
    /// Group commit: after the first op of a batch arrives, wait this long for more before
    /// committing. One SQLite commit costs far more than one op, and a B2BUA call or a registration
    /// writes several ops within milliseconds, so a short window turns one commit per op into one
    /// per window (at 1,000 calls/s: about 100 commits a second instead of 4,000). It adds this much
    /// to the loss window of a `kill -9`; [`StoreWriter::flush`] does not wait for it. Zero commits
    /// each op as soon as the thread sees it.
    pub group_commit: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig { max_batch: 1024, slow_commit: Duration::from_millis(50), group_commit: Duration::from_millis(10) }
    }
}

/// A snapshot of the writer's counters, for a status view. See the module doc for how
/// `max_queue_delay` relates to what a crash can lose.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriterStats {
    /// Ops enqueued since start.
    pub ops_queued: u64,
    /// Ops committed.
    pub ops_committed: u64,
    /// Ops that could not be committed and were dropped.
    pub ops_failed: u64,
    /// Batches written (one transaction each, plus retries after a failure).
    pub batches: u64,
    /// Commits slower than [`WriterConfig::slow_commit`].
    pub slow_commits: u64,
    /// Ops in the last batch.
    pub last_batch_ops: usize,
    /// Time the last batch took to apply and commit.
    pub last_commit_latency: Duration,
    /// Worst commit time seen.
    pub max_commit_latency: Duration,
    /// In the last batch, time from the oldest op's enqueue to its commit.
    pub last_queue_delay: Duration,
    /// Worst enqueue-to-commit time seen: the loss window of a crash at the worst moment so far.
    pub max_queue_delay: Duration,
    /// Text of the last error that dropped ops.
    pub last_error: Option<String>,
}

impl WriterStats {
    /// Ops enqueued but neither committed nor dropped yet.
    pub fn pending(&self) -> u64 {
        self.ops_queued.saturating_sub(self.ops_committed + self.ops_failed)
    }
}

// Ops are nearly every message, so boxing the big variant would only add an allocation per op.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Op(StoreOp, Instant),
    Flush(SyncSender<Result<(), StoreError>>),
    Confirmed(Vec<StoreOp>, Option<NonceClaim>, Done),
}

#[derive(Debug, Default)]
struct Shared {
    /// Bumped by enqueuers without taking the lock.
    queued: AtomicU64,
    stats: Mutex<WriterStats>,
    /// Set while the store is unreachable (issue 17 point 6).
    down: AtomicBool,
}

/// Owns a [`Store`] on a dedicated OS thread and applies writes to it in batches.
///
/// The enqueue methods (`put_*`, `remove_*`, [`StoreWriter::enqueue`]) never block: they push onto
/// an unbounded queue, so a slow disk grows [`WriterStats::pending`] instead of stalling signalling.
/// The thread takes everything queued (up to [`WriterConfig::max_batch`]), applies it with
/// [`Store::apply_batch`] (one SQLite transaction) and repeats. If a batch fails it retries the ops
/// one at a time, so one bad op does not drop its neighbours; replaying is safe because every op
/// sets or deletes a key. Ops are applied in enqueue order.
///
/// [`flush`](StoreWriter::flush) and [`close`](StoreWriter::close) block, as does dropping the
/// writer (it commits what is queued, then joins the thread); from async code call them through
/// `spawn_blocking`. `StoreWriter` is `Sync`: share it with an `Arc`.
#[derive(Debug)]
pub struct StoreWriter {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<Box<dyn Store>>>,
    shared: Arc<Shared>,
}

// ===== impl StoreWriter =====

impl StoreWriter {
    /// Starts the writer thread on `store`. Read what startup needs from the store before this.
    pub fn spawn(store: Box<dyn Store>, config: WriterConfig) -> Result<StoreWriter, StoreError> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || run(store, rx, &thread_shared, &config))
            .map_err(StoreError::Spawn)?;
        Ok(StoreWriter { tx: Some(tx), thread: Some(thread), shared })
    }

    /// Queues `op`. Fails only if the writer thread has died.
    pub fn enqueue(&self, op: StoreOp) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterStopped)?;
        // Count before sending so a stats snapshot never shows more committed than queued.
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(Msg::Op(op, Instant::now())).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            StoreError::WriterStopped
        })
    }

    /// Claims `claim` (a nonce use, see [`Store::claim_nonce`]), then commits `ops`, then calls
    /// `done` with the outcome, from the writer thread. While the store is unreachable `done` is
    /// called at once with [`Confirmation::Unavailable`] and nothing is kept. Fails (without
    /// calling `done`) only if the writer thread has died.
    pub fn enqueue_confirmed(&self, ops: Vec<StoreOp>, claim: Option<NonceClaim>, done: Done) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterStopped)?;
        tx.send(Msg::Confirmed(ops, claim, done)).map_err(|_| StoreError::WriterStopped)
    }

    /// Whether the store answered its last write or probe: `false` during an outage.
    pub fn available(&self) -> bool {
        !self.shared.down.load(Ordering::Relaxed)
    }

    /// Queues [`Store::put_user`].
    pub fn put_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.enqueue(StoreOp::PutUser(user))
    }

    /// Queues [`Store::remove_user`].
    pub fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.enqueue(StoreOp::RemoveUser(name.to_owned()))
    }

    /// Queues [`Store::put_binding`].
    pub fn put_binding(&self, binding: BindingRecord) -> Result<(), StoreError> {
        self.enqueue(StoreOp::PutBinding(binding))
    }

    /// Queues [`Store::remove_binding`].
    pub fn remove_binding(&self, aor: &str, contact: &str) -> Result<(), StoreError> {
        self.enqueue(StoreOp::RemoveBinding { aor: aor.to_owned(), contact: contact.to_owned() })
    }

    /// Queues [`Store::remove_bindings`].
    pub fn remove_bindings(&self, aor: &str) -> Result<(), StoreError> {
        self.enqueue(StoreOp::RemoveBindings(aor.to_owned()))
    }

    /// Queues [`Store::put_call`].
    pub fn put_call(&self, call: CallRecord) -> Result<(), StoreError> {
        self.enqueue(StoreOp::PutCall(call))
    }

    /// Queues [`Store::put_call_state`].
    pub fn put_call_state(&self, state: CallState) -> Result<(), StoreError> {
        self.enqueue(StoreOp::PutCallState(state))
    }

    /// Queues [`Store::remove_call_state`].
    pub fn remove_call_state(&self, id: &str) -> Result<(), StoreError> {
        self.enqueue(StoreOp::RemoveCallState(id.to_owned()))
    }

    /// Blocks until every op queued before this call is committed, then runs [`Store::flush`].
    /// Returns [`StoreError::WriteFailed`] if ops were dropped since the previous flush.
    pub fn flush(&self) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::WriterStopped)?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        tx.send(Msg::Flush(reply_tx)).map_err(|_| StoreError::WriterStopped)?;
        reply_rx.recv().map_err(|_| StoreError::WriterStopped)?
    }

    /// The counters as of now.
    pub fn stats(&self) -> WriterStats {
        let stats = self.shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
        // Read the queued count under the lock, after the committed count it guards.
        WriterStats { ops_queued: self.shared.queued.load(Ordering::Relaxed), ..stats.clone() }
    }

    /// Commits everything queued, stops the thread and hands the store back. Call
    /// [`flush`](StoreWriter::flush) first to learn whether every op made it.
    pub fn close(mut self) -> Result<Box<dyn Store>, StoreError> {
        self.stop().ok_or(StoreError::WriterStopped)
    }

    fn stop(&mut self) -> Option<Box<dyn Store>> {
        // Closing the channel ends the thread's loop once it has drained the queue.
        drop(self.tx.take());
        self.thread.take()?.join().ok()
    }
}

impl crate::records::StoreSink for StoreWriter {
    fn enqueue(&self, op: StoreOp) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        StoreWriter::enqueue(self, op).map_err(Into::into)
    }

    fn flush(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        StoreWriter::flush(self).map_err(Into::into)
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

// ===== the thread =====

/// The writer's view of an outage: since when, the rate-limited WARN, the ops to replay.
struct Outage {
    since: Instant,
    warn: WarnEvery,
    retained: Vec<StoreOp>,
    lost: u64,
    next_probe: Instant,
}

impl Outage {
    fn new(now: Instant) -> Outage {
        Outage { since: now, warn: WarnEvery::new(WARN_PERIOD), retained: Vec::new(), lost: 0, next_probe: now + PROBE }
    }

    fn keep(&mut self, ops: impl IntoIterator<Item = StoreOp>) {
        self.retained.extend(ops);
        if self.retained.len() > MAX_RETAINED {
            let over = self.retained.len() - MAX_RETAINED;
            self.retained.drain(..over);
            self.lost += over as u64;
        }
    }

    fn failed(&mut self, error: &StoreError, now: Instant) {
        if let Some(quiet) = self.warn.failure(now) {
            tracing::warn!(
                error = %error,
                down_secs = now.duration_since(self.since).as_secs(),
                kept = self.retained.len(),
                quiet_failures = quiet,
                "store unreachable: new registrations get 503; writes are kept and replayed when it answers"
            );
        }
    }
}

fn run(mut store: Box<dyn Store>, rx: Receiver<Msg>, shared: &Shared, config: &WriterConfig) -> Box<dyn Store> {
    let max_batch = config.max_batch.max(1);
    let mut ops = Vec::with_capacity(max_batch);
    let mut dropped_since_flush = 0;
    let mut outage: Option<Outage> = None;
    loop {
        let first = if let Some(o) = &outage {
            match rx.recv_timeout(o.next_probe.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            }
        };
        // Probed once a PROBE period, however busy the queue is.
        if outage.as_ref().is_some_and(|o| Instant::now() >= o.next_probe) {
            outage = probe(&mut *store, outage.take(), shared);
        }
        let Some(first) = first else { continue };
        // Group commit: sleep rather than block in `recv_timeout`, so enqueuers meanwhile find no
        // waiter to wake (a futex call each) and the batch fills up by itself.
        if matches!(first, Msg::Op(..)) && !config.group_commit.is_zero() && outage.is_none() {
            std::thread::sleep(config.group_commit);
        }
        let mut oldest = None;
        let mut flush = None;
        let mut confirmed = Vec::new();
        let mut next = Some(first);
        // Take what is already queued, without waiting: under load the batch grows by itself
        // while the previous commit runs; when idle an op is committed at once.
        while let Some(msg) = next.take() {
            match msg {
                Msg::Op(op, at) => {
                    oldest.get_or_insert(at);
                    ops.push(op);
                }
                Msg::Confirmed(c_ops, claim, done) => confirmed.push((c_ops, claim, done)),
                // Ops queued after the flush request are not its business: commit and answer now.
                Msg::Flush(reply) => {
                    flush = Some(reply);
                    break;
                }
            }
            if ops.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        if let Some(oldest) = oldest {
            let queued = ops.len();
            StoreOp::keep_latest_per_key(&mut ops);
            render_pending(&mut ops);
            match outage.as_mut() {
                // Down: keep them for the replay, do not wait for another timeout.
                Some(o) => o.keep(ops.drain(..)),
                None => match commit(&mut *store, &ops, queued, oldest, shared, config) {
                    Committed::Dropped(n) => dropped_since_flush += n,
                    Committed::Outage(e) => {
                        let mut o = Outage::new(Instant::now());
                        o.keep(ops.drain(..));
                        o.failed(&e, Instant::now());
                        shared.down.store(true, Ordering::Relaxed);
                        outage = Some(o);
                    }
                },
            }
            ops.clear();
        }
        for (c_ops, claim, done) in confirmed {
            let outcome = if outage.is_some() { Confirmation::Unavailable } else { confirm(&mut *store, &c_ops, claim.as_ref()) };
            if outcome == Confirmation::Unavailable && outage.is_none() {
                let e = StoreError::WriteFailed { ops: c_ops.len() as u64 };
                let mut o = Outage::new(Instant::now());
                o.failed(&e, Instant::now());
                shared.down.store(true, Ordering::Relaxed);
                outage = Some(o);
            }
            done(outcome);
        }
        if let Some(reply) = flush {
            let result = match (&outage, std::mem::take(&mut dropped_since_flush)) {
                (Some(o), _) => Err(StoreError::WriteFailed { ops: o.retained.len() as u64 }),
                (None, 0) => store.flush(),
                (None, ops) => Err(StoreError::WriteFailed { ops }),
            };
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(result);
        }
    }
    // Closing: one last try at what an outage kept.
    if let Some(o) = outage {
        match store.apply_batch(&o.retained) {
            Ok(()) => tracing::info!(ops = o.retained.len(), "store answered at shutdown; kept writes replayed"),
            Err(e) => {
                tracing::error!(error = %e, lost = o.retained.len() as u64 + o.lost, "store unreachable at shutdown; kept writes lost")
            }
        }
    }
    store
}

/// Probes the store during an outage; when it answers, replays what was kept and ends the outage.
fn probe(store: &mut dyn Store, outage: Option<Outage>, shared: &Shared) -> Option<Outage> {
    let mut o = outage?;
    let now = Instant::now();
    o.next_probe = now + PROBE;
    if let Err(e) = store.flush() {
        o.failed(&e, now);
        o.next_probe = Instant::now() + PROBE;
        return Some(o);
    }
    if let Err(e) = store.apply_batch(&o.retained) {
        o.failed(&e, now);
        o.next_probe = Instant::now() + PROBE;
        return Some(o);
    }
    shared.down.store(false, Ordering::Relaxed);
    let mut s = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
    s.ops_committed += o.retained.len() as u64;
    s.ops_failed += o.lost;
    tracing::warn!(
        down_secs = now.duration_since(o.since).as_secs_f64(),
        replayed = o.retained.len(),
        lost = o.lost,
        "store reachable again: writes kept during the outage replayed"
    );
    None
}

/// One confirmed write: the nonce claim, then the ops in one transaction.
fn confirm(store: &mut dyn Store, ops: &[StoreOp], claim: Option<&NonceClaim>) -> Confirmation {
    if let Some(c) = claim {
        match store.claim_nonce(c) {
            Ok(true) => {}
            Ok(false) => return Confirmation::Replay,
            Err(e) => {
                tracing::debug!(error = %e, "nonce claim failed");
                return Confirmation::Unavailable;
            }
        }
    }
    match store.apply_batch(ops) {
        Ok(()) => Confirmation::Written,
        Err(e) => {
            tracing::debug!(error = %e, "confirmed write failed");
            Confirmation::Unavailable
        }
    }
}

/// What [`commit`] did.
enum Committed {
    /// Committed, `n` ops dropped (a bad op; the store answers).
    Dropped(u64),
    /// The store does not answer at all: nothing was committed.
    Outage(StoreError),
}

/// Applies one batch, falling back to one op per transaction if it fails. Returns how many ops
/// were dropped.
/// Makes the call states of the batch that survived [`StoreOp::keep_latest_per_key`] (see
/// `PendingCallState`), so that a failed commit's retries and an outage's replay hold plain ops.
fn render_pending(ops: &mut Vec<StoreOp>) {
    if ops.iter().any(|op| matches!(op, StoreOp::PutCallStateLater(_))) {
        let pending = std::mem::take(ops);
        ops.extend(pending.into_iter().filter_map(StoreOp::rendered));
    }
}

/// Applies `ops` (what is left of `queued` ops after [`StoreOp::keep_latest_per_key`]) in one
/// transaction, else one by one; returns how many were dropped.
fn commit(store: &mut dyn Store, ops: &[StoreOp], queued: usize, oldest: Instant, shared: &Shared, config: &WriterConfig) -> Committed {
    let start = Instant::now();
    let mut batches = 1;
    let mut dropped = 0;
    let mut last_error = None;
    if let Err(e) = store.apply_batch(ops) {
        // A store that does not even answer a probe is down, not refusing these ops.
        if let Err(probe) = store.flush() {
            tracing::debug!(error = %e, probe = %probe, "store batch failed and the store does not answer");
            return Committed::Outage(e);
        }
        tracing::warn!(error = %e, ops = ops.len(), "store batch failed; retrying op by op");
        for op in ops {
            batches += 1;
            if let Err(e) = store.apply_batch(std::slice::from_ref(op)) {
                dropped += 1;
                last_error = Some(e.to_string());
            }
        }
        if let Some(e) = &last_error {
            tracing::error!(error = %e, dropped, "store writes dropped");
        }
    }
    let done = Instant::now();
    let latency = done - start;
    if latency > config.slow_commit {
        tracing::warn!(?latency, ops = ops.len(), "slow store commit");
    }
    let mut s = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
    // Superseded ops count as committed: the store holds their effect (the later op's).
    s.ops_committed += queued as u64 - dropped;
    s.ops_failed += dropped;
    s.batches += batches;
    s.slow_commits += u64::from(latency > config.slow_commit);
    s.last_batch_ops = queued;
    s.last_commit_latency = latency;
    s.max_commit_latency = s.max_commit_latency.max(latency);
    s.last_queue_delay = done - oldest;
    s.max_queue_delay = s.max_queue_delay.max(done - oldest);
    if last_error.is_some() {
        s.last_error = last_error;
    }
    Committed::Dropped(dropped)
}
