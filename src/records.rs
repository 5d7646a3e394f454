//! What the service writes to its store (sans-IO): the rows (users, registrar bindings, call
//! records, saved call states) and the write ops, with [`StoreSink`], the one thing the service
//! asks of a store: take an op, never block. The store itself (SQLite, the writer thread) is I/O
//! and lives in `store`, which implements [`StoreSink`] for its writer.

use std::fmt;

/// Where the service hands its writes: a queue in front of the store (the store writer's thread in
/// `switchboard serve`). `enqueue` returns at once; `flush` waits until what was queued is written
/// (used once, at shutdown).
pub trait StoreSink: fmt::Debug + Send {
    /// Queues one write. Fails only if the store has stopped.
    fn enqueue(&self, op: StoreOp) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// Waits until every write queued so far is committed.
    fn flush(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// Whether the caller must wait for [`StoreSink::enqueue_confirmed`]'s outcome before it
    /// answers (a shared store: issue 17 point 6, a REGISTER's 200 only after Redis confirmed the
    /// write). `false` (the default, SQLite and memory): enqueue and answer at once.
    fn confirms(&self) -> bool {
        false
    }
    /// Whether the store takes writes now: `false` while a shared store is unreachable, when new
    /// registrations get 503.
    fn available(&self) -> bool {
        true
    }
    /// Claims `claim` (if any), then writes `ops`; the outcome comes back later, to the service,
    /// as `Service::write_confirmed(ticket, ..)`. Only called when [`StoreSink::confirms`]; the
    /// default just enqueues the ops.
    fn enqueue_confirmed(
        &self,
        ops: Vec<StoreOp>,
        claim: Option<NonceClaim>,
        ticket: u64,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let _ = (claim, ticket);
        ops.into_iter().try_for_each(|op| self.enqueue(op))
    }
}

/// What became of a confirmed write ([`StoreSink::enqueue_confirmed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// The store has the ops.
    Written,
    /// The nonce count was used already (on any instance): nothing written.
    Replay,
    /// The store is unreachable: nothing written.
    Unavailable,
}

/// One use of a digest nonce (RFC 7616 §3.4 `nc`), claimed in a shared store so that a count
/// used on one instance is a replay on every other (issue 17 point 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonceClaim {
    /// The nonce, as the client sent it.
    pub nonce: String,
    /// Its nonce-count.
    pub nc: u32,
    /// When the claim may be forgotten (the nonce has lapsed by then), Unix seconds.
    pub expires_at: u64,
}

/// One user who may register and call, with the precomputed digest secrets (RFC 8760: HA1 for
/// MD5 and for SHA-256, both `H(name:realm:password)` in lower-case hex). Keyed by `name`.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// User part of the address of record, also the digest username.
    pub name: String,
    /// Digest realm the HA1 values were computed for.
    pub realm: String,
    /// `MD5(name:realm:password)`, hex.
    pub ha1_md5: String,
    /// `SHA-256(name:realm:password)`, hex.
    pub ha1_sha256: String,
}

/// One registrar binding (RFC 3261 §10.3), stored as the registrar keeps it: the store saves the
/// registrar's own [`Binding`](crate::registrar::Binding), keyed by (`aor`, `contact`), so there is
/// no second copy of its fields to convert to and from.
pub type BindingRecord = crate::registrar::Binding;

/// One call detail record. Keyed by `id`; written at INVITE and rewritten as the call progresses.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// The service's own call id.
    pub id: String,
    /// Call-ID of the caller's dialog.
    pub caller_call_id: String,
    /// Call-ID of the callee's dialog, once one exists.
    pub callee_call_id: Option<String>,
    /// From of the incoming INVITE.
    pub from: String,
    /// To of the incoming INVITE.
    pub to: String,
    /// INVITE arrival, unix milliseconds.
    pub invited_at: u64,
    /// 200 OK time, unix milliseconds.
    pub answered_at: Option<u64>,
    /// End time (BYE, CANCEL, failure), unix milliseconds.
    pub ended_at: Option<u64>,
    /// Why the call ended, e.g. `bye` or `486`.
    pub end_reason: Option<String>,
    /// Which side ended it, e.g. `caller`, `callee`, `service`.
    pub ended_by: Option<String>,
    /// Negotiated codec, e.g. `PCMU/8000`.
    pub codec: Option<String>,
    /// RTP packets received from the caller.
    pub caller_packets: u64,
    /// Packets lost from the caller (RFC 3550 cumulative loss; negative with duplicates).
    pub caller_lost: i64,
    /// Interarrival jitter of the caller's stream, ms. NaN (no measurement) is stored as NULL.
    pub caller_jitter_ms: f64,
    /// RTP packets received from the callee.
    pub callee_packets: u64,
    /// Packets lost from the callee.
    pub callee_lost: i64,
    /// Interarrival jitter of the callee's stream, ms.
    pub callee_jitter_ms: f64,
}

/// Opaque state the call layer writes so that calls can be recovered after a restart. Keyed by `id`.
#[derive(Clone, Debug, PartialEq)]
pub struct CallState {
    /// The call id.
    pub id: String,
    /// JSON owned by the call layer; the store never looks inside.
    pub data: String,
}

/// A [`CallState`] whose JSON is made when the store writer gets to it, not when the call layer
/// queues it: a call that ends within the writer's group-commit window has its state put and then
/// removed in one batch, [`StoreOp::keep_latest_per_key`] drops the put, and the state is never
/// serialized (issue 16: a B2BUA call of a few milliseconds spent ~28,000 instructions, 5% of the
/// call, writing JSON that was deleted unread). A longer call's state is serialized on the writer's
/// thread instead of the signalling one, before its batch commits: what is committed, and when,
/// is as before.
#[derive(Clone)]
pub struct PendingCallState {
    /// The call id.
    pub id: String,
    /// No state of this call was queued before this one, so the store holds no row for it (see
    /// [`PendingCallState::first`]).
    first: bool,
    render: std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>,
}

impl PendingCallState {
    /// A state for call `id` whose data `render` makes (`None`: it could not be made, and nothing
    /// is written).
    pub fn new(id: String, render: impl Fn() -> Option<String> + Send + Sync + 'static) -> PendingCallState {
        PendingCallState { id, first: false, render: std::sync::Arc::new(render) }
    }

    /// [`PendingCallState::new`] for the first state ever queued for call `id`: the caller
    /// promises that the store has no state row for `id` (call ids are unique, and no earlier put
    /// of it was queued). A batch that holds this put and a later remove of the same id then
    /// writes neither ([`StoreOp::keep_latest_per_key`]): the row would be created and deleted in
    /// one transaction, and deleting a row that never existed leaves the store as it was.
    pub fn first(id: String, render: impl Fn() -> Option<String> + Send + Sync + 'static) -> PendingCallState {
        PendingCallState { first: true, ..PendingCallState::new(id, render) }
    }

    /// Whether this is the call's first state ([`PendingCallState::first`]).
    pub fn is_first(&self) -> bool {
        self.first
    }

    /// The state, its data made now (`None` if it could not be).
    pub fn render(&self) -> Option<CallState> {
        (self.render)().map(|data| CallState { id: self.id.clone(), data })
    }
}

impl fmt::Debug for PendingCallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCallState").field("id", &self.id).field("first", &self.first).finish_non_exhaustive()
    }
}

impl PartialEq for PendingCallState {
    /// The same call and the same rendering (a clone of this one).
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.first == other.first && std::sync::Arc::ptr_eq(&self.render, &other.render)
    }
}

/// One write, as queued by the store writer (`store::StoreWriter`) and applied by the store
/// (`store::Store::apply_batch`).
#[derive(Clone, Debug, PartialEq)]
pub enum StoreOp {
    /// `Store::put_user`.
    PutUser(UserRecord),
    /// `Store::remove_user` by name.
    RemoveUser(String),
    /// `Store::put_binding`.
    PutBinding(BindingRecord),
    /// `Store::remove_binding`.
    RemoveBinding {
        /// Address of record.
        aor: String,
        /// Contact URI.
        contact: String,
    },
    /// `Store::remove_bindings` for one address of record.
    RemoveBindings(String),
    /// `Store::put_call`.
    PutCall(CallRecord),
    /// `Store::put_call_state`.
    PutCallState(CallState),
    /// `Store::remove_call_state` by call id.
    RemoveCallState(String),
    /// `Store::put_call_state` of a state made when it is written (see [`PendingCallState`]).
    PutCallStateLater(PendingCallState),
}

impl StoreOp {
    /// The one row this op sets or deletes, for [`StoreOp::latest_per_key`]; `None` for an op that
    /// touches several rows (`RemoveBindings`).
    fn key(&self) -> Option<(u8, &str, &str)> {
        match self {
            StoreOp::PutUser(u) => Some((0, &u.name, "")),
            StoreOp::RemoveUser(name) => Some((0, name, "")),
            StoreOp::PutBinding(b) => Some((1, &b.aor, &b.contact)),
            StoreOp::RemoveBinding { aor, contact } => Some((1, aor, contact)),
            StoreOp::RemoveBindings(_) => None,
            StoreOp::PutCall(c) => Some((2, &c.id, "")),
            StoreOp::PutCallState(s) => Some((3, &s.id, "")),
            StoreOp::RemoveCallState(id) => Some((3, id, "")),
            StoreOp::PutCallStateLater(s) => Some((3, &s.id, "")),
        }
    }

    /// This op with a [`StoreOp::PutCallStateLater`]'s state made: a [`StoreOp::PutCallState`], or
    /// `None` (logged) when it could not be made. Other ops are returned as they are.
    pub fn rendered(self) -> Option<StoreOp> {
        match self {
            StoreOp::PutCallStateLater(p) => {
                let state = p.render();
                if state.is_none() {
                    tracing::error!(call = %p.id, "call state not saved: it could not be serialized");
                }
                state.map(StoreOp::PutCallState)
            }
            op => Some(op),
        }
    }

    /// Drops the ops of a batch that no longer matter, keeping the order of the rest: of several ops
    /// on the same row only the last stays, since every op sets or deletes its row outright.
    /// Applying the result leaves the store exactly as applying them all would (ops on different
    /// rows commute, and an op on many rows keeps its place). A short B2BUA call writes its record
    /// twice and its state twice (put, then remove) within one group-commit window: two statements
    /// instead of four. When the batch also holds the call's first state put
    /// ([`PendingCallState::first`]), its row did not exist before the batch and the remove that
    /// ends it goes too: one statement (issue 16: a DELETE of a row never written cost the store
    /// thread ~3,700 instructions per call).
    pub fn keep_latest_per_key(ops: &mut Vec<StoreOp>) {
        // Each row's last op, by index.
        let mut last = crate::collections::HashMap::default();
        let mut keep = vec![true; ops.len()];
        for (i, op) in ops.iter().enumerate().rev() {
            let Some(k) = op.key() else { continue };
            match last.get(&k) {
                None => {
                    last.insert(k, i);
                }
                Some(&latest) => {
                    keep[i] = false;
                    let born_here = matches!(op, StoreOp::PutCallStateLater(p) if p.is_first());
                    if born_here && matches!(ops[latest], StoreOp::RemoveCallState(_)) {
                        keep[latest] = false;
                    }
                }
            }
        }
        let mut i = 0;
        ops.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
}
