//! [`Dialogs`]: every dialog of one user agent, keyed by [`DialogId`], with one timer heap and the
//! output queues. Inputs live in `incoming.rs` (requests) and `responses.rs`; commands in
//! `commands.rs`; this file holds storage, timers and the `poll_*` outputs.

use super::id::{DialogId, IdGen};
use super::merge::MergeDetector;
use super::session::{self, SessionTimer};
use super::state::{Dialog, DialogState, Outgoing, Purpose, Role};
use super::timer::{DialogTimer, TimerHeap};
use super::{DialogConfig, EndReason, Event, RefreshMethod};
use crate::collections::HashMap;
use crate::message::{HeaderName, Message, MessageBuilder, Method};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What [`Dialogs::invite`] needs to start a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallParams {
    /// Our address for From, without tag, e.g. `"Alice" <sip:alice@example.com>`.
    pub from: String,
    /// The callee's address for To, e.g. `<sip:bob@example.com>`.
    pub to: String,
    /// The Request-URI; the URI of `to` when `None`.
    pub target: Option<String>,
    /// Route values to send the INVITE through (a preloaded route set, §8.1.1.1), top first.
    pub routes: Vec<String>,
    /// The SDP offer, if any.
    pub sdp: Option<Bytes>,
    /// Max-Forwards of the INVITE (RFC 3261 §8.1.1.6); 70 when `None`. A B2BUA passes on the
    /// incoming request's value minus one, so two services routing to each other cannot loop
    /// forever (issue 14 point 9).
    pub max_forwards: Option<u32>,
    /// `P-Asserted-Identity` to send (RFC 3325 §9.1): the caller's identity a B2BUA vouches for
    /// on its callee leg.
    pub asserted_identity: Option<String>,
    /// `Referred-By` to send (RFC 3892): who asked for this call with a REFER (a transfer).
    pub referred_by: Option<String>,
}

/// An INVITE we sent, from the request until its dialogs are gone (§12.1.2, §13.2.2).
#[derive(Debug, Clone)]
pub(crate) struct UacInvite {
    pub(crate) params: CallParams,
    /// The INVITE as sent; dropped once a 2xx confirmed a dialog, since an established call would
    /// otherwise keep it for its whole life. A later 2xx from another fork (§13.2.2.4) gets it
    /// rebuilt from `params` ([`Dialogs::invite_request`]).
    pub(crate) request: Option<Box<Message>>,
    pub(crate) seq: u32,
    /// The application cancelled it (§9.1).
    pub(crate) cancelled: bool,
    /// A 2xx arrived.
    pub(crate) answered: bool,
    /// The largest Min-SE a 422 asked for (RFC 4028 §7.4); 0 before any 422.
    pub(crate) min_se_seen: u32,
    /// Remote tags of the dialogs it created (forking gives several, §13.2.2.4).
    pub(crate) remote_tags: Vec<Arc<str>>,
    /// Authorization (or Proxy-Authorization) answering the last 401/407, and how many we sent.
    pub(crate) credentials: Option<(HeaderName, String)>,
    pub(crate) auth_attempts: u32,
}

/// Answers a 401/407 to one of our requests (RFC 3261 §22.2): given the request and the challenge
/// response, returns the header to add (Authorization or Proxy-Authorization), or `None` to give up.
pub type Authorizer = Box<dyn FnMut(&Message, &Message) -> Option<(HeaderName, String)> + Send>;

/// The dialogs of one user agent (RFC 3261 §12), sans-IO.
///
/// Inputs are `handle_*` and the commands; outputs are [`Dialogs::poll_transmit`],
/// [`Dialogs::poll_event`] and [`Dialogs::poll_timeout`]. After each input, drain `poll_transmit`
/// and `poll_event` until both return `None`, then wait until `poll_timeout` (see the module doc).
#[derive(Debug)]
pub struct Dialogs {
    pub(crate) config: DialogConfig,
    pub(crate) ids: IdGen,
    /// Boxed: a slot vector grows by doubling, so inline dialogs would leave up to half of it as
    /// empty dialog-sized slots; boxed, an empty slot costs one pointer.
    slots: Vec<Option<Box<Dialog>>>,
    free: Vec<usize>,
    pub(crate) index: HashMap<DialogId, usize>,
    /// Our INVITEs by their pending id (empty remote tag).
    /// Boxed for the same reason as `slots` (a hash table keeps spare buckets).
    pub(crate) invites: HashMap<DialogId, Box<UacInvite>>,
    /// The peer's dialog-creating INVITEs by (Call-ID, From tag): slot and CSeq, for CANCEL (§9.2).
    pub(crate) uas_invites: HashMap<(Arc<str>, Arc<str>), (usize, u32)>,
    timers: TimerHeap,
    pub(crate) merge: MergeDetector,
    transmits: VecDeque<Message>,
    events: VecDeque<Event>,
    pub(crate) authorizer: AuthorizerSlot,
    /// Max-Forwards of the in-dialog requests sent while set ([`Dialogs::set_relay_max_forwards`]).
    relay_max_forwards: Option<u32>,
    /// Ended dialogs drop the peer's SDP at once ([`Dialogs::set_forget_ended_sdp`]).
    forget_ended_sdp: bool,
    /// The last From and To [`Dialogs::invite`] checked, and the Request-URI they gave.
    pub(crate) checked: Option<(Box<str>, Box<str>, std::sync::Arc<str>)>,
    /// The parts of our requests' top Via, found once per transport and sent-by.
    own_via: Option<crate::message::OwnVia>,
}

/// How many entries each table of [`Dialogs`] holds ([`Dialogs::table_sizes`]): all are back to 0
/// once every dialog has ended and been purged (64*T1 later) and the merge window has passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Dialogs held, terminated ones included until purged.
    pub dialogs: usize,
    /// Our INVITEs.
    pub invites: usize,
    /// The peer's dialog-creating INVITEs (for CANCEL).
    pub uas_invites: usize,
    /// Requests remembered for merge detection (§8.2.2.2).
    pub merge: usize,
    /// Items in the timer heap (stale ones until they come due).
    pub timers: usize,
}

/// Holds the [`Authorizer`] (a closure has no `Debug`).
pub(crate) struct AuthorizerSlot(pub(crate) Option<Authorizer>);

impl std::fmt::Debug for AuthorizerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(<authorizer>)" } else { "None" })
    }
}

// ===== impl Dialogs: storage and outputs =====

impl Dialogs {
    /// An empty set.
    pub fn new(config: DialogConfig) -> Dialogs {
        let merge = MergeDetector::new(config.t1 * 64);
        Dialogs {
            ids: IdGen::new(config.rng_seed),
            config,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            invites: HashMap::default(),
            uas_invites: HashMap::default(),
            timers: TimerHeap::default(),
            merge,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            authorizer: AuthorizerSlot(None),
            relay_max_forwards: None,
            forget_ended_sdp: false,
            checked: None,
            own_via: None,
        }
    }

    /// While `Some(n)`, the in-dialog requests we send (BYE, re-INVITE, UPDATE, INFO, REFER,
    /// NOTIFY, MESSAGE...) carry `Max-Forwards: n` instead of 70: a B2BUA sets it to the incoming
    /// request's Max-Forwards minus one while it relays that request to the other leg, as a proxy
    /// would (RFC 3261 §16.6 step 3; issue 14 point 9), and clears it afterwards.
    pub fn set_relay_max_forwards(&mut self, max_forwards: Option<u32>) {
        self.relay_max_forwards = max_forwards;
    }

    /// With `true`, a dialog drops its copy of the peer's SDP ([`Dialog::remote_sdp`](super::Dialog::remote_sdp))
    /// as it ends, instead of keeping it until its purge 64*T1 later: an application that reads
    /// no SDP of an ended dialog (a load generator placing a thousand calls a second holds 32,000
    /// ended dialogs at once) saves a copy of an answer per call. Nothing in the dialog layer reads
    /// it after the end. Off by default: an application may read it while it handles the events
    /// queued with the end (an `Established` and a `Terminated` of the same input).
    pub fn set_forget_ended_sdp(&mut self, forget: bool) {
        self.forget_ended_sdp = forget;
    }

    /// Sets how our INVITEs answer 401/407 challenges (RFC 3261 §22.2): without one, a challenge
    /// ends the INVITE like any failure.
    pub fn set_authorizer(&mut self, authorizer: Authorizer) {
        self.authorizer = AuthorizerSlot(Some(authorizer));
    }

    /// Our new address after a change of network (issue 14 point 7): the Contact and Via sent-by
    /// of every request and answer from now on, so the next re-INVITE refreshes the peer's
    /// remote target (RFC 3261 §12.2.1.1, §12.2.2).
    pub fn set_local(&mut self, contact: String, sent_by: String) {
        self.config.contact = contact;
        self.config.sent_by = sent_by;
    }

    /// The configuration.
    pub fn config(&self) -> &DialogConfig {
        &self.config
    }

    /// The dialog `id`, while it exists (terminated ones linger for 64*T1).
    pub fn get(&self, id: &DialogId) -> Option<&Dialog> {
        self.slots.get(*self.index.get(id)?)?.as_deref()
    }

    /// Ids of every dialog held, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &DialogId> + '_ {
        self.index.keys()
    }

    /// How many dialogs are held (terminated ones included until purged).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no dialog is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The sizes of the tables (cheap: a few lengths).
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            dialogs: self.index.len(),
            invites: self.invites.len(),
            uas_invites: self.uas_invites.len(),
            merge: self.merge.len(),
            timers: self.timers.len(),
        }
    }

    /// The next message to send. Requests go to a new client transaction (ACK: straight to the
    /// transport), responses to the server transaction of their request (2xx retransmissions:
    /// straight to the transport).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Dialogs::handle_timeout`] should next be called; `None` when no timer runs. Besides
    /// the dialogs' timers, the merge detector's sweep while it remembers requests.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout().map(|(at, _, _)| at).into_iter().chain(self.merge.poll_timeout()).min()
    }

    /// The next deadline with the dialog and the timer it belongs to (for logs and tests).
    pub fn next_timeout(&self) -> Option<(Instant, &DialogId, DialogTimer)> {
        let (at, slot, t) = self.timers.peek()?;
        Some((at, self.slots.get(slot)?.as_ref().map(|d| &d.id)?, t))
    }

    /// Runs every timer due at `now`. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, slot, t)) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(d) = self.slots.get_mut(slot).and_then(Option::as_deref_mut) else { continue };
            if d.timers.get(t) != Some(at) {
                continue; // stale: re-armed or stopped since
            }
            d.timers.stop(t);
            self.on_timer(slot, t, now);
        }
        self.merge.handle_timeout(now);
        self.prune();
    }

    /// Drops stale heap heads so `poll_timeout` is exact. Called at the end of every input.
    pub(crate) fn prune(&mut self) {
        let slots = &self.slots;
        self.timers.prune(|slot, t, at| slots.get(slot).and_then(Option::as_deref).is_some_and(|d| d.timers.get(t) == Some(at)));
    }

    pub(crate) fn push_transmit(&mut self, msg: Message) {
        if msg.is_request() {
            let cfg = &self.config;
            if !self.own_via.as_ref().is_some_and(|o| o.is_for(&cfg.transport, &cfg.sent_by)) {
                self.own_via = crate::message::OwnVia::new(&cfg.transport, &cfg.sent_by);
            }
            if let Some(own) = &self.own_via {
                msg.keep_own_via(own);
            }
        }
        self.transmits.push_back(msg);
    }

    pub(crate) fn push_event(&mut self, ev: Event) {
        self.events.push_back(ev);
    }

    pub(crate) fn insert(&mut self, d: Dialog) -> usize {
        let id = d.id.clone();
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(Box::new(d));
                s
            }
            None => {
                self.slots.push(Some(Box::new(d)));
                self.slots.len() - 1
            }
        };
        self.index.insert(id, slot);
        slot
    }

    pub(crate) fn slot_of(&self, id: &DialogId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The dialog in `slot`. Only called with slots just found in `index` or `uas_invites`, which
    /// point at live slots until `purge` empties both.
    pub(crate) fn dm(&mut self, slot: usize) -> &mut Dialog {
        self.slots[slot].as_deref_mut().expect("invariant: indexed slots hold a dialog")
    }

    /// The dialog in `slot` together with the configuration (disjoint borrows).
    pub(crate) fn dm_cfg(&mut self, slot: usize) -> (&mut Dialog, &DialogConfig) {
        (self.slots[slot].as_deref_mut().expect("invariant: indexed slots hold a dialog"), &self.config)
    }

    pub(crate) fn arm(&mut self, slot: usize, t: DialogTimer, at: Instant) {
        self.dm(slot).timers.set(t, at);
        self.timers.push(slot, t, at);
    }

    pub(crate) fn disarm(&mut self, slot: usize, t: DialogTimer) {
        self.dm(slot).timers.stop(t);
    }
}

// ===== impl Dialogs: shared actions =====

impl Dialogs {
    /// Ends the dialog in `slot` once: every timer stops, [`Event::Terminated`] is queued and the
    /// dialog is purged after 64*T1.
    pub(crate) fn terminate(&mut self, slot: usize, reason: EndReason, now: Instant) {
        let purge_at = now + self.config.t1 * 64;
        let forget_sdp = self.forget_ended_sdp;
        let d = self.dm(slot);
        if d.state == DialogState::Terminated {
            return;
        }
        d.end();
        if forget_sdp {
            d.remote_sdp = None;
        }
        let id = d.id.clone();
        self.arm(slot, DialogTimer::Purge, purge_at);
        self.push_event(Event::Terminated { id, reason });
    }

    /// Sends a new in-dialog request (§12.2.1.1): the next local CSeq, a new branch, `extra`
    /// headers, then the body. It is remembered until its final response.
    pub(crate) fn send_request(
        &mut self,
        slot: usize,
        method: Method,
        purpose: Purpose,
        body: Option<(&str, Bytes)>,
        extra: impl FnOnce(&mut MessageBuilder),
    ) {
        if method == Method::Bye {
            self.ack_before_bye(slot);
        }
        let branch = self.ids.branch();
        let Dialogs { slots, config, relay_max_forwards, .. } = self;
        let Some(d) = slots.get_mut(slot).and_then(Option::as_deref_mut) else { return };
        d.local_seq = d.local_seq.wrapping_add(1).max(1);
        let seq = d.local_seq;
        let mut b = d.request(method.clone(), seq, &branch, config, relay_max_forwards.unwrap_or(70));
        extra(&mut b);
        let msg = match body {
            Some((ct, bytes)) => b.body(ct, &bytes),
            None => b.finish(),
        };
        d.outgoing.push(Outgoing { seq, method, purpose });
        self.push_transmit(msg);
    }

    /// Sends BYE (§15.1.1) and ends the dialog with `reason`.
    pub(crate) fn bye(&mut self, slot: usize, reason: EndReason, now: Instant) {
        if self.dm(slot).state == DialogState::Terminated {
            return;
        }
        self.send_request(slot, Method::Bye, Purpose::Other, None, |_| {});
        self.terminate(slot, reason, now);
    }

    /// Installs a negotiated session timer (or none) and re-arms Refresh/Expire (RFC 4028 §10): the
    /// refresher refreshes at half the interval and expires at its end; the other side expires at
    /// interval - min(32 s, interval/3).
    pub(crate) fn apply_session(&mut self, slot: usize, timer: Option<SessionTimer>, now: Instant) {
        self.dm(slot).session = timer;
        self.disarm(slot, DialogTimer::Refresh);
        self.disarm(slot, DialogTimer::Expire);
        let Some(t) = timer else { return };
        // The refresher learns of a failed refresh from its response or timeout (§10) and keeps
        // the full interval as a backstop; the other side gives up a little early.
        let expire = if t.refresher == super::Side::Local {
            self.arm(slot, DialogTimer::Refresh, now + t.refresh_after());
            t.duration()
        } else {
            t.expire_after()
        };
        self.arm(slot, DialogTimer::Expire, now + expire);
    }

    /// Things that start when a dialog is confirmed: the keep-alive pings.
    pub(crate) fn on_confirmed(&mut self, slot: usize, now: Instant) {
        self.dm(slot).state = DialogState::Confirmed;
        if let Some(p) = self.config.ping_interval {
            self.arm(slot, DialogTimer::Ping, now + p);
        }
        let id = self.dm(slot).id.clone();
        self.push_event(Event::Established { id });
    }

    /// The random wait before retrying after 491 (§14.1): 2.1-4 s for the Call-ID owner (the UAC
    /// of the dialog), else 0-2 s, in 10 ms units.
    pub(crate) fn glare_delay(&mut self, role: Role) -> Duration {
        let ticks = match role {
            Role::Uac => 210 + self.ids.below(190),
            Role::Uas => self.ids.below(201),
        };
        Duration::from_millis(ticks * 10)
    }

    /// Sends a session refresh (RFC 4028 §10): our last SDP again in a re-INVITE, or a bare UPDATE.
    fn send_refresh(&mut self, slot: usize) {
        let current = self.dm(slot).session;
        let offer = session::offer(&self.config, current, 0);
        let (method, body) = match self.config.refresh_method {
            RefreshMethod::Invite => (Method::Invite, self.dm(slot).local_sdp.clone().map(|s| ("application/sdp", s))),
            RefreshMethod::Update => (Method::Update, None),
        };
        self.send_request(slot, method, Purpose::Refresh, body, |b| session::write_request(b, offer));
    }

    fn on_timer(&mut self, slot: usize, t: DialogTimer, now: Instant) {
        match t {
            DialogTimer::Retransmit2xx => {
                let t2 = self.config.t2;
                let Some(u) = self.dm(slot).unacked.as_mut() else { return };
                let msg = u.response.clone();
                u.interval = (u.interval * 2).min(t2);
                let next = now + u.interval;
                self.push_transmit(msg);
                self.arm(slot, DialogTimer::Retransmit2xx, next);
            }
            DialogTimer::NoAck => {
                // §13.3.1.4: the dialog is confirmed, but the session ends with a BYE.
                self.dm(slot).unacked = None;
                self.disarm(slot, DialogTimer::Retransmit2xx);
                self.bye(slot, EndReason::NoAck, now);
            }
            DialogTimer::Refresh => self.on_refresh_due(slot, now),
            DialogTimer::Expire => self.bye(slot, EndReason::SessionExpired, now),
            DialogTimer::Ping => {
                self.send_request(slot, Method::Options, Purpose::Ping, None, |b| b.push(HeaderName::Accept, "application/sdp"));
                if let Some(p) = self.config.ping_interval {
                    self.arm(slot, DialogTimer::Ping, now + p);
                }
            }
            DialogTimer::GlareRetry => self.on_glare_retry(slot, now),
            DialogTimer::Purge => self.purge(slot),
            DialogTimer::RetransmitRel => self.on_rel_timer(slot, now),
        }
    }

    fn on_refresh_due(&mut self, slot: usize, now: Instant) {
        if self.dm(slot).invite_in_progress() || self.dm(slot).offer_pending() {
            // An exchange in flight refreshes the session when it succeeds (RFC 4028 §10); look again later.
            let again = now + self.config.t2;
            self.arm(slot, DialogTimer::Refresh, again);
            return;
        }
        self.send_refresh(slot);
        let id = self.dm(slot).id.clone();
        self.push_event(Event::RefreshNeeded { id });
    }

    fn on_glare_retry(&mut self, slot: usize, now: Instant) {
        let Some(retry) = self.dm(slot).retry.take() else { return };
        let (method, sdp) = *retry;
        if self.dm(slot).invite_in_progress() || self.dm(slot).offer_pending() {
            let role = self.dm(slot).role;
            let again = now + self.glare_delay(role);
            self.dm(slot).retry = Some(Box::new((method, sdp)));
            self.arm(slot, DialogTimer::GlareRetry, again);
            return;
        }
        let current = self.dm(slot).session;
        let offer = session::offer(&self.config, current, 0);
        let body = sdp.clone().map(|s| ("application/sdp", s));
        self.send_request(slot, method, Purpose::Modify(sdp), body, |b| session::write_request(b, offer));
    }

    /// Forgets a terminated dialog and, with its last dialog, the INVITE that created it.
    fn purge(&mut self, slot: usize) {
        let Some(d) = self.slots.get_mut(slot).and_then(Option::take) else { return };
        self.free.push(slot);
        self.index.remove(&d.id);
        let uas_key = (d.id.call_id.clone(), d.id.remote_tag.clone());
        if self.uas_invites.get(&uas_key).is_some_and(|(s, _)| *s == slot) {
            self.uas_invites.remove(&uas_key);
        }
        let key = d.id.invite_id();
        if let Some(inv) = self.invites.get_mut(&key) {
            inv.remote_tags.retain(|t| *t != d.id.remote_tag);
            if inv.remote_tags.is_empty() {
                self.invites.remove(&key);
            }
        }
    }
}
