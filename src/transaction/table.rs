//! [`Transactions`]: every transaction of an endpoint, routed by key, with one timer heap.
//!
//! ```text
//!   datagram ──> handle_request / handle_response
//!                  │ key (§17.1.3 / §17.2.3)
//!                  ├─ known key ─────────> that machine (retransmission, ACK, response)  Routed::Matched
//!                  ├─ new request ───────> new server machine, Event::Request            Routed::New
//!                  ├─ new CANCEL ────────> new server machine + INVITE it targets        Routed::Cancel
//!                  └─ ACK / response with no transaction ─> back to the caller           Routed::Stray
//! ```
//!
//! Machines live in a slab (`Vec` of slots plus a free list), each boxed, addressed by
//! [`TransactionId`] (index + generation, so a stale id never reaches a reused slot). All deadlines
//! sit in one `BinaryHeap` of `(deadline, index, generation)`; when a machine's deadline changes
//! the new one is pushed and the old entry is left behind, to be recognised as stale and skipped
//! when it surfaces.
//! A terminated machine is removed as soon as its output has been moved to the shared queues.
//!
//! A machine that has sent (server) or received (client) its final response is swapped at once
//! for a short form ([`Lingering`]): its key and, for a server's Completed, the bytes of its final
//! response (an INVITE client's Completed: its ACK). A completed REGISTER then costs
//! a few hundred bytes instead of a few KiB (BENCHMARKS.md, "Issue 16").
//!
//! A non-INVITE server transaction whose TU can build its final response again from a
//! retransmitted request ([`Transactions::send_rebuildable_response`], a registrar's 200) keeps
//! less still once Completed: a digest of its key, a fingerprint of its request and Timer J
//! ([`Answered`]); a retransmission then comes back as [`Routed::Repeated`] for the TU to answer.

use super::answered::{Answered, Hit};
use super::lingering::{Lingering, Queues};
use super::{ClientInvite, ClientNonInvite, Config, Error, Event, ServerInvite, ServerNonInvite, TransactionKey, TransactionState};
use crate::collections::HashMap;
use crate::message::{Message, Method};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// A handle on one transaction in [`Transactions`]. Ids of terminated transactions are never
/// reused for another transaction of the same slot (the generation differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId {
    index: u32,
    generation: u32,
}

/// Where [`Transactions::handle_request`] or [`Transactions::handle_response`] put a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Routed {
    /// It belongs to this live transaction: a retransmission, the ACK for a non-2xx, a response.
    Matched(TransactionId),
    /// A new request opened this server transaction; [`Event::Request`] is queued for it.
    New(TransactionId),
    /// A new CANCEL opened server transaction `id` ([`Event::Request`] queued); `target` is the
    /// INVITE it cancels (§9.2). The TU answers the CANCEL (200, or 481 for
    /// [`CancelTarget::NotFound`]) and, for a pending INVITE, answers that with 487.
    Cancel {
        /// The CANCEL's own server transaction.
        id: TransactionId,
        /// The INVITE server transaction it matches.
        target: CancelTarget,
    },
    /// Matches no transaction: an ACK for a 2xx (the dialog's, §13.3.1.4) or a response with no
    /// client transaction, e.g. a retransmitted 2xx (§17.1.1.2). Handed back to the caller.
    Stray(Message),
    /// A new request while [`Transactions::set_limit`] transactions are live: no state was kept.
    /// Handed back for a stateless 503 (RFC 3261 §21.5.4).
    Full(Message),
    /// A retransmission (byte for byte, its top Via stamped from the same source) of a request answered with
    /// [`Transactions::send_rebuildable_response`] whose transaction is still in Completed
    /// (before Timer J): the TU sends the same final response again, rebuilt from this request
    /// (§17.2.2), outside any transaction (the transaction keeps no id once compacted).
    Repeated(Message),
    /// A request with the key of such a transaction but other bytes: not the request that was
    /// answered, so no response is rebuilt from it; absorbed (a UAC reuses a branch only for a
    /// retransmission, §8.1.1.7).
    Absorbed,
}

/// The INVITE server transaction a CANCEL matches (§9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelTarget {
    /// Still Proceeding: the TU should answer the INVITE with 487.
    Pending(TransactionId),
    /// A final response was already sent: the CANCEL has no effect on the INVITE.
    Answered(TransactionId),
    /// No such transaction (never seen, or ended with a 2xx): answer the CANCEL with 481.
    NotFound,
}

#[derive(Debug)]
enum Machine {
    InviteClient(ClientInvite),
    NonInviteClient(ClientNonInvite),
    InviteServer(ServerInvite),
    NonInviteServer(ServerNonInvite),
}

/// Runs `$body` with `$m` bound to whichever machine it is.
macro_rules! each {
    ($machine:expr, $m:ident => $body:expr) => {
        match $machine {
            Machine::InviteClient($m) => $body,
            Machine::NonInviteClient($m) => $body,
            Machine::InviteServer($m) => $body,
            Machine::NonInviteServer($m) => $body,
        }
    };
}

impl Machine {
    fn handle_request(&mut self, msg: Message, now: Instant) -> Result<(), Error> {
        match self {
            Machine::InviteServer(m) => m.handle_request(msg, now),
            Machine::NonInviteServer(m) => m.handle_request(msg, now),
            Machine::InviteClient(_) | Machine::NonInviteClient(_) => Err(Error::WrongRole),
        }
    }

    fn handle_response(&mut self, msg: Message, now: Instant) -> Result<(), Error> {
        match self {
            Machine::InviteClient(m) => m.handle_response(msg, now),
            Machine::NonInviteClient(m) => m.handle_response(msg, now),
            Machine::InviteServer(_) | Machine::NonInviteServer(_) => Err(Error::WrongRole),
        }
    }

    fn handle_tu_response(&mut self, msg: Message, now: Instant) -> Result<(), Error> {
        match self {
            Machine::InviteServer(m) => m.handle_tu_response(msg, now),
            Machine::NonInviteServer(m) => m.handle_tu_response(msg, now),
            Machine::InviteClient(_) | Machine::NonInviteClient(_) => Err(Error::WrongRole),
        }
    }

    /// The machine's short form, if it only lingers now (see [`Lingering`]).
    fn lingering(&self) -> Option<Lingering> {
        match self {
            Machine::NonInviteServer(m) => m.lingering(),
            Machine::InviteServer(m) => m.lingering(),
            Machine::NonInviteClient(m) => m.lingering(),
            Machine::InviteClient(m) => m.lingering(),
        }
    }

    /// The RFC 2543 To-tag check after a key hit (§17.2.3); clients have nothing to check.
    fn accepts(&self, request: &Message) -> bool {
        match self {
            Machine::InviteServer(m) => m.accepts(request),
            Machine::NonInviteServer(m) => m.accepts(request),
            Machine::InviteClient(_) | Machine::NonInviteClient(_) => true,
        }
    }
}

/// One input for a transaction, for [`Transactions::drive`].
enum Input {
    Request(Message),
    Response(Message),
    TuResponse(Message),
    TransportError,
}

#[derive(Debug)]
struct Entry {
    machine: Machine,
    /// The deadline this entry has in the heap; heap items with another instant are stale.
    scheduled: Option<Instant>,
}

/// What a slot holds: the whole machine, or its short form once it only lingers.
#[derive(Debug)]
enum Held {
    Live(Box<Entry>),
    Lingering(Box<Lingering>),
}

impl Held {
    fn key(&self) -> &TransactionKey {
        match self {
            Held::Live(e) => each!(&e.machine, m => m.key()),
            Held::Lingering(l) => l.key(),
        }
    }

    /// The deadline this transaction has in the heap.
    fn scheduled(&self) -> Option<Instant> {
        match self {
            Held::Live(e) => e.scheduled,
            Held::Lingering(l) => l.scheduled,
        }
    }

    fn is_server(&self) -> bool {
        match self {
            Held::Live(e) => matches!(e.machine, Machine::InviteServer(_) | Machine::NonInviteServer(_)),
            Held::Lingering(l) => l.is_server(),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    /// Boxed: a slot is then 24 bytes, not the ~700 of a machine, so the `Vec`'s spare capacity
    /// and its moves when it grows stay small (BENCHMARKS.md, "Transactions").
    held: Option<Held>,
}

/// Every transaction of one endpoint (RFC 3261 §17). Inputs are `handle_*` and
/// [`Transactions::start_client`] / [`Transactions::send_response`]; after each, drain
/// [`Transactions::poll_transmit`] and [`Transactions::poll_event`], then sleep until
/// [`Transactions::poll_timeout`]. Timers of all transactions share one heap, so an idle
/// transaction costs memory only.
#[derive(Debug)]
pub struct Transactions {
    config: Config,
    keys: HashMap<TransactionKey, TransactionId>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    /// New server transactions are refused ([`Routed::Full`]) while this many are live.
    limit: usize,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    transmits: VecDeque<(TransactionId, Message)>,
    events: VecDeque<(TransactionId, Event)>,
    /// Messages sent again by a timer (A, E, G): every transmit a timer produces is a retransmission.
    retransmissions: u64,
    /// Completed non-INVITE server transactions whose response the TU rebuilds on demand.
    answered: Answered,
}

// ===== impl Transactions =====

impl Transactions {
    /// An empty table whose transactions run with `config`.
    pub fn new(config: Config) -> Transactions {
        Transactions {
            config,
            keys: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            limit: usize::MAX,
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            retransmissions: 0,
            answered: Answered::default(),
        }
    }

    /// The timer values new transactions get.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Caps the live transactions: a new request while `limit` are live is handed back as
    /// [`Routed::Full`] instead of opening a server transaction, so a flood of requests cannot
    /// make the table grow without bound. A CANCEL of a pending INVITE still goes through (it ends
    /// state). Client transactions are not refused: they answer requests already admitted.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// How many transactions are live (not yet terminated), the compact Completed ones of
    /// [`Transactions::send_rebuildable_response`] included.
    pub fn len(&self) -> usize {
        self.live + self.answered.len()
    }

    /// Requests and responses resent by Timers A, E and G so far (answers to a retransmitted
    /// request are not counted: the peer retransmitted, not us).
    pub fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// Keys indexed and items in the timer heap (stale ones included), for leak tests: both are
    /// back to 0 once every transaction has ended and its last timer has run.
    pub fn index_sizes(&self) -> (usize, usize) {
        (self.keys.len() + self.answered.len(), self.timers.len() + self.answered.queued())
    }

    /// Of [`Transactions::len`], the Completed transactions kept compact (see
    /// [`Transactions::send_rebuildable_response`]).
    pub fn compact_len(&self) -> usize {
        self.answered.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of a live transaction.
    pub fn state(&self, id: TransactionId) -> Option<TransactionState> {
        match self.held(id)? {
            Held::Live(e) => Some(each!(&e.machine, m => m.state())),
            Held::Lingering(l) => Some(l.state()),
        }
    }

    /// The request of a live transaction; `None` once it lingers in the short form (a server
    /// after its final response, a client after its final response): that keeps no request.
    pub fn request(&self, id: TransactionId) -> Option<&Message> {
        self.entry(id).map(|e| each!(&e.machine, m => m.request()))
    }

    /// The live transaction with this key.
    pub fn find(&self, key: &TransactionKey) -> Option<TransactionId> {
        self.keys.get(key).copied()
    }

    /// Starts a client transaction for `request` (INVITE: Figure 5; any other method but ACK:
    /// Figure 6) and queues its first transmission.
    pub fn start_client(&mut self, request: Message, now: Instant) -> Result<TransactionId, Error> {
        let machine = match request.method() {
            Some(Method::Invite) => Machine::InviteClient(ClientInvite::new(request, now, &self.config)?),
            Some(_) => Machine::NonInviteClient(ClientNonInvite::new(request, now, &self.config)?),
            None => return Err(Error::NotARequest),
        };
        self.insert(machine)
    }

    /// Cancels the INVITE client transaction `invite` (§9.1): builds the CANCEL and starts it as a
    /// client transaction of its own. See [`ClientInvite::cancel`] for when this is refused.
    pub fn cancel(&mut self, invite: TransactionId, now: Instant) -> Result<TransactionId, Error> {
        let cancel = match self.entry(invite).map(|e| &e.machine) {
            Some(Machine::InviteClient(m)) => m.cancel()?,
            Some(_) => return Err(Error::WrongRole),
            None => match self.held(invite) {
                Some(Held::Lingering(l)) if l.is_invite_client() => return Err(Error::CancelTooLate),
                Some(_) => return Err(Error::WrongRole),
                None => return Err(Error::UnknownTransaction),
            },
        };
        self.start_client(cancel, now)
    }

    /// A request from the network (§17.2.3). See [`Routed`] for the outcomes. An error means the
    /// request lacks what matching needs (Via, CSeq, ...): answer 400 or drop it.
    pub fn handle_request(&mut self, request: Message, now: Instant) -> Result<Routed, Error> {
        let (key, reliable) = super::machine::server_key(&request)?;
        if let Some(id) = self.lookup(&key, &request) {
            // An ACK reusing the INVITE's branch after a 2xx acknowledges the 2xx: the dialog's.
            let accepted = match self.held(id) {
                Some(Held::Live(e)) => matches!(&e.machine, Machine::InviteServer(m) if m.is_accepted()),
                Some(Held::Lingering(l)) => l.is_accepted(),
                None => false,
            };
            if accepted && request.method() == Some(&Method::Ack) {
                return Ok(Routed::Stray(request));
            }
            self.drive(id, Input::Request(request), now)?;
            return Ok(Routed::Matched(id));
        }
        if !key.is_rfc2543() && request.method() != Some(&Method::Ack) {
            match self.answered.find(&key, &request) {
                Some(Hit::Repeated) => return Ok(Routed::Repeated(request)),
                Some(Hit::Other) => return Ok(Routed::Absorbed),
                None => {}
            }
        }
        if self.len() >= self.limit && request.method() != Some(&Method::Ack) {
            let cancels_pending =
                request.method() == Some(&Method::Cancel) && matches!(self.cancel_target(&request), CancelTarget::Pending(_));
            if !cancels_pending {
                return Ok(Routed::Full(request));
            }
        }
        let machine = match request.method() {
            Some(Method::Ack) => return Ok(Routed::Stray(request)),
            Some(Method::Invite) => Machine::InviteServer(ServerInvite::with_key(request.clone(), now, (key, reliable), &self.config)?),
            Some(_) => Machine::NonInviteServer(ServerNonInvite::with_key(request.clone(), (key, reliable), &self.config)?),
            None => return Err(Error::NotARequest),
        };
        let target = (request.method() == Some(&Method::Cancel)).then(|| self.cancel_target(&request));
        let id = self.insert(machine)?;
        // A CANCEL is answered by the endpoint itself (§9.2, `Routed::Cancel`); the TU hears of it
        // only through the INVITE it cancels, never as a new request it could answer a second time.
        if target.is_none() {
            self.events.push_back((id, Event::Request(request)));
        }
        Ok(match target {
            Some(target) => Routed::Cancel { id, target },
            None => Routed::New(id),
        })
    }

    /// A response from the network (§17.1.3). See [`Routed`]. An error means it has no usable
    /// top Via or CSeq: drop it (§18.1.2).
    pub fn handle_response(&mut self, response: Message, now: Instant) -> Result<Routed, Error> {
        if response.status().is_none() {
            return Err(Error::NotAResponse);
        }
        let key = TransactionKey::for_response(&response)?;
        match self.keys.get(&key).copied() {
            Some(id) => {
                self.drive(id, Input::Response(response), now)?;
                Ok(Routed::Matched(id))
            }
            None => Ok(Routed::Stray(response)),
        }
    }

    /// Removes server transaction `id` at once, without output or event: the TU answered its
    /// request statelessly ([`crate::endpoint::Endpoint::respond_stateless`]). Its deadlines left in
    /// the heap are stale and skipped. Client transactions are refused ([`Error::WrongRole`]).
    pub fn forget_server(&mut self, id: TransactionId) -> Result<(), Error> {
        match self.held(id) {
            Some(held) if held.is_server() => {}
            Some(_) => return Err(Error::WrongRole),
            None => return Err(Error::UnknownTransaction),
        }
        self.remove(id);
        self.prune();
        Ok(())
    }

    /// The TU answers server transaction `id` with `response` (see
    /// [`ServerInvite::handle_tu_response`], [`ServerNonInvite::handle_tu_response`]).
    pub fn send_response(&mut self, id: TransactionId, response: Message, now: Instant) -> Result<(), Error> {
        self.drive(id, Input::TuResponse(response), now)
    }

    /// [`Transactions::send_response`] for a final response that the TU can build again from a
    /// retransmission of the request, as a registrar's 200 (issue 16). Once the non-INVITE server
    /// transaction `id` is in Completed (UDP, RFC 3261 key), it is swapped for an entry of a few
    /// dozen bytes ([`Answered`]): no response bytes, no slot, no key in the index. Its id ends
    /// ([`Event::Terminated`] follows) but it still counts in [`Transactions::len`] until Timer J;
    /// a retransmission of its request is handed back as [`Routed::Repeated`] for the TU to answer
    /// again. Any other transaction, or a provisional response, is handled as by `send_response`.
    pub fn send_rebuildable_response(&mut self, id: TransactionId, response: Message, now: Instant) -> Result<(), Error> {
        let (fingerprint, method) = match self.entry(id).map(|e| &e.machine) {
            Some(Machine::NonInviteServer(m)) if !m.key().is_rfc2543() => {
                (self.answered.fingerprint(m.request()), m.request().method().cloned().ok_or(Error::NotARequest)?)
            }
            _ => return self.send_response(id, response, now),
        };
        // Settled without the short form: a Completed transaction goes straight to `answered`
        // instead of first becoming a `Lingering` (a copy of its response and key, its key moved in
        // the index) that the next lines would drop (issue 16: ~3,000 instructions a registration).
        if let Err(e) = self.drive_with(id, Input::TuResponse(response), now, false) {
            self.settle(id);
            return Err(e);
        }
        let live = self.slots.get(id.index as usize).filter(|s| s.generation == id.generation).and_then(|s| s.held.as_ref());
        // The conditions under which `settle` would have made the short form, and the short form's
        // `non_invite_server_end`: Completed on an unreliable transport with an RFC 3261 key, and
        // Timer J the deadline already scheduled.
        let compacted = match live {
            Some(Held::Live(entry)) => match &entry.machine {
                Machine::NonInviteServer(m) => match m.completed_end().filter(|&end| !m.is_terminated() && entry.scheduled == Some(end)) {
                    Some(end) => self.answered.insert(m.key(), &method, fingerprint, end),
                    None => false,
                },
                _ => false,
            },
            _ => false,
        };
        if compacted {
            self.remove(id);
            self.events.push_back((id, Event::Terminated));
            self.prune();
        } else {
            // Whatever `drive` would have left: the short form where it applies.
            self.settle(id);
        }
        Ok(())
    }

    /// The transport failed to send for transaction `id` (§17.1.4, §17.2.4).
    pub fn handle_transport_error(&mut self, id: TransactionId, now: Instant) -> Result<(), Error> {
        self.drive(id, Input::TransportError, now)
    }

    /// Fires every deadline due at `now`, across all transactions. Nothing due: nothing happens.
    pub fn handle_timeout(&mut self, now: Instant) {
        let queued = self.transmits.len();
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let id = TransactionId { index, generation };
            let Some(held) = self.slots.get_mut(index as usize).filter(|s| s.generation == generation).and_then(|s| s.held.as_mut()) else {
                continue;
            };
            if held.scheduled() != Some(at) {
                continue; // stale: the deadline moved since this item was pushed
            }
            match held {
                Held::Live(entry) => {
                    entry.scheduled = None;
                    each!(&mut entry.machine, m => m.handle_timeout(now));
                }
                Held::Lingering(l) => {
                    l.scheduled = None;
                    let mut q = Queues { id, transmits: &mut self.transmits, events: &mut self.events };
                    l.handle_timeout(now, &self.config, &mut q);
                }
            }
            self.settle(id);
        }
        // Timers only ever send retransmissions (B, D, F, H, I, J, K send nothing).
        self.retransmissions += self.transmits.len().saturating_sub(queued) as u64;
        self.prune();
        // Timer J of the compact Completed transactions: they end silently (their ids ended when
        // they were compacted).
        self.answered.handle_timeout(now);
    }

    /// The next message to send and the transaction it is for. Drain after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(TransactionId, Message)> {
        self.transmits.pop_front()
    }

    /// The next event for the TU. A transaction's last event is [`Event::Terminated`]; its id is
    /// dead after that.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<(TransactionId, Event)> {
        self.events.pop_front()
    }

    /// The earliest deadline of any transaction: call [`Transactions::handle_timeout`] then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heap = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (heap, self.answered.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- internals -----

    fn held(&self, id: TransactionId) -> Option<&Held> {
        self.slots.get(id.index as usize).filter(|s| s.generation == id.generation)?.held.as_ref()
    }

    /// The whole machine of a live transaction that does not linger yet.
    fn entry(&self, id: TransactionId) -> Option<&Entry> {
        match self.held(id)? {
            Held::Live(e) => Some(e),
            Held::Lingering(_) => None,
        }
    }

    /// A key hit, with the RFC 2543 To-tag check (§17.2.3).
    fn lookup(&self, key: &TransactionKey, request: &Message) -> Option<TransactionId> {
        let id = *self.keys.get(key)?;
        match self.held(id)? {
            Held::Live(e) => (!key.is_rfc2543() || e.machine.accepts(request)).then_some(id),
            // RFC 2543 keys never linger in the short form.
            Held::Lingering(_) => Some(id),
        }
    }

    fn cancel_target(&self, cancel: &Message) -> CancelTarget {
        let Ok(key) = TransactionKey::cancel_target(cancel) else { return CancelTarget::NotFound };
        match self.lookup(&key, cancel).and_then(|id| Some((id, self.held(id)?))) {
            Some((id, Held::Live(e))) => match &e.machine {
                Machine::InviteServer(m) if m.is_proceeding() => CancelTarget::Pending(id),
                Machine::InviteServer(_) => CancelTarget::Answered(id),
                _ => CancelTarget::NotFound,
            },
            Some((id, Held::Lingering(l))) if l.is_invite_server() => CancelTarget::Answered(id),
            _ => CancelTarget::NotFound,
        }
    }

    fn insert(&mut self, machine: Machine) -> Result<TransactionId, Error> {
        let key = each!(&machine, m => m.key().clone());
        if self.keys.contains_key(&key) {
            return Err(Error::DuplicateKey);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| Error::UnknownTransaction)?;
                self.slots.push(Slot::default());
                index
            }
        };
        let slot = self.slots.get_mut(index as usize).ok_or(Error::UnknownTransaction)?;
        slot.held = Some(Held::Live(Box::new(Entry { machine, scheduled: None })));
        let id = TransactionId { index, generation: slot.generation };
        self.keys.insert(key, id);
        self.live += 1;
        self.settle(id);
        Ok(id)
    }

    /// Runs one input on transaction `id`, then settles it.
    fn drive(&mut self, id: TransactionId, input: Input, now: Instant) -> Result<(), Error> {
        self.drive_with(id, input, now, true)
    }

    /// [`Transactions::drive`]; `shorten` as in [`Transactions::settle_with`].
    fn drive_with(&mut self, id: TransactionId, input: Input, now: Instant, shorten: bool) -> Result<(), Error> {
        let held = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.held.as_mut())
            .ok_or(Error::UnknownTransaction)?;
        let result = match held {
            Held::Live(entry) => {
                let m = &mut entry.machine;
                match input {
                    Input::Request(msg) => m.handle_request(msg, now),
                    Input::Response(msg) => m.handle_response(msg, now),
                    Input::TuResponse(msg) => m.handle_tu_response(msg, now),
                    Input::TransportError => {
                        each!(m, m => m.handle_transport_error(now));
                        Ok(())
                    }
                }
            }
            Held::Lingering(l) => {
                let mut q = Queues { id, transmits: &mut self.transmits, events: &mut self.events };
                match input {
                    Input::Request(msg) => l.handle_request(&msg, now, &self.config, &mut q),
                    Input::Response(msg) => l.handle_response(msg, &mut q),
                    Input::TuResponse(msg) => l.handle_tu_response(msg, &mut q),
                    Input::TransportError => {
                        l.handle_transport_error(&mut q);
                        Ok(())
                    }
                }
            }
        };
        self.settle_with(id, shorten);
        result
    }

    /// After an input: move the machine's output to the shared queues, push its new deadline, swap
    /// it for its short form if it only lingers now, and remove it if it terminated.
    fn settle(&mut self, id: TransactionId) {
        self.settle_with(id, true)
    }

    /// [`Transactions::settle`], leaving a live machine whole when `shorten` is false (settling it
    /// again later makes the short form then: settling twice is settling once).
    fn settle_with(&mut self, id: TransactionId, shorten: bool) {
        let Some(held) = self.slots.get_mut(id.index as usize).filter(|s| s.generation == id.generation).and_then(|s| s.held.as_mut())
        else {
            return;
        };
        let terminated = match held {
            Held::Live(entry) => {
                each!(&mut entry.machine, m => {
                    while let Some(msg) = m.poll_transmit() {
                        self.transmits.push_back((id, msg));
                    }
                    while let Some(event) = m.poll_event() {
                        self.events.push_back((id, event));
                    }
                });
                let next = each!(&entry.machine, m => m.poll_timeout());
                if next != entry.scheduled {
                    entry.scheduled = next;
                    if let Some(at) = next {
                        self.timers.push(Reverse((at, id.index, id.generation)));
                    }
                }
                let terminated = each!(&entry.machine, m => m.is_terminated());
                // The short form takes over only with the same deadline, so the heap needs no
                // new item; its key replaces the indexed one, which held the request's bytes.
                let short = if shorten && !terminated { entry.machine.lingering() } else { None };
                if let Some(mut short) = short.filter(|l| l.poll_timeout() == next) {
                    short.scheduled = entry.scheduled;
                    if self.keys.remove(short.key()).is_some() {
                        self.keys.insert(short.key().clone(), id);
                    }
                    *held = Held::Lingering(Box::new(short));
                }
                terminated
            }
            Held::Lingering(l) => {
                let next = l.poll_timeout();
                if next != l.scheduled {
                    l.scheduled = next;
                    if let Some(at) = next {
                        self.timers.push(Reverse((at, id.index, id.generation)));
                    }
                }
                l.is_terminated()
            }
        };
        if terminated {
            self.remove(id);
        }
        self.prune();
    }

    fn remove(&mut self, id: TransactionId) {
        let Some(slot) = self.slots.get_mut(id.index as usize).filter(|s| s.generation == id.generation) else { return };
        let Some(held) = slot.held.take() else { return };
        slot.generation = slot.generation.wrapping_add(1);
        // One lookup: the key is removed, and put back in the rare case that it indexes another
        // transaction now (a newer one took the key over).
        if let Some((key, other)) = self.keys.remove_entry(held.key()).filter(|(_, other)| *other != id) {
            self.keys.insert(key, other);
        }
        self.free.push(id.index);
        self.live -= 1;
    }

    /// Drops stale items from the top of the heap, so [`Transactions::poll_timeout`] is exact.
    fn prune(&mut self) {
        while let Some(&Reverse((at, index, generation))) = self.timers.peek() {
            if self.held(TransactionId { index, generation }).is_some_and(|h| h.scheduled() == Some(at)) {
                break;
            }
            self.timers.pop();
        }
    }
}
